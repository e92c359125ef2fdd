//! Incremental window updates, applied inside the event log's index batches
//! (so a window never disagrees with the events it counts), and the build of
//! a new meter's windows from the events already stored.
//!
//! What one event changes in a window is the core's rule
//! ([`tollgate_core::window::add`] and `remove`); here the members it
//! keeps live in the index beside the window.
//!
//! Windows touched by a batch are decoded once and written once; member
//! changes are kept in order so a window's members can be read merged with
//! what the batch has not written yet.

use super::meter::{Meter, MeterState, TenantMeters};
use crate::eventlog::codec;
use crate::eventlog::index::{Batch, Index};
use crate::eventlog::{LogError, StoredEvent, keys};
use crate::money::{DecimalError, Quantity};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use tollgate_core::window::{self, MeterWindow, UpdateError, WindowError};

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
        let mut members = IndexMembers { index: self.index, pending: &mut self.members, window: &key };
        let done =
            if add { window::add(&mut w, m, e, &mut members) } else { window::remove(&mut w, m, e, &mut members) };
        let done = done.map_err(|err| match err {
            UpdateError::Members(e) => e,
            UpdateError::Window(WindowError::Value { value, source }) => window_error(&key, value, source),
            UpdateError::Window(WindowError::Corrupt(what)) => corrupt(&what),
        });
        self.windows.insert(key, w);
        done
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

/// A window's members in the index, merged with the batch's pending
/// changes (member key: the window's members prefix + the value, or + the
/// (time, lsn) of a `latest` event, big-endian).
struct IndexMembers<'o> {
    index: &'o Index,
    pending: &'o mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    window: &'o [u8],
}

impl IndexMembers<'_> {
    fn key(&self, value: &[u8]) -> Vec<u8> {
        let mut k = keys::members_prefix(self.window);
        k.extend_from_slice(value);
        k
    }

    /// The members: the index merged with pending changes.
    fn merged(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, LogError> {
        let prefix = keys::members_prefix(self.window);
        let mut out = BTreeMap::new();
        for item in self.index.prefix(&prefix) {
            let (k, v) = item?;
            out.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self.pending.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out)
    }
}

fn member_corrupt(what: &str) -> UpdateError<LogError> {
    UpdateError::Window(WindowError::Corrupt(what.into()))
}

impl window::Members for IndexMembers<'_> {
    type Error = LogError;

    fn bump(&mut self, value: &[u8], delta: i64) -> Result<u64, UpdateError<LogError>> {
        let key = self.key(value);
        let current = match self.pending.get(&key) {
            Some(v) => v.clone(),
            None => self.index.get(&key).map_err(|e| UpdateError::Members(e.into()))?.map(|v| v.to_vec()),
        };
        let current = match current {
            None => 0,
            Some(v) => {
                u64::from_le_bytes(v.as_slice().try_into().map_err(|_| member_corrupt("member count is not 8 bytes"))?)
            }
        };
        let next = current.checked_add_signed(delta).ok_or_else(|| member_corrupt("member count below zero"))?;
        self.pending.insert(key, (next > 0).then(|| next.to_le_bytes().to_vec()));
        Ok(next)
    }

    fn values(&mut self) -> Result<Vec<Vec<u8>>, LogError> {
        let skip = keys::members_prefix(self.window).len();
        Ok(self.merged()?.into_keys().map(|k| k[skip..].to_vec()).collect())
    }

    fn set_latest(&mut self, (nanos, lsn): (u64, u64), value: Option<Decimal>) {
        let mut at = [0u8; 16];
        at[..8].copy_from_slice(&nanos.to_be_bytes());
        at[8..].copy_from_slice(&lsn.to_be_bytes());
        let key = self.key(&at);
        self.pending.insert(key, value.map(|q| q.serialize().to_vec()));
    }

    fn last_latest(&mut self) -> Result<Option<window::LatestMember>, UpdateError<LogError>> {
        let Some((k, v)) = self.merged().map_err(UpdateError::Members)?.pop_last() else { return Ok(None) };
        let at = k.len().checked_sub(16).map(|i| &k[i..]).ok_or_else(|| member_corrupt("short latest member"))?;
        let v: [u8; 16] = v.as_slice().try_into().map_err(|_| member_corrupt("latest value is not 16 bytes"))?;
        Ok(Some(((be(&at[..8]), be(&at[8..])), Decimal::deserialize(v))))
    }
}

fn be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
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
