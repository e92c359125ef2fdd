//! The edge of the error codes: a client-facing [`ApiError`] as a gRPC
//! status (the event log's and the store's errors as client errors are
//! `tollgate_store::error`'s, the registry's `tollgate_plugins::registry`'s).

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
