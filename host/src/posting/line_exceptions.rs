//! Contract lines a close could not bill: one failing line never stops a
//! close. A line whose usage cannot be enriched (its meter failed, its usage
//! is beyond what a rater takes exactly, its master data is incomplete) or
//! rated (fuel, deadline, memory, trap, plugin error, invalid output, no
//! rater) is left out of the period's documents and kept here, with the
//! reason, the owning team and the ways out, while the close posts every
//! other line. Finance acts on each (`POST /v1/exceptions/{id}/actions`,
//! ids `TGL-…`):
//!
//! - **retry** after a fix (another rule version activated, master data or
//!   a meter repaired): the line is enriched and rated again as the close
//!   would now, and what it charges is billed in a document of its own for
//!   the same customer and period (a supplement: the period's posted
//!   documents are never edited), posted exactly once like any other;
//! - **cancel** with a reason: nothing is billed; the exception stays, with
//!   the action, for audit.

use super::close::{PeriodClose, PeriodUsage, rate_usages, usages_of_period};
use super::document::{self, Document};
use super::document_key;
use super::outbox::OutboxEntry;
use crate::config::ErpTargetConfig;
use crate::enrich::unmatched::Owner;
use crate::enrich::{self, EnrichError, Period};
use crate::error::{ApiError, ErrorCode};
use crate::masterdata;
use crate::plugins::PluginError;
use crate::plugins::registry::Registry;
use crate::rating::ChargeRecord;
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;

/// Why a contract line was not billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineReason {
    /// No rater is activated for the line, or its plugin cannot be found.
    NoRater,
    /// The line's meter stopped counting (damaged stored windows).
    MeterFailed,
    /// The line's usage over the period is more than a rater takes exactly.
    QuantityOutOfRange,
    /// The line's master data or windows could not be read into usage.
    Enrichment,
    FuelExhausted,
    DeadlineExceeded,
    MemoryLimit,
    Trap,
    InvalidOutput,
    PluginError,
    IncompatibleInterface,
    TooLarge,
}

impl LineReason {
    fn of_plugin(e: &PluginError) -> LineReason {
        match e {
            PluginError::FuelExhausted { .. } => LineReason::FuelExhausted,
            PluginError::DeadlineExceeded { .. } => LineReason::DeadlineExceeded,
            PluginError::MemoryLimit { .. } => LineReason::MemoryLimit,
            PluginError::Trap { .. } => LineReason::Trap,
            PluginError::InvalidOutput { .. } => LineReason::InvalidOutput,
            PluginError::Plugin { .. } => LineReason::PluginError,
            PluginError::IncompatibleInterface(_) => LineReason::IncompatibleInterface,
            PluginError::TooLarge(_) => LineReason::TooLarge,
        }
    }

    fn of_enrichment(e: &EnrichError) -> LineReason {
        match e {
            EnrichError::MeterFailed { .. } => LineReason::MeterFailed,
            EnrichError::QuantityOutOfRange { .. } => LineReason::QuantityOutOfRange,
            _ => LineReason::Enrichment,
        }
    }

    /// Who fixes it: finance owns rules, contracts and master data; product
    /// owns meters and the usage they send.
    pub fn owner(self) -> Owner {
        match self {
            LineReason::MeterFailed | LineReason::QuantityOutOfRange => Owner::Product,
            _ => Owner::Finance,
        }
    }
}

/// A part of a contract line a close (or an interim) could not bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineFailure {
    pub contract_line: String,
    pub customer: String,
    /// The usage's part ([`crate::enrich::CanonicalUsage::part`]); for an
    /// enrichment failure, the line part's (every legal entity of it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub part: String,
    /// True when the whole line part failed before it became usage
    /// (enrichment), false when one usage of it failed to rate.
    #[serde(default)]
    pub whole_part: bool,
    pub reason: LineReason,
    pub message: String,
}

impl LineFailure {
    pub fn enrichment(unit: &(enrich::LinePart, Period), e: &EnrichError) -> LineFailure {
        LineFailure {
            contract_line: unit.0.line.id.clone(),
            customer: unit.0.line.customer.clone(),
            part: enrich::part_id(&unit.0, &unit.1),
            whole_part: true,
            reason: LineReason::of_enrichment(e),
            message: e.to_string(),
        }
    }

    pub fn rater(line: &masterdata::ContractLine, part: String, e: &str) -> LineFailure {
        LineFailure {
            contract_line: line.id.clone(),
            customer: line.customer.clone(),
            part,
            whole_part: true,
            reason: LineReason::NoRater,
            message: format!("contract line {}: rater: {e}", line.id),
        }
    }

    pub fn rating(usage: &enrich::CanonicalUsage, e: &PluginError) -> LineFailure {
        LineFailure {
            contract_line: usage.contract_line.clone(),
            customer: usage.customer.clone(),
            part: usage.part.clone(),
            whole_part: false,
            reason: LineReason::of_plugin(e),
            message: format!("contract line {}: {}: {e}", usage.contract_line, e.code()),
        }
    }

    /// Whether `usage` of line part `part_id` is what this failure left out.
    fn covers(&self, part_id: &str, usage: &enrich::CanonicalUsage) -> bool {
        usage.contract_line == self.contract_line
            && if self.whole_part { part_id == self.part } else { usage.part == self.part }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// Not billed; waiting for an action.
    Open,
    /// Billed by a retry (see `documents`).
    Billed,
    /// Not to be billed (see the cancel action's reason).
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineActionKind {
    Retry,
    Cancel,
}

/// An action taken on a line exception, kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineAction {
    pub action: LineActionKind,
    pub at: DateTime<Utc>,
    /// A cancel's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a retry found: billed, or the new failure.
    pub outcome: String,
}

/// A contract line left out of a closed period, as the exception queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineException {
    /// `TGL-…`, from the tenant, period, line and part.
    pub id: String,
    pub tenant: String,
    pub period: String,
    #[serde(flatten)]
    pub failure: LineFailure,
    pub owner: Owner,
    pub status: LineStatus,
    pub raised_at: DateTime<Utc>,
    /// What finance can do while it is open.
    pub suggested_actions: Vec<LineActionKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<LineAction>,
    /// The documents a retry billed the line in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<String>,
}

impl LineException {
    pub fn new(tenant: &str, period: &str, failure: LineFailure, now: DateTime<Utc>) -> LineException {
        let mut h = Sha256::new();
        for p in [tenant, period, &failure.contract_line, &failure.part] {
            h.update(p.as_bytes());
            h.update([0]);
        }
        LineException {
            id: format!("TGL-{}", &crate::hex(&h.finalize())[..24]),
            tenant: tenant.into(),
            period: period.into(),
            owner: failure.reason.owner(),
            failure,
            status: LineStatus::Open,
            raised_at: now,
            suggested_actions: vec![LineActionKind::Retry, LineActionKind::Cancel],
            actions: Vec::new(),
            documents: Vec::new(),
        }
    }

    pub fn key(&self) -> Vec<u8> {
        store::key(&[&self.tenant, &self.id])
    }
}

/// Whether an id names a line exception (documents are `TG-…`).
pub fn is_line_exception(id: &str) -> bool {
    id.starts_with("TGL-")
}

/// The tenant's open line exceptions; with `all`, also the resolved ones.
pub fn list(store: &Store, tenant: &str, all: bool) -> Result<Vec<LineException>, StoreError> {
    Ok(store
        .scan::<LineException>(&store.line_exceptions, &store::prefix(&[tenant]))?
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| all || e.status == LineStatus::Open)
        .collect())
}

/// The line exceptions a closed period left out, as they stand now.
pub fn of_period(store: &Store, closed: &PeriodClose) -> Result<Vec<LineException>, StoreError> {
    let mut out = Vec::new();
    for id in &closed.left_out {
        if let Some(e) = store.get::<LineException>(&store.line_exceptions, &store::key(&[&closed.tenant, id]))? {
            out.push(e);
        }
    }
    Ok(out)
}

/// What finance does about a line exception.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Retry,
    Cancel { reason: String },
}

/// Applies `action` to an open line exception; see the module doc. A retry
/// that fails again is recorded on the exception (which stays open) and
/// answered as a failed precondition naming the new failure.
pub async fn act(
    store: &Store,
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    tenant: &str,
    id: &str,
    action: Action,
    now: DateTime<Utc>,
) -> Result<LineException, ApiError> {
    let key = store::key(&[tenant, id]);
    let original = store
        .line_exceptions
        .get(&key)
        .map_err(StoreError::from)?
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, "document_id", format!("no exception {id:?}")))?;
    let mut exc: LineException = store::decode(&store.line_exceptions, &original)?;
    if exc.status != LineStatus::Open {
        return Err(ApiError::field(
            ErrorCode::FailedPrecondition,
            "document_id",
            format!("exception {id} is {:?}, not open", exc.status),
        ));
    }
    let mut billed = Billed::default();
    let mut failed_again = None;
    match action {
        Action::Cancel { reason } => {
            let reason = reason.trim();
            if reason.is_empty() || reason.len() > 1024 {
                return Err(ApiError::field(ErrorCode::InvalidArgument, "reason", "1..=1024 bytes, not blank"));
            }
            exc.status = LineStatus::Cancelled;
            exc.actions.push(LineAction {
                action: LineActionKind::Cancel,
                at: now,
                reason: Some(reason.into()),
                outcome: "cancelled: not billed".into(),
            });
        }
        Action::Retry => {
            let (store2, registry2, targets2, exc2) = (store.clone(), registry.clone(), targets.clone(), exc.clone());
            let result = tokio::task::spawn_blocking(move || retry(&store2, &registry2, &targets2, &exc2, now))
                .await
                .map_err(ApiError::internal)??;
            let outcome = match result {
                Ok(b) => {
                    exc.status = LineStatus::Billed;
                    exc.documents = b.documents.iter().map(|(d, _)| d.id.clone()).collect();
                    billed = b;
                    match exc.documents.len() {
                        0 => "billed: the line charges nothing".to_string(),
                        n => format!("billed in {n} supplementary document(s)"),
                    }
                }
                Err(failure) => {
                    let outcome = format!("failed again: {}", failure.message);
                    exc.owner = failure.reason.owner();
                    exc.failure =
                        LineFailure { part: exc.failure.part.clone(), whole_part: exc.failure.whole_part, ..failure };
                    failed_again = Some(outcome.clone());
                    outcome
                }
            };
            exc.actions.push(LineAction { action: LineActionKind::Retry, at: now, reason: None, outcome });
        }
    }
    commit(store, &key, &original, &exc, &billed)?;
    store.flush().await?;
    tracing::info!(tenant, exception = id, status = ?exc.status, "line exception acted on");
    match failed_again {
        Some(outcome) => {
            Err(ApiError::field(ErrorCode::FailedPrecondition, "document_id", format!("exception {id}: {outcome}")))
        }
        None => Ok(exc),
    }
}

/// What a successful retry bills.
#[derive(Default)]
struct Billed {
    records: Vec<(ChargeRecord, Vec<String>)>,
    documents: Vec<(Document, OutboxEntry)>,
}

/// Enriches and rates the exception's line as a close would now; `Ok(Err)`
/// is a business failure (recorded), `Err` one of the gateway.
fn retry(
    store: &Store,
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    exc: &LineException,
    now: DateTime<Utc>,
) -> Result<Result<Billed, LineFailure>, ApiError> {
    let base = Period::parse(&exc.period)?;
    let history = masterdata::history::load(store, &exc.tenant)?;
    let (units, failures) =
        usages_of_period(store, &history, &exc.tenant, &base, None, now, |p| p.line.id == exc.failure.contract_line)?;
    let mut mine: Vec<PeriodUsage> = Vec::new();
    for (part, period, usages) in units {
        let part_id = enrich::part_id(&part, &period);
        let usages: Vec<_> = usages.into_iter().filter(|(u, _)| exc.failure.covers(&part_id, u)).collect();
        if !usages.is_empty() {
            mine.push((part, period, usages));
        }
    }
    let mine_failed = |f: &LineFailure| {
        f.part == exc.failure.part || (!exc.failure.whole_part && exc.failure.part.starts_with(&format!("{}@", f.part)))
    };
    if let Some(f) = failures.into_iter().find(mine_failed) {
        return Ok(Err(f));
    }
    let (records, mut failures) = rate_usages(store, registry, &exc.tenant, mine, now);
    if !failures.is_empty() {
        return Ok(Err(failures.remove(0)));
    }
    let md = history.as_of(base.end - chrono::Duration::nanoseconds(1), now).map_err(ApiError::internal)?;
    let charge_records: Vec<ChargeRecord> = records.iter().map(|(r, _)| r.clone()).collect();
    let docs = document::build_documents(&exc.tenant, &md, &base, super::close::REVISION, &charge_records)
        .map_err(|e| ApiError::new(ErrorCode::FailedPrecondition, e.to_string()))?;
    let mut documents = Vec::new();
    for mut doc in docs {
        doc.id = supplement_id(&doc.id, &exc.id);
        let entry = super::outbox_entry(registry, targets, &doc, now)?;
        documents.push((doc, entry));
    }
    Ok(Ok(Billed { records, documents }))
}

/// The id of the document that bills a retried line: derived from the
/// period document's id and the exception's, so a repeated retry cannot
/// make a second one and it is never taken for the period's own document.
pub fn supplement_id(document_id: &str, exception_id: &str) -> String {
    let id = document::document_id(document_id, exception_id, "", "", "supplement", 0);
    format!("TG-{}", &id[3..])
}

/// Writes the exception, and what a retry billed (charges, documents,
/// outbox entries, the period record listing the new documents), in one
/// transaction; refused if the exception changed meanwhile.
fn commit(store: &Store, key: &[u8], original: &[u8], exc: &LineException, billed: &Billed) -> Result<(), ApiError> {
    let exc_bytes = serde_json::to_vec(exc).map_err(StoreError::from)?;
    let period_key = store::key(&[&exc.tenant, &exc.period]);
    // Applied tree by tree in this order: the exception's new state goes
    // last, after the documents and the period record that bill it.
    let trees = (
        &store.charges,
        &store.charge_events,
        &store.event_charges,
        &store.documents,
        &store.outbox,
        &store.periods,
        &store.line_exceptions,
    );
    let result =
        trees.transaction(|(charges, charge_events, event_charges, documents, outbox, periods, exceptions)| {
            if exceptions.get(key)?.as_deref() != Some(original) {
                return Err(ConflictableTransactionError::Abort(format!(
                    "exception {} changed while the action was prepared; look again and retry",
                    exc.id
                )));
            }
            super::close::write_charges(charges, charge_events, event_charges, &billed.records, |e| e)?;
            if !billed.documents.is_empty() {
                let mut closed: PeriodClose =
                    periods.get(&period_key)?.and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(|| {
                        ConflictableTransactionError::Abort(format!("period {} is not closed", exc.period))
                    })?;
                for (doc, entry) in &billed.documents {
                    let dk = document_key(&doc.tenant, &doc.id);
                    documents.insert(dk.clone(), super::close::enc(doc, |e| e)?)?;
                    outbox.insert(dk, super::close::enc(entry, |e| e)?)?;
                    closed.documents.push(doc.id.clone());
                }
                periods.insert(period_key.clone(), super::close::enc(&closed, |e| e)?)?;
            }
            exceptions.insert(key, exc_bytes.as_slice())?;
            Ok(())
        });
    result.map_err(|e| match e {
        sled::transaction::TransactionError::Abort(m) => ApiError::field(ErrorCode::Conflict, "document_id", m),
        sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e).into(),
    })
}
