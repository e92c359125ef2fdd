//! The `tollgate` binary's commands, run as a user runs them.

use crate::plugins_dir;
use std::collections::BTreeMap;
use std::process::Command;
use tollgate::config::{Config, ErpTargetConfig, PluginsConfig, PostingConfig, TenantConfig};

#[test]
fn hash_key_prints_the_sha256_used_in_the_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).args(["hash-key", "demo-acme-key"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), tollgate::auth::hash_key("demo-acme-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_period_closes_and_reports_the_posted_documents() {
    let erp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let erp_base = format!("http://{}", erp.local_addr().unwrap());
    tokio::spawn(tollgate_erp_sim::Sim::new().serve(erp));
    let dir = std::env::temp_dir().join(format!("tollgate-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let md = dir.join("md.json");
    std::fs::write(&md, include_str!("../../demo/masterdata.json")).unwrap();
    let config = Config {
        data_dir: dir.join("data"),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        plugins: PluginsConfig {
            bundled_dir: plugins_dir(),
            cache_dir: Some(plugins_dir().join("../tollgate-test-cache")),
            ..Default::default()
        },
        posting: PostingConfig { backoff_initial_ms: 20, backoff_max_ms: 100, poll_ms: 20 },
        ingest: Default::default(),
        admin_api_key_sha256: vec![],
        tenants: vec![TenantConfig {
            id: "acme".into(),
            api_key_sha256: vec![tollgate::auth::hash_key("k")],
            masterdata_file: Some(md),
        }],
        erp_targets: BTreeMap::from([(
            "erp-sim".into(),
            ErpTargetConfig {
                base_url: erp_base,
                mapper: "generic-json".into(),
                timeout_ms: 2000,
                settings: BTreeMap::new(),
            },
        )]),
    };
    let gateway = tollgate::server::start(config).await.unwrap();
    let http = format!("http://{}", gateway.http_addr);

    let run = |key: &'static str| {
        let http = http.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_tollgate"))
                .args(["close-period", "2025-01", "--gateway", &http, "--api-key", key])
                .output()
                .unwrap()
        })
    };
    // No usage: every line rates to nothing, so there is no document.
    let out = run("k").await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["period"], "2025-01");
    assert_eq!(report["documents"], serde_json::json!([]));

    let out = run("wrong").await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown api key"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));

    // `plugin push` uploads a component; the same version with other bytes is refused.
    let push = |file: std::path::PathBuf| {
        let http = http.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_tollgate"))
                .args(["plugin", "push"])
                .arg(file)
                .args([
                    "--name",
                    "pushed",
                    "--version",
                    "1.0.0",
                    "--kind",
                    "rater",
                    "--gateway",
                    &http,
                    "--api-key",
                    "k",
                ])
                .output()
                .unwrap()
        })
    };
    let out = push(plugins_dir().join("graduated-tiers-0.1.0.wasm")).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((answer["name"].as_str(), answer["version"].as_str()), (Some("pushed"), Some("1.0.0")));
    let out = push(plugins_dir().join("generic-json-0.1.0.wasm")).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 409"));
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
