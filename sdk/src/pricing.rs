//! Pricing helpers: tiered prices and rounding, all in exact decimals.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;

/// One price tier: units up to `up_to` (inclusive; `None` = no upper bound)
/// cost `unit_price` each.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub up_to: Option<Decimal>,
    pub unit_price: Decimal,
}

/// How amounts are rounded: to `scale` decimal places with `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rounding {
    pub scale: u32,
    pub mode: RoundingMode,
}

impl Default for Rounding {
    /// Two decimal places, half away from zero (commercial rounding).
    fn default() -> Self {
        Rounding { scale: 2, mode: RoundingMode::HalfUp }
    }
}

/// Rounding modes finance asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingMode {
    /// Half away from zero: 2.345 → 2.35.
    HalfUp,
    /// Half to even (banker's): 2.345 → 2.34.
    HalfEven,
    /// Towards zero.
    Down,
    /// Away from zero.
    Up,
}

impl Rounding {
    pub fn apply(&self, d: Decimal) -> Decimal {
        let strategy = match self.mode {
            RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
            RoundingMode::Down => RoundingStrategy::ToZero,
            RoundingMode::Up => RoundingStrategy::AwayFromZero,
        };
        let mut r = d.round_dp_with_strategy(self.scale, strategy);
        // Always exactly `scale` places: 0 → 0.00, 3.8 → 3.80.
        r.rescale(self.scale);
        r
    }
}

/// Why a tier table is unusable; `index` is the offending tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierError {
    pub index: usize,
    pub message: String,
}

/// Checks a tier table: non-empty, bounds strictly increasing, only the last
/// tier unbounded, no negative prices.
pub fn validate_tiers(tiers: &[Tier]) -> Result<(), TierError> {
    if tiers.is_empty() {
        return Err(TierError { index: 0, message: "at least one tier is required".into() });
    }
    let mut previous = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        if t.unit_price.is_sign_negative() && !t.unit_price.is_zero() {
            return Err(TierError { index: i, message: "unit_price must not be negative".into() });
        }
        match t.up_to {
            Some(b) if b <= previous => {
                return Err(TierError {
                    index: i,
                    message: format!("up_to {b} must be greater than the previous bound {previous}"),
                });
            }
            Some(b) => previous = b,
            None if i + 1 != tiers.len() => {
                return Err(TierError { index: i, message: "only the last tier may be unbounded".into() });
            }
            None => {}
        }
    }
    Ok(())
}

/// The part of `quantity` that falls into one tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierSlice {
    pub index: usize,
    /// Lower bound (exclusive) and upper bound (inclusive, `None` = open).
    pub from: Decimal,
    pub to: Option<Decimal>,
    pub quantity: Decimal,
    pub unit_price: Decimal,
}

/// Splits `quantity` across graduated tiers: each tier prices only the units
/// inside its own band. Tiers must have passed [`validate_tiers`]. A quantity
/// beyond the last bounded tier is returned as the `Err` overflow amount.
pub fn graduated(quantity: Decimal, tiers: &[Tier]) -> Result<Vec<TierSlice>, Decimal> {
    let mut out = Vec::new();
    let mut from = Decimal::ZERO;
    for (index, t) in tiers.iter().enumerate() {
        if quantity <= from {
            break;
        }
        let top = match t.up_to {
            Some(b) => quantity.min(b),
            None => quantity,
        };
        out.push(TierSlice { index, from, to: t.up_to, quantity: top - from, unit_price: t.unit_price });
        match t.up_to {
            Some(b) => from = b,
            None => return Ok(out),
        }
    }
    if quantity > from { Err(quantity - from) } else { Ok(out) }
}

/// Volume pricing: the tier the whole `quantity` falls into (the first whose
/// bound it does not exceed). Tiers must have passed [`validate_tiers`]; a
/// quantity beyond the last bounded tier is returned as the `Err` overflow.
pub fn volume(quantity: Decimal, tiers: &[Tier]) -> Result<(usize, &Tier), Decimal> {
    for (i, t) in tiers.iter().enumerate() {
        match t.up_to {
            Some(b) if quantity <= b => return Ok((i, t)),
            Some(_) => {}
            None => return Ok((i, t)),
        }
    }
    let last = tiers.last().and_then(|t| t.up_to).unwrap_or(Decimal::ZERO);
    Err(quantity - last)
}

/// How many packages of `size` units cover `quantity` (rounding up); `None`
/// when `size` is not positive.
pub fn packages(quantity: Decimal, size: Decimal) -> Option<Decimal> {
    if size <= Decimal::ZERO {
        return None;
    }
    quantity.checked_div(size).map(|p| p.ceil())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn tiers() -> Vec<Tier> {
        vec![
            Tier { up_to: Some(d("1000")), unit_price: d("0.01") },
            Tier { up_to: Some(d("5000")), unit_price: d("0.008") },
            Tier { up_to: None, unit_price: d("0.005") },
        ]
    }

    #[test]
    fn splits_across_bands() {
        let s = graduated(d("6200.5"), &tiers()).unwrap();
        let q: Vec<_> = s.iter().map(|x| x.quantity).collect();
        assert_eq!(q, vec![d("1000"), d("4000"), d("1200.5")]);
    }

    #[test]
    fn zero_quantity_has_no_slice() {
        assert!(graduated(Decimal::ZERO, &tiers()).unwrap().is_empty());
    }

    #[test]
    fn bounded_table_reports_overflow() {
        let t = vec![Tier { up_to: Some(d("10")), unit_price: d("1") }];
        assert_eq!(graduated(d("12"), &t), Err(d("2")));
    }

    #[test]
    fn validation_names_the_tier() {
        let mut t = tiers();
        t[1].up_to = Some(d("900"));
        assert_eq!(validate_tiers(&t).unwrap_err().index, 1);
    }

    #[test]
    fn volume_prices_everything_at_the_reached_tier() {
        let t = tiers();
        assert_eq!(volume(d("1000"), &t).unwrap().0, 0);
        assert_eq!(volume(d("1000.001"), &t).unwrap().0, 1);
        assert_eq!(volume(d("99999"), &t).unwrap().0, 2);
        let bounded = vec![Tier { up_to: Some(d("10")), unit_price: d("1") }];
        assert_eq!(volume(d("12"), &bounded).unwrap_err(), d("2"));
    }

    #[test]
    fn packages_round_up() {
        assert_eq!(packages(d("2500"), d("1000")), Some(d("3")));
        assert_eq!(packages(d("3000"), d("1000")), Some(d("3")));
        assert_eq!(packages(d("0"), d("1000")), Some(d("0")));
        assert_eq!(packages(d("1"), d("0")), None);
    }

    #[test]
    fn rounding_modes() {
        let half_up = Rounding { scale: 2, mode: RoundingMode::HalfUp };
        let half_even = Rounding { scale: 2, mode: RoundingMode::HalfEven };
        assert_eq!(half_up.apply(d("2.345")), d("2.35"));
        assert_eq!(half_even.apply(d("2.345")), d("2.34"));
        assert_eq!(half_up.apply(Decimal::ZERO).to_string(), "0.00");
        assert_eq!(half_up.apply(d("3.8")).to_string(), "3.80");
    }
}
