//! Windows as stored and read (the window model and its arithmetic are
//! [`tollgate_core::window`]'s): a meter's windows by customer, time range
//! and group-by values, their aggregate, and the events behind one.

use super::meter::Meter;
use crate::eventlog::index::Index;
use crate::eventlog::{LogError, StoredEvent, codec, keys};
use std::collections::BTreeMap;
pub use tollgate_core::window::{self, MeterWindow, Total, WindowFilter, WindowRow, window_id};

/// A meter definition from the index.
pub fn load_meter(index: &Index, tenant: &str, id: &str) -> Result<Option<Meter>, LogError> {
    index.get(&keys::meter(tenant, id))?.map(|v| decode_meter(&v)).transpose()
}

/// Every meter definition of a tenant, by id.
pub fn load_meters(index: &Index, tenant: &str) -> Result<Vec<Meter>, LogError> {
    index.prefix(&keys::meters_prefix(tenant)).map(|item| decode_meter(&item?.1)).collect()
}

pub(crate) fn decode_meter(bytes: &[u8]) -> Result<Meter, LogError> {
    serde_json::from_slice(bytes).map_err(|e| LogError::Failed(format!("a stored meter definition is unreadable: {e}")))
}

/// The windows of a meter, in (customer, start, group) order.
pub fn windows(index: &Index, tenant: &str, meter: &Meter, filter: &WindowFilter) -> Result<Vec<WindowRow>, LogError> {
    let meter_prefix = keys::windows_prefix(tenant, &meter.id, None);
    let (start, end) = match &filter.customer {
        Some(c) => {
            let p = keys::windows_prefix(tenant, &meter.id, Some(c));
            (
                filter.from.map(|t| keys::window_at(tenant, &meter.id, c, t)).unwrap_or_else(|| p.clone()),
                filter.to.map(|t| keys::window_at(tenant, &meter.id, c, t)).unwrap_or_else(|| keys::prefix_end(&p)),
            )
        }
        None => (meter_prefix.clone(), keys::prefix_end(&meter_prefix)),
    };
    let mut out = Vec::new();
    if start >= end {
        return Ok(out);
    }
    for item in index.range(start..end) {
        let (k, v) = item?;
        let (customer, start, groups) = keys::parse_window(&k, &meter_prefix)
            .ok_or_else(|| LogError::Failed(format!("malformed window key of meter {}", meter.id)))?;
        if filter.from.is_some_and(|f| start < f) || filter.to.is_some_and(|t| start >= t) {
            continue;
        }
        let dimensions: BTreeMap<String, String> = meter.group_by.iter().cloned().zip(groups).collect();
        if filter.dimensions.iter().any(|(k, v)| dimensions.get(k) != Some(v)) {
            continue;
        }
        let window = codec::decode_window(&v).map_err(|source| LogError::Codec { what: "window".into(), source })?;
        out.push(WindowRow {
            id: window_id(&meter.id, &customer, start, &dimensions),
            end: meter.window.end_of_window(start),
            customer,
            start,
            dimensions,
            window,
        });
    }
    Ok(out)
}

/// Aggregates `rows` (windows of `meter` read by [`windows`]).
pub fn total(index: &Index, tenant: &str, meter: &Meter, rows: &[WindowRow]) -> Result<Total, LogError> {
    let distinct = |r: &WindowRow| -> Result<Vec<Vec<u8>>, LogError> {
        let wkey = keys::window(tenant, &meter.id, &r.customer, r.start, &r.group(meter));
        let prefix = keys::members_prefix(&wkey);
        index.prefix(&prefix).map(|item| Ok(item?.0[prefix.len()..].to_vec())).collect()
    };
    window::total(meter, rows, distinct).map_err(|e| match e {
        window::TotalError::Overflow => LogError::Window {
            window: format!("total of meter {}", meter.id),
            source: crate::money::DecimalError::Overflow,
        },
        window::TotalError::Members(e) => e,
    })
}

/// The ids of the live events a window counts.
pub fn window_event_ids(index: &Index, tenant: &str, meter: &Meter, row: &WindowRow) -> Result<Vec<String>, LogError> {
    let from = keys::events_at(tenant, &row.customer, &meter.event_type, row.start);
    let to = keys::events_at(tenant, &row.customer, &meter.event_type, row.end);
    let group = row.group(meter);
    let mut ids = Vec::new();
    for item in index.range(from..to) {
        let e: StoredEvent =
            codec::decode_event(&item?.1).map_err(|source| LogError::Codec { what: "event".into(), source })?;
        if meter.group(&e) == group && meter.sample(&e).is_ok() {
            ids.push(e.id);
        }
    }
    Ok(ids)
}

/// Live events of types no meter reads, per event type.
pub fn unmetered(index: &Index, tenant: &str) -> Result<BTreeMap<String, u64>, LogError> {
    let prefix = keys::unmetered_prefix(tenant);
    let mut out = BTreeMap::new();
    for item in index.prefix(&prefix) {
        let (k, v) = item?;
        let n = i64::from_le_bytes(v.as_ref().try_into().unwrap_or_default());
        out.insert(String::from_utf8_lossy(&k[prefix.len()..]).into_owned(), n.max(0) as u64);
    }
    Ok(out)
}
