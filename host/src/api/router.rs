//! The router: every endpoint with its body limit, JSON errors for the
//! framework's own rejections and unknown routes, `/openapi.json`, and the
//! caller's tenant as an extractor.

use super::{HttpError, events, lookups, masterdata, meters, periods, plugins, tenants};
use crate::auth::Auth;
use crate::clock::SharedClock;
use crate::config::ErpTargetConfig;
use crate::error::{ApiError, ErrorCode};
use crate::ingest::{self, Ingestor};
use crate::lookup::MasterDataCache;
use crate::plugins::MAX_COMPONENT_BYTES;
use crate::plugins::registry::Registry;
use crate::posting::Poster;
use crate::store::Store;
use axum::Router;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::Method;
use axum::http::StatusCode;
use axum::routing::{MethodFilter, MethodRouter, on};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Arc<Auth>,
    pub registry: Registry,
    pub targets: Arc<BTreeMap<String, ErpTargetConfig>>,
    pub poster: Poster,
    pub ingestor: Ingestor,
    /// Master data indexed in memory for the look-ups.
    pub masterdata: Arc<MasterDataCache>,
    /// Business time (see [`crate::clock`]).
    pub clock: SharedClock,
}

/// One route: a method, a path (axum syntax, which is also OpenAPI's) and
/// its handler.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<AppState>,
    /// Largest request body, bytes.
    pub body_limit: usize,
}

/// The body limit of an endpoint that sets none (axum's default).
pub const DEFAULT_BODY_LIMIT: usize = 2 << 20;

fn ep<H, T>(method: Method, path: &'static str, handler: H) -> Endpoint
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or_else(|e| panic!("{method}: {e}"));
    Endpoint { method, path, handler: on(filter, handler), body_limit: DEFAULT_BODY_LIMIT }
}

impl Endpoint {
    fn body_limit(self, bytes: usize) -> Endpoint {
        Endpoint { body_limit: bytes, ..self }
    }

    /// The handler with its body limit: enforced while the body is read,
    /// and up front for a declared `content-length` beyond it (413 before
    /// anything is read, so a client need not send it all to learn).
    fn limited(self) -> MethodRouter<AppState> {
        self.handler
            .layer(axum::extract::DefaultBodyLimit::max(self.body_limit))
            .layer(axum::middleware::from_fn_with_state(self.body_limit, refuse_declared_oversize))
    }
}

async fn refuse_declared_oversize(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared =
        req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => axum::response::IntoResponse::into_response(HttpError(ApiError::body(
            413,
            format!("the body is {n} bytes; this route takes at most {limit}"),
        ))),
        _ => next.run(req).await,
    }
}

/// Every endpoint of the admin API. The router is built from this list, and
/// a test checks that `/openapi.json` describes exactly these.
pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(M::GET, "/healthz", || async { "ok" }),
        ep(M::GET, "/openapi.json", openapi),
        ep(M::POST, "/v1/events", events::post_events).body_limit(ingest::MAX_HTTP_BODY_BYTES),
        ep(M::GET, "/v1/events", events::list_events),
        ep(M::GET, "/v1/events/{id}", events::get_event),
        ep(M::GET, "/v1/windows", meters::list_windows),
        ep(M::GET, "/v1/meters", meters::list_meters),
        ep(M::POST, "/v1/meters", meters::create_meter),
        ep(M::GET, "/v1/meters/{id}", meters::get_meter),
        ep(M::GET, "/v1/unmatched", meters::list_unmatched),
        ep(M::GET, "/v1/customers/{id}", lookups::customer_account),
        ep(M::GET, "/v1/customers/{id}/entitlements/{feature}", lookups::customer_entitlement),
        ep(M::GET, "/v1/contract-lines/{id}/pricing", lookups::contract_line_pricing),
        ep(M::GET, "/v1/api-keys", tenants::list_api_keys),
        ep(M::POST, "/v1/api-keys", tenants::create_api_key),
        ep(M::DELETE, "/v1/api-keys/{id}", tenants::revoke_api_key),
        ep(M::GET, "/v1/tenants", tenants::list_tenants),
        ep(M::POST, "/v1/tenants", tenants::create_tenant),
        ep(M::GET, "/v1/storage", tenants::tenant_storage),
        ep(M::GET, "/v1/plugins", plugins::list_plugins),
        ep(M::POST, "/v1/plugins", plugins::upload_plugin).body_limit(MAX_COMPONENT_BYTES + (1 << 20)),
        ep(M::POST, "/v1/activations", plugins::activate),
        ep(M::GET, "/v1/activations/{contract_line}", plugins::activations),
        ep(M::GET, "/v1/masterdata", masterdata::get_masterdata),
        ep(M::PUT, "/v1/masterdata", masterdata::put_masterdata).body_limit(MAX_MASTERDATA_BYTES),
        ep(M::GET, "/v1/masterdata/{collection}/{id}", masterdata::get_entity),
        ep(M::GET, "/v1/masterdata/{collection}/{id}/versions", masterdata::entity_versions),
        ep(M::POST, "/v1/masterdata/{collection}/{id}/versions", masterdata::amend_entity),
        ep(M::POST, "/v1/periods/{period}/close", periods::close_period),
        ep(M::POST, "/v1/periods/{period}/interim", periods::build_interim),
        ep(M::GET, "/v1/periods/{period}/interim", periods::list_interim),
        ep(M::GET, "/v1/documents/{id}", periods::get_document),
        ep(M::GET, "/v1/lineage/documents/{number}", periods::document_lineage),
        ep(M::GET, "/v1/lineage/events/{id}", periods::event_lineage),
        ep(M::GET, "/v1/exceptions", periods::list_exceptions),
        ep(M::GET, "/v1/targets", periods::list_targets),
        ep(M::POST, "/v1/exceptions/{document_id}/actions", periods::act_on_exception),
    ]
}

pub fn router(state: AppState) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for e in endpoints() {
        let path = e.path;
        let handler = e.limited();
        let merged = match by_path.remove(path) {
            Some(r) => r.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler))
        .fallback(no_route)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

async fn no_route(method: Method, uri: axum::http::Uri) -> HttpError {
    HttpError(ApiError::field(
        ErrorCode::NoRoute,
        "path",
        format!("no route {method} {}; see GET /openapi.json", uri.path()),
    ))
}

/// Every error answer is the documented JSON error: one the framework wrote
/// itself (a wrong method, an oversized body, a query or body that does
/// not parse) is rewritten with its status kept and its text as the message.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 << 10).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).trim().to_lowercase(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::body(status.as_u16(), text),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(ErrorCode::NoRoute, format!("{text}; see GET /openapi.json")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::field(ErrorCode::UnsupportedMediaType, "content-type", text),
        s if s.is_server_error() => ApiError::new(ErrorCode::Internal, text),
        _ => ApiError::new(ErrorCode::InvalidArgument, text),
    };
    let mut out = axum::response::IntoResponse::into_response(HttpError(error));
    *out.status_mut() = status;
    out
}

/// Largest master data document `PUT /v1/masterdata` takes (tens of
/// thousands of customers and contract lines).
pub const MAX_MASTERDATA_BYTES: usize = 64 << 20;

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> ([(axum::http::header::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The calling tenant, from the request's API key: the one extractor every
/// tenant-scoped handler takes. A request without a valid tenant key is
/// refused before anything else of it is read (401, or 403 for the
/// operator key, which belongs to no tenant).
pub struct Tenant(pub String);

impl axum::extract::FromRequestParts<AppState> for Tenant {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        Ok(Tenant(state.auth.tenant(key)?))
    }
}
