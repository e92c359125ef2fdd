//! Meters, their windows, and unmatched usage.

use super::events::instant;
use super::{AppState, HttpError, Tenant};
use crate::error::{ApiError, ErrorCode};
use crate::metering::window::{self, WindowFilter};
use crate::metering::{Meter, MeterSpec};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;

pub(super) async fn create_meter(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    body: Result<Json<MeterSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Meter>), HttpError> {
    let Json(spec) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let meter = spec.validate(s.clock.now())?;
    let (meter, created) = s.ingestor.log().create_meter(&t, meter).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(meter)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnmatchedQuery {
    period: String,
}

pub(super) async fn list_unmatched(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    q: Result<Query<UnmatchedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let Query(q) = q.map_err(|e| ApiError::field(ErrorCode::InvalidArgument, "query", e.body_text()))?;
    let period = crate::enrich::Period::parse(&q.period)?;
    s.ingestor.log().sync_tenant(&t).await?;
    let history = s.masterdata.history(&s.store, &t)?;
    let items = crate::enrich::unmatched::unmatched(&s.store, &history, &t, &period, s.clock.now())
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "period": period.id, "unmatched": items })))
}

pub(super) async fn list_meters(
    State(s): State<AppState>,
    Tenant(t): Tenant,
) -> Result<Json<serde_json::Value>, HttpError> {
    s.ingestor.log().sync_tenant(&t).await?;
    let index = s.ingestor.log().index();
    Ok(Json(serde_json::json!({
        "meters": window::load_meters(index, &t)?,
        "unmetered": window::unmetered(index, &t)?,
    })))
}

pub(super) fn find_meter(s: &AppState, tenant: &str, id: &str, field: &str) -> Result<Meter, ApiError> {
    window::load_meter(s.ingestor.log().index(), tenant, id)?
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, field, format!("no meter {id:?}")))
}

pub(super) async fn get_meter(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Meter>, HttpError> {
    Ok(Json(find_meter(&s, &t, &id, "id")?))
}

pub(super) async fn list_windows(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<serde_json::Value>, HttpError> {
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
