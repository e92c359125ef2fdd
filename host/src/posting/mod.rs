//! Posting: period close → posting documents → ERP requests (mapper plugin)
//! → outbox → ERP, exactly once.
//!
//! - `document`: pure document building and deterministic ids.
//! - `close`: closing a period: rate, build, map, and store documents,
//!   charges and outbox entries in one transaction.
//! - `outbox`: the worker that sends outbox entries to their ERP with the
//!   document id as idempotency key, retries transient failures with
//!   backoff, and records the ERP document number.
//! - `schedule`: closing each tenant's previous month by itself (and the
//!   daily interim documents).
//! - `interim`: period-to-date documents for reconciliation, never posted.
//! - `exceptions`: business rejections as a queue finance acts on (retry
//!   after a fix, re-route to the next open period, cancel with a reason).
//! - `line_exceptions`: contract lines a close could not enrich or rate,
//!   left out while the rest is billed, in the same queue (retry, e.g.
//!   after activating another rule version, billed in a supplementary
//!   document; cancel with a reason).

pub mod close;
pub mod document;
pub mod exceptions;
pub mod interim;
pub mod line_exceptions;
mod mapping;
pub mod outbox;
pub mod schedule;

pub use close::{CloseReport, PeriodClose, close_period};
pub use document::{Document, DocumentLine, PostingState, PostingStatus};
pub use mapping::{MapError, document_key, outbox_entry, to_wit_target};
pub use outbox::{OutboxEntry, Poster, StoredRequest};
