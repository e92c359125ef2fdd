//! Activations: which rater version rates a contract line, from when.
//!
//! An activation names a plugin and an exact version for one contract line of
//! one tenant, effective from an instant. The version that rates a billing
//! period is the one in effect at the period's end (the latest activation
//! effective before it), so activating during an open period applies to the
//! whole period at close; a closed period keeps the version pinned in its
//! charges. Without any activation the contract line's own `rater` applies.
//! Rollback is activating an earlier version. History is never overwritten.

use crate::error::{ApiError, ErrorCode};
use crate::masterdata::{ContractLine, MasterData};
use crate::plugins::registry::{FindError, Registry};
use crate::plugins::{Kind, Plugin};
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a client sends to activate a version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationRequest {
    pub contract_line: String,
    pub plugin: String,
    pub version: String,
    pub effective_from: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub contract_line: String,
    pub plugin: String,
    pub version: String,
    /// SHA-256 of the activated version, pinned at activation.
    pub sha256: String,
    pub effective_from: DateTime<Utc>,
    pub activated_at: DateTime<Utc>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Records an activation after checking the contract line and the plugin.
pub async fn activate(
    store: &Store,
    registry: &Registry,
    md: &MasterData,
    tenant: &str,
    req: ActivationRequest,
    now: DateTime<Utc>,
) -> Result<Activation, ApiError> {
    if !md.contract_lines.iter().any(|l| l.id == req.contract_line) {
        return Err(ApiError::field(
            ErrorCode::NotFound,
            "contract_line",
            format!("no contract line {:?}", req.contract_line),
        ));
    }
    semver::Version::parse(&req.version).map_err(|e| {
        ApiError::field(
            ErrorCode::InvalidArgument,
            "version",
            format!("{:?} is not a semver version: {e}", req.version),
        )
    })?;
    let plugin = registry
        .find(tenant, &req.plugin, Some(&req.version), Kind::Rater)
        .map_err(|e| ApiError::field(ErrorCode::NotFound, "plugin", e.to_string()))?;
    let activation = Activation {
        contract_line: req.contract_line,
        plugin: req.plugin,
        version: req.version,
        sha256: plugin.sha256.clone(),
        effective_from: req.effective_from,
        activated_at: now,
    };
    let key = store::key(&[tenant, &activation.contract_line, &ts(activation.effective_from), &ts(now)]);
    store.put(&store.activations, &key, &activation)?;
    store.flush().await?;
    tracing::info!(tenant, contract_line = %activation.contract_line, plugin = %activation.plugin, version = %activation.version,
        effective_from = %activation.effective_from, "rater activated");
    Ok(activation)
}

/// Every activation of a contract line, oldest effective first.
pub fn history(store: &Store, tenant: &str, contract_line: &str) -> Result<Vec<Activation>, StoreError> {
    Ok(store
        .scan::<Activation>(&store.activations, &store::prefix(&[tenant, contract_line]))?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// The activation in effect just before `at`: the latest effective one,
/// and of those the latest made.
pub fn in_effect(
    store: &Store,
    tenant: &str,
    contract_line: &str,
    at: DateTime<Utc>,
) -> Result<Option<Activation>, StoreError> {
    Ok(history(store, tenant, contract_line)?
        .into_iter()
        .filter(|a| a.effective_from < at)
        .max_by(|a, b| (a.effective_from, a.activated_at).cmp(&(b.effective_from, b.activated_at))))
}

/// The rater of `line` for a period ending at `period_end`.
pub fn rater_for(
    store: &Store,
    registry: &Registry,
    tenant: &str,
    line: &ContractLine,
    period_end: DateTime<Utc>,
) -> Result<Arc<Plugin>, RaterError> {
    match in_effect(store, tenant, &line.id, period_end)? {
        Some(a) => {
            let p = registry.find(tenant, &a.plugin, Some(&a.version), Kind::Rater)?;
            if p.sha256 != a.sha256 {
                return Err(RaterError::Changed { plugin: a.plugin, version: a.version, sha256: a.sha256 });
            }
            Ok(p)
        }
        None => Ok(registry.find(tenant, &line.rater.plugin, line.rater.version.as_deref(), Kind::Rater)?),
    }
}

/// Why a contract line has no rater to rate with.
#[derive(Debug, thiserror::Error)]
pub enum RaterError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("{plugin}@{version} no longer has the activated sha256 {sha256}")]
    Changed { plugin: String, version: String, sha256: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
