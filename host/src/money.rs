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
}
