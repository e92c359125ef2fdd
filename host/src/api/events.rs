//! `POST /v1/events` (CloudEvents over HTTP), `GET /v1/events[/{id}]`.

use super::{AppState, HttpError, Tenant};
use crate::error::{ApiError, ErrorCode};
use crate::eventlog::query;
use crate::ingest::{self, Outcome, cloudevents};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::collections::BTreeMap;

pub(super) async fn post_events(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    h: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let body = body.map_err(|e| ApiError::body(e.status().as_u16(), e.body_text()))?;
    let media = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let events = cloudevents::decode_body(&media, &body)?;
    ingest::check_batch_size(events.len(), "body")?;
    let ids: Vec<String> = events.iter().map(cloudevents::id_of).collect();
    let decoded = events.iter().map(cloudevents::to_usage_event).collect();
    let outcomes = s.ingestor.ingest_decoded(&t, decoded, s.clock.now()).await?;
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

/// Most events one page of `GET /v1/events` returns.
const MAX_PAGE: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    customer: Option<String>,
    meter: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

pub(super) fn instant(field: &str, value: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&chrono::Utc)).map_err(|e| {
                ApiError::field(ErrorCode::InvalidArgument, field, format!("{v:?} is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()
}

pub(super) async fn list_events(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<query::Page>, HttpError> {
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

pub(super) async fn get_event(
    State(s): State<AppState>,
    Tenant(t): Tenant,
    Path(id): Path<String>,
) -> Result<Json<query::EventHistory>, HttpError> {
    s.ingestor.log().sync_tenant(&t).await?;
    Ok(query::event(s.ingestor.log().index(), &t, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, "id", format!("no event {id}")))?)
}
