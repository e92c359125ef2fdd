//! The plugin registry over HTTP: uploads, immutability, validation,
//! tenant isolation, activation, rollback, persistence.

use serde_json::json;
use tollgate_e2e::{API_KEY, Env, Erp, OTHER_API_KEY, bundled_component, event, test_component};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_validated_immutable_and_private_to_their_tenant() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let tiers = bundled_component("graduated-tiers-0.1.0.wasm");

    let (status, body) = env.upload(API_KEY, "name=my-tiers&version=1.0.0&kind=rater", tiers.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tiers)));
    let (status, _) = env.upload(API_KEY, "name=my-tiers&version=1.0.0&kind=rater", tiers.clone()).await;
    assert_eq!(status, 200, "the same bytes again are accepted and change nothing");

    let other_bytes = test_component("hostile-rater-refuse");
    let (status, body) = env.upload(API_KEY, "name=my-tiers&version=1.0.0&kind=rater", other_bytes).await;
    assert_eq!((status, body["error"]["field"].as_str()), (409, Some("version")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("immutable"));

    let refused = [
        ("name=My_Tiers&version=1.0.0&kind=rater", tiers.clone(), 400, "name", None),
        ("name=x&version=one&kind=rater", tiers.clone(), 400, "version", None),
        ("name=x&version=1.0.0&kind=pricer", tiers.clone(), 400, "kind", None),
        ("name=graduated-tiers&version=9.0.0&kind=rater", tiers.clone(), 409, "name", None),
        (
            "name=x&version=1.0.0&kind=rater",
            test_component("hostile-imports-wasi"),
            400,
            "body",
            Some("incompatible-interface"),
        ),
        (
            "name=x&version=1.0.0&kind=rater",
            test_component("hostile-imports-wrong-world"),
            400,
            "body",
            Some("incompatible-interface"),
        ),
        (
            "name=x&version=1.0.0&kind=rater",
            test_component("hostile-imports-wrong-signature"),
            400,
            "body",
            Some("incompatible-interface"),
        ),
        ("name=x&version=1.0.0&kind=erp-mapper", tiers.clone(), 400, "body", Some("incompatible-interface")),
        (
            "name=x&version=1.0.0&kind=rater",
            test_component("legacy-rater-v0-1"),
            400,
            "body",
            Some("incompatible-interface"),
        ),
        ("name=x&version=1.0.0&kind=rater", b"not wasm".to_vec(), 400, "body", Some("incompatible-interface")),
        ("name=x&version=1.0.0&kind=rater", vec![0; 16 << 20 | 1], 400, "body", Some("too-large")),
    ];
    for (query, bytes, status, field, reason) in refused {
        let (got, body) = env.upload(API_KEY, query, bytes).await;
        assert_eq!((got, body["error"]["field"].as_str()), (status, Some(field)), "{query}: {body}");
        assert_eq!(body["error"]["reason"].as_str(), reason, "{query}: {body}");
    }
    let (_, body) =
        env.upload(API_KEY, "name=x&version=1.0.0&kind=rater", test_component("hostile-imports-wasi")).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("wasi:clocks/wall-clock@0.2.0"), "{body}");
    let (_, body) = env.upload(API_KEY, "name=x&version=1.0.0&kind=rater", test_component("legacy-rater-v0-1")).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("rater@0.1.0, which is deprecated"), "{body}");

    let list = |key: &'static str| {
        let base = env.base.clone();
        async move {
            let v: serde_json::Value = tollgate_e2e::http()
                .get(format!("{base}/v1/plugins"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| format!("{}@{} {}", p["name"], p["version"], p["owner"]))
                .collect::<Vec<_>>()
        }
    };
    let mine = list(API_KEY).await;
    assert!(mine.contains(&r#""my-tiers"@"1.0.0" "tenant""#.to_string()), "{mine:?}");
    assert!(mine.contains(&r#""graduated-tiers"@"0.1.0" "bundled""#.to_string()), "{mine:?}");
    let theirs = list(OTHER_API_KEY).await;
    assert!(!theirs.iter().any(|p| p.contains("my-tiers")), "another tenant must not see acme's plugin: {theirs:?}");

    // Uploads survive a restart.
    let env = env.restart().await.unwrap();
    assert!(list_contains(&env, "my-tiers").await);
}

async fn list_contains(env: &Env, name: &str) -> bool {
    let v: serde_json::Value = tollgate_e2e::http()
        .get(format!("{}/v1/plugins", env.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["plugins"].as_array().unwrap().iter().any(|p| p["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_pins_a_version_and_rollback_is_activating_an_earlier_one() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let good = bundled_component("graduated-tiers-0.1.0.wasm");
    assert_eq!(env.upload(API_KEY, "name=my-tiers&version=1.0.0&kind=rater", good).await.0, 201);
    // 2.0.0 is a broken release: it refuses to rate.
    let broken = test_component("hostile-rater-refuse");
    assert_eq!(env.upload(API_KEY, "name=my-tiers&version=2.0.0&kind=rater", broken).await.0, 201);

    let activate = |version: &str, from: &str| json!({ "contract_line": "globex-api", "plugin": "my-tiers", "version": version, "effective_from": from });
    let (status, body) = env.post("/v1/activations", &activate("1.0.0", "2025-01-01T00:00:00Z")).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = env.post("/v1/activations", &activate("2.0.0", "2025-06-10T00:00:00Z")).await;
    assert_eq!(status, 201);
    let (status, body) = env.post("/v1/activations", &activate("7.0.0", "2025-06-10T00:00:00Z")).await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("plugin")), "{body}");
    let (status, body) = env.post("/v1/activations", &json!({"contract_line": "nope", "plugin": "my-tiers", "version": "1.0.0", "effective_from": "2025-01-01T00:00:00Z"})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("contract_line")), "{body}");

    env.ingest(vec![
        event("may", "globex", "api_calls", "2025-05-20T10:00:00Z", "150"),
        event("jun", "globex", "api_calls", "2025-06-20T10:00:00Z", "150"),
    ])
    .await
    .unwrap();

    // May: 1.0.0 was in effect.
    let may = env.close("2025-05").await.unwrap();
    let number = may["documents"][0]["state"]["erp_document_number"].as_str().unwrap().to_string();
    let (_, lineage) = env.get(&format!("/v1/lineage/documents/{number}")).await.unwrap();
    assert_eq!(lineage["contract_lines"][0]["rule"]["plugin"], "my-tiers");
    assert_eq!(lineage["contract_lines"][0]["rule"]["version"], "1.0.0");

    // June: the broken 2.0.0 is in effect, so the close leaves the line out with its error.
    let june = env.close("2025-06").await.unwrap();
    assert_eq!(june["documents"], json!([]), "{june}");
    let left = &june["left_out"][0];
    assert!(left["message"].as_str().unwrap().contains("no-contract"), "{june}");

    // Rollback: activate 1.0.0 again, later; the line is retried on it.
    let (status, _) = env.post("/v1/activations", &activate("1.0.0", "2025-06-15T00:00:00Z")).await;
    assert_eq!(status, 201);
    let id = left["id"].as_str().unwrap();
    let (status, billed) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({"action": "retry"})).await;
    assert_eq!(status, 200, "{billed}");
    let doc = env.wait_status(billed["documents"][0].as_str().unwrap(), "posted").await;
    let number = doc["state"]["erp_document_number"].as_str().unwrap().to_string();
    let (_, lineage) = env.get(&format!("/v1/lineage/documents/{number}")).await.unwrap();
    assert_eq!(lineage["contract_lines"][0]["rule"]["version"], "1.0.0");
    let (_, history) = env.get("/v1/activations/globex-api").await.unwrap();
    let versions: Vec<_> =
        history["activations"].as_array().unwrap().iter().map(|a| a["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.0.0", "2.0.0", "1.0.0"], "history is kept, never overwritten");
    assert_eq!(erp.invoices().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_posts_through_a_mapper_it_uploaded() {
    use tollgate::config::ErpTargetConfig;
    let erp = Erp::start().await.unwrap();
    // The operator's target names a mapper the tenant brings itself.
    let env = Env::start_configured(&erp, |c| {
        c.erp_targets.insert("own".into(), ErpTargetConfig::new(erp.base.clone(), "acme-ledger"));
    })
    .await
    .unwrap();
    let mut md = tollgate_e2e::masterdata();
    md["legal_entities"][0]["erp_target"] = json!("own");
    let (status, body) = env.put("/v1/masterdata?effective_from=2025-01-01T00:00:00Z", &md).await;
    assert_eq!(status, 200, "{body}");
    env.ingest(vec![event("m1", "globex", "api_calls", "2025-05-03T08:00:00Z", "150")]).await.unwrap();

    // Not uploaded yet: the document waits (retried), nothing is lost.
    let (status, closed) = env.close_nowait("2025-05").await;
    assert_eq!(status, 422, "mapping happens at close and names the mapper: {closed}");
    assert!(closed["error"]["message"].as_str().unwrap().contains("acme-ledger"), "{closed}");

    // Uploaded (a generic JSON mapper of interface 0.1.0), the close posts through it.
    let mapper = bundled_component("generic-json-0.1.0.wasm");
    let (status, body) = env.upload(API_KEY, "name=acme-ledger&version=1.0.0&kind=erp-mapper", mapper).await;
    assert_eq!(status, 201, "{body}");
    let closed = env.close("2025-05").await.unwrap();
    let doc = &closed["documents"][0];
    assert_eq!(doc["state"]["status"], "posted", "{closed:#}");
    let invoices = erp.invoices().await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["number"], doc["state"]["erp_document_number"]);

    // A mapper of interface 0.3.0 is accepted too, and only its tenant sees either.
    let (status, body) = env
        .upload(API_KEY, "name=acme-tryton&version=1.0.0&kind=erp-mapper", bundled_component("tryton-0.1.0.wasm"))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, mine) = env.get("/v1/plugins").await.unwrap();
    let world = |list: &serde_json::Value, name: &str| {
        list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["world"].clone())
    };
    assert_eq!(world(&mine, "acme-tryton"), Some(json!("tollgate:plugin/erp-mapper@0.3.0")), "{mine:#}");
    assert_eq!(world(&mine, "acme-ledger"), Some(json!("tollgate:plugin/erp-mapper@0.1.0")));
    let r =
        tollgate_e2e::http().get(format!("{}/v1/plugins", env.base)).bearer_auth(OTHER_API_KEY).send().await.unwrap();
    let theirs: serde_json::Value = r.json().await.unwrap();
    assert_eq!(world(&theirs, "acme-ledger"), None);
}
