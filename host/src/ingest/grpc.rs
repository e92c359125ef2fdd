//! `tollgate.v1.IngestService` over gRPC: unary batches and a bidirectional
//! stream of batches, with the same per-event results.

use super::{Ingestor, Outcome};
use crate::auth::Auth;
use crate::clock::{Clock, SharedClock};
use crate::error::{ApiError, grpc_status};
use crate::proto::ingest_service_server::IngestService;
use crate::proto::{EventResult, EventStatus, IngestAck, IngestRequest, IngestResponse, UsageEvent};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

pub struct IngestGrpc {
    ingestor: Ingestor,
    auth: Arc<Auth>,
    clock: SharedClock,
}

impl IngestGrpc {
    pub fn new(ingestor: Ingestor, auth: Arc<Auth>, clock: SharedClock) -> IngestGrpc {
        IngestGrpc { ingestor, auth, clock }
    }

    fn tenant<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.auth.tenant(header).map_err(grpc_status)
    }
}

/// Validates, stores and answers one batch.
async fn ingest_batch(
    ingestor: &Ingestor,
    clock: &dyn Clock,
    tenant: &str,
    events: Vec<UsageEvent>,
) -> Result<IngestResponse, ApiError> {
    super::check_batch_size(events.len(), "events")?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let outcomes = ingestor.ingest(tenant, events, clock.now()).await?;
    let response = response_of(outcomes, ids);
    tracing::info!(
        tenant,
        accepted = response.accepted,
        duplicates = response.duplicates,
        conflicts = response.conflicts,
        rejected = response.rejected,
        superseded = response.superseded,
        "ingested"
    );
    Ok(response)
}

/// The wire form of per-event outcomes.
pub fn response_of(outcomes: Vec<Outcome>, ids: Vec<String>) -> IngestResponse {
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
            Outcome::Superseded { stored_revision } => {
                response.superseded += 1;
                (
                    EventStatus::Superseded,
                    "revision".to_string(),
                    format!("revision {stored_revision} is stored already"),
                )
            }
            Outcome::Rejected(r) => {
                response.rejected += 1;
                (EventStatus::Rejected, r.field, r.reason)
            }
        };
        response.results.push(EventResult { index: index as u32, id, status: status as i32, field, reason });
    }
    response
}

type AckStream = Pin<Box<dyn Stream<Item = Result<IngestAck, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    #[tracing::instrument(skip_all, fields(tenant, events))]
    async fn ingest(&self, request: Request<IngestRequest>) -> Result<Response<IngestResponse>, Status> {
        let tenant = self.tenant(&request)?;
        let events = request.into_inner().events;
        tracing::Span::current().record("tenant", tenant.as_str()).record("events", events.len());
        Ok(Response::new(
            ingest_batch(&self.ingestor, self.clock.as_ref(), &tenant, events).await.map_err(grpc_status)?,
        ))
    }

    type IngestStreamStream = AckStream;

    #[tracing::instrument(skip_all, fields(tenant))]
    async fn ingest_stream(&self, request: Request<Streaming<IngestRequest>>) -> Result<Response<AckStream>, Status> {
        let tenant = self.tenant(&request)?;
        tracing::Span::current().record("tenant", tenant.as_str());
        let mut batches = request.into_inner();
        let (ingestor, clock) = (self.ingestor.clone(), self.clock.clone());
        // One batch at a time, so acks come back in order; each ack is sent
        // only after its batch is durable.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<IngestAck, Status>>(4);
        tokio::spawn(async move {
            let mut sequence = 0u64;
            while let Some(batch) = batches.next().await {
                let answer = match batch {
                    Err(status) => {
                        tracing::debug!(%status, "ingest stream ended by the client");
                        break;
                    }
                    Ok(batch) => ingest_batch(&ingestor, clock.as_ref(), &tenant, batch.events).await.map_err(|e| {
                        let mut status = grpc_status(e);
                        status = Status::new(status.code(), format!("batch {sequence}: {}", status.message()));
                        status
                    }),
                };
                let failed = answer.is_err();
                let ack = answer.map(|response| IngestAck { sequence, response: Some(response) });
                if tx.send(ack).await.is_err() || failed {
                    break;
                }
                sequence += 1;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
