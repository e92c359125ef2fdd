//! Usage events: what a client sends ([`EventInput`]), the checks every
//! event passes ([`validate`], pure: one event in, a [`ValidEvent`] or a
//! [`Rejection`] naming the field and the reason), the event as the log
//! stores it ([`StoredEvent`]) and what the log decides for it ([`Verdict`]).

use crate::error::{ApiError, ErrorCode};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// An event as a client sent it (gRPC `UsageEvent`, or a CloudEvent mapped
/// to one), before any check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventInput {
    pub id: String,
    /// 0 for the original; a correction or retraction carries a higher one.
    pub revision: u32,
    /// Retracts the event `id` (revision must be higher than the stored one).
    pub retract: bool,
    pub customer: String,
    /// The event type; meters read events of their `event_type`.
    pub meter: String,
    /// Seconds and nanoseconds since the Unix epoch, as sent (`None`: missing).
    pub time: Option<(i64, i32)>,
    /// A decimal string (see [`crate::money::parse_quantity`]).
    pub quantity: String,
    pub dimensions: HashMap<String, String>,
    pub source: String,
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the log, assigned when accepted.
    #[serde(default)]
    pub lsn: u64,
    pub id: String,
    /// 0 for the original; a correction or retraction carries a higher one.
    #[serde(default)]
    pub revision: u32,
    /// A retraction: this id no longer counts.
    #[serde(default)]
    pub retracted: bool,
    pub customer: String,
    pub meter: String,
    pub time: DateTime<Utc>,
    pub quantity: Decimal,
    pub dimensions: BTreeMap<String, String>,
    pub source: String,
    /// SHA-256 of the content (everything but id and revision): tells a
    /// retry from a conflict.
    pub digest: String,
    pub received_at: DateTime<Utc>,
}

/// What the log decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stored and counted (new, a correction or a retraction).
    Accepted,
    /// The same revision with the same content is stored already.
    Duplicate,
    /// The same revision is stored with different content; it stands.
    Conflict { stored_revision: u32 },
    /// A higher revision is stored already; this one is not counted.
    Superseded { stored_revision: u32 },
}

/// Nanoseconds since the epoch; ingest only accepts instants from 2000 to a
/// day ahead, well inside `i64`. The event index orders events by it and a
/// `latest` window's members are keyed by it.
pub fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// What the log decides for `incoming` given the revision and content
/// digest of its id's current revision, if one is stored: a new id or a
/// higher revision is accepted (a higher one replaces the current one, or
/// retracts it); the same revision with the same content is a duplicate
/// (a retry), with other content a conflict (the stored one stands); a
/// lower revision is superseded.
pub fn decide(current: Option<(u32, &str)>, incoming: &StoredEvent) -> Verdict {
    match current {
        None => Verdict::Accepted,
        Some((revision, digest)) if incoming.revision == revision => {
            if digest == incoming.digest {
                Verdict::Duplicate
            } else {
                Verdict::Conflict { stored_revision: revision }
            }
        }
        Some((revision, _)) if incoming.revision < revision => Verdict::Superseded { stored_revision: revision },
        Some(_) => Verdict::Accepted,
    }
}

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
pub fn check_batch_size(events: usize, field: &str) -> Result<(), ApiError> {
    if events > MAX_EVENTS_PER_BATCH {
        return Err(ApiError::field(
            ErrorCode::InvalidArgument,
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

pub fn reject(field: impl Into<String>, reason: impl Into<String>) -> Rejection {
    Rejection { field: field.into(), reason: reason.into() }
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
pub fn validate(e: EventInput, now: DateTime<Utc>) -> Result<ValidEvent, Rejection> {
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
    let (seconds, nanos) = e.time.ok_or_else(|| reject("time", "required"))?;
    let time = u32::try_from(nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(seconds, n))
        .ok_or_else(|| reject("time", "not a valid timestamp"))?;
    if time.timestamp() < EARLIEST_EVENT_SECONDS {
        return Err(reject("time", format!("{} is before 2000-01-01", time.to_rfc3339())));
    }
    if time > now + MAX_FUTURE_SKEW {
        return Err(reject("time", format!("{} is more than 24 h in the future (MAX_FUTURE_SKEW)", time.to_rfc3339())));
    }
    let quantity = crate::money::parse_quantity(&e.quantity).map_err(|err| reject("quantity", err.to_string()))?;
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
