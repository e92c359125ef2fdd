//! Closing a billing period for a tenant: every contract line is enriched
//! and rated, the charges are grouped into documents, each document is
//! mapped to its ERP request, and charges, documents, outbox entries and the
//! period record are written in one transaction and fsynced. Closing a closed
//! period returns what the first close produced, so a retried close posts
//! nothing twice.

use super::document::{self, Document};
use super::document_key;
use super::line_exceptions::{self, LineException, LineFailure};
use super::outbox::OutboxEntry;
use crate::config::ErpTargetConfig;
use crate::enrich::{self, CanonicalUsage, LinePart, Period};
use crate::error::{ApiError, ErrorCode};
use crate::masterdata;
use crate::masterdata::history::{self, History};
use crate::plugins::Plugin;
use crate::plugins::registry::Registry;
use crate::rating::{self, ChargeRecord};
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;
use std::sync::Arc;
use tollgate_core::close::{Job, rate_in_rounds};

/// The record of a closed period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodClose {
    pub tenant: String,
    pub period: String,
    pub closed_at: DateTime<Utc>,
    pub contract_lines: Vec<String>,
    pub documents: Vec<String>,
    /// The line exceptions (`TGL-…`) of the lines this close could not bill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// What a close did (or had done, when the period was already closed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloseReport {
    pub tenant: String,
    pub period: String,
    /// True when this call found the period already closed.
    pub already_closed: bool,
    pub closed_at: DateTime<Utc>,
    pub documents: Vec<Document>,
    /// On a repeated close: contract lines whose metered usage or terms
    /// changed since they were rated (late or corrected events, retroactive
    /// amendments). Nothing is re-posted;
    /// the usage is stored and waits for a correction run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_usage: Vec<LateUsage>,
    /// Usage of the period no contract line bills (unknown customer, no
    /// contract line for the meter, events no meter reads): not billed by
    /// this close, kept, and listed by `GET /v1/unmatched` until fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<crate::enrich::unmatched::Unmatched>,
    /// Contract lines this close could not enrich or rate, as they stand
    /// now: not billed, each in the exception queue with its reason, owner
    /// and actions (retry, cancel). Every other line was billed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LineException>,
}

/// Usage of a closed period that its posted documents do not cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateUsage {
    pub contract_line: String,
    /// The part of the line ([`crate::enrich::CanonicalUsage::part`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub part: String,
    pub billed_quantity: rust_decimal::Decimal,
    pub current_quantity: rust_decimal::Decimal,
    /// The contract-line version rated, and the one in effect now (they
    /// differ after a retroactive amendment); 0: none.
    pub billed_version: u64,
    pub current_version: u64,
}

pub(super) const REVISION: u32 = 1;

/// Closes `period` for `tenant` (see the module doc).
pub async fn close_period(
    store: &Store,
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    tenant: &str,
    period_id: &str,
    now: DateTime<Utc>,
) -> Result<CloseReport, ApiError> {
    let period = Period::parse(period_id)?;
    let history = masterdata::history::load(store, tenant)?;
    let unmatched = enrich::unmatched::unmatched(store, &history, tenant, &period, now).map_err(ApiError::internal)?;
    if !unmatched.is_empty() {
        tracing::warn!(tenant, period = period_id, items = unmatched.len(), "usage no contract line bills waits");
    }
    let with_unmatched = |r: CloseReport| CloseReport { unmatched: unmatched.clone(), ..r };
    if let Some(closed) = store.get::<PeriodClose>(&store.periods, &store::key(&[tenant, &period.id]))? {
        let late = late_usage(store, &history, &closed, now)?;
        return report(store, closed, true).map(|r| with_unmatched(CloseReport { late_usage: late, ..r }));
    }
    let (store2, registry2, targets2, tenant2) = (store.clone(), registry.clone(), targets.clone(), tenant.to_string());
    let prepared =
        tokio::task::spawn_blocking(move || prepare(&store2, &registry2, &targets2, &tenant2, &history, &period, now))
            .await
            .map_err(ApiError::internal)??;
    let closed = PeriodClose {
        tenant: tenant.into(),
        period: period_id.into(),
        closed_at: now,
        contract_lines: {
            let mut seen = std::collections::BTreeSet::new();
            let lines = prepared.records.iter().map(|(r, _)| &r.usage.contract_line);
            lines.filter(|l| seen.insert(*l)).cloned().collect()
        },
        documents: prepared.documents.iter().map(|(d, _)| d.id.clone()).collect(),
        left_out: prepared.left_out.iter().map(|e| e.id.clone()).collect(),
    };
    for e in &prepared.left_out {
        tracing::warn!(tenant, period = period_id, exception = %e.id, contract_line = %e.failure.contract_line,
            reason = ?e.failure.reason, message = %e.failure.message, "contract line left out of the close");
    }
    match commit(store, &closed, &prepared) {
        Ok(()) => {}
        Err(CommitError::AlreadyClosed) => {
            // A concurrent close won; its result stands.
            let existing = store
                .get::<PeriodClose>(&store.periods, &store::key(&[tenant, &closed.period]))?
                .ok_or_else(|| ApiError::internal("period record vanished"))?;
            return report(store, existing, true).map(with_unmatched);
        }
        Err(CommitError::Store(e)) => return Err(e.into()),
    }
    store.flush().await?;
    tracing::info!(tenant, period = period_id, documents = closed.documents.len(), "period closed");
    report(store, closed, false).map(with_unmatched)
}

struct Prepared {
    records: Vec<(ChargeRecord, Vec<String>)>,
    documents: Vec<(Document, OutboxEntry)>,
    left_out: Vec<LineException>,
}

fn precondition(message: String) -> ApiError {
    ApiError::new(ErrorCode::FailedPrecondition, message)
}

/// A contract line's part, its period, and its canonical usages (one per
/// legal entity) with their source event ids.
pub type PeriodUsage = (LinePart, Period, Vec<(CanonicalUsage, Vec<String>)>);

/// Every part of every contract line in effect during the billing period
/// `base` (each line's own period: `base` shifted to its anchor day) that
/// `keep` takes, in the order lines first appeared, with the canonical
/// usage of each; with `until`, only the usage before it (period to date).
/// A part whose usage cannot be built is a [`LineFailure`], not an error:
/// the other lines go on.
pub fn usages_of_period(
    store: &Store,
    history: &History,
    tenant: &str,
    base: &Period,
    until: Option<DateTime<Utc>>,
    known_at: DateTime<Utc>,
    keep: impl Fn(&LinePart) -> bool,
) -> Result<(Vec<PeriodUsage>, Vec<LineFailure>), ApiError> {
    let mut anchors: Vec<u32> = history
        .versions()
        .iter()
        .filter(|v| v.kind == history::Kind::ContractLine)
        .filter_map(|v| v.value.as_ref()?.get("billing_anchor_day")?.as_u64())
        .filter_map(|d| u32::try_from(d).ok())
        .chain([1])
        .collect();
    anchors.sort_unstable();
    anchors.dedup();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for anchor in anchors {
        let period = base.anchored(Some(anchor));
        let end = until.map_or(period.end, |u| u.min(period.end));
        if end <= period.start {
            continue;
        }
        let segments = enrich::segments(history, period.start, end, known_at).map_err(ApiError::internal)?;
        for part in enrich::line_parts(history, &segments) {
            if part.line.billing_anchor_day.unwrap_or(1) != anchor || !keep(&part) {
                continue;
            }
            match enrich::canonical_usage(store, tenant, &part, &period) {
                Ok(usages) => out.push((part, period.clone(), usages)),
                Err(
                    e @ enrich::EnrichError::Read(
                        enrich::ReadError::Store(_) | enrich::ReadError::Log(crate::eventlog::LogError::Index(_)),
                    ),
                ) => {
                    return Err(ApiError::internal(format!("contract line {}: {e}", part.line.id)));
                }
                Err(e) => failures.push(LineFailure::enrichment(&(part, period.clone()), &e)),
            }
        }
    }
    Ok((out, failures))
}

/// Rates every contract line and maps every document. A line that cannot
/// be enriched or rated is left out (a line exception) and the rest is
/// billed; a document that cannot be mapped stops the close with nothing
/// written. Usage of a SKU the ERP team has not mapped yet is not billed;
/// it waits in `GET /v1/unmatched`.
fn prepare(
    store: &Store,
    registry: &Registry,
    targets: &BTreeMap<String, ErpTargetConfig>,
    tenant: &str,
    history: &History,
    period: &Period,
    now: DateTime<Utc>,
) -> Result<Prepared, ApiError> {
    let (units, mut failures) = usages_of_period(store, history, tenant, period, None, now, |_| true)?;
    if units.is_empty() && failures.is_empty() {
        return Err(precondition("no contract lines in the master data; nothing to close".into()));
    }
    let (records, rating_failures) = rate_usages(store, registry, tenant, units, now);
    failures.extend(rating_failures);
    let md = history.as_of(period.end - chrono::Duration::nanoseconds(1), now).map_err(ApiError::internal)?;
    let charge_records: Vec<ChargeRecord> = records.iter().map(|(r, _)| r.clone()).collect();
    let docs = document::build_documents(tenant, &md, period, REVISION, &charge_records)
        .map_err(|e| precondition(format!("period not closed: {e}")))?;
    let mut documents = Vec::new();
    for doc in docs {
        let entry = super::outbox_entry(registry, targets, &doc, now)?;
        documents.push((doc, entry));
    }
    let left_out = failures.into_iter().map(|f| LineException::new(tenant, &period.id, f, now)).collect();
    Ok(Prepared { records, documents, left_out })
}

/// Rates every canonical usage with its line's rater, in the core's rounds
/// ([`tollgate_core::close::rate_in_rounds`]: the k-th usage of every
/// customer in round k, one batch per rater, each a fresh instance, see
/// [`rating::rate_many`]); returns the charge records and, in master-data
/// order, every line that failed.
pub fn rate_usages(
    store: &Store,
    registry: &Registry,
    tenant: &str,
    units: Vec<PeriodUsage>,
    now: DateTime<Utc>,
) -> (Vec<(ChargeRecord, Vec<String>)>, Vec<LineFailure>) {
    /// A plugin compared by identity (the registry's loaded instance).
    struct Rater(Arc<Plugin>);
    impl PartialEq for Rater {
        fn eq(&self, other: &Rater) -> bool {
            Arc::ptr_eq(&self.0, &other.0)
        }
    }
    // Problems are listed in master-data order: keyed by the job they precede.
    let mut problems: Vec<(usize, LineFailure)> = Vec::new();
    let mut jobs: Vec<Job<Rater>> = Vec::new();
    let mut events: Vec<Vec<String>> = Vec::new();
    for (part, _, usages) in units {
        let line = &part.line;
        let plugin = match rating::activation::rater_for(store, registry, tenant, line, part.to) {
            Ok(p) => p,
            Err(e) => {
                let part_id = usages.first().map_or_else(String::new, |(u, _)| u.part.clone());
                let part_id = part_id.split('@').next().unwrap_or_default().to_string();
                problems.push((jobs.len(), LineFailure::rater(line, part_id, &e.to_string())));
                continue;
            }
        };
        for (usage, ids) in usages.into_iter().filter(|(u, _)| u.erp_item.is_some()) {
            jobs.push(Job { rater: Rater(plugin.clone()), customer: line.customer.clone(), usage });
            events.push(ids);
        }
    }
    let rated = rate_in_rounds(jobs, |rater, items| rating::rate_many(registry, &rater.0, items, now));
    let mut records = Vec::with_capacity(rated.len());
    for (i, ((usage, result), ids)) in rated.into_iter().zip(events).enumerate() {
        match result {
            Ok(record) => records.push((record, ids)),
            Err(e) => problems.push((i, LineFailure::rating(&usage, &e))),
        }
    }
    problems.sort_by_key(|(i, _)| *i);
    (records, problems.into_iter().map(|(_, p)| p).collect())
}

enum CommitError {
    AlreadyClosed,
    Store(StoreError),
}

fn commit(store: &Store, closed: &PeriodClose, p: &Prepared) -> Result<(), CommitError> {
    // Applied tree by tree in this order (plain reads can see it half
    // done): the period record goes last, so a closed period's documents
    // and exceptions are always there.
    let trees = (
        &store.charges,
        &store.charge_events,
        &store.event_charges,
        &store.documents,
        &store.outbox,
        &store.line_exceptions,
        &store.periods,
    );
    let result =
        trees.transaction(|(charges, charge_events, event_charges, documents, outbox, exceptions, periods)| {
            let pk = store::key(&[&closed.tenant, &closed.period]);
            if periods.get(&pk)?.is_some() {
                return Err(ConflictableTransactionError::Abort(None));
            }
            write_charges(charges, charge_events, event_charges, &p.records, Some)?;
            for (doc, entry) in &p.documents {
                let dk = document_key(&doc.tenant, &doc.id);
                documents.insert(dk.clone(), enc(doc, Some)?)?;
                outbox.insert(dk, enc(entry, Some)?)?;
            }
            for e in &p.left_out {
                exceptions.insert(e.key(), enc(e, Some)?)?;
            }
            periods.insert(pk, enc(closed, Some)?)?;
            Ok(())
        });
    result.map_err(|e| match e {
        sled::transaction::TransactionError::Abort(None) => CommitError::AlreadyClosed,
        sled::transaction::TransactionError::Abort(Some(msg)) => CommitError::Store(StoreError::Aborted(msg)),
        sled::transaction::TransactionError::Storage(e) => CommitError::Store(StoreError::Sled(e)),
    })
}

/// JSON for a transaction; an encoding failure aborts it (`abort` wraps the message).
pub(super) fn enc<T: Serialize, E>(
    v: &T,
    abort: impl FnOnce(String) -> E,
) -> Result<Vec<u8>, ConflictableTransactionError<E>> {
    serde_json::to_vec(v).map_err(|e| ConflictableTransactionError::Abort(abort(e.to_string())))
}

/// Stores charge records and their lineage both ways (charge → events,
/// event → charges) inside a transaction.
pub(super) fn write_charges<E>(
    charges: &sled::transaction::TransactionalTree,
    charge_events: &sled::transaction::TransactionalTree,
    event_charges: &sled::transaction::TransactionalTree,
    records: &[(ChargeRecord, Vec<String>)],
    abort: impl Fn(String) -> E,
) -> Result<(), ConflictableTransactionError<E>> {
    for (record, events) in records {
        let ck = rating::record_key(record);
        charges.insert(ck.clone(), enc(record, &abort)?)?;
        let u = &record.usage;
        for id in events {
            let mut k = ck.clone();
            k.push(0);
            k.extend_from_slice(id.as_bytes());
            charge_events.insert(k, &[])?;
            event_charges.insert(store::key(&[&u.tenant, id, &u.period.id, &u.contract_line, &u.part]), &[])?;
        }
    }
    Ok(())
}

/// Compares what each part of each contract line billed with what the
/// metering and the master data give now (late or corrected events,
/// retroactive amendments).
fn late_usage(
    store: &Store,
    history: &History,
    closed: &PeriodClose,
    now: DateTime<Utc>,
) -> Result<Vec<LateUsage>, ApiError> {
    let period = Period::parse(&closed.period)?;
    let billed: BTreeMap<(String, String), (rust_decimal::Decimal, u64)> =
        rating::load_charges(store, &closed.tenant, &closed.period)?
            .into_iter()
            .map(|r| ((r.usage.contract_line, r.usage.part), (r.usage.quantity, r.usage.contract_line_version)))
            .collect();
    let mut current = BTreeMap::new();
    // Lines left out wait in the exception queue: not late usage.
    let open: Vec<LineException> = line_exceptions::of_period(store, closed)?
        .into_iter()
        .filter(|e| e.status != line_exceptions::LineStatus::Billed)
        .collect();
    let (units, _) = usages_of_period(store, history, &closed.tenant, &period, None, now, |p| {
        !open.iter().any(|e| e.failure.contract_line == p.line.id)
    })?;
    for (_, _, usages) in units {
        for (u, _) in usages {
            current.insert((u.contract_line, u.part), (u.quantity, u.contract_line_version));
        }
    }
    let keys: std::collections::BTreeSet<_> = billed.keys().chain(current.keys()).cloned().collect();
    Ok(keys
        .into_iter()
        .filter_map(|key| {
            let b = billed.get(&key).copied().unwrap_or_default();
            let c = current.get(&key).copied().unwrap_or_default();
            (b != c).then_some(LateUsage {
                contract_line: key.0,
                part: key.1,
                billed_quantity: b.0,
                current_quantity: c.0,
                billed_version: b.1,
                current_version: c.1,
            })
        })
        .collect())
}

/// The report of a closed period, with every document's current state.
pub fn report(store: &Store, closed: PeriodClose, already_closed: bool) -> Result<CloseReport, ApiError> {
    let documents = closed
        .documents
        .iter()
        .map(|id| {
            store
                .get::<Document>(&store.documents, &document_key(&closed.tenant, id))?
                .ok_or_else(|| ApiError::internal(format!("document {id} of a closed period is missing")))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let left_out = line_exceptions::of_period(store, &closed)?;
    Ok(CloseReport {
        tenant: closed.tenant,
        period: closed.period,
        already_closed,
        closed_at: closed.closed_at,
        left_out,
        documents,
        late_usage: Vec::new(),
        unmatched: Vec::new(),
    })
}
