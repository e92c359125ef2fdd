//! The rating model: what a rater is given ([`RaterInput`], built from a
//! canonical usage and the related charges), what it answers ([`Charge`]),
//! and what is kept ([`ChargeRecord`]: the rule pinned by its hash and the
//! digests of the exact input and output). The digests are over these
//! domain types, not over any plugin interface, so every interface version
//! a rater speaks records the same input digest for the same usage.

use crate::enrich::CanonicalUsage;
use chrono::{DateTime, Utc};
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

/// What a rater rates: one canonical usage as plugin interfaces carry it
/// (period bounds as RFC 3339 seconds, the params as JSON text), with the
/// charges of the customer's other lines rated before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaterInput {
    pub tenant: String,
    pub customer: String,
    pub contract_line: String,
    pub sku: String,
    pub meter: String,
    pub currency: String,
    pub period_start: String,
    pub period_end: String,
    pub quantity: Decimal,
    /// In key order.
    pub dimensions: Vec<(String, String)>,
    pub params: String,
    pub related: Vec<RelatedCharge>,
}

/// The rater's input for a canonical usage and the related charges.
pub fn rater_input(u: &CanonicalUsage, related: &[RelatedCharge]) -> RaterInput {
    RaterInput {
        tenant: u.tenant.clone(),
        customer: u.customer.clone(),
        contract_line: u.contract_line.clone(),
        sku: u.sku.clone(),
        meter: u.meter.clone(),
        currency: u.currency.clone(),
        period_start: u.period.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        period_end: u.period.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        quantity: u.quantity,
        dimensions: u.dimensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        params: u.params.to_string(),
        related: related.to_vec(),
    }
}

/// A decimal as `negative:mantissa_high:mantissa_low:scale` (the 96-bit
/// mantissa split at 64 bits; zero is never negative): the form every
/// stored input digest was computed over.
fn decimal_parts(d: Decimal) -> String {
    let m = d.mantissa().unsigned_abs();
    let negative = d.is_sign_negative() && !d.is_zero();
    format!("{negative}:{}:{}:{}", (m >> 64) as u32, m as u64, d.scale())
}

/// SHA-256 of a rater's exact input.
pub fn digest_input(i: &RaterInput) -> String {
    let mut h = Sha256::new();
    for s in [&i.tenant, &i.customer, &i.contract_line, &i.sku, &i.meter, &i.currency, &i.period_start, &i.period_end] {
        h.update(s.as_bytes());
        h.update([0]);
    }
    h.update(decimal_parts(i.quantity).as_bytes());
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
        h.update(decimal_parts(r.amount).as_bytes());
    }
    crate::hex(&h.finalize())
}

/// SHA-256 of a rater's charges.
pub fn digest_output(charges: &[Charge]) -> String {
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

/// The rating stage around any rater: builds each input, runs `rater` on
/// all of them (it answers every input, in order), and records digests and
/// lineage. The gateway runs a Wasm plugin through it; benchmarks run a
/// native build of the same rule through the same stage.
pub fn rate_many_with<E>(
    items: Vec<(CanonicalUsage, Vec<RelatedCharge>)>,
    rule: RuleRef,
    now: DateTime<Utc>,
    rater: impl FnOnce(Vec<RaterInput>) -> Vec<Result<Vec<Charge>, E>>,
) -> Vec<Result<ChargeRecord, E>> {
    let inputs: Vec<RaterInput> = items.iter().map(|(usage, related)| rater_input(usage, related)).collect();
    // Digested before the rater takes the inputs (by value: no copy).
    let digests: Vec<String> = inputs.iter().map(digest_input).collect();
    let answers = rater(inputs);
    assert_eq!(answers.len(), digests.len(), "a rater answers every input");
    items
        .into_iter()
        .zip(digests)
        .zip(answers)
        .map(|(((usage, related), digest), answer)| {
            answer.map(|charges| record(usage, related, digest, charges, rule.clone(), now))
        })
        .collect()
}

/// The record of `charges`, rated by `rule` from the input of digest
/// `input_digest` ([`digest_input`]).
pub fn record(
    usage: CanonicalUsage,
    related: Vec<RelatedCharge>,
    input_digest: String,
    charges: Vec<Charge>,
    rule: RuleRef,
    now: DateTime<Utc>,
) -> ChargeRecord {
    let usage = CanonicalUsage { pricing_plan: Some(rule.clone()), ..usage };
    ChargeRecord { rule, input_digest, output_digest: digest_output(&charges), usage, related, charges, rated_at: now }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::{Period, TRANSFORMATION_VERSION, UsageLineage};
    use std::collections::BTreeMap;

    /// initech's April usage in `tests/fixtures/datadir`, as the gateway of
    /// commit 0ed714d rated it: the digest over the domain input is the one
    /// it stored (computed then over the plugin interface's record).
    #[test]
    fn the_input_digest_is_the_one_stored_before_it_was_computed_over_domain_types() {
        let period = Period::parse("2025-04").unwrap();
        let usage = CanonicalUsage {
            tenant: "acme".into(),
            customer: "initech".into(),
            customer_erp_account: "C-2".into(),
            customer_parent: None,
            subscription: None,
            legal_entity: "acme-eu".into(),
            erp_company: "1000".into(),
            erp_target: "sim".into(),
            tax_context: None,
            contract_line: "initech-api".into(),
            contract_line_version: 6,
            part: String::new(),
            sku: "API".into(),
            erp_item: Some("ITEM-API".into()),
            revenue_category: None,
            gl_account: None,
            feature: None,
            meter: "api_calls".into(),
            pricing_plan: None,
            currency: "EUR".into(),
            from: period.start,
            to: period.end,
            period,
            quantity: Decimal::new(3, 0),
            dimensions: BTreeMap::new(),
            params: serde_json::json!({
                "tiers": [ { "up_to": null, "unit_price": "0.333" } ], "rounding": { "scale": 2, "mode": "half_even" }
            }),
            lineage: UsageLineage {
                windows: Vec::new(),
                event_count: 1,
                event_ids_digest: String::new(),
                transformation_version: TRANSFORMATION_VERSION,
            },
        };
        let input = rater_input(&usage, &[]);
        assert_eq!(digest_input(&input), "b5abbc783a8a028ef0a912faf8798def0166adb5d85e6f45c4f12805a2167cb3");
        // Related charges and a negative amount count in it.
        let related = RelatedCharge {
            contract_line: "x".into(),
            sku: "S".into(),
            description: "d".into(),
            amount: Decimal::new(-125, 2),
            currency: "EUR".into(),
        };
        let with = rater_input(&usage, std::slice::from_ref(&related));
        assert_ne!(digest_input(&with), digest_input(&input));
        let positive = RelatedCharge { amount: Decimal::new(125, 2), ..related };
        assert_ne!(digest_input(&with), digest_input(&rater_input(&usage, &[positive])));
    }
}
