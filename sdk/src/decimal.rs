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

/// Appends `d` exactly as its `Display` writes it (`-12.50`, `0.005`), but
/// without `core::fmt`, which is comparatively slow inside a plugin that
/// builds explanations on every call. See also [`Text`].
pub fn push_decimal(out: &mut String, d: Decimal) {
    const E19: u128 = 10_000_000_000_000_000_000;
    /// Writes `n`'s digits right to left ending at `buf[end]`, at least `min` of them.
    fn digits(buf: &mut [u8; 40], mut end: usize, mut n: u64, min: usize) -> usize {
        let stop = end - min;
        while n > 0 || end > stop {
            end -= 1;
            buf[end] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        end
    }
    let m = d.mantissa().unsigned_abs();
    let mut buf = [0u8; 40];
    // One 128-bit division at most (none for amounts below 10^19, i.e.
    // nearly all); the rest is 64-bit arithmetic.
    let (high, low) = if m < E19 { (0, m as u64) } else { ((m / E19) as u64, (m % E19) as u64) };
    let start = if high > 0 {
        let mid = digits(&mut buf, 40, low, 19);
        digits(&mut buf, mid, high, 0)
    } else {
        digits(&mut buf, 40, low, 1)
    };
    let digits = std::str::from_utf8(&buf[start..]).unwrap_or_default();
    let scale = d.scale() as usize;
    if d.is_sign_negative() {
        out.push('-');
    }
    if digits.len() <= scale {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        if scale > 0 {
            out.push('.');
            out.push_str(frac);
        }
    }
}

/// A string built piece by piece without `core::fmt`: for explanations and
/// descriptions written on every rating call.
///
/// ```
/// use tollgate_sdk::{Decimal, decimal::Text};
/// let d = |s: &str| s.parse::<Decimal>().unwrap();
/// let t = Text::new().n(2).s(" × ").d(d("0.010")).s(" = ").d(d("0.020")).done();
/// assert_eq!(t, "2 × 0.010 = 0.020");
/// ```
#[derive(Debug, Default, Clone)]
pub struct Text(String);

impl Text {
    pub fn new() -> Text {
        Text(String::with_capacity(64))
    }
    /// Appends a string.
    pub fn s(mut self, s: &str) -> Text {
        self.0.push_str(s);
        self
    }
    /// Appends a decimal as `Display` writes it.
    pub fn d(mut self, d: Decimal) -> Text {
        push_decimal(&mut self.0, d);
        self
    }
    /// Appends a whole number.
    pub fn n(self, n: u64) -> Text {
        self.d(Decimal::from(n))
    }
    pub fn done(self) -> String {
        self.0
    }
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
    fn push_decimal_writes_what_display_writes() {
        let mut cases: Vec<Decimal> = [
            "0",
            "1",
            "-1",
            "0.005",
            "-0.005",
            "10",
            "1000.125",
            "0.0000000000000000000000000001",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "7922816251426433759354395033.5",
            "10000000000000000000",
            "9999999999999999999",
            "12345678901234567890123",
            "100.00",
            "0.10",
        ]
        .iter()
        .map(|s| Decimal::from_str(s).unwrap())
        .collect();
        let mut x = 1u128;
        for scale in 0..=28 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) % (1 << 96);
            cases.push(Decimal::from_i128_with_scale(x as i128, scale));
            cases.push(Decimal::from_i128_with_scale(-(x as i128) >> 7, scale));
        }
        for d in cases {
            let mut s = String::new();
            push_decimal(&mut s, d);
            assert_eq!(s, d.to_string(), "{d:?}");
        }
    }

    #[test]
    fn refuses_scale_above_28() {
        let p = Parts { mantissa_low: 1, mantissa_high: 0, negative: false, scale: 29 };
        assert_eq!(from_parts(p), None);
    }
}
