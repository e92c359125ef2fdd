//! The layers, checked over `cargo metadata`: the core is pure, so none of
//! the crates that do IO, run plugins or serve may become one of its
//! dependencies, directly or through another crate; the store keeps data
//! and neither runs plugins nor serves; the plugins run Wasm and neither
//! serve nor call out.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Crates the core must never depend on.
const NOT_IN_CORE: &[&str] = &["tokio", "sled", "fjall", "wasmtime", "axum", "tonic", "hyper", "reqwest", "mio"];
/// Crates the store must never depend on.
const NOT_IN_STORE: &[&str] = &["wasmtime", "tollgate-plugins", "axum", "tonic", "hyper", "reqwest", "tollgate"];
/// Crates the plugins must never depend on.
const NOT_IN_PLUGINS: &[&str] = &["axum", "tonic", "hyper", "reqwest", "tollgate"];

/// The packages `root` links (normal dependencies, transitively), by name.
fn linked(metadata: &Value, root: &str) -> BTreeSet<String> {
    let packages: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> =
        metadata["resolve"]["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n)).collect();
    let start = packages.iter().find(|(_, name)| **name == root).map(|(id, _)| *id).expect("the root package");
    let (mut seen, mut todo) = (BTreeSet::new(), vec![start]);
    while let Some(id) = todo.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
            let pkg = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(packages[pkg].to_string()) {
                todo.push(pkg);
            }
        }
    }
    seen
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    // This machine's target only: the build of the suite has every package
    // of it on disk already, so nothing is downloaded (no `--offline`, so a
    // package only a later build step uses is fetched rather than failing).
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())).arg("-vV").output();
    let version = String::from_utf8(rustc.expect("rustc -vV").stdout).unwrap();
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc's host triple").to_string();
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            &host,
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

#[test]
fn each_layer_links_only_the_layers_below_it() {
    let metadata = metadata();
    let linked = linked(&metadata, "tollgate-core");
    assert!(linked.contains("rust_decimal"), "the walk found the core's dependencies: {linked:?}");
    let forbidden: Vec<&&str> = NOT_IN_CORE.iter().filter(|c| linked.contains(**c)).collect();
    assert!(forbidden.is_empty(), "tollgate-core depends on {forbidden:?} (directly or through another crate)");
    let store = self::linked(&metadata, "tollgate-store");
    assert!(store.contains("tollgate-core") && store.contains("fjall"), "{store:?}");
    let forbidden: Vec<&&str> = NOT_IN_STORE.iter().filter(|c| store.contains(**c)).collect();
    assert!(forbidden.is_empty(), "tollgate-store depends on {forbidden:?} (directly or through another crate)");
    let plugins = self::linked(&metadata, "tollgate-plugins");
    assert!(plugins.contains("tollgate-store") && plugins.contains("wasmtime"), "{plugins:?}");
    let forbidden: Vec<&&str> = NOT_IN_PLUGINS.iter().filter(|c| plugins.contains(**c)).collect();
    assert!(forbidden.is_empty(), "tollgate-plugins depends on {forbidden:?} (directly or through another crate)");
    // The walk would see one: the gateway links them all.
    let gateway = self::linked(&metadata, "tollgate");
    assert!(NOT_IN_CORE.iter().filter(|c| **c != "reqwest").all(|c| gateway.contains(*c)), "{gateway:?}");
}
