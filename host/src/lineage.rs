//! Lineage: from an ERP document number back to the document, its charge
//! lines, the rule version that rated them, the metering windows and the
//! source events, and from an event forwards to the ERP document numbers.

use crate::enrich::WindowRef;
use crate::error::{ApiError, ErrorCode};
use crate::posting::{Document, DocumentLine, document_key};
use crate::rating::{self, Charge, RelatedCharge, RuleRef};
use crate::store::{self, Store};
use rust_decimal::Decimal;
use serde::Serialize;

/// Everything behind one contract line's part of a document.
#[derive(Debug, Clone, Serialize)]
pub struct ChargeLineage {
    pub contract_line: String,
    /// The part of the line (an amendment or a legal-entity split).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub part: String,
    /// The master-data version of the contract line that was rated.
    pub contract_line_version: u64,
    pub meter: String,
    pub quantity: Decimal,
    pub rule: RuleRef,
    pub input_digest: String,
    pub output_digest: String,
    pub charges: Vec<Charge>,
    /// Other lines' charges this rule was given (e.g. the base of a fee).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<RelatedCharge>,
    pub document_lines: Vec<DocumentLine>,
    pub windows: Vec<WindowRef>,
    pub event_count: u64,
    pub event_ids_digest: String,
    pub event_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DocumentLineage {
    pub erp_document_number: String,
    pub erp_target: String,
    pub document: Document,
    pub contract_lines: Vec<ChargeLineage>,
}

/// Lineage of the document the ERP numbered `number` (in `target`, when the
/// number alone is ambiguous across targets).
pub fn by_erp_number(
    store: &Store,
    tenant: &str,
    number: &str,
    target: Option<&str>,
) -> Result<DocumentLineage, ApiError> {
    let prefix = store::prefix(&[tenant, number]);
    let mut hits: Vec<(String, String)> = Vec::new();
    for item in store.erp_numbers.scan_prefix(&prefix) {
        let (k, v) = item.map_err(crate::store::StoreError::from)?;
        let t = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        if target.is_none_or(|want| want == t) {
            hits.push((t, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    let (erp_target, doc_id) = match hits.len() {
        0 => {
            return Err(ApiError::field(
                ErrorCode::NotFound,
                "erp_document_number",
                format!("no document was posted as {number:?}"),
            ));
        }
        1 => hits.remove(0),
        _ => {
            let targets: Vec<_> = hits.iter().map(|(t, _)| t.as_str()).collect();
            return Err(ApiError::field(
                ErrorCode::Conflict,
                "target",
                format!("{number:?} exists in several ERP targets ({}); add ?target=", targets.join(", ")),
            ));
        }
    };
    let document: Document = store
        .get(&store.documents, &document_key(tenant, &doc_id))?
        .ok_or_else(|| ApiError::internal(format!("document {doc_id} indexed but missing")))?;
    let mut contract_lines = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in &document.lines {
        if !seen.insert((line.contract_line.clone(), line.part.clone())) {
            continue;
        }
        let record = rating::load_charge(store, tenant, &document.period.id, &line.contract_line, &line.part)?
            .ok_or_else(|| ApiError::internal(format!("charges of {} are missing", line.contract_line)))?;
        let event_ids = store.scan_suffixes(&store.charge_events, &{
            let mut p = crate::rating::record_key(&record);
            p.push(0);
            p
        })?;
        contract_lines.push(ChargeLineage {
            contract_line: line.contract_line.clone(),
            part: line.part.clone(),
            contract_line_version: record.usage.contract_line_version,
            meter: record.usage.meter.clone(),
            quantity: record.usage.quantity,
            rule: record.rule.clone(),
            input_digest: record.input_digest.clone(),
            output_digest: record.output_digest.clone(),
            charges: record.charges.clone(),
            related: record.related.clone(),
            document_lines: document
                .lines
                .iter()
                .filter(|l| l.contract_line == line.contract_line && l.part == line.part)
                .cloned()
                .collect(),
            windows: record.usage.lineage.windows.clone(),
            event_count: record.usage.lineage.event_count,
            event_ids_digest: record.usage.lineage.event_ids_digest.clone(),
            event_ids,
        });
    }
    Ok(DocumentLineage { erp_document_number: number.to_string(), erp_target, document, contract_lines })
}

/// Where one event went: each charge it counts in, and each document (per
/// ERP target) that bills that charge, with its ERP document number.
#[derive(Debug, Clone, Serialize)]
pub struct EventLineage {
    pub event_id: String,
    pub charges: Vec<EventCharge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventCharge {
    pub period: String,
    pub contract_line: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub part: String,
    pub contract_line_version: u64,
    pub rule: RuleRef,
    pub quantity: Decimal,
    pub charges: Vec<Charge>,
    pub documents: Vec<EventDocument>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventDocument {
    pub document_id: String,
    pub erp_target: String,
    pub status: crate::posting::PostingStatus,
    pub erp_document_number: Option<String>,
}

/// Lineage of event `event_id` forwards: event → charge → document → ERP number.
pub fn by_event(store: &Store, tenant: &str, event_id: &str) -> Result<EventLineage, ApiError> {
    let prefix = store::prefix(&[tenant, event_id]);
    let mut charges = Vec::new();
    for key in store.event_charges.scan_prefix(&prefix).keys() {
        let key = key.map_err(crate::store::StoreError::from)?;
        let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let mut parts = rest.splitn(3, '\0');
        let (period, line, part) =
            (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let record = rating::load_charge(store, tenant, period, line, part)?
            .ok_or_else(|| ApiError::internal(format!("charges of {line} in {period} are missing")))?;
        let closed: Option<crate::posting::PeriodClose> = store.get(&store.periods, &store::key(&[tenant, period]))?;
        let mut documents = Vec::new();
        for id in closed.map(|c| c.documents).unwrap_or_default() {
            let Some(d) = store.get::<Document>(&store.documents, &document_key(tenant, &id))? else { continue };
            if d.lines.iter().any(|l| l.contract_line == line && l.part == part) {
                documents.push(EventDocument {
                    document_id: d.id,
                    erp_target: d.erp_target,
                    status: d.state.status,
                    erp_document_number: d.state.erp_document_number,
                });
            }
        }
        charges.push(EventCharge {
            period: period.to_string(),
            contract_line: line.to_string(),
            part: part.to_string(),
            contract_line_version: record.usage.contract_line_version,
            rule: record.rule,
            quantity: record.usage.quantity,
            charges: record.charges,
            documents,
        });
    }
    if charges.is_empty() {
        return Err(ApiError::field(
            ErrorCode::NotFound,
            "id",
            format!("event {event_id:?} is in no rated charge (not stored, not yet rated, or its usage is unmatched)"),
        ));
    }
    Ok(EventLineage { event_id: event_id.to_string(), charges })
}
