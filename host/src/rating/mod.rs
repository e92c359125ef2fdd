//! Rating: canonical usage + the contract line's rater plugin → charge lines,
//! stored with lineage (rule name, version and SHA-256, input and output
//! digests, windows, source events).
//!
//! - `runtime`: the Wasm sandbox.
//! - `registry`: loaded plugins by owner, name and version; uploads.
//! - `activation`: which version rates a contract line, from when.

pub mod activation;
pub mod fixtures;
pub mod registry;
pub mod runtime;

use crate::enrich::CanonicalUsage;
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use registry::Registry;
use runtime::{Plugin, PluginError, bindings::rating as wit};
pub use tollgate_core::rating::{
    Charge, ChargeRecord, RaterInput, RelatedCharge, RuleRef, digest_input, digest_output, rate_many_with, rater_input,
};

/// Where a charge record is stored.
pub fn record_key(r: &ChargeRecord) -> Vec<u8> {
    charge_key(&r.usage.tenant, &r.usage.period.id, &r.usage.contract_line, &r.usage.part)
}

/// `tenant·period·contract line·part` (the part is empty for a whole period).
pub fn charge_key(tenant: &str, period: &str, contract_line: &str, part: &str) -> Vec<u8> {
    store::key(&[tenant, period, contract_line, part])
}

/// Rates canonical usages (each with its related charges) with `plugin`,
/// in batches where the rater takes them (see
/// [`runtime::Runtime::rate_batch`]); result `i` is what rating `items[i]`
/// alone gives. Blocking: run off the async runtime.
pub fn rate_many(
    registry: &Registry,
    plugin: &Plugin,
    items: Vec<(CanonicalUsage, Vec<RelatedCharge>)>,
    now: DateTime<Utc>,
) -> Vec<Result<ChargeRecord, PluginError>> {
    rate_many_with(items, rule_of(plugin), now, |inputs| {
        let inputs: Vec<wit::Usage> = inputs.into_iter().map(wit::Usage::from).collect();
        registry.runtime().rate_batch(plugin, &inputs)
    })
}

fn rule_of(plugin: &Plugin) -> RuleRef {
    RuleRef { plugin: plugin.name.clone(), version: plugin.version.to_string(), sha256: plugin.sha256.clone() }
}

/// Reads a stored charge record.
pub fn load_charge(
    store: &Store,
    tenant: &str,
    period: &str,
    contract_line: &str,
    part: &str,
) -> Result<Option<ChargeRecord>, StoreError> {
    store.get(&store.charges, &charge_key(tenant, period, contract_line, part))
}

/// Every charge record of a tenant's period.
pub fn load_charges(store: &Store, tenant: &str, period: &str) -> Result<Vec<ChargeRecord>, StoreError> {
    Ok(store.scan(&store.charges, &store::prefix(&[tenant, period]))?.into_iter().map(|(_, r)| r).collect())
}
