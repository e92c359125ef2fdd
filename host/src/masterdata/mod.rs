//! Master data: legal entities, customers, SKUs and contract lines, per
//! tenant. Loaded from a file at start-up (`tenants[].masterdata_file`) and
//! through `PUT /v1/masterdata`; both go through [`MasterData::validate`],
//! which names the offending field.

use crate::error::{ApiError, ErrorCode};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterData {
    #[serde(default)]
    pub legal_entities: Vec<LegalEntity>,
    #[serde(default)]
    pub customers: Vec<Customer>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub legal_entity: String,
    /// Account id in the ERP.
    pub erp_account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sku {
    pub id: String,
    pub name: String,
    /// Item id in the ERP.
    pub erp_item: String,
}

/// A priced meter of a customer: which rater rates it, with which parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractLine {
    pub id: String,
    pub customer: String,
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
}

/// A plugin by name and, optionally, exact version (default: the newest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    pub plugin: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// Billing periods; calendar months in UTC for now.
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
pub trait References {
    /// `Err(reason)` when no rater plugin matches.
    fn rater(&self, plugin: &PluginRef) -> Result<(), String>;
    fn erp_target_exists(&self, name: &str) -> bool;
    fn meter_exists(&self, id: &str) -> bool;
}

impl MasterData {
    /// Checks ids, references and currencies; the error names the field.
    pub fn validate(&self, refs: &dyn References) -> Result<(), ApiError> {
        let entities = check_unique("legal_entities", self.legal_entities.iter().map(|e| e.id.as_str()))?;
        let customers = check_unique("customers", self.customers.iter().map(|c| c.id.as_str()))?;
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
        }
        for (i, c) in self.customers.iter().enumerate() {
            check_id(format!("customers[{i}].erp_account"), &c.erp_account)?;
            if !entities.contains(c.legal_entity.as_str()) {
                return Err(bad(
                    format!("customers[{i}].legal_entity"),
                    format!("unknown legal entity {:?}", c.legal_entity),
                ));
            }
        }
        for (i, s) in self.skus.iter().enumerate() {
            check_id(format!("skus[{i}].erp_item"), &s.erp_item)?;
        }
        for (i, l) in self.contract_lines.iter().enumerate() {
            let f = |name: &str| format!("contract_lines[{i}].{name}");
            let customer = self
                .customer(&l.customer)
                .ok_or_else(|| bad(f("customer"), format!("unknown customer {:?}", l.customer)))?;
            debug_assert!(customers.contains(customer.id.as_str()));
            if !skus.contains(l.sku.as_str()) {
                return Err(bad(f("sku"), format!("unknown sku {:?}", l.sku)));
            }
            if !refs.meter_exists(&l.meter) {
                return Err(bad(f("meter"), format!("unknown meter {:?}; define it with POST /v1/meters", l.meter)));
            }
            check_currency(f("currency"), &l.currency)?;
            if let Some(entity) = self.legal_entity(&customer.legal_entity)
                && entity.currency != l.currency
            {
                return Err(bad(
                    f("currency"),
                    format!("{} differs from legal entity {}'s currency {}", l.currency, entity.id, entity.currency),
                ));
            }
            if !l.params.is_object() {
                return Err(bad(f("params"), "must be a JSON object"));
            }
            refs.rater(&l.rater).map_err(|reason| bad(f("rater"), reason))?;
            if l.commitment.is_some_and(|c| c.is_sign_negative() && !c.is_zero()) {
                return Err(bad(f("commitment"), "must not be negative"));
            }
        }
        let mut codes = BTreeSet::new();
        for (i, feature) in self.features.iter().enumerate() {
            check_id(format!("features[{i}].code"), &feature.code)?;
            if !codes.insert(feature.code.as_str()) {
                return Err(bad(format!("features[{i}].code"), format!("{:?} appears twice", feature.code)));
            }
            if !refs.meter_exists(&feature.meter) {
                return Err(bad(format!("features[{i}].meter"), format!("unknown meter {:?}", feature.meter)));
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

/// Per-tenant master data in the store.
pub fn load(store: &Store, tenant: &str) -> Result<MasterData, StoreError> {
    Ok(store.get(&store.masterdata, tenant.as_bytes())?.unwrap_or_default())
}

/// Replaces a tenant's master data and makes it durable. Validate first.
pub async fn save(store: &Store, tenant: &str, data: &MasterData) -> Result<(), StoreError> {
    store.put(&store.masterdata, tenant.as_bytes(), data)?;
    store.flush().await
}
