//! `tollgate.v1.IngestService` over gRPC.

use super::{Ingestor, Outcome};
use crate::auth::Auth;
use crate::error::{ApiError, ErrorCode};
use crate::proto::ingest_service_server::IngestService;
use crate::proto::{EventResult, EventStatus, IngestRequest, IngestResponse};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct IngestGrpc {
    ingestor: Ingestor,
    auth: Arc<Auth>,
}

impl IngestGrpc {
    pub fn new(ingestor: Ingestor, auth: Arc<Auth>) -> IngestGrpc {
        IngestGrpc { ingestor, auth }
    }
}

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    #[tracing::instrument(skip_all, fields(tenant, events))]
    async fn ingest(&self, request: Request<IngestRequest>) -> Result<Response<IngestResponse>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let tenant = self.auth.tenant(header)?;
        let events = request.into_inner().events;
        tracing::Span::current().record("tenant", tenant.as_str()).record("events", events.len());
        if events.len() > super::MAX_EVENTS_PER_BATCH {
            return Err(ApiError::field(
                ErrorCode::InvalidArgument,
                "events",
                format!("{} events in one request; at most {}", events.len(), super::MAX_EVENTS_PER_BATCH),
            )
            .into());
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let outcomes = self.ingestor.ingest(&tenant, events, chrono::Utc::now()).await.map_err(ApiError::from)?;
        let mut response = IngestResponse::default();
        for (index, (outcome, id)) in outcomes.into_iter().zip(ids).enumerate() {
            let (status, field, reason) = match outcome {
                Outcome::Accepted => {
                    response.accepted += 1;
                    (EventStatus::Accepted, String::new(), String::new())
                }
                Outcome::Duplicate => {
                    response.duplicates += 1;
                    (EventStatus::Duplicate, String::new(), String::new())
                }
                Outcome::Conflict(r) => {
                    response.conflicts += 1;
                    (EventStatus::Conflict, r.field, r.reason)
                }
                Outcome::Rejected(r) => {
                    response.rejected += 1;
                    (EventStatus::Rejected, r.field, r.reason)
                }
            };
            response.results.push(EventResult { index: index as u32, id, status: status as i32, field, reason });
        }
        tracing::info!(
            accepted = response.accepted,
            duplicates = response.duplicates,
            rejected = response.rejected,
            "ingested"
        );
        Ok(Response::new(response))
    }
}
