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

mod build;
pub mod codec;
mod error;
pub mod index;
mod indexer;
pub mod keys;
mod log;
mod options;
pub mod query;
mod shared;
#[cfg(test)]
mod tests;
pub mod wal;
mod writer;

pub use build::Builds;
pub use error::LogError;
pub use log::{EventLog, Freshness};
#[cfg(feature = "test-switches")]
pub use options::UNSAFE_ACK_BEFORE_WRITE_ENV;
pub use options::{Durability, LogOptions};
pub use shared::RETRY_AFTER_MS;
pub use tollgate_core::event::{StoredEvent, Verdict};
