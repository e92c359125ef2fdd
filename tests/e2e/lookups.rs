//! Synchronous look-ups over HTTP: account, entitlement (allowed, used this
//! period, remaining) and pricing reference, current after every write.

use serde_json::json;
use tollgate_e2e::{Env, Erp, dec, event, masterdata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_entitlements_and_pricing_are_looked_up_and_follow_master_data_writes() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let mut md = masterdata();
    md["features"] = json!([{ "code": "api", "name": "API access", "meter": "api_calls" }]);
    md["contract_lines"][0]["commitment"] = json!("100");
    md["customers"].as_array_mut().unwrap().push(json!({
        "id": "hooli", "name": "Hooli", "legal_entity": "acme-eu", "erp_account": "C-3"
    }));
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!(status, 200, "{body}");

    let (status, account) = env.get("/v1/customers/globex").await.unwrap();
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["erp_account"], "C-1");
    assert_eq!(account["legal_entity"]["currency"], "EUR");
    assert_eq!(account["contract_lines"], json!(["globex-api"]));
    let (status, body) = env.get("/v1/customers/nobody").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("id")), "{body}");

    // Usage of this period, as the product sends it.
    let now = chrono::Utc::now().to_rfc3339();
    env.ingest(vec![event("u1", "globex", "api_calls", &now, "30")]).await.unwrap();
    let entitlement = |customer: &'static str| {
        let env = &env;
        async move { env.get(&format!("/v1/customers/{customer}/entitlements/api")).await.unwrap() }
    };
    let (status, e) = entitlement("globex").await;
    assert_eq!(status, 200, "{e}");
    assert_eq!((e["allowed"].as_bool(), dec(&e["used"]), dec(&e["remaining"])), (Some(true), 30.into(), 70.into()));
    assert_eq!((e["contract_line"].as_str(), e["meter"].as_str()), (Some("globex-api"), Some("api_calls")));
    env.ingest(vec![event("u2", "globex", "api_calls", &now, "80")]).await.unwrap();
    let (_, e) = entitlement("globex").await;
    assert_eq!((e["allowed"].as_bool(), dec(&e["used"]), dec(&e["remaining"])), (Some(false), 110.into(), 0.into()));
    // No commitment: unlimited; no contract line for the meter: not entitled.
    let (_, e) = entitlement("initech").await;
    assert_eq!((e["allowed"].as_bool(), e["limit"].is_null(), e["remaining"].is_null()), (Some(true), true, true));
    let (_, e) = entitlement("hooli").await;
    assert_eq!((e["allowed"].as_bool(), e["contract_line"].is_null()), (Some(false), true), "{e}");
    let (status, body) = env.get("/v1/customers/globex/entitlements/teleport").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("feature")), "{body}");

    // A write is seen by the next look-up.
    md["contract_lines"][0]["commitment"] = json!("200");
    assert_eq!(env.put("/v1/masterdata", &md).await.0, 200);
    let (_, e) = entitlement("globex").await;
    assert_eq!((e["allowed"].as_bool(), dec(&e["remaining"])), (Some(true), 90.into()));

    let (status, p) = env.get("/v1/contract-lines/globex-api/pricing").await.unwrap();
    assert_eq!(status, 200, "{p}");
    assert_eq!((p["plugin"].as_str(), p["version"].as_str()), (Some("graduated-tiers"), Some("0.1.0")));
    let wasm = std::fs::read(tollgate_e2e::plugins_dir().join("graduated-tiers-0.1.0.wasm")).unwrap();
    assert_eq!(p["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm)));
    assert_eq!(p["params"], md["contract_lines"][0]["params"]);
    let (status, body) = env.get("/v1/contract-lines/nope/pricing").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("id")), "{body}");

    // Features are checked like the rest of the master data.
    md["features"][0]["meter"] = json!("nope");
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("features[0].meter")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entitlement_reflects_every_acknowledged_event_or_says_it_is_stale() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let mut md = masterdata();
    md["features"] = json!([{ "code": "api", "name": "API access", "meter": "api_calls" }]);
    let customers: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    md["customers"] = json!(
        customers
            .iter()
            .map(|c| json!({"id": c, "name": c, "legal_entity": "acme-eu", "erp_account": c}))
            .collect::<Vec<_>>()
    );
    md["contract_lines"] = json!(
        customers
            .iter()
            .map(|c| json!({
                "id": format!("{c}-api"), "customer": c, "meter": "api_calls", "sku": "API", "commitment": "100",
                "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
                "params": { "tiers": [ { "up_to": null, "unit_price": "0.01" } ] }
            }))
            .collect::<Vec<_>>()
    );
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!(status, 200, "{body}");
    let now = chrono::Utc::now().to_rfc3339();
    // Right after an acknowledged batch far over the limit, every answer
    // counts it (the read waits for the index), for every customer.
    let batch = customers
        .iter()
        .flat_map(|c| (0..50).map(move |i| (c.clone(), i)))
        .map(|(c, i)| event(&format!("{c}-{i}"), &c, "api_calls", &now, "7"))
        .collect();
    assert_eq!(env.ingest(batch).await.unwrap().accepted, 600);
    for c in &customers {
        let (status, e) = env.get(&format!("/v1/customers/{c}/entitlements/api")).await.unwrap();
        assert_eq!(status, 200, "{e}");
        assert_eq!(e["stale"], false, "{e}");
        assert_eq!(
            (e["allowed"].as_bool(), dec(&e["used"]), dec(&e["remaining"])),
            (Some(false), 350.into(), 0.into()),
            "{c}: {e}"
        );
    }
    // When the index cannot catch up within the look-up's bound, the answer
    // says so, with the position it reflects: never a silently old "allowed".
    let log = env.gateway.as_ref().unwrap().event_log().clone();
    log.hold_indexing(true);
    env.ingest(vec![event("late", "c0", "api_calls", &now, "1")]).await.unwrap();
    let (status, e) = env.get("/v1/customers/c0/entitlements/api").await.unwrap();
    log.hold_indexing(false);
    assert_eq!((status, &e["stale"]), (200, &json!(true)), "{e}");
    assert_eq!(dec(&e["used"]), 350.into(), "{e}");
    let held_at = e["through_lsn"].as_u64().unwrap();
    let (_, e) = env.get("/v1/customers/c0/entitlements/api").await.unwrap();
    assert_eq!((&e["stale"], dec(&e["used"])), (&json!(false), 351.into()), "{e}");
    assert!(e["through_lsn"].as_u64().unwrap() > held_at, "{e}");
}
