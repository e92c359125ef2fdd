//! Keys of the `eventlog` tree. Text components are NUL-separated (ingest
//! refuses NUL in ids, customers and meters); instants, lsns and revisions
//! are fixed-width big-endian, so keys sort by them.

use super::StoredEvent;
use super::codec::nanos;
use crate::metering;
use chrono::{DateTime, Utc};

pub const CHECKPOINT: &[u8] = b"c";
pub const DEDUP_PREFIX: &[u8] = b"d\0";

fn tagged(tag: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = vec![tag, 0];
    k.extend_from_slice(&crate::store::key(parts));
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

/// `w·tenant·customer·meter·hour`: a metering window.
pub fn window(tenant: &str, customer: &str, meter: &str, hour: &str) -> Vec<u8> {
    tagged(b'w', &[tenant, customer, meter, hour])
}

/// The window an event counts in.
pub fn window_of(tenant: &str, e: &StoredEvent) -> Vec<u8> {
    window(tenant, &e.customer, &e.meter, &metering::hour_of(e.time))
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
