//! What a tenant stores, by kind: a scan of its keys in the event log's
//! index and in every tenant-keyed tree (about a second per million
//! events; run it off the async runtime).

use crate::eventlog::keys::tenant_prefix;
use crate::store::{self, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// Records and bytes (keys and values, before compression) of one kind of
/// stored data.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Area {
    pub records: u64,
    pub bytes: u64,
}

impl Area {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.records += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }
}

/// The tenant's stored data by kind: `events`, `event_history`, `dedup`,
/// `windows`, `meters` (the event log's index), `masterdata`, `billing`
/// (charges and their events, periods, interim documents, activations),
/// `documents` (documents, outbox, exceptions). Uploaded plugins are the
/// registry's to count.
pub fn tenant_areas(store: &Store, tenant: &str) -> Result<BTreeMap<&'static str, Area>, StoreError> {
    let mut areas = BTreeMap::new();
    for (name, tag) in [("events", b'e'), ("event_history", b'h'), ("dedup", b'd'), ("windows", b'w'), ("meters", b'M')]
    {
        let area: &mut Area = areas.entry(name).or_default();
        for entry in store.eventlog.prefix(&tenant_prefix(tag, tenant)) {
            let (k, v) = entry?;
            area.add(&k, &v);
        }
    }
    let trees = [
        ("masterdata", &store.masterdata),
        ("billing", &store.charges),
        ("billing", &store.charge_events),
        ("billing", &store.event_charges),
        ("billing", &store.periods),
        ("billing", &store.interim),
        ("billing", &store.activations),
        ("documents", &store.documents),
        ("documents", &store.outbox),
        ("documents", &store.exceptions),
        ("documents", &store.line_exceptions),
    ];
    for (name, tree) in trees {
        let area: &mut Area = areas.entry(name).or_default();
        for entry in tree.scan_prefix(store::prefix(&[tenant])) {
            let (k, v) = entry?;
            area.add(&k, &v);
        }
    }
    Ok(areas)
}
