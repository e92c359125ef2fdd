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

mod error;
mod limits;
#[cfg(test)]
mod tests;
mod versions;

pub use error::{FindError, RegistryError};
pub use limits::{Quota, QuotaUse, Residency};
pub use versions::{Owner, PluginInfo, Registry, is_valid_name};
