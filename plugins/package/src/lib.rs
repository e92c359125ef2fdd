//! Package rater: usage is sold in packages of N units; a started package is
//! a whole package (rounding up).
//!
//! Parameters: `{"package_size": "1000", "package_price": "5.00",
//! "description": "SMS bundles"}`. One line (packages × package price); none
//! for zero usage.

use serde::Deserialize;
use tollgate_sdk::Decimal;
use tollgate_sdk::pricing;
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage, mul};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    package_size: Decimal,
    package_price: Decimal,
    #[serde(default)]
    description: Option<String>,
}

pub struct Package;

impl Rater for Package {
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        let p: Params = tollgate_sdk::parse_params(&input.params)?;
        if p.package_price.is_sign_negative() {
            return Err(PluginError::new("invalid-params", Some("params.package_price"), "must not be negative"));
        }
        let q = input.quantity_decimal()?;
        let n = pricing::packages(q, p.package_size).ok_or_else(|| {
            PluginError::new(
                "invalid-params",
                Some("params.package_size"),
                format!("{} must be positive", p.package_size),
            )
        })?;
        if n.is_zero() {
            return Ok(Vec::new());
        }
        let amount = mul(n, p.package_price, "quantity")?;
        let label = p.description.unwrap_or_else(|| input.meter.clone());
        Ok(vec![input.charge(
            format!("{label} ({n} × {} units)", p.package_size),
            n,
            p.package_price,
            amount,
            format!(
                "{q} units in packages of {}: {n} packages (rounded up) × {} = {amount} {}",
                p.package_size, p.package_price, input.currency
            ),
        )])
    }
}

tollgate_sdk::export_rater_v4!(Package);
