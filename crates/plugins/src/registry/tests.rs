//! The registry's own tests.

use super::versions::UploadRecord;
use super::{Registry, RegistryError};
use crate::Limits;
use crate::fixtures::FixtureInput;
use crate::{Kind, Runtime};
use chrono::Utc;
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use tollgate_core::sha256_hex;
use tollgate_store::store::{self, Store};

/// A test component as `cargo xtask build-plugins` left it.
fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("TOLLGATE_TEST_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-components"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask test`)", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprecated_interface_is_refused_for_upload_but_a_stored_upload_of_it_still_runs() {
    let dir = std::env::temp_dir().join(format!("tollgate-registry-deprecated-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let registry = Registry::new(Runtime::new(Limits::default(), None).unwrap());
    let (v1, v2) = (component("legacy-rater-v0-1"), component("legacy-rater-v0-2"));
    let version = semver::Version::new(1, 0, 0);

    let err = registry
        .upload(&store, "acme", "legacy", version.clone(), Kind::Rater, v1.clone(), Utc::now())
        .await
        .unwrap_err();
    let RegistryError::Plugin { source, .. } = &err else { panic!("{err}") };
    assert_eq!(source.code(), "incompatible-interface");
    let text = err.to_string();
    assert!(text.contains("tollgate:plugin/rater@0.1.0, which is deprecated"), "{text}");
    assert!(text.contains("must implement tollgate:plugin/rater@0.4.0"), "{text}");
    assert!(registry.list("acme").iter().all(|p| p.name != "legacy"), "nothing registered");
    assert!(store.scan::<UploadRecord>(&store.plugins, b"").unwrap().is_empty(), "nothing stored");
    // The older live interface is still accepted.
    let (p, new) =
        registry.upload(&store, "acme", "current", version.clone(), Kind::Rater, v2, Utc::now()).await.unwrap();
    assert!(new);
    assert_eq!(p.world(), "tollgate:plugin/rater@0.2.0");

    // An upload of 0.1.0 stored before the deprecation, as the gateway
    // finds it at start-up: it loads and rates.
    let sha = sha256_hex(&v1);
    store.blobs.insert(sha.as_bytes(), v1.as_slice()).unwrap();
    let record = UploadRecord {
        tenant: "acme".into(),
        name: "legacy".into(),
        version: version.to_string(),
        kind: Kind::Rater,
        sha256: sha,
        size: v1.len(),
        uploaded_at: Utc::now(),
    };
    store.put(&store.plugins, &store::key(&["acme", "legacy", "1.0.0"]), &record).unwrap();
    // And one whose bytes are gone (damaged store): left out, the start goes on.
    let lost = UploadRecord { name: "lost".into(), sha256: "00".repeat(32), ..record.clone() };
    store.put(&store.plugins, &store::key(&["acme", "lost", "1.0.0"]), &lost).unwrap();
    let restarted = Registry::new(Runtime::new(Limits::default(), None).unwrap());
    assert_eq!(restarted.load_uploaded(&store).unwrap(), 2);
    assert!(restarted.find("acme", "lost", None, Kind::Rater).is_err());
    let legacy = restarted.find("acme", "legacy", None, Kind::Rater).unwrap();
    assert_eq!(legacy.world(), "tollgate:plugin/rater@0.1.0");
    let fixture: FixtureInput = serde_json::from_value(serde_json::json!({ "quantity": "250", "params": {} })).unwrap();
    let input = fixture.to_usage().unwrap();
    let charges = restarted.runtime().rate(&legacy, &input).unwrap();
    assert_eq!(charges[0].amount, Decimal::new(250, 2));
    // Re-uploading the very same version is the usual no-op, not a refusal.
    let (_, new) = restarted.upload(&store, "acme", "legacy", version, Kind::Rater, v1, Utc::now()).await.unwrap();
    assert!(!new);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
