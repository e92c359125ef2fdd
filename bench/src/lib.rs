//! Shared helpers of the benchmarks (`cargo xtask bench`): timing
//! statistics and where the built plugins are.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tollgate::config::{Config, ErpTargetConfig, PluginsConfig, PostingConfig, TenantConfig};

/// The bundled plugins as `cargo xtask build-plugins` left them.
pub fn plugins_dir() -> PathBuf {
    std::env::var("TOLLGATE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

/// A gateway on loopback ports with data in `dir`: tenant `bench` with
/// the API key `key`, the given meters and master data files, and an ERP
/// target `none` nothing is posted to.
pub fn gateway_config(
    dir: &std::path::Path,
    key: &str,
    meters_file: Option<PathBuf>,
    masterdata_file: Option<PathBuf>,
) -> Config {
    Config {
        data_dir: dir.join("data"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        http_listen: "127.0.0.1:0".parse().expect("address"),
        tls: None,
        plugins: PluginsConfig { bundled_dir: plugins_dir(), ..PluginsConfig::default() },
        posting: PostingConfig::default(),
        ingest: Default::default(),
        connections: Default::default(),
        admin_api_key_sha256: vec![],
        tenants: vec![TenantConfig {
            id: "bench".into(),
            api_key_sha256: vec![tollgate::auth::hash_key(key)],
            meters_file,
            masterdata_file,
        }],
        erp_targets: BTreeMap::from([(
            "none".to_string(),
            ErpTargetConfig { timeout_ms: 1000, ..ErpTargetConfig::new("http://127.0.0.1:9", "generic-json") },
        )]),
    }
}

/// Per-call timings of `n` calls of `f`.
pub fn time_calls(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

/// The `p`-th percentile (0..=100) of timings, in microseconds.
pub fn percentile_us(timings: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = timings.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// Calls per second over the whole run.
pub fn per_second(timings: &[Duration]) -> f64 {
    timings.len() as f64 / timings.iter().sum::<Duration>().as_secs_f64()
}
