//! Effective-dated master data. Every entity (legal entity, customer,
//! subscription, SKU, feature, contract line) is a list of versions, each in
//! effect from an instant until the entity's next version; a version without
//! a value ends the entity. Versions are only ever added: an amendment, even
//! a retroactive one, is a new version, and the version it supersedes stays
//! readable. Each version also records when it was recorded, so a snapshot
//! can be taken "as of" an effective time and "as known at" a recording time
//! (what the gateway believed then).
//!
//! The store keeps each tenant's versions in order of their `seq`.

use super::MasterData;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// "Since always": the effective time of an entity new to the master data
/// when a write names none.
pub const SINCE_ALWAYS: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// The kinds of entity, as they are named in the API paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    LegalEntity,
    Customer,
    Subscription,
    Sku,
    Feature,
    ContractLine,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::LegalEntity, Kind::Customer, Kind::Subscription, Kind::Sku, Kind::Feature, Kind::ContractLine];

    /// The collection's name in the master data document and in the API
    /// path (`/v1/masterdata/{collection}/{id}`).
    pub fn collection(self) -> &'static str {
        match self {
            Kind::LegalEntity => "legal_entities",
            Kind::Customer => "customers",
            Kind::Subscription => "subscriptions",
            Kind::Sku => "skus",
            Kind::Feature => "features",
            Kind::ContractLine => "contract_lines",
        }
    }

    pub fn from_collection(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.collection() == name)
    }
}

/// One version of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// Order of recording within the tenant, from 1.
    pub seq: u64,
    pub kind: Kind,
    pub id: String,
    pub effective_from: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The entity from `effective_from` on; absent: the entity ends there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Why the version was made (free text, e.g. "contract amendment 7").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A change to record: the entity's value (or its end) from an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: Kind,
    pub id: String,
    pub effective_from: DateTime<Utc>,
    pub value: Option<serde_json::Value>,
    pub reason: Option<String>,
}

/// A tenant's versions, in recording order, indexed by entity.
#[derive(Debug, Clone, Default)]
pub struct History {
    versions: Vec<Version>,
    by_entity: HashMap<(Kind, String), Vec<usize>>,
}

/// The version of an entity in effect at `at`, among those recorded by `known_at`.
fn wins(v: &Version, at: DateTime<Utc>, known_at: DateTime<Utc>) -> bool {
    v.effective_from <= at && v.recorded_at <= known_at
}

impl History {
    pub fn from_versions(mut versions: Vec<Version>) -> History {
        versions.sort_by_key(|v| v.seq);
        let mut by_entity: HashMap<(Kind, String), Vec<usize>> = HashMap::new();
        for (i, v) in versions.iter().enumerate() {
            by_entity.entry((v.kind, v.id.clone())).or_default().push(i);
        }
        History { versions, by_entity }
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The newest version's number (0: none).
    pub fn last_seq(&self) -> u64 {
        self.versions.last().map_or(0, |v| v.seq)
    }

    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// Every version of one entity, in recording order.
    pub fn of(&self, kind: Kind, id: &str) -> Vec<&Version> {
        self.by_entity.get(&(kind, id.to_string())).into_iter().flatten().map(|i| &self.versions[*i]).collect()
    }

    /// The value of one entity in effect at `at`, as known at `known_at`.
    pub fn entity_at(
        &self,
        kind: Kind,
        id: &str,
        at: DateTime<Utc>,
        known_at: DateTime<Utc>,
    ) -> Option<&serde_json::Value> {
        self.of(kind, id)
            .into_iter()
            .filter(|v| wins(v, at, known_at))
            .max_by_key(|v| (v.effective_from, v.seq))
            .and_then(|v| v.value.as_ref())
    }

    /// The master data in effect at `at`, as known at `known_at`. Entities
    /// keep the order in which they first appeared (contract lines are rated
    /// in that order).
    pub fn as_of(&self, at: DateTime<Utc>, known_at: DateTime<Utc>) -> Result<MasterData, serde_json::Error> {
        let mut current: HashMap<(Kind, &str), &Version> = HashMap::new();
        let mut order: Vec<(Kind, &str)> = Vec::new();
        for v in &self.versions {
            if !wins(v, at, known_at) {
                continue;
            }
            let key = (v.kind, v.id.as_str());
            match current.get(&key) {
                None => {
                    order.push(key);
                    current.insert(key, v);
                }
                Some(old) if (v.effective_from, v.seq) > (old.effective_from, old.seq) => {
                    current.insert(key, v);
                }
                Some(_) => {}
            }
        }
        let mut md = MasterData::default();
        for key in order {
            let Some(value) = current[&key].value.clone() else { continue };
            match key.0 {
                Kind::LegalEntity => md.legal_entities.push(serde_json::from_value(value)?),
                Kind::Customer => md.customers.push(serde_json::from_value(value)?),
                Kind::Subscription => md.subscriptions.push(serde_json::from_value(value)?),
                Kind::Sku => md.skus.push(serde_json::from_value(value)?),
                Kind::Feature => md.features.push(serde_json::from_value(value)?),
                Kind::ContractLine => md.contract_lines.push(serde_json::from_value(value)?),
            }
        }
        Ok(md)
    }

    /// The distinct effective times strictly inside `(after, before)`, in order.
    pub fn change_points(&self, after: DateTime<Utc>, before: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let set: BTreeSet<_> =
            self.versions.iter().map(|v| v.effective_from).filter(|t| *t > after && *t < before).collect();
        set.into_iter().collect()
    }

    /// The first effective time after `t`: until then a snapshot at `t` holds.
    pub fn next_change_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.versions.iter().map(|v| v.effective_from).filter(|e| *e > t).min()
    }

    /// The changes that make the master data in effect from `at` equal to
    /// `target`: new and changed entities get a version with their value,
    /// entities `target` leaves out get an ending version. Entities new to
    /// the history take effect from `new_from` (e.g. [`SINCE_ALWAYS`]).
    pub fn diff(
        &self,
        target: &MasterData,
        at: DateTime<Utc>,
        new_from: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, serde_json::Error> {
        let current = entities(&self.as_of(at, now)?)?;
        let wanted = entities(target)?;
        let mut changes = Vec::new();
        for (key, value) in &wanted {
            if current.get(key) != Some(value) {
                let known = self.by_entity.contains_key(key);
                changes.push(Change {
                    kind: key.0,
                    id: key.1.clone(),
                    effective_from: if known { at } else { new_from },
                    value: Some(value.clone()),
                    reason: None,
                });
            }
        }
        for key in current.keys() {
            if !wanted.contains_key(key) {
                changes.push(Change { kind: key.0, id: key.1.clone(), effective_from: at, value: None, reason: None });
            }
        }
        // Keep the target's order for new entities (contract lines rate in it).
        let position: HashMap<(Kind, &str), usize> =
            wanted.keys().enumerate().map(|(i, (k, id))| ((*k, id.as_str()), i)).collect();
        changes.sort_by_key(|c| position.get(&(c.kind, c.id.as_str())).copied().unwrap_or(usize::MAX));
        Ok(changes)
    }

    /// The history with `changes` recorded at `now` (not stored).
    pub fn with(&self, changes: &[Change], now: DateTime<Utc>) -> (History, Vec<Version>) {
        let mut seq = self.last_seq();
        let added: Vec<Version> = changes
            .iter()
            .map(|c| {
                seq += 1;
                Version {
                    seq,
                    kind: c.kind,
                    id: c.id.clone(),
                    effective_from: c.effective_from,
                    recorded_at: now,
                    value: c.value.clone(),
                    reason: c.reason.clone(),
                }
            })
            .collect();
        let mut versions = self.versions.clone();
        versions.extend(added.iter().cloned());
        (History::from_versions(versions), added)
    }
}

/// Every entity of a master data document by (kind, id), in document order
/// within a kind (an `IndexMap` would do; a vector of keys keeps it simple).
fn entities(md: &MasterData) -> Result<OrderedEntities, serde_json::Error> {
    let mut out = OrderedEntities::default();
    let doc = serde_json::to_value(md)?;
    for kind in Kind::ALL {
        let id_field = if kind == Kind::Feature { "code" } else { "id" };
        for item in doc.get(kind.collection()).and_then(|v| v.as_array()).into_iter().flatten() {
            let id = item.get(id_field).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            out.insert((kind, id), item.clone());
        }
    }
    Ok(out)
}

/// Entities in insertion order with look-up by key.
#[derive(Default)]
struct OrderedEntities {
    keys: Vec<(Kind, String)>,
    values: BTreeMap<(Kind, String), serde_json::Value>,
}

impl OrderedEntities {
    fn insert(&mut self, key: (Kind, String), value: serde_json::Value) {
        if self.values.insert(key.clone(), value).is_none() {
            self.keys.push(key);
        }
    }
    fn get(&self, key: &(Kind, String)) -> Option<&serde_json::Value> {
        self.values.get(key)
    }
    fn contains_key(&self, key: &(Kind, String)) -> bool {
        self.values.contains_key(key)
    }
    fn keys(&self) -> impl Iterator<Item = &(Kind, String)> {
        self.keys.iter()
    }
}

impl<'a> IntoIterator for &'a OrderedEntities {
    type Item = (&'a (Kind, String), &'a serde_json::Value);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.keys.iter().map(move |k| (k, &self.values[k])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masterdata::Customer;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn customer(id: &str, name: &str) -> Customer {
        Customer {
            id: id.into(),
            name: name.into(),
            legal_entity: "e".into(),
            erp_account: "A".into(),
            parent: None,
            crm_account: None,
        }
    }

    #[test]
    fn versions_are_effective_dated_and_bitemporal() {
        let h = History::default();
        let v1 = MasterData { customers: vec![customer("a", "A1"), customer("b", "B")], ..Default::default() };
        let changes = h.diff(&v1, t("2026-11-10T00:00:00Z"), SINCE_ALWAYS, t("2026-11-01T00:00:00Z")).unwrap();
        assert!(changes.iter().all(|c| c.effective_from == SINCE_ALWAYS), "new entities apply since always");
        let (h, _) = h.with(&changes, t("2026-11-01T00:00:00Z"));

        // Renamed from the 15th, recorded on the 20th; b ends on the 15th.
        let v2 = MasterData { customers: vec![customer("a", "A2")], ..Default::default() };
        let changes = h.diff(&v2, t("2026-11-15T00:00:00Z"), SINCE_ALWAYS, t("2026-11-20T00:00:00Z")).unwrap();
        assert_eq!(changes.len(), 2);
        let (h, added) = h.with(&changes, t("2026-11-20T00:00:00Z"));
        assert_eq!(added.iter().map(|v| v.seq).collect::<Vec<_>>(), [3, 4]);

        let now = t("2026-12-01T00:00:00Z");
        let before = h.as_of(t("2026-11-14T23:00:00Z"), now).unwrap();
        assert_eq!(before.customers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["A1", "B"]);
        let after = h.as_of(t("2026-11-15T00:00:00Z"), now).unwrap();
        assert_eq!(after.customers, vec![customer("a", "A2")]);
        // As known on the 18th, the amendment did not exist yet.
        let then = h.as_of(t("2026-11-16T00:00:00Z"), t("2026-11-18T00:00:00Z")).unwrap();
        assert_eq!(then.customers.len(), 2);
        assert_eq!(h.of(Kind::Customer, "a").len(), 2);
        assert_eq!(h.change_points(t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z")), [t("2026-11-15T00:00:00Z")]);
        assert_eq!(h.next_change_after(t("2026-11-01T00:00:00Z")), Some(t("2026-11-15T00:00:00Z")));
        // Writing the same data again records nothing.
        assert!(h.diff(&after, t("2026-11-15T00:00:00Z"), SINCE_ALWAYS, now).unwrap().is_empty());
    }
}
