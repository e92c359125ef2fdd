//! The master-data model (customers, contracts, contract lines, ERP mappings) and its checks.

use super::history;
use super::history::{Change, History, Kind};
use crate::error::{ApiError, ErrorCode};
use crate::meter::Meter;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterData {
    #[serde(default)]
    pub legal_entities: Vec<LegalEntity>,
    #[serde(default)]
    pub customers: Vec<Customer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscription>,
    #[serde(default)]
    pub skus: Vec<Sku>,
    #[serde(default)]
    pub contract_lines: Vec<ContractLine>,
    /// Feature codes of the product and the meter that measures each
    /// (entitlement look-ups).
    #[serde(default)]
    pub features: Vec<Feature>,
}

/// A product feature whose use a meter measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub code: String,
    pub name: String,
    pub meter: String,
}

/// A company that invoices: its currency and where its documents are posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalEntity {
    pub id: String,
    pub name: String,
    /// ISO 4217, e.g. "EUR".
    pub currency: String,
    /// Company code in the ERP.
    pub erp_company: String,
    /// Name of the ERP target (gateway config `erp_targets`).
    pub erp_target: String,
    /// Further targets every document of the entity is also posted to
    /// (coexistence: e.g. a billing engine and a legacy ERP for revenue);
    /// each is posted exactly once and tracked on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coexisting_targets: Vec<String>,
    /// ISO 3166-1 alpha-2, e.g. "DE".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The tax treatment its documents carry (e.g. "DE-VAT-19"), passed to
    /// the ERP with every line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub legal_entity: String,
    /// Account id in the ERP.
    pub erp_account: String,
    /// The parent account (a customer of the same tenant), for hierarchies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Account id in the CRM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_account: Option<String>,
}

/// A customer's subscription: the contract its contract lines belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sku {
    pub id: String,
    pub name: String,
    /// Item id in the ERP; absent until the ERP team maps it (usage of a
    /// SKU without it waits in `GET /v1/unmatched`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_item: Option<String>,
    /// Revenue category (e.g. "usage", "subscription").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_category: Option<String>,
    /// GL account revenue is booked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gl_account: Option<String>,
}

/// A priced meter of a customer: which rater rates it, with which parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractLine {
    pub id: String,
    pub customer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// The legal entity that bills this line; default: the customer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_entity: Option<String>,
    pub meter: String,
    pub sku: String,
    pub rater: PluginRef,
    /// The rater's parameters: a JSON object.
    pub params: serde_json::Value,
    pub currency: String,
    #[serde(default)]
    pub billing_period: BillingPeriod,
    /// Quantity included per period: the entitlement's allowance
    /// (`GET /v1/customers/{id}/entitlements/{feature}`); none: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<rust_decimal::Decimal>,
    /// Quantities of a period at which sales wants to hear (ascending).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<rust_decimal::Decimal>,
    /// Day of the month the billing period starts (1..=28; default 1: calendar months).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_anchor_day: Option<u32>,
    /// Bills the usage of each value of a group-by dimension of the meter
    /// to a legal entity of its own (e.g. by region); values it does not
    /// list stay with the line's legal entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_entity_split: Option<LegalEntitySplit>,
}

/// Which legal entity bills each value of a dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalEntitySplit {
    pub dimension: String,
    pub entities: BTreeMap<String, String>,
}

/// A plugin by name and, optionally, exact version (default: the newest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    pub plugin: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// Billing periods: months in UTC, starting on the line's anchor day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingPeriod {
    #[default]
    Monthly,
}

fn bad(field: String, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::InvalidArgument, field, message)
}

fn check_id(field: String, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(bad(field, "1..=256 bytes, no control characters"));
    }
    Ok(())
}

fn check_unique<'a>(kind: &str, ids: impl Iterator<Item = &'a str>) -> Result<BTreeSet<&'a str>, ApiError> {
    let mut seen = BTreeSet::new();
    for (i, id) in ids.enumerate() {
        check_id(format!("{kind}[{i}].id"), id)?;
        if !seen.insert(id) {
            return Err(bad(format!("{kind}[{i}].id"), format!("{id:?} appears twice")));
        }
    }
    Ok(seen)
}

fn check_currency(field: String, c: &str) -> Result<(), ApiError> {
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad(field, format!("{c:?} is not an ISO 4217 code (three capital letters)")));
    }
    Ok(())
}

/// What master data may refer to outside itself.
pub trait References: Sync {
    /// `Err(why)` when no rater plugin matches.
    fn rater(&self, plugin: &PluginRef) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    fn erp_target_exists(&self, name: &str) -> bool;
    fn meter(&self, id: &str) -> Option<Arc<Meter>>;
}

fn check_optional_id(field: String, id: &Option<String>) -> Result<(), ApiError> {
    id.as_deref().map_or(Ok(()), |id| check_id(field, id))
}

impl MasterData {
    /// Checks ids, references and currencies; the error names the field.
    pub fn validate(&self, refs: &dyn References) -> Result<(), ApiError> {
        let entities = check_unique("legal_entities", self.legal_entities.iter().map(|e| e.id.as_str()))?;
        let customers = check_unique("customers", self.customers.iter().map(|c| c.id.as_str()))?;
        check_unique("subscriptions", self.subscriptions.iter().map(|s| s.id.as_str()))?;
        let skus = check_unique("skus", self.skus.iter().map(|s| s.id.as_str()))?;
        check_unique("contract_lines", self.contract_lines.iter().map(|l| l.id.as_str()))?;
        for (i, e) in self.legal_entities.iter().enumerate() {
            check_currency(format!("legal_entities[{i}].currency"), &e.currency)?;
            check_id(format!("legal_entities[{i}].erp_company"), &e.erp_company)?;
            if !refs.erp_target_exists(&e.erp_target) {
                return Err(bad(
                    format!("legal_entities[{i}].erp_target"),
                    format!("no ERP target {:?} is configured", e.erp_target),
                ));
            }
            for (j, t) in e.coexisting_targets.iter().enumerate() {
                if !refs.erp_target_exists(t) {
                    return Err(bad(
                        format!("legal_entities[{i}].coexisting_targets[{j}]"),
                        format!("no ERP target {t:?} is configured"),
                    ));
                }
            }
            if let Some(c) = &e.country
                && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(bad(
                    format!("legal_entities[{i}].country"),
                    format!("{c:?} is not an ISO 3166 code (two capital letters)"),
                ));
            }
            check_optional_id(format!("legal_entities[{i}].tax_context"), &e.tax_context)?;
        }
        for (i, c) in self.customers.iter().enumerate() {
            check_id(format!("customers[{i}].erp_account"), &c.erp_account)?;
            check_optional_id(format!("customers[{i}].crm_account"), &c.crm_account)?;
            if !entities.contains(c.legal_entity.as_str()) {
                return Err(bad(
                    format!("customers[{i}].legal_entity"),
                    format!("unknown legal entity {:?}", c.legal_entity),
                ));
            }
            if let Some(parent) = &c.parent {
                if !customers.contains(parent.as_str()) {
                    return Err(bad(format!("customers[{i}].parent"), format!("unknown customer {parent:?}")));
                }
                // Walk up: a parent chain longer than the customer list loops.
                let mut at = Some(parent.as_str());
                for _ in 0..=self.customers.len() {
                    at = at.and_then(|p| self.customer(p)).and_then(|p| p.parent.as_deref());
                }
                if at.is_some() {
                    return Err(bad(format!("customers[{i}].parent"), "the parent chain loops back to itself"));
                }
            }
        }
        for (i, s) in self.subscriptions.iter().enumerate() {
            if !customers.contains(s.customer.as_str()) {
                return Err(bad(format!("subscriptions[{i}].customer"), format!("unknown customer {:?}", s.customer)));
            }
        }
        for (i, s) in self.skus.iter().enumerate() {
            check_optional_id(format!("skus[{i}].erp_item"), &s.erp_item)?;
            check_optional_id(format!("skus[{i}].revenue_category"), &s.revenue_category)?;
            check_optional_id(format!("skus[{i}].gl_account"), &s.gl_account)?;
        }
        for (i, l) in self.contract_lines.iter().enumerate() {
            self.validate_line(l, &skus, refs)
                .map_err(|(name, message)| bad(format!("contract_lines[{i}].{name}"), message))?;
        }
        let mut codes = BTreeSet::new();
        for (i, feature) in self.features.iter().enumerate() {
            check_id(format!("features[{i}].code"), &feature.code)?;
            if !codes.insert(feature.code.as_str()) {
                return Err(bad(format!("features[{i}].code"), format!("{:?} appears twice", feature.code)));
            }
            if refs.meter(&feature.meter).is_none() {
                return Err(bad(format!("features[{i}].meter"), format!("unknown meter {:?}", feature.meter)));
            }
        }
        Ok(())
    }

    /// One contract line's checks: `Err((field, message))`.
    fn validate_line(
        &self,
        l: &ContractLine,
        skus: &BTreeSet<&str>,
        refs: &dyn References,
    ) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| Err((field.to_string(), message));
        let Some(customer) = self.customer(&l.customer) else {
            return err("customer", format!("unknown customer {:?}", l.customer));
        };
        if let Some(s) = &l.subscription {
            match self.subscriptions.iter().find(|x| x.id == *s) {
                None => return err("subscription", format!("unknown subscription {s:?}")),
                Some(x) if x.customer != l.customer => {
                    return err("subscription", format!("subscription {s:?} belongs to customer {:?}", x.customer));
                }
                Some(_) => {}
            }
        }
        if !skus.contains(l.sku.as_str()) {
            return err("sku", format!("unknown sku {:?}", l.sku));
        }
        let Some(meter) = refs.meter(&l.meter) else {
            return err("meter", format!("unknown meter {:?}; define it with POST /v1/meters", l.meter));
        };
        check_currency("currency".into(), &l.currency).map_err(|e| ("currency".to_string(), e.message))?;
        let entity_currency = |id: &str| self.legal_entity(id).map(|e| e.currency.as_str());
        let entity = l.legal_entity.as_ref().unwrap_or(&customer.legal_entity);
        if entity_currency(entity).is_none() {
            return err("legal_entity", format!("unknown legal entity {entity:?}"));
        }
        if let Some(c) = entity_currency(entity)
            && c != l.currency
        {
            return err("currency", format!("{} differs from legal entity {entity}'s currency {c}", l.currency));
        }
        if !l.params.is_object() {
            return err("params", "must be a JSON object".into());
        }
        refs.rater(&l.rater).map_err(|why| ("rater".to_string(), why.to_string()))?;
        if l.commitment.is_some_and(|c| c.is_sign_negative() && !c.is_zero()) {
            return err("commitment", "must not be negative".into());
        }
        for (j, pair) in l.thresholds.windows(2).enumerate() {
            if pair[1] <= pair[0] {
                return err(&format!("thresholds[{}]", j + 1), "thresholds must be ascending".into());
            }
        }
        if l.thresholds.first().is_some_and(|t| t.is_sign_negative() && !t.is_zero()) {
            return err("thresholds[0]", "must not be negative".into());
        }
        if let Some(day) = l.billing_anchor_day
            && !(1..=28).contains(&day)
        {
            return err("billing_anchor_day", format!("{day} is not a day 1..=28 (every month has it)"));
        }
        if let Some(split) = &l.legal_entity_split {
            if !meter.group_by.contains(&split.dimension) {
                return err(
                    "legal_entity_split.dimension",
                    format!("meter {:?} does not group by {:?}", meter.id, split.dimension),
                );
            }
            for (value, entity) in &split.entities {
                let field = format!("legal_entity_split.entities.{value}");
                match entity_currency(entity) {
                    None => return err(&field, format!("unknown legal entity {entity:?}")),
                    Some(c) if c != l.currency => {
                        return err(
                            &field,
                            format!("legal entity {entity}'s currency {c} differs from {}", l.currency),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.iter().find(|c| c.id == id)
    }
    pub fn legal_entity(&self, id: &str) -> Option<&LegalEntity> {
        self.legal_entities.iter().find(|e| e.id == id)
    }
    pub fn sku(&self, id: &str) -> Option<&Sku> {
        self.skus.iter().find(|s| s.id == id)
    }
}

/// A write's result before it is stored: the history with the changes
/// and the versions they add (none when the data was already so).
pub struct Planned {
    pub history: History,
    pub added: Vec<history::Version>,
}

/// Checks `changes` against `old`: contract-line versions must start on a
/// window boundary of the line's meter (so every window is rated on one
/// set of terms), and the master data must be valid at every instant the
/// changes affect (the earliest change and every later effective time).
pub fn plan(old: &History, changes: &[Change], refs: &dyn References, now: DateTime<Utc>) -> Result<Planned, ApiError> {
    for c in changes {
        if c.kind != Kind::ContractLine {
            continue;
        }
        let Some(line) = &c.value else { continue };
        let meter = line.get("meter").and_then(|m| m.as_str()).and_then(|m| refs.meter(m));
        if let Some(meter) = meter
            && c.effective_from.timestamp().rem_euclid(i64::from(meter.window.seconds())) != 0
        {
            return Err(bad(
                "effective_from".into(),
                format!(
                    "contract line {}: {} is not on a window boundary of meter {} ({} s windows); amend from a window start",
                    c.id,
                    c.effective_from.to_rfc3339(),
                    meter.id,
                    meter.window.seconds()
                ),
            ));
        }
    }
    let (new, added) = old.with(changes, now);
    let first = changes.iter().map(|c| c.effective_from).min().unwrap_or(now);
    let mut points = vec![first];
    points.extend(new.change_points(first, DateTime::<Utc>::MAX_UTC));
    for at in points {
        let snapshot = new.as_of(at, now).map_err(ApiError::internal)?;
        snapshot.validate(refs).map_err(|e| {
            if at == first {
                e
            } else {
                ApiError { message: format!("from {} on (a later version): {}", at.to_rfc3339(), e.message), ..e }
            }
        })?;
    }
    Ok(Planned { history: new, added })
}

/// Moves contract-line changes back to the start of the metering window
/// they fall in (for writes that name no effective time: "now" applies
/// from the current window of the line's meter).
pub fn snap_to_windows(changes: &mut [Change], history: &History, refs: &dyn References) {
    for c in changes.iter_mut().filter(|c| c.kind == Kind::ContractLine) {
        let meter_of = |v: &serde_json::Value| v.get("meter").and_then(|m| m.as_str()).and_then(|m| refs.meter(m));
        let meter = c.value.as_ref().and_then(meter_of).or_else(|| {
            history.of(Kind::ContractLine, &c.id).iter().rev().find_map(|v| v.value.as_ref().and_then(meter_of))
        });
        if let Some(meter) = meter {
            c.effective_from = meter.window.start_of(c.effective_from);
        }
    }
}
