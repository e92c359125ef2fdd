//! The handle on the event log: opening (replaying the WAL after the
//! checkpoint), appending with admission, syncing reads, meters, shutdown.

use super::build::{Builds, build_loop};
use super::error::LogError;
use super::index::Index;
use super::indexer::{apply, index_loop};
use super::keys;
use super::options::LogOptions;
use super::shared::{BuildJob, IndexJob, Job, MAX_INDEX_BATCH, Progress, Shared};
use super::wal::Wal;
use super::writer::Writer;
use crate::metering::update;
use crate::metering::{Meter, MeterState, Meters};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_core::event::{StoredEvent, Verdict};

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
    pub(super) shared: Arc<Shared>,
    pub(super) jobs: SyncSender<Job>,
    pub(super) index_jobs: mpsc::Sender<IndexJob>,
    pub(super) threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
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
    pub(super) async fn admit(&self, n: usize) -> Result<usize, LogError> {
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

    pub(super) async fn sync_to(&self, target: u64) -> Result<(), LogError> {
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

pub(super) fn read_checkpoint(index: &Index) -> Result<u64, LogError> {
    Ok(match index.get(keys::CHECKPOINT)? {
        Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().unwrap_or_default()),
        Some(_) => return Err(LogError::Failed("checkpoint record is not 8 bytes".into())),
        None => 0,
    })
}
