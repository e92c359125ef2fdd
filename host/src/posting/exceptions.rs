//! The exception queue: documents an ERP refused for a business reason
//! (closed period, unknown item, missing dimension, validation), each with
//! the ERP's message, a reason finance can read, the owning team and the
//! usual way out. Nothing in it is dropped; finance acts on each:
//!
//! - **retry** after a fix: the document takes the current ERP mappings
//!   (customer account, company, each SKU's ERP item) and is mapped and
//!   queued again;
//! - **re-route** to the next open period (or a named one): the invoice date
//!   moves to that period's first day;
//! - **cancel** with a reason: nothing is posted; the document stays, with
//!   the action, for audit.
//!
//! The document keeps its id through every action, so the ERP's idempotency
//! (or the look-up before a resend) still guarantees one posting.

use super::document::{ActionKind, Document, ExceptionAction, PostingStatus};
use super::document_key;
use crate::config::ErpTargetConfig;
use crate::enrich::Period;
use crate::error::{ApiError, ErrorCode};
use crate::masterdata::MasterData;
use crate::plugins::registry::Registry;
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;

/// An exception as the queue lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Exception {
    pub document_id: String,
    pub status: PostingStatus,
    pub erp_target: String,
    pub legal_entity: String,
    pub customer: String,
    pub period: String,
    pub currency: String,
    pub total: rust_decimal::Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<super::document::Rejection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ExceptionAction>,
}

impl From<Document> for Exception {
    fn from(d: Document) -> Exception {
        Exception {
            document_id: d.id,
            status: d.state.status,
            erp_target: d.erp_target,
            legal_entity: d.legal_entity,
            customer: d.customer,
            period: d.period.id,
            currency: d.currency,
            total: d.total,
            rejection: d.state.rejection,
            actions: d.state.actions,
        }
    }
}

/// The tenant's open exceptions (rejected documents); with `all`, also the
/// documents an action resolved (cancelled, or re-queued and since posted).
/// Reads the `exceptions` index (documents ever rejected), not every document.
pub fn list(store: &Store, tenant: &str, all: bool) -> Result<Vec<Exception>, StoreError> {
    let mut out = Vec::new();
    for item in store.exceptions.scan_prefix(store::prefix(&[tenant])) {
        let (key, _) = item?;
        let Some(d) = store.get::<Document>(&store.documents, &key)? else { continue };
        if d.state.status == PostingStatus::Rejected || (all && !d.state.actions.is_empty()) {
            out.push(Exception::from(d));
        }
    }
    Ok(out)
}

/// What finance does about an exception.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Retry,
    Reroute {
        /// `YYYY-MM`; default: the period after the one it was to post into.
        #[serde(default)]
        period: Option<String>,
    },
    Cancel {
        reason: String,
    },
}

impl Action {
    fn kind(&self) -> ActionKind {
        match self {
            Action::Retry => ActionKind::Retry,
            Action::Reroute { .. } => ActionKind::Reroute,
            Action::Cancel { .. } => ActionKind::Cancel,
        }
    }
}

/// Applies `action` to a rejected document: the document and its new
/// outbox entry (retry, re-route) are written in one transaction and fsynced.
pub async fn act(
    store: &Store,
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    md: &MasterData,
    tenant: &str,
    document_id: &str,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Document, ApiError> {
    let key = document_key(tenant, document_id);
    let original =
        store.documents.get(&key).map_err(StoreError::from)?.ok_or_else(|| {
            ApiError::field(ErrorCode::NotFound, "document_id", format!("no document {document_id:?}"))
        })?;
    let mut doc: Document = store::decode(&store.documents, &original)?;
    let Some(rejection) = doc.state.rejection.clone().filter(|_| doc.state.status == PostingStatus::Rejected) else {
        return Err(ApiError::field(
            ErrorCode::FailedPrecondition,
            "document_id",
            format!("document {document_id} is {:?}, not an open exception", doc.state.status),
        ));
    };
    let mut record = ExceptionAction { action: action.kind(), at: now, rejection, reason: None, posting_period: None };
    let entry = match action {
        Action::Cancel { reason } => {
            let reason = reason.trim();
            if reason.is_empty() || reason.len() > 1024 {
                return Err(ApiError::field(ErrorCode::InvalidArgument, "reason", "1..=1024 bytes, not blank"));
            }
            record.reason = Some(reason.to_string());
            doc.state.status = PostingStatus::Cancelled;
            None
        }
        Action::Retry => {
            refresh_mappings(&mut doc, md);
            Some(requeue(&mut doc, registry, targets, now)?)
        }
        Action::Reroute { period } => {
            let current = doc.posting_period.clone().unwrap_or_else(|| doc.period.id.clone());
            let to = match period {
                Some(p) => Period::parse(&p)?,
                None => Period::containing(Period::parse(&current)?.end, None),
            };
            if to.start <= Period::parse(&current)?.start {
                return Err(ApiError::field(
                    ErrorCode::InvalidArgument,
                    "period",
                    format!("{} is not after {current}, the period the document was to post into", to.id),
                ));
            }
            doc.issue_date = to.start.format("%Y-%m-%d").to_string();
            doc.posting_period = Some(to.id.clone());
            record.posting_period = Some(to.id);
            Some(requeue(&mut doc, registry, targets, now)?)
        }
    };
    doc.state.actions.push(record);
    let doc_bytes = serde_json::to_vec(&doc).map_err(StoreError::from)?;
    let entry_bytes = entry.as_ref().map(serde_json::to_vec).transpose().map_err(StoreError::from)?;
    let result = (&store.documents, &store.outbox).transaction(|(documents, outbox)| {
        // Another action (or the worker) got there first: refuse, change nothing.
        if documents.get(&key)?.as_deref() != Some(&original[..]) {
            return Err(ConflictableTransactionError::Abort(format!(
                "document {document_id} changed while the action was prepared; look again and retry"
            )));
        }
        documents.insert(key.as_slice(), doc_bytes.as_slice())?;
        if let Some(bytes) = &entry_bytes {
            outbox.insert(key.as_slice(), bytes.as_slice())?;
        }
        Ok::<_, ConflictableTransactionError<String>>(())
    });
    result.map_err(|e| match e {
        sled::transaction::TransactionError::Abort(m) => ApiError::field(ErrorCode::Conflict, "document_id", m),
        sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e).into(),
    })?;
    store.flush().await?;
    tracing::info!(tenant, document = document_id, action = ?doc.state.actions.last().map(|a| &a.action), "exception acted on");
    Ok(doc)
}

/// The document with the ERP mappings of the current master data.
fn refresh_mappings(doc: &mut Document, md: &MasterData) {
    if let Some(c) = md.customer(&doc.customer) {
        doc.erp_account = c.erp_account.clone();
    }
    if let Some(e) = md.legal_entity(&doc.legal_entity) {
        doc.erp_company = e.erp_company.clone();
        doc.tax_context = e.tax_context.clone();
    }
    for line in &mut doc.lines {
        let Some(sku) = md.sku(&line.sku) else { continue };
        if let Some(item) = &sku.erp_item {
            line.erp_item = item.clone();
        }
        line.revenue_category = sku.revenue_category.clone().or(line.revenue_category.take());
        line.gl_account = sku.gl_account.clone().or(line.gl_account.take());
    }
}

/// Maps the document again and resets its posting state to pending.
fn requeue(
    doc: &mut Document,
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    now: DateTime<Utc>,
) -> Result<super::OutboxEntry, ApiError> {
    let entry = super::outbox_entry(registry, targets, doc, now)?;
    doc.state.status = PostingStatus::Pending;
    doc.state.rejection = None;
    doc.state.last_error = None;
    doc.state.attempts = 0;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posting::document::{PostingState, Rejection};

    fn document(id: &str, status: PostingStatus) -> Document {
        let mut state = PostingState::pending();
        state.status = status;
        if status == PostingStatus::Rejected {
            state.rejection = Some(Rejection::classify("period-closed", None, "closed".into(), Utc::now()));
        }
        Document {
            id: id.into(),
            tenant: "acme".into(),
            legal_entity: "acme-eu".into(),
            erp_company: "1000".into(),
            tax_context: None,
            erp_target: "sim".into(),
            customer: "globex".into(),
            erp_account: "C-1".into(),
            currency: "EUR".into(),
            period: Period::parse("2025-05").unwrap(),
            issue_date: "2025-05-31".into(),
            posting_period: None,
            revision: 1,
            lines: Vec::new(),
            total: rust_decimal::Decimal::ONE,
            state,
        }
    }

    #[test]
    fn a_store_from_before_the_index_is_indexed_once_at_open() {
        let dir = std::env::temp_dir().join(format!("tollgate-exceptions-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = Store::open(&dir).unwrap();
            for (id, status) in [("TG-1", PostingStatus::Rejected), ("TG-2", PostingStatus::Posted)] {
                store.put(&store.documents, &document_key("acme", id), &document(id, status)).unwrap();
            }
            // As a store written before the index existed: no entries, no marker.
            store.exceptions.clear().unwrap();
            store.exceptions.flush().unwrap();
        }
        let store = Store::open(&dir).unwrap();
        let listed: Vec<_> = list(&store, "acme", false).unwrap().into_iter().map(|e| e.document_id).collect();
        assert_eq!(listed, ["TG-1"]);
        assert!(list(&store, "umbrella", true).unwrap().is_empty());
        assert!(store.exceptions.contains_key(store::EXCEPTIONS_INDEXED).unwrap());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
