//! Why the registry refused or found nothing, and how the client sees it.

use crate::{Kind, PluginError};
use std::path::PathBuf;
use tollgate_core::error::{ApiError, ErrorCode};
use tollgate_store::store::StoreError;

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
