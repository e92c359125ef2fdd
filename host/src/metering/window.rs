//! Windows as stored and read: one window per (meter, customer, window
//! start, group-by values), and the aggregate of a meter over a time range
//! (a billing period), which is not always the sum of its windows.

use super::meter::{Aggregation, Meter};
use crate::eventlog::index::Index;
use crate::eventlog::{LogError, StoredEvent, codec, keys};
use crate::money::Quantity;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::SerializeStruct;
use std::collections::{BTreeMap, BTreeSet};

/// The aggregate of one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterWindow {
    /// Events counted.
    pub events: u64,
    /// Events of the meter's type it could not read (stored before the
    /// meter existed, without the dimension it reads).
    pub skipped: u64,
    /// Sum, count, min, max, number of distinct values or latest value
    /// (zero while no event counts).
    pub value: Quantity,
    /// `latest` meters: (event time in ns, lsn) of the event holding `value`.
    pub latest: Option<(u64, u64)>,
}

/// `{events, skipped, value}`, `value` normalised, and `null` for a window
/// no event counts (one that corrections or retractions emptied): no `0`
/// that would read as a real minimum, maximum or latest value.
fn serialize_value<S: serde::Serializer>(
    s: S,
    name: &'static str,
    events: u64,
    skipped: u64,
    value: Quantity,
) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct(name, 3)?;
    st.serialize_field("events", &events)?;
    st.serialize_field("skipped", &skipped)?;
    st.serialize_field("value", &(events > 0).then_some(value))?;
    st.end()
}

impl Serialize for MeterWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_value(s, "MeterWindow", self.events, self.skipped, self.value)
    }
}

/// One window as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowRow {
    /// `meter/customer/start[/dimension=value…]`: its id in lineage.
    pub id: String,
    pub customer: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The group-by dimensions' values.
    pub dimensions: BTreeMap<String, String>,
    #[serde(flatten)]
    pub window: MeterWindow,
}

impl WindowRow {
    /// The group-by values in the meter's order.
    pub fn group<'a>(&'a self, meter: &Meter) -> Vec<&'a str> {
        meter.group_by.iter().map(|k| self.dimensions.get(k).map_or("", String::as_str)).collect()
    }
}

/// A window's id in lineage.
pub fn window_id(meter: &str, customer: &str, start: DateTime<Utc>, dimensions: &BTreeMap<String, String>) -> String {
    let mut id = format!("{meter}/{customer}/{}", start.format("%Y-%m-%dT%H:%M:%SZ"));
    for (k, v) in dimensions {
        id.push_str(&format!("/{k}={v}"));
    }
    id
}

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

/// Which windows to read.
#[derive(Debug, Clone, Default)]
pub struct WindowFilter {
    /// One customer (a range scan) or every customer.
    pub customer: Option<String>,
    /// Window start from (inclusive) and to (exclusive).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only windows whose group-by dimensions have these values.
    pub dimensions: BTreeMap<String, String>,
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

/// A meter's aggregate over some windows (e.g. a customer's billing period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    /// Sum of sums, of counts; min of mins, max of maxes; distinct values
    /// across all the windows; the latest value of all (zero, and `null` on
    /// the wire, when no event counts).
    pub value: Quantity,
    pub events: u64,
    pub skipped: u64,
}

impl Serialize for Total {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_value(s, "Total", self.events, self.skipped, self.value)
    }
}

/// Aggregates `rows` (windows of `meter` read by [`windows`]).
pub fn total(index: &Index, tenant: &str, meter: &Meter, rows: &[WindowRow]) -> Result<Total, LogError> {
    let counted: Vec<&WindowRow> = rows.iter().filter(|r| r.window.events > 0).collect();
    let events = counted.iter().map(|r| r.window.events).sum();
    let skipped = rows.iter().map(|r| r.window.skipped).sum();
    let mut values = counted.iter().map(|r| r.window.value);
    let value = match meter.aggregation {
        Aggregation::Sum | Aggregation::Count => {
            values.try_fold(Quantity::ZERO, Quantity::checked_add).ok_or_else(|| LogError::Window {
                window: format!("total of meter {}", meter.id),
                source: crate::money::DecimalError::Overflow,
            })?
        }
        Aggregation::Min => values.min().unwrap_or_default(),
        Aggregation::Max => values.max().unwrap_or_default(),
        Aggregation::Latest => {
            counted.iter().max_by_key(|r| r.window.latest).map(|r| r.window.value).unwrap_or_default()
        }
        Aggregation::UniqueCount => {
            let mut distinct = BTreeSet::new();
            for r in &counted {
                let wkey = keys::window(tenant, &meter.id, &r.customer, r.start, &r.group(meter));
                let prefix = keys::members_prefix(&wkey);
                for item in index.prefix(&prefix) {
                    distinct.insert(item?.0[prefix.len()..].to_vec());
                }
            }
            Quantity::from_count(distinct.len() as u64)
        }
    };
    Ok(Total { value, events, skipped })
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
