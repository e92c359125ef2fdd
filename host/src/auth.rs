//! API keys → tenants. Keys are never stored, only their SHA-256; the tenant
//! of a request always comes from its key, never from its payload.

use crate::config::TenantConfig;
use crate::error::{ApiError, ErrorCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The SHA-256 of an API key, hex.
pub fn hash_key(key: &str) -> String {
    hash_key_bytes(key.as_bytes())
}

/// The SHA-256 of bytes, hex: API keys and plugin components alike.
pub fn hash_key_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Known key hashes and their tenants.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tenants_by_hash: HashMap<String, String>,
}

impl Auth {
    pub fn new(tenants: &[TenantConfig]) -> Auth {
        let tenants_by_hash = tenants
            .iter()
            .flat_map(|t| t.api_key_sha256.iter().map(move |h| (h.to_ascii_lowercase(), t.id.clone())))
            .collect();
        Auth { tenants_by_hash }
    }

    /// The tenant of an `authorization` header value (`Bearer <key>`).
    pub fn tenant(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        let value = authorization.ok_or_else(|| {
            ApiError::field(
                ErrorCode::Unauthenticated,
                "authorization",
                "missing; send `authorization: Bearer <api key>`",
            )
        })?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::field(ErrorCode::Unauthenticated, "authorization", "expected `Bearer <api key>`")
            })?;
        self.tenants_by_hash
            .get(&hash_key(key))
            .cloned()
            .ok_or_else(|| ApiError::field(ErrorCode::Unauthenticated, "authorization", "unknown api key"))
    }
}
