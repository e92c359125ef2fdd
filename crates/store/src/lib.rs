//! Tollgate's storage: what is on disk and how it is read back.
//!
//! - [`eventlog`]: the durable write path (write-ahead log, group commit,
//!   dedup, corrections and retractions) and the event index with its
//!   queries, in an LSM tree (fjall); metering is its projection.
//! - [`metering`]: the tenants' meters and their windows, updated in the
//!   same atomic index batch as the events they count (the window
//!   arithmetic is the core's), and built from stored events.
//! - [`store`]: the sled database, its trees and key encoding, fsync.
//! - [`masterdata`]: master-data versions in the store, written after the
//!   core's checks.
//! - [`usage`]: what a tenant stores, by kind.
//! - [`error`]: these errors as client-facing errors.

pub mod error;
pub mod eventlog;
pub mod masterdata;
pub mod metering;
pub mod store;
pub mod usage;

pub(crate) use tollgate_core::{hex, money};
