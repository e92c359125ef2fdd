//! Posting: period close → posting documents → ERP requests (mapper plugin)
//! → outbox → ERP, exactly once.
//!
//! - `document`: pure document building and deterministic ids.
//! - `close`: closing a period: rate, build, map, and store documents,
//!   charges and outbox entries in one transaction.
//! - `outbox`: the worker that sends outbox entries to their ERP with the
//!   document id as idempotency key, retries transient failures with
//!   backoff, and records the ERP document number.
//! - `schedule`: closing each tenant's previous month by itself (and the
//!   daily interim documents).
//! - `interim`: period-to-date documents for reconciliation, never posted.
//! - `exceptions`: business rejections as a queue finance acts on (retry
//!   after a fix, re-route to the next open period, cancel with a reason).
//! - `line_exceptions`: contract lines a close could not enrich or rate,
//!   left out while the rest is billed, in the same queue (retry, e.g.
//!   after activating another rule version, billed in a supplementary
//!   document; cancel with a reason).

pub mod close;
pub mod document;
pub mod exceptions;
pub mod interim;
pub mod line_exceptions;
pub mod outbox;
pub mod schedule;

pub use close::{CloseReport, PeriodClose, close_period};
pub use document::{Document, DocumentLine, PostingState, PostingStatus};
pub use outbox::{OutboxEntry, Poster, StoredRequest};

use crate::config::ErpTargetConfig;
use crate::rating::registry::Registry;
use crate::rating::runtime::{Kind, bindings::posting as wit, to_wit};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Maps a document to its ERP request with its target's mapper plugin: the
/// outbox entry that will post it. `Err` says which document, target or
/// mapper failed.
pub fn outbox_entry(
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    doc: &Document,
    now: DateTime<Utc>,
) -> Result<OutboxEntry, String> {
    let target = targets
        .get(&doc.erp_target)
        .ok_or_else(|| format!("document {}: no ERP target {:?} is configured", doc.id, doc.erp_target))?;
    let mapper = registry
        .find(&doc.tenant, &target.mapper, None, Kind::ErpMapper)
        .map_err(|e| format!("ERP target {}: mapper: {e}", doc.erp_target))?;
    let request = registry
        .runtime()
        .map_document(&mapper, &to_wit_document(doc), &to_wit_target(&doc.erp_target, target))
        .map_err(|e| format!("document {}: mapper {}: {}: {e}", doc.id, mapper.name, e.code()))?;
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

/// A document as the mapper plugin sees it.
pub fn to_wit_document(d: &Document) -> wit::PostingDocument {
    let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    wit::PostingDocument {
        id: d.id.clone(),
        tenant: d.tenant.clone(),
        legal_entity: d.legal_entity.clone(),
        erp_company: d.erp_company.clone(),
        tax_context: d.tax_context.clone(),
        customer: d.customer.clone(),
        erp_account: d.erp_account.clone(),
        target: d.erp_target.clone(),
        currency: d.currency.clone(),
        period_start: ts(d.period.start),
        period_end: ts(d.period.end),
        posting_period: d.posting_period.clone().unwrap_or_else(|| d.period.id.clone()),
        issue_date: d.issue_date.clone(),
        lines: d
            .lines
            .iter()
            .map(|l| wit::DocumentLine {
                contract_line: l.contract_line.clone(),
                sku: l.sku.clone(),
                erp_item: l.erp_item.clone(),
                description: l.description.clone(),
                quantity: to_wit(l.quantity),
                unit_price: to_wit(l.unit_price),
                amount: to_wit(l.amount),
                usage_from: ts(l.usage_from.unwrap_or(d.period.start)),
                usage_to: ts(l.usage_to.unwrap_or(d.period.end)),
                dimensions: l.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                revenue_category: l.revenue_category.clone(),
                gl_account: l.gl_account.clone(),
            })
            .collect(),
        total: to_wit(d.total),
    }
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
