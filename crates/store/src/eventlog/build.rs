//! The builder thread: a new meter built over its tenant's stored events
//! in small steps beside the indexer, each event counted exactly once.

use super::error::LogError;
use super::shared::{BuildJob, Shared};
use super::{codec, keys};
use crate::metering::update::{self, Overlay};
use crate::metering::{Meter, MeterState};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The builder thread: builds meters over their tenant's stored events, a
/// step at a time, the oldest build first, beside the indexer. It runs at a
/// lower scheduling priority, so one tenant's build yields the CPU to every
/// tenant's ingest and reads.
pub(super) fn build_loop(shared: &Shared, jobs: &Receiver<BuildJob>) {
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
pub(super) fn lower_thread_priority() {
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
pub(super) const BUILD_STEP: usize = 2_000;
pub(super) const BUILD_STEP_TIME: Duration = Duration::from_millis(1);
pub(super) const BUILD_CLOCK_EVERY: usize = 8;
/// Sealed memtables at which a build pauses (fjall halts writes at four).
pub(super) const BUILD_PAUSE_SEALED: usize = 2;

pub(super) type MeterReply = tokio::sync::oneshot::Sender<Result<(Meter, bool), LogError>>;

pub(super) enum Started {
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
pub(super) struct Build {
    pub(super) tenant: String,
    pub(super) meter: Meter,
    pub(super) end: Vec<u8>,
    pub(super) counted: u64,
    pub(super) started: Instant,
    pub(super) reply: MeterReply,
    pub(super) waiting: Vec<MeterReply>,
}

impl Build {
    pub(super) fn key(&self) -> (String, String) {
        (self.tenant.clone(), self.meter.id.clone())
    }

    /// Counts the next stored events; `true` when none are left.
    pub(super) fn step(&mut self, shared: &Shared) -> Result<bool, LogError> {
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
    pub(super) fn finish(&self, shared: &Shared) -> Result<(Meter, bool), LogError> {
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
    pub(super) fn abandon(&self, shared: &Shared) {
        shared.builds().remove(&self.key());
        shared.meters.remove(&self.tenant, &self.meter.id);
        if let Err(d) = update::discard(&shared.index, &self.tenant, &self.meter.id) {
            tracing::error!(tenant = %self.tenant, meter = %self.meter.id, error = %d, "removing a meter whose build failed");
        }
    }

    pub(super) fn answer(self, result: Result<(Meter, bool), LogError>) {
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
pub(super) fn start_meter(
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
