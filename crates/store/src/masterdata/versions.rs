//! Master-data versions in the store, written after the core's checks.

use super::history::{self, Change, History};
use crate::error::ApiError;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use tollgate_core::masterdata::{MasterData, Planned, References, plan};

/// Writes are serialised so versions get consecutive numbers.
static WRITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a write did.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// The versions recorded (none when the data was already so).
    pub versions: Vec<history::Version>,
    /// The history after the write.
    #[serde(skip)]
    pub history: Arc<History>,
}

/// Records `changes(history)` after checking the master data at every
/// instant they affect (the earliest change and every later effective
/// time), and makes them durable. Contract-line versions must start on a
/// window boundary of the line's meter, so every window is rated on one
/// set of terms.
pub async fn write(
    store: &Store,
    tenant: &str,
    refs: &dyn References,
    now: DateTime<Utc>,
    changes: impl FnOnce(&History) -> Result<Vec<Change>, ApiError>,
) -> Result<Written, ApiError> {
    let _guard = WRITE.lock().await;
    let old = history::load(store, tenant)?;
    let changes = changes(&old)?;
    if changes.is_empty() {
        return Ok(Written { versions: Vec::new(), history: Arc::new(old) });
    }
    let Planned { history: new, added } = plan(&old, &changes, refs, now)?;
    history::append(store, tenant, &added).await?;
    Ok(Written { versions: added, history: Arc::new(new) })
}

/// Imports master data stored before it was versioned (one snapshot per
/// tenant under the bare tenant key) as versions effective since always.
pub async fn migrate_unversioned(store: &Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut migrated = 0;
    for entry in store.masterdata.iter() {
        let (key, value) = entry?;
        if key.contains(&0) {
            continue;
        }
        let tenant = String::from_utf8_lossy(&key).into_owned();
        let data: MasterData = crate::store::decode(&store.masterdata, &value)?;
        let old = history::load(store, &tenant)?;
        let changes = old.diff(&data, history::SINCE_ALWAYS, history::SINCE_ALWAYS, now).map_err(StoreError::Encode)?;
        let (_, added) = old.with(&changes, now);
        history::append(store, &tenant, &added).await?;
        store.masterdata.remove(&key)?;
        migrated += 1;
    }
    store.flush().await?;
    Ok(migrated)
}
