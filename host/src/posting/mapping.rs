//! A document mapped to its ERP request: the outbox entry that posts it.

use super::{Document, OutboxEntry, StoredRequest};
use crate::config::ErpTargetConfig;
use crate::error::{ApiError, ErrorCode};
use crate::plugins::registry::FindError;
use crate::plugins::registry::Registry;
use crate::plugins::{Kind, PluginError, bindings::posting as wit};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Why a document could not be mapped to its ERP request.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("document {document}: no ERP target {target:?} is configured")]
    NoTarget { document: String, target: String },
    #[error("ERP target {target}: mapper: {source}")]
    NoMapper { target: String, source: FindError },
    #[error("document {document}: mapper {mapper}: {}: {source}", source.code())]
    Mapper { document: String, mapper: String, source: PluginError },
}

/// A document that cannot be mapped cannot be posted: a failed precondition.
impl From<MapError> for ApiError {
    fn from(e: MapError) -> Self {
        ApiError::new(ErrorCode::FailedPrecondition, e.to_string())
    }
}

/// Maps a document to its ERP request with its target's mapper plugin: the
/// outbox entry that will post it. `Err` says which document, target or
/// mapper failed.
pub fn outbox_entry(
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    doc: &Document,
    now: DateTime<Utc>,
) -> Result<OutboxEntry, MapError> {
    let target = targets
        .get(&doc.erp_target)
        .ok_or_else(|| MapError::NoTarget { document: doc.id.clone(), target: doc.erp_target.clone() })?;
    let mapper = registry
        .find(&doc.tenant, &target.mapper, None, Kind::ErpMapper)
        .map_err(|source| MapError::NoMapper { target: doc.erp_target.clone(), source })?;
    let request = registry
        .runtime()
        .map_document(&mapper, &wit::PostingDocument::from(doc), &to_wit_target(&doc.erp_target, target))
        .map_err(|source| MapError::Mapper { document: doc.id.clone(), mapper: mapper.name.clone(), source })?;
    Ok(OutboxEntry {
        tenant: doc.tenant.clone(),
        document_id: doc.id.clone(),
        target: doc.erp_target.clone(),
        request: StoredRequest::from(request),
        attempts: 0,
        next_attempt_at: now,
        ambiguous: false,
        last_error: None,
        in_flight: false,
        step: 0,
    })
}

/// A target's configuration as the mapper plugin sees it.
pub fn to_wit_target(name: &str, t: &ErpTargetConfig) -> wit::TargetConfig {
    wit::TargetConfig {
        name: name.to_string(),
        settings: t.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// The store key of a document (and of its outbox entry).
pub fn document_key(tenant: &str, id: &str) -> Vec<u8> {
    crate::store::key(&[tenant, id])
}
