//! One small set of error codes, mapped to both gRPC codes and HTTP statuses,
//! so a client sees the same meaning on either interface.

use axum::http::StatusCode;
use serde::Serialize;

/// What kind of failure a client-facing error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or breaks a documented limit.
    InvalidArgument,
    /// No or an unknown API key.
    Unauthenticated,
    /// A known key that may not do this.
    PermissionDenied,
    /// The thing asked for does not exist (for this tenant).
    NotFound,
    /// The request conflicts with what is stored.
    Conflict,
    /// A precondition is not met (e.g. master data missing).
    FailedPrecondition,
    /// The request body's media type is not one this endpoint takes.
    UnsupportedMediaType,
    /// The request (its body, or a gRPC message) is larger than the
    /// documented limit; nothing of it was read or stored.
    PayloadTooLarge,
    /// No route has this path, or it takes another method.
    NoRoute,
    /// The write path is saturated; retry after the hint. Nothing was stored.
    ResourceExhausted,
    /// A part is down (e.g. the event log after a storage failure).
    Unavailable,
    /// Storage or another internal part failed; nothing was acknowledged.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::NoRoute => StatusCode::NOT_FOUND,
            ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Conflict => tonic::Code::AlreadyExists,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ErrorCode::PayloadTooLarge => tonic::Code::OutOfRange,
            ErrorCode::NoRoute => tonic::Code::Unimplemented,
            ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }
}

/// A client-facing error: a code, the offending field when there is one, and
/// a lowercase message without a trailing period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// A finer stable code where one exists (e.g. a plugin error's
    /// `incompatible-interface`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When to retry, for [`ErrorCode::ResourceExhausted`]: also sent as
    /// `Retry-After` (HTTP, whole seconds) and `grpc-retry-pushback-ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, field: None, message: message.into(), reason: None, retry_after_ms: None }
    }

    pub fn field(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { code, field: Some(field.into()), message: message.into(), reason: None, retry_after_ms: None }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// A request body the framework refused (`status` is its rejection's):
    /// too large is [`ErrorCode::PayloadTooLarge`], anything else
    /// [`ErrorCode::InvalidArgument`]; both name `body`.
    pub fn body(status: StatusCode, message: impl Into<String>) -> Self {
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::InvalidArgument
        };
        ApiError::field(code, "body", message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(ErrorCode::Internal, format!("internal error: {e}"))
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let msg = match &e.field {
            Some(f) => format!("{f}: {}", e.message),
            None => e.message.clone(),
        };
        let mut status = tonic::Status::new(e.code.grpc_code(), msg);
        if let Some(ms) = e.retry_after_ms
            && let Ok(v) = ms.to_string().parse()
        {
            status.metadata_mut().insert("grpc-retry-pushback-ms", v);
        }
        status
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let retry = self.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1).to_string());
        let mut response = (self.code.http_status(), axum::Json(serde_json::json!({ "error": self }))).into_response();
        if let Some(secs) = retry.and_then(|s| s.parse().ok()) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs);
        }
        response
    }
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
