//! Master data endpoints: effective-dated writes, "as of" reads and history.
//!
//! - `GET  /v1/masterdata[?as_of=T][&known_at=T]`: the master data in effect
//!   at `as_of` (default now), as recorded by `known_at` (default now)
//! - `PUT  /v1/masterdata[?effective_from=T]`: the whole master data from
//!   `effective_from`; entities it changes get a new version from then,
//!   entities it leaves out end then. Without `effective_from`, changes take
//!   effect now (a contract line's from the start of its meter's current
//!   window) and entities new to the master data since always
//! - `GET  /v1/masterdata/{collection}/{id}[?as_of=T][&known_at=T]`: one
//!   entity in effect at a time (`collection`: legal_entities, customers,
//!   subscriptions, skus, features, contract_lines)
//! - `GET  /v1/masterdata/{collection}/{id}/versions`: its history
//! - `POST /v1/masterdata/{collection}/{id}/versions`
//!   `{effective_from, value | null, effective_to?, reason?}`: an amendment
//!   (or, with `value` null, the entity's end), retroactive or future

use super::{AppState, HttpError, Tenant};
use crate::error::{ApiError, ErrorCode};
use crate::masterdata::history::{Change, Kind, SINCE_ALWAYS};
use crate::masterdata::{self, MasterData};
use crate::rating::RegistryRefs;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::InvalidArgument, field, message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AsOfQuery {
    as_of: Option<DateTime<Utc>>,
    known_at: Option<DateTime<Utc>>,
}

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn query<T>(q: QueryResult<T>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| bad("query", e.body_text()))
}

fn kind(collection: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(collection).ok_or_else(|| {
        let names: Vec<_> = Kind::ALL.iter().map(|k| k.collection()).collect();
        ApiError::field(
            ErrorCode::NotFound,
            "collection",
            format!("{collection:?} is not a master data collection ({})", names.join(", ")),
        )
    })
}

pub(super) async fn get_masterdata(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    q: QueryResult<AsOfQuery>,
) -> Result<Json<MasterData>, HttpError> {
    let q = query(q)?;
    let now = s.clock.now();
    let history = s.masterdata.history(&s.store, &t)?;
    Ok(Json(history.as_of(q.as_of.unwrap_or(now), q.known_at.unwrap_or(now)).map_err(ApiError::internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutQuery {
    effective_from: Option<DateTime<Utc>>,
}

pub(super) async fn put_masterdata(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    q: QueryResult<PutQuery>,
    body: Result<Json<MasterData>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let q = query(q)?;
    let Json(data) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let refs = refs(&s, &t);
    // The body first, so errors name its own indexes.
    data.validate(&refs)?;
    let now = s.clock.now();
    let (at, new_from) = match q.effective_from {
        Some(at) => (at, at),
        None => (now, SINCE_ALWAYS),
    };
    let written = masterdata::write(&s.store, &t, &refs, now, |history| {
        let mut changes = history.diff(&data, at, new_from, now).map_err(ApiError::internal)?;
        if q.effective_from.is_none() {
            masterdata::snap_to_windows(&mut changes, history, &refs);
        }
        Ok(changes)
    })
    .await?;
    s.masterdata.set(&t, written.history.clone())?;
    tracing::info!(tenant = %t, versions = written.versions.len(), effective_from = %at, "master data written");
    Ok(Json(serde_json::json!({
        "status": if written.versions.is_empty() { "unchanged" } else { "stored" },
        "contract_lines": data.contract_lines.len(),
        "versions": written.versions,
    })))
}

fn refs<'a>(s: &'a AppState, tenant: &'a str) -> RegistryRefs<'a> {
    RegistryRefs { tenant, registry: &s.registry, targets: &s.targets, meters: s.ingestor.log().meters() }
}

pub(super) async fn get_entity(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path((collection, id)): Path<(String, String)>,
    q: QueryResult<AsOfQuery>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let kind = kind(&collection)?;
    let q = query(q)?;
    let now = s.clock.now();
    let at = q.as_of.unwrap_or(now);
    let history = s.masterdata.history(&s.store, &t)?;
    let value = history.entity_at(kind, &id, at, q.known_at.unwrap_or(now)).ok_or_else(|| {
        ApiError::field(ErrorCode::NotFound, "id", format!("no {} {id:?} in effect at {}", kind.collection(), at))
    })?;
    Ok(Json(value.clone()))
}

pub(super) async fn entity_versions(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let kind = kind(&collection)?;
    let history = s.masterdata.history(&s.store, &t)?;
    let versions = history.of(kind, &id);
    if versions.is_empty() {
        return Err(HttpError::from(ApiError::field(
            ErrorCode::NotFound,
            "id",
            format!("no {} {id:?}", kind.collection()),
        )));
    }
    Ok(Json(serde_json::json!({ "collection": kind.collection(), "id": id, "versions": versions })))
}

/// An amendment of one entity.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Amendment {
    effective_from: DateTime<Utc>,
    /// The entity from `effective_from` on; null ends it (required, so a
    /// forgotten value never ends an entity by accident).
    value: serde_json::Value,
    /// When the amended version ends (the entity's end, unless a later
    /// version follows).
    #[serde(default)]
    effective_to: Option<DateTime<Utc>>,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn amend_entity(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path((collection, id)): Path<(String, String)>,
    body: Result<Json<Amendment>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), HttpError> {
    let kind = kind(&collection)?;
    let Json(a) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let value = (!a.value.is_null()).then_some(a.value);
    if let Some(value) = &value {
        let id_field = if kind == Kind::Feature { "code" } else { "id" };
        if value.get(id_field).and_then(|v| v.as_str()) != Some(id.as_str()) {
            return Err(HttpError::from(bad(
                &format!("value.{id_field}"),
                format!("must be {id:?}, the id in the path"),
            )));
        }
        check_shape(kind, value)?;
    }
    if let Some(to) = a.effective_to
        && to <= a.effective_from
    {
        return Err(HttpError::from(bad("effective_to", "must be after effective_from")));
    }
    if a.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(HttpError::from(bad("reason", "at most 1024 bytes")));
    }
    let mut changes = vec![Change {
        kind,
        id: id.clone(),
        effective_from: a.effective_from,
        value: value.clone(),
        reason: a.reason.clone(),
    }];
    if let Some(to) = a.effective_to {
        changes.push(Change { kind, id: id.clone(), effective_from: to, value: None, reason: a.reason.clone() });
    }
    let now = s.clock.now();
    let written = masterdata::write(&s.store, &t, &refs(&s, &t), now, |history| {
        if value.is_none() && history.of(kind, &id).is_empty() {
            return Err(ApiError::field(ErrorCode::NotFound, "id", format!("no {} {id:?} to end", kind.collection())));
        }
        Ok(changes)
    })
    .await?;
    s.masterdata.set(&t, written.history.clone())?;
    tracing::info!(tenant = %t, collection = kind.collection(), %id, effective_from = %a.effective_from, "master data amended");
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "versions": written.versions }))))
}

/// The value parses as its kind (field errors name `value.<field>`).
fn check_shape(kind: Kind, value: &serde_json::Value) -> Result<(), ApiError> {
    use crate::masterdata::{ContractLine, Customer, Feature, LegalEntity, Sku, Subscription};
    fn parse<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<(), ApiError> {
        serde_path_to_error::deserialize::<_, T>(v.clone())
            .map(|_| ())
            .map_err(|e| bad(&format!("value.{}", e.path()), e.inner().to_string()))
    }
    match kind {
        Kind::LegalEntity => parse::<LegalEntity>(value),
        Kind::Customer => parse::<Customer>(value),
        Kind::Subscription => parse::<Subscription>(value),
        Kind::Sku => parse::<Sku>(value),
        Kind::Feature => parse::<Feature>(value),
        Kind::ContractLine => parse::<ContractLine>(value),
    }
}
