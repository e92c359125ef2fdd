//! Master-data versions in the store (`masterdata` tree): `tenant·seq`
//! (seq 8 bytes big-endian) → [`Version`], appended in one batch per write
//! and fsynced before the write is acknowledged. The model is
//! [`tollgate_core::masterdata::history`]'s.

use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
pub use tollgate_core::masterdata::history::*;

fn version_key(tenant: &str, seq: u64) -> Vec<u8> {
    let mut k = crate::store::prefix(&[tenant]);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A tenant's history from the store.
pub fn load(store: &Store, tenant: &str) -> Result<History, StoreError> {
    let versions = store.scan::<Version>(&store.masterdata, &crate::store::prefix(&[tenant]))?;
    Ok(History::from_versions(versions.into_iter().map(|(_, v)| v).collect()))
}

/// Every tenant's history from the store.
pub fn load_all(store: &Store) -> Result<BTreeMap<String, History>, StoreError> {
    let mut by_tenant: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for (key, v) in store.scan::<Version>(&store.masterdata, b"")? {
        let tenant = key.split(|b| *b == 0).next().unwrap_or_default();
        by_tenant.entry(String::from_utf8_lossy(tenant).into_owned()).or_default().push(v);
    }
    Ok(by_tenant.into_iter().map(|(t, v)| (t, History::from_versions(v))).collect())
}

/// Appends versions and makes them durable.
pub async fn append(store: &Store, tenant: &str, versions: &[Version]) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for v in versions {
        batch.insert(version_key(tenant, v.seq), serde_json::to_vec(v)?);
    }
    store.masterdata.apply_batch(batch)?;
    store.flush().await
}
