//! Enrichment: a contract line's windows and the master data in effect →
//! the canonical usage a rater rates, with its lineage. A billing period
//! is cut at every effective time inside it ([`segments`]), the pieces on
//! the same terms merge into line parts ([`line_parts`]), and each part
//! becomes one canonical usage per legal entity that bills it
//! ([`canonical_usage`]). The windows come from a [`UsageSource`].

use crate::masterdata::history::{History, Kind};
use crate::masterdata::{ContractLine, MasterData};
use crate::meter::{Meter, MeterState};
use crate::money::Quantity;
pub use crate::period::Period;
use crate::window::WindowRow;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Version of the windows → canonical usage transformation, kept in lineage.
pub const TRANSFORMATION_VERSION: u32 = 1;

/// One window aggregated into a canonical usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRef {
    /// `meter/customer/start[/dimension=value…]`.
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The window's aggregate (its sum, count, max, …).
    pub value: Quantity,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLineage {
    pub windows: Vec<WindowRef>,
    pub event_count: u64,
    /// SHA-256 over the sorted event ids.
    pub event_ids_digest: String,
    pub transformation_version: u32,
}

/// The canonical usage object: what a rater rates. Its schema, with the
/// team owning each field, is `crates/core/schema/canonical-usage.schema.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalUsage {
    pub tenant: String,
    pub customer: String,
    pub customer_erp_account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    pub legal_entity: String,
    pub erp_company: String,
    pub erp_target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_context: Option<String>,
    pub contract_line: String,
    /// The master-data version of the contract line in effect (its `seq`).
    pub contract_line_version: u64,
    /// Which part of the line's period this is: empty for the whole period;
    /// else the part's start (an amendment splits the period) and/or
    /// `@legal-entity` (a legal-entity split).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub part: String,
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_item: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gl_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    pub meter: String,
    /// The rule that rates this usage (set when it is rated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_plan: Option<crate::rating::RuleRef>,
    pub currency: String,
    /// The billing period.
    pub period: Period,
    /// The part of the billing period this usage covers, `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub quantity: Decimal,
    pub dimensions: BTreeMap<String, String>,
    pub params: serde_json::Value,
    pub lineage: UsageLineage,
}

/// Why a contract line's usage cannot be enriched; `E` is the error of
/// the store its windows are read from.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError<E> {
    #[error(transparent)]
    Read(E),
    #[error("contract line {line}: {message}")]
    MasterData { line: String, message: String },
    #[error("window {window}: {message}")]
    Window { window: String, message: String },
    #[error("contract line {line}: meter {meter} stopped counting: {failure}")]
    MeterFailed { line: String, meter: String, failure: String },
    #[error(
        "contract line {line}: the usage of meter {meter} over {from} – {to} is {quantity}, more than a rater \
         takes exactly (a 96-bit decimal); it stays metered and unbilled"
    )]
    QuantityOutOfRange { line: String, meter: String, from: DateTime<Utc>, to: DateTime<Utc>, quantity: String },
    #[error("master data history: {0}")]
    History(#[from] serde_json::Error),
}

/// Canonical usages, each with the ids of the events it counts.
pub type Usages = Vec<(CanonicalUsage, Vec<String>)>;

/// Where enrichment reads a tenant's meters and windows (the store's
/// event index).
pub trait UsageSource {
    type Error;
    /// A meter definition.
    fn meter(&self, id: &str) -> Result<Option<Meter>, Self::Error>;
    /// A customer's windows of `meter` starting in `[from, to)`, in start order.
    fn windows(
        &self,
        customer: &str,
        meter: &Meter,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<WindowRow>, Self::Error>;
    /// A window and the ids of the live events it counts, read consistently
    /// (the window again, when an event was counted between the reads).
    fn window_with_events(
        &self,
        meter: &Meter,
        row: WindowRow,
    ) -> Result<(WindowRow, Vec<String>), EnrichError<Self::Error>>;
    /// The meter's aggregate over `rows`.
    fn total(&self, meter: &Meter, rows: &[WindowRow]) -> Result<Quantity, Self::Error>;
}

/// A contract line's meter, active.
fn meter_of<S: UsageSource>(source: &S, line: &ContractLine) -> Result<Meter, EnrichError<S::Error>> {
    let md_err = |message: String| EnrichError::MasterData { line: line.id.clone(), message };
    match source.meter(&line.meter).map_err(EnrichError::Read)? {
        Some(m) if m.state == MeterState::Active => Ok(m),
        Some(m) if m.state == MeterState::Failed => Err(EnrichError::MeterFailed {
            line: line.id.clone(),
            meter: m.id.clone(),
            failure: m.failure.unwrap_or_else(|| "no reason recorded".into()),
        }),
        Some(_) => Err(md_err(format!("meter {} is still being built", line.meter))),
        None => Err(md_err(format!("unknown meter {}", line.meter))),
    }
}

/// A stretch `[from, to)` of a billing period over which the master data
/// stays the same.
#[derive(Debug, Clone)]
pub struct Segment {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub data: Arc<MasterData>,
}

/// The billing period cut at every effective time inside it, each piece
/// with the master data in effect (as known at `known_at`).
pub fn segments(
    history: &History,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    known_at: DateTime<Utc>,
) -> Result<Vec<Segment>, serde_json::Error> {
    let mut cuts = vec![start];
    cuts.extend(history.change_points(start, end));
    cuts.push(end);
    cuts.windows(2)
        .map(|w| Ok(Segment { from: w[0], to: w[1], data: Arc::new(history.as_of(w[0], known_at)?) }))
        .collect()
}

/// One contract line on one set of terms over part of a billing period.
#[derive(Debug, Clone)]
pub struct LinePart {
    pub line: ContractLine,
    pub line_version: u64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The master data in effect at `from`.
    pub data: Arc<MasterData>,
}

/// The parts of each contract line that exists during the billing period
/// (in the order lines first appeared): consecutive segments on the same
/// terms (the line, its customer, subscription, SKU and legal entities)
/// merge into one part, so only an amendment that changes the terms cuts
/// the period.
pub fn line_parts(history: &History, segments: &[Segment]) -> Vec<LinePart> {
    let mut order: Vec<String> = Vec::new();
    let mut parts: BTreeMap<String, Vec<(String, LinePart)>> = BTreeMap::new();
    for seg in segments {
        for line in &seg.data.contract_lines {
            let terms = terms_of(&seg.data, line);
            let version = history
                .of(Kind::ContractLine, &line.id)
                .into_iter()
                .filter(|v| v.effective_from <= seg.from && v.value.is_some())
                .max_by_key(|v| (v.effective_from, v.seq))
                .map_or(0, |v| v.seq);
            let list = parts.entry(line.id.clone()).or_insert_with(|| {
                order.push(line.id.clone());
                Vec::new()
            });
            match list.last_mut() {
                Some((t, p)) if *t == terms && p.to == seg.from => p.to = seg.to,
                _ => list.push((
                    terms,
                    LinePart {
                        line: line.clone(),
                        line_version: version,
                        from: seg.from,
                        to: seg.to,
                        data: seg.data.clone(),
                    },
                )),
            }
        }
    }
    order.into_iter().flat_map(|id| parts.remove(&id).unwrap_or_default().into_iter().map(|(_, p)| p)).collect()
}

/// What a line is rated and billed on, compared between segments.
fn terms_of(md: &MasterData, line: &ContractLine) -> String {
    let customer = md.customer(&line.customer);
    let entities: Vec<_> = line
        .legal_entity
        .as_deref()
        .or(customer.map(|c| c.legal_entity.as_str()))
        .into_iter()
        .chain(line.legal_entity_split.iter().flat_map(|s| s.entities.values().map(String::as_str)))
        .map(|id| md.legal_entity(id))
        .collect();
    let subscription = line.subscription.as_ref().and_then(|s| md.subscriptions.iter().find(|x| x.id == *s));
    let features: Vec<_> = md.features.iter().filter(|f| f.meter == line.meter).collect();
    serde_json::json!([line, customer, subscription, md.sku(&line.sku), entities, features]).to_string()
}

/// Builds the canonical usage of one part of a contract line — one per
/// legal entity its usage is billed by — and the source event ids of each.
pub fn canonical_usage<S: UsageSource>(
    source: &S,
    tenant: &str,
    part: &LinePart,
    period: &Period,
) -> Result<Usages, EnrichError<S::Error>> {
    let (line, md) = (&part.line, &part.data);
    let md_err = |message: String| EnrichError::MasterData { line: line.id.clone(), message };
    let customer = md.customer(&line.customer).ok_or_else(|| md_err(format!("unknown customer {}", line.customer)))?;
    let sku = md.sku(&line.sku).ok_or_else(|| md_err(format!("unknown sku {}", line.sku)))?;
    let meter = meter_of(source, line)?;
    // Windows by the legal entity that bills them (by window start).
    let own_entity = line.legal_entity.as_ref().unwrap_or(&customer.legal_entity);
    let mut by_entity: BTreeMap<String, Vec<WindowRow>> = BTreeMap::new();
    by_entity.insert(own_entity.clone(), Vec::new());
    for row in source.windows(&line.customer, &meter, part.from, part.to).map_err(EnrichError::Read)? {
        if row.window.events == 0 {
            continue;
        }
        let entity = line
            .legal_entity_split
            .as_ref()
            .and_then(|split| row.dimensions.get(&split.dimension).and_then(|v| split.entities.get(v)))
            .unwrap_or(own_entity);
        by_entity.entry(entity.clone()).or_default().push(row);
    }
    let mut out = Vec::new();
    for (entity_id, rows) in by_entity {
        let entity = md.legal_entity(&entity_id).ok_or_else(|| md_err(format!("unknown legal entity {entity_id}")))?;
        let mut part_id = part_id(part, period);
        if line.legal_entity_split.is_some() {
            part_id.push('@');
            part_id.push_str(&entity_id);
        }
        let mut kept = Vec::new();
        let mut windows = Vec::new();
        let mut event_ids = Vec::new();
        for row in rows {
            let (row, ids) = source.window_with_events(&meter, row)?;
            windows.push(WindowRef {
                id: row.id.clone(),
                start: row.start,
                end: row.end,
                value: row.window.value,
                events: row.window.events,
            });
            event_ids.extend(ids);
            kept.push(row);
        }
        let total = source.total(&meter, &kept).map_err(EnrichError::Read)?;
        let quantity = total.to_decimal().ok_or_else(|| EnrichError::QuantityOutOfRange {
            line: line.id.clone(),
            meter: meter.id.clone(),
            from: part.from,
            to: part.to,
            quantity: total.to_string(),
        })?;
        event_ids.sort();
        let mut h = Sha256::new();
        for id in &event_ids {
            h.update(id.as_bytes());
            h.update([0]);
        }
        let usage = CanonicalUsage {
            tenant: tenant.into(),
            customer: customer.id.clone(),
            customer_erp_account: customer.erp_account.clone(),
            customer_parent: customer.parent.clone(),
            subscription: line.subscription.clone(),
            legal_entity: entity.id.clone(),
            erp_company: entity.erp_company.clone(),
            erp_target: entity.erp_target.clone(),
            tax_context: entity.tax_context.clone(),
            contract_line: line.id.clone(),
            contract_line_version: part.line_version,
            part: part_id,
            sku: sku.id.clone(),
            erp_item: sku.erp_item.clone(),
            revenue_category: sku.revenue_category.clone(),
            gl_account: sku.gl_account.clone(),
            feature: md.features.iter().find(|f| f.meter == line.meter).map(|f| f.code.clone()),
            meter: line.meter.clone(),
            pricing_plan: None,
            currency: line.currency.clone(),
            period: period.clone(),
            from: part.from,
            to: part.to,
            quantity,
            dimensions: line
                .legal_entity_split
                .as_ref()
                .map(|s| {
                    let values = s.entities.iter().filter(|(_, e)| **e == entity_id).map(|(v, _)| v.as_str());
                    (s.dimension.clone(), values.collect::<Vec<_>>().join(","))
                })
                .filter(|(_, v)| !v.is_empty())
                .into_iter()
                .collect(),
            params: line.params.clone(),
            lineage: UsageLineage {
                event_count: event_ids.len() as u64,
                windows,
                event_ids_digest: crate::hex(&h.finalize()),
                transformation_version: TRANSFORMATION_VERSION,
            },
        };
        out.push((usage, event_ids));
    }
    Ok(out)
}

/// A line part's id in its canonical usages ([`CanonicalUsage::part`], before
/// any legal-entity suffix): empty for the whole period, else its start.
pub fn part_id(part: &LinePart, period: &Period) -> String {
    if part.from == period.start && part.to == period.end {
        String::new()
    } else {
        part.from.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// The metered quantity of a contract line's meter over `[from, to)`, as it stands now.
pub fn usage_total<S: UsageSource>(
    source: &S,
    line: &ContractLine,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Quantity, EnrichError<S::Error>> {
    let meter = meter_of(source, line)?;
    let rows = source.windows(&line.customer, &meter, from, to).map_err(EnrichError::Read)?;
    source.total(&meter, &rows).map_err(EnrichError::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema in the repository describes exactly the fields the object
    /// serialises, says which are always there, and names each one's owner.
    #[test]
    fn the_canonical_usage_schema_matches_the_object_and_names_owners() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../schema/canonical-usage.schema.json")).unwrap();
        let period = Period::parse("2026-11").unwrap();
        let full = CanonicalUsage {
            tenant: "t".into(),
            customer: "c".into(),
            customer_erp_account: "A".into(),
            customer_parent: Some("p".into()),
            subscription: Some("s".into()),
            legal_entity: "e".into(),
            erp_company: "1000".into(),
            erp_target: "erp".into(),
            tax_context: Some("DE-VAT-19".into()),
            contract_line: "l".into(),
            contract_line_version: 3,
            part: "2026-11-15T00:00:00Z".into(),
            sku: "S".into(),
            erp_item: Some("I".into()),
            revenue_category: Some("usage".into()),
            gl_account: Some("4000".into()),
            feature: Some("f".into()),
            meter: "m".into(),
            pricing_plan: Some(crate::rating::RuleRef {
                plugin: "p".into(),
                version: "1.0.0".into(),
                sha256: "0".repeat(64),
            }),
            currency: "EUR".into(),
            from: period.start,
            to: period.end,
            period,
            quantity: Decimal::new(15, 1),
            dimensions: BTreeMap::from([("region".into(), "nl".into())]),
            params: serde_json::json!({}),
            lineage: UsageLineage {
                windows: Vec::new(),
                event_count: 0,
                event_ids_digest: "0".repeat(64),
                transformation_version: TRANSFORMATION_VERSION,
            },
        };
        let keys = |v: serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let properties = schema["properties"].as_object().unwrap();
        let mut documented: Vec<String> = properties.keys().cloned().collect();
        documented.sort();
        assert_eq!(keys(serde_json::to_value(&full).unwrap()), documented, "schema properties = serialised fields");
        let minimal = CanonicalUsage {
            customer_parent: None,
            subscription: None,
            tax_context: None,
            part: String::new(),
            erp_item: None,
            revenue_category: None,
            gl_account: None,
            feature: None,
            pricing_plan: None,
            ..full
        };
        let mut required: Vec<String> =
            schema["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
        required.sort();
        assert_eq!(keys(serde_json::to_value(&minimal).unwrap()), required, "required = always serialised");
        for (name, p) in properties {
            let owner = p["x-owner"].as_str().unwrap_or_else(|| panic!("{name} has no x-owner"));
            assert!(["gateway", "finance", "erp", "product"].contains(&owner), "{name}: owner {owner}");
            assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()), "{name} has no description");
        }
    }
}
