//! Tollgate: the usage-to-ERP gateway.
//!
//! Usage events flow one way through stages, each reading what the previous
//! one stored durably (see `../shared/DESIGN.md`):
//!
//! ```text
//! ingest ─▶ eventlog (WAL + index) ─▶ metering (meter windows) ─▶ enrich (+ masterdata)
//!        ─▶ rating (Wasm rater) ─▶ posting (documents, Wasm mapper, outbox ─▶ ERP)
//!        ─▶ lineage (ERP line ─▶ rule ─▶ windows ─▶ events)
//! ```
//!
//! The layers below this crate: `tollgate-core` (the pure domain: money,
//! events and their checks, meters and window arithmetic, periods, master
//! data, enrichment, the rating model, documents, close planning) and
//! `tollgate-store` (the event log, metering, the sled database), and beside
//! the store `tollgate-plugins` (the Wasm sandbox, the bindings of every WIT
//! version, the plugin registry, the fixture runner). Their modules are
//! re-exported here under the names the stages always had.
//!
//! Layout, one module per stage:
//! - [`ingest`]: the core's event checks behind `tollgate.v1.IngestService`
//!   (`ingest::grpc`) and CloudEvents (`ingest::cloudevents`).
//! - [`eventlog`], [`metering`], [`store`], [`masterdata`]: re-exported from
//!   `tollgate-store` (master-data model from the core).
//! - [`enrich`]: the store's windows as the core's usage source; the
//!   unmatched-usage queue.
//! - [`rating`]: the rating stage (activation, charge records); [`plugins`]:
//!   re-exported from `tollgate-plugins`.
//! - [`posting`]: period close, posting documents, the outbox worker.
//! - [`lineage`]: from an ERP document number back to the source events.
//! - [`lookup`]: synchronous account, entitlement and pricing look-ups.
//! - [`api`]: the HTTP admin API; [`auth`]: API keys → tenants.
//! - [`server`]: wires the stages together; [`tls`]: rustls for both listeners;
//!   [`connections`]: connection bound and timeouts on both; [`demo`]: the README demo.
//! - [`money`], [`hex()`]: re-exported from the core.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connections;
pub mod demo;
pub mod enrich;
pub mod error;
pub mod ingest;
pub mod lineage;
pub mod lookup;
pub mod posting;
pub mod proto;
pub mod rating;
pub mod server;
pub mod tls;

pub use tollgate_core::{hex, money};
pub use tollgate_plugins as plugins;
pub use tollgate_store::{eventlog, masterdata, metering, store};
