//! API keys → tenants. Keys are never stored, only their SHA-256; the tenant
//! of a request always comes from its key, never from its payload.
//!
//! Keys come from two places:
//! - the configuration (`tenants[].api_key_sha256`), for bootstrapping, and
//!   `admin_api_key_sha256`, the operator's keys, which manage keys of any
//!   tenant but are no tenant themselves;
//! - keys created at run time through `POST /v1/api-keys` (or
//!   `tollgate api-key create`), stored hashed in the `api_keys` tree with a
//!   public id, a name and their creation and revocation times.
//!
//! A key is only ever made for a tenant that exists: one the configuration
//! names (`tenants[]`), or one the operator created with the explicit
//! `POST /v1/tenants` call (kept in the `tenants` tree with who created it
//! and when). A typo in a tenant id is refused, naming it.

use crate::config::{TenantConfig, is_valid_id};
use crate::error::{ApiError, ErrorCode};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// The SHA-256 of an API key, hex.
pub fn hash_key(key: &str) -> String {
    hash_key_bytes(key.as_bytes())
}

/// The SHA-256 of bytes, hex: API keys and plugin components alike.
pub fn hash_key_bytes(bytes: &[u8]) -> String {
    tollgate_core::sha256_hex(bytes)
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Tenant(String),
    /// The operator: manages API keys of every tenant, owns no data.
    Admin,
}

/// A stored API key (its secret is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public id, `key_<16 hex>`: what lists show and revocation names.
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key just created: the only time its secret is shown.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    pub key: String,
}

/// Known key hashes and their tenants.
#[derive(Clone)]
pub struct Auth {
    configured: HashMap<String, String>,
    /// The tenant ids the configuration names.
    configured_tenants: HashSet<String>,
    admins: HashSet<String>,
    store: Option<Store>,
}

/// A tenant created at run time by the operator (`POST /v1/tenants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Which operator key created it: the first 12 hex digits of its SHA-256.
    pub created_by: String,
}

/// A tenant as `GET /v1/tenants` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantInfo {
    pub id: String,
    /// `configuration` or `api` (created by `POST /v1/tenants`).
    pub origin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<TenantRecord>,
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::field(ErrorCode::Unauthenticated, "authorization", message)
}

impl Auth {
    pub fn new(tenants: &[TenantConfig], admin_hashes: &[String], store: Option<Store>) -> Auth {
        let configured = tenants
            .iter()
            .flat_map(|t| t.api_key_sha256.iter().map(move |h| (h.to_ascii_lowercase(), t.id.clone())))
            .collect();
        let admins = admin_hashes.iter().map(|h| h.to_ascii_lowercase()).collect();
        let configured_tenants = tenants.iter().map(|t| t.id.clone()).collect();
        Auth { configured, configured_tenants, admins, store }
    }

    /// Whether `tenant` exists: configured, or created by the operator.
    pub fn is_known_tenant(&self, tenant: &str) -> Result<bool, StoreError> {
        if self.configured_tenants.contains(tenant) {
            return Ok(true);
        }
        match &self.store {
            Some(store) => Ok(store.tenants.contains_key(tenant.as_bytes())?),
            None => Ok(false),
        }
    }

    /// Every tenant: the configured ones, then those the operator created.
    pub fn tenants(&self) -> Result<Vec<TenantInfo>, StoreError> {
        let mut out: Vec<TenantInfo> = self
            .configured_tenants
            .iter()
            .map(|id| TenantInfo { id: id.clone(), origin: "configuration", created: None })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(store) = &self.store {
            for (_, r) in store.scan::<TenantRecord>(&store.tenants, b"")? {
                if !self.configured_tenants.contains(&r.id) {
                    out.push(TenantInfo { id: r.id.clone(), origin: "api", created: Some(r) });
                }
            }
        }
        Ok(out)
    }

    /// Creates a tenant (the operator's explicit call); creating one that
    /// exists is refused as a conflict, naming it.
    pub async fn create_tenant(
        &self,
        id: &str,
        name: &str,
        operator_key: &str,
        now: DateTime<Utc>,
    ) -> Result<TenantRecord, ApiError> {
        let store = self.store.as_ref().ok_or_else(|| ApiError::internal("no store for tenants"))?;
        if !is_valid_id(id) {
            return Err(ApiError::field(
                ErrorCode::InvalidArgument,
                "id",
                format!("{id:?}: lowercase letters, digits, '-', '_', 1..=64 bytes"),
            ));
        }
        if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ApiError::field(ErrorCode::InvalidArgument, "name", "1..=128 printable characters"));
        }
        if self.is_known_tenant(id)? {
            return Err(ApiError::field(ErrorCode::Conflict, "id", format!("tenant {id:?} exists already")));
        }
        let record = TenantRecord {
            id: id.into(),
            name: name.into(),
            created_at: now,
            created_by: hash_key(operator_key)[..12].to_string(),
        };
        let bytes = serde_json::to_vec(&record).map_err(StoreError::from)?;
        let created =
            store.tenants.compare_and_swap(id.as_bytes(), None::<&[u8]>, Some(bytes)).map_err(StoreError::from)?;
        if created.is_err() {
            return Err(ApiError::field(ErrorCode::Conflict, "id", format!("tenant {id:?} exists already")));
        }
        store.flush().await?;
        tracing::info!(tenant = id, name, created_by = %record.created_by, "tenant created by the operator");
        Ok(record)
    }

    /// The principal of an `authorization` header value (`Bearer <key>`).
    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let value = authorization.ok_or_else(|| unauthenticated("missing; send `authorization: Bearer <api key>`"))?;
        let key = bearer_token(value).ok_or_else(|| unauthenticated("expected `Bearer <api key>`"))?;
        let hash = hash_key(key);
        if let Some(t) = self.configured.get(&hash) {
            return Ok(Principal::Tenant(t.clone()));
        }
        if self.admins.contains(&hash) {
            return Ok(Principal::Admin);
        }
        if let Some(store) = &self.store {
            match store.get::<ApiKeyRecord>(&store.api_keys, hash.as_bytes()) {
                Ok(Some(r)) if r.revoked_at.is_none() => return Ok(Principal::Tenant(r.tenant)),
                Ok(Some(r)) => return Err(unauthenticated(&format!("api key {} was revoked", r.id))),
                Ok(None) => {}
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
        Err(unauthenticated("unknown api key"))
    }

    /// The tenant of a request; the operator's key is no tenant.
    pub fn tenant(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        match self.principal(authorization)? {
            Principal::Tenant(t) => Ok(t),
            Principal::Admin => Err(ApiError::field(
                ErrorCode::PermissionDenied,
                "authorization",
                "the operator key manages api keys only; use a tenant's key",
            )),
        }
    }
}

/// The key of an `authorization` value: the `Bearer` scheme, matched
/// case-insensitively as HTTP auth schemes are (RFC 9110 §11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|k| !k.is_empty())
}

/// Creates a key for `tenant`, stores its hash and returns the secret once.
/// The caller has checked that the tenant exists ([`Auth::is_known_tenant`]).
pub async fn create_key(store: &Store, tenant: &str, name: &str, now: DateTime<Utc>) -> Result<CreatedKey, ApiError> {
    if !is_valid_id(tenant) {
        return Err(ApiError::field(
            ErrorCode::InvalidArgument,
            "tenant",
            "lowercase letters, digits, '-', '_', 1..=64 bytes",
        ));
    }
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::field(ErrorCode::InvalidArgument, "name", "1..=128 printable characters"));
    }
    let mut secret = [0u8; 32];
    let mut id = [0u8; 8];
    getrandom::fill(&mut secret).and_then(|()| getrandom::fill(&mut id)).map_err(ApiError::internal)?;
    let key = format!("tg_{}", crate::hex(&secret));
    let record = ApiKeyRecord {
        id: format!("key_{}", crate::hex(&id)),
        tenant: tenant.to_string(),
        name: name.to_string(),
        created_at: now,
        revoked_at: None,
    };
    store.put(&store.api_keys, hash_key(&key).as_bytes(), &record)?;
    store.flush().await?;
    tracing::info!(tenant, key_id = %record.id, name, "api key created");
    Ok(CreatedKey { record, key })
}

/// The keys of a tenant (or of every tenant), without secrets.
pub fn list_keys(store: &Store, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let mut keys: Vec<ApiKeyRecord> = store
        .scan::<ApiKeyRecord>(&store.api_keys, b"")?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| tenant.is_none_or(|t| r.tenant == t))
        .collect();
    keys.sort_by(|a, b| (&a.tenant, a.created_at, &a.id).cmp(&(&b.tenant, b.created_at, &b.id)));
    Ok(keys)
}

/// Revokes a key by id; `tenant` limits it to that tenant's keys.
pub async fn revoke_key(
    store: &Store,
    tenant: Option<&str>,
    id: &str,
    now: DateTime<Utc>,
) -> Result<ApiKeyRecord, ApiError> {
    for (k, mut r) in store.scan::<ApiKeyRecord>(&store.api_keys, b"")? {
        if r.id == id && tenant.is_none_or(|t| r.tenant == t) {
            if r.revoked_at.is_none() {
                r.revoked_at = Some(now);
                store.put(&store.api_keys, &k, &r)?;
                store.flush().await?;
                tracing::info!(tenant = %r.tenant, key_id = %r.id, "api key revoked");
            }
            return Ok(r);
        }
    }
    Err(ApiError::field(ErrorCode::NotFound, "id", format!("no api key {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_case_insensitively() {
        for v in ["Bearer k1", "bearer k1", "BEARER k1", "BeArEr   k1 ", "Bearer\tk1"] {
            assert_eq!(bearer_token(v), Some("k1"), "{v:?}");
        }
        for v in ["Basic k1", "Bearer", "Bearer   ", "Bearerk1", "k1", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
