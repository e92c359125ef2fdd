//! The WIT `decimal` record ↔ `rust_decimal::Decimal`, losslessly.
//!
//! The record holds a 96-bit magnitude (`mantissa-high:mantissa-low`), a sign
//! and a scale of 0..=28, which is exactly `Decimal`'s range; conversion is
//! therefore exact both ways, and only a scale above 28 can fail.

use rust_decimal::Decimal;

/// The parts of a decimal as they cross the WIT boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub mantissa_low: u64,
    pub mantissa_high: u32,
    pub negative: bool,
    pub scale: u8,
}

/// Splits a decimal into its boundary parts.
pub fn to_parts(d: Decimal) -> Parts {
    let m = d.mantissa().unsigned_abs();
    Parts {
        mantissa_low: m as u64,
        mantissa_high: (m >> 64) as u32,
        negative: d.is_sign_negative() && !d.is_zero(),
        scale: d.scale() as u8,
    }
}

/// Rebuilds a decimal from boundary parts; `None` when the scale is above 28.
pub fn from_parts(p: Parts) -> Option<Decimal> {
    if p.scale > 28 {
        return None;
    }
    let m = ((p.mantissa_high as i128) << 64) | p.mantissa_low as i128;
    let m = if p.negative { -m } else { m };
    Decimal::try_from_i128_with_scale(m, p.scale as u32).ok()
}

/// Implements conversions for a generated WIT `decimal` type.
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_wit_decimal {
    ($ty:path) => {
        impl From<$crate::Decimal> for $ty {
            fn from(d: $crate::Decimal) -> Self {
                let p = $crate::decimal::to_parts(d);
                Self {
                    mantissa_low: p.mantissa_low,
                    mantissa_high: p.mantissa_high,
                    negative: p.negative,
                    scale: p.scale,
                }
            }
        }
        impl $ty {
            /// The exact value; `None` only when the scale is above 28.
            pub fn to_decimal(&self) -> Option<$crate::Decimal> {
                $crate::decimal::from_parts($crate::decimal::Parts {
                    mantissa_low: self.mantissa_low,
                    mantissa_high: self.mantissa_high,
                    negative: self.negative,
                    scale: self.scale,
                })
            }
        }
    };
}
#[doc(hidden)]
pub use __impl_wit_decimal as impl_wit_decimal;

/// Implements constructors for a generated WIT `plugin-error` type.
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_plugin_error {
    ($ty:path) => {
        impl $ty {
            /// An error with a stable `code`, the offending `field` and a message.
            pub fn new(code: &str, field: Option<&str>, message: impl Into<String>) -> Self {
                Self { code: code.to_string(), field: field.map(str::to_string), message: message.into() }
            }
        }
        impl From<$crate::ParamsError> for $ty {
            fn from(e: $crate::ParamsError) -> Self {
                Self::new("invalid-params", Some("params"), e.message)
            }
        }
    };
}
#[doc(hidden)]
pub use __impl_plugin_error as impl_plugin_error;

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn round_trips_extremes() {
        for s in [
            "0",
            "-0.000",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "0.0000000000000000000000000001",
            "12345.678900",
        ] {
            let d = Decimal::from_str(s).unwrap();
            let back = from_parts(to_parts(d)).unwrap();
            assert_eq!(back, d, "{s}");
            assert_eq!(back.scale(), d.scale(), "{s} keeps its scale");
        }
    }

    #[test]
    fn refuses_scale_above_28() {
        let p = Parts { mantissa_low: 1, mantissa_high: 0, negative: false, scale: 29 };
        assert_eq!(from_parts(p), None);
    }
}
