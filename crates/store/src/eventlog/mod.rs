//! The event log: every accepted usage event, durable before it is
//! acknowledged, counted exactly once, queryable for replay and lineage.
//!
//! Write path (one writer thread, group commit):
//! 1. a request's validated events become a job on a bounded queue;
//! 2. the writer takes every job waiting, decides each event against dedup
//!    (the entries not yet indexed, held in memory, then the index on disk),
//!    frames the accepted ones into the write-ahead log (`wal`) and makes
//!    them durable with **one** fdatasync for the whole group, then answers
//!    every job of the group — so throughput grows with concurrency;
//! 3. an indexer thread applies the records to the [`index`] (an LSM tree:
//!    events by customer, event type and time; dedup entries; revision
//!    history; the windows of every meter of the event's type; the
//!    checkpoint) in one atomic batch per round. Creating a meter is a job
//!    for the indexer too, so its build from the stored events and the
//!    events indexed after it count each event exactly once.
//!    A periodic persist (fsync) makes the checkpoint durable, and WAL
//!    segments behind it are deleted. On start-up, records after the
//!    checkpoint are replayed, so a crash at any moment loses nothing
//!    acknowledged and counts nothing twice.
//!
//! Dedup is by (tenant, event id) with no expiry unless
//! [`LogOptions::dedup_retention`] is set; then the indexer also sweeps
//! expired dedup entries away, in its own batches (it is the index's only
//! writer, so a sweep never races with a new entry for the same id). An
//! event may be corrected (same id, higher `revision`) or retracted (a
//! higher revision with `retracted`); the revision it replaces leaves its
//! window and moves to the history.
//!
//! Backpressure: at most [`LogOptions::max_unindexed_events`] events may be
//! queued or waiting for the indexer; a request beyond that waits briefly
//! for room ([`LogOptions::admission_wait`]), then is refused with [`LogError::Saturated`]
//! (and nothing of it is stored), so memory stays bounded.
//!
//! Keys in the index (components NUL-separated, see [`keys`]):
//! `d·tenant·id` → [`codec::DedupEntry`]; `e·tenant·customer·meter·time·lsn`
//! → live event; `h·tenant·id·revision` → replaced revision or retraction;
//! `M·tenant·meter` → meter definition; `w·tenant·meter·customer·start·group`
//! → [`crate::metering::MeterWindow`]; `v·…` → a window's members (distinct
//! values, extremes, latest candidates); `x·tenant·type` → live events no
//! meter reads; `c` → checkpoint lsn.

pub mod codec;
pub mod index;
pub mod keys;
pub mod query;
pub mod wal;

use crate::metering::update::{self, Overlay};
use crate::metering::{Meter, MeterState, Meters};
use crate::money::DecimalError;
use chrono::{DateTime, Utc};
use codec::{CodecError, DedupEntry, Record};
use index::{Index, IndexError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
pub use tollgate_core::event::{StoredEvent, Verdict};
use wal::{Wal, WalError};

/// How acknowledgements relate to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the group's fdatasync. The only mode for real use.
    Fsync,
    /// Acknowledge first and write the log up to 300 ms later. Exists only
    /// so the crash test can show that it loses acknowledged events; set by
    /// the environment variable [`UNSAFE_ACK_BEFORE_WRITE_ENV`], in builds
    /// with the `test-switches` feature (tests only).
    #[cfg(feature = "test-switches")]
    UnsafeAckBeforeWrite,
}

/// Test-only switch: `1` makes the gateway acknowledge before writing.
#[cfg(feature = "test-switches")]
pub const UNSAFE_ACK_BEFORE_WRITE_ENV: &str = "TOLLGATE_TEST_ONLY_UNSAFE_ACK_BEFORE_WRITE";

/// Tuning of the event log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub wal_dir: PathBuf,
    /// A WAL segment is closed and a new one started beyond this size.
    pub segment_bytes: u64,
    /// Most events accepted into the write path and not yet indexed.
    pub max_unindexed_events: usize,
    /// Longest a request waits for room among those before it is refused as
    /// saturated: a backlog that drains within it costs the client no retry
    /// (nor the gateway a second decoding of the request).
    pub admission_wait: Duration,
    /// Forget an event id this long after it was received (None: never).
    pub dedup_retention: Option<chrono::Duration>,
    pub durability: Durability,
    /// How often the index is flushed and WAL segments behind it deleted.
    pub checkpoint_every: Duration,
    /// How often expired dedup entries are swept (with a retention only;
    /// default: a tenth of the retention, between 100 ms and 1 h).
    pub sweep_every: Option<Duration>,
}

impl LogOptions {
    pub fn new(wal_dir: PathBuf) -> LogOptions {
        LogOptions {
            wal_dir,
            segment_bytes: 64 << 20,
            max_unindexed_events: 50_000,
            admission_wait: Duration::from_millis(200),
            dedup_retention: None,
            durability: Durability::Fsync,
            checkpoint_every: Duration::from_secs(1),
            sweep_every: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("event log record {what}: {source}")]
    Codec { what: String, source: CodecError },
    #[error("window {window}: {source}")]
    Window { window: String, source: DecimalError },
    #[error(
        "the write path is saturated: {queued} events are waiting to be stored and indexed (limit {limit}, \
         ingest.max_unindexed_events); nothing of this request was stored; retry after {retry_after_ms} ms"
    )]
    Saturated { queued: usize, limit: usize, retry_after_ms: u64 },
    #[error(
        "the event log's storage refused a write ({reason}); nothing of this request was stored; \
         writes are retried in the background: retry after {retry_after_ms} ms"
    )]
    StorageRefused { reason: String, retry_after_ms: u64 },
    #[error("the event log stopped after a storage failure and accepts nothing until restarted: {0}")]
    Failed(String),
    #[error("the event log is shut down")]
    Closed,
    #[error("meter {id} exists with a different definition; meters are immutable: create one with a new id")]
    MeterConflict { id: String },
    #[error("at most {limit} meters per tenant")]
    TooManyMeters { limit: usize },
}

impl LogError {
    fn codec(what: impl Into<String>) -> impl FnOnce(CodecError) -> LogError {
        let what = what.into();
        move |source| LogError::Codec { what, source }
    }
}

/// How long a refused client should wait before retrying while the indexer's
/// pace is not measured yet; afterwards the hint is the time the indexer
/// needs to make room for the request, within [`MIN_RETRY_AFTER_MS`,
/// `MAX_RETRY_AFTER_MS`].
pub const RETRY_AFTER_MS: u64 = 200;
const MIN_RETRY_AFTER_MS: u64 = 10;
const MAX_RETRY_AFTER_MS: u64 = 2_000;
/// Most events one group commit takes.
const MAX_GROUP_EVENTS: usize = 50_000;
/// Most records one index batch applies.
const MAX_INDEX_BATCH: usize = 10_000;
/// How long a deferred write waits in [`Durability::UnsafeAckBeforeWrite`].
const UNSAFE_DEFER: Duration = Duration::from_millis(300);

type Reply = tokio::sync::oneshot::Sender<Result<Vec<Verdict>, LogError>>;

enum Job {
    Append { tenant: String, events: Vec<StoredEvent>, reply: Reply },
    Stop,
}

/// Work for the indexer, in order.
enum IndexJob {
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
enum BuildJob {
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
struct Progress {
    applied: u64,
    failed: Option<String>,
    /// Writes are refused for now (the storage refused one: ENOSPC, EIO);
    /// cleared once a write succeeds again, without a restart.
    degraded: Option<String>,
}

/// How long a client is told to wait while the storage refuses writes, and
/// how often the writer tries it again.
const STORAGE_RETRY_MS: u64 = 500;

/// Events accepted but not yet indexed, per tenant and id: the part of
/// dedup that is not on disk in the index yet.
/// Hashed with foldhash: several times faster than SipHash on this path and
/// still seeded per process.
type Pending = HashMap<String, HashMap<String, Arc<StoredEvent>, FoldHash>, FoldHash>;
type FoldHash = foldhash::fast::RandomState;

struct Shared {
    index: Index,
    meters: Arc<Meters>,
    pending: Mutex<Pending>,
    unindexed: AtomicUsize,
    /// Events of requests waiting for room in the backlog (see
    /// [`EventLog::admit`]).
    admitting: AtomicUsize,
    /// Records the indexer applies per second (moving average; 0 = not
    /// measured yet): the basis of the retry hint when saturated.
    index_rate: AtomicU64,
    /// Last lsn handed out.
    last_lsn: AtomicU64,
    /// Last lsn handed out per tenant: what a tenant's read waits for.
    tenant_lsn: Mutex<HashMap<String, u64, FoldHash>>,
    /// Meters being built, by (tenant, meter id): the event key the build
    /// has reached. Events indexed meanwhile below it are counted as they
    /// are indexed, those above it by the build (see [`Build`]).
    builds: Mutex<Builds>,
    /// Held by the builder for each step, and by the indexer while it
    /// applies records of a tenant with a meter being built: a build's
    /// cursor moves only while no such records are being applied.
    build_step: Mutex<()>,
    /// The indexer waits for `build_step`: the builder lets it go first.
    indexer_waits: std::sync::atomic::AtomicBool,
    /// Highest lsn whose index entries are flushed to disk.
    durable_through: AtomicU64,
    progress: tokio::sync::watch::Sender<Progress>,
    stopping: std::sync::atomic::AtomicBool,
    hold_indexing: std::sync::atomic::AtomicBool,
    options: LogOptions,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn builds(&self) -> MutexGuard<'_, Builds> {
        self.builds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, why: String) {
        tracing::error!(error = %why, "event log failed; refusing writes until restarted");
        self.progress.send_modify(|p| {
            p.failed.get_or_insert(why);
        });
    }

    fn failed(&self) -> Option<String> {
        self.progress.borrow().failed.clone()
    }

    fn degraded(&self) -> Option<String> {
        self.progress.borrow().degraded.clone()
    }

    fn degrade(&self, why: String) {
        if self.degraded().is_none() {
            tracing::error!(error = %why, "the storage refused a write; writes are refused and retried until one succeeds");
        }
        self.progress.send_modify(|p| p.degraded = Some(why));
    }

    fn recover(&self) {
        if self.degraded().is_some() {
            tracing::info!("the storage takes writes again; the event log accepts writes");
            self.progress.send_modify(|p| p.degraded = None);
        }
    }

    fn refused(&self, why: String) -> LogError {
        LogError::StorageRefused { reason: why, retry_after_ms: STORAGE_RETRY_MS }
    }

    fn retry_after_ms(&self, excess: usize) -> u64 {
        retry_hint_ms(excess, self.index_rate.load(Ordering::Relaxed))
    }

    /// Folds one applied batch into the indexer's measured pace.
    fn record_index_pace(&self, records: usize, took: Duration) {
        let old = self.index_rate.load(Ordering::Relaxed);
        self.index_rate.store(next_pace(old, records, took), Ordering::Relaxed);
    }
}

/// How long until an indexer applying `per_s` records a second (0: not
/// measured yet) has applied `excess` more.
fn retry_hint_ms(excess: usize, per_s: u64) -> u64 {
    match per_s {
        0 => RETRY_AFTER_MS,
        per_s => ((excess as u64).saturating_mul(1000) / per_s).clamp(MIN_RETRY_AFTER_MS, MAX_RETRY_AFTER_MS),
    }
}

/// The indexer's pace after a batch of `records` that took `took`: a moving
/// average, in records per second, never 0 once measured.
fn next_pace(old: u64, records: usize, took: Duration) -> u64 {
    let per_s = u64::try_from(records as u128 * 1_000_000 / took.as_micros().max(1)).unwrap_or(u64::MAX);
    let new = if old == 0 { per_s } else { old.saturating_mul(3).saturating_add(per_s) / 4 };
    new.max(1)
}

/// How current a read is (see [`EventLog::sync_within`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Every event acknowledged before the read is in it.
    pub caught_up: bool,
    /// The last log position the index had applied.
    pub through_lsn: u64,
}

/// A handle on the event log; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    index_jobs: mpsc::Sender<IndexJob>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl EventLog {
    /// Opens the log over `index`: replays the WAL after the checkpoint into
    /// the index, makes that durable, and starts the writer and indexer.
    pub fn open(index: Index, options: LogOptions) -> Result<EventLog, LogError> {
        let checkpoint = read_checkpoint(&index)?;
        let meters = Arc::new(Meters::default());
        let mut unfinished = Vec::new();
        for item in index.prefix(keys::METERS) {
            let (k, v) = item?;
            let tenant = k[keys::METERS.len()..].split(|b| *b == 0).next().unwrap_or_default();
            let tenant = String::from_utf8_lossy(tenant).into_owned();
            let meter = match crate::metering::window::decode_meter(&v) {
                Ok(m) => m,
                // One tenant's damaged definition never stops the start: that
                // meter is left out (it counts nothing) and said so.
                Err(e) => {
                    tracing::error!(%tenant, key = %String::from_utf8_lossy(&k).replace('\0', "/"), error = %e,
                        "a stored meter definition is unreadable; the meter is left out");
                    continue;
                }
            };
            if meter.state == MeterState::Building {
                unfinished.push((tenant.clone(), meter.clone()));
            }
            meters.insert(&tenant, meter);
        }
        let mut replay = Vec::new();
        let mut replayed = 0usize;
        let (wal, next_lsn) = Wal::recover(&options.wal_dir, options.segment_bytes, checkpoint + 1, |rec| {
            if rec.lsn > checkpoint {
                replay.push(rec);
                if replay.len() >= MAX_INDEX_BATCH {
                    replayed += replay.len();
                    apply(&index, &meters, &Builds::default(), &std::mem::take(&mut replay))?;
                }
            }
            Ok::<(), LogError>(())
        })?;
        replayed += replay.len();
        apply(&index, &meters, &Builds::default(), &replay)?;
        // Builds a crash interrupted start again, over every event stored.
        for (tenant, meter) in unfinished {
            match update::build(&index, &tenant, &meter) {
                Ok(counted) => {
                    tracing::info!(%tenant, meter = %meter.id, events = counted, "finished building an interrupted meter");
                    meters.insert(&tenant, Meter { state: MeterState::Active, ..meter });
                }
                // The gateway still starts; the meter stays `building` and
                // unusable (visible in GET /v1/meters) until dealt with.
                Err(e) => tracing::error!(%tenant, meter = %meter.id, error = %e, "building an interrupted meter"),
            }
        }
        index.persist()?;
        let applied = next_lsn - 1;
        if replayed > 0 {
            tracing::info!(records = replayed, through = applied, "replayed the write-ahead log into the index");
        }
        let (progress, _) = tokio::sync::watch::channel(Progress { applied, failed: None, degraded: None });
        let shared = Arc::new(Shared {
            index,
            meters,
            pending: Mutex::new(HashMap::default()),
            unindexed: AtomicUsize::new(0),
            admitting: AtomicUsize::new(0),
            index_rate: AtomicU64::new(0),
            last_lsn: AtomicU64::new(applied),
            tenant_lsn: Mutex::new(HashMap::default()),
            builds: Mutex::new(Builds::default()),
            build_step: Mutex::new(()),
            indexer_waits: std::sync::atomic::AtomicBool::new(false),
            durable_through: AtomicU64::new(applied),
            progress,
            stopping: std::sync::atomic::AtomicBool::new(false),
            hold_indexing: std::sync::atomic::AtomicBool::new(false),
            options,
        });
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(4096);
        let (index_jobs, index_rx) = mpsc::channel::<IndexJob>();
        let w = shared.clone();
        let index_tx = index_jobs.clone();
        let writer = std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || Writer { shared: w, wal, next_lsn, index: index_tx }.run(job_rx))
            .map_err(|e| LogError::Failed(format!("starting the writer thread: {e}")))?;
        let (build_jobs, build_rx) = mpsc::channel::<BuildJob>();
        let b = shared.clone();
        let builder = std::thread::Builder::new()
            .name("eventlog-builder".into())
            .spawn(move || build_loop(&b, &build_rx))
            .map_err(|e| LogError::Failed(format!("starting the meter builder thread: {e}")))?;
        let i = shared.clone();
        let indexer = std::thread::Builder::new()
            .name("eventlog-indexer".into())
            .spawn(move || index_loop(&i, &index_rx, &build_jobs, applied))
            .map_err(|e| LogError::Failed(format!("starting the indexer thread: {e}")))?;
        Ok(EventLog { shared, jobs, index_jobs, threads: Arc::new(Mutex::new(vec![writer, indexer, builder])) })
    }

    /// Stores a tenant's validated events; one verdict per event, in order,
    /// returned once every accepted event is durable.
    pub async fn append(&self, tenant: &str, events: Vec<StoredEvent>) -> Result<Vec<Verdict>, LogError> {
        {
            let p = self.shared.progress.borrow();
            if let Some(why) = &p.failed {
                return Err(LogError::Failed(why.clone()));
            }
            if let Some(why) = &p.degraded {
                return Err(self.shared.refused(why.clone()));
            }
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len();
        let limit = self.shared.options.max_unindexed_events;
        let queued = self.admit(n).await?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.jobs.try_send(Job::Append { tenant: tenant.to_string(), events, reply }) {
            Ok(()) => {}
            Err(e) => {
                self.shared.unindexed.fetch_sub(n, Ordering::AcqRel);
                return Err(match e {
                    TrySendError::Full(_) => {
                        LogError::Saturated { queued, limit, retry_after_ms: self.shared.retry_after_ms(n) }
                    }
                    TrySendError::Disconnected(_) => LogError::Closed,
                });
            }
        }
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Reserves room for `n` events in the unindexed backlog; returns how
    /// many were queued before them. When the backlog is full, waits up to
    /// [`LogOptions::admission_wait`] for the indexer to make room, then refuses with
    /// [`LogError::Saturated`] and a retry hint. Requests waiting here may
    /// hold at most as many events as the backlog (beyond that they are
    /// refused at once), so memory stays bounded by twice the backlog.
    async fn admit(&self, n: usize) -> Result<usize, LogError> {
        let shared = &self.shared;
        let limit = shared.options.max_unindexed_events;
        // Subscribed before the first try: progress made after it wakes us.
        let mut progress = shared.progress.subscribe();
        let deadline = tokio::time::Instant::now() + shared.options.admission_wait;
        // Our events in the waiting room, given back however this ends
        // (also when the caller gives up and drops this future).
        struct Waiting<'a>(&'a AtomicUsize, usize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(self.1, Ordering::AcqRel);
            }
        }
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            let queued = shared.unindexed.fetch_add(n, Ordering::AcqRel);
            if queued == 0 || queued + n <= limit {
                return Ok(queued);
            }
            shared.unindexed.fetch_sub(n, Ordering::AcqRel);
            let refused =
                LogError::Saturated { queued, limit, retry_after_ms: shared.retry_after_ms(queued + n - limit) };
            if waiting.is_none() {
                let room = Waiting(&shared.admitting, n);
                if shared.admitting.fetch_add(n, Ordering::AcqRel) + n > limit {
                    return Err(refused);
                }
                waiting = Some(room);
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) if progress.borrow().failed.is_none() => {}
                Ok(Ok(())) => return Err(LogError::Failed(shared.failed().unwrap_or_default())),
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => return Err(refused),
            }
        }
    }

    /// Waits until everything acknowledged so far is visible in the index
    /// (windows and queries): read-your-writes for the read APIs.
    pub async fn sync(&self) -> Result<(), LogError> {
        self.sync_to(self.shared.last_lsn.load(Ordering::Acquire)).await
    }

    /// [`EventLog::sync`] for one tenant's reads: waits only for what was
    /// acknowledged to that tenant, so another tenant's backlog or heavy
    /// indexing work does not hold it up.
    pub async fn sync_tenant(&self, tenant: &str) -> Result<(), LogError> {
        let target = self.shared.tenant_lsn.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).copied();
        self.sync_to(target.unwrap_or(0)).await
    }

    async fn sync_to(&self, target: u64) -> Result<(), LogError> {
        let mut rx = self.shared.progress.subscribe();
        // While the storage refuses writes, reads answer from what is stored.
        let p = rx
            .wait_for(|p| p.applied >= target || p.failed.is_some() || p.degraded.is_some())
            .await
            .map_err(|_| LogError::Closed)?;
        match &p.failed {
            Some(why) => Err(LogError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// [`EventLog::sync`] for at most `wait`: whether the index then shows
    /// everything acknowledged before the call, and the log position (lsn)
    /// it reflects — for reads that may not wait long and must say so when
    /// their answer is older than an acknowledgement.
    pub async fn sync_within(&self, tenant: &str, wait: Duration) -> Result<Freshness, LogError> {
        let target = self.shared.tenant_lsn.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).copied();
        if let Ok(done) = tokio::time::timeout(wait, self.sync_tenant(tenant)).await {
            done?;
        }
        // Measured, not assumed: a sync also returns early while the
        // storage refuses writes (reads then answer from what is indexed).
        let through_lsn = self.shared.progress.borrow().applied;
        Ok(Freshness { caught_up: through_lsn >= target.unwrap_or(0), through_lsn })
    }

    /// The index (read-only use: `query`, `metering::window`).
    pub fn index(&self) -> &Index {
        &self.shared.index
    }

    /// Every tenant's meters (active ones are counted into as events are indexed).
    pub fn meters(&self) -> &Meters {
        &self.shared.meters
    }

    /// Creates a meter: its windows are built from the events stored so far,
    /// then it counts every new event. Answers once it is active, with the
    /// meter and whether it is new (`false`: the same definition existed).
    pub async fn create_meter(&self, tenant: &str, meter: Meter) -> Result<(Meter, bool), LogError> {
        if let Some(why) = self.shared.failed() {
            return Err(LogError::Failed(why));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.index_jobs
            .send(IndexJob::CreateMeter { tenant: tenant.to_string(), meter, reply })
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Pauses (or resumes) indexing, e.g. for maintenance on the index:
    /// writes are still acknowledged, durable in the WAL, until
    /// [`LogOptions::max_unindexed_events`] wait; then clients are told to
    /// retry later. Reads see nothing new while held.
    pub fn hold_indexing(&self, hold: bool) {
        self.shared.hold_indexing.store(hold, Ordering::Release);
    }

    /// Stops the writer and indexer after what is queued, flushes the index.
    pub async fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let jobs = self.jobs.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = jobs.send(Job::Stop);
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

fn read_checkpoint(index: &Index) -> Result<u64, LogError> {
    Ok(match index.get(keys::CHECKPOINT)? {
        Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().unwrap_or_default()),
        Some(_) => return Err(LogError::Failed("checkpoint record is not 8 bytes".into())),
        None => 0,
    })
}

/// The current revision of an event id, from memory or the index; `None`
/// when unknown (or forgotten under a retention).
fn current(
    shared: &Shared,
    pending: &Pending,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Current>, LogError> {
    if let Some(e) = pending.get(tenant).and_then(|t| t.get(id)) {
        return Ok(Some(Current::Pending(e.clone())));
    }
    let Some(bytes) = shared.index.get(&keys::dedup(tenant, id))? else {
        return Ok(None);
    };
    let entry = codec::decode_dedup(&bytes).map_err(LogError::codec(format!("dedup entry of {id}")))?;
    if let Some(retention) = shared.options.dedup_retention
        && entry.received_at + retention < now
    {
        return Ok(None);
    }
    Ok(Some(Current::Indexed(entry)))
}

enum Current {
    Pending(Arc<StoredEvent>),
    Indexed(DedupEntry),
}

impl Current {
    fn revision(&self) -> u32 {
        match self {
            Current::Pending(e) => e.revision,
            Current::Indexed(d) => d.revision,
        }
    }
    fn digest(&self) -> &str {
        match self {
            Current::Pending(e) => &e.digest,
            Current::Indexed(d) => &d.digest,
        }
    }
    /// The stored event of this revision (read from the index if need be).
    fn event(self, index: &Index) -> Result<Arc<StoredEvent>, LogError> {
        match self {
            Current::Pending(e) => Ok(e),
            Current::Indexed(d) => {
                let bytes = index
                    .get(&d.location)?
                    .ok_or_else(|| LogError::Failed("a dedup entry points at a missing event".into()))?;
                Ok(Arc::new(codec::decode_event(&bytes).map_err(LogError::codec("event"))?))
            }
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    wal: Wal,
    next_lsn: u64,
    index: mpsc::Sender<IndexJob>,
}

impl Writer {
    fn run(mut self, jobs: Receiver<Job>) {
        let mut frames: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut deferred_since: Option<Instant> = None;
        let mut last_probe = Instant::now();
        let mut removed_through = 0;
        loop {
            let mut group = Vec::new();
            let mut stop = false;
            let first = match jobs.recv_timeout(Duration::from_millis(50)) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    stop = true;
                    None
                }
            };
            let mut events = 0;
            let take = |job: Job, group: &mut Vec<(String, Vec<StoredEvent>, Reply)>, events: &mut usize| match job {
                Job::Append { tenant, events: e, reply } => {
                    *events += e.len();
                    group.push((tenant, e, reply));
                    false
                }
                Job::Stop => true,
            };
            if let Some(j) = first {
                stop |= take(j, &mut group, &mut events);
            }
            while !stop && events < MAX_GROUP_EVENTS {
                match jobs.try_recv() {
                    Ok(j) => stop |= take(j, &mut group, &mut events),
                    Err(_) => break,
                }
            }
            if self.shared.degraded().is_some() && last_probe.elapsed() >= Duration::from_millis(STORAGE_RETRY_MS) {
                last_probe = Instant::now();
                match self.wal.probe() {
                    Ok(()) => self.shared.recover(),
                    Err(e) => tracing::debug!(error = %e, "the storage still refuses writes"),
                }
            }
            if !group.is_empty() {
                self.commit(group, &mut frames, &mut deferred_since);
            }
            let due = deferred_since.is_some_and(|t| t.elapsed() >= UNSAFE_DEFER);
            if !frames.is_empty() && (due || stop) {
                if let Err(e) = self.wal.append(&frames, false) {
                    self.shared.fail(e.to_string());
                }
                frames.clear();
                deferred_since = None;
            }
            let durable = self.shared.durable_through.load(Ordering::Acquire);
            if durable > removed_through {
                match self.wal.remove_through(durable) {
                    Ok(n) if n > 0 => tracing::debug!(segments = n, through = durable, "deleted indexed WAL segments"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "deleting indexed WAL segments"),
                }
                removed_through = durable;
            }
            if stop {
                break;
            }
        }
        let _ = self.index.send(IndexJob::Stop);
    }

    /// Takes back the decisions of a group whose write failed: its lsns are
    /// handed out again, its events leave the not-yet-indexed dedup entries
    /// (a correction's replaced revision, if not indexed, comes back), and
    /// the backlog gives their room back.
    fn undo(&mut self, records: &[Record]) {
        let Some(first) = records.first().map(|r| r.lsn) else { return };
        let mut pending = self.shared.pending();
        for r in records.iter().rev() {
            let Some(t) = pending.get_mut(&r.tenant) else { continue };
            if t.get(&r.event.id).is_some_and(|e| e.lsn == r.lsn) {
                t.remove(&r.event.id);
            }
            if let Some(old) = &r.supersedes {
                let indexed = self
                    .shared
                    .index
                    .get(&keys::dedup(&r.tenant, &old.id))
                    .ok()
                    .flatten()
                    .and_then(|b| codec::decode_dedup(&b).ok())
                    .is_some_and(|d| d.revision >= old.revision);
                if !indexed {
                    t.insert(old.id.clone(), old.clone());
                }
            }
        }
        pending.retain(|_, t| !t.is_empty());
        drop(pending);
        self.next_lsn = first;
        self.shared.last_lsn.store(first - 1, Ordering::Release);
        let mut tenants = self.shared.tenant_lsn.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            if let Some(l) = tenants.get_mut(&r.tenant) {
                *l = (*l).min(first - 1);
            }
        }
        drop(tenants);
        self.shared.unindexed.fetch_sub(records.len(), Ordering::AcqRel);
    }

    /// Decides, writes and acknowledges one group of jobs.
    fn commit(
        &mut self,
        group: Vec<(String, Vec<StoredEvent>, Reply)>,
        frames: &mut Vec<u8>,
        #[cfg_attr(not(feature = "test-switches"), allow(unused_variables))] deferred_since: &mut Option<Instant>,
    ) {
        if let Some(why) = self.shared.failed() {
            for (_, _, reply) in group {
                let _ = reply.send(Err(LogError::Failed(why.clone())));
            }
            return;
        }
        if let Some(why) = self.shared.degraded() {
            let events: usize = group.iter().map(|(_, e, _)| e.len()).sum();
            self.shared.unindexed.fetch_sub(events, Ordering::AcqRel);
            for (_, _, reply) in group {
                let _ = reply.send(Err(self.shared.refused(why.clone())));
            }
            return;
        }
        let now = Utc::now();
        let mut records = Vec::new();
        let mut answers = Vec::with_capacity(group.len());
        let mut not_accepted = 0;
        let decided: Result<(), LogError> = (|| {
            let mut pending = self.shared.pending();
            for (tenant, events, reply) in group {
                let mut verdicts = Vec::with_capacity(events.len());
                for mut ev in events {
                    let stored = current(&self.shared, &pending, &tenant, &ev.id, now)?;
                    let verdict =
                        tollgate_core::event::decide(stored.as_ref().map(|c| (c.revision(), c.digest())), &ev);
                    let supersedes = match stored {
                        Some(c) if verdict == Verdict::Accepted => Some(c.event(&self.shared.index)?),
                        _ => None,
                    };
                    verdicts.push(verdict);
                    if verdict != Verdict::Accepted {
                        not_accepted += 1;
                        continue;
                    }
                    ev.lsn = self.next_lsn;
                    self.next_lsn += 1;
                    let event = Arc::new(ev);
                    pending.entry(tenant.clone()).or_default().insert(event.id.clone(), event.clone());
                    let rec = Record { lsn: event.lsn, tenant: tenant.clone(), event, supersedes };
                    wal::push_frame(frames, &rec);
                    records.push(rec);
                }
                if let Some(last) = records.last().filter(|r| r.tenant == tenant) {
                    self.shared.tenant_lsn.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.clone(), last.lsn);
                }
                answers.push((reply, verdicts));
            }
            Ok(())
        })();
        self.shared.unindexed.fetch_sub(not_accepted, Ordering::AcqRel);
        if let Err(e) = decided {
            self.shared.fail(e.to_string());
            for (reply, _) in answers {
                let _ = reply.send(Err(LogError::Failed(e.to_string())));
            }
            return;
        }
        self.shared.last_lsn.store(self.next_lsn - 1, Ordering::Release);
        match self.shared.options.durability {
            Durability::Fsync => {
                if !frames.is_empty() {
                    let written = self.wal.append(frames, true);
                    frames.clear();
                    if let Err(e) = written {
                        // The write or its fsync failed (ENOSPC, EIO). Cut the
                        // segment back to its last durable length: if that
                        // holds, nothing of this group is stored, its
                        // decisions are undone, and writes are refused and
                        // retried until the storage takes one again.
                        let why = e.to_string();
                        match self.wal.rollback() {
                            Ok(()) => {
                                self.undo(&records);
                                self.shared.degrade(why.clone());
                                for (reply, _) in answers {
                                    let _ = reply.send(Err(self.shared.refused(why.clone())));
                                }
                            }
                            // What the file holds is unknown: no answer may
                            // claim durability from now on.
                            Err(r) => {
                                self.shared.fail(format!("{why}; cutting the log back failed too: {r}"));
                                for (reply, _) in answers {
                                    let _ = reply.send(Err(LogError::Failed(why.clone())));
                                }
                            }
                        }
                        return;
                    }
                    if let Err(e) = self.wal.rotate_if_full(self.next_lsn) {
                        // The group is durable; a new segment is tried again next time.
                        tracing::warn!(error = %e, "starting a new WAL segment; the current one grows meanwhile");
                    }
                }
            }
            #[cfg(feature = "test-switches")]
            Durability::UnsafeAckBeforeWrite => {
                deferred_since.get_or_insert_with(Instant::now);
            }
        }
        for (reply, verdicts) in answers {
            let _ = reply.send(Ok(verdicts));
        }
        if !records.is_empty() && self.index.send(IndexJob::Records(records)).is_err() {
            self.shared.fail("the indexer stopped".into());
        }
    }
}

fn index_loop(shared: &Shared, jobs: &Receiver<IndexJob>, builder: &mpsc::Sender<BuildJob>, mut applied: u64) {
    let mut last_flush = Instant::now();
    let mut flushed = applied;
    let mut sweep = shared.options.dedup_retention.map(|r| Sweep::new(r, shared.options.sweep_every));
    loop {
        let mut batch = Vec::new();
        let mut meter_job = None;
        let mut stop = false;
        match jobs.recv_timeout(Duration::from_millis(200)) {
            Ok(IndexJob::Records(b)) => batch = b,
            Ok(IndexJob::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(job @ IndexJob::CreateMeter { .. }) => meter_job = Some(job),
            Err(RecvTimeoutError::Timeout) => {}
        }
        while shared.hold_indexing.load(Ordering::Acquire) && !shared.stopping.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Records up to a meter job are applied before it, those after it
        // once it is done: each event is counted by the build or the meter.
        while batch.len() < MAX_INDEX_BATCH && meter_job.is_none() && !stop {
            match jobs.try_recv() {
                Ok(IndexJob::Records(more)) => batch.extend(more),
                Ok(IndexJob::Stop) => stop = true,
                Ok(job) => meter_job = Some(job),
                Err(_) => break,
            }
        }
        if let Some(last) = batch.last().map(|r| r.lsn) {
            let started = Instant::now();
            let mut applied_ok = apply_beside_builds(shared, &batch);
            // The storage refused the index batch (ENOSPC, EIO): the records
            // are durable in the WAL, so the same batch is retried until it
            // goes in; reads answer from what is indexed meanwhile.
            while let Err(LogError::Index(e)) = &applied_ok {
                shared.degrade(format!("indexing: {e}"));
                if shared.stopping.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(STORAGE_RETRY_MS));
                applied_ok = apply_beside_builds(shared, &batch);
            }
            if let Err(e) = applied_ok {
                shared.fail(format!("indexing: {e}"));
                break;
            }
            shared.record_index_pace(batch.len(), started.elapsed());
            let mut pending = shared.pending();
            for r in &batch {
                if let Some(t) = pending.get_mut(&r.tenant) {
                    if t.get(&r.event.id).is_some_and(|e| e.lsn == r.lsn) {
                        t.remove(&r.event.id);
                    }
                    if t.is_empty() {
                        pending.remove(&r.tenant);
                    }
                }
            }
            drop(pending);
            shared.unindexed.fetch_sub(batch.len(), Ordering::AcqRel);
            applied = last;
            shared.progress.send_modify(|p| p.applied = applied);
        }
        if let Some(IndexJob::CreateMeter { tenant, meter, reply }) = meter_job {
            // The builder stops with the indexer (its channel closes), so a
            // job it cannot take is answered by the build's drop.
            match start_meter(shared, &tenant, meter, reply) {
                Ok(Started::Exists(m, reply)) => {
                    let _ = reply.send(Ok((m, false)));
                }
                Ok(Started::Building(build)) => {
                    let _ = builder.send(BuildJob::Build(Box::new(build)));
                }
                Ok(Started::Joined(id, reply)) => {
                    let _ = builder.send(BuildJob::Join { tenant, id, reply });
                }
                Err((e, reply)) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if stop {
            break;
        }
        if let Some(sweep) = &mut sweep
            && let Err(e) = sweep.step(&shared.index)
        {
            tracing::warn!(error = %e, "sweeping expired dedup entries; retried later");
        }
        if applied > flushed && last_flush.elapsed() >= shared.options.checkpoint_every {
            flushed = checkpoint(shared, applied, flushed);
            last_flush = Instant::now();
        }
    }
    checkpoint(shared, applied, flushed);
}

/// Persists the index; WAL segments up to `applied` may then go.
fn checkpoint(shared: &Shared, applied: u64, flushed: u64) -> u64 {
    match shared.index.persist() {
        Ok(()) => {
            shared.durable_through.store(applied, Ordering::Release);
            applied
        }
        Err(e) => {
            tracing::warn!(error = %e, "persisting the event index; WAL segments are kept");
            flushed
        }
    }
}

/// Applies records as [`apply`] does, beside the builder: records of a
/// tenant that has a meter being built are applied holding the build step,
/// so no step runs between reading the build's cursor and committing (each
/// event is counted once, by the batch or by the build); other tenants'
/// records never wait for a step.
fn apply_beside_builds(shared: &Shared, batch: &[Record]) -> Result<(), LogError> {
    let building = {
        let builds = shared.builds();
        !builds.is_empty() && batch.iter().any(|r| builds.keys().any(|(t, _)| *t == r.tenant))
    };
    if !building {
        // Builds start only on this thread, so none of these tenants can
        // gain one before the batch is applied.
        return apply(&shared.index, &shared.meters, &Builds::default(), batch);
    }
    shared.indexer_waits.store(true, Ordering::Release);
    let step = shared.build_step.lock().unwrap_or_else(|p| p.into_inner());
    shared.indexer_waits.store(false, Ordering::Release);
    let builds = shared.builds().clone();
    let applied = apply(&shared.index, &shared.meters, &builds, batch);
    drop(step);
    applied
}

/// The builder thread: builds meters over their tenant's stored events, a
/// step at a time, the oldest build first, beside the indexer. It runs at a
/// lower scheduling priority, so one tenant's build yields the CPU to every
/// tenant's ingest and reads.
fn build_loop(shared: &Shared, jobs: &Receiver<BuildJob>) {
    lower_thread_priority();
    let mut building: Vec<Build> = Vec::new();
    loop {
        let job = if building.is_empty() {
            match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        } else {
            match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        };
        match job {
            Some(BuildJob::Build(b)) => building.push(*b),
            Some(BuildJob::Join { tenant, id, reply }) => {
                match building.iter_mut().find(|b| b.tenant == tenant && b.meter.id == id) {
                    Some(b) => b.waiting.push(reply),
                    // Finished (or abandoned) since the indexer looked.
                    None => {
                        let now = shared.meters.tenant(&tenant).and_then(|t| t.by_id.get(&id).map(|m| (**m).clone()));
                        let _ = reply.send(match now {
                            Some(m) if m.state == MeterState::Active => Ok((m, false)),
                            _ => Err(LogError::Failed(format!("meter {id} could not be built; create it again"))),
                        });
                    }
                }
            }
            None => {}
        }
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        let Some(b) = building.first_mut() else { continue };
        // Flushes are behind: the build's writes wait, so that the index
        // does not halt every tenant's writes (see `Index::sealed_memtables`).
        if shared.index.sealed_memtables() >= BUILD_PAUSE_SEALED {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let step = shared.build_step.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = match b.step(shared) {
            Ok(false) => None,
            Ok(true) => {
                let b = building.remove(0);
                let done = b.finish(shared);
                Some((b, done))
            }
            Err(e) => {
                let b = building.remove(0);
                b.abandon(shared);
                Some((b, Err(e)))
            }
        };
        drop(step);
        if let Some((b, result)) = outcome {
            b.answer(result);
        }
        while shared.indexer_waits.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
    for b in building {
        b.answer(Err(LogError::Closed));
    }
}

/// Lowers the calling thread's scheduling priority (nice 10; Linux applies
/// it to the thread alone). Only ever lowered, so no privilege is needed;
/// where it fails the thread runs at normal priority.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "could not lower the meter builder's priority");
    }
}

/// Meters being built and the event key each build has reached.
pub type Builds = HashMap<(String, String), Vec<u8>>;

/// Most stored events one build step reads, and the time it may take: the
/// records of the building tenant wait for a step (other tenants' do not;
/// measured in BENCHMARKS.md, fair share). The clock is read every
/// `BUILD_CLOCK_EVERY` events.
const BUILD_STEP: usize = 2_000;
const BUILD_STEP_TIME: Duration = Duration::from_millis(1);
const BUILD_CLOCK_EVERY: usize = 8;
/// Sealed memtables at which a build pauses (fjall halts writes at four).
const BUILD_PAUSE_SEALED: usize = 2;

type MeterReply = tokio::sync::oneshot::Sender<Result<(Meter, bool), LogError>>;

enum Started {
    /// The same definition exists and is usable.
    Exists(Meter, MeterReply),
    /// A build of the same meter is under way: wait for it.
    Joined(String, MeterReply),
    Building(Build),
}

/// A meter being built from the stored events by the builder thread, a step
/// at a time (see [`build_loop`]). Its windows count the stored events up to
/// `cursor` (in event-key order); an event indexed meanwhile is counted at
/// once if its key is below the cursor, and by the build when the cursor
/// passes it otherwise — so each event is counted exactly once. The
/// tenant's own records wait for at most one step, other tenants' for none.
struct Build {
    tenant: String,
    meter: Meter,
    end: Vec<u8>,
    counted: u64,
    started: Instant,
    reply: MeterReply,
    waiting: Vec<MeterReply>,
}

impl Build {
    fn key(&self) -> (String, String) {
        (self.tenant.clone(), self.meter.id.clone())
    }

    /// Counts the next stored events; `true` when none are left.
    fn step(&mut self, shared: &Shared) -> Result<bool, LogError> {
        let Some(cursor) = shared.builds().get(&self.key()).cloned() else {
            return Err(LogError::Failed(format!("the build of meter {} lost its place", self.meter.id)));
        };
        if shared.meters.tenant(&self.tenant).and_then(|t| t.by_id.get(&self.meter.id).map(|m| m.state))
            == Some(MeterState::Failed)
        {
            return Err(LogError::Failed(format!("meter {} failed while it was built", self.meter.id)));
        }
        let mut ov = Overlay::new(&shared.index);
        let mut next = None;
        let began = Instant::now();
        for (seen, item) in shared.index.range(cursor..self.end.clone()).enumerate() {
            let (k, v) = item?;
            if seen == BUILD_STEP
                || (seen % BUILD_CLOCK_EVERY == BUILD_CLOCK_EVERY - 1 && began.elapsed() >= BUILD_STEP_TIME)
            {
                next = Some(k.to_vec());
                break;
            }
            let e = codec::decode_event(&v).map_err(LogError::codec("event"))?;
            if e.meter == self.meter.event_type {
                ov.update(&self.tenant, &self.meter, &e, true)?;
                self.counted += 1;
            }
        }
        let mut batch = shared.index.batch();
        ov.write(&mut batch)?;
        batch.commit()?;
        let done = next.is_none();
        shared.builds().insert(self.key(), next.unwrap_or_else(|| self.end.clone()));
        Ok(done)
    }

    /// Activates the built meter and makes it durable.
    fn finish(&self, shared: &Shared) -> Result<(Meter, bool), LogError> {
        let active = Meter { state: MeterState::Active, ..self.meter.clone() };
        let json = serde_json::to_vec(&active).map_err(|e| LogError::Failed(format!("encoding a meter: {e}")))?;
        let mut batch = shared.index.batch();
        batch.insert(keys::meter(&self.tenant, &active.id), json);
        // Events of this type are metered from now on.
        batch.remove(keys::unmetered(&self.tenant, &active.event_type));
        batch.commit()?;
        shared.index.persist()?;
        shared.meters.insert(&self.tenant, active.clone());
        shared.builds().remove(&self.key());
        tracing::info!(tenant = %self.tenant, meter = %active.id, events = self.counted,
            ms = self.started.elapsed().as_millis() as u64, "meter built and active");
        Ok((active, true))
    }

    /// Removes a meter whose build failed: it is not left half-built (it
    /// would be retried, and fail, at every start).
    fn abandon(&self, shared: &Shared) {
        shared.builds().remove(&self.key());
        shared.meters.remove(&self.tenant, &self.meter.id);
        if let Err(d) = update::discard(&shared.index, &self.tenant, &self.meter.id) {
            tracing::error!(tenant = %self.tenant, meter = %self.meter.id, error = %d, "removing a meter whose build failed");
        }
    }

    fn answer(self, result: Result<(Meter, bool), LogError>) {
        for w in self.waiting {
            let _ =
                w.send(result.as_ref().map(|(m, _)| (m.clone(), false)).map_err(|e| LogError::Failed(e.to_string())));
        }
        let _ = self.reply.send(result);
    }
}

/// Starts creating a meter in the indexer (the index's only writer):
/// validates it against the tenant's meters, stores it as building and
/// registers its build, which the index loop then runs step by step.
fn start_meter(
    shared: &Shared,
    tenant: &str,
    meter: Meter,
    reply: MeterReply,
) -> Result<Started, (LogError, MeterReply)> {
    let existing = shared.meters.tenant(tenant);
    if let Some(old) = existing.as_ref().and_then(|t| t.by_id.get(&meter.id)) {
        if !old.same_definition(&meter) {
            return Err((LogError::MeterConflict { id: meter.id }, reply));
        }
        return Ok(match old.state {
            MeterState::Building => Started::Joined(old.id.clone(), reply),
            _ => Started::Exists((**old).clone(), reply),
        });
    }
    if existing.is_some_and(|t| t.by_id.len() >= crate::metering::meter::MAX_METERS_PER_TENANT) {
        return Err((LogError::TooManyMeters { limit: crate::metering::meter::MAX_METERS_PER_TENANT }, reply));
    }
    let building = Meter { state: MeterState::Building, ..meter };
    let stored = (|| {
        let json = serde_json::to_vec(&building).map_err(|e| LogError::Failed(format!("encoding a meter: {e}")))?;
        let mut batch = shared.index.batch();
        batch.insert(keys::meter(tenant, &building.id), json);
        batch.commit()?;
        Ok::<_, LogError>(())
    })();
    if let Err(e) = stored {
        return Err((e, reply));
    }
    let start = keys::events_prefix(tenant, None, None);
    let end = keys::prefix_end(&start);
    shared.builds().insert((tenant.to_string(), building.id.clone()), start);
    shared.meters.insert(tenant, building.clone());
    Ok(Started::Building(Build {
        tenant: tenant.to_string(),
        meter: building,
        end,
        counted: 0,
        started: Instant::now(),
        reply,
        waiting: Vec::new(),
    }))
}

/// Applies records to the index in one atomic batch, with the checkpoint and
/// the windows of every meter they count in.
fn apply(index: &Index, meters: &Meters, builds: &Builds, records: &[Record]) -> Result<(), LogError> {
    let Some(last) = records.last() else { return Ok(()) };
    let mut batch = index.batch();
    // An event and its dedup entry, a window per meter, the checkpoint.
    batch.reserve(records.len() * 3 + 1);
    let mut windows = Overlay::new(index).with_builds(builds);
    for r in records {
        let t = &r.tenant;
        let tenant_meters = meters.tenant(t);
        if let Some(old) = &r.supersedes
            && !old.retracted
        {
            batch.remove(keys::event(t, old));
            batch.insert(keys::history(t, &old.id, old.revision), codec::encode_event(old));
            windows.count(tenant_meters.as_deref(), t, old, false)?;
        }
        let e = &r.event;
        let location = if e.retracted {
            keys::history(t, &e.id, e.revision)
        } else {
            windows.count(tenant_meters.as_deref(), t, e, true)?;
            keys::event(t, e)
        };
        batch.insert(location.clone(), codec::encode_event(e));
        let entry = DedupEntry {
            revision: e.revision,
            retracted: e.retracted,
            digest: e.digest.clone(),
            received_at: e.received_at,
            location,
        };
        batch.insert(keys::dedup(t, &e.id), codec::encode_dedup(&entry));
    }
    let failed = windows.write(&mut batch)?;
    batch.insert(keys::CHECKPOINT, last.lsn.to_be_bytes().to_vec());
    batch.commit()?;
    for (tenant, meter) in failed {
        meters.insert(&tenant, meter);
    }
    Ok(())
}

/// Most dedup entries one sweep step looks at.
const SWEEP_STEP: usize = 10_000;

/// Forgets dedup entries older than the retention: a pass over every entry,
/// a step at a time between index batches, every `every`.
struct Sweep {
    retention: chrono::Duration,
    every: Duration,
    next_pass: Instant,
    /// Where the pass in progress resumes.
    cursor: Option<Vec<u8>>,
    forgotten: usize,
}

impl Sweep {
    fn new(retention: chrono::Duration, every: Option<Duration>) -> Sweep {
        let every = every.unwrap_or_else(|| {
            (retention.to_std().unwrap_or(Duration::from_secs(3600)) / 10)
                .clamp(Duration::from_millis(100), Duration::from_secs(3600))
        });
        Sweep { retention, every, next_pass: Instant::now() + every, cursor: None, forgotten: 0 }
    }

    fn step(&mut self, index: &Index) -> Result<(), LogError> {
        if self.cursor.is_none() && Instant::now() < self.next_pass {
            return Ok(());
        }
        let start = self.cursor.take().unwrap_or_else(|| keys::DEDUP_PREFIX.to_vec());
        let cutoff = Utc::now() - self.retention;
        let mut batch = index.batch();
        for (seen, item) in index.range(start..keys::prefix_end(keys::DEDUP_PREFIX)).enumerate() {
            let (k, v) = item?;
            if seen == SWEEP_STEP {
                self.cursor = Some(k.to_vec());
                break;
            }
            if codec::decode_dedup(&v).is_ok_and(|d| d.received_at < cutoff) {
                batch.remove(k);
                self.forgotten += 1;
            }
        }
        if !batch.is_empty() {
            batch.commit()?;
        }
        if self.cursor.is_none() {
            if self.forgotten > 0 {
                tracing::info!(ids = self.forgotten, "dedup entries past their retention forgotten");
            }
            self.forgotten = 0;
            self.next_pass = Instant::now() + self.every;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, received_at: DateTime<Utc>) -> StoredEvent {
        let mut e = codec::tests_support::sample(id);
        e.revision = 0;
        e.received_at = received_at;
        e
    }

    async fn open(dir: &std::path::Path, retention: Option<chrono::Duration>) -> EventLog {
        let mut options = LogOptions::new(dir.join("wal"));
        options.dedup_retention = retention;
        options.sweep_every = Some(Duration::from_millis(100));
        EventLog::open(Index::open(&dir.join("index")).unwrap(), options).unwrap()
    }

    /// A log whose backlog holds 100 events, in a fresh directory.
    fn small_log(name: &str, admission_wait: Duration) -> (PathBuf, EventLog) {
        let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut options = LogOptions::new(dir.join("wal"));
        options.max_unindexed_events = 100;
        options.admission_wait = admission_wait;
        let log = EventLog::open(Index::open(&dir.join("index")).unwrap(), options).unwrap();
        (dir, log)
    }

    /// Events `e<from>` … `e<from + n - 1>`, received now.
    fn batch(from: usize, n: usize) -> Vec<StoredEvent> {
        let now = Utc::now();
        (from..from + n).map(|i| event(&format!("e{i}"), now)).collect()
    }

    #[test]
    fn the_retry_hint_is_the_time_the_indexer_needs_to_make_room() {
        // Not measured yet: the default.
        assert_eq!(retry_hint_ms(5_000, 0), RETRY_AFTER_MS);
        // 100 000 records a second: room for 5 000 more in 50 ms.
        assert_eq!(retry_hint_ms(5_000, 100_000), 50);
        // Bounded both ways: never a busy loop, never minutes.
        assert_eq!(retry_hint_ms(10, 100_000), MIN_RETRY_AFTER_MS);
        assert_eq!(retry_hint_ms(1_000_000, 100), MAX_RETRY_AFTER_MS);
        // The pace: the first batch sets it, later ones move it by a quarter.
        let pace = next_pace(0, 10_000, Duration::from_millis(100));
        assert_eq!(pace, 100_000);
        assert_eq!(next_pace(pace, 10_000, Duration::from_millis(50)), 125_000);
        assert_eq!(next_pace(pace, 0, Duration::from_secs(1)), 75_000);
        assert!(next_pace(0, 0, Duration::ZERO) >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saturated_log_hints_at_the_time_its_measured_indexer_needs() {
        let (dir, log) = small_log("pace", LogOptions::new(PathBuf::new()).admission_wait);
        // Before anything is indexed the pace is unknown: the default hint.
        log.hold_indexing(true);
        assert_eq!(log.append("t", batch(0, 80)).await.unwrap().len(), 80);
        match log.append("t", batch(80, 50)).await {
            Err(LogError::Saturated { retry_after_ms, .. }) => assert_eq!(retry_after_ms, RETRY_AFTER_MS),
            other => panic!("not saturated: {other:?}"),
        }
        // Once a batch is indexed, the hint is the time that pace needs for the excess.
        log.hold_indexing(false);
        log.sync().await.unwrap();
        let pace = log.shared.index_rate.load(Ordering::Relaxed);
        assert!(pace > 0, "the indexer's pace was not measured");
        log.hold_indexing(true);
        assert_eq!(log.append("t", batch(200, 80)).await.unwrap().len(), 80);
        match log.append("t", batch(280, 50)).await {
            Err(LogError::Saturated { queued, limit, retry_after_ms }) => {
                assert_eq!(retry_after_ms, retry_hint_ms(queued + 50 - limit, pace))
            }
            other => panic!("not saturated: {other:?}"),
        }
        log.hold_indexing(false);
        log.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_waits_for_room_briefly_and_the_waiting_room_is_bounded() {
        // Long enough never to run out in this test: room comes from the indexer.
        let (dir, log) = small_log("admission", Duration::from_secs(60));
        log.hold_indexing(true);
        assert_eq!(log.append("t", batch(0, 80)).await.unwrap().len(), 80);
        // 80 + 50 > 100: this one waits for room instead of being refused.
        let waiter = tokio::spawn({
            let (log, events) = (log.clone(), batch(80, 50));
            async move { log.append("t", events).await }
        });
        while log.shared.admitting.load(Ordering::Acquire) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The waiting room holds at most a backlog's worth: 50 + 60 > 100 is refused at once.
        match log.append("t", batch(200, 60)).await {
            Err(LogError::Saturated { limit: 100, .. }) => {}
            other => panic!("not refused: {other:?}"),
        }
        assert!(!waiter.is_finished(), "the first request still waits");
        // A caller that gives up while waiting leaves the waiting room.
        let gives_up = tokio::spawn({
            let (log, events) = (log.clone(), batch(300, 40));
            async move { log.append("t", events).await }
        });
        while log.shared.admitting.load(Ordering::Acquire) != 90 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gives_up.abort();
        assert!(gives_up.await.unwrap_err().is_cancelled());
        assert_eq!(log.shared.admitting.load(Ordering::Acquire), 50);
        // The indexer makes room: the waiting request is admitted and stored.
        log.hold_indexing(false);
        assert_eq!(waiter.await.unwrap().unwrap(), vec![Verdict::Accepted; 50]);
        assert_eq!(log.shared.admitting.load(Ordering::Acquire), 0);
        log.sync().await.unwrap();
        log.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dedup_forgets_an_id_only_after_the_configured_retention() {
        let dir = std::env::temp_dir().join(format!("tollgate-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = Utc::now();
        for (retention, resent) in [(None, Verdict::Duplicate), (Some(chrono::Duration::days(1)), Verdict::Accepted)] {
            let _ = std::fs::remove_dir_all(&dir);
            let log = open(&dir, retention).await;
            // Received two days ago; indexed before the resend is decided.
            assert_eq!(
                log.append("t", vec![event("e", now - chrono::Duration::days(2))]).await.unwrap(),
                [Verdict::Accepted]
            );
            log.sync().await.unwrap();
            assert_eq!(log.append("t", vec![event("e", now)]).await.unwrap(), [resent], "retention {retention:?}");
            // Within the retention an id is still a duplicate.
            log.sync().await.unwrap();
            assert_eq!(log.append("t", vec![event("e", now)]).await.unwrap(), [Verdict::Duplicate]);
            log.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_deletes_expired_dedup_entries_and_keeps_fresh_ones_and_the_events() {
        let dir = std::env::temp_dir().join(format!("tollgate-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = Utc::now();
        let log = open(&dir, Some(chrono::Duration::days(1))).await;
        let old = event("old", now - chrono::Duration::days(2));
        let fresh = event("fresh", now);
        assert_eq!(log.append("t", vec![old, fresh]).await.unwrap(), [Verdict::Accepted, Verdict::Accepted]);
        log.sync().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while query::event(log.index(), "t", "old").unwrap().is_some() {
            assert!(Instant::now() < deadline, "the expired dedup entry was never swept");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(query::event(log.index(), "t", "fresh").unwrap().is_some());
        let page = query::events(log.index(), "t", &query::EventFilter::default(), 10, None).unwrap();
        let mut ids: Vec<_> = page.events.iter().map(|e| e.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["fresh", "old"]);
        log.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
