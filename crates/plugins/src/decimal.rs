//! The WIT `decimal` record of every interface version, to and from exact
//! decimals.

use crate::PluginError;
use crate::bindings::{posting as pwit, rating as rwit, types as wit};

/// The WIT `decimal` record, in every version of the interface (its shape
/// never changed): converts to and from exact decimals.
pub trait WitDecimal: Sized {
    fn from_parts(p: tollgate_sdk::decimal::Parts) -> Self;
    fn parts(&self) -> tollgate_sdk::decimal::Parts;
    /// The same value as another version's decimal.
    fn convert<D: WitDecimal>(&self) -> D {
        D::from_parts(self.parts())
    }
}

macro_rules! wit_decimal {
    ($($t:ty),*) => {$(
        impl WitDecimal for $t {
            fn from_parts(p: tollgate_sdk::decimal::Parts) -> Self {
                Self { mantissa_low: p.mantissa_low, mantissa_high: p.mantissa_high, negative: p.negative, scale: p.scale }
            }
            fn parts(&self) -> tollgate_sdk::decimal::Parts {
                tollgate_sdk::decimal::Parts {
                    mantissa_low: self.mantissa_low,
                    mantissa_high: self.mantissa_high,
                    negative: self.negative,
                    scale: self.scale,
                }
            }
        }
    )*};
}
wit_decimal!(wit::Decimal, rwit::Decimal, pwit::Decimal);

/// Exact decimal → WIT decimal (of whichever version the context needs).
pub fn to_wit<D: WitDecimal>(d: rust_decimal::Decimal) -> D {
    D::from_parts(tollgate_sdk::decimal::to_parts(d))
}

/// The exact value of a WIT decimal coming out of a plugin; an
/// `invalid-output` error naming `field` when its scale is above 28.
pub fn from_wit(d: &impl WitDecimal, field: &str) -> Result<rust_decimal::Decimal, PluginError> {
    let p = d.parts();
    let scale = p.scale;
    tollgate_sdk::decimal::from_parts(p).ok_or_else(|| PluginError::InvalidOutput {
        field: field.to_string(),
        message: format!("decimal scale {scale} is above 28"),
    })
}
