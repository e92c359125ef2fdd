//! The meters of every tenant in memory, by id and by event type (the
//! definitions are [`tollgate_core::meter`]'s).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
pub use tollgate_core::meter::*;

/// A tenant's meters, by id and by event type.
#[derive(Debug, Default, Clone)]
pub struct TenantMeters {
    pub by_id: BTreeMap<String, Arc<Meter>>,
    by_type: HashMap<String, Vec<Arc<Meter>>>,
}

impl TenantMeters {
    /// The meters reading events of `event_type`, whatever their state.
    pub fn of_type(&self, event_type: &str) -> &[Arc<Meter>] {
        self.by_type.get(event_type).map_or(&[], Vec::as_slice)
    }
}

/// Every tenant's meters in memory, kept current by the event log's indexer
/// (the only writer); readers take a snapshot per tenant.
#[derive(Debug, Default)]
pub struct Meters {
    tenants: RwLock<HashMap<String, Arc<TenantMeters>>>,
}

impl Meters {
    pub fn tenant(&self, tenant: &str) -> Option<Arc<TenantMeters>> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned()
    }

    /// Adds or replaces a meter. Every meter is listed by type (events are
    /// validated against it, and not taken as unmetered); what counts into
    /// which is decided by its state (see `metering::update::Overlay`).
    pub fn insert(&self, tenant: &str, meter: Meter) {
        let mut all = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        let mut t = all.get(tenant).map(|t| (**t).clone()).unwrap_or_default();
        let meter = Arc::new(meter);
        if let Some(old) = t.by_id.insert(meter.id.clone(), meter.clone())
            && let Some(list) = t.by_type.get_mut(&old.event_type)
        {
            list.retain(|m| m.id != old.id);
        }
        t.by_type.entry(meter.event_type.clone()).or_default().push(meter);
        all.insert(tenant.to_string(), Arc::new(t));
    }

    /// Forgets a meter (one whose build failed).
    pub fn remove(&self, tenant: &str, id: &str) {
        let mut all = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        let Some(t) = all.get(tenant) else { return };
        let mut t = (**t).clone();
        if let Some(old) = t.by_id.remove(id)
            && let Some(list) = t.by_type.get_mut(&old.event_type)
        {
            list.retain(|m| m.id != id);
        }
        all.insert(tenant.to_string(), Arc::new(t));
    }
}
