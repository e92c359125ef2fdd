//! The event log's and the store's errors as client-facing errors.

pub use tollgate_core::error::{ApiError, ErrorCode};

impl From<crate::eventlog::LogError> for ApiError {
    fn from(e: crate::eventlog::LogError) -> Self {
        use crate::eventlog::LogError as L;
        match e {
            L::Saturated { retry_after_ms, .. } => {
                let mut err = ApiError::new(ErrorCode::ResourceExhausted, e.to_string());
                err.retry_after_ms = Some(retry_after_ms);
                err
            }
            L::StorageRefused { retry_after_ms, .. } => {
                let mut err = ApiError::new(ErrorCode::Unavailable, e.to_string()).with_reason("storage");
                err.retry_after_ms = Some(retry_after_ms);
                err
            }
            L::Failed(_) | L::Closed => {
                tracing::error!(error = %e, "event log unavailable");
                ApiError::new(ErrorCode::Unavailable, e.to_string())
            }
            L::MeterConflict { .. } => ApiError::field(ErrorCode::Conflict, "id", e.to_string()),
            L::TooManyMeters { .. } => ApiError::new(ErrorCode::FailedPrecondition, e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e)
    }
}
