//! Volume-tier rater: the whole quantity is priced at the unit price of the
//! tier it reaches (unlike graduated tiers, where each band has its price).
//!
//! Parameters: `{"tiers": [{"up_to": "1000", "unit_price": "0.010"}, ...,
//! {"up_to": null, "unit_price": "0.006"}], "rounding": {"scale": 2, "mode":
//! "half_up"}, "description": "API calls"}`. One line; none for zero usage.

use serde::Deserialize;
use tollgate_sdk::pricing::{self, Rounding, Tier};
use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage, mul};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    tiers: Vec<Tier>,
    #[serde(default)]
    rounding: Option<Rounding>,
    #[serde(default)]
    description: Option<String>,
}

pub struct VolumeTiers;

impl Rater for VolumeTiers {
    fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
        let p: Params = tollgate_sdk::parse_params(&input.params)?;
        pricing::validate_tiers(&p.tiers)
            .map_err(|e| PluginError::new("invalid-params", Some(&format!("params.tiers[{}]", e.index)), e.message))?;
        let q = input.quantity_decimal()?;
        if q.is_zero() {
            return Ok(Vec::new());
        }
        let (i, tier) = pricing::volume(q, &p.tiers).map_err(|over| {
            PluginError::new(
                "quantity-beyond-tiers",
                Some("params.tiers"),
                format!("{over} units exceed the last tier"),
            )
        })?;
        let amount = p.rounding.unwrap_or_default().apply(mul(q, tier.unit_price, "quantity")?);
        let label = p.description.unwrap_or_else(|| input.meter.clone());
        let reach = tier.up_to.map(|b| format!("up to {b}")).unwrap_or_else(|| "unbounded".into());
        Ok(vec![input.charge(
            format!("{label} (volume tier {})", i + 1),
            q,
            tier.unit_price,
            amount,
            format!(
                "{q} units reach tier {} ({reach}): {q} × {} = {amount} {}",
                i + 1,
                tier.unit_price,
                input.currency
            ),
        )])
    }
}

tollgate_sdk::export_rater_v4!(VolumeTiers);
