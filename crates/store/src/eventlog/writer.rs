//! The writer thread: group commit (decide each event against dedup,
//! frame the accepted ones into the WAL, one fdatasync per group, answer).

use super::codec::{DedupEntry, Record};
use super::error::LogError;
use super::index::Index;
use super::options::Durability;
use super::shared::{IndexJob, Job, MAX_GROUP_EVENTS, Pending, Reply, STORAGE_RETRY_MS, Shared, UNSAFE_DEFER};
use super::wal::Wal;
use super::{codec, keys, wal};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tollgate_core::event::{StoredEvent, Verdict};

/// The current revision of an event id, from memory or the index; `None`
/// when unknown (or forgotten under a retention).
pub(super) fn current(
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

pub(super) enum Current {
    Pending(Arc<StoredEvent>),
    Indexed(DedupEntry),
}

impl Current {
    pub(super) fn revision(&self) -> u32 {
        match self {
            Current::Pending(e) => e.revision,
            Current::Indexed(d) => d.revision,
        }
    }
    pub(super) fn digest(&self) -> &str {
        match self {
            Current::Pending(e) => &e.digest,
            Current::Indexed(d) => &d.digest,
        }
    }
    /// The stored event of this revision (read from the index if need be).
    pub(super) fn event(self, index: &Index) -> Result<Arc<StoredEvent>, LogError> {
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

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) wal: Wal,
    pub(super) next_lsn: u64,
    pub(super) index: mpsc::Sender<IndexJob>,
}

impl Writer {
    pub(super) fn run(mut self, jobs: Receiver<Job>) {
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
    pub(super) fn undo(&mut self, records: &[Record]) {
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
    pub(super) fn commit(
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
        let now = self.shared.options.clock.now();
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
