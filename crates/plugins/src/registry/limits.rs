//! What each tenant may upload, and how much compiled code stays loaded.

use serde::Serialize;

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
