//! Ingest: validates usage events and stores them durably, exactly once.
//!
//! - [`validate`] is pure: one event in, a [`ValidEvent`] or a rejection
//!   naming the field and the reason.
//! - [`Ingestor::ingest`] writes a batch in one transaction over the event
//!   log, the metering windows and the window → event index, so dedup by
//!   (tenant, event id) is atomic with the write; then fsyncs, and only then
//!   returns the per-event outcomes.
//! - `grpc` serves `tollgate.v1.IngestService`; `cloudevents` maps
//!   CloudEvents over HTTP (`POST /v1/events`) to the same path.

pub mod cloudevents;
pub mod grpc;

use crate::metering::{self, Window};
use crate::money;
use crate::proto::UsageEvent;
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::{BTreeMap, HashMap};

/// Most bytes in one HTTP request body of events.
pub const MAX_HTTP_BODY_BYTES: usize = 8 << 20;
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

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    pub customer: String,
    pub meter: String,
    pub time: DateTime<Utc>,
    pub quantity: Decimal,
    pub dimensions: BTreeMap<String, String>,
    pub source: String,
    /// SHA-256 of the content (everything but the id): tells a retry from a conflict.
    pub digest: String,
    pub received_at: DateTime<Utc>,
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
    Rejected(Rejection),
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), Rejection> {
    if required && value.is_empty() {
        return Err(reject(field, "required"));
    }
    if value.len() > max {
        return Err(reject(field, format!("{} bytes; at most {max}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(reject(field, "contains control characters"));
    }
    Ok(())
}

/// Checks one event against every documented limit.
pub fn validate(e: &UsageEvent, now: DateTime<Utc>) -> Result<ValidEvent, Rejection> {
    check_text("id", &e.id, MAX_ID_BYTES, true)?;
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
    let earliest = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or(time);
    if time < earliest {
        return Err(reject("time", format!("{} is before 2000-01-01", time.to_rfc3339())));
    }
    if time > now + MAX_FUTURE_SKEW {
        return Err(reject("time", format!("{} is more than 24 h in the future", time.to_rfc3339())));
    }
    let quantity = money::parse_quantity(&e.quantity).map_err(|err| reject("quantity", err.to_string()))?;
    if e.dimensions.len() > MAX_DIMENSIONS {
        return Err(reject("dimensions", format!("{} dimensions; at most {MAX_DIMENSIONS}", e.dimensions.len())));
    }
    for (k, v) in &e.dimensions {
        check_text(&format!("dimensions.{k}"), k, MAX_DIMENSION_KEY_BYTES, true)?;
        check_text(&format!("dimensions.{k}"), v, MAX_DIMENSION_VALUE_BYTES, false)?;
    }
    let dimensions: BTreeMap<String, String> = e.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let digest = content_digest(&e.customer, &e.meter, time, quantity, &dimensions, &e.source);
    Ok(ValidEvent(StoredEvent {
        id: e.id.clone(),
        customer: e.customer.clone(),
        meter: e.meter.clone(),
        time,
        quantity,
        dimensions,
        source: e.source.clone(),
        digest,
        received_at: now,
    }))
}

/// Digest of an event's content; equal quantities in different notations
/// ("1.0" and "1") are the same content.
fn content_digest(
    customer: &str,
    meter: &str,
    time: DateTime<Utc>,
    quantity: Decimal,
    dimensions: &BTreeMap<String, String>,
    source: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        customer,
        meter,
        &time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        &quantity.normalize().to_string(),
        source,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in dimensions {
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The durable write path.
#[derive(Clone)]
pub struct Ingestor {
    store: Store,
}

impl Ingestor {
    pub fn new(store: Store) -> Ingestor {
        Ingestor { store }
    }

    /// [`Ingestor::ingest`] for events some of which were already refused
    /// while decoding them (CloudEvents); outcomes stay in input order.
    pub async fn ingest_decoded(
        &self,
        tenant: &str,
        events: Vec<Result<UsageEvent, Rejection>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, StoreError> {
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
    /// after every accepted event is on disk.
    pub async fn ingest(
        &self,
        tenant: &str,
        events: Vec<UsageEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        // Valid events to write: the first occurrence of each id; a later one
        // in the same batch is a duplicate or a conflict of it.
        let mut to_write: Vec<(usize, StoredEvent)> = Vec::new();
        let mut first_digest: HashMap<String, String> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            outcomes[i] = match validate(e, now) {
                Err(r) => Some(Outcome::Rejected(r)),
                Ok(ValidEvent(ev)) => match first_digest.get(&ev.id) {
                    Some(d) if *d == ev.digest => Some(Outcome::Duplicate),
                    Some(_) => Some(Outcome::Conflict(reject(
                        "id",
                        "repeated in this batch with different content; the first occurrence stands",
                    ))),
                    None => {
                        first_digest.insert(ev.id.clone(), ev.digest.clone());
                        to_write.push((i, ev));
                        None
                    }
                },
            };
        }
        let store = self.store.clone();
        let tenant_owned = tenant.to_string();
        let written = tokio::task::spawn_blocking(move || write_batch(&store, &tenant_owned, &to_write))
            .await
            .map_err(|e| StoreError::Aborted(format!("ingest task: {e}")))??;
        for (i, o) in written {
            outcomes[i] = Some(o);
        }
        // Flush even when everything was a duplicate: the original may have
        // been written by a request whose own flush has not finished yet.
        if !first_digest.is_empty() {
            self.store.flush().await?;
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Rejected(reject("id", "not processed")))).collect())
    }
}

/// One transaction: dedup, event log, windows, window index.
fn write_batch(
    store: &Store,
    tenant: &str,
    events: &[(usize, StoredEvent)],
) -> Result<Vec<(usize, Outcome)>, StoreError> {
    let result = (&store.events, &store.windows, &store.window_events).transaction(|(log, windows, index)| {
        let mut outcomes = Vec::with_capacity(events.len());
        for (i, ev) in events {
            let k = store::key(&[tenant, &ev.id]);
            if let Some(existing) = log.get(&k)? {
                let existing: StoredEvent = serde_json::from_slice(&existing)
                    .map_err(|e| ConflictableTransactionError::Abort(format!("corrupt event {}: {e}", ev.id)))?;
                outcomes.push((
                    *i,
                    if existing.digest == ev.digest {
                        Outcome::Duplicate
                    } else {
                        Outcome::Conflict(reject(
                            "id",
                            "already stored with different content; the stored event stands",
                        ))
                    },
                ));
                continue;
            }
            let bytes = serde_json::to_vec(ev).map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
            log.insert(k, bytes)?;
            let hour = metering::hour_of(ev.time);
            let wk = metering::window_key(tenant, &ev.customer, &ev.meter, &hour);
            let current: Window = match windows.get(&wk)? {
                Some(b) => serde_json::from_slice(&b)
                    .map_err(|e| ConflictableTransactionError::Abort(format!("corrupt window: {e}")))?,
                None => Window::default(),
            };
            let next = current
                .apply(ev.quantity)
                .map_err(|e| ConflictableTransactionError::Abort(format!("window {hour} of {}: {e}", ev.meter)))?;
            windows.insert(
                wk.clone(),
                serde_json::to_vec(&next).map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?,
            )?;
            let mut ik = wk;
            ik.push(0);
            ik.extend_from_slice(ev.id.as_bytes());
            index.insert(ik, &[])?;
            outcomes.push((*i, Outcome::Accepted));
        }
        Ok(outcomes)
    });
    result.map_err(|e| match e {
        sled::transaction::TransactionError::Abort(msg) => StoreError::Aborted(msg),
        sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
    })
}
