//! Keys of the `eventlog` tree. Text components are NUL-separated (ingest
//! refuses NUL in ids, customers and meters); instants, lsns and revisions
//! are fixed-width big-endian, so keys sort by them.

use super::StoredEvent;
use super::codec::nanos;
use chrono::{DateTime, Utc};

pub const CHECKPOINT: &[u8] = b"c";
pub const DEDUP_PREFIX: &[u8] = b"d\0";
/// Every tenant's meter definitions.
pub const METERS: &[u8] = b"M\0";

fn tagged(tag: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = vec![tag, 0];
    k.extend_from_slice(&crate::store::key(parts));
    k
}

/// `tag·tenant·`: every key of one kind (`e` events, `h` history, `d`
/// dedup, `w` windows, `M` meters) of a tenant.
pub fn tenant_prefix(tag: u8, tenant: &str) -> Vec<u8> {
    let mut k = tagged(tag, &[tenant]);
    k.push(0);
    k
}

/// `d·tenant·id`: the dedup entry of an event id.
pub fn dedup(tenant: &str, id: &str) -> Vec<u8> {
    tagged(b'd', &[tenant, id])
}

/// `e·tenant·[customer·[meter·]]`: the live events of a tenant, a customer,
/// or a meter of a customer.
pub fn events_prefix(tenant: &str, customer: Option<&str>, meter: Option<&str>) -> Vec<u8> {
    let mut parts = vec![tenant];
    parts.extend(customer);
    if customer.is_some() {
        parts.extend(meter);
    }
    let mut k = tagged(b'e', &parts);
    k.push(0);
    k
}

/// The first key of a customer's meter at or after `t`.
pub fn events_at(tenant: &str, customer: &str, meter: &str, t: DateTime<Utc>) -> Vec<u8> {
    let mut k = events_prefix(tenant, Some(customer), Some(meter));
    k.extend_from_slice(&(nanos(t) as u64).to_be_bytes());
    k
}

/// `e·tenant·customer·meter·time·lsn`: a live event.
pub fn event(tenant: &str, e: &StoredEvent) -> Vec<u8> {
    let mut k = events_at(tenant, &e.customer, &e.meter, e.time);
    k.extend_from_slice(&e.lsn.to_be_bytes());
    k
}

/// `h·tenant·id·`: the replaced revisions and retractions of an event id.
pub fn history_prefix(tenant: &str, id: &str) -> Vec<u8> {
    let mut k = tagged(b'h', &[tenant, id]);
    k.push(0);
    k
}

/// `h·tenant·id·revision`.
pub fn history(tenant: &str, id: &str, revision: u32) -> Vec<u8> {
    let mut k = history_prefix(tenant, id);
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

/// `M·tenant·`: a tenant's meter definitions.
pub fn meters_prefix(tenant: &str) -> Vec<u8> {
    let mut k = tagged(b'M', &[tenant]);
    k.push(0);
    k
}

/// `M·tenant·meter`: a meter definition (JSON).
pub fn meter(tenant: &str, id: &str) -> Vec<u8> {
    tagged(b'M', &[tenant, id])
}

/// `w·tenant·meter·[customer·]`: the windows of a meter, or of one customer.
pub fn windows_prefix(tenant: &str, meter: &str, customer: Option<&str>) -> Vec<u8> {
    let mut parts = vec![tenant, meter];
    parts.extend(customer);
    let mut k = tagged(b'w', &parts);
    k.push(0);
    k
}

/// `w·tenant·meter·customer·start[·group value…]`: one window; the start is
/// whole seconds since the epoch, big-endian, so windows sort by time.
pub fn window(tenant: &str, meter: &str, customer: &str, start: DateTime<Utc>, group: &[&str]) -> Vec<u8> {
    let mut k = window_at(tenant, meter, customer, start);
    for g in group {
        k.push(0);
        k.extend_from_slice(g.as_bytes());
    }
    k
}

/// The first window key of a customer's meter at or after `start`.
pub fn window_at(tenant: &str, meter: &str, customer: &str, start: DateTime<Utc>) -> Vec<u8> {
    let mut k = windows_prefix(tenant, meter, Some(customer));
    k.extend_from_slice(&(start.timestamp().max(0) as u64).to_be_bytes());
    k
}

/// A window key's parts after `w·tenant·meter·`: customer, start, group values.
pub fn parse_window(key: &[u8], meter_prefix: &[u8]) -> Option<(String, DateTime<Utc>, Vec<String>)> {
    let rest = key.strip_prefix(meter_prefix)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let customer = std::str::from_utf8(&rest[..nul]).ok()?.to_string();
    let after = &rest[nul + 1..];
    let start = u64::from_be_bytes(after.get(..8)?.try_into().ok()?);
    let start = DateTime::from_timestamp(i64::try_from(start).ok()?, 0)?;
    let groups = match after.get(8..)? {
        [] => Vec::new(),
        [0, g @ ..] => g.split(|b| *b == 0).map(|g| String::from_utf8_lossy(g).into_owned()).collect(),
        _ => return None,
    };
    Some((customer, start, groups))
}

/// `v·…·`: the members of a window (distinct values, or the events of a
/// `latest` meter by time): the window key with tag `v`, then NUL.
pub fn members_prefix(window: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(window.len() + 24);
    k.push(b'v');
    k.extend_from_slice(&window[1..]);
    k.push(0);
    k
}

/// `v·tenant·meter·`: the members of every window of a meter.
pub fn meter_members_prefix(tenant: &str, meter: &str) -> Vec<u8> {
    let mut k = windows_prefix(tenant, meter, None);
    k[0] = b'v';
    k
}

/// `x·tenant·event type`: how many live events of a type no meter reads.
pub fn unmetered(tenant: &str, event_type: &str) -> Vec<u8> {
    tagged(b'x', &[tenant, event_type])
}

/// `x·tenant·`.
pub fn unmetered_prefix(tenant: &str) -> Vec<u8> {
    let mut k = tagged(b'x', &[tenant]);
    k.push(0);
    k
}

/// The smallest key above every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}
