//! What the writer, the indexer and the builder share: the not yet indexed
//! part of dedup, the backlog and its pace, progress, and the jobs between
//! the threads.

use super::build::{Build, Builds, MeterReply};
use super::codec::Record;
use super::error::LogError;
use super::index::Index;
use super::options::LogOptions;
use crate::metering::{Meter, Meters};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tollgate_core::event::{StoredEvent, Verdict};

/// How long a refused client should wait before retrying while the indexer's
/// pace is not measured yet; afterwards the hint is the time the indexer
/// needs to make room for the request, within [`MIN_RETRY_AFTER_MS`,
/// `MAX_RETRY_AFTER_MS`].
pub const RETRY_AFTER_MS: u64 = 200;
pub(super) const MIN_RETRY_AFTER_MS: u64 = 10;
pub(super) const MAX_RETRY_AFTER_MS: u64 = 2_000;
/// Most events one group commit takes.
pub(super) const MAX_GROUP_EVENTS: usize = 50_000;
/// Most records one index batch applies.
pub(super) const MAX_INDEX_BATCH: usize = 10_000;
/// How long a deferred write waits in [`Durability::UnsafeAckBeforeWrite`].
pub(super) const UNSAFE_DEFER: Duration = Duration::from_millis(300);

pub(super) type Reply = tokio::sync::oneshot::Sender<Result<Vec<Verdict>, LogError>>;

pub(super) enum Job {
    Append { tenant: String, events: Vec<StoredEvent>, reply: Reply },
    Stop,
}

/// Work for the indexer, in order.
pub(super) enum IndexJob {
    Records(Vec<Record>),
    /// Build a new meter's windows and activate it.
    CreateMeter {
        tenant: String,
        meter: Meter,
        reply: tokio::sync::oneshot::Sender<Result<(Meter, bool), LogError>>,
    },
    /// The writer stopped: everything it sent is before this.
    Stop,
}

/// Work for the builder thread, from the indexer.
pub(super) enum BuildJob {
    Build(Box<Build>),
    /// Another caller creating a meter that is being built: answered when
    /// the build is.
    Join {
        tenant: String,
        id: String,
        reply: MeterReply,
    },
}

#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    pub(super) applied: u64,
    pub(super) failed: Option<String>,
    /// Writes are refused for now (the storage refused one: ENOSPC, EIO);
    /// cleared once a write succeeds again, without a restart.
    pub(super) degraded: Option<String>,
}

/// How long a client is told to wait while the storage refuses writes, and
/// how often the writer tries it again.
pub(super) const STORAGE_RETRY_MS: u64 = 500;

/// Events accepted but not yet indexed, per tenant and id: the part of
/// dedup that is not on disk in the index yet.
/// Hashed with foldhash: several times faster than SipHash on this path and
/// still seeded per process.
pub(super) type Pending = HashMap<String, HashMap<String, Arc<StoredEvent>, FoldHash>, FoldHash>;
pub(super) type FoldHash = foldhash::fast::RandomState;

pub(super) struct Shared {
    pub(super) index: Index,
    pub(super) meters: Arc<Meters>,
    pub(super) pending: Mutex<Pending>,
    pub(super) unindexed: AtomicUsize,
    /// Events of requests waiting for room in the backlog (see
    /// [`EventLog::admit`]).
    pub(super) admitting: AtomicUsize,
    /// Records the indexer applies per second (moving average; 0 = not
    /// measured yet): the basis of the retry hint when saturated.
    pub(super) index_rate: AtomicU64,
    /// Last lsn handed out.
    pub(super) last_lsn: AtomicU64,
    /// Last lsn handed out per tenant: what a tenant's read waits for.
    pub(super) tenant_lsn: Mutex<HashMap<String, u64, FoldHash>>,
    /// Meters being built, by (tenant, meter id): the event key the build
    /// has reached. Events indexed meanwhile below it are counted as they
    /// are indexed, those above it by the build (see [`Build`]).
    pub(super) builds: Mutex<Builds>,
    /// Held by the builder for each step, and by the indexer while it
    /// applies records of a tenant with a meter being built: a build's
    /// cursor moves only while no such records are being applied.
    pub(super) build_step: Mutex<()>,
    /// The indexer waits for `build_step`: the builder lets it go first.
    pub(super) indexer_waits: std::sync::atomic::AtomicBool,
    /// Highest lsn whose index entries are flushed to disk.
    pub(super) durable_through: AtomicU64,
    pub(super) progress: tokio::sync::watch::Sender<Progress>,
    pub(super) stopping: std::sync::atomic::AtomicBool,
    pub(super) hold_indexing: std::sync::atomic::AtomicBool,
    pub(super) options: LogOptions,
}

impl Shared {
    pub(super) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn builds(&self) -> MutexGuard<'_, Builds> {
        self.builds.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn fail(&self, why: String) {
        tracing::error!(error = %why, "event log failed; refusing writes until restarted");
        self.progress.send_modify(|p| {
            p.failed.get_or_insert(why);
        });
    }

    pub(super) fn failed(&self) -> Option<String> {
        self.progress.borrow().failed.clone()
    }

    pub(super) fn degraded(&self) -> Option<String> {
        self.progress.borrow().degraded.clone()
    }

    pub(super) fn degrade(&self, why: String) {
        if self.degraded().is_none() {
            tracing::error!(error = %why, "the storage refused a write; writes are refused and retried until one succeeds");
        }
        self.progress.send_modify(|p| p.degraded = Some(why));
    }

    pub(super) fn recover(&self) {
        if self.degraded().is_some() {
            tracing::info!("the storage takes writes again; the event log accepts writes");
            self.progress.send_modify(|p| p.degraded = None);
        }
    }

    pub(super) fn refused(&self, why: String) -> LogError {
        LogError::StorageRefused { reason: why, retry_after_ms: STORAGE_RETRY_MS }
    }

    pub(super) fn retry_after_ms(&self, excess: usize) -> u64 {
        retry_hint_ms(excess, self.index_rate.load(Ordering::Relaxed))
    }

    /// Folds one applied batch into the indexer's measured pace.
    pub(super) fn record_index_pace(&self, records: usize, took: Duration) {
        let old = self.index_rate.load(Ordering::Relaxed);
        self.index_rate.store(next_pace(old, records, took), Ordering::Relaxed);
    }
}

/// How long until an indexer applying `per_s` records a second (0: not
/// measured yet) has applied `excess` more.
pub(super) fn retry_hint_ms(excess: usize, per_s: u64) -> u64 {
    match per_s {
        0 => RETRY_AFTER_MS,
        per_s => ((excess as u64).saturating_mul(1000) / per_s).clamp(MIN_RETRY_AFTER_MS, MAX_RETRY_AFTER_MS),
    }
}

/// The indexer's pace after a batch of `records` that took `took`: a moving
/// average, in records per second, never 0 once measured.
pub(super) fn next_pace(old: u64, records: usize, took: Duration) -> u64 {
    let per_s = u64::try_from(records as u128 * 1_000_000 / took.as_micros().max(1)).unwrap_or(u64::MAX);
    let new = if old == 0 { per_s } else { old.saturating_mul(3).saturating_add(per_s) / 4 };
    new.max(1)
}
