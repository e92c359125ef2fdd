//! Enrich: metering windows + master data → the canonical usage object of
//! one contract line over one billing period (fields as in
//! `../shared/DESIGN.md`), with its lineage: the windows it
//! sums, the event count and a digest of the event-id set.

pub mod unmatched;

use crate::error::{ApiError, ErrorCode};
use crate::eventlog::LogError;
use crate::masterdata::history::{History, Kind};
use crate::masterdata::{ContractLine, MasterData};
use crate::metering::window::{self, WindowFilter, WindowRow};
use crate::metering::{Meter, MeterState};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Version of the windows → canonical usage transformation, kept in lineage.
pub const TRANSFORMATION_VERSION: u32 = 1;

/// A calendar-month billing period in UTC, e.g. `2026-11`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub timezone: String,
}

impl Period {
    /// The billing period holding `t`: the month (UTC) starting on
    /// `anchor_day` (default 1) in which `t` falls.
    pub fn containing(t: DateTime<Utc>, anchor_day: Option<u32>) -> Period {
        let month = |y: i32, m: u32| Period::parse(&format!("{y:04}-{m:02}")).map(|p| p.anchored(anchor_day));
        let fallback = || Period { id: String::new(), start: t, end: t, timezone: "UTC".into() };
        match month(t.year(), t.month()) {
            Ok(p) if p.start <= t => p,
            Ok(_) if t.month() == 1 => month(t.year() - 1, 12).unwrap_or_else(|_| fallback()),
            Ok(_) => month(t.year(), t.month() - 1).unwrap_or_else(|_| fallback()),
            Err(_) => fallback(),
        }
    }

    /// Parses `YYYY-MM`: the calendar month in UTC.
    pub fn parse(id: &str) -> Result<Period, ApiError> {
        let bad =
            || ApiError::field(ErrorCode::InvalidArgument, "period", format!("{id:?} is not a month like 2026-11"));
        let (y, m) = id.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
        let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) }
            .ok_or_else(bad)?;
        let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
        Ok(Period { id: format!("{y:04}-{m:02}"), start: at(first), end: at(next), timezone: "UTC".into() })
    }

    /// The period of the same id for a line whose periods start on
    /// `anchor_day`: `2026-11` anchored on the 15th runs from 15 November
    /// to 15 December.
    pub fn anchored(&self, anchor_day: Option<u32>) -> Period {
        let shift = chrono::Duration::days(i64::from(anchor_day.unwrap_or(1).clamp(1, 28)) - 1);
        Period { start: self.start + shift, end: self.end + shift, ..self.clone() }
    }

    /// The last day of the period, `YYYY-MM-DD`: the invoice date.
    pub fn last_day(&self) -> String {
        let d = (self.end - chrono::Duration::days(1)).date_naive();
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    }
}

/// One window aggregated into a canonical usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRef {
    /// `meter/customer/start[/dimension=value…]`.
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The window's aggregate (its sum, count, max, …).
    pub value: crate::money::Quantity,
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
/// team owning each field, is `host/schema/canonical-usage.schema.json`.
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

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
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

/// A contract line's meter, active.
fn meter_of(store: &Store, tenant: &str, line: &ContractLine) -> Result<Meter, EnrichError> {
    let md_err = |message: String| EnrichError::MasterData { line: line.id.clone(), message };
    match window::load_meter(&store.eventlog, tenant, &line.meter)? {
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
) -> Result<Vec<Segment>, EnrichError> {
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
pub fn canonical_usage(
    store: &Store,
    tenant: &str,
    part: &LinePart,
    period: &Period,
) -> Result<Vec<(CanonicalUsage, Vec<String>)>, EnrichError> {
    let (line, md) = (&part.line, &part.data);
    let md_err = |message: String| EnrichError::MasterData { line: line.id.clone(), message };
    let customer = md.customer(&line.customer).ok_or_else(|| md_err(format!("unknown customer {}", line.customer)))?;
    let sku = md.sku(&line.sku).ok_or_else(|| md_err(format!("unknown sku {}", line.sku)))?;
    let meter = meter_of(store, tenant, line)?;
    // Windows by the legal entity that bills them (by window start).
    let own_entity = line.legal_entity.as_ref().unwrap_or(&customer.legal_entity);
    let mut by_entity: BTreeMap<String, Vec<WindowRow>> = BTreeMap::new();
    by_entity.insert(own_entity.clone(), Vec::new());
    for row in period_windows(store, tenant, &line.customer, &meter, part.from, part.to)? {
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
            let (row, ids) = window_with_events(store, tenant, &meter, row)?;
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
        let total = window::total(&store.eventlog, tenant, &meter, &kept)?.value;
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

/// The windows of a meter of a customer within a period.
fn period_windows(
    store: &Store,
    tenant: &str,
    customer: &str,
    meter: &Meter,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<WindowRow>, EnrichError> {
    let filter = WindowFilter {
        customer: Some(customer.to_string()),
        from: Some(from),
        to: Some(to),
        ..WindowFilter::default()
    };
    Ok(window::windows(&store.eventlog, tenant, meter, &filter)?)
}

/// The metered quantity of a contract line's meter over `[from, to)`, as it stands now.
pub fn usage_total(
    store: &Store,
    tenant: &str,
    line: &ContractLine,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<crate::money::Quantity, EnrichError> {
    let meter = meter_of(store, tenant, line)?;
    let rows = period_windows(store, tenant, &line.customer, &meter, from, to)?;
    Ok(window::total(&store.eventlog, tenant, &meter, &rows)?.value)
}

/// A window and its event ids, read consistently: an event indexed between
/// the two reads shows as a count mismatch, and the read is repeated.
fn window_with_events(
    store: &Store,
    tenant: &str,
    meter: &Meter,
    first: WindowRow,
) -> Result<(WindowRow, Vec<String>), EnrichError> {
    let mut row = first;
    for _ in 0..5 {
        let ids = window::window_event_ids(&store.eventlog, tenant, meter, &row)?;
        if ids.len() as u64 == row.window.events {
            return Ok((row, ids));
        }
        let filter = WindowFilter {
            customer: Some(row.customer.clone()),
            from: Some(row.start),
            to: Some(row.end),
            dimensions: row.dimensions.clone(),
        };
        let again = window::windows(&store.eventlog, tenant, meter, &filter)?;
        row = again.into_iter().find(|r| r.id == row.id).unwrap_or(WindowRow { window: Default::default(), ..row });
    }
    Err(EnrichError::Window { window: row.id, message: "window and its event index keep disagreeing".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema in the repository describes exactly the fields the object
    /// serialises, says which are always there, and names each one's owner.
    #[test]
    fn the_canonical_usage_schema_matches_the_object_and_names_owners() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schema/canonical-usage.schema.json")).unwrap();
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

    #[test]
    fn periods_are_calendar_months() {
        let p = Period::parse("2026-12").unwrap();
        assert_eq!(p.start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(p.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(p.last_day(), "2026-12-31");
        assert!(Period::parse("2026-13").is_err());
        assert!(Period::parse("26-1").is_err());
        let anchored = p.anchored(Some(15));
        assert_eq!(anchored.start.to_rfc3339(), "2026-12-15T00:00:00+00:00");
        assert_eq!(anchored.end.to_rfc3339(), "2027-01-15T00:00:00+00:00");
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(Period::containing(t("2027-01-10T00:00:00Z"), Some(15)).id, "2026-12");
        assert_eq!(Period::containing(t("2027-01-15T00:00:00Z"), Some(15)).id, "2027-01");
        assert_eq!(Period::containing(t("2027-01-15T00:00:00Z"), None).id, "2027-01");
    }
}
