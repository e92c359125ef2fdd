//! Exact decimal rules for money and quantities, shared by every stage.
//!
//! Values are `rust_decimal::Decimal` (96-bit magnitude, scale 0..=28), never
//! floats. Input quantities are limited so that sums stay exact: at most
//! [`MAX_SCALE`] decimal places and [`MAX_INTEGER_DIGITS`] digits before the
//! point. Additions are checked: a sum that could not be held exactly is an
//! error, never a silent rounding.

use rust_decimal::Decimal;

/// Most decimal places accepted in an input quantity.
pub const MAX_SCALE: u32 = 12;
/// Most digits before the decimal point in an input quantity.
pub const MAX_INTEGER_DIGITS: u32 = 15;

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("empty; expected a decimal string such as \"12.5\"")]
    Empty,
    #[error("{0:?} is not a decimal number (digits, one optional '.', optional leading '-'; no exponent)")]
    Syntax(String),
    #[error("{value} has {scale} decimal places; at most {MAX_SCALE} are accepted")]
    TooManyDecimals { value: String, scale: u32 },
    #[error("{0} has more than {MAX_INTEGER_DIGITS} digits before the decimal point")]
    TooLarge(String),
    #[error("{0} is negative; quantities must be zero or more")]
    Negative(String),
    #[error("sum overflows exact decimal range")]
    Overflow,
}

/// Parses a non-negative quantity exactly, within the documented limits.
pub fn parse_quantity(s: &str) -> Result<Decimal, DecimalError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DecimalError::Empty);
    }
    let plain = t.strip_prefix('-').unwrap_or(t);
    let mut parts = plain.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_none_or(str::is_empty)) || !digits_ok(int) || !frac.is_none_or(digits_ok) {
        return Err(DecimalError::Syntax(t.to_string()));
    }
    let scale = frac.map_or(0, |f| f.len() as u32);
    if scale > MAX_SCALE {
        return Err(DecimalError::TooManyDecimals { value: t.to_string(), scale });
    }
    if int.trim_start_matches('0').len() as u32 > MAX_INTEGER_DIGITS {
        return Err(DecimalError::TooLarge(t.to_string()));
    }
    let d = Decimal::from_str_exact(t).map_err(|_| DecimalError::Syntax(t.to_string()))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(DecimalError::Negative(t.to_string()));
    }
    Ok(d)
}

/// `a + b`, refusing any result that is not exact.
pub fn exact_add(a: Decimal, b: Decimal) -> Result<Decimal, DecimalError> {
    let sum = a.checked_add(b).ok_or(DecimalError::Overflow)?;
    // rust_decimal keeps the larger scale unless it had to round to fit;
    // adding zero returns the other operand as it is (never rounded).
    if !a.is_zero() && !b.is_zero() && sum.scale() < a.scale().max(b.scale()) {
        return Err(DecimalError::Overflow);
    }
    Ok(sum)
}

/// `a - b`, refusing any result that is not exact (checked by adding `b`
/// back: rust_decimal may drop trailing zeros of a zero result).
pub fn exact_sub(a: Decimal, b: Decimal) -> Result<Decimal, DecimalError> {
    let diff = a.checked_sub(b).ok_or(DecimalError::Overflow)?;
    if diff.checked_add(b) != Some(a) {
        return Err(DecimalError::Overflow);
    }
    Ok(diff)
}

/// Sums exactly; an error if any step would round.
pub fn exact_sum<I: IntoIterator<Item = Decimal>>(values: I) -> Result<Decimal, DecimalError> {
    values.into_iter().try_fold(Decimal::ZERO, exact_add)
}

/// An exact, non-negative quantity as a whole number of 10^-[`MAX_SCALE`]
/// (every accepted quantity is one) in 256 bits: the value of a window or of
/// a total over windows. No sequence of accepted events can overflow it: an
/// event adds less than 10^27 units (15 + 12 digits), a window counts at most
/// 2^64 events, and 2^64 · 10^27 < 2^155. It converts to a [`Decimal`] (what
/// rating takes) only when the value fits one exactly; it reads back
/// normalised (`8633.628`, never `8633.62800000000`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(ethnum::U256);

/// 10^MAX_SCALE: the units in one.
const UNITS_PER_ONE: u128 = 1_000_000_000_000;

impl Quantity {
    pub const ZERO: Quantity = Quantity(ethnum::U256::ZERO);
    pub const ONE: Quantity = Quantity(ethnum::U256::new(UNITS_PER_ONE));

    /// A non-negative decimal of at most [`MAX_SCALE`] places, exactly.
    pub fn from_decimal(d: Decimal) -> Result<Quantity, DecimalError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(DecimalError::Negative(d.to_string()));
        }
        let d = if d.scale() > MAX_SCALE { d.normalize() } else { d };
        if d.scale() > MAX_SCALE {
            return Err(DecimalError::TooManyDecimals { value: d.to_string(), scale: d.scale() });
        }
        let mantissa = ethnum::U256::new(d.mantissa().unsigned_abs());
        Ok(Quantity(mantissa * ethnum::U256::new(10u128.pow(MAX_SCALE - d.scale()))))
    }

    /// A count (of events, of distinct values).
    pub fn from_count(n: u64) -> Quantity {
        Quantity(ethnum::U256::new(u128::from(n) * UNITS_PER_ONE))
    }

    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_add(other.0).map(Quantity)
    }

    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_sub(other.0).map(Quantity)
    }

    pub fn is_zero(self) -> bool {
        self.0 == ethnum::U256::ZERO
    }

    /// The value as a normalised decimal, or `None` when a [`Decimal`] (96
    /// bits of digits) cannot hold it exactly.
    pub fn to_decimal(self) -> Option<Decimal> {
        let ten = ethnum::U256::new(10);
        let (mut units, mut scale) = (self.0, MAX_SCALE);
        while scale > 0 && units % ten == ethnum::U256::ZERO {
            units /= ten;
            scale -= 1;
        }
        let mantissa = i128::try_from(units).ok().filter(|m| *m < 1i128 << 96)?;
        Some(Decimal::from_i128_with_scale(mantissa, scale))
    }

    /// Big-endian bytes, for storage.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Quantity {
        Quantity(ethnum::U256::from_be_bytes(bytes))
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one = ethnum::U256::new(UNITS_PER_ONE);
        let (int, frac) = (self.0 / one, (self.0 % one).as_u128());
        if frac == 0 {
            return write!(f, "{int}");
        }
        let digits = format!("{frac:012}");
        write!(f, "{int}.{}", digits.trim_end_matches('0'))
    }
}

impl std::str::FromStr for Quantity {
    type Err = DecimalError;
    /// Digits, an optional point and at most [`MAX_SCALE`] decimals, of any
    /// size a [`Quantity`] holds.
    fn from_str(s: &str) -> Result<Quantity, DecimalError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DecimalError::Empty);
        }
        if t.starts_with('-') {
            return Err(DecimalError::Negative(t.to_string()));
        }
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return Err(DecimalError::Syntax(t.to_string()));
        }
        if frac.len() as u32 > MAX_SCALE {
            return Err(DecimalError::TooManyDecimals { value: t.to_string(), scale: frac.len() as u32 });
        }
        let padded = format!("{}{frac:0<12}", if int.is_empty() { "0" } else { int });
        ethnum::U256::from_str_radix(&padded, 10).map(Quantity).map_err(|_| DecimalError::TooLarge(t.to_string()))
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals() {
        assert_eq!(parse_quantity("12.5").unwrap().to_string(), "12.5");
        assert_eq!(parse_quantity("0.000000000001").unwrap().to_string(), "0.000000000001");
        assert_eq!(parse_quantity("999999999999999.999999999999").unwrap().scale(), 12);
        assert_eq!(parse_quantity(".5").unwrap().to_string(), "0.5");
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        assert!(matches!(parse_quantity(""), Err(DecimalError::Empty)));
        assert!(matches!(parse_quantity("1e3"), Err(DecimalError::Syntax(_))));
        assert!(matches!(parse_quantity("1.2.3"), Err(DecimalError::Syntax(_))));
        assert!(matches!(parse_quantity("NaN"), Err(DecimalError::Syntax(_))));
        assert!(matches!(parse_quantity("0.0000000000001"), Err(DecimalError::TooManyDecimals { scale: 13, .. })));
        assert!(matches!(parse_quantity("1000000000000000"), Err(DecimalError::TooLarge(_))));
        assert!(matches!(parse_quantity("-1"), Err(DecimalError::Negative(_))));
    }

    #[test]
    fn sums_are_exact_or_refused() {
        let a = parse_quantity("0.1").unwrap();
        let b = parse_quantity("0.2").unwrap();
        assert_eq!(exact_add(a, b).unwrap().to_string(), "0.3");
        assert_eq!(exact_sub(Decimal::from_str_exact("6.5").unwrap(), Decimal::from(5)).unwrap().to_string(), "1.5");
        let x = Decimal::from_str_exact("1.5").unwrap();
        assert!(exact_sub(x, x).unwrap().is_zero());
        // Zero with a scale plus an integer: exact, whatever scale comes back.
        assert_eq!(exact_add(exact_sub(x, x).unwrap(), Decimal::from(2)).unwrap(), Decimal::from(2));
        let big = Decimal::MAX;
        assert_eq!(exact_add(big, Decimal::ONE), Err(DecimalError::Overflow));
        // A sum that only fits by dropping decimals is refused, not rounded.
        let x = Decimal::from_i128_with_scale(79_228_162_514_264_337_593_543_950_335, 4);
        let y = Decimal::from_str_exact("0.0001").unwrap();
        assert!(x.checked_add(y).is_some(), "rust_decimal itself would round this sum");
        assert_eq!(exact_add(x, y), Err(DecimalError::Overflow));
        // The largest sums that do fit stay exact.
        let x = Decimal::from_str_exact("79228162514264337593543950.33").unwrap();
        assert_eq!(
            exact_add(x, Decimal::from_str_exact("1.01").unwrap()).unwrap().to_string(),
            "79228162514264337593543951.34"
        );
    }

    #[test]
    fn quantities_hold_every_sum_of_accepted_values_and_read_back_normalised() {
        let max = Quantity::from_decimal(parse_quantity("999999999999999.999999999999").unwrap()).unwrap();
        // 99 of the largest quantity: beyond a Decimal (29 digits), exact here.
        let sum = (0..99).try_fold(Quantity::ZERO, |s, _| s.checked_add(max)).unwrap();
        assert_eq!(sum.to_string(), "98999999999999999.999999999901");
        assert_eq!(sum.to_decimal(), None, "a Decimal cannot hold it exactly");
        // 100 of them normalise to 28 digits, which a Decimal holds.
        let hundred = sum.checked_add(max).unwrap();
        assert_eq!(hundred.to_decimal().unwrap().to_string(), "99999999999999999.9999999999");
        assert_eq!(sum.to_string().parse::<Quantity>().unwrap(), sum);
        assert_eq!(Quantity::from_bytes(sum.to_bytes()), sum);
        // Back down: exact, and a Decimal again.
        let back = (0..20).try_fold(sum, |s, _| s.checked_sub(max)).unwrap();
        assert_eq!(back.to_decimal().unwrap().to_string(), "78999999999999999.999999999921");
        // Normalised however it was written or accumulated.
        let a = Quantity::from_decimal(Decimal::from_str_exact("8633.62800000000").unwrap()).unwrap();
        assert_eq!(a.to_string(), "8633.628");
        assert_eq!(a.to_decimal().unwrap().to_string(), "8633.628");
        assert_eq!(Quantity::from_count(3).to_string(), "3");
        assert_eq!(Quantity::ZERO.to_string(), "0");
        assert_eq!("0.5".parse::<Quantity>().unwrap().to_string(), "0.5");
        assert_eq!(".5".parse::<Quantity>().unwrap().to_string(), "0.5");
        assert!(Quantity::ZERO.checked_sub(Quantity::ONE).is_none());
        // Integers a Decimal holds at scale 0 convert, even with 29 digits.
        let big = "79228162514264337593543950335".parse::<Quantity>().unwrap();
        assert_eq!(big.to_decimal(), Some(Decimal::MAX));
        for bad in ["", "-1", "1.0000000000001", "1e3", "1.2.3", "."] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?}");
        }
        assert!(Quantity::from_decimal(Decimal::from_str_exact("-1").unwrap()).is_err());
    }
}
