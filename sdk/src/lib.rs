//! Guest SDK for Tollgate plugins.
//!
//! A plugin is a WebAssembly component that implements one world of the
//! `tollgate:plugin` WIT package (`wit/`, one frozen folder per version; see
//! `wit/README.md`). This crate gives it the bindings, exact decimal
//! conversion and pricing helpers, so the plugin itself is business logic
//! only. Enable the feature of the world you implement — `rater-v0-4`
//! (0.4.0, the newest rater: rated in batches, sees the customer's other
//! charges), `rater-v0-2` (0.2.0), `rater` (0.1.0, deprecated: still runs,
//! no longer accepted for upload), `erp-mapper` (0.1.0) or `erp-mapper-v0-3`
//! (0.3.0, posting in several requests) — and export your type:
//!
//! ```ignore
//! use tollgate_sdk::rater_v4::{ChargeLine, PluginError, Rater, Usage};
//! struct MyRater;
//! impl Rater for MyRater {
//!     fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError> {
//!         // One line at a flat 0.01 per unit, exact.
//!         let q = input.quantity_decimal()?;
//!         let price = tollgate_sdk::Decimal::new(1, 2);
//!         let amount = tollgate_sdk::rater_v4::mul(q, price, "quantity")?;
//!         Ok(vec![input.charge("usage", q, price, amount, format!("{q} × {price}"))])
//!     }
//! }
//! tollgate_sdk::export_rater_v4!(MyRater);
//! ```
//!
//! A step-by-step guide with a complete example is `sdk/README.md`.
//!
//! Layout: `decimal` (the WIT decimal ↔ `rust_decimal::Decimal`), `pricing`
//! (tiers and rounding), `rater` / `rater_v2` / `rater_v4` / `mapper` / `mapper_v3` (generated bindings,
//! one per world and version, each with `PluginError::new` and `Usage`
//! helpers).
//!
//! Plugins are built for `wasm32-unknown-unknown` and made components by
//! `cargo xtask build-plugins`; they import nothing, so rating is a pure,
//! replayable function of its input.

pub mod decimal;
pub mod json;
pub mod pricing;

#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
pub mod alloc;

#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
#[global_allocator]
static ALLOCATOR: alloc::Bump = alloc::Bump;

pub use rust_decimal::Decimal;
pub use rust_decimal::RoundingStrategy;

/// Helpers on a rater world's `Usage` and `ChargeLine` (the same in every
/// version of the interface).
#[cfg(any(feature = "rater", feature = "rater-v0-2", feature = "rater-v0-4"))]
macro_rules! usage_helpers {
    () => {
        impl Usage {
            /// The period's quantity, exact; an error if it is negative.
            pub fn quantity_decimal(&self) -> Result<crate::Decimal, PluginError> {
                let q = self
                    .quantity
                    .to_decimal()
                    .ok_or_else(|| PluginError::new("invalid-input", Some("quantity"), "decimal scale above 28"))?;
                if q.is_sign_negative() && !q.is_zero() {
                    return Err(PluginError::new("invalid-input", Some("quantity"), format!("negative quantity {q}")));
                }
                Ok(q)
            }

            /// The value of a dimension of this usage.
            pub fn dimension(&self, key: &str) -> Option<&str> {
                self.dimensions.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
            }

            /// A charge line for this usage's SKU.
            pub fn charge(
                &self,
                description: impl Into<String>,
                quantity: crate::Decimal,
                unit_price: crate::Decimal,
                amount: crate::Decimal,
                explain: impl Into<String>,
            ) -> ChargeLine {
                ChargeLine {
                    sku: self.sku.clone(),
                    description: description.into(),
                    quantity: quantity.into(),
                    unit_price: unit_price.into(),
                    amount: amount.into(),
                    explain: explain.into(),
                }
            }
        }

        /// `a × b`, or an `overflow` error naming `field`.
        pub fn mul(a: crate::Decimal, b: crate::Decimal, field: &str) -> Result<crate::Decimal, PluginError> {
            a.checked_mul(b).ok_or_else(|| PluginError::new("overflow", Some(field), format!("{a} × {b} overflows")))
        }
    };
}

/// Helpers on `RelatedCharge` (rater 0.2.0 and later).
#[cfg(any(feature = "rater-v0-2", feature = "rater-v0-4"))]
macro_rules! related_helpers {
    () => {
        impl RelatedCharge {
            /// The charge's amount, exact.
            pub fn amount_decimal(&self) -> Result<crate::Decimal, PluginError> {
                self.amount.to_decimal().ok_or_else(|| {
                    PluginError::new(
                        "invalid-input",
                        Some(&format!("related[{}].amount", self.contract_line)),
                        "decimal scale above 28",
                    )
                })
            }
        }
    };
}

/// Bindings of the `rater` world, interface 0.1.0 (`wit/since_v0.1.0`).
#[cfg(feature = "rater")]
pub mod rater {
    wit_bindgen::generate!({
        world: "rater",
        path: "../wit/since_v0.1.0",
        default_bindings_module: "tollgate_sdk::rater",
        pub_export_macro: true,
        export_macro_name: "export_rater",
    });
    crate::decimal::impl_wit_decimal!(tollgate::plugin::types::Decimal);
    crate::decimal::impl_plugin_error!(tollgate::plugin::types::PluginError);
    pub use tollgate::plugin::types::Decimal as WitDecimal;

    usage_helpers!();
}

/// Bindings of the `rater` world, interface 0.2.0 (`wit/since_v0.2.0`): the
/// usage also carries `related`, the charges of the customer's other
/// contract lines rated before this one in the same period.
#[cfg(feature = "rater-v0-2")]
pub mod rater_v2 {
    wit_bindgen::generate!({
        world: "rater",
        path: "../wit/since_v0.2.0",
        default_bindings_module: "tollgate_sdk::rater_v2",
        pub_export_macro: true,
        export_macro_name: "export_rater_v2",
    });
    crate::decimal::impl_wit_decimal!(tollgate::plugin::types::Decimal);
    crate::decimal::impl_plugin_error!(tollgate::plugin::types::PluginError);
    pub use exports::tollgate::plugin::rating::Guest;
    pub use tollgate::plugin::types::{ChargeLine, Decimal as WitDecimal, PluginError, RelatedCharge, Usage};

    usage_helpers!();
    related_helpers!();
}

/// Bindings of the `rater` world, interface 0.4.0 (`wit/since_v0.4.0`): the
/// types of 0.2.0, rated in batches. A plugin implements [`rater_v4::Rater`]
/// (one usage at a time) and exports it with [`export_rater_v4!`], which
/// answers a batch by rating each input on its own.
#[cfg(feature = "rater-v0-4")]
pub mod rater_v4 {
    wit_bindgen::generate!({
        world: "rater",
        path: "../wit/since_v0.4.0",
        default_bindings_module: "tollgate_sdk::rater_v4",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
    });
    crate::decimal::impl_wit_decimal!(tollgate::plugin::types::Decimal);
    crate::decimal::impl_plugin_error!(tollgate::plugin::types::PluginError);
    pub use tollgate::plugin::types::{ChargeLine, Decimal as WitDecimal, PluginError, RelatedCharge, Usage};

    usage_helpers!();
    related_helpers!();

    /// A pricing rule: one usage (with its related charges) in, charge lines out.
    pub trait Rater {
        fn rate(input: Usage) -> Result<Vec<ChargeLine>, PluginError>;
    }

    /// A batch answered input by input: what [`export_rater_v4!`] exports.
    /// Each result depends on its own input only, as the interface requires.
    pub fn rate_each<R: Rater>(inputs: Vec<Usage>) -> Vec<Result<Vec<ChargeLine>, PluginError>> {
        inputs.into_iter().map(R::rate).collect()
    }
}

/// Exports a [`rater_v4::Rater`] as the component's `rater@0.4.0` world.
/// Only a WebAssembly build exports anything, so the same crate also links
/// natively (as the benchmarks and tests do with bundled rules).
#[cfg(feature = "rater-v0-4")]
#[macro_export]
macro_rules! export_rater_v4 {
    ($rater:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::rater_v4::exports::tollgate::plugin::rating::Guest for Export {
                fn rate_batch(
                    inputs: ::std::vec::Vec<$crate::rater_v4::Usage>,
                ) -> ::std::vec::Vec<
                    ::core::result::Result<
                        ::std::vec::Vec<$crate::rater_v4::ChargeLine>,
                        $crate::rater_v4::PluginError,
                    >,
                > {
                    $crate::rater_v4::rate_each::<$rater>(inputs)
                }
            }
    $crate::rater_v4::export_bindings!(Export with_types_in $crate::rater_v4);
        };
    };
}

/// Helpers of an `erp-mapper` world (the same in every version); `$outcome`
/// is the world's type for what an answer means.
#[cfg(any(feature = "erp-mapper", feature = "erp-mapper-v0-3"))]
macro_rules! mapper_helpers {
    ($outcome:ident) => {
        /// A target setting from the gateway's configuration.
        pub fn setting<'a>(target: &'a TargetConfig, key: &str) -> Option<&'a str> {
            target.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
        }

        /// A response header, by name in any case.
        pub fn header<'a>(response: &'a ErpResponse, name: &str) -> Option<&'a str> {
            response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        /// An exact decimal of the document, or an error naming `field`.
        pub fn exact(d: &WitDecimal, field: &str) -> Result<crate::Decimal, PluginError> {
            d.to_decimal().ok_or_else(|| PluginError::new("invalid-input", Some(field), "decimal scale above 28"))
        }

        /// An exact decimal as a JSON number token (for ERPs that take numbers),
        /// written from its digits, never through a float.
        pub fn json_number(d: crate::Decimal) -> Box<serde_json::value::RawValue> {
            serde_json::value::RawValue::from_string(d.to_string()).expect("a decimal's digits are a JSON number")
        }

        /// A line for an ERP that computes line amounts itself (quantity × unit
        /// price): `(quantity, unit price, description)`. A line whose amount is
        /// exactly that goes as it is; a line whose rule rounded becomes one unit
        /// at its amount, the real quantity and price in the description, so the
        /// ERP's total equals the document's to the cent.
        pub fn priced_line(
            line: &DocumentLine,
            index: usize,
        ) -> Result<(crate::Decimal, crate::Decimal, String), PluginError> {
            let field = |name: &str| format!("lines[{index}].{name}");
            let q = exact(&line.quantity, &field("quantity"))?;
            let p = exact(&line.unit_price, &field("unit_price"))?;
            let a = exact(&line.amount, &field("amount"))?;
            Ok(match q.checked_mul(p) {
                Some(x) if x == a => (q, p, line.description.clone()),
                _ => (crate::Decimal::ONE, a, format!("{} ({q} × {p})", line.description)),
            })
        }

        /// An HTTP Basic `Authorization` header value for `user` and `password`.
        pub fn basic_auth(user: &str, password: &str) -> String {
            format!("Basic {}", crate::base64(format!("{user}:{password}").as_bytes()))
        }

        /// A rejection the ERP gave in no shape the mapper knows: `http-error`
        /// with the status and the start of the body.
        pub fn http_error(status: u16, body: &str) -> PluginError {
            let text: String = body.chars().take(300).collect();
            PluginError::new("http-error", None, format!("HTTP {status}: {text}"))
        }

        /// The usual reading of a status the ERP may recover from (408, 425,
        /// 429, 5xx): transient, with the `Retry-After` hint in the message.
        pub fn transient_status(response: &ErpResponse) -> Option<$outcome> {
            matches!(response.status, 408 | 425 | 429 | 500..=599).then(|| {
                let wait = header(response, "retry-after").map(|s| format!(", retry after {s}s")).unwrap_or_default();
                $outcome::Transient(format!("HTTP {}{wait}", response.status))
            })
        }
    };
}

/// Bindings of the `erp-mapper` world, interface 0.1.0: one request per
/// document.
#[cfg(feature = "erp-mapper")]
pub mod mapper {
    wit_bindgen::generate!({
        world: "erp-mapper",
        path: "../wit/since_v0.1.0",
        default_bindings_module: "tollgate_sdk::mapper",
        pub_export_macro: true,
        export_macro_name: "export_erp_mapper",
    });
    crate::decimal::impl_wit_decimal!(tollgate::plugin::types::Decimal);
    crate::decimal::impl_plugin_error!(tollgate::plugin::types::PluginError);
    pub use tollgate::plugin::types::Decimal as WitDecimal;
    use tollgate::plugin::types::DocumentLine;

    mapper_helpers!(PostingOutcome);
}

/// Bindings of the `erp-mapper` world, interface 0.3.0 (`wit/since_v0.3.0`):
/// posting as a conversation — each answer read may name the next request
/// (`Step::Next`), and the document carries its target, posting period, tax
/// context and the lines' dimensions and accounts.
#[cfg(feature = "erp-mapper-v0-3")]
pub mod mapper_v3 {
    wit_bindgen::generate!({
        world: "erp-mapper",
        path: "../wit/since_v0.3.0",
        default_bindings_module: "tollgate_sdk::mapper_v3",
        pub_export_macro: true,
        export_macro_name: "export_erp_mapper_v3",
    });
    crate::decimal::impl_wit_decimal!(tollgate::plugin::types::Decimal);
    crate::decimal::impl_plugin_error!(tollgate::plugin::types::PluginError);
    pub use exports::tollgate::plugin::posting::Guest;
    pub use tollgate::plugin::types::{
        Decimal as WitDecimal, DocumentLine, ErpRequest, ErpResponse, LookupOutcome, PluginError, PostingDocument,
        Step, TargetConfig,
    };

    mapper_helpers!(Step);
}

/// Standard base64 (RFC 4648, with padding).
#[cfg(any(feature = "erp-mapper", feature = "erp-mapper-v0-3"))]
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// Parses a plugin's JSON parameters into `T`, with an error naming the
/// offending path (`params.<...>`) for the contract owner.
pub fn parse_params<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ParamsError> {
    json::from_str(json).map_err(|e| ParamsError { message: format!("invalid pricing parameters: {e}") })
}

/// Why parameters did not parse; converts into each world's `PluginError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsError {
    pub message: String,
}
