//! Graduated-tier rater: each tier prices only the units inside its own band.
//!
//! Parameters (the contract line's `params`):
//!
//! ```json
//! {
//!   "tiers": [
//!     { "up_to": "1000", "unit_price": "0.01" },
//!     { "up_to": "5000", "unit_price": "0.008" },
//!     { "up_to": null,   "unit_price": "0.005" }
//!   ],
//!   "rounding": { "scale": 2, "mode": "half_up" },
//!   "description": "API calls"
//! }
//! ```
//!
//! Output: one charge line per tier the quantity reaches, each with
//! `amount = round(quantity × unit_price)`; an unused contract line (zero
//! quantity) yields no line.

use serde::Deserialize;
use tollgate_sdk::Decimal;
use tollgate_sdk::decimal::Text;
use tollgate_sdk::pricing::{self, Rounding, Tier};
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    tiers: Vec<Tier>,
    #[serde(default)]
    rounding: Option<Rounding>,
    #[serde(default)]
    description: Option<String>,
}

pub struct GraduatedTiers;

impl Rater for GraduatedTiers {
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        let params: Params = tollgate_sdk::parse_params(&input.params)?;
        pricing::validate_tiers(&params.tiers)
            .map_err(|e| PluginError::new("invalid-params", Some(&format!("params.tiers[{}]", e.index)), e.message))?;
        let rounding = params.rounding.unwrap_or_default();
        let quantity = input
            .quantity
            .to_decimal()
            .ok_or_else(|| PluginError::new("invalid-input", Some("quantity"), "scale above 28"))?;
        if quantity.is_sign_negative() && !quantity.is_zero() {
            return Err(PluginError::new("invalid-input", Some("quantity"), format!("negative quantity {quantity}")));
        }
        let slices = pricing::graduated(quantity, &params.tiers).map_err(|over| {
            PluginError::new(
                "quantity-beyond-tiers",
                Some("params.tiers"),
                format!("{over} units exceed the last tier; add an unbounded tier"),
            )
        })?;
        let label = params.description.unwrap_or_else(|| input.meter.clone());
        slices
            .into_iter()
            .map(|s| {
                let amount = rounding.apply(
                    s.quantity
                        .checked_mul(s.unit_price)
                        .ok_or_else(|| PluginError::new("overflow", Some("quantity"), "amount overflows"))?,
                );
                // Built with `Text` rather than `format!`: cheaper per call.
                let tier = match s.to {
                    Some(to) => Text::new().s("tier ").n(s.index as u64 + 1).s(" (").d(s.from).s("–").d(to).s(")"),
                    None => Text::new().s("tier ").n(s.index as u64 + 1).s(" (over ").d(s.from).s(")"),
                }
                .done();
                Ok(ChargeLine {
                    sku: input.sku.clone(),
                    description: Text::new().s(&label).s(", ").s(&tier).done(),
                    quantity: s.quantity.into(),
                    unit_price: s.unit_price.into(),
                    amount: amount.into(),
                    explain: Text::new()
                        .s(&tier)
                        .s(": ")
                        .d(s.quantity)
                        .s(" × ")
                        .d(s.unit_price)
                        .s(" = ")
                        .d(amount)
                        .s(" ")
                        .s(&input.currency)
                        .done(),
                })
            })
            .collect::<Result<Vec<_>, PluginError>>()
            .map(|lines| lines.into_iter().filter(|l: &ChargeLine| !is_zero(&l.quantity)).collect())
    }
}

fn is_zero(d: &tollgate_sdk::rater_v4::WitDecimal) -> bool {
    d.to_decimal().is_some_and(|d: Decimal| d.is_zero())
}

tollgate_sdk::export_rater_v4!(GraduatedTiers);
