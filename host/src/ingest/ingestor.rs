//! The ingestor: the core's checks, the event log's append, and the limits of one batch.

use super::{EventInput, Rejection, ValidEvent, Verdict, reject};
use crate::eventlog::{EventLog, LogError};
use crate::metering::TenantMeters;
use crate::proto::UsageEvent;
use chrono::{DateTime, Utc};

/// A gRPC event as the core's input (its fields moved, nothing copied).
pub fn input(e: UsageEvent) -> EventInput {
    EventInput {
        id: e.id,
        revision: e.revision,
        retract: e.retract,
        customer: e.customer,
        meter: e.meter,
        time: e.time.map(|t| (t.seconds, t.nanos)),
        quantity: e.quantity,
        dimensions: e.dimensions,
        source: e.source,
    }
}

/// Checks one gRPC event against every documented limit (see
/// [`tollgate_core::event::validate`]).
pub fn validate(e: UsageEvent, now: DateTime<Utc>) -> Result<ValidEvent, Rejection> {
    tollgate_core::event::validate(input(e), now)
}

/// The result of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Conflict(Rejection),
    /// A higher revision of the event is stored already.
    Superseded {
        stored_revision: u32,
    },
    Rejected(Rejection),
}

/// Refuses an event a meter of its type could not read (a dimension the
/// meter aggregates missing, or not a decimal where it sums one), naming
/// the field and the meter. Events of types no meter reads are stored (and
/// listed as unmetered) so that a meter created later counts them.
fn readable(meters: Option<&TenantMeters>, v: ValidEvent) -> Result<ValidEvent, Rejection> {
    if let Some(meters) = meters
        && !v.0.retracted
    {
        for m in meters.of_type(&v.0.meter) {
            m.sample(&v.0).map_err(|(field, reason)| reject(field, reason))?;
        }
    }
    Ok(v)
}

/// The write path: validation in front of the event log.
#[derive(Clone)]
pub struct Ingestor {
    log: EventLog,
}

impl Ingestor {
    pub fn new(log: EventLog) -> Ingestor {
        Ingestor { log }
    }

    /// The event log behind this ingestor.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// [`Ingestor::ingest`] for events some of which were already refused
    /// while decoding them (CloudEvents); outcomes stay in input order.
    pub async fn ingest_decoded(
        &self,
        tenant: &str,
        events: Vec<Result<UsageEvent, Rejection>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, LogError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut decoded = Vec::new();
        let mut positions = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            match e {
                Ok(e) => {
                    positions.push(i);
                    decoded.push(e);
                }
                Err(r) => outcomes[i] = Some(Outcome::Rejected(r)),
            }
        }
        for (i, o) in positions.into_iter().zip(self.ingest(tenant, decoded, now).await?) {
            outcomes[i] = Some(o);
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Rejected(reject("event", "not processed")))).collect())
    }

    /// Validates and stores a batch; returns one outcome per event, in order,
    /// after every accepted event is on disk. Events of one batch are decided
    /// in order, so a batch may carry an event and its correction.
    pub async fn ingest(
        &self,
        tenant: &str,
        events: Vec<UsageEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, LogError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut positions = Vec::with_capacity(events.len());
        let mut valid = Vec::with_capacity(events.len());
        let meters = self.log.meters().tenant(tenant);
        for (i, e) in events.into_iter().enumerate() {
            match validate(e, now).and_then(|v| readable(meters.as_deref(), v)) {
                Err(r) => outcomes[i] = Some(Outcome::Rejected(r)),
                Ok(ValidEvent(ev)) => {
                    positions.push(i);
                    valid.push(ev);
                }
            }
        }
        let verdicts = self.log.append(tenant, valid).await?;
        for (i, v) in positions.into_iter().zip(verdicts) {
            outcomes[i] = Some(match v {
                Verdict::Accepted => Outcome::Accepted,
                Verdict::Duplicate => Outcome::Duplicate,
                Verdict::Conflict { stored_revision } => Outcome::Conflict(reject(
                    "id",
                    format!(
                        "revision {stored_revision} of this id is stored with different content and stands; \
                         send a higher revision to correct it"
                    ),
                )),
                Verdict::Superseded { stored_revision } => Outcome::Superseded { stored_revision },
            });
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Rejected(reject("id", "not processed")))).collect())
    }
}
