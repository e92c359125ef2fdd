//! Meter windows: one per (meter, customer, window start, group-by values),
//! what one event adds to or takes from a window ([`add`], [`remove`]),
//! and a meter's aggregate over some windows ([`total`]), which is not
//! always the sum of its windows.
//!
//! Per aggregation, what one event changes:
//! - `sum`, `count`: the window's value, exactly; a removal subtracts;
//! - `unique_count`: a member per distinct value with its number of
//!   events; the value is the number of members;
//! - `min`, `max`: a member per distinct value with its number of events;
//!   removing the last event of the extreme value looks the new extreme up
//!   among the window's members (no event rescans);
//! - `latest`: a member per event keyed by (time, lsn) with its value;
//!   removing the latest event takes the next latest member.
//!
//! Where members live is the caller's ([`Members`]): the store keeps them
//! in the event index beside the window, [`MemoryMembers`] in memory.

use crate::event::StoredEvent;
use crate::meter::{Aggregation, Meter, Sample};
use crate::money::{DecimalError, Quantity};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
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

/// Aggregates `rows` (windows of `meter`); `distinct` gives the distinct
/// values of each window of a `unique_count` meter (its members).
pub fn total<E>(
    meter: &Meter,
    rows: &[WindowRow],
    mut distinct: impl FnMut(&WindowRow) -> Result<Vec<Vec<u8>>, E>,
) -> Result<Total, TotalError<E>> {
    let counted: Vec<&WindowRow> = rows.iter().filter(|r| r.window.events > 0).collect();
    let events = counted.iter().map(|r| r.window.events).sum();
    let skipped = rows.iter().map(|r| r.window.skipped).sum();
    let mut values = counted.iter().map(|r| r.window.value);
    let value = match meter.aggregation {
        Aggregation::Sum | Aggregation::Count => {
            values.try_fold(Quantity::ZERO, Quantity::checked_add).ok_or(TotalError::Overflow)?
        }
        Aggregation::Min => values.min().unwrap_or_default(),
        Aggregation::Max => values.max().unwrap_or_default(),
        Aggregation::Latest => {
            counted.iter().max_by_key(|r| r.window.latest).map(|r| r.window.value).unwrap_or_default()
        }
        Aggregation::UniqueCount => {
            let mut all = BTreeSet::new();
            for r in &counted {
                all.extend(distinct(r).map_err(TotalError::Members)?);
            }
            Quantity::from_count(all.len() as u64)
        }
    };
    Ok(Total { value, events, skipped })
}

/// Why [`total`] has no value.
#[derive(Debug, thiserror::Error)]
pub enum TotalError<E> {
    #[error("{}", DecimalError::Overflow)]
    Overflow,
    #[error("reading the windows' members: {0}")]
    Members(E),
}

/// Why a window cannot take an event: only damaged stored data (a value or
/// member that no sequence of accepted events produces) or a sum beyond the
/// exact range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The value `value` (what the window held) cannot take the sample.
    #[error("{source} (value {value})")]
    Value { value: Quantity, source: DecimalError },
    /// A member or value the window's other state contradicts.
    #[error("metering: {0}")]
    Corrupt(String),
}

/// A window update that failed: the window's own rule, or where its
/// members are kept.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    Members(E),
}

fn corrupt<E>(what: impl Into<String>) -> UpdateError<E> {
    UpdateError::Window(WindowError::Corrupt(what.into()))
}

/// A `latest` member: (time in ns, lsn) and the event's value.
pub type LatestMember = ((u64, u64), Decimal);

/// The members of one window (distinct values with their event counts, or
/// `latest` events with their values), wherever they are kept.
pub trait Members {
    type Error;
    /// Adds `delta` to a distinct value's event count; returns the new
    /// count (a member at zero is gone).
    fn bump(&mut self, value: &[u8], delta: i64) -> Result<u64, UpdateError<Self::Error>>;
    /// Every distinct value with events.
    fn values(&mut self) -> Result<Vec<Vec<u8>>, Self::Error>;
    /// Records (`Some`) or forgets (`None`) the value of the event at `at`
    /// ((time in ns, lsn)) of a `latest` window.
    fn set_latest(&mut self, at: (u64, u64), value: Option<Decimal>);
    /// The latest event remembered and its value.
    fn last_latest(&mut self) -> Result<Option<LatestMember>, UpdateError<Self::Error>>;
}

/// A sampled value as a window holds it (samples are parsed like
/// quantities, so only damaged data fails here).
fn quantity(q: Decimal) -> Result<Quantity, WindowError> {
    Quantity::from_decimal(q).map_err(|source| WindowError::Value { value: Quantity::ZERO, source })
}

/// Event time in ns since the epoch, and its lsn: a `latest` member's key.
fn at(e: &StoredEvent) -> (u64, u64) {
    (crate::event::nanos(e.time) as u64, e.lsn)
}

/// Counts `e` into `w`, a window of `m` (an event `m` cannot read is
/// counted as skipped).
pub fn add<M: Members>(
    w: &mut MeterWindow,
    m: &Meter,
    e: &StoredEvent,
    members: &mut M,
) -> Result<(), UpdateError<M::Error>> {
    let Ok(sample) = m.sample(e) else {
        w.skipped += 1;
        return Ok(());
    };
    w.events += 1;
    match (m.aggregation, sample) {
        (Aggregation::Count, _) => w.value = Quantity::from_count(w.events),
        (Aggregation::Sum, Sample::Number(q)) => {
            let q = quantity(q)?;
            w.value =
                w.value.checked_add(q).ok_or(WindowError::Value { value: w.value, source: DecimalError::Overflow })?
        }
        (agg @ (Aggregation::Min | Aggregation::Max), Sample::Number(q)) => {
            // Members are normalised (2.50 → 2.5), so they do not depend
            // on which of two equal values came first.
            members.bump(q.normalize().to_string().as_bytes(), 1)?;
            let q = quantity(q)?;
            let better = if agg == Aggregation::Min { q < w.value } else { q > w.value };
            if w.events == 1 || better {
                w.value = q;
            }
        }
        (Aggregation::UniqueCount, Sample::Text(v)) => {
            if members.bump(v.as_bytes(), 1)? == 1 {
                w.value = w.value.checked_add(Quantity::ONE).ok_or_else(|| corrupt("distinct values overflow"))?;
            }
        }
        (Aggregation::Latest, Sample::Number(q)) => {
            let at = at(e);
            members.set_latest(at, Some(q));
            if w.latest.is_none_or(|l| at > l) {
                w.latest = Some(at);
                w.value = quantity(q)?;
            }
        }
        (agg, s) => return Err(corrupt(format!("{agg:?} meter {} sampled {s:?}", m.id))),
    }
    Ok(())
}

/// Takes `e` (counted before by [`add`]) out of `w`.
pub fn remove<M: Members>(
    w: &mut MeterWindow,
    m: &Meter,
    e: &StoredEvent,
    members: &mut M,
) -> Result<(), UpdateError<M::Error>> {
    let Ok(sample) = m.sample(e) else {
        w.skipped = w.skipped.saturating_sub(1);
        return Ok(());
    };
    w.events = w.events.saturating_sub(1);
    match (m.aggregation, sample) {
        (Aggregation::Count, _) => w.value = Quantity::from_count(w.events),
        (Aggregation::Sum, Sample::Number(q)) => {
            let q = quantity(q)?;
            w.value = w.value.checked_sub(q).ok_or_else(|| corrupt("a sum fell below zero"))?
        }
        (agg @ (Aggregation::Min | Aggregation::Max), Sample::Number(q)) => {
            let left = members.bump(q.normalize().to_string().as_bytes(), -1)?;
            if left == 0 && quantity(q)? == w.value && w.events > 0 {
                let mut values = Vec::new();
                for v in members.values().map_err(UpdateError::Members)? {
                    let d = std::str::from_utf8(&v).ok().and_then(|t| t.parse::<Decimal>().ok());
                    values.push(quantity(d.ok_or_else(|| corrupt("member is not a decimal"))?)?);
                }
                let extreme = if agg == Aggregation::Min { values.into_iter().min() } else { values.into_iter().max() };
                w.value = extreme.ok_or_else(|| corrupt("a window with events has no members"))?;
            }
        }
        (Aggregation::UniqueCount, Sample::Text(v)) => {
            if members.bump(v.as_bytes(), -1)? == 0 {
                w.value = w.value.checked_sub(Quantity::ONE).ok_or_else(|| corrupt("distinct values below zero"))?;
            }
        }
        (Aggregation::Latest, Sample::Number(_)) => {
            let at = at(e);
            members.set_latest(at, None);
            if w.latest == Some(at) {
                w.latest = None;
                w.value = Quantity::ZERO;
                if let Some((at, v)) = members.last_latest()? {
                    w.latest = Some(at);
                    w.value = quantity(v)?;
                }
            }
        }
        (agg, s) => return Err(corrupt(format!("{agg:?} meter {} sampled {s:?}", m.id))),
    }
    if w.events == 0 {
        w.value = Quantity::ZERO;
        w.latest = None;
    }
    Ok(())
}

/// A window's members in memory (tests, and any caller that holds a whole
/// window at once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryMembers {
    pub values: BTreeMap<Vec<u8>, u64>,
    pub latest: BTreeMap<(u64, u64), Decimal>,
}

impl Members for MemoryMembers {
    type Error = std::convert::Infallible;

    fn bump(&mut self, value: &[u8], delta: i64) -> Result<u64, UpdateError<Self::Error>> {
        let current = self.values.get(value).copied().unwrap_or(0);
        let next = current.checked_add_signed(delta).ok_or_else(|| corrupt("member count below zero"))?;
        if next == 0 {
            self.values.remove(value);
        } else {
            self.values.insert(value.to_vec(), next);
        }
        Ok(next)
    }

    fn values(&mut self) -> Result<Vec<Vec<u8>>, Self::Error> {
        Ok(self.values.keys().cloned().collect())
    }

    fn set_latest(&mut self, at: (u64, u64), value: Option<Decimal>) {
        match value {
            Some(v) => self.latest.insert(at, v),
            None => self.latest.remove(&at),
        };
    }

    fn last_latest(&mut self) -> Result<Option<LatestMember>, UpdateError<Self::Error>> {
        Ok(self.latest.last_key_value().map(|(k, v)| (*k, *v)))
    }
}
