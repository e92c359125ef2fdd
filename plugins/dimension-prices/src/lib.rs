//! Per-dimension prices: the unit price depends on a dimension of the usage,
//! e.g. the region.
//!
//! Parameters: `{"dimension": "region", "prices": {"eu-west": "0.010",
//! "us-east": "0.012"}, "default_unit_price": "0.015", "rounding": {...},
//! "description": "Compute"}`. Without `default_unit_price`, a value with no
//! price (or usage without the dimension) is an error naming it.

use serde::Deserialize;
use std::collections::BTreeMap;
use tollgate_sdk::Decimal;
use tollgate_sdk::pricing::Rounding;
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage, mul};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    dimension: String,
    prices: BTreeMap<String, Decimal>,
    #[serde(default)]
    default_unit_price: Option<Decimal>,
    #[serde(default)]
    rounding: Option<Rounding>,
    #[serde(default)]
    description: Option<String>,
}

pub struct DimensionPrices;

impl Rater for DimensionPrices {
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        let p: Params = tollgate_sdk::parse_params(&input.params)?;
        if let Some((k, v)) = p.prices.iter().find(|(_, v)| v.is_sign_negative() && !v.is_zero()) {
            return Err(PluginError::new(
                "invalid-params",
                Some(&format!("params.prices.{k}")),
                format!("{v} must not be negative"),
            ));
        }
        let q = input.quantity_decimal()?;
        if q.is_zero() {
            return Ok(Vec::new());
        }
        let value = input.dimension(&p.dimension);
        let (price, source) = match (value.and_then(|v| p.prices.get(v)), p.default_unit_price) {
            (Some(price), _) => (*price, format!("{} {}", p.dimension, value.unwrap_or_default())),
            (None, Some(default)) => {
                (default, format!("default price ({} {})", p.dimension, value.unwrap_or("not set")))
            }
            (None, None) => {
                return Err(match value {
                    Some(v) => PluginError::new(
                        "no-price",
                        Some(&format!("params.prices.{v}")),
                        format!("no price for {} {v:?} and no default_unit_price", p.dimension),
                    ),
                    None => PluginError::new(
                        "missing-dimension",
                        Some(&format!("dimensions.{}", p.dimension)),
                        format!("the usage has no {} dimension and there is no default_unit_price", p.dimension),
                    ),
                });
            }
        };
        let amount = p.rounding.unwrap_or_default().apply(mul(q, price, "quantity")?);
        let label = p.description.unwrap_or_else(|| input.meter.clone());
        let suffix = value.map(|v| format!(" ({v})")).unwrap_or_default();
        Ok(vec![input.charge(
            format!("{label}{suffix}"),
            q,
            price,
            amount,
            format!("{source}: {q} × {price} = {amount} {}", input.currency),
        )])
    }
}

tollgate_sdk::export_rater_v4!(DimensionPrices);
