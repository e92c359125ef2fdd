//! The indexer thread: records into the index in atomic batches with the
//! checkpoint (windows updated in the same batch as their events), the
//! periodic persist, and the dedup sweep.

use super::build::{Builds, Started, start_meter};
use super::codec::{DedupEntry, Record};
use super::error::LogError;
use super::index::Index;
use super::shared::{BuildJob, IndexJob, MAX_INDEX_BATCH, STORAGE_RETRY_MS, Shared};
use super::{codec, keys};
use crate::metering::Meters;
use crate::metering::update::Overlay;
use chrono::{DateTime, Utc};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub(super) fn index_loop(
    shared: &Shared,
    jobs: &Receiver<IndexJob>,
    builder: &mpsc::Sender<BuildJob>,
    mut applied: u64,
) {
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
            && let Err(e) = sweep.step(&shared.index, shared.options.clock.now())
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
pub(super) fn checkpoint(shared: &Shared, applied: u64, flushed: u64) -> u64 {
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
pub(super) fn apply_beside_builds(shared: &Shared, batch: &[Record]) -> Result<(), LogError> {
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

/// Applies records to the index in one atomic batch, with the checkpoint and
/// the windows of every meter they count in.
pub(super) fn apply(index: &Index, meters: &Meters, builds: &Builds, records: &[Record]) -> Result<(), LogError> {
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
pub(super) const SWEEP_STEP: usize = 10_000;

/// Forgets dedup entries older than the retention: a pass over every entry,
/// a step at a time between index batches, every `every`.
pub(super) struct Sweep {
    pub(super) retention: chrono::Duration,
    pub(super) every: Duration,
    pub(super) next_pass: Instant,
    /// Where the pass in progress resumes.
    pub(super) cursor: Option<Vec<u8>>,
    pub(super) forgotten: usize,
}

impl Sweep {
    pub(super) fn new(retention: chrono::Duration, every: Option<Duration>) -> Sweep {
        let every = every.unwrap_or_else(|| {
            (retention.to_std().unwrap_or(Duration::from_secs(3600)) / 10)
                .clamp(Duration::from_millis(100), Duration::from_secs(3600))
        });
        Sweep { retention, every, next_pass: Instant::now() + every, cursor: None, forgotten: 0 }
    }

    pub(super) fn step(&mut self, index: &Index, now: DateTime<Utc>) -> Result<(), LogError> {
        if self.cursor.is_none() && Instant::now() < self.next_pass {
            return Ok(());
        }
        let start = self.cursor.take().unwrap_or_else(|| keys::DEDUP_PREFIX.to_vec());
        let cutoff = now - self.retention;
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
