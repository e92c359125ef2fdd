//! The posting fault run: many documents (10 000 by default,
//! `TOLLGATE_FAULT_TEST_DOCUMENTS`) posted to an ERP that meets 30 % of the
//! requests with a fault drawn from every kind it simulates (5xx before
//! commit, 429 with Retry-After, 5xx after commit, timeout after commit,
//! slow answers, business rejections). Every document must exist exactly
//! once in the ERP or, if the ERP refused it for a business reason, in the
//! exception queue; invoice totals equal the rated charges. Ends with
//! `posting: documents=<n> faults=<n> duplicates=<n> lost=<n> exceptions=<n>`.
//! The same run with the SAP S/4HANA mapper (a conversation: asynchronous
//! SOAP request, then read-back) posts a fifth as many documents.

use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tollgate_e2e::{Env, Erp, dec, event, http};

fn documents() -> usize {
    std::env::var("TOLLGATE_FAULT_TEST_DOCUMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_posted_exactly_once_under_thirty_percent_faults() {
    fault_run(documents(), "generic-json", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sap_conversations_post_exactly_once_under_thirty_percent_faults() {
    let settings = [
        ("user", "TOLLGATE"),
        ("password", "s3cret"),
        ("logical_system", "TOLLGATE01"),
        ("sales_organization", "1010"),
    ];
    fault_run(documents() / 5, "sap-s4hana", &settings).await;
}

async fn fault_run(n: usize, mapper: &str, settings: &[(&str, &str)]) {
    let erp = Erp::start().await.unwrap();
    let env = Env::start_configured(&erp, |c| {
        let t = c.erp_targets.get_mut("sim").unwrap();
        t.mapper = mapper.to_string();
        t.settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        t.timeout_ms = 200;
        t.max_concurrency = 16;
        t.breaker_cooldown_ms = 100;
    })
    .await
    .unwrap();
    let customers: Vec<String> = (0..n).map(|i| format!("c{i:05}")).collect();
    let md = json!({
        "legal_entities": [
            { "id": "acme-eu", "name": "Acme EU", "currency": "EUR", "erp_company": "1000", "erp_target": "sim" }
        ],
        "customers": customers.iter().map(|c| json!({
            "id": c, "name": c, "legal_entity": "acme-eu", "erp_account": format!("A-{c}")
        })).collect::<Vec<_>>(),
        "skus": [ { "id": "API", "name": "API calls", "erp_item": "ITEM-API" } ],
        "contract_lines": customers.iter().map(|c| json!({
            "id": format!("{c}-api"), "customer": c, "meter": "api_calls", "sku": "API",
            "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
            "params": { "tiers": [ { "up_to": "100", "unit_price": "0.10" }, { "up_to": null, "unit_price": "0.01" } ] }
        })).collect::<Vec<_>>(),
    });
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!(status, 200, "{body}");
    for (b, chunk) in customers.chunks(5_000).enumerate() {
        let events = chunk
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let q = format!("{}", 1 + (b * 5_000 + i) % 997);
                event(&format!("e-{c}"), c, "api_calls", "2025-05-10T12:00:00Z", &q)
            })
            .collect();
        assert_eq!(env.ingest(events).await.unwrap().accepted as usize, chunk.len());
    }
    let faults = json!([
        { "kind": "status", "status": 503 },
        { "kind": "status", "status": 429, "retry_after": 1 },
        { "kind": "error_after_commit", "status": 502 },
        { "kind": "timeout_after_commit", "ms": 300 },
        { "kind": "delay", "ms": 50 },
        { "kind": "reject", "code": "unknown-item", "message": "item not found" }
    ]);
    let r = http()
        .post(format!("{}/_sim/chaos", erp.base))
        .json(&json!({ "rate_percent": 30, "seed": 20261129, "faults": faults }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let started = Instant::now();
    let (status, closed) = env.close_nowait("2025-05").await;
    assert_eq!(status, 200, "{closed}");
    let docs = closed["documents"].as_array().unwrap().clone();
    assert_eq!(docs.len(), n);
    let close_s = started.elapsed().as_secs_f64();
    // Wait until nothing waits in the outbox (bounded).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, t) = env.get("/v1/targets").await.unwrap();
        if t["targets"][0]["waiting"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "documents still waiting: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let post_s = started.elapsed().as_secs_f64() - close_s;

    let invoices = erp.invoices().await.unwrap();
    let stats = erp.stats().await.unwrap();
    let rejected: BTreeSet<String> = stats["rejected_documents"].as_object().unwrap().keys().cloned().collect();
    let mut per_document: BTreeMap<String, (usize, Decimal)> = BTreeMap::new();
    for i in &invoices {
        let e = per_document.entry(i["document_id"].as_str().unwrap().to_string()).or_default();
        e.0 += 1;
        e.1 = dec(&i["total"]);
    }
    let duplicates: usize = per_document.values().map(|(c, _)| c.saturating_sub(1)).sum();
    let (_, ex) = env.get("/v1/exceptions").await.unwrap();
    let exceptions: BTreeSet<String> =
        ex["exceptions"].as_array().unwrap().iter().map(|e| e["document_id"].as_str().unwrap().to_string()).collect();
    let mut lost = 0;
    let (mut rated, mut posted) = (Decimal::ZERO, Decimal::ZERO);
    for d in &docs {
        let id = d["id"].as_str().unwrap();
        let (_, doc) = env.get(&format!("/v1/documents/{id}")).await.unwrap();
        rated += dec(&doc["total"]);
        match (per_document.get(id), doc["state"]["status"].as_str().unwrap()) {
            (Some((_, total)), "posted") => {
                assert_eq!(*total, dec(&doc["total"]), "{id}");
                assert_eq!(
                    invoices.iter().find(|i| i["document_id"] == id).unwrap()["number"],
                    doc["state"]["erp_document_number"]
                );
                posted += *total;
            }
            (None, "rejected") => assert!(rejected.contains(id), "{id} rejected without a business rejection"),
            (found, status) => {
                eprintln!("lost: {id} status {status}, in the ERP: {found:?}");
                lost += 1;
            }
        }
    }
    let injected: u64 = stats["faults_injected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    println!(
        "posting: documents={n} faults={injected} duplicates={duplicates} lost={lost} exceptions={} \
         (mapper {mapper}, faults by kind {}, close {close_s:.1} s, posting {post_s:.1} s = {:.0} documents/s)",
        exceptions.len(),
        stats["faults_injected"],
        n as f64 / post_s.max(0.001)
    );
    assert_eq!(duplicates, 0);
    assert_eq!(lost, 0);
    assert_eq!(exceptions, rejected, "the exception queue holds exactly the business rejections");
    assert!(!rejected.is_empty() && injected as usize > n / 5, "the faults happened: {stats}");
    let rejected_total: Decimal =
        docs.iter().filter(|d| rejected.contains(d["id"].as_str().unwrap())).map(|d| dec(&d["total"])).sum();
    assert_eq!(posted + rejected_total, rated, "every rated cent is posted or waits as an exception");
}
