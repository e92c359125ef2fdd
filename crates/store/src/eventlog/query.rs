//! Reads of the event log index: events by customer, meter and time range
//! (for replay and lineage) and one event with its revisions (windows:
//! `crate::metering::window`). Callers that must see everything acknowledged first call
//! [`super::EventLog::sync`].

use super::index::Index;
use super::{LogError, StoredEvent, codec, keys};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which live events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub customer: Option<String>,
    /// With `customer`, a range scan; without, the tenant's events are
    /// scanned and filtered.
    pub meter: Option<String>,
    /// Event time from (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Event time to (exclusive).
    pub to: Option<DateTime<Utc>>,
}

/// One page of events, in (customer, meter, time) order, and the cursor of
/// the next page when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    pub next: Option<String>,
}

fn decode(bytes: &[u8]) -> Result<StoredEvent, LogError> {
    codec::decode_event(bytes).map_err(LogError::codec("event"))
}

/// Lists live events (current revisions, not retracted). `after` is the
/// `next` of the previous page.
pub fn events(
    index: &Index,
    tenant: &str,
    filter: &EventFilter,
    limit: usize,
    after: Option<&[u8]>,
) -> Result<Page, LogError> {
    let prefix = keys::events_prefix(tenant, filter.customer.as_deref(), filter.meter.as_deref());
    let (mut start, end) = match (&filter.customer, &filter.meter) {
        (Some(c), Some(m)) => (
            filter.from.map(|t| keys::events_at(tenant, c, m, t)).unwrap_or_else(|| prefix.clone()),
            filter.to.map(|t| keys::events_at(tenant, c, m, t)).unwrap_or_else(|| keys::prefix_end(&prefix)),
        ),
        _ => (prefix.clone(), keys::prefix_end(&prefix)),
    };
    if let Some(after) = after {
        let mut next = after.to_vec();
        next.push(0);
        start = start.max(next);
    }
    let mut out = Vec::new();
    let mut last_key = None;
    if start < end {
        for item in index.range(start..end) {
            let (k, v) = item?;
            let e = decode(&v)?;
            let time_ok = filter.from.is_none_or(|f| e.time >= f) && filter.to.is_none_or(|t| e.time < t);
            if !time_ok || filter.meter.as_ref().is_some_and(|m| *m != e.meter) {
                continue;
            }
            if out.len() == limit {
                return Ok(Page { events: out, next: last_key.map(|k: Vec<u8>| crate::hex(&k)) });
            }
            out.push(e);
            last_key = Some(k.to_vec());
        }
    }
    Ok(Page { events: out, next: None })
}

/// An event id's current revision (possibly a retraction) and the
/// revisions it replaced, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct EventHistory {
    pub current: StoredEvent,
    pub replaced: Vec<StoredEvent>,
}

pub fn event(index: &Index, tenant: &str, id: &str) -> Result<Option<EventHistory>, LogError> {
    let Some(entry) = index.get(&keys::dedup(tenant, id))? else { return Ok(None) };
    let entry = codec::decode_dedup(&entry).map_err(LogError::codec(format!("dedup entry of {id}")))?;
    let current = match index.get(&entry.location)? {
        Some(b) => decode(&b)?,
        None => return Ok(None),
    };
    let mut replaced = Vec::new();
    for item in index.prefix(&keys::history_prefix(tenant, id)) {
        let (_, v) = item?;
        let e = decode(&v)?;
        if e.revision != current.revision {
            replaced.push(e);
        }
    }
    Ok(Some(EventHistory { current, replaced }))
}
