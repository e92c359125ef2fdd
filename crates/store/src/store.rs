//! The embedded database: one sled instance on local disk, one tree per
//! record type, beside the event log's own index (an LSM tree in
//! `<data_dir>/eventlog`, see [`crate::eventlog::index`]); keys as NUL-separated components (ids never contain NUL:
//! ingest and master-data validation refuse it).
//!
//! Durability: [`Store::flush`] fsyncs; every stage calls it before it
//! acknowledges anything (ingest acknowledges after its own write-ahead log
//! is fsynced, see [`crate::eventlog`]).
//!
//! Trees:
//! - `masterdata`     tenant·seq → [`crate::masterdata::history::Version`]
//! - `charges`        tenant·period·contract line·part → [`tollgate_core::rating::ChargeRecord`]
//! - `charge_events`  tenant·period·contract line·part·event id → ()
//! - `event_charges`  tenant·event id·period·contract line·part → () (the reverse)
//! - `documents`      tenant·document id → [`tollgate_core::document::Document`]
//! - `periods`        tenant·period → the gateway's `PeriodClose`
//! - `interim`        tenant·period·day → the gateway's `InterimReport`
//! - `outbox`         document key → the gateway's `OutboxEntry`
//! - `exceptions`     document key → () for every document an ERP ever
//!   rejected (the exception queue reads these, not every document); the
//!   key `EXCEPTIONS_INDEXED` marks the index complete
//! - `erp_numbers`    tenant·ERP document number·target → document id
//! - `plugins`        tenant·plugin name·version → uploaded plugin record
//! - `blobs`          plugin SHA-256 → component bytes
//! - `api_keys`       SHA-256 of a key → the gateway's `ApiKeyRecord`
//! - `activations`    tenant·contract line·effective from·activated at → activation

use crate::eventlog::index::Index;
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Index(#[from] crate::eventlog::index::IndexError),
    #[error("corrupt record in {tree}: {source}")]
    Decode { tree: String, source: serde_json::Error },
    #[error("encoding record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("transaction aborted: {0}")]
    Aborted(String),
}

/// The marker of a complete `exceptions` index (not a document key: those
/// start with a tenant id, which is never empty).
pub const EXCEPTIONS_INDEXED: &[u8] = b"\0indexed";

/// The database and its trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// The event log's index (events, dedup entries, revision history,
    /// metering windows; its write-ahead log is in `<data_dir>/wal`).
    pub eventlog: Index,
    pub masterdata: sled::Tree,
    pub charges: sled::Tree,
    pub charge_events: sled::Tree,
    pub event_charges: sled::Tree,
    pub documents: sled::Tree,
    pub periods: sled::Tree,
    pub interim: sled::Tree,
    pub outbox: sled::Tree,
    pub exceptions: sled::Tree,
    pub line_exceptions: sled::Tree,
    pub erp_numbers: sled::Tree,
    pub plugins: sled::Tree,
    pub blobs: sled::Tree,
    pub activations: sled::Tree,
    pub api_keys: sled::Tree,
    /// Tenants the operator created (`POST /v1/tenants`).
    pub tenants: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open()?;
        let store = Store {
            eventlog: Index::open(&dir.join("eventlog"))?,
            masterdata: db.open_tree("masterdata")?,
            charges: db.open_tree("charges")?,
            charge_events: db.open_tree("charge_events")?,
            event_charges: db.open_tree("event_charges")?,
            documents: db.open_tree("documents")?,
            periods: db.open_tree("periods")?,
            interim: db.open_tree("interim")?,
            outbox: db.open_tree("outbox")?,
            exceptions: db.open_tree("exceptions")?,
            line_exceptions: db.open_tree("line_exceptions")?,
            erp_numbers: db.open_tree("erp_numbers")?,
            plugins: db.open_tree("plugins")?,
            blobs: db.open_tree("blobs")?,
            activations: db.open_tree("activations")?,
            api_keys: db.open_tree("api_keys")?,
            tenants: db.open_tree("tenants")?,
            db,
        };
        store.index_exceptions()?;
        Ok(store)
    }

    /// Builds the `exceptions` index of a store written before it existed:
    /// every document rejected now or acted on since (a document is only
    /// acted on after a rejection). Done once; later rejections are indexed
    /// as they happen, in the transaction that records them.
    fn index_exceptions(&self) -> Result<(), StoreError> {
        if self.exceptions.contains_key(EXCEPTIONS_INDEXED)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for item in self.documents.iter() {
            let (key, bytes) = item?;
            let doc: tollgate_core::document::Document = decode(&self.documents, &bytes)?;
            if doc.state.status == tollgate_core::document::PostingStatus::Rejected || !doc.state.actions.is_empty() {
                batch.insert(key, &[][..]);
            }
        }
        batch.insert(EXCEPTIONS_INDEXED, &[][..]);
        self.exceptions.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Writes every pending change to disk and fsyncs. Acknowledge only after.
    ///
    /// sled's blocking `flush` runs on the blocking pool: its `flush_async`
    /// can leave concurrent callers waiting forever (sled issues #1241,
    /// #1308), which the parallel posting worker ran into.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Aborted(format!("flush task: {e}")))??;
        Ok(())
    }

    /// Reads and decodes one record.
    pub fn get<T: DeserializeOwned>(&self, tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
        tree.get(key)?.map(|v| decode(tree, &v)).transpose()
    }

    /// Encodes and writes one record (not yet durable: call [`Store::flush`]).
    pub fn put<T: Serialize>(&self, tree: &sled::Tree, key: &[u8], value: &T) -> Result<(), StoreError> {
        tree.insert(key, serde_json::to_vec(value)?)?;
        Ok(())
    }

    /// Decodes every record under `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        tree.scan_prefix(prefix)
            .map(|r| {
                let (k, v) = r?;
                Ok((k.to_vec(), decode(tree, &v)?))
            })
            .collect()
    }

    /// The last key component of every key under `prefix` (e.g. event ids of a window).
    pub fn scan_suffixes(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<String>, StoreError> {
        tree.scan_prefix(prefix)
            .keys()
            .map(|k| {
                let k = k?;
                Ok(String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            })
            .collect()
    }
}

/// Decodes a stored JSON record.
pub fn decode<T: DeserializeOwned>(tree: &sled::Tree, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|source| StoreError::Decode { tree: String::from_utf8_lossy(&tree.name()).into_owned(), source })
}

/// Builds a key from components separated by NUL.
pub fn key(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        debug_assert!(!p.contains('\0'), "key component with NUL: {p:?}");
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// A key prefix: the components followed by a separator.
pub fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}
