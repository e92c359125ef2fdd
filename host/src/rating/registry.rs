//! The plugin registry: every loaded plugin by name and version.
//!
//! Bundled plugins are read at start-up from `plugins.json` in the bundled
//! directory (written by `cargo xtask build-plugins`). A version is
//! immutable: its identity is the SHA-256 of its bytes.

use super::runtime::{Kind, Plugin, PluginError, Runtime};
use crate::masterdata::{PluginRef, References};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "bundled plugins: reading {path}: {source} (build them with `cargo xtask build-plugins`)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundled plugins: {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("plugin {name}@{version}: {source}")]
    Plugin {
        name: String,
        version: String,
        source: PluginError,
    },
    #[error("plugin {name}@{version} is already registered with different bytes")]
    Immutable { name: String, version: String },
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

/// What a listing shows of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub sha256: String,
}

#[derive(Clone)]
pub struct Registry {
    runtime: Runtime,
    plugins: Arc<RwLock<BTreeMap<String, Vec<Arc<Plugin>>>>>,
}

impl Registry {
    pub fn new(runtime: Runtime) -> Registry {
        Registry {
            runtime,
            plugins: Arc::default(),
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Loads every plugin listed in `<dir>/plugins.json`.
    pub fn load_bundled(&self, dir: &Path) -> Result<usize, RegistryError> {
        let manifest = dir.join("plugins.json");
        let text = std::fs::read(&manifest).map_err(|source| RegistryError::Read {
            path: manifest.clone(),
            source,
        })?;
        let entries: Vec<BundledEntry> =
            serde_json::from_slice(&text).map_err(|e| RegistryError::Manifest {
                path: manifest.clone(),
                message: e.to_string(),
            })?;
        for e in &entries {
            let path = dir.join(&e.file);
            let bytes = std::fs::read(&path).map_err(|source| RegistryError::Read {
                path: path.clone(),
                source,
            })?;
            let version =
                semver::Version::parse(&e.version).map_err(|err| RegistryError::Manifest {
                    path: manifest.clone(),
                    message: format!("{}: version {:?}: {err}", e.name, e.version),
                })?;
            self.register(&e.name, version, e.kind, &bytes)?;
        }
        Ok(entries.len())
    }

    /// Compiles, checks and adds a plugin version. Registering the same bytes
    /// again is a no-op; other bytes under a registered version are refused.
    pub fn register(
        &self,
        name: &str,
        version: semver::Version,
        kind: Kind,
        bytes: &[u8],
    ) -> Result<Arc<Plugin>, RegistryError> {
        let err = |source| RegistryError::Plugin {
            name: name.into(),
            version: version.to_string(),
            source,
        };
        let plugin = Arc::new(
            self.runtime
                .load(name, version.clone(), kind, bytes)
                .map_err(err)?,
        );
        let mut all = self.plugins.write().unwrap_or_else(|p| p.into_inner());
        let versions = all.entry(name.to_string()).or_default();
        if let Some(existing) = versions.iter().find(|p| p.version == version) {
            if existing.sha256 == plugin.sha256 {
                return Ok(existing.clone());
            }
            return Err(RegistryError::Immutable {
                name: name.into(),
                version: version.to_string(),
            });
        }
        versions.push(plugin.clone());
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        tracing::info!(plugin = name, %version, sha256 = %plugin.sha256, ?kind, "plugin registered");
        Ok(plugin)
    }

    /// The plugin `name` of `kind`, at `version` or the newest.
    pub fn find(
        &self,
        name: &str,
        version: Option<&str>,
        kind: Kind,
    ) -> Result<Arc<Plugin>, String> {
        let all = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        let versions = all
            .get(name)
            .ok_or_else(|| format!("no plugin named {name:?}"))?;
        let found = match version {
            Some(v) => {
                let v = semver::Version::parse(v).map_err(|e| format!("version {v:?}: {e}"))?;
                versions
                    .iter()
                    .find(|p| p.version == v)
                    .ok_or_else(|| format!("plugin {name} has no version {v}"))?
            }
            None => versions
                .last()
                .ok_or_else(|| format!("plugin {name} has no versions"))?,
        };
        if found.kind != kind {
            return Err(format!(
                "plugin {name} is a {:?}, not a {kind:?}",
                found.kind
            ));
        }
        Ok(found.clone())
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        let all = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        all.values()
            .flatten()
            .map(|p| PluginInfo {
                name: p.name.clone(),
                version: p.version.to_string(),
                kind: p.kind,
                sha256: p.sha256.clone(),
            })
            .collect()
    }
}

/// Master-data references checked against the registry and the ERP targets.
pub struct RegistryRefs<'a> {
    pub registry: &'a Registry,
    pub targets: &'a BTreeMap<String, crate::config::ErpTargetConfig>,
}

impl References for RegistryRefs<'_> {
    fn rater(&self, r: &PluginRef) -> Result<(), String> {
        self.registry
            .find(&r.plugin, r.version.as_deref(), Kind::Rater)
            .map(|_| ())
    }
    fn erp_target_exists(&self, name: &str) -> bool {
        self.targets.contains_key(name)
    }
}
