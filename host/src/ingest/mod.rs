//! Ingest: validates usage events and hands them to the event log.
//!
//! - [`validate`] is the core's check ([`tollgate_core::event::validate`])
//!   of a gRPC `UsageEvent`: one event in, a [`ValidEvent`] or a rejection
//!   naming the field and the reason.
//! - [`Ingestor::ingest`] validates a batch and appends the valid events to
//!   the [`EventLog`], which decides dedup, corrections and retractions
//!   atomically with the write and answers once they are durable (group
//!   commit); the outcomes come back per event, in order.
//! - `grpc` serves `tollgate.v1.IngestService`; `cloudevents` maps
//!   CloudEvents over HTTP (`POST /v1/events`) to the same path.

pub mod cloudevents;
pub mod grpc;
mod ingestor;

pub use ingestor::{Ingestor, Outcome, input, validate};
pub use tollgate_core::event::{
    EventInput, MAX_DIMENSION_KEY_BYTES, MAX_DIMENSION_VALUE_BYTES, MAX_DIMENSIONS, MAX_EVENTS_PER_BATCH,
    MAX_FUTURE_SKEW, MAX_GRPC_MESSAGE_BYTES, MAX_HTTP_BODY_BYTES, MAX_ID_BYTES, MAX_METER_BYTES, Rejection,
    StoredEvent, ValidEvent, Verdict, check_batch_size, reject,
};
