//! The edge of the error codes: a client-facing [`ApiError`] as a gRPC
//! status, and the registry's errors as client errors (the event log's and
//! the store's are `tollgate_store::error`'s).

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
