//! Posting documents, built purely from charge records and master data: one
//! document per (tenant, legal entity, customer, ERP target, period,
//! revision), with an id derived from exactly those keys, so building twice
//! gives the same documents and the same ids. A legal entity that posts to
//! a second target beside its own (coexistence, e.g. a legacy ERP kept for
//! revenue) gets one document per target, each posted and tracked on its own.

use crate::enrich::Period;
use crate::masterdata::MasterData;
use crate::money::{self, DecimalError};
use crate::rating::ChargeRecord;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentLine {
    /// The contract line and the index of the charge it came from (lineage).
    pub contract_line: String,
    /// The part of the contract line (see [`crate::enrich::CanonicalUsage::part`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub part: String,
    pub charge_index: usize,
    pub sku: String,
    pub erp_item: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
    /// The service period of the line, `[from, to)`: the usage it bills
    /// (a part of the period after a mid-period amendment, the line's own
    /// period when it bills on an anchor day). Absent in documents stored
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_to: Option<DateTime<Utc>>,
    /// The usage's dimensions (e.g. region).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
    /// The charge SKU's revenue category and GL account, from master data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gl_account: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostingStatus {
    /// In the outbox, not yet confirmed by the ERP.
    Pending,
    /// The ERP holds it; `erp_document_number` is set.
    Posted,
    /// The ERP refused it for a business reason: an exception for finance
    /// (`GET /v1/exceptions`); see `rejection`.
    Rejected,
    /// Finance cancelled it after a rejection; nothing was posted.
    Cancelled,
    /// An interim document (period to date, for reconciliation): never posted.
    Interim,
}

/// Who can fix a rejected document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    Finance,
    /// Master data (an item or an account the ERP does not know).
    MasterData,
    Erp,
}

/// What finance can do about a rejected document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Post it again (after a fix).
    Retry,
    /// Post it into another (the next open) period.
    Reroute,
    /// Post nothing.
    Cancel,
}

/// A business rejection as the ERP gave it, classified for the exception queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The mapper's stable code (e.g. `period-closed`, `unknown-item`).
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The ERP's own message.
    pub message: String,
    /// What it means, for finance.
    pub reason: String,
    /// Who can fix it.
    pub owner: Owner,
    /// The action that usually resolves it.
    pub suggested_action: ActionKind,
    pub at: DateTime<Utc>,
}

impl Rejection {
    pub fn classify(code: &str, field: Option<String>, message: String, at: DateTime<Utc>) -> Rejection {
        use ActionKind::{Reroute, Retry};
        let (reason, owner, action) = match code {
            "period-closed" | "closed-period" => {
                ("the ERP's accounting period for the invoice date is closed", Owner::Finance, Reroute)
            }
            "date-out-of-sequence" => (
                "the ERP numbers invoices in date order and already holds later ones: post on a later date",
                Owner::Finance,
                Reroute,
            ),
            "unknown-item" => ("the ERP does not know an item of the document", Owner::MasterData, Retry),
            "unknown-account" | "unknown-customer" => {
                ("the ERP does not know the customer's account", Owner::MasterData, Retry)
            }
            "missing-dimension" => ("the ERP requires a dimension the document lacks", Owner::Erp, Retry),
            "duplicate-erp-number" => (
                "the ERP answered with a number it already gave another document: its numbering is broken \
                 (e.g. Tryton on SQLite with concurrent posts; set max_concurrency = 1)",
                Owner::Erp,
                Retry,
            ),
            _ => ("the ERP refused the document", Owner::Erp, Retry),
        };
        Rejection {
            code: code.to_string(),
            field,
            message,
            reason: reason.to_string(),
            owner,
            suggested_action: action,
            at,
        }
    }
}

/// What finance did about an exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionAction {
    pub action: ActionKind,
    pub at: DateTime<Utc>,
    /// The rejection it answered.
    pub rejection: Rejection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a re-route: the period the document now posts into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posting_period: Option<String>,
}

/// Where a document stands with its ERP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingState {
    pub status: PostingStatus,
    pub erp_document_number: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub posted_at: Option<DateTime<Utc>>,
    /// The open business rejection (status `rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// Every exception action taken on the document, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ExceptionAction>,
}

impl PostingState {
    /// A new document's state: waiting for its first attempt.
    pub fn pending() -> PostingState {
        PostingState {
            status: PostingStatus::Pending,
            erp_document_number: None,
            attempts: 0,
            last_error: None,
            posted_at: None,
            rejection: None,
            actions: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub tenant: String,
    pub legal_entity: String,
    pub erp_company: String,
    /// The legal entity's tax context (e.g. "DE-VAT").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_context: Option<String>,
    pub erp_target: String,
    pub customer: String,
    pub erp_account: String,
    pub currency: String,
    pub period: Period,
    /// The invoice date: the period's last day, or the first day of the
    /// period a rejected document was re-routed to.
    pub issue_date: String,
    /// The period the document posts into when finance re-routed it (the
    /// ERP had closed the usage period); absent: its own period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posting_period: Option<String>,
    pub revision: u32,
    pub lines: Vec<DocumentLine>,
    pub total: Decimal,
    pub state: PostingState,
}

/// The deterministic document id: `TG-` and 24 hex digits of
/// SHA-256(tenant, legal entity, customer, ERP target, period, revision).
pub fn document_id(
    tenant: &str,
    legal_entity: &str,
    customer: &str,
    target: &str,
    period: &str,
    revision: u32,
) -> String {
    let mut h = Sha256::new();
    for part in [tenant, legal_entity, customer, target, period, &revision.to_string()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("TG-{}", &crate::hex(&h.finalize())[..24])
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("contract line {line}: charge SKU {sku} has no ERP item")]
    NoErpItem { line: String, sku: String },
    #[error("document total of customer {customer}: {source}")]
    Total { customer: String, source: DecimalError },
}

/// Groups charge records into documents by (legal entity, customer); the
/// ERP account, company and target come from each record's canonical usage,
/// the ERP item of a charge from its SKU in `md` (the master data at the
/// period's end) or else the usage's own. Records without charges make no
/// line; a customer without lines gets no document.
pub fn build_documents(
    tenant: &str,
    md: &MasterData,
    period: &Period,
    revision: u32,
    records: &[ChargeRecord],
) -> Result<Vec<Document>, DocumentError> {
    let mut groups: BTreeMap<(&str, &str), (&ChargeRecord, Vec<DocumentLine>)> = BTreeMap::new();
    let mut sorted: Vec<&ChargeRecord> = records.iter().collect();
    sorted.sort_by(|a, b| (&a.usage.contract_line, &a.usage.part).cmp(&(&b.usage.contract_line, &b.usage.part)));
    for r in sorted {
        for (i, c) in r.charges.iter().enumerate() {
            let sku = md.sku(&c.sku);
            let own = c.sku == r.usage.sku;
            let erp_item = sku
                .and_then(|s| s.erp_item.clone())
                .or_else(|| own.then(|| r.usage.erp_item.clone()).flatten())
                .ok_or_else(|| DocumentError::NoErpItem { line: r.usage.contract_line.clone(), sku: c.sku.clone() })?;
            let group = groups.entry((&r.usage.legal_entity, &r.usage.customer)).or_insert((r, Vec::new()));
            group.1.push(DocumentLine {
                contract_line: r.usage.contract_line.clone(),
                part: r.usage.part.clone(),
                charge_index: i,
                sku: c.sku.clone(),
                erp_item,
                description: c.description.clone(),
                quantity: c.quantity,
                unit_price: c.unit_price,
                amount: c.amount,
                usage_from: Some(r.usage.from),
                usage_to: Some(r.usage.to),
                dimensions: r.usage.dimensions.clone(),
                revenue_category: sku
                    .and_then(|s| s.revenue_category.clone())
                    .or_else(|| own.then(|| r.usage.revenue_category.clone()).flatten()),
                gl_account: sku
                    .and_then(|s| s.gl_account.clone())
                    .or_else(|| own.then(|| r.usage.gl_account.clone()).flatten()),
            });
        }
    }
    let mut documents = Vec::new();
    for ((entity_id, customer_id), (first, lines)) in groups {
        let u = &first.usage;
        let total = money::exact_sum(lines.iter().map(|l| l.amount))
            .map_err(|source| DocumentError::Total { customer: customer_id.into(), source })?;
        let coexisting = md.legal_entity(entity_id).map(|e| e.coexisting_targets.clone()).unwrap_or_default();
        for target in std::iter::once(&u.erp_target).chain(coexisting.iter().filter(|t| **t != u.erp_target)) {
            documents.push(Document {
                id: document_id(tenant, entity_id, customer_id, target, &period.id, revision),
                tenant: tenant.into(),
                legal_entity: entity_id.into(),
                erp_company: u.erp_company.clone(),
                tax_context: u.tax_context.clone(),
                erp_target: target.clone(),
                customer: customer_id.into(),
                erp_account: u.customer_erp_account.clone(),
                currency: u.currency.clone(),
                period: period.clone(),
                issue_date: period.last_day(),
                posting_period: None,
                revision,
                lines: lines.clone(),
                total,
                state: PostingState::pending(),
            });
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_key_sensitive() {
        let a = document_id("acme", "acme-eu", "c1", "erp", "2026-11", 1);
        assert_eq!(a, document_id("acme", "acme-eu", "c1", "erp", "2026-11", 1));
        assert_ne!(a, document_id("acme", "acme-eu", "c1", "erp", "2026-11", 2));
        assert_ne!(a, document_id("acme", "acme-eu", "c2", "erp", "2026-11", 1));
        assert_ne!(a, document_id("acme", "acme-eu", "c1", "legacy", "2026-11", 1));
        // No ambiguity from concatenation.
        assert_ne!(document_id("ab", "c", "x", "t", "p", 1), document_id("a", "bc", "x", "t", "p", 1));
        assert_eq!(a.len(), 27);
    }
}
