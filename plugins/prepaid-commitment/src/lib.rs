//! Prepaid commitment with overage: a fixed fee buys `committed_units` for
//! the period; units beyond are charged at `overage_unit_price`.
//!
//! Parameters: `{"committed_units": "10000", "commitment_fee": "100.00",
//! "overage_unit_price": "0.012", "rounding": {...}, "description": "API calls"}`.
//! Lines: the commitment fee (always, usage or not), then the overage if any.

use serde::Deserialize;
use tollgate_sdk::Decimal;
use tollgate_sdk::pricing::Rounding;
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage, mul};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    committed_units: Decimal,
    commitment_fee: Decimal,
    overage_unit_price: Decimal,
    #[serde(default)]
    rounding: Option<Rounding>,
    #[serde(default)]
    description: Option<String>,
}

pub struct PrepaidCommitment;

impl Rater for PrepaidCommitment {
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        let p: Params = tollgate_sdk::parse_params(&input.params)?;
        for (field, v) in [
            ("params.committed_units", p.committed_units),
            ("params.commitment_fee", p.commitment_fee),
            ("params.overage_unit_price", p.overage_unit_price),
        ] {
            if v.is_sign_negative() && !v.is_zero() {
                return Err(PluginError::new("invalid-params", Some(field), format!("{v} must not be negative")));
            }
        }
        let q = input.quantity_decimal()?;
        let label = p.description.unwrap_or_else(|| input.meter.clone());
        let used = q.min(p.committed_units);
        let mut lines = vec![input.charge(
            format!("{label}: prepaid commitment of {} units", p.committed_units),
            Decimal::ONE,
            p.commitment_fee,
            p.commitment_fee,
            format!(
                "commitment fee {} {} covers {} units; {used} used",
                p.commitment_fee, input.currency, p.committed_units
            ),
        )];
        let overage = q - used;
        if overage > Decimal::ZERO {
            let amount = p.rounding.unwrap_or_default().apply(mul(overage, p.overage_unit_price, "quantity")?);
            lines.push(input.charge(
                format!("{label}: overage"),
                overage,
                p.overage_unit_price,
                amount,
                format!(
                    "{q} units − {} committed = {overage} over: {overage} × {} = {amount} {}",
                    p.committed_units, p.overage_unit_price, input.currency
                ),
            ));
        }
        Ok(lines)
    }
}

tollgate_sdk::export_rater_v4!(PrepaidCommitment);
