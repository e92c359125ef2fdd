//! Rating canonical usage with a plugin, the stored charge records, and master data's references checked against the registry.

use super::{ChargeRecord, RelatedCharge, RuleRef, rate_many_with};
use crate::enrich::CanonicalUsage;
use crate::masterdata::{PluginRef, References};
use crate::plugins::registry::Registry;
use crate::plugins::{Kind, Plugin, PluginError, bindings::rating as wit};
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

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
/// [`crate::plugins::Runtime::rate_batch`]); result `i` is what rating `items[i]`
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

/// Master-data references of one tenant, checked against the registry and
/// the ERP targets.
pub struct RegistryRefs<'a> {
    pub registry: &'a Registry,
    pub tenant: &'a str,
    pub targets: &'a BTreeMap<String, crate::config::ErpTargetConfig>,
    pub meters: &'a crate::metering::Meters,
}

impl References for RegistryRefs<'_> {
    fn rater(&self, r: &PluginRef) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.registry.find(self.tenant, &r.plugin, r.version.as_deref(), Kind::Rater).map(|_| ())?)
    }
    fn erp_target_exists(&self, name: &str) -> bool {
        self.targets.contains_key(name)
    }
    fn meter(&self, id: &str) -> Option<std::sync::Arc<crate::metering::Meter>> {
        self.meters.tenant(self.tenant).and_then(|t| t.by_id.get(id).cloned())
    }
}
