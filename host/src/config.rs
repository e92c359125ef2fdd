//! Gateway configuration: TOML, every key documented, unknown keys refused,
//! validated once at start-up with errors that name the key.
//!
//! Environment overrides: `TOLLGATE_DATA_DIR`, `TOLLGATE_GRPC_LISTEN`,
//! `TOLLGATE_HTTP_LISTEN`, `TOLLGATE_PLUGINS_DIR`.

use crate::plugins::Limits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the embedded database (created if missing).
    pub data_dir: PathBuf,
    /// Address of the gRPC ingest service.
    #[serde(default = "default_grpc")]
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP admin API.
    #[serde(default = "default_http")]
    pub http_listen: SocketAddr,
    /// Serve both listeners over TLS with this certificate and key.
    /// Absent: plain text (keep the listeners on loopback then).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub posting: PostingConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Connection hygiene on both listeners.
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// Tenants and their API keys.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// SHA-256 (hex) of each operator key: these manage API keys of any
    /// tenant (`/v1/api-keys`) and can do nothing else.
    #[serde(default)]
    pub admin_api_key_sha256: Vec<String>,
    /// ERP targets by name; a legal entity names the one it posts to.
    #[serde(default)]
    pub erp_targets: BTreeMap<String, ErpTargetConfig>,
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The certificate both listeners present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file: the server certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// A connection that has not completed its handshake within this many
    /// milliseconds is closed.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_timeout() -> u64 {
    10_000
}

/// Limits of every plugin call and where bundled plugins are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory holding `plugins.json` and the bundled components
    /// (written by `cargo xtask build-plugins`).
    pub bundled_dir: PathBuf,
    /// Fuel (≈ wasm instructions) per call.
    pub fuel: u64,
    /// Wall-clock deadline per call, milliseconds.
    pub deadline_ms: u64,
    /// Linear memory cap per instance, MiB.
    pub memory_limit_mib: u64,
    /// Most bytes a call may return (strings and lists summed).
    pub max_output_bytes: usize,
    /// Where compiled components are cached across restarts (default:
    /// `<data_dir>/compiled`). Safe to share between gateways of the same
    /// version: entries are keyed by engine version, configuration and
    /// component hash.
    pub cache_dir: Option<PathBuf>,
    /// How a plugin instance's memory is made fresh for the next call:
    /// `auto` (the default) rewrites a small memory (at most 256 KiB at
    /// start, as the SDK builds them) in full and resets only the pages a
    /// call wrote of a larger one, the latter only when this host cannot
    /// swap; `full` always rewrites (slower for large memories; for hosts
    /// that may turn swap on while running).
    pub memory_reset: MemoryReset,
    /// Plugin versions each tenant may keep uploaded.
    pub quota_versions: u64,
    /// Bytes of uploaded plugins each tenant may keep, MiB.
    pub quota_mib: u64,
    /// Upload attempts each tenant may make in any hour (each is compiled).
    pub quota_uploads_per_hour: u64,
    /// Compiled code of uploaded plugins kept in memory, MiB (all tenants):
    /// beyond it the least recently used are unloaded, and loaded again
    /// from the compiled cache on their next use.
    pub loaded_mib: u64,
    /// An uploaded plugin not called for this many seconds is unloaded.
    pub unload_idle_secs: u64,
}

pub use crate::plugins::MemoryReset;

/// The per-call limits this configuration sets.
impl From<&PluginsConfig> for Limits {
    fn from(c: &PluginsConfig) -> Self {
        Limits {
            fuel: c.fuel,
            deadline_ms: c.deadline_ms,
            memory_mib: c.memory_limit_mib,
            max_output_bytes: c.max_output_bytes,
            memory_reset: c.memory_reset,
            ..Limits::default()
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        PluginsConfig {
            bundled_dir: PathBuf::from("target/plugins"),
            fuel: limits.fuel,
            deadline_ms: limits.deadline_ms,
            memory_limit_mib: limits.memory_mib,
            max_output_bytes: limits.max_output_bytes,
            cache_dir: None,
            memory_reset: limits.memory_reset,
            quota_versions: 100,
            quota_mib: 256,
            quota_uploads_per_hour: 60,
            loaded_mib: 256,
            unload_idle_secs: 900,
        }
    }
}

/// The ingest write path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Forget an event id this many days after it was received, so a resend
    /// after that counts again. Absent (the default): never forget.
    pub dedup_retention_days: Option<u32>,
    /// Most events accepted into the write path and not yet indexed; beyond
    /// it requests get RESOURCE_EXHAUSTED / 429 with a retry hint. Bounds
    /// the memory the write path may hold: about 1.5 KB per waiting event
    /// (measured, see BENCHMARKS.md), so the default 50 000 holds ~75 MiB.
    pub max_unindexed_events: usize,
    /// Size of one write-ahead-log segment, MiB.
    pub wal_segment_mib: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { dedup_retention_days: None, max_unindexed_events: 50_000, wal_segment_mib: 64 }
    }
}

/// Connection hygiene on the gRPC and HTTP listeners (see
/// `crate::connections`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// A new connection must send its first bytes within this; an HTTP/1.1
    /// connection must also complete each request head within it, counted
    /// from when the server starts waiting for it (also between keep-alive
    /// requests, so it is the idle keep-alive timeout too). Milliseconds.
    pub header_read_timeout_ms: u64,
    /// Most connections open per listener; at the bound the oldest idle one
    /// is closed for a newcomer. Kept under the open-file limit (which is
    /// raised to its hard limit at start).
    pub max_connections: usize,
    /// gRPC: an HTTP/2 ping after this long without traffic, milliseconds.
    pub grpc_keepalive_interval_ms: u64,
    /// gRPC: a connection whose ping is not answered within this is closed, milliseconds.
    pub grpc_keepalive_timeout_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            header_read_timeout_ms: 10_000,
            max_connections: 10_000,
            grpc_keepalive_interval_ms: 30_000,
            grpc_keepalive_timeout_ms: 10_000,
        }
    }
}

/// How the outbox worker retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostingConfig {
    /// First retry delay, milliseconds; doubles per attempt, with jitter.
    pub backoff_initial_ms: u64,
    /// Longest retry delay, milliseconds.
    pub backoff_max_ms: u64,
    /// How often the worker looks for due entries when not woken, milliseconds.
    pub poll_ms: u64,
    /// Closes each tenant's previous billing period by itself (absent: only
    /// on request, by the CLI or `POST /v1/periods/{period}/close`).
    pub close_schedule: Option<CloseSchedule>,
}

impl Default for PostingConfig {
    fn default() -> Self {
        PostingConfig { backoff_initial_ms: 200, backoff_max_ms: 30_000, poll_ms: 500, close_schedule: None }
    }
}

/// When a month closes by itself: on `day` of the next month at `hour`
/// (UTC), once the gateway finds the period still open; it looks every
/// `check_every_s` seconds. With `interim_daily`, each tenant's interim
/// documents of the previous day are built too, once a day, for
/// reconciliation (never posted).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseSchedule {
    pub day: u32,
    #[serde(default)]
    pub hour: u32,
    #[serde(default = "default_check_every")]
    pub check_every_s: u64,
    #[serde(default)]
    pub interim_daily: bool,
}

fn default_check_every() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id: lowercase letters, digits, '-', '_'.
    pub id: String,
    /// SHA-256 (hex) of each API key of the tenant; keys themselves are never stored.
    pub api_key_sha256: Vec<String>,
    /// Meters (a JSON array of the bodies `POST /v1/meters` takes) created
    /// at start-up if missing; loaded before the master data.
    #[serde(default)]
    pub meters_file: Option<PathBuf>,
    /// Master data (JSON, the body of `PUT /v1/masterdata`) loaded at start-up.
    #[serde(default)]
    pub masterdata_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpTargetConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub base_url: String,
    /// Name of the erp-mapper plugin.
    pub mapper: String,
    /// Per-request timeout, milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Settings handed to the mapper (company ids, paths, ...).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Most requests in flight to this target at once (ERPs limit
    /// concurrency per account).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Consecutive transient failures that open the target's circuit
    /// breaker: no request is sent until `breaker_cooldown_ms` has passed,
    /// then one probe decides whether it closes again.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown_ms: u64,
    /// Most requests per second sent to this target's base URL (ERPs
    /// throttle per account, e.g. Business Central 6 000 per 5 minutes;
    /// targets on one base URL share the limit); absent: no limit.
    #[serde(default)]
    pub max_requests_per_second: Option<u32>,
}

impl ErpTargetConfig {
    /// A target with the default timeout, concurrency and breaker.
    pub fn new(base_url: impl Into<String>, mapper: impl Into<String>) -> ErpTargetConfig {
        ErpTargetConfig {
            base_url: base_url.into(),
            mapper: mapper.into(),
            timeout_ms: default_timeout(),
            settings: BTreeMap::new(),
            max_concurrency: default_max_concurrency(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown(),
            max_requests_per_second: None,
        }
    }
}

fn default_timeout() -> u64 {
    10_000
}
fn default_max_concurrency() -> usize {
    4
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> u64 {
    30_000
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` is a valid tenant / target id.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    /// Reads, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut config = Config::parse_unchecked(&text, path)?;
        config.apply_env();
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates a configuration text (`path` only names it in
    /// errors); no environment overrides.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse_unchecked(text, path)?;
        config.validate()?;
        Ok(config)
    }

    fn parse_unchecked(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    fn apply_env(&mut self) {
        if let Ok(v) = std::env::var("TOLLGATE_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(a) = std::env::var("TOLLGATE_GRPC_LISTEN").ok().and_then(|v| v.parse().ok()) {
            self.grpc_listen = a;
        }
        if let Some(a) = std::env::var("TOLLGATE_HTTP_LISTEN").ok().and_then(|v| v.parse().ok()) {
            self.http_listen = a;
        }
        if let Ok(v) = std::env::var("TOLLGATE_PLUGINS_DIR") {
            self.plugins.bundled_dir = v.into();
        }
    }

    /// Checks every key once; the first problem is returned, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.plugins;
        let c = &self.connections;
        for (key, v) in [
            ("plugins.fuel", p.fuel),
            ("plugins.deadline_ms", p.deadline_ms),
            ("plugins.quota_versions", p.quota_versions),
            ("plugins.quota_mib", p.quota_mib),
            ("plugins.loaded_mib", p.loaded_mib),
            ("plugins.unload_idle_secs", p.unload_idle_secs),
            ("plugins.quota_uploads_per_hour", p.quota_uploads_per_hour),
            ("connections.header_read_timeout_ms", c.header_read_timeout_ms),
            ("connections.grpc_keepalive_interval_ms", c.grpc_keepalive_interval_ms),
            ("connections.grpc_keepalive_timeout_ms", c.grpc_keepalive_timeout_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if !(1..=4096).contains(&p.memory_limit_mib) {
            return Err(invalid("plugins.memory_limit_mib", "must be 1..=4096"));
        }
        if self.ingest.dedup_retention_days == Some(0) {
            return Err(invalid("ingest.dedup_retention_days", "must be at least 1 (leave it out to never forget)"));
        }
        if self.ingest.max_unindexed_events < crate::ingest::MAX_EVENTS_PER_BATCH {
            return Err(invalid(
                "ingest.max_unindexed_events",
                format!("must be at least one full batch ({})", crate::ingest::MAX_EVENTS_PER_BATCH),
            ));
        }
        if !(1..=4096).contains(&self.ingest.wal_segment_mib) {
            return Err(invalid("ingest.wal_segment_mib", "must be 1..=4096"));
        }
        if c.max_connections < 16 {
            return Err(invalid("connections.max_connections", "must be at least 16"));
        }
        if self.tls.as_ref().is_some_and(|t| t.handshake_timeout_ms == 0) {
            return Err(invalid("tls.handshake_timeout_ms", "must be greater than 0"));
        }
        if self.posting.backoff_initial_ms == 0 || self.posting.backoff_max_ms < self.posting.backoff_initial_ms {
            return Err(invalid(
                "posting.backoff_max_ms",
                "must be at least posting.backoff_initial_ms, which must be > 0",
            ));
        }
        for (j, h) in self.admin_api_key_sha256.iter().enumerate() {
            if !is_sha256_hex(h) {
                return Err(invalid(format!("admin_api_key_sha256[{j}]"), "must be 64 hex digits (sha256 of the key)"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if !is_valid_id(&t.id) {
                return Err(invalid(format!("tenants[{i}].id"), "lowercase letters, digits, '-', '_', 1..=64 bytes"));
            }
            if !seen.insert(&t.id) {
                return Err(invalid(format!("tenants[{i}].id"), format!("tenant {} is listed twice", t.id)));
            }
            for (j, h) in t.api_key_sha256.iter().enumerate() {
                if !is_sha256_hex(h) {
                    return Err(invalid(
                        format!("tenants[{i}].api_key_sha256[{j}]"),
                        "must be 64 hex digits (sha256 of the key)",
                    ));
                }
            }
        }
        if let Some(c) = &self.posting.close_schedule {
            if !(1..=28).contains(&c.day) {
                return Err(invalid("posting.close_schedule.day", "1..=28 (every month has it)"));
            }
            if c.hour > 23 {
                return Err(invalid("posting.close_schedule.hour", "0..=23"));
            }
            if c.check_every_s == 0 {
                return Err(invalid("posting.close_schedule.check_every_s", "must be greater than 0"));
            }
        }
        for (name, t) in &self.erp_targets {
            if !is_valid_id(name) {
                return Err(invalid(
                    format!("erp_targets.{name}"),
                    "target names use lowercase letters, digits, '-', '_'",
                ));
            }
            if !(t.base_url.starts_with("http://") || t.base_url.starts_with("https://")) {
                return Err(invalid(format!("erp_targets.{name}.base_url"), "must start with http:// or https://"));
            }
            if t.timeout_ms == 0 {
                return Err(invalid(format!("erp_targets.{name}.timeout_ms"), "must be greater than 0"));
            }
            if t.max_concurrency == 0 {
                return Err(invalid(format!("erp_targets.{name}.max_concurrency"), "must be greater than 0"));
            }
            if t.max_requests_per_second == Some(0) {
                return Err(invalid(format!("erp_targets.{name}.max_requests_per_second"), "must be greater than 0"));
            }
            if t.breaker_failures == 0 {
                return Err(invalid(format!("erp_targets.{name}.breaker_failures"), "must be greater than 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tollgate.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.tenants[0].api_key_sha256[0], crate::auth::hash_key("demo-acme-key"));
        assert_eq!(c.erp_targets["erp-sim"].mapper, "generic-json");
        // The commented-out examples are valid too, once uncommented.
        let text = std::fs::read_to_string(&path).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") || rest.starts_with("   ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&uncommented).unwrap();
        assert_eq!(c.erp_targets["tryton"].mapper, "tryton");
        assert_eq!(c.erp_targets["s4"].settings["logical_system"], "TOLLGATE01");
        assert!(c.posting.close_schedule.as_ref().is_some_and(|s| s.interim_daily));
        assert_eq!(c.plugins.memory_reset, MemoryReset::Full);
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse("data_dir = \"d\"\nbogus = 1\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        let err = parse("data_dir = \"d\"\n[[tenants]]\nid = \"Acme\"\napi_key_sha256 = []\n").unwrap_err().to_string();
        assert!(err.starts_with("tenants[0].id:"), "{err}");
        let err = parse("data_dir = \"d\"\n[erp_targets.x]\nbase_url = \"ftp://h\"\nmapper = \"m\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("erp_targets.x.base_url:"), "{err}");
        let err = parse("data_dir = \"d\"\n[plugins]\nfuel = 0\n").unwrap_err().to_string();
        assert!(err.starts_with("plugins.fuel:"), "{err}");
    }
}
