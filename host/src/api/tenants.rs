//! Tenants, API keys, and what a tenant stores.

use super::{AppState, HttpError, Tenant};
use crate::auth::{self, Principal};
use crate::error::{ApiError, ErrorCode};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

/// What the calling tenant stores, by kind (a scan of its keys: about a
/// second per million events, on a blocking thread beside the others).
pub(super) async fn tenant_storage(
    State(s): State<AppState>,
    Tenant(t): Tenant,
) -> Result<Json<serde_json::Value>, HttpError> {
    let plugins = s.registry.quota_use(&s.store, &t)?;
    let (store, tenant) = (s.store.clone(), t.clone());
    let areas = tokio::task::spawn_blocking(move || tollgate_store::usage::tenant_areas(&store, &tenant))
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

pub(super) fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    state.auth.principal(headers.get("authorization").and_then(|v| v.to_str().ok()))
}

/// The tenant whose keys a request manages: a tenant key its own tenant
/// only, the operator any tenant it names.
pub(super) fn key_scope(p: Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
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
pub(super) struct NewKey {
    name: String,
    tenant: Option<String>,
}

pub(super) async fn create_api_key(
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
    Ok((StatusCode::CREATED, Json(auth::create_key(&s.store, &tenant, &req.name, s.clock.now()).await?)))
}

/// The operator key's, or a refusal naming it.
pub(super) fn operator(s: &AppState, h: &HeaderMap) -> Result<String, ApiError> {
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
pub(super) struct NewTenant {
    id: String,
    name: String,
}

/// `POST /v1/tenants`: the operator creates a tenant explicitly (audited:
/// who and when are kept); keys can then be made for it.
pub(super) async fn create_tenant(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Result<Json<NewTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<auth::TenantRecord>), HttpError> {
    let key = operator(&s, &h)?;
    let Json(req) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    Ok((StatusCode::CREATED, Json(s.auth.create_tenant(&req.id, &req.name, &key, s.clock.now()).await?)))
}

/// `GET /v1/tenants`: every tenant, configured or created (operator key).
pub(super) async fn list_tenants(
    State(s): State<AppState>,
    h: HeaderMap,
) -> Result<Json<serde_json::Value>, HttpError> {
    operator(&s, &h)?;
    Ok(Json(serde_json::json!({ "tenants": s.auth.tenants()? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeysQuery {
    tenant: Option<String>,
}

pub(super) async fn list_api_keys(
    State(s): State<AppState>,
    h: HeaderMap,
    Query(q): Query<KeysQuery>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let scope = key_scope(principal(&s, &h)?, q.tenant)?;
    Ok(Json(serde_json::json!({ "api_keys": auth::list_keys(&s.store, scope.as_deref())? })))
}

pub(super) async fn revoke_api_key(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<auth::ApiKeyRecord>, HttpError> {
    let scope = key_scope(principal(&s, &h)?, None)?;
    Ok(Json(auth::revoke_key(&s.store, scope.as_deref(), &id, s.clock.now()).await?))
}
