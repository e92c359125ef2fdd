//! The `tollgate` binary's commands, run as a user runs them.

use crate::{plugins_dir, start_erp, temp_dir, test_config};
use std::process::Command;

#[test]
fn hash_key_prints_the_sha256_used_in_the_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).args(["hash-key", "demo-acme-key"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), tollgate::auth::hash_key("demo-acme-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_period_closes_and_reports_the_posted_documents() {
    let dir = temp_dir("cli-test");
    let config = test_config(&dir, start_erp().await);
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
