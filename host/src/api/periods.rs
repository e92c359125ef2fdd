//! Period close, interim documents, documents, lineage, the exception
//! queue and the ERP targets.

use super::{AppState, HttpError, Tenant};
use crate::error::{ApiError, ErrorCode};
use crate::lineage;
use crate::posting::{self, CloseReport, Document, PostingStatus};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
pub(super) struct CloseQuery {
    wait_ms: Option<u64>,
}

/// Longest a close call waits for postings.
const MAX_WAIT: Duration = Duration::from_secs(120);

pub(super) async fn close_period(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(period): Path<String>,
    Query(q): Query<CloseQuery>,
) -> Result<Json<CloseReport>, HttpError> {
    // Everything acknowledged before this call is metered before closing.
    s.ingestor.log().sync_tenant(&t).await?;
    let mut report = posting::close_period(&s.store, &s.registry, &s.targets, &t, &period, s.clock.now()).await?;
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
pub(super) struct InterimQuery {
    date: Option<String>,
}

pub(super) async fn build_interim(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(period): Path<String>,
    Query(q): Query<InterimQuery>,
) -> Result<Json<posting::interim::InterimReport>, HttpError> {
    // Everything acknowledged before this call is metered first.
    s.ingestor.log().sync_tenant(&t).await?;
    let now = s.clock.now();
    Ok(Json(posting::interim::build_interim(&s.store, &s.registry, &t, &period, q.date.as_deref(), now).await?))
}

pub(super) async fn list_interim(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(period): Path<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    Ok(Json(serde_json::json!({ "interim": posting::interim::list_interim(&s.store, &t, &period)? })))
}

pub(super) async fn get_document(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Document>, HttpError> {
    Ok(s.store
        .get(&s.store.documents, &posting::document_key(&t, &id))?
        .map(Json)
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, "id", format!("no document {id}")))?)
}

#[derive(Deserialize)]
pub(super) struct LineageQuery {
    target: Option<String>,
}

pub(super) async fn document_lineage(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(number): Path<String>,
    Query(q): Query<LineageQuery>,
) -> Result<Json<lineage::DocumentLineage>, HttpError> {
    Ok(Json(lineage::by_erp_number(&s.store, &t, &number, q.target.as_deref())?))
}

pub(super) async fn event_lineage(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(id): Path<String>,
) -> Result<Json<lineage::EventLineage>, HttpError> {
    Ok(Json(lineage::by_event(&s.store, &t, &id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExceptionsQuery {
    #[serde(default)]
    all: bool,
}

pub(super) async fn list_exceptions(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    q: Result<Query<ExceptionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let Query(q) = q.map_err(|e| ApiError::field(ErrorCode::InvalidArgument, "query", e.body_text()))?;
    Ok(Json(serde_json::json!({
        "exceptions": posting::exceptions::list(&s.store, &t, q.all)?,
        "contract_lines": posting::line_exceptions::list(&s.store, &t, q.all)?,
    })))
}

/// An action on a rejected document (`TG-…`: retry, reroute, cancel) or on
/// a contract line a close left out (`TGL-…`: retry, cancel).
pub(super) async fn act_on_exception(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let Json(body) = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let parse_error = |e: serde_json::Error| ApiError::field(ErrorCode::InvalidArgument, "body", e.to_string());
    let answer = if posting::line_exceptions::is_line_exception(&id) {
        let action: posting::line_exceptions::Action = serde_json::from_value(body).map_err(parse_error)?;
        let exc =
            posting::line_exceptions::act(&s.store, &s.registry, &s.targets, &t, &id, action, s.clock.now()).await?;
        serde_json::to_value(exc).map_err(ApiError::internal)?
    } else {
        let action: posting::exceptions::Action = serde_json::from_value(body).map_err(parse_error)?;
        let md = s.masterdata.get(&s.store, &t)?;
        let doc = posting::exceptions::act(&s.store, &s.registry, &s.targets, &md.data, &t, &id, action, s.clock.now())
            .await?;
        serde_json::to_value(doc).map_err(ApiError::internal)?
    };
    s.poster.wake();
    Ok(Json(answer))
}

/// The ERP targets: where each posts, its circuit breaker, and how many of
/// the tenant's documents wait in its outbox.
pub(super) async fn list_targets(
    State(s): State<AppState>,
    Tenant(t): Tenant,
) -> Result<Json<serde_json::Value>, HttpError> {
    let mut waiting: BTreeMap<String, u64> = BTreeMap::new();
    for (_, e) in s.store.scan::<posting::OutboxEntry>(&s.store.outbox, &crate::store::prefix(&[&t]))? {
        *waiting.entry(e.target).or_default() += 1;
    }
    let breakers = s.poster.breakers(s.clock.now());
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
