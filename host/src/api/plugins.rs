//! Plugin uploads and listings, rater activations.

use super::{AppState, HttpError, Tenant};
use crate::error::{ApiError, ErrorCode};
use crate::plugins::registry::is_valid_name;
use crate::plugins::{Kind, MAX_COMPONENT_BYTES};
use crate::rating::activation::{self, Activation, ActivationRequest};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

pub(super) async fn list_plugins(
    State(s): State<AppState>,
    Tenant(t): Tenant,
) -> Result<Json<serde_json::Value>, HttpError> {
    Ok(Json(serde_json::json!({ "plugins": s.registry.list(&t), "quota": s.registry.quota_use(&s.store, &t)? })))
}

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    name: Option<String>,
    version: Option<String>,
    kind: Option<String>,
}

pub(super) async fn upload_plugin(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Query(q): Query<UploadQuery>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), HttpError> {
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
    let (plugin, created) = s.registry.upload(&s.store, &t, &name, version, kind, body.to_vec(), s.clock.now()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(
            serde_json::json!({ "name": plugin.name, "version": plugin.version.to_string(), "kind": plugin.kind, "sha256": plugin.sha256 }),
        ),
    ))
}

pub(super) async fn activate(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    body: Result<Json<ActivationRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Activation>), HttpError> {
    let Json(req) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let md = s.masterdata.get(&s.store, &t)?;
    let a = activation::activate(&s.store, &s.registry, &md.data, &t, req, s.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

pub(super) async fn activations(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(line): Path<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    Ok(Json(serde_json::json!({ "activations": activation::history(&s.store, &t, &line)? })))
}
