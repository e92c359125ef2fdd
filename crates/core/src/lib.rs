//! Tollgate's pure domain: the rules every stage shares, over plain data.
//!
//! No IO and no clock here: no tokio, sled, fjall, wasmtime, axum, tonic,
//! hyper or reqwest (a test in the suite reads `cargo metadata` and fails
//! when one of them becomes a dependency). The stages that store, run
//! plugins and serve build on these types.
//!
//! Layout:
//! - [`money`]: exact decimal rules for money and quantities.
//! - [`period`]: billing periods.
//! - [`rating`]: what a rater is given and answers, the charge record, digests.
//! - [`close`]: close planning: which usages rate together, in which round.
//! - [`document`]: posting documents, their ids and states, built from charge records.
//! - [`enrich`]: windows + master data → canonical usage, with lineage.
//! - [`error`]: the client-facing error codes, as plain data.
//! - [`event`]: usage events, their checks, and the log's verdicts.
//! - [`masterdata`]: the master-data model, its checks and its effective-dated history.
//! - [`meter`]: meter definitions and what each takes from an event.
//! - [`window`]: meter windows, what an event adds to or takes from one, totals.

pub mod clock;
pub mod close;
pub mod document;
mod encoding;
pub mod enrich;
pub mod error;
pub mod event;
pub mod masterdata;
pub mod meter;
pub mod money;
pub mod period;
pub mod rating;
pub mod window;

pub use encoding::{hex, sha256_hex};
