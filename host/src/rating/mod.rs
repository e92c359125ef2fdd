//! Rating: canonical usage + the contract line's rater plugin → charge lines,
//! stored with lineage (rule name, version and SHA-256, input and output
//! digests, windows, source events).
//!
//! - `runtime`: the Wasm sandbox.
//! - `registry`: loaded plugins by owner, name and version; uploads.
//! - `activation`: which version rates a contract line, from when.

pub mod activation;
pub mod fixtures;
pub mod registry;
pub mod runtime;

use crate::enrich::CanonicalUsage;
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use registry::Registry;
use runtime::{Plugin, PluginError, bindings::rating as wit};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One priced line, as the rater produced it, in exact decimals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub sku: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
    pub explain: String,
}

/// A charge of another contract line of the same customer and period, rated
/// before the line at hand; raters of interface 0.2.0 and later see them
/// (e.g. a fee as a percentage of other lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedCharge {
    pub contract_line: String,
    pub sku: String,
    pub description: String,
    pub amount: Decimal,
    pub currency: String,
}

impl RelatedCharge {
    /// The related charges a rated record offers to later lines.
    pub fn of(record: &ChargeRecord) -> impl Iterator<Item = RelatedCharge> + '_ {
        record.charges.iter().map(|c| RelatedCharge {
            contract_line: record.usage.contract_line.clone(),
            sku: c.sku.clone(),
            description: c.description.clone(),
            amount: c.amount,
            currency: record.usage.currency.clone(),
        })
    }
}

/// The rule that rated: a plugin version, pinned by its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    pub plugin: String,
    pub version: String,
    pub sha256: String,
}

/// The rated charges of one contract line for one period: the system of
/// record for rated consumption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeRecord {
    pub usage: CanonicalUsage,
    /// The other lines' charges the rater was given (lineage of derived
    /// charges such as percentage fees).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<RelatedCharge>,
    pub rule: RuleRef,
    /// SHA-256 of the rater's exact input; same input → same output.
    pub input_digest: String,
    pub output_digest: String,
    pub charges: Vec<Charge>,
    pub rated_at: DateTime<Utc>,
}

impl ChargeRecord {
    pub fn key(&self) -> Vec<u8> {
        charge_key(&self.usage.tenant, &self.usage.period.id, &self.usage.contract_line, &self.usage.part)
    }
}

/// `tenant·period·contract line·part` (the part is empty for a whole period).
pub fn charge_key(tenant: &str, period: &str, contract_line: &str, part: &str) -> Vec<u8> {
    store::key(&[tenant, period, contract_line, part])
}

/// The rater's WIT input for a canonical usage and the related charges.
pub fn rater_input(u: &CanonicalUsage, related: &[RelatedCharge]) -> wit::Usage {
    wit::Usage {
        tenant: u.tenant.clone(),
        customer: u.customer.clone(),
        contract_line: u.contract_line.clone(),
        sku: u.sku.clone(),
        meter: u.meter.clone(),
        currency: u.currency.clone(),
        period_start: u.period.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        period_end: u.period.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        quantity: runtime::to_wit(u.quantity),
        dimensions: u.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        params: u.params.to_string(),
        related: related
            .iter()
            .map(|r| wit::RelatedCharge {
                contract_line: r.contract_line.clone(),
                sku: r.sku.clone(),
                description: r.description.clone(),
                amount: runtime::to_wit(r.amount),
                currency: r.currency.clone(),
            })
            .collect(),
    }
}

fn digest_input(i: &wit::Usage) -> String {
    let mut h = Sha256::new();
    for s in [&i.tenant, &i.customer, &i.contract_line, &i.sku, &i.meter, &i.currency, &i.period_start, &i.period_end] {
        h.update(s.as_bytes());
        h.update([0]);
    }
    let q = &i.quantity;
    h.update(format!("{}:{}:{}:{}", q.negative, q.mantissa_high, q.mantissa_low, q.scale).as_bytes());
    for (k, v) in &i.dimensions {
        h.update([1]);
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
    }
    h.update([2]);
    h.update(i.params.as_bytes());
    for r in &i.related {
        h.update([3]);
        for s in [&r.contract_line, &r.sku, &r.description, &r.currency] {
            h.update(s.as_bytes());
            h.update([0]);
        }
        let a = &r.amount;
        h.update(format!("{}:{}:{}:{}", a.negative, a.mantissa_high, a.mantissa_low, a.scale).as_bytes());
    }
    crate::hex(&h.finalize())
}

fn digest_output(charges: &[Charge]) -> String {
    let mut h = Sha256::new();
    for c in charges {
        for s in [
            &c.sku,
            &c.description,
            &c.quantity.to_string(),
            &c.unit_price.to_string(),
            &c.amount.to_string(),
            &c.explain,
        ] {
            h.update(s.as_bytes());
            h.update([0]);
        }
        h.update([1]);
    }
    crate::hex(&h.finalize())
}

/// Rates canonical usages (each with its related charges) with `plugin`,
/// in batches where the rater takes them (see
/// [`runtime::Runtime::rate_batch`]); result `i` is what rating `items[i]`
/// alone gives. Blocking: run off the async runtime.
pub fn rate_many(
    registry: &Registry,
    plugin: &Plugin,
    items: Vec<(CanonicalUsage, Vec<RelatedCharge>)>,
    now: DateTime<Utc>,
) -> Vec<Result<ChargeRecord, PluginError>> {
    rate_many_with(items, rule_of(plugin), now, |inputs| registry.runtime().rate_batch(plugin, inputs))
}

fn rule_of(plugin: &Plugin) -> RuleRef {
    RuleRef { plugin: plugin.name.clone(), version: plugin.version.to_string(), sha256: plugin.sha256.clone() }
}

/// The rating stage around any rater: builds each input, runs `rater` on
/// all of them (it answers every input, in order), and records digests and
/// lineage. [`rate_many`] runs a Wasm plugin; benchmarks run a native build
/// of the same rule through the same stage.
pub fn rate_many_with(
    items: Vec<(CanonicalUsage, Vec<RelatedCharge>)>,
    rule: RuleRef,
    now: DateTime<Utc>,
    rater: impl FnOnce(&[wit::Usage]) -> Vec<Result<Vec<Charge>, PluginError>>,
) -> Vec<Result<ChargeRecord, PluginError>> {
    let inputs: Vec<wit::Usage> = items.iter().map(|(usage, related)| rater_input(usage, related)).collect();
    let answers = rater(&inputs);
    assert_eq!(answers.len(), inputs.len(), "a rater answers every input");
    items
        .into_iter()
        .zip(&inputs)
        .zip(answers)
        .map(|(((usage, related), input), answer)| {
            answer.map(|charges| record(usage, related, input, charges, rule.clone(), now))
        })
        .collect()
}

fn record(
    usage: CanonicalUsage,
    related: Vec<RelatedCharge>,
    input: &wit::Usage,
    charges: Vec<Charge>,
    rule: RuleRef,
    now: DateTime<Utc>,
) -> ChargeRecord {
    let usage = CanonicalUsage { pricing_plan: Some(rule.clone()), ..usage };
    ChargeRecord {
        rule,
        input_digest: digest_input(input),
        output_digest: digest_output(&charges),
        usage,
        related,
        charges,
        rated_at: now,
    }
}

/// Reads a stored charge record.
pub fn load_charge(
    store: &Store,
    tenant: &str,
    period: &str,
    contract_line: &str,
    part: &str,
) -> Result<Option<ChargeRecord>, StoreError> {
    store.get(&store.charges, &charge_key(tenant, period, contract_line, part))
}

/// Every charge record of a tenant's period.
pub fn load_charges(store: &Store, tenant: &str, period: &str) -> Result<Vec<ChargeRecord>, StoreError> {
    Ok(store.scan(&store.charges, &store::prefix(&[tenant, period]))?.into_iter().map(|(_, r)| r).collect())
}
