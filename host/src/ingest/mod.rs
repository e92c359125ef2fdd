//! Ingest: validates usage events and hands them to the event log.
//!
//! - [`validate`] is pure: one event in, a [`ValidEvent`] or a rejection
//!   naming the field and the reason.
//! - [`Ingestor::ingest`] validates a batch and appends the valid events to
//!   the [`EventLog`], which decides dedup, corrections and retractions
//!   atomically with the write and answers once they are durable (group
//!   commit); the outcomes come back per event, in order.
//! - `grpc` serves `tollgate.v1.IngestService`; `cloudevents` maps
//!   CloudEvents over HTTP (`POST /v1/events`) to the same path.

pub mod cloudevents;
pub mod grpc;

pub use crate::eventlog::StoredEvent;
use crate::eventlog::{EventLog, LogError, Verdict};
use crate::metering::TenantMeters;
use crate::money;
use crate::proto::UsageEvent;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Most bytes in one HTTP request body of events (larger: 413 with the
/// JSON error naming `body`).
pub const MAX_HTTP_BODY_BYTES: usize = 16 << 20;
/// Most bytes in one gRPC message (a unary batch, or one batch of a
/// stream): 10 000 events with ids, customers and sources of 256 bytes and
/// a few dimensions fit; a larger message is refused with `OUT_OF_RANGE`
/// naming its size and this limit, and nothing of it is stored.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 16 << 20;
/// Most events in one request.
pub const MAX_EVENTS_PER_BATCH: usize = 10_000;
/// Longest id / customer / source, bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest meter name, bytes.
pub const MAX_METER_BYTES: usize = 128;
/// Most dimensions per event; longest key and value.
pub const MAX_DIMENSIONS: usize = 32;
pub const MAX_DIMENSION_KEY_BYTES: usize = 64;
pub const MAX_DIMENSION_VALUE_BYTES: usize = 256;
/// How far in the future an event time may be.
pub const MAX_FUTURE_SKEW: Duration = Duration::hours(24);
/// 2000-01-01T00:00:00Z: no usage is older.
const EARLIEST_EVENT_SECONDS: i64 = 946_684_800;

/// Refuses a batch of more than [`MAX_EVENTS_PER_BATCH`] events as a whole.
pub fn check_batch_size(events: usize, field: &str) -> Result<(), crate::error::ApiError> {
    if events > MAX_EVENTS_PER_BATCH {
        return Err(crate::error::ApiError::field(
            crate::error::ErrorCode::InvalidArgument,
            field,
            format!("{events} events in one batch; at most {MAX_EVENTS_PER_BATCH} (MAX_EVENTS_PER_BATCH)"),
        ));
    }
    Ok(())
}

/// A validated event, ready to store.
#[derive(Debug, Clone)]
pub struct ValidEvent(pub StoredEvent);

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub field: String,
    pub reason: String,
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> Rejection {
    Rejection { field: field.into(), reason: reason.into() }
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

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), Rejection> {
    text_problem(value, max, required).map_or(Ok(()), |why| Err(reject(field, why)))
}

/// What is wrong with a text value, if anything (the field is named by the
/// caller, only when there is a problem).
fn text_problem(value: &str, max: usize, required: bool) -> Option<String> {
    if required && value.is_empty() {
        return Some("required".into());
    }
    if value.len() > max {
        return Some(format!("{} bytes; at most {max}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Some("contains control characters".into());
    }
    None
}

/// Checks one event against every documented limit.
pub fn validate(e: UsageEvent, now: DateTime<Utc>) -> Result<ValidEvent, Rejection> {
    check_text("id", &e.id, MAX_ID_BYTES, true)?;
    if e.retract {
        // A retraction names the event and the revision that replaces it;
        // whatever else it carries is not usage and is ignored.
        if e.revision == 0 {
            return Err(reject("revision", "a retraction needs a revision above the one it retracts (at least 1)"));
        }
        let digest = content_digest(&[], &BTreeMap::new(), true);
        return Ok(ValidEvent(StoredEvent {
            lsn: 0,
            id: e.id,
            revision: e.revision,
            retracted: true,
            customer: String::new(),
            meter: String::new(),
            time: now,
            quantity: Decimal::ZERO,
            dimensions: BTreeMap::new(),
            source: String::new(),
            digest,
            received_at: now,
        }));
    }
    check_text("customer", &e.customer, MAX_ID_BYTES, true)?;
    check_text("source", &e.source, MAX_ID_BYTES, false)?;
    check_text("meter", &e.meter, MAX_METER_BYTES, true)?;
    if !e.meter.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(reject("meter", "lowercase letters, digits, '_', '-', '.' only"));
    }
    let ts = e.time.as_ref().ok_or_else(|| reject("time", "required"))?;
    let time = u32::try_from(ts.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(ts.seconds, n))
        .ok_or_else(|| reject("time", "not a valid timestamp"))?;
    if time.timestamp() < EARLIEST_EVENT_SECONDS {
        return Err(reject("time", format!("{} is before 2000-01-01", time.to_rfc3339())));
    }
    if time > now + MAX_FUTURE_SKEW {
        return Err(reject("time", format!("{} is more than 24 h in the future (MAX_FUTURE_SKEW)", time.to_rfc3339())));
    }
    let quantity = money::parse_quantity(&e.quantity).map_err(|err| reject("quantity", err.to_string()))?;
    if e.dimensions.len() > MAX_DIMENSIONS {
        return Err(reject(
            "dimensions",
            format!("{} dimensions; at most {MAX_DIMENSIONS} (MAX_DIMENSIONS)", e.dimensions.len()),
        ));
    }
    let mut dimensions = BTreeMap::new();
    for (k, v) in e.dimensions {
        let problem = text_problem(&k, MAX_DIMENSION_KEY_BYTES, true)
            .or_else(|| text_problem(&v, MAX_DIMENSION_VALUE_BYTES, false));
        if let Some(why) = problem {
            return Err(reject(format!("dimensions.{k}"), why));
        }
        // Inserted one by one: `collect` would first gather and sort a vector.
        dimensions.insert(k, v);
    }
    let time_text = time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let quantity_text = quantity.normalize().to_string();
    let digest = content_digest(&[&e.customer, &e.meter, &time_text, &quantity_text, &e.source], &dimensions, false);
    Ok(ValidEvent(StoredEvent {
        lsn: 0,
        id: e.id,
        revision: e.revision,
        retracted: false,
        customer: e.customer,
        meter: e.meter,
        time,
        quantity,
        dimensions,
        source: e.source,
        digest,
        received_at: now,
    }))
}

/// Digest of an event's content (customer, meter, time, quantity, source,
/// dimensions); equal quantities in different notations ("1.0" and "1")
/// are the same content. A retraction's content is the marker alone.
fn content_digest(parts: &[&str], dimensions: &BTreeMap<String, String>, retract: bool) -> String {
    let mut h = Sha256::new();
    if retract {
        h.update(b"\x01retract\0");
    }
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in dimensions {
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    crate::hex(&h.finalize())
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
