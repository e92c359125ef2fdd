//! Exactly-once posting: closing twice, restarts, and ambiguous ERP failures.

use serde_json::json;
use tollgate_e2e::{Env, Erp, dec, event};

/// Every document of a close is posted, and the ERP holds exactly one
/// invoice per document under the number Tollgate recorded, with the
/// document's total; returns those invoices.
async fn posted_once_each(closed: &serde_json::Value, erp: &Erp) -> Vec<serde_json::Value> {
    let docs = closed["documents"].as_array().unwrap();
    assert!(docs.iter().all(|d| d["state"]["status"] == "posted"), "{closed:#}");
    let invoices = erp.invoices().await.unwrap();
    assert_eq!(invoices.len(), docs.len(), "{invoices:#?}");
    docs.iter()
        .map(|d| {
            let found: Vec<_> = invoices.iter().filter(|i| i["document_id"] == d["id"]).collect();
            assert_eq!(found.len(), 1, "{d}");
            assert_eq!(found[0]["number"], d["state"]["erp_document_number"]);
            assert_eq!(dec(&found[0]["total"]), dec(&d["total"]), "{}", found[0]);
            found[0].clone()
        })
        .collect()
}

fn usage() -> Vec<tollgate::proto::UsageEvent> {
    vec![
        event("a1", "globex", "api_calls", "2025-05-03T08:00:00Z", "150"),
        event("a2", "initech", "api_calls", "2025-05-04T09:30:00Z", "3"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_same_period_twice_posts_one_invoice_per_customer() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    assert_eq!(env.ingest(usage()).await.unwrap().accepted, 2);

    let first = env.close("2025-05").await.unwrap();
    let second = env.close("2025-05").await.unwrap();
    assert_eq!(second["already_closed"], true);
    assert_eq!(first["documents"], second["documents"], "a repeated close returns the first close's documents");

    assert!(second.get("late_usage").is_none(), "nothing changed since the close: {second}");

    // After a restart on the same data directory, a third close still posts
    // nothing new, and reports usage that arrived after the close.
    let env = env.restart().await.unwrap();
    let late = vec![event("late-1", "globex", "api_calls", "2025-05-30T23:00:00Z", "10.5")];
    assert_eq!(env.ingest(late).await.unwrap().accepted, 1);
    let third = env.close("2025-05").await.unwrap();
    assert_eq!(third["already_closed"], true);
    assert_eq!(
        third["late_usage"],
        json!([{
            "contract_line": "globex-api", "billed_quantity": "150", "current_quantity": "160.5",
            "billed_version": third["late_usage"][0]["current_version"], "current_version": 5
        }])
    );

    let invoices = erp.invoices().await.unwrap();
    assert_eq!(invoices.len(), 2, "{invoices:#?}");
    let customers: Vec<_> = invoices.iter().map(|i| i["customer"].as_str().unwrap()).collect();
    assert!(customers.contains(&"globex") && customers.contains(&"initech"));
    assert_eq!(erp.stats().await.unwrap()["requests"], 2, "nothing was re-sent");
    for d in third["documents"].as_array().unwrap() {
        let number = d["state"]["erp_document_number"].as_str().unwrap();
        assert!(invoices.iter().any(|i| i["number"] == number && i["document_id"] == d["id"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erp_failure_after_commit_does_not_create_a_second_invoice() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    env.ingest(usage()).await.unwrap();
    // The first request is committed by the ERP and then answered with 503
    // (the ambiguous case); the retry meets a plain 503; the next succeeds.
    erp.inject(json!([
        { "kind": "error_after_commit", "status": 503 },
        { "kind": "status", "status": 503 }
    ]))
    .await
    .unwrap();

    let close = env.close("2025-05").await.unwrap();
    let docs = close["documents"].as_array().unwrap();
    assert!(docs.iter().all(|d| d["state"]["status"] == "posted"), "{close:#}");
    let invoices = erp.invoices().await.unwrap();
    assert_eq!(invoices.len(), 2, "the retry must find the committed invoice, not create another: {invoices:#?}");
    // The worker takes the documents in turn: each met one fault, then succeeded.
    for doc in docs {
        assert_eq!(doc["state"]["attempts"], 2, "{doc:#}");
        let number = doc["state"]["erp_document_number"].as_str().unwrap();
        let original = invoices.iter().find(|i| i["document_id"] == doc["id"]).unwrap();
        assert_eq!(original["number"], number, "Tollgate keeps the ERP's original number");
    }
    assert_eq!(erp.stats().await.unwrap()["requests"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_the_erp_committed_does_not_create_a_second_invoice() {
    let erp = Erp::start().await.unwrap();
    // The gateway gives up on an answer after 300 ms; the ERP commits, then
    // answers after 1 s.
    let env = Env::start_configured(&erp, |c| {
        c.erp_targets.get_mut("sim").unwrap().timeout_ms = 300;
    })
    .await
    .unwrap();
    env.ingest(vec![event("a1", "globex", "api_calls", "2025-05-03T08:00:00Z", "150")]).await.unwrap();
    erp.inject(json!([{ "kind": "timeout_after_commit", "ms": 1000 }])).await.unwrap();
    let close = env.close("2025-05").await.unwrap();
    let doc = close["documents"].as_array().unwrap().iter().find(|d| d["customer"] == "globex").unwrap().clone();
    assert_eq!(doc["state"]["status"], "posted", "{close:#}");
    let invoices = erp.invoices().await.unwrap();
    let globex: Vec<_> = invoices.iter().filter(|i| i["document_id"] == doc["id"]).collect();
    assert_eq!(globex.len(), 1, "{invoices:#?}");
    assert_eq!(globex[0]["number"], doc["state"]["erp_document_number"], "the committed invoice's number is kept");
    assert!(doc["state"]["attempts"].as_u64().unwrap() >= 2, "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_rejection_marks_the_document_rejected_with_the_erp_message() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    env.ingest(vec![event("a1", "globex", "api_calls", "2025-05-03T08:00:00Z", "150")]).await.unwrap();
    erp.inject(json!([{ "kind": "reject", "code": "period-closed", "message": "posting period 2025-05 is not open" }]))
        .await
        .unwrap();
    let close = env.close("2025-05").await.unwrap();
    let doc = &close["documents"][0];
    assert_eq!(doc["state"]["status"], "rejected", "{close:#}");
    assert!(doc["state"]["last_error"].as_str().unwrap().contains("period-closed: posting period 2025-05 is not open"));
    assert!(erp.invoices().await.unwrap().is_empty());
    // Still readable through the API: nothing is dropped.
    let (status, stored) = env.get(&format!("/v1/documents/{}", doc["id"].as_str().unwrap())).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(stored["total"], "10.63"); // 100 × 0.10 + 50 × 0.0125 (0.625 → 0.63)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rater_error_leaves_its_line_out_naming_the_parameter_and_a_retry_after_the_fix_bills_it() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let mut md = tollgate_e2e::masterdata();
    md["contract_lines"][0]["params"]["tiers"][1]["up_to"] = json!("50");
    // Retroactive, so May 2025 is rated on the broken parameters.
    let r = tollgate_e2e::http()
        .put(format!("{}/v1/masterdata?effective_from=2025-01-01T00:00:00Z", env.base))
        .bearer_auth(tollgate_e2e::API_KEY)
        .json(&md)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.ingest(usage()).await.unwrap();
    // The close bills initech and leaves globex's line out, naming why.
    let body = env.close("2025-05").await.unwrap();
    let msg = body["left_out"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("contract line globex-api: plugin-error: plugin error invalid-params at params.tiers[1]"),
        "{msg}"
    );
    assert_eq!(body["documents"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(erp.invoices().await.unwrap().len(), 1);
    // Fixing the master data (retroactively again), finance retries the line.
    let r = tollgate_e2e::http()
        .put(format!("{}/v1/masterdata?effective_from=2025-01-01T00:00:00Z", env.base))
        .bearer_auth(tollgate_e2e::API_KEY)
        .json(&tollgate_e2e::masterdata())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = body["left_out"][0]["id"].as_str().unwrap();
    let (status, billed) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({"action": "retry"})).await;
    assert_eq!((status, &billed["status"]), (200, &json!("billed")), "{billed}");
    env.wait_status(billed["documents"][0].as_str().unwrap(), "posted").await;
    assert_eq!(erp.invoices().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percentage_fee_line_is_priced_on_the_same_customers_other_charges() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let mut md = tollgate_e2e::masterdata();
    md["skus"].as_array_mut().unwrap().push(json!({ "id": "FEE", "name": "Processing fee", "erp_item": "ITEM-FEE" }));
    // Rated after globex-api (master-data order): a 0.2.0 rater that sees it.
    md["contract_lines"].as_array_mut().unwrap().push(json!({
        "id": "globex-fee", "customer": "globex", "meter": "fees", "sku": "FEE",
        "rater": { "plugin": "percentage-fee" }, "currency": "EUR",
        "params": { "percent": "2.5", "description": "Processing fee" }
    }));
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!(status, 200, "{body}");
    env.ingest(usage()).await.unwrap();
    let closed = env.close("2025-05").await.unwrap();
    assert_eq!(closed["documents"].as_array().unwrap().len(), 2, "{closed}");

    let invoices = erp.invoices().await.unwrap();
    let globex = invoices.iter().find(|i| i["customer"] == "globex").unwrap();
    let lines = globex["lines"].as_array().unwrap();
    // 100 × 0.10 + 50 × 0.0125 = 10.63; 2.5 % of it = 0.26575 → 0.27. Initech's
    // 1.00 is another customer's and not in the base.
    let fee = lines.iter().find(|l| l["sku"] == "FEE").expect("fee line");
    assert_eq!(
        (dec(&fee["quantity"]), dec(&fee["unit_price"]), dec(&fee["amount"])),
        (d("10.63"), d("0.025"), d("0.27"))
    );
    let total: rust_decimal::Decimal = lines.iter().map(|l| dec(&l["amount"])).sum();
    assert_eq!(total, d("10.90"));
    let initech = invoices.iter().find(|i| i["customer"] == "initech").unwrap();
    assert!(initech["lines"].as_array().unwrap().iter().all(|l| l["sku"] != "FEE"));

    // Lineage of the fee names the charges it was computed on and the 0.2.0 rule.
    let (status, lineage) =
        env.get(&format!("/v1/lineage/documents/{}", globex["number"].as_str().unwrap())).await.unwrap();
    assert_eq!(status, 200);
    let fee_line =
        lineage["contract_lines"].as_array().unwrap().iter().find(|l| l["contract_line"] == "globex-fee").unwrap();
    assert_eq!(fee_line["rule"]["plugin"], "percentage-fee");
    let related = fee_line["related"].as_array().unwrap();
    assert_eq!(related.len(), 2, "{related:?}");
    assert!(related.iter().all(|r| r["contract_line"] == "globex-api"));
    let base: rust_decimal::Decimal = related.iter().map(|r| dec(&r["amount"])).sum();
    assert_eq!(base, d("10.63"));
}

fn d(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netsuite_invoices_are_upserted_by_external_id_so_a_resend_never_duplicates() {
    let erp = Erp::start().await.unwrap();
    let env = Env::posting_to(&erp, "netsuite", &[("subsidiary", "3")], 2_000).await.unwrap();
    env.ingest(vec![
        event("a1", "globex", "api_calls", "2025-05-03T08:00:00Z", "150"),
        event("a2", "initech", "api_calls", "2025-05-04T09:30:00Z", "3"),
        event("b1", "globex", "api_calls", "2025-06-03T08:00:00Z", "1"),
    ])
    .await
    .unwrap();
    // The first upsert commits and then fails; the resend updates the same record.
    erp.inject(json!([{ "kind": "error_after_commit", "status": 502 }])).await.unwrap();
    let closed = env.close("2025-05").await.unwrap();
    let docs = closed["documents"].as_array().unwrap();
    assert!(docs.iter().all(|d| d["state"]["status"] == "posted" && d["erp_target"] == "netsuite"), "{closed:#}");
    let invoices = erp.invoices().await.unwrap();
    assert_eq!(invoices.len(), 2, "{invoices:#?}");
    let globex = docs.iter().find(|d| d["customer"] == "globex").unwrap();
    let invoice = invoices.iter().find(|i| i["document_id"] == globex["id"]).unwrap();
    assert_eq!(invoice["number"], globex["state"]["erp_document_number"], "the internal id from Location");
    assert_eq!((invoice["company"].as_str(), invoice["account"].as_str()), (Some("3"), Some("C-1")));
    // 100 × 0.10 + 50 × 0.0125 (rounded to 0.63 by the rule), exact through JSON numbers.
    assert_eq!(dec(&invoice["total"]), rust_decimal::Decimal::new(1063, 2), "{invoice}");
    assert_eq!(dec(&invoice["total"]), dec(&globex["total"]));
    assert_eq!(dec(&invoice["lines"][1]["unit_price"]), rust_decimal::Decimal::new(125, 4));

    // NetSuite's closed period lands in the exception queue, owned by finance.
    erp.close_periods(&["2025-06"]).await.unwrap();
    let june = env.close("2025-06").await.unwrap();
    let doc = june["documents"].as_array().unwrap().iter().find(|d| d["customer"] == "globex").unwrap().clone();
    assert_eq!(doc["state"]["status"], "rejected", "{june:#}");
    assert_eq!(doc["state"]["rejection"]["code"], "period-closed");
    assert_eq!(doc["state"]["rejection"]["owner"], "finance");
    assert_eq!(doc["state"]["rejection"]["field"], "tranDate");
    assert_eq!(erp.invoices().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_central_is_searched_by_external_document_number_before_any_resend() {
    let erp = Erp::start().await.unwrap();
    let env = Env::posting_to(&erp, "business-central", &[], 2_000).await.unwrap();
    env.ingest(usage()).await.unwrap();
    // Business Central has no idempotency: the first invoice commits and the
    // answer is lost; only the look-up keeps the resend from duplicating it.
    erp.inject(json!([{ "kind": "error_after_commit", "status": 503 }])).await.unwrap();
    let closed = env.close("2025-05").await.unwrap();
    // The ERP computes line amounts itself; its totals are still the documents'.
    for invoice in posted_once_each(&closed, &erp).await {
        assert_eq!(invoice["company"], "1000");
    }
    // Two creates (one answered 503 after committing); the look-up found
    // that one, so there was no third.
    assert_eq!(erp.stats().await.unwrap()["requests"], 2, "no resend after the look-up");
}

/// Master data whose ERP ids are Odoo record ids.
async fn with_odoo_ids(env: &Env) {
    let mut md = tollgate_e2e::masterdata();
    md["legal_entities"][0]["erp_target"] = json!("odoo");
    md["customers"][0]["erp_account"] = json!("7");
    md["customers"][1]["erp_account"] = json!("8");
    md["skus"][0]["erp_item"] = json!("42");
    let (status, body) = env.put("/v1/masterdata?effective_from=2025-01-01T00:00:00Z", &md).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_request_looks_the_document_up_before_sending_again() {
    let erp = Erp::start().await.unwrap();
    let settings = [("database", "acme"), ("api_key", "k3y")];
    let env = Env::posting_to(&erp, "odoo", &settings, 30_000).await.unwrap();
    with_odoo_ids(&env).await;
    env.ingest(usage()).await.unwrap();
    // The first create commits, then the answer takes 5 s: the gateway dies
    // while it waits. Odoo has no idempotency; the entry was marked in
    // flight before the request left, so the restarted gateway looks the
    // document up by ref instead of creating it again.
    erp.inject(json!([{ "kind": "timeout_after_commit", "ms": 5000 }])).await.unwrap();
    let (status, body) = env.close_nowait("2025-05").await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..1500 {
        if !erp.invoices().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!erp.invoices().await.unwrap().is_empty(), "the first create is committed");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let env = env.kill_and_restart().await.unwrap();
    let closed = env.close("2025-05").await.unwrap();
    posted_once_each(&closed, &erp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_drafts_are_found_by_ref_after_a_timeout_so_none_is_created_twice() {
    let erp = Erp::start().await.unwrap();
    let settings = [("database", "acme"), ("api_key", "k3y")];
    let env = Env::posting_to(&erp, "odoo", &settings, 300).await.unwrap();
    // Odoo's ids are integers: a non-numeric account stops the close, naming it.
    env.ingest(usage()).await.unwrap();
    let (status, body) = env.close_nowait("2025-05").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("is not an Odoo id"), "{body}");
    with_odoo_ids(&env).await;

    // The first create commits and answers too late; the look-up by ref finds it.
    erp.inject(json!([{ "kind": "timeout_after_commit", "ms": 800 }])).await.unwrap();
    let closed = env.close("2025-05").await.unwrap();
    posted_once_each(&closed, &erp).await;
    assert_eq!(erp.stats().await.unwrap()["requests"], 2, "no resend after the look-up");
}

/// The ERP's invoices once there are `n` of them (within 10 s).
async fn invoices_once_there(erp: &Erp, n: usize) -> Vec<serde_json::Value> {
    let mut invoices = Vec::new();
    for _ in 0..500 {
        invoices = erp.invoices().await.unwrap();
        if invoices.len() == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(invoices.len(), n, "{invoices:#?}");
    invoices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_month_closes_by_itself_on_the_configured_schedule() {
    use tollgate::config::CloseSchedule;
    use tollgate::enrich::Period;
    let erp = Erp::start().await.unwrap();
    let mut env = Env::start(&erp).await.unwrap();
    // Usage of last month, whatever today is.
    let this_month = Period::containing(chrono::Utc::now(), None);
    let last_month = Period::containing(this_month.start - chrono::Duration::seconds(1), None);
    let at = (last_month.start + chrono::Duration::days(2)).to_rfc3339();
    env.ingest(vec![event("s1", "globex", "api_calls", &at, "10"), event("s2", "initech", "api_calls", &at, "3")])
        .await
        .unwrap();
    assert!(erp.invoices().await.unwrap().is_empty(), "nothing closes without a schedule");

    // Due from the 1st, 00:00 UTC: last month is due now. Yesterday's
    // interim documents are built too.
    env.config.posting.close_schedule = Some(CloseSchedule { day: 1, hour: 0, check_every_s: 1, interim_daily: true });
    let env = env.restart().await.unwrap();
    let invoices = invoices_once_there(&erp, 2).await;
    assert!(
        invoices
            .iter()
            .all(|i| i["period_start"] == last_month.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    let (status, again) = env.close_nowait(&last_month.id).await;
    assert_eq!((status, &again["already_closed"]), (200, &json!(true)), "{again}");
    // Later checks find it closed and post nothing more.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(erp.invoices().await.unwrap().len(), 2);
    let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    let period = Period::containing(yesterday, None);
    let (status, listed) = env.get(&format!("/v1/periods/{}/interim", period.id)).await.unwrap();
    assert_eq!(status, 200, "{listed}");
    let days: Vec<_> = listed["interim"].as_array().unwrap().iter().map(|r| r["as_of"].clone()).collect();
    assert_eq!(days, vec![json!(yesterday.date_naive().to_string())], "built once: {listed:#}");
}

/// Business time is the gateway's clock: on a clock held at the last
/// minute of February, the scheduled close leaves February open however
/// often it checks; moved past midnight into March, February closes by
/// itself, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_close_follows_the_gateways_clock_not_the_wall_clock() {
    use tollgate::clock::ManualClock;
    use tollgate::config::CloseSchedule;
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&chrono::Utc);
    let clock = ManualClock::at(at("2026-02-28T23:59:30Z"));
    let erp = Erp::start().await.unwrap();
    let schedule = CloseSchedule { day: 1, hour: 0, check_every_s: 1, interim_daily: false };
    let env = Env::start_with_clock(
        &erp.base,
        |c| c.posting.close_schedule = Some(schedule),
        std::sync::Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    env.ingest(vec![
        event("feb-1", "globex", "api_calls", "2026-02-10T08:00:00Z", "10"),
        event("feb-2", "initech", "api_calls", "2026-02-27T08:00:00Z", "3"),
    ])
    .await
    .unwrap();
    // Several checks at 23:59:30: February is not over on this clock.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert!(erp.invoices().await.unwrap().is_empty(), "closed before the clock reached March");

    clock.set(at("2026-03-01T00:00:30Z"));
    let invoices = invoices_once_there(&erp, 2).await;
    assert!(invoices.iter().all(|i| i["period_start"] == "2026-02-01T00:00:00Z"), "{invoices:#?}");
    let (status, again) = env.close_nowait("2026-02").await;
    assert_eq!((status, &again["already_closed"]), (200, &json!(true)), "{again}");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(erp.invoices().await.unwrap().len(), 2, "closed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_rate_limit_spaces_the_requests() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start_configured(&erp, |c| {
        c.erp_targets.get_mut("sim").unwrap().max_requests_per_second = Some(10);
    })
    .await
    .unwrap();
    // Ten customers, one document each.
    let mut md = tollgate_e2e::masterdata();
    let template = md["contract_lines"][1].clone();
    for i in 0..8 {
        let id = format!("extra-{i}");
        md["customers"].as_array_mut().unwrap().push(json!({
            "id": id, "name": id, "legal_entity": "acme-eu", "erp_account": format!("X-{i}")
        }));
        let mut line = template.clone();
        line["id"] = json!(format!("{id}-api"));
        line["customer"] = json!(id);
        md["contract_lines"].as_array_mut().unwrap().push(line);
    }
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!(status, 200, "{body}");
    let customers: Vec<String> =
        md["customers"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    let events = customers.iter().map(|c| event(&format!("r-{c}"), c, "api_calls", "2025-05-03T08:00:00Z", "1"));
    env.ingest(events.collect()).await.unwrap();
    let started = std::time::Instant::now();
    let closed = env.close("2025-05").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(closed["documents"].as_array().unwrap().len(), 10);
    assert_eq!(erp.invoices().await.unwrap().len(), 10);
    // Ten requests at ten a second: the last leaves 0.9 s after the first at the earliest.
    assert!(elapsed >= std::time::Duration::from_millis(900), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sap_requests_are_read_back_and_async_failures_reach_the_exception_queue() {
    let erp = Erp::start().await.unwrap();
    let settings = [
        ("user", "TOLLGATE"),
        ("password", "s3cret"),
        ("logical_system", "TOLLGATE01"),
        ("sales_organization", "1010"),
    ];
    let env = Env::posting_to(&erp, "sap-s4hana", &settings, 1_000).await.unwrap();
    env.ingest(usage()).await.unwrap();
    // The first SOAP request is processed and its answer never comes: the
    // read-back by reference document finds the billing document request,
    // so nothing is sent twice.
    erp.inject(json!([{ "kind": "timeout_after_commit", "ms": 2_500 }])).await.unwrap();
    let closed = env.close("2025-05").await.unwrap();
    let invoices = posted_once_each(&closed, &erp).await;
    assert!(invoices.iter().all(|i| i["number"].as_str().unwrap().starts_with('9')), "{invoices:#?}");
    assert_eq!(erp.stats().await.unwrap()["requests"], 2, "one SOAP request per document");

    // April is closed in S/4HANA: the request is accepted (202) and fails
    // in processing; only the read-back shows it, and it reaches finance.
    env.ingest(vec![event("apr", "globex", "api_calls", "2025-04-10T10:00:00Z", "10")]).await.unwrap();
    erp.close_periods(&["2025-04"]).await.unwrap();
    let april = env.close("2025-04").await.unwrap();
    let doc = april["documents"][0].clone();
    assert_eq!(doc["state"]["status"], "rejected", "{april:#}");
    assert_eq!(doc["state"]["rejection"]["code"], "period-closed");
    let message = doc["state"]["rejection"]["message"].as_str().unwrap();
    assert_eq!(message, "Posting period 004 2025 is not open (F5/201)");

    // Re-routed to May, it is sent again (a new message: its date changed) and posts.
    let id = doc["id"].as_str().unwrap();
    let (status, body) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "reroute" })).await;
    assert_eq!(status, 200, "{body}");
    let posted = env.wait_status(id, "posted").await;
    let invoices = erp.invoices().await.unwrap();
    let found: Vec<_> = invoices.iter().filter(|i| i["document_id"] == posted["id"]).collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["number"], posted["state"]["erp_document_number"]);
    assert_eq!(found[0]["issue_date"], "2025-05-01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_documents_show_the_period_to_date_and_are_never_posted() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    env.ingest(vec![
        event("early", "globex", "api_calls", "2025-05-03T08:00:00Z", "100"),
        event("late", "globex", "api_calls", "2025-05-20T08:00:00Z", "50"),
    ])
    .await
    .unwrap();
    let interim = |date: &'static str| {
        let env = &env;
        async move { env.post(&format!("/v1/periods/2025-05/interim?date={date}"), &serde_json::Value::Null).await }
    };
    // To the 10th: the first 100 calls only, all in the first tier.
    let (status, tenth) = interim("2025-05-10").await;
    assert_eq!(status, 200, "{tenth}");
    assert_eq!(tenth["as_of"], "2025-05-10");
    let docs = tenth["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1, "{tenth:#}");
    assert_eq!(docs[0]["state"]["status"], "interim");
    assert!(docs[0]["id"].as_str().unwrap().starts_with("TGI-"), "{}", docs[0]["id"]);
    assert_eq!(dec(&docs[0]["total"]), "10.00".parse().unwrap());
    // To the last day: all 150.
    let (status, last) = interim("2025-05-31").await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(dec(&last["documents"][0]["total"]), "10.63".parse().unwrap());

    // Kept day by day; the ERP has seen none of them.
    let (_, listed) = env.get("/v1/periods/2025-05/interim").await.unwrap();
    let days: Vec<_> = listed["interim"].as_array().unwrap().iter().map(|r| r["as_of"].clone()).collect();
    assert_eq!(days, vec![json!("2025-05-10"), json!("2025-05-31")]);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(erp.invoices().await.unwrap().is_empty(), "interim documents are never posted");

    // The close bills what the last day's interim showed, under its own id.
    let closed = env.close("2025-05").await.unwrap();
    let doc = &closed["documents"][0];
    assert_eq!(dec(&doc["total"]), dec(&last["documents"][0]["total"]));
    assert_ne!(doc["id"], last["documents"][0]["id"]);
    assert_eq!(erp.invoices().await.unwrap().len(), 1);

    // A day outside the period is refused, naming the field.
    let (status, body) = interim("2025-06-01").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "date");
}
