//! Error answers of the HTTP API: every one is the documented JSON error
//! `{"error": {code, field?, message, reason?, retry_after_ms?}}` with the
//! code's status, and `Retry-After` when there is a retry hint.

use axum::response::{IntoResponse, Response};
use tollgate_core::error::ApiError;

/// An [`ApiError`] as an HTTP answer (the core's error is plain data; this
/// is its axum form). Anything that converts into an [`ApiError`] converts
/// into this, so handlers use `?` on either.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl<E: Into<ApiError>> From<E> for HttpError {
    fn from(e: E) -> Self {
        HttpError(e.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let e = self.0;
        let retry = e.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1).to_string());
        let status = axum::http::StatusCode::from_u16(e.code.http_status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(serde_json::json!({ "error": e }))).into_response();
        if let Some(secs) = retry.and_then(|s| s.parse().ok()) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs);
        }
        response
    }
}
