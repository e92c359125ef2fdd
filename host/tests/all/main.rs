//! Integration tests of the `tollgate` crate: the CLI binary, the server
//! process under SIGKILL, and the plugin sandbox, through their public
//! interfaces.

mod cli;
mod connections;
mod crash;
mod fixtures;
mod replay;
mod sandbox;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tollgate::config::{Config, ErpTargetConfig, PluginsConfig, PostingConfig, TenantConfig};

/// `target/<sub>` as `cargo xtask build-plugins` left it.
pub fn built(sub: &str, env: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(sub))
}

pub fn plugins_dir() -> PathBuf {
    built("plugins", "TOLLGATE_PLUGINS_DIR")
}

/// A gateway configuration on loopback ports: tenant `acme` with API key
/// `k` and the demo meters and master data, posting to the ERP simulator at `erp_base`.
pub fn test_config(dir: &Path, erp_base: String) -> Config {
    let md = dir.join("md.json");
    std::fs::write(&md, include_str!("../../demo/masterdata.json")).unwrap();
    let meters = dir.join("meters.json");
    std::fs::write(&meters, include_str!("../../demo/meters.json")).unwrap();
    Config {
        data_dir: dir.join("data"),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        plugins: PluginsConfig {
            bundled_dir: plugins_dir(),
            cache_dir: Some(plugins_dir().join("../tollgate-test-cache")),
            ..Default::default()
        },
        posting: PostingConfig { backoff_initial_ms: 20, backoff_max_ms: 100, poll_ms: 20, close_schedule: None },
        ingest: Default::default(),
        connections: Default::default(),
        admin_api_key_sha256: vec![],
        tenants: vec![TenantConfig {
            id: "acme".into(),
            api_key_sha256: vec![tollgate::auth::hash_key("k")],
            meters_file: Some(meters),
            masterdata_file: Some(md),
        }],
        erp_targets: BTreeMap::from([(
            "erp-sim".into(),
            ErpTargetConfig { timeout_ms: 2000, ..ErpTargetConfig::new(erp_base, "generic-json") },
        )]),
    }
}

/// Starts the ERP simulator on a loopback port; returns its base URL.
pub async fn start_erp() -> String {
    let erp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", erp.local_addr().unwrap());
    tokio::spawn(tollgate_erp_sim::Sim::new().serve(erp));
    base
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// GETs `url` with the bearer `key`; the JSON answer of a success status.
pub async fn get_json(client: &reqwest::Client, url: &str, key: &str) -> serde_json::Value {
    let response = client.get(url).bearer_auth(key).send().await.unwrap();
    response.error_for_status().unwrap().json().await.unwrap()
}
