//! One small set of error codes, mapped to both gRPC codes and HTTP statuses
//! (as plain numbers: the edge turns them into its framework's types), so a
//! client sees the same meaning on either interface.

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
    /// The HTTP status this code is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::FailedPrecondition => 422,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::NoRoute => 404,
            ErrorCode::ResourceExhausted => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The gRPC status code this code is answered with (its number, as
    /// `google.rpc.Code` numbers them).
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorCode::InvalidArgument => 3,
            ErrorCode::Unauthenticated => 16,
            ErrorCode::PermissionDenied => 7,
            ErrorCode::NotFound => 5,
            ErrorCode::Conflict => 6,
            ErrorCode::FailedPrecondition => 9,
            ErrorCode::UnsupportedMediaType => 3,
            ErrorCode::PayloadTooLarge => 11,
            ErrorCode::NoRoute => 12,
            ErrorCode::ResourceExhausted => 8,
            ErrorCode::Unavailable => 14,
            ErrorCode::Internal => 13,
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
    pub fn body(status: u16, message: impl Into<String>) -> Self {
        let code = if status == 413 { ErrorCode::PayloadTooLarge } else { ErrorCode::InvalidArgument };
        ApiError::field(code, "body", message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(ErrorCode::Internal, format!("internal error: {e}"))
    }
}
