//! The registry: plugin versions by owner and name, loading, uploads,
//! residency.

use super::error::{FindError, RegistryError};
use super::limits::{Quota, QuotaUse, Residency};
use crate::{Kind, Plugin, PluginError, Runtime};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tollgate_core::sha256_hex;
use tollgate_store::store::{self, Store, StoreError};

/// How a plugin version comes in: a new upload must implement a live
/// interface; bundled and stored plugins may implement a deprecated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    Upload,
    Stored,
}

/// Who a plugin belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Bundled,
    Tenant(String),
}

/// One entry of `plugins.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BundledEntry {
    name: String,
    version: String,
    kind: Kind,
    file: String,
}

/// An uploaded plugin version as stored (`plugins` tree; bytes in `blobs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UploadRecord {
    pub(super) tenant: String,
    pub(super) name: String,
    pub(super) version: String,
    pub(super) kind: Kind,
    pub(super) sha256: String,
    pub(super) size: usize,
    pub(super) uploaded_at: DateTime<Utc>,
}

/// What a listing shows of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    /// The versioned world it implements, e.g. `tollgate:plugin/rater@0.2.0`.
    pub world: &'static str,
    pub sha256: String,
    /// `bundled`, or `tenant` for the caller's own uploads.
    pub owner: &'static str,
    /// Whether its compiled code is in memory now (an upload is loaded on
    /// use and unloaded when idle; bundled plugins always are).
    pub loaded: bool,
    /// Bytes its compiled code holds in memory, while loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_bytes: Option<u64>,
}

/// One plugin version: what it is, and its compiled code while loaded.
pub(super) struct Entry {
    name: String,
    version: semver::Version,
    kind: Kind,
    sha256: String,
    world: &'static str,
    /// Where its bytes are read again after an unload: `None` for a
    /// bundled plugin, which is never unloaded.
    blobs: Option<sled::Tree>,
    loaded: std::sync::Mutex<Option<Loaded>>,
}

pub(super) struct Loaded {
    plugin: Arc<Plugin>,
    last_used: std::time::Instant,
}

impl Entry {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Loaded>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) type Versions = BTreeMap<(Owner, String), Vec<Arc<Entry>>>;

#[derive(Clone)]
pub struct Registry {
    runtime: Runtime,
    plugins: Arc<RwLock<Versions>>,
    quota: Quota,
    residency: Residency,
    /// Upload attempts in the last hour, per tenant.
    attempts: Arc<std::sync::Mutex<BTreeMap<String, std::collections::VecDeque<std::time::Instant>>>>,
}

/// Whether `s` is a valid plugin name: lowercase letters, digits and '-'.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Registry {
    pub fn new(runtime: Runtime) -> Registry {
        Registry {
            runtime,
            plugins: Arc::default(),
            quota: Quota::default(),
            residency: Residency::default(),
            attempts: Arc::default(),
        }
    }

    /// The registry with this bound on loaded uploads.
    pub fn with_residency(self, residency: Residency) -> Registry {
        Registry { residency, ..self }
    }

    /// The registry with these upload quotas.
    pub fn with_quota(self, quota: Quota) -> Registry {
        Registry { quota, ..self }
    }

    /// A tenant's stored versions and their bytes, and its upload attempts
    /// in the last hour.
    pub fn quota_use(&self, store: &Store, tenant: &str) -> Result<QuotaUse, RegistryError> {
        let records = store.scan::<UploadRecord>(&store.plugins, &store::prefix(&[tenant]))?;
        let hour_ago = std::time::Instant::now().checked_sub(std::time::Duration::from_secs(3600));
        let recent = self
            .attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .map_or(0, |a| a.iter().filter(|t| hour_ago.is_none_or(|h| **t > h)).count() as u64);
        Ok(QuotaUse {
            versions: records.len() as u64,
            max_versions: self.quota.versions,
            bytes: records.iter().map(|(_, r)| r.size as u64).sum(),
            max_bytes: self.quota.bytes,
            uploads_last_hour: recent,
            max_uploads_per_hour: self.quota.uploads_per_hour,
        })
    }

    /// Counts an upload attempt, refusing it beyond the hourly quota, then
    /// checks that a new version of `size` bytes fits the tenant's quota.
    fn admit_upload(&self, store: &Store, tenant: &str, size: usize, new: bool) -> Result<(), RegistryError> {
        let quota =
            |what, used, limit, setting| RegistryError::Quota { tenant: tenant.into(), what, used, limit, setting };
        {
            let now = std::time::Instant::now();
            let mut all = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let a = all.entry(tenant.to_string()).or_default();
            while a.front().is_some_and(|t| now.duration_since(*t) > std::time::Duration::from_secs(3600)) {
                a.pop_front();
            }
            if a.len() as u64 >= self.quota.uploads_per_hour {
                return Err(quota(
                    "uploads in the last hour",
                    a.len() as u64,
                    self.quota.uploads_per_hour,
                    "plugins.quota_uploads_per_hour",
                ));
            }
            a.push_back(now);
        }
        if !new {
            return Ok(());
        }
        let used = self.quota_use(store, tenant)?;
        if used.versions >= used.max_versions {
            return Err(quota("plugin versions", used.versions, used.max_versions, "plugins.quota_versions"));
        }
        if used.bytes + size as u64 > used.max_bytes {
            return Err(quota(
                "plugin bytes (with this upload)",
                used.bytes + size as u64,
                used.max_bytes,
                "plugins.quota_mib",
            ));
        }
        Ok(())
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Loads every plugin listed in `<dir>/plugins.json` as bundled.
    pub fn load_bundled(&self, dir: &Path) -> Result<usize, RegistryError> {
        let manifest = dir.join("plugins.json");
        let text = std::fs::read(&manifest).map_err(|source| RegistryError::Read { path: manifest.clone(), source })?;
        let entries: Vec<BundledEntry> = serde_json::from_slice(&text)
            .map_err(|e| RegistryError::Manifest { path: manifest.clone(), message: e.to_string() })?;
        for e in &entries {
            let path = dir.join(&e.file);
            let bytes = std::fs::read(&path).map_err(|source| RegistryError::Read { path: path.clone(), source })?;
            let version = semver::Version::parse(&e.version).map_err(|err| RegistryError::Manifest {
                path: manifest.clone(),
                message: format!("{}: version {:?}: {err}", e.name, e.version),
            })?;
            self.register(Owner::Bundled, &e.name, version, e.kind, &bytes)?;
        }
        Ok(entries.len())
    }

    /// Reloads every tenant upload kept in the store. One that cannot be
    /// loaded (its bytes missing, a version that does not parse, a
    /// component this build refuses) is left out with an error naming it:
    /// one tenant's stored plugin never stops the gateway from starting.
    pub fn load_uploaded(&self, store: &Store) -> Result<usize, RegistryError> {
        let records = store.scan::<UploadRecord>(&store.plugins, b"")?;
        let mut loaded = 0;
        for (_, r) in &records {
            let load = || -> Result<(), RegistryError> {
                let bytes = store
                    .blobs
                    .get(r.sha256.as_bytes())
                    .map_err(StoreError::from)?
                    .ok_or_else(|| StoreError::Aborted(format!("bytes {} missing", r.sha256)))?;
                let version = semver::Version::parse(&r.version)
                    .map_err(|e| StoreError::Aborted(format!("stored version {:?}: {e}", r.version)))?;
                let owner = Owner::Tenant(r.tenant.clone());
                self.register_as(owner, &r.name, version, r.kind, &bytes, Admit::Stored, Some(store.blobs.clone()))?;
                Ok(())
            };
            match load() {
                Ok(()) => loaded += 1,
                Err(e) => tracing::error!(tenant = %r.tenant, plugin = %r.name, version = %r.version, error = %e,
                    "an uploaded plugin could not be loaded; left out (contract lines rated by it go to the exception queue)"),
            }
        }
        Ok(loaded)
    }

    /// A tenant's upload: checked, compiled, registered and made durable.
    /// Returns the plugin and whether it is new (an identical re-upload is not).
    pub async fn upload(
        &self,
        store: &Store,
        tenant: &str,
        name: &str,
        version: semver::Version,
        kind: Kind,
        bytes: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Plugin>, bool), RegistryError> {
        if self.read().keys().any(|(o, n)| *o == Owner::Bundled && n == name) {
            return Err(RegistryError::Reserved(name.into()));
        }
        let owner = Owner::Tenant(tenant.into());
        let existed = self.version(&owner, name, &version);
        self.admit_upload(store, tenant, bytes.len(), existed.is_none())?;
        let registry = self.clone();
        let (n, v, b, blobs) = (name.to_string(), version.clone(), bytes.clone(), store.blobs.clone());
        let plugin = tokio::task::spawn_blocking(move || {
            registry.register_as(owner, &n, v, kind, &b, Admit::Upload, Some(blobs))
        })
        .await
        .map_err(|e| StoreError::Aborted(format!("compile task: {e}")))??;
        if existed.is_none() {
            let record = UploadRecord {
                tenant: tenant.into(),
                name: name.into(),
                version: version.to_string(),
                kind,
                sha256: plugin.sha256.clone(),
                size: bytes.len(),
                uploaded_at: now,
            };
            store.blobs.insert(plugin.sha256.as_bytes(), bytes).map_err(StoreError::from)?;
            store.put(&store.plugins, &store::key(&[tenant, name, &version.to_string()]), &record)?;
            store.flush().await?;
            tracing::info!(tenant, plugin = name, %version, sha256 = %plugin.sha256, "plugin uploaded");
        }
        Ok((plugin, existed.is_none()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner())
    }

    fn version(&self, owner: &Owner, name: &str, version: &semver::Version) -> Option<Arc<Entry>> {
        self.read().get(&(owner.clone(), name.to_string()))?.iter().find(|p| p.version == *version).cloned()
    }

    /// Compiles, checks and adds a plugin version that stays loaded (bundled,
    /// or given by its bytes; uploads kept in the store are registered with
    /// their blobs, to be unloaded and loaded again). The same bytes again
    /// are a no-op; other bytes under a registered version are refused.
    pub fn register(
        &self,
        owner: Owner,
        name: &str,
        version: semver::Version,
        kind: Kind,
        bytes: &[u8],
    ) -> Result<Arc<Plugin>, RegistryError> {
        self.register_as(owner, name, version, kind, bytes, Admit::Stored, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn register_as(
        &self,
        owner: Owner,
        name: &str,
        version: semver::Version,
        kind: Kind,
        bytes: &[u8],
        admit: Admit,
        blobs: Option<sled::Tree>,
    ) -> Result<Arc<Plugin>, RegistryError> {
        let sha = sha256_hex(bytes);
        let same = |existing: &Arc<Entry>| -> Result<(), RegistryError> {
            if existing.sha256 != sha {
                Err(RegistryError::Immutable {
                    name: name.into(),
                    version: version.to_string(),
                    existing: existing.sha256.clone(),
                })
            } else if existing.kind != kind {
                Err(RegistryError::KindChanged {
                    name: name.into(),
                    version: version.to_string(),
                    existing: existing.kind,
                    kind,
                })
            } else {
                Ok(())
            }
        };
        if let Some(existing) = self.version(&owner, name, &version) {
            same(&existing)?;
            return self.plugin(&existing).map_err(|source| RegistryError::Plugin {
                name: name.into(),
                version: version.to_string(),
                source,
            });
        }
        let err = |source| RegistryError::Plugin { name: name.into(), version: version.to_string(), source };
        let plugin = Arc::new(self.runtime.load(name, version.clone(), kind, bytes).map_err(err)?);
        if admit == Admit::Upload && crate::is_deprecated(plugin.world()) {
            let newest = kind.worlds()[0];
            return Err(err(PluginError::IncompatibleInterface(format!(
                "implements {}, which is deprecated: plugins uploaded before keep running, but a new upload must \
                 implement {newest} (SDK feature `rater-v0-4`; see wit/README.md)",
                plugin.world()
            ))));
        }
        let entry = Arc::new(Entry {
            name: name.into(),
            version: version.clone(),
            kind,
            sha256: plugin.sha256.clone(),
            world: plugin.world(),
            blobs,
            loaded: std::sync::Mutex::new(Some(Loaded {
                plugin: plugin.clone(),
                last_used: std::time::Instant::now(),
            })),
        });
        {
            let mut all = self.plugins.write().unwrap_or_else(|p| p.into_inner());
            let versions = all.entry((owner.clone(), name.to_string())).or_default();
            if let Some(raced) = versions.iter().find(|p| p.version == version) {
                same(raced)?;
                return Ok(plugin);
            }
            versions.push(entry.clone());
            versions.sort_by(|a, b| a.version.cmp(&b.version));
        }
        tracing::info!(?owner, plugin = name, %version, sha256 = %plugin.sha256, ?kind, "plugin registered");
        self.bound_residency(&entry);
        Ok(plugin)
    }

    /// The entry's compiled plugin, loaded again from its stored bytes
    /// (and the compiled cache) when it was unloaded.
    fn plugin(&self, entry: &Arc<Entry>) -> Result<Arc<Plugin>, PluginError> {
        let plugin = {
            let mut slot = entry.slot();
            if let Some(l) = slot.as_mut() {
                l.last_used = std::time::Instant::now();
                return Ok(l.plugin.clone());
            }
            let missing = |why: String| PluginError::Trap { message: why, backtrace: String::new() };
            let blobs = entry.blobs.as_ref().ok_or_else(|| missing("a bundled plugin was unloaded".into()))?;
            let bytes = blobs
                .get(entry.sha256.as_bytes())
                .map_err(|e| missing(format!("reading its stored bytes: {e}")))?
                .ok_or_else(|| missing(format!("its stored bytes (sha256 {}) are missing", entry.sha256)))?;
            let plugin = Arc::new(self.runtime.load(&entry.name, entry.version.clone(), entry.kind, &bytes)?);
            if plugin.sha256 != entry.sha256 {
                return Err(missing(format!("its stored bytes hash to {}, not {}", plugin.sha256, entry.sha256)));
            }
            tracing::debug!(plugin = %entry.name, version = %entry.version, "plugin loaded again on use");
            *slot = Some(Loaded { plugin: plugin.clone(), last_used: std::time::Instant::now() });
            plugin
        };
        self.bound_residency(entry);
        Ok(plugin)
    }

    /// Every unloadable (uploaded) entry with its code size and last use, while loaded.
    fn resident(&self) -> Vec<(Arc<Entry>, u64, std::time::Instant)> {
        let all = self.read();
        let entries = all.values().flatten().filter(|e| e.blobs.is_some());
        entries
            .filter_map(|e| {
                let slot = e.slot();
                let l = slot.as_ref()?;
                Some((e.clone(), l.plugin.code_bytes(), l.last_used))
            })
            .collect()
    }

    /// Unloads the least recently used uploads (never `keep`) while the
    /// loaded code is over `plugins.loaded_mib`.
    fn bound_residency(&self, keep: &Arc<Entry>) {
        let mut resident = self.resident();
        let mut total: u64 = resident.iter().map(|(_, bytes, _)| bytes).sum();
        if total <= self.residency.max_bytes {
            return;
        }
        resident.sort_by_key(|(_, _, used)| *used);
        for (entry, bytes, _) in resident {
            if total <= self.residency.max_bytes {
                break;
            }
            if Arc::ptr_eq(&entry, keep) {
                continue;
            }
            *entry.slot() = None;
            total -= bytes;
            tracing::debug!(plugin = %entry.name, version = %entry.version, bytes, "plugin unloaded (plugins.loaded_mib)");
        }
    }

    /// Unloads the uploads not used for `plugins.unload_idle_secs`; returns
    /// how many. Called periodically by the server.
    pub fn unload_idle(&self) -> usize {
        let now = std::time::Instant::now();
        let mut unloaded = 0;
        for (entry, _, _) in self.resident() {
            let mut slot = entry.slot();
            if slot.as_ref().is_some_and(|l| now.duration_since(l.last_used) >= self.residency.idle) {
                *slot = None;
                unloaded += 1;
            }
        }
        if unloaded > 0 {
            tracing::debug!(plugins = unloaded, "idle plugins unloaded");
        }
        unloaded
    }

    /// How often [`Registry::unload_idle`] should run.
    pub fn idle_check_every(&self) -> std::time::Duration {
        (self.residency.idle / 4).clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(60))
    }

    /// The plugin `name` of `kind` visible to `tenant` (its own first, then
    /// bundled), at `version` or the newest.
    pub fn find(&self, tenant: &str, name: &str, version: Option<&str>, kind: Kind) -> Result<Arc<Plugin>, FindError> {
        let all = self.read();
        let versions = all
            .get(&(Owner::Tenant(tenant.into()), name.to_string()))
            .or_else(|| all.get(&(Owner::Bundled, name.to_string())))
            .ok_or_else(|| FindError::NoPlugin(name.into()))?;
        let found = match version {
            Some(v) => {
                let parsed = semver::Version::parse(v)
                    .map_err(|e| FindError::BadVersion { version: v.into(), reason: e.to_string() })?;
                versions
                    .iter()
                    .find(|p| p.version == parsed)
                    .ok_or_else(|| FindError::NoVersion { name: name.into(), version: parsed.to_string() })?
            }
            None => versions.last().ok_or_else(|| FindError::NoVersions(name.into()))?,
        };
        if found.kind != kind {
            return Err(FindError::WrongKind { name: name.into(), found: found.kind, wanted: kind });
        }
        let found = found.clone();
        drop(all);
        self.plugin(&found).map_err(|source| FindError::Load {
            name: name.into(),
            version: found.version.to_string(),
            source,
        })
    }

    /// The plugins `tenant` can see: its own and the bundled ones.
    pub fn list(&self, tenant: &str) -> Vec<PluginInfo> {
        let mine = Owner::Tenant(tenant.into());
        self.read()
            .iter()
            .filter(|((owner, _), _)| *owner == Owner::Bundled || *owner == mine)
            .flat_map(|((owner, _), versions)| {
                versions.iter().map(move |p| {
                    let code_bytes = p.slot().as_ref().map(|l| l.plugin.code_bytes());
                    PluginInfo {
                        name: p.name.clone(),
                        version: p.version.to_string(),
                        kind: p.kind,
                        world: p.world,
                        sha256: p.sha256.clone(),
                        owner: if *owner == Owner::Bundled { "bundled" } else { "tenant" },
                        loaded: code_bytes.is_some(),
                        code_bytes,
                    }
                })
            })
            .collect()
    }
}
