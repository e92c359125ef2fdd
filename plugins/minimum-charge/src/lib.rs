//! Per-unit price with a minimum monthly charge: when the usage amount is
//! below `minimum`, a top-up line brings the period to the minimum.
//!
//! Parameters: `{"unit_price": "0.02", "minimum": "50.00", "rounding": {...},
//! "description": "Storage"}`. Lines: the usage (when there is any), then the
//! top-up (when the usage amount is below the minimum).

use serde::Deserialize;
use tollgate_sdk::Decimal;
use tollgate_sdk::pricing::Rounding;
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage, mul};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    unit_price: Decimal,
    minimum: Decimal,
    #[serde(default)]
    rounding: Option<Rounding>,
    #[serde(default)]
    description: Option<String>,
}

pub struct MinimumCharge;

impl Rater for MinimumCharge {
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        let p: Params = tollgate_sdk::parse_params(&input.params)?;
        for (field, v) in [("params.unit_price", p.unit_price), ("params.minimum", p.minimum)] {
            if v.is_sign_negative() && !v.is_zero() {
                return Err(PluginError::new("invalid-params", Some(field), format!("{v} must not be negative")));
            }
        }
        let rounding = p.rounding.unwrap_or_default();
        let q = input.quantity_decimal()?;
        let label = p.description.unwrap_or_else(|| input.meter.clone());
        let usage_amount = rounding.apply(mul(q, p.unit_price, "quantity")?);
        let mut lines = Vec::new();
        if !q.is_zero() {
            lines.push(input.charge(
                label.clone(),
                q,
                p.unit_price,
                usage_amount,
                format!("{q} × {} = {usage_amount} {}", p.unit_price, input.currency),
            ));
        }
        if usage_amount < p.minimum {
            let top_up = rounding.apply(p.minimum - usage_amount);
            lines.push(input.charge(
                format!("{label}: minimum monthly charge"),
                Decimal::ONE,
                top_up,
                top_up,
                format!("usage {usage_amount} is below the minimum {}: top-up {top_up} {}", p.minimum, input.currency),
            ));
        }
        Ok(lines)
    }
}

tollgate_sdk::export_rater_v4!(MinimumCharge);
