//! Synchronous look-ups for product services in their request path: a
//! customer's account, an entitlement (allowed, used this period,
//! remaining), a contract line's pricing reference. Master data is served
//! from an in-memory index per tenant, replaced whenever the master data is
//! written; usage comes from the metering windows. Every look-up is bounded
//! by [`LOOKUP_TIMEOUT`] (the API answers 503 `timeout` beyond it).

use crate::clock::SharedClock;
use crate::enrich::{self, Period};
use crate::error::{ApiError, ErrorCode};
use crate::masterdata::history::{self, History};
use crate::masterdata::{ContractLine, Customer, Feature, LegalEntity, MasterData};
use crate::money::Quantity;
use crate::plugins::registry::Registry;
use crate::rating::activation;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Longest a look-up may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(50);

/// A tenant's master data with its look-up indexes.
#[derive(Debug, Default)]
pub struct Indexed {
    pub data: MasterData,
    customers: HashMap<String, usize>,
    entities: HashMap<String, usize>,
    lines: HashMap<String, usize>,
    lines_of: HashMap<String, Vec<usize>>,
    features: HashMap<String, usize>,
}

impl Indexed {
    pub fn new(data: MasterData) -> Indexed {
        let pos = |ids: Vec<&str>| ids.into_iter().enumerate().map(|(i, id)| (id.to_string(), i)).collect();
        let mut lines_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, l) in data.contract_lines.iter().enumerate() {
            lines_of.entry(l.customer.clone()).or_default().push(i);
        }
        Indexed {
            customers: pos(data.customers.iter().map(|c| c.id.as_str()).collect()),
            entities: pos(data.legal_entities.iter().map(|e| e.id.as_str()).collect()),
            lines: pos(data.contract_lines.iter().map(|l| l.id.as_str()).collect()),
            features: pos(data.features.iter().map(|f| f.code.as_str()).collect()),
            lines_of,
            data,
        }
    }

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.get(id).map(|i| &self.data.customers[*i])
    }
    pub fn legal_entity(&self, id: &str) -> Option<&LegalEntity> {
        self.entities.get(id).map(|i| &self.data.legal_entities[*i])
    }
    pub fn contract_line(&self, id: &str) -> Option<&ContractLine> {
        self.lines.get(id).map(|i| &self.data.contract_lines[*i])
    }
    pub fn feature(&self, code: &str) -> Option<&Feature> {
        self.features.get(code).map(|i| &self.data.features[*i])
    }
    pub fn lines_of(&self, customer: &str) -> impl Iterator<Item = &ContractLine> {
        self.lines_of.get(customer).into_iter().flatten().map(|i| &self.data.contract_lines[*i])
    }
}

/// A tenant's history and its master data in effect now, indexed; the
/// index holds until the next effective time (`valid_until`).
#[derive(Debug)]
struct Tenant {
    history: Arc<History>,
    current: Arc<Indexed>,
    valid_until: Option<DateTime<Utc>>,
}

impl Tenant {
    fn new(history: Arc<History>, now: DateTime<Utc>) -> Result<Tenant, StoreError> {
        let data =
            history.as_of(now, now).map_err(|source| StoreError::Decode { tree: "masterdata".into(), source })?;
        Ok(Tenant { valid_until: history.next_change_after(now), current: Arc::new(Indexed::new(data)), history })
    }
}

/// Every tenant's indexed master data, loaded on first use, replaced on
/// every write ([`MasterDataCache::set`]) and re-indexed when a version
/// dated in the future comes into effect.
#[derive(Debug)]
pub struct MasterDataCache {
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Which version is in effect (see [`crate::clock`]).
    clock: SharedClock,
}

impl MasterDataCache {
    fn tenant(&self, store: &Store, tenant: &str) -> Result<Arc<Tenant>, StoreError> {
        let now = self.clock.now();
        if let Some(t) = self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(tenant)
            && t.valid_until.is_none_or(|until| now < until)
        {
            return Ok(t.clone());
        }
        let history = match self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            Some(t) => t.history.clone(),
            None => Arc::new(history::load(store, tenant)?),
        };
        Ok(self.insert_if_newer(tenant, Tenant::new(history, now)?))
    }

    /// Keeps the newer of the cached and the given history (two writes, or a
    /// write and a first load, may finish in either order).
    fn insert_if_newer(&self, tenant: &str, t: Tenant) -> Arc<Tenant> {
        let mut all = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        match all.get(tenant) {
            Some(old) if old.history.last_seq() > t.history.last_seq() => old.clone(),
            _ => {
                let t = Arc::new(t);
                all.insert(tenant.to_string(), t.clone());
                t
            }
        }
    }

    /// The master data in effect now, indexed.
    pub fn get(&self, store: &Store, tenant: &str) -> Result<Arc<Indexed>, StoreError> {
        Ok(self.tenant(store, tenant)?.current.clone())
    }

    /// The tenant's whole history.
    pub fn history(&self, store: &Store, tenant: &str) -> Result<Arc<History>, StoreError> {
        Ok(self.tenant(store, tenant)?.history.clone())
    }

    /// Indexes every tenant's stored master data (at start-up, so the first
    /// look-ups do not pay for loading it).
    pub fn load_all(store: &Store, clock: SharedClock) -> Result<MasterDataCache, StoreError> {
        let cache = MasterDataCache { tenants: RwLock::default(), clock };
        for (tenant, history) in history::load_all(store)? {
            cache.set(&tenant, Arc::new(history))?;
        }
        Ok(cache)
    }

    /// Replaces a tenant's history (after it is stored) unless a newer one
    /// is already here.
    pub fn set(&self, tenant: &str, history: Arc<History>) -> Result<(), StoreError> {
        self.insert_if_newer(tenant, Tenant::new(history, self.clock.now())?);
        Ok(())
    }
}

fn not_found(field: &str, message: String) -> ApiError {
    ApiError::field(ErrorCode::NotFound, field, message)
}

/// A customer's account: who they are in the ERP and which company bills them.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub erp_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub legal_entity: LegalEntity,
    pub contract_lines: Vec<String>,
}

pub fn account(md: &Indexed, customer: &str) -> Result<Account, ApiError> {
    let c = md.customer(customer).ok_or_else(|| not_found("id", format!("no customer {customer:?}")))?;
    let entity = md
        .legal_entity(&c.legal_entity)
        .ok_or_else(|| ApiError::internal(format!("customer {} has no legal entity {}", c.id, c.legal_entity)))?;
    Ok(Account {
        id: c.id.clone(),
        name: c.name.clone(),
        erp_account: c.erp_account.clone(),
        crm_account: c.crm_account.clone(),
        parent: c.parent.clone(),
        legal_entity: entity.clone(),
        contract_lines: md.lines_of(customer).map(|l| l.id.clone()).collect(),
    })
}

/// Whether a customer may use a feature now, and how much is left this period.
#[derive(Debug, Clone, Serialize)]
pub struct Entitlement {
    pub customer: String,
    pub feature: String,
    pub meter: String,
    /// The contract line pricing the feature's meter; none: not entitled.
    pub contract_line: Option<String>,
    /// The billing period so far (`YYYY-MM`).
    pub period: String,
    pub allowed: bool,
    /// Metered this period so far.
    pub used: Quantity,
    /// The contract line's commitment; none: unlimited.
    pub limit: Option<Decimal>,
    pub remaining: Option<Quantity>,
    /// True when the answer may miss events acknowledged before the request
    /// (the event index had not caught up within the look-up's time bound);
    /// `through_lsn` is the log position it reflects. Never silently old.
    pub stale: bool,
    pub through_lsn: u64,
}

pub fn entitlement(
    store: &Store,
    md: &Indexed,
    tenant: &str,
    customer: &str,
    feature: &str,
    now: DateTime<Utc>,
) -> Result<Entitlement, ApiError> {
    md.customer(customer).ok_or_else(|| not_found("id", format!("no customer {customer:?}")))?;
    let f = md.feature(feature).ok_or_else(|| not_found("feature", format!("no feature {feature:?}")))?;
    let line = md.lines_of(customer).find(|l| l.meter == f.meter);
    let period = Period::containing(now, line.and_then(|l| l.billing_anchor_day));
    let used = match line {
        Some(l) => enrich::usage_total(store, tenant, l, period.start, period.end).map_err(ApiError::internal)?,
        None => Quantity::ZERO,
    };
    let limit = line.and_then(|l| l.commitment);
    // A commitment is a non-negative decimal of the quantities' precision
    // (master data validation); one that is not is no room at all.
    let room = limit.map(|l| Quantity::from_decimal(l).unwrap_or(Quantity::ZERO));
    Ok(Entitlement {
        customer: customer.to_string(),
        feature: f.code.clone(),
        meter: f.meter.clone(),
        contract_line: line.map(|l| l.id.clone()),
        period: period.id,
        allowed: line.is_some() && room.is_none_or(|l| used < l),
        used,
        limit,
        remaining: room.map(|l| l.checked_sub(used).unwrap_or(Quantity::ZERO)),
        stale: false,
        through_lsn: 0,
    })
}

/// The rule a contract line is priced by right now.
#[derive(Debug, Clone, Serialize)]
pub struct PricingReference {
    pub contract_line: String,
    pub customer: String,
    pub meter: String,
    pub sku: String,
    pub currency: String,
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    pub params: serde_json::Value,
    pub commitment: Option<Decimal>,
}

pub fn pricing(
    store: &Store,
    registry: &Registry,
    md: &Indexed,
    tenant: &str,
    line: &str,
    now: DateTime<Utc>,
) -> Result<PricingReference, ApiError> {
    let l = md.contract_line(line).ok_or_else(|| not_found("id", format!("no contract line {line:?}")))?;
    let plugin = activation::rater_for(store, registry, tenant, l, now)
        .map_err(|e| ApiError::field(ErrorCode::FailedPrecondition, "rater", e.to_string()))?;
    Ok(PricingReference {
        contract_line: l.id.clone(),
        customer: l.customer.clone(),
        meter: l.meter.clone(),
        sku: l.sku.clone(),
        currency: l.currency.clone(),
        plugin: plugin.name.clone(),
        version: plugin.version.to_string(),
        sha256: plugin.sha256.clone(),
        params: l.params.clone(),
        commitment: l.commitment,
    })
}

/// Runs a look-up on the blocking pool, bounded by [`LOOKUP_TIMEOUT`].
pub async fn bounded<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    bounded_until(tokio::time::Instant::now() + LOOKUP_TIMEOUT, f).await
}

/// The entitlement of `customer` to `feature` with read-your-writes: waits
/// (within the look-up's bound, half of it at most) for the event index to
/// show every event acknowledged before the request, then reads; if it has
/// not caught up by then, answers what it has, marked `stale`.
pub async fn entitlement_now(
    log: &crate::eventlog::EventLog,
    tenant: &str,
    load: impl FnOnce() -> Result<Entitlement, ApiError> + Send + 'static,
) -> Result<Entitlement, ApiError> {
    let deadline = tokio::time::Instant::now() + LOOKUP_TIMEOUT;
    let freshness = log.sync_within(tenant, LOOKUP_TIMEOUT / 2).await.map_err(ApiError::from)?;
    let mut e = bounded_until(deadline, load).await?;
    e.stale = !freshness.caught_up;
    e.through_lsn = freshness.through_lsn;
    Ok(e)
}

/// Runs a look-up on the blocking pool, answering `timeout` at `deadline`.
async fn bounded_until<T: Send + 'static>(
    deadline: tokio::time::Instant,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(f)).await {
        Ok(joined) => joined.map_err(ApiError::internal)?,
        Err(_) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("the look-up took longer than {} ms; retry", LOOKUP_TIMEOUT.as_millis()),
        )
        .with_reason("timeout")),
    }
}
