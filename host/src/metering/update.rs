//! Incremental window updates, applied inside the event log's index batches
//! (so a window never disagrees with the events it counts), and the build of
//! a new meter's windows from the events already stored.
//!
//! Per aggregation, what one event changes:
//! - `sum`, `count`: the window's value, exactly; a removal subtracts;
//! - `unique_count`: a member entry per distinct value with its number of
//!   events; the value is the number of members;
//! - `min`, `max`: a member entry per distinct value with its number of
//!   events; removing the last event of the extreme value looks the new
//!   extreme up among the window's members (no event rescans);
//! - `latest`: a member entry per event keyed by (time, lsn) with its value;
//!   removing the latest event takes the next latest member.
//!
//! Windows touched by a batch are decoded once and written once; member
//! changes are kept in order so a window's members can be read merged with
//! what the batch has not written yet.

use super::meter::{Aggregation, Meter, MeterState, Sample, TenantMeters};
use super::window::MeterWindow;
use crate::eventlog::codec::{self, nanos};
use crate::eventlog::index::{Batch, Index};
use crate::eventlog::{LogError, StoredEvent, keys};
use crate::money::{DecimalError, Quantity};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

type FoldHash = foldhash::fast::RandomState;

/// Pending window changes over the index.
pub struct Overlay<'a> {
    index: &'a Index,
    windows: HashMap<Vec<u8>, MeterWindow, FoldHash>,
    members: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    unmetered: HashMap<Vec<u8>, i64, FoldHash>,
    /// Meters whose windows could not take an event in this batch, with the
    /// tenant: they are stored as failed with the batch.
    failed: Vec<(String, Meter)>,
    /// Meters being built and how far (see `crate::eventlog::Builds`).
    builds: Option<&'a crate::eventlog::Builds>,
}

/// The error of a window whose value cannot take a sample; the message is
/// written only when there is one (this runs for every counted event).
fn window_error(key: &[u8], sum: Quantity, source: DecimalError) -> LogError {
    let window = format!("{} (value {sum})", String::from_utf8_lossy(key).replace('\0', "/"));
    LogError::Window { window, source }
}

fn corrupt(what: &str) -> LogError {
    LogError::Failed(format!("metering: {what}"))
}

impl<'a> Overlay<'a> {
    pub fn new(index: &'a Index) -> Overlay<'a> {
        Overlay {
            index,
            windows: HashMap::default(),
            members: BTreeMap::new(),
            unmetered: HashMap::default(),
            failed: Vec::new(),
            builds: None,
        }
    }

    /// Counts events into meters being built too, where their build has
    /// passed them already.
    pub fn with_builds(self, builds: &'a crate::eventlog::Builds) -> Overlay<'a> {
        Overlay { builds: Some(builds), ..self }
    }

    /// Whether `e` counts into `m` now: an active meter always; one being
    /// built when its build has passed the event's key (the build counts it
    /// otherwise); a failed one never.
    fn counts(&self, tenant: &str, m: &Meter, e: &StoredEvent) -> bool {
        match m.state {
            MeterState::Active => true,
            MeterState::Building => self
                .builds
                .and_then(|b| b.get(&(tenant.to_string(), m.id.clone())))
                .is_some_and(|cursor| keys::event(tenant, e) < *cursor),
            MeterState::Failed => false,
        }
    }

    /// Changes held (to bound a long build's batches).
    pub fn len(&self) -> usize {
        self.windows.len() + self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.unmetered.is_empty()
    }

    /// Counts `e` into (or, with `add == false`, out of) every active meter
    /// of its type; an event no meter reads is counted as unmetered.
    ///
    /// Only a storage failure is an error. A meter whose windows cannot take
    /// the event (damaged stored data) is marked failed with the reason and
    /// counts nothing more, so one tenant's data never stops the log.
    pub fn count(
        &mut self,
        meters: Option<&TenantMeters>,
        tenant: &str,
        e: &StoredEvent,
        add: bool,
    ) -> Result<(), LogError> {
        let list = meters.map_or(&[][..], |m| m.of_type(&e.meter));
        if list.is_empty() {
            *self.unmetered.entry(keys::unmetered(tenant, &e.meter)).or_default() += if add { 1 } else { -1 };
            return Ok(());
        }
        for m in list {
            if !self.counts(tenant, m, e) || self.failed.iter().any(|(t, f)| t == tenant && f.id == m.id) {
                continue;
            }
            match self.update(tenant, m, e, add) {
                Ok(()) => {}
                Err(err @ LogError::Index(_)) => return Err(err),
                Err(err) => {
                    tracing::error!(%tenant, meter = %m.id, event = %e.id, error = %err,
                        "a meter's windows cannot take an event; the meter is marked failed, the log goes on");
                    let failure = format!("event {} (lsn {}): {err}", e.id, e.lsn);
                    self.failed.push((
                        tenant.to_string(),
                        Meter { state: MeterState::Failed, failure: Some(failure), ..(**m).clone() },
                    ));
                }
            }
        }
        Ok(())
    }

    /// Counts `e` into or out of one meter's window.
    pub fn update(&mut self, tenant: &str, m: &Meter, e: &StoredEvent, add: bool) -> Result<(), LogError> {
        let key = keys::window(tenant, &m.id, &e.customer, m.window.start_of(e.time), &m.group(e));
        let mut w = match self.windows.remove(&key) {
            Some(w) => w,
            None => match self.index.get(&key)? {
                Some(v) => {
                    codec::decode_window(&v).map_err(|source| LogError::Codec { what: "window".into(), source })?
                }
                None => MeterWindow::default(),
            },
        };
        let done = if add { self.add(&mut w, &key, m, e) } else { self.remove(&mut w, &key, m, e) };
        self.windows.insert(key, w);
        done
    }

    fn add(&mut self, w: &mut MeterWindow, key: &[u8], m: &Meter, e: &StoredEvent) -> Result<(), LogError> {
        let Ok(sample) = m.sample(e) else {
            w.skipped += 1;
            return Ok(());
        };
        w.events += 1;
        match (m.aggregation, sample) {
            (Aggregation::Count, _) => w.value = Quantity::from_count(w.events),
            (Aggregation::Sum, Sample::Number(q)) => {
                let q = quantity(q, key)?;
                w.value = w.value.checked_add(q).ok_or_else(|| window_error(key, w.value, DecimalError::Overflow))?
            }
            (agg @ (Aggregation::Min | Aggregation::Max), Sample::Number(q)) => {
                // Members are normalised (2.50 → 2.5), so they do not depend
                // on which of two equal values came first.
                self.bump(member(key, q.normalize().to_string().as_bytes()), 1)?;
                let q = quantity(q, key)?;
                let better = if agg == Aggregation::Min { q < w.value } else { q > w.value };
                if w.events == 1 || better {
                    w.value = q;
                }
            }
            (Aggregation::UniqueCount, Sample::Text(v)) => {
                if self.bump(member(key, v.as_bytes()), 1)? == 1 {
                    w.value = w.value.checked_add(Quantity::ONE).ok_or_else(|| corrupt("distinct values overflow"))?;
                }
            }
            (Aggregation::Latest, Sample::Number(q)) => {
                let at = (nanos(e.time) as u64, e.lsn);
                self.members.insert(member(key, &latest_member(at)), Some(q.serialize().to_vec()));
                if w.latest.is_none_or(|l| at > l) {
                    w.latest = Some(at);
                    w.value = quantity(q, key)?;
                }
            }
            (agg, s) => return Err(corrupt(&format!("{agg:?} meter {} sampled {s:?}", m.id))),
        }
        Ok(())
    }

    fn remove(&mut self, w: &mut MeterWindow, key: &[u8], m: &Meter, e: &StoredEvent) -> Result<(), LogError> {
        let Ok(sample) = m.sample(e) else {
            w.skipped = w.skipped.saturating_sub(1);
            return Ok(());
        };
        w.events = w.events.saturating_sub(1);
        match (m.aggregation, sample) {
            (Aggregation::Count, _) => w.value = Quantity::from_count(w.events),
            (Aggregation::Sum, Sample::Number(q)) => {
                let q = quantity(q, key)?;
                w.value = w.value.checked_sub(q).ok_or_else(|| corrupt("a sum fell below zero"))?
            }
            (agg @ (Aggregation::Min | Aggregation::Max), Sample::Number(q)) => {
                let left = self.bump(member(key, q.normalize().to_string().as_bytes()), -1)?;
                if left == 0 && quantity(q, key)? == w.value && w.events > 0 {
                    let values = self.members(&keys::members_prefix(key))?.into_keys().map(|k| decimal_member(&k, key));
                    let values = values.map(|v| v.and_then(|v| quantity(v, key))).collect::<Result<Vec<_>, _>>()?;
                    let extreme =
                        if agg == Aggregation::Min { values.into_iter().min() } else { values.into_iter().max() };
                    w.value = extreme.ok_or_else(|| corrupt("a window with events has no members"))?;
                }
            }
            (Aggregation::UniqueCount, Sample::Text(v)) => {
                if self.bump(member(key, v.as_bytes()), -1)? == 0 {
                    w.value =
                        w.value.checked_sub(Quantity::ONE).ok_or_else(|| corrupt("distinct values below zero"))?;
                }
            }
            (Aggregation::Latest, Sample::Number(_)) => {
                let at = (nanos(e.time) as u64, e.lsn);
                self.members.insert(member(key, &latest_member(at)), None);
                if w.latest == Some(at) {
                    w.latest = None;
                    w.value = Quantity::ZERO;
                    if let Some((k, v)) = self.members(&keys::members_prefix(key))?.pop_last() {
                        let at =
                            k.len().checked_sub(16).map(|i| &k[i..]).ok_or_else(|| corrupt("short latest member"))?;
                        let v: [u8; 16] =
                            v.as_slice().try_into().map_err(|_| corrupt("latest value is not 16 bytes"))?;
                        w.latest = Some((be(&at[..8]), be(&at[8..])));
                        w.value = quantity(Decimal::deserialize(v), key)?;
                    }
                }
            }
            (agg, s) => return Err(corrupt(&format!("{agg:?} meter {} sampled {s:?}", m.id))),
        }
        if w.events == 0 {
            w.value = Quantity::ZERO;
            w.latest = None;
        }
        Ok(())
    }

    /// Adds `delta` to a member's event count; returns the new count (a
    /// member at zero is deleted).
    fn bump(&mut self, key: Vec<u8>, delta: i64) -> Result<u64, LogError> {
        let current = match self.members.get(&key) {
            Some(v) => v.clone(),
            None => self.index.get(&key)?.map(|v| v.to_vec()),
        };
        let current = match current {
            None => 0,
            Some(v) => u64::from_le_bytes(v.as_slice().try_into().map_err(|_| corrupt("member count is not 8 bytes"))?),
        };
        let next = current.checked_add_signed(delta).ok_or_else(|| corrupt("member count below zero"))?;
        self.members.insert(key, (next > 0).then(|| next.to_le_bytes().to_vec()));
        Ok(next)
    }

    /// The members under `prefix`: the index merged with pending changes.
    fn members(&self, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, LogError> {
        let mut out = BTreeMap::new();
        for item in self.index.prefix(prefix) {
            let (k, v) = item?;
            out.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self.members.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out)
    }

    /// Writes every pending change into `batch`; returns the meters this
    /// batch marks failed (with their tenant), for the in-memory meters once
    /// it is committed.
    pub fn write(self, batch: &mut Batch<'_>) -> Result<Vec<(String, Meter)>, LogError> {
        for (tenant, m) in &self.failed {
            batch.insert(keys::meter(tenant, &m.id), serde_json::to_vec(m).map_err(|e| corrupt(&e.to_string()))?);
        }
        for (k, w) in self.windows {
            batch.insert(k, codec::encode_window(&w));
        }
        for (k, v) in self.members {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        for (k, delta) in self.unmetered {
            let now = match self.index.get(&k)? {
                Some(v) => i64::from_le_bytes(v.as_ref().try_into().map_err(|_| corrupt("unmetered count"))?),
                None => 0,
            };
            match now + delta {
                n if n > 0 => batch.insert(k, n.to_le_bytes().to_vec()),
                _ => batch.remove(k),
            }
        }
        Ok(self.failed)
    }
}

/// A sampled value as a window holds it (samples are parsed like
/// quantities, so only damaged data fails here).
fn quantity(q: Decimal, key: &[u8]) -> Result<Quantity, LogError> {
    Quantity::from_decimal(q).map_err(|e| window_error(key, Quantity::ZERO, e))
}

fn member(window: &[u8], value: &[u8]) -> Vec<u8> {
    let mut k = keys::members_prefix(window);
    k.extend_from_slice(value);
    k
}

fn latest_member((nanos, lsn): (u64, u64)) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&nanos.to_be_bytes());
    m[8..].copy_from_slice(&lsn.to_be_bytes());
    m
}

fn be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

fn decimal_member(member_key: &[u8], window: &[u8]) -> Result<Decimal, LogError> {
    let text = &member_key[keys::members_prefix(window).len()..];
    std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or_else(|| corrupt("member is not a decimal"))
}

/// Most pending changes before a build commits a batch.
const BUILD_BATCH: usize = 20_000;

/// Builds a new meter's windows from the events already stored, then marks it
/// active — all by the index's only writer (the event log's indexer), so no
/// event is counted twice or missed. Batches before the last are not
/// atomic with it: a build interrupted by a crash leaves the meter `building`,
/// and it is cleared and built again at start-up. Returns the events counted.
pub fn build(index: &Index, tenant: &str, meter: &Meter) -> Result<u64, LogError> {
    clear(index, tenant, &meter.id)?;
    let mut ov = Overlay::new(index);
    let mut counted = 0;
    for item in index.prefix(&keys::events_prefix(tenant, None, None)) {
        let (_, v) = item?;
        let e = codec::decode_event(&v).map_err(|source| LogError::Codec { what: "event".into(), source })?;
        if e.meter != meter.event_type {
            continue;
        }
        ov.update(tenant, meter, &e, true)?;
        counted += 1;
        if ov.len() >= BUILD_BATCH {
            let mut batch = index.batch();
            std::mem::replace(&mut ov, Overlay::new(index)).write(&mut batch)?;
            batch.commit()?;
        }
    }
    let mut batch = index.batch();
    ov.write(&mut batch)?;
    let active = Meter { state: MeterState::Active, ..meter.clone() };
    batch.insert(keys::meter(tenant, &meter.id), serde_json::to_vec(&active).map_err(|e| corrupt(&e.to_string()))?);
    // Events of this type are metered from now on.
    batch.remove(keys::unmetered(tenant, &meter.event_type));
    batch.commit()?;
    Ok(counted)
}

/// Removes a meter whose build failed: its definition, windows and members.
pub fn discard(index: &Index, tenant: &str, meter: &str) -> Result<(), LogError> {
    clear(index, tenant, meter)?;
    let mut batch = index.batch();
    batch.remove(keys::meter(tenant, meter));
    batch.commit()?;
    Ok(())
}

/// Deletes every window and member of a meter (an interrupted build's).
fn clear(index: &Index, tenant: &str, meter: &str) -> Result<(), LogError> {
    for prefix in [keys::windows_prefix(tenant, meter, None), keys::meter_members_prefix(tenant, meter)] {
        loop {
            let mut batch = index.batch();
            let mut n = 0;
            for item in index.prefix(&prefix).take(BUILD_BATCH) {
                batch.remove(item?.0);
                n += 1;
            }
            if n == 0 {
                break;
            }
            batch.commit()?;
        }
    }
    Ok(())
}
