//! Generated host bindings, one module per supported version of `wit/`
//! (see `wit/README.md`), each with its conversions from and into the
//! newest types beside it. The host works in the newest types
//! ([`rating`], [`posting`]) and converts for older plugins.

pub mod v0_1;
pub mod v0_2;
pub mod v0_3;
pub mod v0_4;

/// The 0.1.0 types (rater and ERP mapper).
pub use v0_1::types;
/// The newest rating types (0.2.0, unchanged in 0.4.0), in which the host rates.
pub use v0_2::types as rating;
/// The newest posting types, in which the host maps and posts.
pub use v0_3::types as posting;
