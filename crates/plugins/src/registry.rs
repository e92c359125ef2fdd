//! The plugin registry: every loaded plugin by owner, name and version.
//!
//! - Bundled plugins are read at start-up from `plugins.json` in the bundled
//!   directory (written by `cargo xtask build-plugins`); every tenant sees them.
//! - Tenants upload their own (`POST /v1/plugins`); a tenant sees and uses
//!   only its own plus the bundled ones. Uploads are kept in the store
//!   (`plugins` records, `blobs` by SHA-256) and reloaded at start-up.
//!
//! A version is immutable: its identity is the SHA-256 of its bytes; the
//! same name and version with other bytes is refused.
//!
//! The memory loaded plugins hold is bounded: an upload is compiled (and
//! checked) when it comes in or at start-up, then kept only while used. It
//! is loaded again on its next use (from the compiled cache, a fraction of
//! a millisecond), unloaded after `plugins.unload_idle_secs` without a call,
//! and the least recently used uploads are unloaded whenever the compiled
//! code of the loaded ones exceeds `plugins.loaded_mib` (the one in use
//! stays, even alone over the bound). Bundled plugins stay loaded.

use crate::{Kind, Plugin, PluginError, Runtime};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tollgate_core::error::{ApiError, ErrorCode};
use tollgate_core::hex;
use tollgate_store::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("bundled plugins: reading {path}: {source} (build them with `cargo xtask build-plugins`)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bundled plugins: {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("plugin {name}@{version}: {source}")]
    Plugin { name: String, version: String, source: PluginError },
    #[error("plugin {name}@{version} already exists with other bytes (sha256 {existing}); versions are immutable")]
    Immutable { name: String, version: String, existing: String },
    #[error("plugin name {0:?} belongs to a bundled plugin")]
    Reserved(String),
    #[error("plugin {name}@{version} is a {existing:?}, not a {kind:?}")]
    KindChanged { name: String, version: String, existing: Kind, kind: Kind },
    #[error("tenant {tenant}: {what}: {used}, at most {limit} ({setting})")]
    Quota { tenant: String, what: &'static str, used: u64, limit: u64, setting: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A registry error as the client sees it: which field, and the code.
impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as R;
        match e {
            R::Plugin { source, .. } => {
                ApiError::field(ErrorCode::InvalidArgument, "body", source.to_string()).with_reason(source.code())
            }
            R::Immutable { .. } => ApiError::field(ErrorCode::Conflict, "version", e.to_string()),
            R::Reserved(_) => ApiError::field(ErrorCode::Conflict, "name", e.to_string()),
            R::KindChanged { .. } => ApiError::field(ErrorCode::Conflict, "kind", e.to_string()),
            R::Quota { what, .. } => {
                let retry = what.starts_with("uploads").then_some(60_000);
                let mut a = ApiError::field(ErrorCode::ResourceExhausted, "body", e.to_string()).with_reason("quota");
                a.retry_after_ms = retry;
                a
            }
            R::Store(s) => ApiError::internal(s),
            R::Read { .. } | R::Manifest { .. } => ApiError::internal(e),
        }
    }
}

/// Why [`Registry::find`] found no usable plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    #[error("no plugin named {0:?}")]
    NoPlugin(String),
    #[error("version {version:?}: {reason}")]
    BadVersion { version: String, reason: String },
    #[error("plugin {name} has no version {version}")]
    NoVersion { name: String, version: String },
    #[error("plugin {0} has no versions")]
    NoVersions(String),
    #[error("plugin {name} is a {found:?}, not a {wanted:?}")]
    WrongKind { name: String, found: Kind, wanted: Kind },
    #[error("plugin {name}@{version} could not be loaded: {source}")]
    Load { name: String, version: String, source: PluginError },
}

/// How much compiled code of uploads stays loaded (`plugins.loaded_mib`,
/// `plugins.unload_idle_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residency {
    pub max_bytes: u64,
    pub idle: std::time::Duration,
}

impl Default for Residency {
    fn default() -> Self {
        Residency { max_bytes: 256 << 20, idle: std::time::Duration::from_secs(900) }
    }
}

/// What each tenant may upload (`plugins.quota_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Plugin versions stored per tenant.
    pub versions: u64,
    /// Their bytes per tenant.
    pub bytes: u64,
    /// Upload attempts per tenant in any hour (refused ones count: each is
    /// compiled).
    pub uploads_per_hour: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota { versions: 100, bytes: 256 << 20, uploads_per_hour: 60 }
    }
}

/// A tenant's use of its plugin quota, as `GET /v1/plugins` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaUse {
    pub versions: u64,
    pub max_versions: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub uploads_last_hour: u64,
    pub max_uploads_per_hour: u64,
}

/// How a plugin version comes in: a new upload must implement a live
/// interface; bundled and stored plugins may implement a deprecated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
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
struct BundledEntry {
    name: String,
    version: String,
    kind: Kind,
    file: String,
}

/// An uploaded plugin version as stored (`plugins` tree; bytes in `blobs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    tenant: String,
    name: String,
    version: String,
    kind: Kind,
    sha256: String,
    size: usize,
    uploaded_at: DateTime<Utc>,
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
struct Entry {
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

struct Loaded {
    plugin: Arc<Plugin>,
    last_used: std::time::Instant,
}

impl Entry {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Loaded>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Versions = BTreeMap<(Owner, String), Vec<Arc<Entry>>>;

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
                uploaded_at: Utc::now(),
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
        let sha = hex(&Sha256::digest(bytes));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use crate::fixtures::FixtureInput;
    use rust_decimal::Decimal;

    /// A test component as `cargo xtask build-plugins` left it.
    fn component(name: &str) -> Vec<u8> {
        let dir = std::env::var_os("TOLLGATE_TEST_COMPONENTS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-components"));
        let path = dir.join(format!("{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask test`)", path.display()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deprecated_interface_is_refused_for_upload_but_a_stored_upload_of_it_still_runs() {
        let dir = std::env::temp_dir().join(format!("tollgate-registry-deprecated-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let registry = Registry::new(Runtime::new(Limits::default(), None).unwrap());
        let (v1, v2) = (component("legacy-rater-v0-1"), component("legacy-rater-v0-2"));
        let version = semver::Version::new(1, 0, 0);

        let err =
            registry.upload(&store, "acme", "legacy", version.clone(), Kind::Rater, v1.clone()).await.unwrap_err();
        let RegistryError::Plugin { source, .. } = &err else { panic!("{err}") };
        assert_eq!(source.code(), "incompatible-interface");
        let text = err.to_string();
        assert!(text.contains("tollgate:plugin/rater@0.1.0, which is deprecated"), "{text}");
        assert!(text.contains("must implement tollgate:plugin/rater@0.4.0"), "{text}");
        assert!(registry.list("acme").iter().all(|p| p.name != "legacy"), "nothing registered");
        assert!(store.scan::<UploadRecord>(&store.plugins, b"").unwrap().is_empty(), "nothing stored");
        // The older live interface is still accepted.
        let (p, new) = registry.upload(&store, "acme", "current", version.clone(), Kind::Rater, v2).await.unwrap();
        assert!(new);
        assert_eq!(p.world(), "tollgate:plugin/rater@0.2.0");

        // An upload of 0.1.0 stored before the deprecation, as the gateway
        // finds it at start-up: it loads and rates.
        let sha = hex(&Sha256::digest(&v1));
        store.blobs.insert(sha.as_bytes(), v1.as_slice()).unwrap();
        let record = UploadRecord {
            tenant: "acme".into(),
            name: "legacy".into(),
            version: version.to_string(),
            kind: Kind::Rater,
            sha256: sha,
            size: v1.len(),
            uploaded_at: Utc::now(),
        };
        store.put(&store.plugins, &store::key(&["acme", "legacy", "1.0.0"]), &record).unwrap();
        // And one whose bytes are gone (damaged store): left out, the start goes on.
        let lost = UploadRecord { name: "lost".into(), sha256: "00".repeat(32), ..record.clone() };
        store.put(&store.plugins, &store::key(&["acme", "lost", "1.0.0"]), &lost).unwrap();
        let restarted = Registry::new(Runtime::new(Limits::default(), None).unwrap());
        assert_eq!(restarted.load_uploaded(&store).unwrap(), 2);
        assert!(restarted.find("acme", "lost", None, Kind::Rater).is_err());
        let legacy = restarted.find("acme", "legacy", None, Kind::Rater).unwrap();
        assert_eq!(legacy.world(), "tollgate:plugin/rater@0.1.0");
        let fixture: FixtureInput =
            serde_json::from_value(serde_json::json!({ "quantity": "250", "params": {} })).unwrap();
        let input = fixture.to_usage().unwrap();
        let charges = restarted.runtime().rate(&legacy, &input).unwrap();
        assert_eq!(charges[0].amount, Decimal::new(250, 2));
        // Re-uploading the very same version is the usual no-op, not a refusal.
        let (_, new) = restarted.upload(&store, "acme", "legacy", version, Kind::Rater, v1).await.unwrap();
        assert!(!new);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
