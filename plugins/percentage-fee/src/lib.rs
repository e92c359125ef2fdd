//! Percentage fee on other contract lines (interface 0.2.0): e.g. a 2.5 %
//! payment-processing fee on the customer's API and storage charges.
//!
//! Parameters:
//!
//! ```json
//! { "percent": "2.5", "of_contract_lines": ["cl-api", "cl-storage"],
//!   "description": "Processing fee", "rounding": { "scale": 2, "mode": "half_up" } }
//! ```
//!
//! The base is the sum of the related charges (the customer's lines rated
//! before this one in the same period) of the listed contract lines, or of
//! all of them when `of_contract_lines` is absent. A listed line that
//! produced no charge contributes zero. One line: quantity = the base,
//! unit price = percent / 100, amount = round(base × percent / 100); no line
//! when the base is zero. Related charges in another currency are refused.

use serde::Deserialize;
use tollgate_sdk::Decimal;
use tollgate_sdk::pricing::Rounding;
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage, mul};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    percent: Decimal,
    #[serde(default)]
    of_contract_lines: Option<Vec<String>>,
    #[serde(default)]
    rounding: Option<Rounding>,
    #[serde(default)]
    description: Option<String>,
}

pub struct PercentageFee;

impl Rater for PercentageFee {
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        let p: Params = tollgate_sdk::parse_params(&input.params)?;
        if p.percent.is_sign_negative() && !p.percent.is_zero() {
            return Err(PluginError::new(
                "invalid-params",
                Some("params.percent"),
                format!("{} is negative", p.percent),
            ));
        }
        if p.of_contract_lines.as_ref().is_some_and(Vec::is_empty) {
            return Err(PluginError::new(
                "invalid-params",
                Some("params.of_contract_lines"),
                "empty; leave it out to take every other line",
            ));
        }
        let mut base = Decimal::ZERO;
        let mut parts = Vec::new();
        for (i, r) in input.related.iter().enumerate() {
            let wanted = p.of_contract_lines.as_ref().is_none_or(|l| l.contains(&r.contract_line));
            if !wanted || r.contract_line == input.contract_line {
                continue;
            }
            if r.currency != input.currency {
                return Err(PluginError::new(
                    "currency-mismatch",
                    Some(&format!("related[{i}].currency")),
                    format!("line {} is in {}, this fee in {}", r.contract_line, r.currency, input.currency),
                ));
            }
            let amount = r.amount_decimal()?;
            base = base.checked_add(amount).ok_or_else(|| {
                PluginError::new("overflow", Some(&format!("related[{i}].amount")), "the base overflows")
            })?;
            parts.push(format!("{} {amount}", r.contract_line));
        }
        if base.is_zero() {
            return Ok(Vec::new());
        }
        let rate = p.percent / Decimal::ONE_HUNDRED;
        let amount = p.rounding.unwrap_or_default().apply(mul(base, rate, "related")?);
        let label = p.description.unwrap_or_else(|| format!("Fee {} %", p.percent));
        Ok(vec![input.charge(
            label,
            base,
            rate,
            amount,
            format!(
                "{} % of {base} {} ({}) = {amount} {}",
                p.percent,
                input.currency,
                parts.join(" + "),
                input.currency
            ),
        )])
    }
}

tollgate_sdk::export_rater_v4!(PercentageFee);
