//! The exception queue and coexisting ERP targets through the HTTP API:
//! business rejections wait with their reason and owner until finance
//! re-routes, retries after a fix or cancels; a legal entity posting to two
//! targets gets each document into each exactly once; an event's lineage
//! leads to the ERP numbers of both.

use serde_json::json;
use std::time::Duration;
use tollgate::config::ErpTargetConfig;
use tollgate_e2e::{Env, Erp, event, masterdata};

async fn exceptions(env: &Env, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = env.get(&format!("/v1/exceptions{query}")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["exceptions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_documents_wait_in_the_exception_queue_until_finance_acts() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    env.ingest(vec![
        event("g1", "globex", "api_calls", "2025-05-03T08:00:00Z", "10"),
        event("i1", "initech", "api_calls", "2025-05-04T09:00:00Z", "3"),
    ])
    .await
    .unwrap();
    // The ERP has closed May; the first request also meets an unknown item.
    erp.close_periods(&["2025-05"]).await.unwrap();
    erp.inject(json!([{ "kind": "reject", "code": "unknown-item", "message": "item ITEM-API does not exist" }]))
        .await
        .unwrap();
    let closed = env.close("2025-05").await.unwrap();
    assert!(closed["documents"].as_array().unwrap().iter().all(|d| d["state"]["status"] == "rejected"), "{closed}");

    let open = exceptions(&env, "").await;
    assert_eq!(open.len(), 2, "{open:?}");
    let by_code = |code: &str| open.iter().find(|e| e["rejection"]["code"] == code).unwrap().clone();
    let (closed_period, unknown_item) = (by_code("period-closed"), by_code("unknown-item"));
    assert_eq!(closed_period["rejection"]["owner"], "finance");
    assert_eq!(closed_period["rejection"]["suggested_action"], "reroute");
    assert_eq!(closed_period["rejection"]["message"], "Posting period 2025-05 is not open");
    assert_eq!(closed_period["rejection"]["field"], "issue_date");
    assert_eq!(unknown_item["rejection"]["owner"], "master-data");
    assert_eq!(unknown_item["rejection"]["suggested_action"], "retry");

    // Re-route to the next open period: posted with June's first day as its date.
    let id = closed_period["document_id"].as_str().unwrap();
    let (status, body) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "reroute" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["posting_period"], "2025-06");
    let doc = env.wait_status(id, "posted").await;
    let number = doc["state"]["erp_document_number"].as_str().unwrap();
    let invoices = erp.invoices().await.unwrap();
    let invoice = invoices.iter().find(|i| i["number"] == number).unwrap();
    assert_eq!(invoice["issue_date"], "2025-06-01", "{invoice}");
    assert_eq!(invoice["period_start"], "2025-05-01T00:00:00Z", "the usage period stays");

    // Retry after the master-data team maps the item anew (and the ERP reopened May).
    erp.close_periods(&[]).await.unwrap();
    let (status, body) = env
        .post(
            "/v1/masterdata/skus/API/versions",
            &json!({ "effective_from": "1970-01-01T00:00:00Z",
                     "value": { "id": "API", "name": "API calls", "erp_item": "ITEM-API-V2" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = unknown_item["document_id"].as_str().unwrap();
    let (status, body) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "retry" })).await;
    assert_eq!(status, 200, "{body}");
    let doc = env.wait_status(id, "posted").await;
    let number = doc["state"]["erp_document_number"].as_str().unwrap();
    let invoices = erp.invoices().await.unwrap();
    let invoice = invoices.iter().find(|i| i["number"] == number).unwrap();
    assert_eq!(invoice["lines"][0]["item"], "ITEM-API-V2", "{invoice}");
    assert!(exceptions(&env, "").await.is_empty());

    // An action needs an open exception.
    let (status, body) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "retry" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("failed_precondition")), "{body}");
    let (status, body) = env.post("/v1/exceptions/TG-nope/actions", &json!({ "action": "retry" })).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "shred" })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("body")), "{body}");

    // Cancel, with a reason: nothing is posted, the document stays for audit.
    env.ingest(vec![event("g2", "globex", "api_calls", "2025-06-03T08:00:00Z", "5")]).await.unwrap();
    erp.inject(json!([{ "kind": "reject", "code": "validation", "message": "customer on credit hold" }]))
        .await
        .unwrap();
    let june = env.close("2025-06").await.unwrap();
    let globex = june["documents"].as_array().unwrap().iter().find(|d| d["customer"] == "globex").unwrap().clone();
    let id = globex["id"].as_str().unwrap();
    let doc = env.wait_status(id, "rejected").await;
    assert_eq!(doc["state"]["rejection"]["owner"], "erp");
    let (status, body) =
        env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "cancel", "reason": "  " })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("reason")), "{body}");
    let before = erp.invoices().await.unwrap().len();
    let (status, body) = env
        .post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "cancel", "reason": "billed by hand" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(erp.invoices().await.unwrap().len(), before, "a cancelled document is not posted");
    assert!(exceptions(&env, "").await.is_empty());
    let history = exceptions(&env, "?all=true").await;
    let actions: Vec<_> = history.iter().map(|e| e["actions"][0]["action"].as_str().unwrap()).collect();
    assert_eq!(history.len(), 3, "{history:?}");
    for a in ["reroute", "retry", "cancel"] {
        assert!(actions.contains(&a), "{actions:?}");
    }
    let cancelled = history.iter().find(|e| e["status"] == "cancelled").unwrap();
    assert_eq!(cancelled["actions"][0]["reason"], "billed by hand");
    assert_eq!(cancelled["actions"][0]["rejection"]["message"], "customer on credit hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_entity_posting_to_two_targets_posts_each_document_once_to_each() {
    let erp = Erp::start().await.unwrap();
    let legacy = Erp::start().await.unwrap();
    let legacy_url = legacy.base.clone();
    let env = Env::start_configured(&erp, move |c| {
        c.erp_targets.insert(
            "legacy".into(),
            ErpTargetConfig { timeout_ms: 2_000, ..ErpTargetConfig::new(legacy_url, "generic-json") },
        );
    })
    .await
    .unwrap();
    let mut md = masterdata();
    md["legal_entities"][0]["coexisting_targets"] = json!(["nowhere"]);
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("legal_entities[0].coexisting_targets[0]")));
    md["legal_entities"][0]["coexisting_targets"] = json!(["legacy"]);
    // From 2025 on (a change without a date would apply from now).
    let (status, body) = env.put("/v1/masterdata?effective_from=2025-01-01T00:00:00Z", &md).await;
    assert_eq!(status, 200, "{body}");

    env.ingest(vec![
        event("g1", "globex", "api_calls", "2025-05-03T08:00:00Z", "10"),
        event("i1", "initech", "api_calls", "2025-05-04T09:00:00Z", "3"),
    ])
    .await
    .unwrap();
    // The legacy ERP fails once after committing (ambiguous), then rejects one document.
    legacy
        .inject(json!([
            { "kind": "error_after_commit", "status": 503 },
            { "kind": "reject", "code": "period-closed", "message": "closed" }
        ]))
        .await
        .unwrap();
    let closed = env.close("2025-05").await.unwrap();
    let docs = closed["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 4, "two customers × two targets: {closed}");
    let mut ids: Vec<_> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each target's document has its own id");
    let state = |target: &str, customer: &str| {
        let d = docs.iter().find(|d| d["erp_target"] == target && d["customer"] == customer).unwrap();
        d["state"]["status"].as_str().unwrap().to_string()
    };
    assert_eq!(state("sim", "globex"), "posted");
    assert_eq!(state("sim", "initech"), "posted");
    let legacy_states = [state("legacy", "globex"), state("legacy", "initech")];
    assert!(legacy_states.contains(&"posted".to_string()) && legacy_states.contains(&"rejected".to_string()));

    let (primary, second) = (erp.invoices().await.unwrap(), legacy.invoices().await.unwrap());
    assert_eq!(primary.len(), 2, "{primary:?}");
    assert_eq!(second.len(), 1, "the ambiguous failure did not make a second invoice: {second:?}");
    let again = env.close("2025-05").await.unwrap();
    assert_eq!(again["already_closed"], true);
    assert_eq!((erp.invoices().await.unwrap().len(), legacy.invoices().await.unwrap().len()), (2, 1));

    // From the event to both ERP numbers.
    let (status, lineage) = env.get("/v1/lineage/events/g1").await.unwrap();
    assert_eq!(status, 200, "{lineage}");
    let charge = &lineage["charges"][0];
    assert_eq!(charge["contract_line"], "globex-api");
    assert_eq!(charge["period"], "2025-05");
    let mut targets: Vec<_> = charge["documents"].as_array().unwrap().iter().map(|d| d["erp_target"].clone()).collect();
    targets.sort_by_key(|t| t.to_string());
    assert_eq!(targets, [json!("legacy"), json!("sim")], "{lineage}");
    let sim_doc = charge["documents"].as_array().unwrap().iter().find(|d| d["erp_target"] == "sim").unwrap();
    assert!(primary.iter().any(|i| i["number"] == sim_doc["erp_document_number"]), "{lineage}");
    let (status, _) = env.get("/v1/lineage/events/never-sent").await.unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_keeps_failing_opens_its_breaker_until_a_probe_succeeds() {
    // The target's address has nothing listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unused = Erp::start().await.unwrap();
    let env = Env::start_configured(&unused, move |c| {
        let t = c.erp_targets.get_mut("sim").unwrap();
        t.base_url = format!("http://{addr}");
        t.breaker_failures = 3;
        t.breaker_cooldown_ms = 1_500;
    })
    .await
    .unwrap();
    env.ingest(vec![
        event("g1", "globex", "api_calls", "2025-05-03T08:00:00Z", "10"),
        event("i1", "initech", "api_calls", "2025-05-04T09:00:00Z", "3"),
    ])
    .await
    .unwrap();
    let (status, closed) = env.close_nowait("2025-05").await;
    assert_eq!(status, 200, "{closed}");
    let ids: Vec<String> =
        closed["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();

    let breaker = |env: &Env| {
        let env = env.base.clone();
        async move {
            let r = tollgate_e2e::http().get(format!("{env}/v1/targets")).bearer_auth(tollgate_e2e::API_KEY).send();
            let body: serde_json::Value = r.await.unwrap().json().await.unwrap();
            body["targets"].as_array().unwrap().iter().find(|t| t["name"] == "sim").unwrap().clone()
        }
    };
    let mut open = false;
    for _ in 0..250 {
        let t = breaker(&env).await;
        if t["breaker"]["state"] == "open" {
            assert_eq!(t["waiting"], 2, "{t}");
            open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(open, "the breaker never opened");
    // While it is open nothing is sent: the attempts stay where the breaker
    // stopped them (backoff alone would have tried about ten times by now).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut attempts = 0;
    for id in &ids {
        let (_, doc) = env.get(&format!("/v1/documents/{id}")).await.unwrap();
        assert_eq!(doc["state"]["status"], "pending");
        attempts += doc["state"]["attempts"].as_u64().unwrap();
    }
    assert!((3..=4).contains(&attempts), "{attempts} attempts");

    // The ERP comes up; after the cool-down one probe succeeds and the rest follows.
    let erp = Erp::start_at(addr).await.unwrap();
    for id in &ids {
        env.wait_status(id, "posted").await;
    }
    assert_eq!(erp.invoices().await.unwrap().len(), 2);
    let t = breaker(&env).await;
    assert_eq!((t["breaker"]["state"].as_str(), t["waiting"].as_u64()), (Some("closed"), Some(0)), "{t}");
}
