//! The edge of the error codes: a client-facing [`ApiError`] as a gRPC
//! status, and the event log's, store's and registry's errors as client
//! errors.

pub use tollgate_core::error::{ApiError, ErrorCode};

/// The gRPC status of an error code.
pub fn grpc_code(code: ErrorCode) -> tonic::Code {
    tonic::Code::from_i32(code.grpc_code())
}

/// An [`ApiError`] as a gRPC status (`field: message`, with
/// `grpc-retry-pushback-ms` when there is a retry hint).
pub fn grpc_status(e: ApiError) -> tonic::Status {
    let msg = match &e.field {
        Some(f) => format!("{f}: {}", e.message),
        None => e.message.clone(),
    };
    let mut status = tonic::Status::new(grpc_code(e.code), msg);
    if let Some(ms) = e.retry_after_ms
        && let Ok(v) = ms.to_string().parse()
    {
        status.metadata_mut().insert("grpc-retry-pushback-ms", v);
    }
    status
}

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

impl From<crate::rating::registry::RegistryError> for ApiError {
    fn from(e: crate::rating::registry::RegistryError) -> Self {
        use crate::rating::registry::RegistryError as R;
        match e {
            R::Plugin { source, .. } => {
                ApiError::field(ErrorCode::InvalidArgument, "body", source.to_string()).with_reason(source.code())
            }
            R::Immutable { .. } => ApiError::field(ErrorCode::Conflict, "version", e.to_string()),
            R::Reserved(_) => ApiError::field(ErrorCode::Conflict, "name", e.to_string()),
            R::KindChanged { .. } => ApiError::field(ErrorCode::Conflict, "kind", e.to_string()),
            R::Quota { what, .. } => {
                let retry = what.starts_with("uploads").then_some(60_000);
                let mut a = ApiError::field(ErrorCode::ResourceExhausted, "body", e.to_string()).with_reason("quota");
                a.retry_after_ms = retry;
                a
            }
            R::Store(s) => ApiError::internal(s),
            R::Read { .. } | R::Manifest { .. } => ApiError::internal(e),
        }
    }
}
