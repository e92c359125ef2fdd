//! The HTTP admin API (JSON). Every route takes the tenant from
//! `authorization: Bearer <api key>`.
//!
//! Described by OpenAPI 3 at `GET /openapi.json` (`api/openapi.json`),
//! which a test keeps equal to [`endpoints`].
//!
//! - `GET  /healthz`
//! - `POST /v1/events`: usage as CloudEvents 1.0, one
//!   (`application/cloudevents+json`) or a batch
//!   (`application/cloudevents-batch+json`); per-event results (see
//!   `ingest::cloudevents` for the attribute mapping)
//! - `GET  /v1/events?customer=C&meter=M&from=T&to=T&limit=N&after=CURSOR`:
//!   live events (current revisions) by customer, meter and event-time range
//!   (`from` inclusive, `to` exclusive, RFC 3339), in (customer, meter, time)
//!   order; `next` is the cursor of the following page
//! - `GET  /v1/events/{id}`: one event's current revision and the revisions
//!   it replaced
//! - `POST /v1/meters`: define a meter ([`crate::metering::MeterSpec`]);
//!   its windows are built from the events stored so far before it answers
//!   (201; 200 when the same definition exists; 409 for a different one)
//! - `GET  /v1/meters`: the tenant's meters and the live events of types no
//!   meter reads (`unmetered`); `GET /v1/meters/{id}`: one meter
//! - `GET  /v1/customers/{id}`: account look-up (ERP account, legal entity,
//!   contract lines); `GET /v1/customers/{id}/entitlements/{feature}`:
//!   allowed, used this period, remaining; `GET
//!   /v1/contract-lines/{id}/pricing`: the rule pricing a line now. Served
//!   from master data indexed in memory, each bounded by 50 ms
//! - `GET  /v1/unmatched?period=YYYY-MM`: usage no contract line bills yet
//!   (unknown customer, no contract line for the meter) and events no
//!   meter reads, with the reason and the owning team
//! - `GET  /v1/windows?meter=M[&customer=C][&from=T][&to=T][&dimensions.K=V…]`:
//!   a meter's windows (window start in `[from, to)`), optionally of one
//!   customer and one value of a group-by dimension, with their total
//! - `POST /v1/api-keys` `{name, tenant?}`: a new API key, shown once (a
//!   tenant's key makes keys for its tenant; the operator key for any tenant)
//! - `GET  /v1/api-keys[?tenant=T]`: keys without secrets
//! - `DELETE /v1/api-keys/{id}`: revoke a key
//! - `POST /v1/tenants` `{id, name}`, `GET /v1/tenants`: the operator
//!   creates a tenant explicitly (keys are only made for existing tenants)
//! - `GET  /v1/plugins`: the plugins the tenant can use (its own and bundled)
//! - `POST /v1/plugins?name=N&version=V&kind=rater|erp-mapper`: upload a
//!   component (body: the `.wasm` bytes); validated, compiled, immutable
//! - `POST /v1/activations`: `{contract_line, plugin, version, effective_from}`
//! - `GET  /v1/activations/{contract_line}`: the activation history
//! - `/v1/masterdata…`: effective-dated master data, "as of" reads and
//!   history (see `api::masterdata`)
//! - `POST /v1/periods/{period}/interim[?date=YYYY-MM-DD]`, `GET …/interim`:
//!   interim documents (period to date, never posted) for reconciliation
//! - `POST /v1/periods/{period}/close[?wait_ms=N]`: close a billing period
//!   (`YYYY-MM`); with `wait_ms`, answer once every document is posted or
//!   rejected, or after N ms
//! - `GET  /v1/documents/{id}`: a posting document and its state
//! - `GET  /v1/lineage/documents/{erp_document_number}[?target=T]`
//! - `GET  /v1/lineage/events/{id}`: the charges an event counts in and the
//!   documents (per ERP target) and ERP numbers that bill them
//! - `GET  /v1/targets`: the ERP targets, each with its circuit breaker and
//!   the tenant's documents waiting in its outbox
//! - `GET  /v1/exceptions[?all=true]`: documents an ERP rejected for a
//!   business reason, with the reason, owner and suggested action (with
//!   `all`, also those an action resolved)
//! - `POST /v1/exceptions/{document_id}/actions` `{"action": "retry"}` |
//!   `{"action": "reroute", "period"?: "YYYY-MM"}` | `{"action": "cancel",
//!   "reason": ".."}`

mod error;
mod masterdata;

pub use error::HttpError;

use crate::auth::{self, Auth, Principal};
use crate::config::ErpTargetConfig;
use crate::error::{ApiError, ErrorCode};
use crate::eventlog::query;
use crate::ingest::{self, Ingestor, Outcome, cloudevents};
use crate::lineage;
use crate::lookup::{self, MasterDataCache};
use crate::metering::window::{self, WindowFilter};
use crate::metering::{Meter, MeterSpec};
use crate::posting::{self, CloseReport, Document, Poster, PostingStatus};
use crate::rating::activation::{self, Activation, ActivationRequest};
use crate::rating::registry::{Registry, is_valid_name};
use crate::rating::runtime::{Kind, MAX_COMPONENT_BYTES};
use crate::store::Store;
use axum::extract::{Path, Query, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
        ep(M::POST, "/v1/events", post_events).body_limit(ingest::MAX_HTTP_BODY_BYTES),
        ep(M::GET, "/v1/events", list_events),
        ep(M::GET, "/v1/events/{id}", get_event),
        ep(M::GET, "/v1/windows", list_windows),
        ep(M::GET, "/v1/meters", list_meters),
        ep(M::POST, "/v1/meters", create_meter),
        ep(M::GET, "/v1/meters/{id}", get_meter),
        ep(M::GET, "/v1/unmatched", list_unmatched),
        ep(M::GET, "/v1/customers/{id}", customer_account),
        ep(M::GET, "/v1/customers/{id}/entitlements/{feature}", customer_entitlement),
        ep(M::GET, "/v1/contract-lines/{id}/pricing", contract_line_pricing),
        ep(M::GET, "/v1/api-keys", list_api_keys),
        ep(M::POST, "/v1/api-keys", create_api_key),
        ep(M::DELETE, "/v1/api-keys/{id}", revoke_api_key),
        ep(M::GET, "/v1/tenants", list_tenants),
        ep(M::POST, "/v1/tenants", create_tenant),
        ep(M::GET, "/v1/storage", tenant_storage),
        ep(M::GET, "/v1/plugins", list_plugins),
        ep(M::POST, "/v1/plugins", upload_plugin).body_limit(MAX_COMPONENT_BYTES + (1 << 20)),
        ep(M::POST, "/v1/activations", activate),
        ep(M::GET, "/v1/activations/{contract_line}", activations),
        ep(M::GET, "/v1/masterdata", masterdata::get_masterdata),
        ep(M::PUT, "/v1/masterdata", masterdata::put_masterdata).body_limit(MAX_MASTERDATA_BYTES),
        ep(M::GET, "/v1/masterdata/{collection}/{id}", masterdata::get_entity),
        ep(M::GET, "/v1/masterdata/{collection}/{id}/versions", masterdata::entity_versions),
        ep(M::POST, "/v1/masterdata/{collection}/{id}/versions", masterdata::amend_entity),
        ep(M::POST, "/v1/periods/{period}/close", close_period),
        ep(M::POST, "/v1/periods/{period}/interim", build_interim),
        ep(M::GET, "/v1/periods/{period}/interim", list_interim),
        ep(M::GET, "/v1/documents/{id}", get_document),
        ep(M::GET, "/v1/lineage/documents/{number}", document_lineage),
        ep(M::GET, "/v1/lineage/events/{id}", event_lineage),
        ep(M::GET, "/v1/exceptions", list_exceptions),
        ep(M::GET, "/v1/targets", list_targets),
        ep(M::POST, "/v1/exceptions/{document_id}/actions", act_on_exception),
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

pub(crate) fn tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    state.auth.tenant(headers.get("authorization").and_then(|v| v.to_str().ok()))
}

async fn post_events(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    let body = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let media = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let events = cloudevents::decode_body(&media, &body)?;
    ingest::check_batch_size(events.len(), "body")?;
    let ids: Vec<String> = events.iter().map(cloudevents::id_of).collect();
    let decoded = events.iter().map(cloudevents::to_usage_event).collect();
    let outcomes = s.ingestor.ingest_decoded(&t, decoded, chrono::Utc::now()).await?;
    let mut counts =
        BTreeMap::from([("accepted", 0u32), ("duplicates", 0), ("conflicts", 0), ("rejected", 0), ("superseded", 0)]);
    let results: Vec<serde_json::Value> = outcomes
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(index, (outcome, id))| {
            let (status, count, why) = match outcome {
                Outcome::Accepted => ("accepted", "accepted", None),
                Outcome::Duplicate => ("duplicate", "duplicates", None),
                Outcome::Conflict(r) => ("conflict", "conflicts", Some(r)),
                Outcome::Rejected(r) => ("rejected", "rejected", Some(r)),
                Outcome::Superseded { stored_revision } => (
                    "superseded",
                    "superseded",
                    Some(ingest::Rejection {
                        field: "revision".into(),
                        reason: format!("revision {stored_revision} is stored already"),
                    }),
                ),
            };
            *counts.entry(count).or_default() += 1;
            let mut line = serde_json::json!({ "index": index, "id": id, "status": status });
            if let Some(r) = why {
                // Named as the producer sent it: the CloudEvents attribute.
                line["field"] = cloudevents::attribute_of(&r.field).into();
                line["reason"] = r.reason.into();
            }
            line
        })
        .collect();
    tracing::info!(tenant = %t, ?counts, "ingested CloudEvents");
    let mut answer = serde_json::json!({ "results": results });
    for (k, v) in counts {
        answer[k] = v.into();
    }
    Ok(Json(answer))
}

/// Records and bytes (keys and values, before compression) of one kind of
/// stored data.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Area {
    records: u64,
    bytes: u64,
}

impl Area {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.records += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }
}

/// What the calling tenant stores, by kind (a scan of its keys: about a
/// second per million events, on a blocking thread beside the others).
async fn tenant_storage(State(s): State<AppState>, h: HeaderMap) -> Result<Json<serde_json::Value>, HttpError> {
    use crate::eventlog::keys::tenant_prefix;
    let t = tenant(&s, &h)?;
    let plugins = s.registry.quota_use(&s.store, &t)?;
    let store = s.store.clone();
    let tenant = t.clone();
    let areas = tokio::task::spawn_blocking(move || -> Result<BTreeMap<&'static str, Area>, ApiError> {
        let mut areas = BTreeMap::new();
        let index = &store.eventlog;
        for (name, tag) in
            [("events", b'e'), ("event_history", b'h'), ("dedup", b'd'), ("windows", b'w'), ("meters", b'M')]
        {
            let area: &mut Area = areas.entry(name).or_default();
            for entry in index.prefix(&tenant_prefix(tag, &tenant)) {
                let (k, v) = entry.map_err(crate::eventlog::LogError::from)?;
                area.add(&k, &v);
            }
        }
        let trees = [
            ("masterdata", &store.masterdata),
            ("billing", &store.charges),
            ("billing", &store.charge_events),
            ("billing", &store.event_charges),
            ("billing", &store.periods),
            ("billing", &store.interim),
            ("billing", &store.activations),
            ("documents", &store.documents),
            ("documents", &store.outbox),
            ("documents", &store.exceptions),
            ("documents", &store.line_exceptions),
        ];
        for (name, tree) in trees {
            let area: &mut Area = areas.entry(name).or_default();
            for entry in tree.scan_prefix(crate::store::prefix(&[&tenant])) {
                let (k, v) = entry.map_err(crate::store::StoreError::from)?;
                area.add(&k, &v);
            }
        }
        Ok(areas)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("storage scan: {e}")))??;
    let total: u64 = areas.values().map(|a| a.bytes).sum::<u64>() + plugins.bytes;
    let mut answer = serde_json::json!({ "tenant": t, "total_bytes": total });
    for (name, area) in areas {
        answer[name] = serde_json::to_value(area).unwrap_or_default();
    }
    answer["plugins"] = serde_json::json!({ "records": plugins.versions, "bytes": plugins.bytes });
    Ok(Json(answer))
}

async fn list_plugins(State(s): State<AppState>, h: HeaderMap) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(Json(serde_json::json!({ "plugins": s.registry.list(&t), "quota": s.registry.quota_use(&s.store, &t)? })))
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
    version: Option<String>,
    kind: Option<String>,
}

async fn upload_plugin(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(q): Query<UploadQuery>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), HttpError> {
    let t = tenant(&s, &h)?;
    let body = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let bad = |field: &str, message: String| ApiError::field(ErrorCode::InvalidArgument, field, message);
    let name = q.name.ok_or_else(|| bad("name", "required query parameter".into()))?;
    if !is_valid_name(&name) {
        return Err(HttpError::from(bad("name", format!("{name:?}: lowercase letters, digits and '-', 1..=64 bytes"))));
    }
    let version = q.version.ok_or_else(|| bad("version", "required query parameter".into()))?;
    let version = semver::Version::parse(&version)
        .map_err(|e| bad("version", format!("{version:?} is not a semver version: {e}")))?;
    let kind = match q.kind.as_deref() {
        Some("rater") => Kind::Rater,
        Some("erp-mapper") => Kind::ErpMapper,
        other => {
            return Err(HttpError::from(bad("kind", format!("{other:?}: expected rater or erp-mapper"))));
        }
    };
    if body.len() > MAX_COMPONENT_BYTES {
        return Err(HttpError::from(
            bad("body", format!("too-large: {} bytes; at most {MAX_COMPONENT_BYTES}", body.len()))
                .with_reason("too-large"),
        ));
    }
    let (plugin, created) = s.registry.upload(&s.store, &t, &name, version, kind, body.to_vec()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(
            serde_json::json!({ "name": plugin.name, "version": plugin.version.to_string(), "kind": plugin.kind, "sha256": plugin.sha256 }),
        ),
    ))
}

async fn activate(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Result<Json<ActivationRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Activation>), HttpError> {
    let t = tenant(&s, &h)?;
    let Json(req) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let md = s.masterdata.get(&s.store, &t)?;
    let a = activation::activate(&s.store, &s.registry, &md.data, &t, req, chrono::Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

async fn activations(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(line): Path<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(Json(serde_json::json!({ "activations": activation::history(&s.store, &t, &line)? })))
}

#[derive(Deserialize)]
struct CloseQuery {
    wait_ms: Option<u64>,
}

/// Longest a close call waits for postings.
const MAX_WAIT: Duration = Duration::from_secs(120);

async fn close_period(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(period): Path<String>,
    Query(q): Query<CloseQuery>,
) -> Result<Json<CloseReport>, HttpError> {
    let t = tenant(&s, &h)?;
    // Everything acknowledged before this call is metered before closing.
    s.ingestor.log().sync_tenant(&t).await?;
    let mut report = posting::close_period(&s.store, &s.registry, &s.targets, &t, &period, chrono::Utc::now()).await?;
    s.poster.wake();
    if let Some(ms) = q.wait_ms {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms).min(MAX_WAIT);
        while report.documents.iter().any(|d| d.state.status == PostingStatus::Pending)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let closed = s
                .store
                .get(&s.store.periods, &crate::store::key(&[&t, &report.period]))?
                .ok_or_else(|| ApiError::internal("closed period vanished"))?;
            let (late_usage, unmatched) =
                (std::mem::take(&mut report.late_usage), std::mem::take(&mut report.unmatched));
            report = CloseReport {
                late_usage,
                unmatched,
                ..posting::close::report(&s.store, closed, report.already_closed)?
            };
        }
    }
    Ok(Json(report))
}

#[derive(Deserialize)]
struct InterimQuery {
    date: Option<String>,
}

async fn build_interim(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(period): Path<String>,
    Query(q): Query<InterimQuery>,
) -> Result<Json<posting::interim::InterimReport>, HttpError> {
    let t = tenant(&s, &h)?;
    // Everything acknowledged before this call is metered first.
    s.ingestor.log().sync_tenant(&t).await?;
    let now = chrono::Utc::now();
    Ok(Json(posting::interim::build_interim(&s.store, &s.registry, &t, &period, q.date.as_deref(), now).await?))
}

async fn list_interim(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(period): Path<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(Json(serde_json::json!({ "interim": posting::interim::list_interim(&s.store, &t, &period)? })))
}

async fn get_document(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Document>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(s.store
        .get(&s.store.documents, &posting::document_key(&t, &id))?
        .map(Json)
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, "id", format!("no document {id}")))?)
}

#[derive(Deserialize)]
struct LineageQuery {
    target: Option<String>,
}

async fn document_lineage(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(number): Path<String>,
    Query(q): Query<LineageQuery>,
) -> Result<Json<lineage::DocumentLineage>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(Json(lineage::by_erp_number(&s.store, &t, &number, q.target.as_deref())?))
}

async fn event_lineage(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<lineage::EventLineage>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(Json(lineage::by_event(&s.store, &t, &id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionsQuery {
    #[serde(default)]
    all: bool,
}

async fn list_exceptions(
    State(s): State<AppState>,
    h: HeaderMap,
    q: Result<Query<ExceptionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    let Query(q) = q.map_err(|e| ApiError::field(ErrorCode::InvalidArgument, "query", e.body_text()))?;
    Ok(Json(serde_json::json!({
        "exceptions": posting::exceptions::list(&s.store, &t, q.all)?,
        "contract_lines": posting::line_exceptions::list(&s.store, &t, q.all)?,
    })))
}

/// An action on a rejected document (`TG-…`: retry, reroute, cancel) or on
/// a contract line a close left out (`TGL-…`: retry, cancel).
async fn act_on_exception(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    let Json(body) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let parse_error = |e: serde_json::Error| ApiError::field(ErrorCode::InvalidArgument, "body", e.to_string());
    let answer = if posting::line_exceptions::is_line_exception(&id) {
        let action: posting::line_exceptions::Action = serde_json::from_value(body).map_err(parse_error)?;
        let exc = posting::line_exceptions::act(&s.store, &s.registry, &s.targets, &t, &id, action).await?;
        serde_json::to_value(exc).map_err(ApiError::internal)?
    } else {
        let action: posting::exceptions::Action = serde_json::from_value(body).map_err(parse_error)?;
        let md = s.masterdata.get(&s.store, &t)?;
        let doc = posting::exceptions::act(&s.store, &s.registry, &s.targets, &md.data, &t, &id, action).await?;
        serde_json::to_value(doc).map_err(ApiError::internal)?
    };
    s.poster.wake();
    Ok(Json(answer))
}

/// The ERP targets: where each posts, its circuit breaker, and how many of
/// the tenant's documents wait in its outbox.
async fn list_targets(State(s): State<AppState>, h: HeaderMap) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    let mut waiting: BTreeMap<String, u64> = BTreeMap::new();
    for (_, e) in s.store.scan::<posting::OutboxEntry>(&s.store.outbox, &crate::store::prefix(&[&t]))? {
        *waiting.entry(e.target).or_default() += 1;
    }
    let breakers = s.poster.breakers(chrono::Utc::now());
    let targets: Vec<_> = s
        .targets
        .iter()
        .map(|(name, c)| {
            serde_json::json!({
                "name": name,
                "base_url": c.base_url,
                "mapper": c.mapper,
                "max_concurrency": c.max_concurrency,
                "breaker": breakers.get(name),
                "waiting": waiting.get(name).copied().unwrap_or(0),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "targets": targets })))
}

/// Most events one page of `GET /v1/events` returns.
const MAX_PAGE: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    customer: Option<String>,
    meter: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

fn instant(field: &str, value: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&chrono::Utc)).map_err(|e| {
                ApiError::field(ErrorCode::InvalidArgument, field, format!("{v:?} is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()
}

async fn list_events(
    State(s): State<AppState>,
    h: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<query::Page>, HttpError> {
    let t = tenant(&s, &h)?;
    let Query(q) = q.map_err(|e| ApiError::field(ErrorCode::InvalidArgument, "query", e.body_text()))?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(HttpError::from(ApiError::field(
            ErrorCode::InvalidArgument,
            "limit",
            format!("{limit}; must be 1..={MAX_PAGE}"),
        )));
    }
    let after = q
        .after
        .as_deref()
        .map(hex::decode)
        .transpose()
        .map_err(|_| ApiError::field(ErrorCode::InvalidArgument, "after", "not a cursor from a previous page"))?;
    let filter = query::EventFilter {
        customer: q.customer,
        meter: q.meter,
        from: instant("from", q.from.as_deref())?,
        to: instant("to", q.to.as_deref())?,
    };
    s.ingestor.log().sync_tenant(&t).await?;
    Ok(Json(query::events(s.ingestor.log().index(), &t, &filter, limit, after.as_deref())?))
}

async fn get_event(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<query::EventHistory>, HttpError> {
    let t = tenant(&s, &h)?;
    s.ingestor.log().sync_tenant(&t).await?;
    Ok(query::event(s.ingestor.log().index(), &t, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, "id", format!("no event {id}")))?)
}

async fn create_meter(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Result<Json<MeterSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Meter>), HttpError> {
    let t = tenant(&s, &h)?;
    let Json(spec) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let meter = spec.validate(chrono::Utc::now())?;
    let (meter, created) = s.ingestor.log().create_meter(&t, meter).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(meter)))
}

async fn customer_account(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<lookup::Account>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(lookup::bounded(move || lookup::account(&*s.masterdata.get(&s.store, &t)?, &id)).await.map(Json)?)
}

async fn customer_entitlement(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((id, feature)): Path<(String, String)>,
) -> Result<Json<lookup::Entitlement>, HttpError> {
    let t = tenant(&s, &h)?;
    let log = s.ingestor.log().clone();
    let tenant_id = t.clone();
    Ok(lookup::entitlement_now(&log, &tenant_id, move || {
        let md = s.masterdata.get(&s.store, &t)?;
        lookup::entitlement(&s.store, &md, &t, &id, &feature, chrono::Utc::now())
    })
    .await
    .map(Json)?)
}

async fn contract_line_pricing(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<lookup::PricingReference>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(lookup::bounded(move || {
        let md = s.masterdata.get(&s.store, &t)?;
        lookup::pricing(&s.store, &s.registry, &md, &t, &id, chrono::Utc::now())
    })
    .await
    .map(Json)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnmatchedQuery {
    period: String,
}

async fn list_unmatched(
    State(s): State<AppState>,
    h: HeaderMap,
    q: Result<Query<UnmatchedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    let Query(q) = q.map_err(|e| ApiError::field(ErrorCode::InvalidArgument, "query", e.body_text()))?;
    let period = crate::enrich::Period::parse(&q.period)?;
    s.ingestor.log().sync_tenant(&t).await?;
    let history = s.masterdata.history(&s.store, &t)?;
    let items = crate::enrich::unmatched::unmatched(&s.store, &history, &t, &period, chrono::Utc::now())
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "period": period.id, "unmatched": items })))
}

async fn list_meters(State(s): State<AppState>, h: HeaderMap) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    s.ingestor.log().sync_tenant(&t).await?;
    let index = s.ingestor.log().index();
    Ok(Json(serde_json::json!({
        "meters": window::load_meters(index, &t)?,
        "unmetered": window::unmetered(index, &t)?,
    })))
}

fn find_meter(s: &AppState, tenant: &str, id: &str, field: &str) -> Result<Meter, ApiError> {
    window::load_meter(s.ingestor.log().index(), tenant, id)?
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, field, format!("no meter {id:?}")))
}

async fn get_meter(State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Result<Json<Meter>, HttpError> {
    let t = tenant(&s, &h)?;
    Ok(Json(find_meter(&s, &t, &id, "id")?))
}

async fn list_windows(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let t = tenant(&s, &h)?;
    let mut filter = WindowFilter::default();
    let mut meter = None;
    for (k, v) in q {
        match k.as_str() {
            "meter" => meter = Some(v),
            "customer" => filter.customer = Some(v),
            "from" => filter.from = instant("from", Some(&v))?,
            "to" => filter.to = instant("to", Some(&v))?,
            _ => match k.strip_prefix("dimensions.") {
                Some(d) if !d.is_empty() => {
                    filter.dimensions.insert(d.to_string(), v);
                }
                _ => {
                    return Err(HttpError::from(ApiError::field(
                        ErrorCode::InvalidArgument,
                        k.clone(),
                        "unknown query parameter; takes meter, customer, from, to, dimensions.<key>",
                    )));
                }
            },
        }
    }
    let meter = meter.ok_or_else(|| ApiError::field(ErrorCode::InvalidArgument, "meter", "required"))?;
    let meter = find_meter(&s, &t, &meter, "meter")?;
    if let Some(k) = filter.dimensions.keys().find(|k| !meter.group_by.contains(k)) {
        return Err(HttpError::from(ApiError::field(
            ErrorCode::InvalidArgument,
            format!("dimensions.{k}"),
            format!("meter {} does not group by {k:?} (group_by: {:?})", meter.id, meter.group_by),
        )));
    }
    s.ingestor.log().sync_tenant(&t).await?;
    let index = s.ingestor.log().index();
    let windows = window::windows(index, &t, &meter, &filter)?;
    let total = window::total(index, &t, &meter, &windows)?;
    Ok(Json(serde_json::json!({ "meter": meter, "windows": windows, "total": total })))
}

fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    state.auth.principal(headers.get("authorization").and_then(|v| v.to_str().ok()))
}

/// The tenant whose keys a request manages: a tenant key its own tenant
/// only, the operator any tenant it names.
fn key_scope(p: Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (p, asked) {
        (Principal::Admin, t) => Ok(t),
        (Principal::Tenant(own), None) => Ok(Some(own)),
        (Principal::Tenant(own), Some(t)) if t == own => Ok(Some(own)),
        (Principal::Tenant(_), Some(t)) => Err(ApiError::field(
            ErrorCode::PermissionDenied,
            "tenant",
            format!("a tenant's key manages its own keys only, not those of {t}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    tenant: Option<String>,
}

async fn create_api_key(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Result<Json<NewKey>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<auth::CreatedKey>), HttpError> {
    let p = principal(&s, &h)?;
    let Json(req) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let tenant = key_scope(p, req.tenant)?.ok_or_else(|| {
        ApiError::field(ErrorCode::InvalidArgument, "tenant", "required with the operator key: whose key is this")
    })?;
    if !s.auth.is_known_tenant(&tenant)? {
        return Err(HttpError::from(ApiError::field(
            ErrorCode::NotFound,
            "tenant",
            format!("no tenant {tenant:?}: name one the configuration lists, or create it first with POST /v1/tenants"),
        )));
    }
    Ok((StatusCode::CREATED, Json(auth::create_key(&s.store, &tenant, &req.name).await?)))
}

/// The operator key's, or a refusal naming it.
fn operator(s: &AppState, h: &HeaderMap) -> Result<String, ApiError> {
    match principal(s, h)? {
        Principal::Admin => {
            let value = h.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
            Ok(auth::bearer_token(value).unwrap_or_default().to_string())
        }
        Principal::Tenant(_) => Err(ApiError::field(
            ErrorCode::PermissionDenied,
            "authorization",
            "tenants are managed with the operator key only",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    id: String,
    name: String,
}

/// `POST /v1/tenants`: the operator creates a tenant explicitly (audited:
/// who and when are kept); keys can then be made for it.
async fn create_tenant(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Result<Json<NewTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<auth::TenantRecord>), HttpError> {
    let key = operator(&s, &h)?;
    let Json(req) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    Ok((StatusCode::CREATED, Json(s.auth.create_tenant(&req.id, &req.name, &key).await?)))
}

/// `GET /v1/tenants`: every tenant, configured or created (operator key).
async fn list_tenants(State(s): State<AppState>, h: HeaderMap) -> Result<Json<serde_json::Value>, HttpError> {
    operator(&s, &h)?;
    Ok(Json(serde_json::json!({ "tenants": s.auth.tenants()? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysQuery {
    tenant: Option<String>,
}

async fn list_api_keys(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(q): Query<KeysQuery>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let scope = key_scope(principal(&s, &h)?, q.tenant)?;
    Ok(Json(serde_json::json!({ "api_keys": auth::list_keys(&s.store, scope.as_deref())? })))
}

async fn revoke_api_key(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<auth::ApiKeyRecord>, HttpError> {
    let scope = key_scope(principal(&s, &h)?, None)?;
    Ok(Json(auth::revoke_key(&s.store, scope.as_deref(), &id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `/openapi.json` is a valid OpenAPI 3 document (it parses into the
    /// `openapiv3` model, every `$ref` resolves, every path parameter is
    /// declared) and describes exactly the routes the router serves.
    #[test]
    fn openapi_describes_exactly_the_served_endpoints() {
        let doc: openapiv3::OpenAPI = serde_json::from_str(OPENAPI).expect("a valid OpenAPI 3 document");
        assert!(doc.openapi.starts_with("3."), "{}", doc.openapi);
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            let item = item.as_item().expect("paths are inline");
            for (method, operation) in item.iter() {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
                assert!(operation.operation_id.is_some(), "{method} {path}: operationId");
                assert!(!operation.responses.responses.is_empty(), "{method} {path}: responses");
                let declared: BTreeSet<String> = operation
                    .parameters
                    .iter()
                    .filter_map(|p| match p.as_item()? {
                        openapiv3::Parameter::Path { parameter_data, .. } => Some(parameter_data.name.clone()),
                        _ => None,
                    })
                    .collect();
                let templated: BTreeSet<String> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .map(str::to_string)
                    .collect();
                assert_eq!(declared, templated, "{method} {path}: path parameters");
            }
        }
        let served: BTreeSet<(String, String)> =
            endpoints().iter().map(|e| (e.method.as_str().to_string(), e.path.to_string())).collect();
        assert_eq!(documented, served, "documented = served");

        // Every reference points at a schema that exists.
        let raw: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut refs = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                        out.push(r.to_string());
                    }
                    m.values().for_each(|v| walk(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(&raw, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            assert!(raw.pointer(r.trim_start_matches('#')).is_some(), "unresolved $ref {r}");
        }
    }
}
