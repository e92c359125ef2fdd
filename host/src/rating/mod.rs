//! Rating: canonical usage + the contract line's rater plugin → charge lines,
//! stored with lineage (rule name, version and SHA-256, input and output
//! digests, windows, source events).
//!
//! The Wasm sandbox, the registry and the fixture runner are the
//! `tollgate-plugins` crate ([`crate::plugins`]); here:
//! - `activation`: which version rates a contract line, from when;
//! - rating canonical usages with a plugin, and the stored charge records;
//! - [`RegistryRefs`]: master data's references checked against the
//!   registry, the ERP targets and the meters.

pub mod activation;
mod charges;

pub use charges::{RegistryRefs, charge_key, load_charge, load_charges, rate_many, record_key};
pub use tollgate_core::rating::{
    Charge, ChargeRecord, RaterInput, RelatedCharge, RuleRef, digest_input, digest_output, rate_many_with, rater_input,
};
