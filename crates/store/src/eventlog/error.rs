//! Why the event log refused or failed.

use super::codec::CodecError;
use super::index::IndexError;
use super::wal::WalError;
use crate::money::DecimalError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("event log record {what}: {source}")]
    Codec { what: String, source: CodecError },
    #[error("window {window}: {source}")]
    Window { window: String, source: DecimalError },
    #[error(
        "the write path is saturated: {queued} events are waiting to be stored and indexed (limit {limit}, \
         ingest.max_unindexed_events); nothing of this request was stored; retry after {retry_after_ms} ms"
    )]
    Saturated { queued: usize, limit: usize, retry_after_ms: u64 },
    #[error(
        "the event log's storage refused a write ({reason}); nothing of this request was stored; \
         writes are retried in the background: retry after {retry_after_ms} ms"
    )]
    StorageRefused { reason: String, retry_after_ms: u64 },
    #[error("the event log stopped after a storage failure and accepts nothing until restarted: {0}")]
    Failed(String),
    #[error("the event log is shut down")]
    Closed,
    #[error("meter {id} exists with a different definition; meters are immutable: create one with a new id")]
    MeterConflict { id: String },
    #[error("at most {limit} meters per tenant")]
    TooManyMeters { limit: usize },
}

impl LogError {
    pub(super) fn codec(what: impl Into<String>) -> impl FnOnce(CodecError) -> LogError {
        let what = what.into();
        move |source| LogError::Codec { what, source }
    }
}
