//! Failure isolation: no tenant's data stops the gateway or another tenant,
//! and no failing contract line stops a close (issue #19's findings, each
//! reproduced through the public interfaces).

use serde_json::json;
use std::collections::BTreeMap;
use tollgate::proto::UsageEvent;
use tollgate_e2e::{API_KEY, Env, Erp, OTHER_API_KEY, event, http, test_component};

/// The largest quantity an event may carry (15 + 12 digits).
const MAX_QUANTITY: &str = "999999999999999.999999999999";

async fn get_as(env: &Env, key: &str, path: &str) -> (u16, serde_json::Value) {
    let r = http().get(format!("{}{path}", env.base)).bearer_auth(key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// Tenant `umbrella`'s meter `calls` (a sum), which [`umbrella_works`] uses.
async fn umbrella_meter(env: &Env) {
    let r = http()
        .post(format!("{}/v1/meters", env.base))
        .bearer_auth(OTHER_API_KEY)
        .json(&json!({"id": "calls", "event_type": "calls", "aggregation": "sum"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Tenant `umbrella` ingests and reads its windows: what
/// must keep working whatever tenant `acme` sends.
async fn umbrella_works(env: &Env, id: &str) {
    let ingested =
        env.ingest_as(Some(OTHER_API_KEY), vec![event(id, "wayne", "calls", "2025-05-02T10:00:00Z", "2")]).await;
    let results = ingested.unwrap_or_else(|s| panic!("umbrella's ingest refused: {s:?}")).results;
    assert_eq!(results[0].status, tollgate::proto::EventStatus::Accepted as i32, "{results:?}");
    let (status, body) = get_as(env, OTHER_API_KEY, "/v1/windows?meter=calls&customer=wayne").await;
    assert_eq!(status, 200, "umbrella's windows: {body}");
    assert!(tollgate_e2e::dec(&body["total"]["value"]) >= rust_decimal::Decimal::TWO, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_no_accepted_events_can_overflow_stop_no_tenant_and_survive_a_restart() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    umbrella_meter(&env).await;
    umbrella_works(&env, "u0").await;
    // 99 of the largest quantity for one customer in one hour: a Decimal
    // overflows after 79 of them. Every one is acknowledged.
    let events =
        (0..99).map(|i| event(&format!("big-{i}"), "globex", "api_calls", "2025-05-03T10:00:00Z", MAX_QUANTITY));
    let acked = env.ingest(events.collect()).await.unwrap();
    assert!(acked.results.iter().all(|r| r.status == tollgate::proto::EventStatus::Accepted as i32), "{acked:?}");
    env.ingest(vec![event("small", "initech", "api_calls", "2025-05-03T10:00:00Z", "10")]).await.unwrap();
    umbrella_works(&env, "u1").await;
    // The window holds the exact sum, normalised.
    let (status, w) = env.get("/v1/windows?meter=api_calls&customer=globex").await.unwrap();
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["windows"][0]["value"], "98999999999999999.999999999901", "{w}");
    assert_eq!(w["windows"][0]["events"], 99);
    // A restart replays and serves, for both tenants.
    let env = env.restart().await.unwrap();
    let (_, again) = env.get("/v1/windows?meter=api_calls&customer=globex").await.unwrap();
    assert_eq!(again["windows"], w["windows"], "the same windows after the restart");
    env.ingest(vec![event("after", "globex", "api_calls", "2025-05-03T11:00:00Z", "1")]).await.unwrap();
    umbrella_works(&env, "u2").await;
    // The close bills initech and leaves globex's line out: no rater takes
    // that quantity exactly, and finance sees why.
    let closed = env.close("2025-05").await.unwrap();
    let docs = closed["documents"].as_array().unwrap();
    assert_eq!(docs.iter().map(|d| d["customer"].as_str().unwrap()).collect::<Vec<_>>(), ["initech"], "{closed}");
    let left = closed["left_out"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{closed}");
    assert_eq!(
        (&left[0]["contract_line"], &left[0]["reason"], &left[0]["owner"], &left[0]["status"]),
        (&json!("globex-api"), &json!("quantity-out-of-range"), &json!("product"), &json!("open")),
        "{closed}"
    );
    assert!(left[0]["message"].as_str().unwrap().contains("99000000000000000.999999999901"), "{closed}");
    let (_, queue) = env.get("/v1/exceptions").await.unwrap();
    assert_eq!(queue["contract_lines"][0]["id"], left[0]["id"], "{queue}");
    assert_eq!(erp.invoices().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_contract_line_is_left_out_the_rest_is_billed_and_finance_retries_or_cancels_it() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    // globex's line is rated by a rater that never ends (fuel exhausted).
    assert_eq!(
        env.upload(API_KEY, "name=spin&version=1.0.0&kind=rater", test_component("hostile-rater-spin")).await.0,
        201
    );
    let tiers = tollgate_e2e::bundled_component("graduated-tiers-0.1.0.wasm");
    assert_eq!(env.upload(API_KEY, "name=my-tiers&version=1.0.0&kind=rater", tiers).await.0, 201);
    let activate = |plugin: &str, from: &str| json!({ "contract_line": "globex-api", "plugin": plugin, "version": "1.0.0", "effective_from": from });
    assert_eq!(env.post("/v1/activations", &activate("spin", "2025-01-01T00:00:00Z")).await.0, 201);
    env.ingest(vec![
        event("g-may", "globex", "api_calls", "2025-05-20T10:00:00Z", "150"),
        event("i-may", "initech", "api_calls", "2025-05-20T10:00:00Z", "3"),
        event("g-jun", "globex", "api_calls", "2025-06-20T10:00:00Z", "150"),
        event("i-jun", "initech", "api_calls", "2025-06-20T10:00:00Z", "3"),
    ])
    .await
    .unwrap();

    // Interim documents likewise: initech's, and what they leave out.
    let (status, interim) = env.post("/v1/periods/2025-05/interim?date=2025-05-31", &json!(null)).await;
    assert_eq!(status, 200, "{interim}");
    assert_eq!(interim["documents"].as_array().unwrap().len(), 1, "{interim}");
    assert_eq!(interim["left_out"][0]["reason"], "fuel-exhausted", "{interim}");

    let may = env.close("2025-05").await.unwrap();
    assert_eq!(may["documents"].as_array().unwrap().len(), 1, "initech is billed: {may}");
    assert_eq!(may["documents"][0]["customer"], "initech");
    let exc = &may["left_out"][0];
    assert_eq!(
        (&exc["contract_line"], &exc["reason"], &exc["owner"]),
        (&json!("globex-api"), &json!("fuel-exhausted"), &json!("finance"))
    );
    assert_eq!(exc["suggested_actions"], json!(["retry", "cancel"]));
    let id = exc["id"].as_str().unwrap().to_string();
    let action = |body: serde_json::Value| {
        let (env, id) = (&env, &id);
        async move { env.post(&format!("/v1/exceptions/{id}/actions"), &body).await }
    };
    // Retrying on the same rule fails again, and says so; it stays open.
    let (status, body) = action(json!({"action": "retry"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("fuel-exhausted"), "{body}");
    // A re-route is for documents, not lines.
    assert_eq!(action(json!({"action": "reroute"})).await.0, 400);
    // Finance activates a working version and retries: billed in a document of its own.
    assert_eq!(env.post("/v1/activations", &activate("my-tiers", "2025-05-15T00:00:00Z")).await.0, 201);
    let (status, billed) = action(json!({"action": "retry"})).await;
    assert_eq!(status, 200, "{billed}");
    assert_eq!(billed["status"], "billed");
    assert_eq!(billed["actions"].as_array().unwrap().len(), 2, "both retries are kept: {billed}");
    let supplement = billed["documents"][0].as_str().unwrap().to_string();
    let doc = env.wait_status(&supplement, "posted").await;
    assert_eq!(doc["customer"], "globex");
    assert_ne!(supplement, may["documents"][0]["id"].as_str().unwrap());
    // A second retry bills nothing twice.
    assert_eq!(action(json!({"action": "retry"})).await.0, 422);
    // The period's report lists the supplement and the exception as it stands.
    let again = env.close("2025-05").await.unwrap();
    assert_eq!(again["documents"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(again["left_out"][0]["status"], "billed");
    assert!(again.get("late_usage").is_none(), "the billed line is no late usage: {again}");
    let number = doc["state"]["erp_document_number"].as_str().unwrap();
    let (_, lineage) = env.get(&format!("/v1/lineage/documents/{number}")).await.unwrap();
    assert_eq!(lineage["contract_lines"][0]["rule"]["plugin"], "my-tiers", "{lineage}");

    // June: spin is in effect again (activated later); finance cancels.
    assert_eq!(env.post("/v1/activations", &activate("spin", "2025-06-01T00:00:00Z")).await.0, 201);
    let june = env.close("2025-06").await.unwrap();
    let id = june["left_out"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/exceptions/{id}/actions");
    let (status, body) = env.post(&path, &json!({"action": "cancel", "reason": " "})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("reason")), "{body}");
    let (status, body) = env.post(&path, &json!({"action": "cancel", "reason": "goodwill: not billed"})).await;
    assert_eq!((status, &body["status"]), (200, &json!("cancelled")), "{body}");
    let (_, open) = env.get("/v1/exceptions").await.unwrap();
    assert_eq!(open["contract_lines"], json!([]), "nothing open: {open}");
    let (_, all) = env.get("/v1/exceptions?all=true").await.unwrap();
    assert_eq!(all["contract_lines"].as_array().unwrap().len(), 2, "{all}");
    // May: initech + globex's supplement; June: initech.
    assert_eq!(erp.invoices().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_set_of_limits_and_one_error_shape() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    // A batch valid by every documented event limit: 10 000 events with
    // 256-byte ids and customers (about 5.5 MB over gRPC) is taken whole.
    let long = |prefix: &str, i: usize| format!("{prefix}{i:0>250}");
    let events = (0..10_000)
        .map(|i| {
            let mut e = event(&long("id", i), &long("cu", i % 7), "api_calls", "2025-05-03T10:00:00Z", "1");
            e.source = "s".repeat(256);
            e
        })
        .collect::<Vec<_>>();
    let acked = env.ingest(events).await.unwrap();
    assert_eq!(acked.accepted, 10_000);

    // Every refused HTTP request answers the documented JSON error.
    let json_error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let media = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let body: serde_json::Value =
            r.json().await.unwrap_or_else(|e| panic!("HTTP {status} is not JSON ({media}): {e}"));
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{body}");
        (status, body)
    };
    // An oversized body is refused as soon as it shows: while it is read
    // (a body without a length), or from its declared length before
    // anything of it is sent.
    let (status, body) = chunked(&env.base, "/v1/meters", 3).await;
    assert_eq!(
        (status, &body["error"]["code"], &body["error"]["field"]),
        (413, &json!("payload_too_large"), &json!("body")),
        "{body}"
    );
    for (path, media, declared) in [
        ("/v1/events", "application/cloudevents-batch+json", (16 << 20) + 1),
        ("/v1/plugins?name=x&version=1.0.0&kind=rater", "application/wasm", 64 << 20),
        ("/v1/meters", "application/json", (2 << 20) + 1),
        ("/v1/masterdata", "application/json", (64 << 20) + 1),
    ] {
        let (status, body) = declared_only(&env.base, path, media, declared).await;
        assert_eq!(
            (status, &body["error"]["code"], &body["error"]["field"]),
            (413, &json!("payload_too_large"), &json!("body")),
            "{path}: {body}"
        );
    }
    let r = http().get(format!("{}/v1/nowhere", env.base)).bearer_auth(API_KEY).send().await.unwrap();
    let (status, body) = json_error(r).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("no_route")), "{body}");
    let r = http().delete(format!("{}/v1/meters", env.base)).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(json_error(r).await.0, 405);
    let r = http().get(format!("{}/v1/events?limit=many", env.base)).bearer_auth(API_KEY).send().await.unwrap();
    let (status, body) = json_error(r).await;
    assert_eq!(status, 400, "{body}");

    // CloudEvents rejections name the attribute the producer sent.
    let ce = |id: &str, subject: &str, kind: &str| {
        json!({"specversion": "1.0", "id": id, "source": "s", "type": kind, "subject": subject,
               "time": "2025-05-03T10:00:00Z", "data": {"quantity": "1"}})
    };
    let r = http()
        .post(format!("{}/v1/events", env.base))
        .bearer_auth(API_KEY)
        .header("content-type", "application/cloudevents-batch+json")
        .json(&json!([ce("a", &"x".repeat(300), "api_calls"), ce("b", "globex", "Not A Meter!")]))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["field"], "subject", "{body}");
    assert_eq!(body["results"][1]["field"], "type", "{body}");
}

/// Sends only the head of a request declaring a `content-length` of
/// `declared` bytes, and reads the answer (status, JSON body).
async fn declared_only(base: &str, path: &str, media: &str, declared: usize) -> (u16, serde_json::Value) {
    let method = if path == "/v1/masterdata" { "PUT" } else { "POST" };
    raw_request(base, method, path, media, &format!("content-length: {declared}"), 0).await
}

/// Sends `mib` chunks of 1 MiB as a chunked body (no declared length), and
/// reads the answer (status, JSON body).
async fn chunked(base: &str, path: &str, mib: usize) -> (u16, serde_json::Value) {
    raw_request(base, "POST", path, "application/json", "transfer-encoding: chunked", mib).await
}

/// A request written by hand: its head with `framing`, then `mib` chunks
/// of 1 MiB (the gateway may answer, and stop reading, before the last).
async fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    media: &str,
    framing: &str,
    mib: usize,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: {media}\r\n\
         {framing}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = [b"100000\r\n".as_slice(), &vec![b' '; 1 << 20], b"\r\n"].concat();
    for _ in 0..mib {
        if s.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erp_number_given_to_two_documents_is_an_exception_not_a_stored_fact() {
    let erp = Erp::start().await.unwrap();
    // One request at a time, so the second invoice is the one after the first.
    let env = Env::start_configured(&erp, |c| {
        c.erp_targets.get_mut("sim").expect("the test target").max_concurrency = 1;
    })
    .await
    .unwrap();
    env.ingest(vec![
        event("g", "globex", "api_calls", "2025-05-20T10:00:00Z", "150"),
        event("i", "initech", "api_calls", "2025-05-20T10:00:00Z", "3"),
    ])
    .await
    .unwrap();
    // The ERP's second invoice gets the first one's number.
    erp.inject(json!([{ "kind": "delay", "ms": 0 }, { "kind": "reuse_number" }])).await.unwrap();
    let closed = env.close("2025-05").await.unwrap();
    let docs = closed["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2, "{closed}");
    let by_status = |s: &str| docs.iter().filter(|d| d["state"]["status"] == s).collect::<Vec<_>>();
    let (posted, held) = (by_status("posted"), by_status("rejected"));
    assert_eq!((posted.len(), held.len()), (1, 1), "{closed}");
    let number = posted[0]["state"]["erp_document_number"].as_str().unwrap();
    assert!(held[0]["state"]["erp_document_number"].is_null(), "the duplicate is not stored: {closed}");
    let (_, queue) = env.get("/v1/exceptions").await.unwrap();
    let exc = &queue["exceptions"][0];
    assert_eq!(exc["document_id"], held[0]["id"], "{queue}");
    assert_eq!(exc["rejection"]["code"], "duplicate-erp-number", "{queue}");
    let message = exc["rejection"]["message"].as_str().unwrap();
    assert!(message.contains(number) && message.contains(posted[0]["id"].as_str().unwrap()), "names both: {message}");
    // Lineage by the number finds the one document it belongs to.
    let (status, lineage) = env.get(&format!("/v1/lineage/documents/{number}")).await.unwrap();
    assert_eq!((status, &lineage["document"]["id"]), (200, &posted[0]["id"]), "{lineage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_meter_build_does_not_hold_up_a_tenants_writes_and_reads() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    // Tenant acme: 300 000 stored events of a type no meter reads yet.
    for b in 0..30 {
        let events = (0..10_000)
            .map(|i| event(&format!("h{b}-{i}"), &format!("c{}", i % 50), "history", "2025-05-03T10:00:00Z", "1"))
            .collect();
        assert_eq!(env.ingest(events).await.unwrap().accepted, 10_000);
    }
    umbrella_meter(&env).await;
    // acme creates a meter over its history: built while others are served.
    let build = tokio::spawn({
        let base = env.base.clone();
        async move {
            let r = http()
                .post(format!("{base}/v1/meters"))
                .bearer_auth(API_KEY)
                .json(&json!({"id": "history", "event_type": "history", "aggregation": "sum"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // umbrella writes and reads its own usage meanwhile: its read sees its write.
    let started = std::time::Instant::now();
    umbrella_works(&env, "during-build").await;
    let took = started.elapsed();
    assert!(!build.is_finished(), "the build ended before umbrella was served; make the history larger");
    println!("umbrella ingest + windows read while acme's meter builds: {took:?}");
    // acme's own new events, corrections and retractions during the build,
    // for every customer (so on both sides of the build's cursor), are
    // counted exactly once: by the build or as they are indexed.
    for k in 0..10 {
        let events = (0..50)
            .map(|c| event(&format!("d{k}-{c}"), &format!("c{c}"), "history", "2025-05-03T11:00:00Z", "2"))
            .collect();
        assert_eq!(env.ingest(events).await.unwrap().accepted, 50);
    }
    for b in 0..2 {
        let corrected = (0..50)
            .map(|i| UsageEvent {
                revision: 1,
                ..event(&format!("h{b}-{i}"), &format!("c{i}"), "history", "2025-05-03T10:00:00Z", "3")
            })
            .collect();
        assert_eq!(env.ingest(corrected).await.unwrap().accepted, 50);
    }
    let retracted = (0..50)
        .map(|i| UsageEvent { id: format!("h2-{i}"), revision: 1, retract: true, ..Default::default() })
        .collect();
    assert_eq!(env.ingest(retracted).await.unwrap().accepted, 50);
    assert!(!build.is_finished(), "the build ended before acme's writes; make the history larger");
    let (status, meter) = build.await.unwrap();
    assert_eq!(status, 201, "{meter}");
    let (_, w) = env.get("/v1/windows?meter=history").await.unwrap();
    // 300 000 × 1, + 500 × 2 new, + 100 × (3 − 1) corrected, − 50 × 1 retracted.
    assert_eq!(w["total"]["value"], "301150", "{}", w["total"]);
    assert_eq!(w["total"]["events"], 300_450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_uploads_have_quotas_per_tenant_and_their_use_is_visible() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start_configured(&erp, |c| {
        c.plugins.quota_versions = 3;
        c.plugins.quota_mib = 1;
        c.plugins.quota_uploads_per_hour = 6;
    })
    .await
    .unwrap();
    let tiers = tollgate_e2e::bundled_component("graduated-tiers-0.1.0.wasm");
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        let (status, body) = env.upload(API_KEY, &format!("name=t&version={v}&kind=rater"), tiers.clone()).await;
        assert_eq!(status, 201, "{body}");
    }
    // A fourth version is over the count; the same bytes again are no new version.
    let (status, body) = env.upload(API_KEY, "name=t&version=1.0.3&kind=rater", tiers.clone()).await;
    assert_eq!((status, &body["error"]["reason"]), (429, &json!("quota")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("plugins.quota_versions"), "{body}");
    assert_eq!(env.upload(API_KEY, "name=t&version=1.0.0&kind=rater", tiers.clone()).await.0, 200);
    // Another tenant has its own quota; a component over the byte quota is refused naming it.
    let (status, body) = env.upload(OTHER_API_KEY, "name=t&version=1.0.0&kind=rater", tiers.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = env.upload(OTHER_API_KEY, "name=big&version=1.0.0&kind=rater", vec![0u8; 1 << 20]).await;
    assert_eq!((status, &body["error"]["reason"]), (429, &json!("quota")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("plugins.quota_mib"), "{body}");
    // Attempts per hour: acme made 5; the 6th is the last one taken.
    let (status, _) = env.upload(API_KEY, "name=t&version=1.0.4&kind=rater", tiers.clone()).await;
    assert_eq!(status, 429);
    let (status, body) = env.upload(API_KEY, "name=t&version=1.0.0&kind=rater", tiers.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("plugins.quota_uploads_per_hour"), "{body}");
    let (_, listed) = env.get("/v1/plugins").await.unwrap();
    let q = &listed["quota"];
    assert_eq!(
        (&q["versions"], &q["max_versions"], &q["max_uploads_per_hour"]),
        (&json!(3), &json!(3), &json!(6)),
        "{listed}"
    );
    assert_eq!(q["bytes"], json!(3 * tiers.len()), "{listed}");
}

/// acme's uploads as `GET /v1/plugins` lists them: version → code bytes while loaded.
async fn loaded_uploads(env: &Env) -> BTreeMap<String, Option<u64>> {
    let (_, listed) = env.get("/v1/plugins").await.unwrap();
    listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["owner"] == "tenant")
        .map(|p| {
            assert_eq!(p["loaded"].as_bool().unwrap(), p["code_bytes"].is_u64(), "{p}");
            (p["version"].as_str().unwrap().to_string(), p["code_bytes"].as_u64())
        })
        .collect()
}

fn activation(version: &str) -> serde_json::Value {
    json!({"contract_line": "globex-api", "plugin": "t", "version": version, "effective_from": "2025-01-01T00:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_uploads_stay_within_their_memory_bound_and_load_again_on_use() {
    let erp = Erp::start().await.unwrap();
    const BOUND: u64 = 3 << 20;
    let env = Env::start_configured(&erp, |c| c.plugins.loaded_mib = BOUND >> 20).await.unwrap();
    let tiers = tollgate_e2e::bundled_component("graduated-tiers-0.1.0.wasm");
    assert_eq!(env.upload(API_KEY, "name=t&version=1.0.0&kind=rater", tiers.clone()).await.0, 201);
    let code = loaded_uploads(&env).await["1.0.0"].expect("a new upload is loaded");
    // More versions than the bound holds of their compiled code.
    let versions: Vec<String> = (0..BOUND / code + 2).map(|i| format!("1.0.{i}")).collect();
    for v in &versions[1..] {
        let (status, body) = env.upload(API_KEY, &format!("name=t&version={v}&kind=rater"), tiers.clone()).await;
        assert_eq!(status, 201, "{body}");
    }
    let check = |loaded: &BTreeMap<String, Option<u64>>| {
        let resident: u64 = loaded.values().flatten().sum();
        assert!(resident <= BOUND, "{resident} bytes loaded, over plugins.loaded_mib: {loaded:?}");
        assert!(loaded.values().any(Option::is_none), "nothing was unloaded: {loaded:?}");
    };
    let loaded = loaded_uploads(&env).await;
    assert_eq!(loaded.len(), versions.len());
    check(&loaded);
    assert!(loaded[&versions[versions.len() - 1]].is_some(), "the newest upload was unloaded: {loaded:?}");
    // The first one was unloaded; using it loads it again, and the bound holds.
    assert!(loaded["1.0.0"].is_none(), "{loaded:?}");
    assert_eq!(env.post("/v1/activations", &activation("1.0.0")).await.0, 201);
    let loaded = loaded_uploads(&env).await;
    assert!(loaded["1.0.0"].is_some(), "a used plugin was not loaded: {loaded:?}");
    check(&loaded);
    // Rated with it: a close bills globex through the reloaded version.
    env.ingest(vec![tollgate_e2e::event("lz-1", "globex", "api_calls", "2025-05-03T10:00:00Z", "150")]).await.unwrap();
    let (status, closed) = env.post("/v1/periods/2025-05/close", &json!(null)).await;
    assert_eq!(status, 200, "{closed}");
    // Rated by the reloaded t@1.0.0 (a rule that failed to load would leave the line out).
    assert_eq!(closed["documents"].as_array().map(Vec::len), Some(1), "{closed}");
    assert!(closed["left_out"].as_array().is_none_or(Vec::is_empty), "{closed}");

    // Storage use: the plugins' bytes and one event.
    let (status, storage) = env.get("/v1/storage").await.unwrap();
    assert_eq!(status, 200, "{storage}");
    assert_eq!(storage["plugins"]["bytes"], json!(versions.len() * tiers.len()), "{storage}");
    assert_eq!(storage["events"]["records"], json!(1), "{storage}");
    assert!(storage["windows"]["records"].as_u64().unwrap() >= 1, "{storage}");
    assert!(storage["documents"]["records"].as_u64().unwrap() >= 1, "{storage}");
    let parts: u64 =
        ["events", "event_history", "dedup", "windows", "meters", "masterdata", "billing", "documents", "plugins"]
            .iter()
            .map(|k| storage[*k]["bytes"].as_u64().unwrap())
            .sum();
    assert_eq!(storage["total_bytes"], json!(parts), "{storage}");
    // Another tenant's use is its own.
    let (_, other) = get_as(&env, OTHER_API_KEY, "/v1/storage").await;
    assert_eq!((&other["plugins"]["bytes"], &other["events"]["records"]), (&json!(0), &json!(0)), "{other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upload_is_unloaded_and_loaded_again_on_its_next_use() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start_configured(&erp, |c| c.plugins.unload_idle_secs = 1).await.unwrap();
    let tiers = tollgate_e2e::bundled_component("graduated-tiers-0.1.0.wasm");
    assert_eq!(env.upload(API_KEY, "name=t&version=1.0.0&kind=rater", tiers).await.0, 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while loaded_uploads(&env).await["1.0.0"].is_some() {
        assert!(std::time::Instant::now() < deadline, "an idle upload stayed loaded");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(env.post("/v1/activations", &activation("1.0.0")).await.0, 201);
    env.ingest(vec![tollgate_e2e::event("idle-1", "globex", "api_calls", "2025-05-03T10:00:00Z", "150")])
        .await
        .unwrap();
    let (status, closed) = env.post("/v1/periods/2025-05/close", &json!(null)).await;
    assert_eq!(status, 200, "{closed}");
    // Rated by the reloaded t@1.0.0 (a rule that failed to load would leave the line out).
    assert_eq!(closed["documents"].as_array().map(Vec::len), Some(1), "{closed}");
    assert!(closed["left_out"].as_array().is_none_or(Vec::is_empty), "{closed}");
}

/// A tmpfs of `mib` MiB mounted for a test (the tests run as root, as CI
/// does), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(mib: u64) -> SmallDisk {
        let dir = std::env::temp_dir().join(format!("tollgate-small-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs for the full-disk test needs root");
        SmallDisk(dir)
    }

    /// Fills the file system; returns the filler to delete.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_stores_nothing_of_a_refused_call_and_recovers_without_a_restart() {
    let disk = SmallDisk::mount(96);
    let erp = Erp::start().await.unwrap();
    let data = disk.0.join("data");
    let env = Env::start_configured(&erp, |c| c.data_dir = data.clone()).await.unwrap();
    let batch = |from: usize| -> Vec<_> {
        (from..from + 200)
            .map(|i| event(&format!("d{i}"), "globex", "api_calls", "2025-05-03T10:00:00Z", "1"))
            .collect()
    };
    assert_eq!(env.ingest(batch(0)).await.unwrap().accepted, 200);
    let filler = disk.fill();
    // Full: the call is refused as a whole, with a retry hint.
    let refused = env.ingest_as(Some(API_KEY), batch(200)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{}", refused.message());
    assert!(refused.message().contains("nothing of this request was stored"), "{}", refused.message());
    // Reads answer from what is stored meanwhile.
    let (status, page) = env.get("/v1/events?customer=globex&limit=1000").await.unwrap();
    assert_eq!((status, page["events"].as_array().map(Vec::len)), (200, Some(200)), "{page}");
    // Space again: writes are taken again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match env.ingest_as(Some(API_KEY), batch(400)).await {
            Ok(r) => {
                assert_eq!(r.accepted, 200);
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::Unavailable, "{}", s.message());
                assert!(std::time::Instant::now() < deadline, "writes never resumed: {}", s.message());
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    // After a restart: the refused call left nothing; the others are there, once.
    let env = env.restart().await.unwrap();
    let (_, page) = env.get("/v1/events?customer=globex&limit=1000").await.unwrap();
    let ids: std::collections::BTreeSet<String> =
        page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 400, "{} events", ids.len());
    assert!(ids.iter().all(|id| {
        let n: usize = id[1..].parse().unwrap();
        !(200..400).contains(&n)
    }));
    let (_, w) = env.get("/v1/windows?meter=api_calls&customer=globex").await.unwrap();
    assert_eq!(w["total"]["value"], "400", "{w}");
    drop(env);
}

/// Tenant `umbrella`'s data of every kind, all ids starting `umb`.
async fn umbrella_data(env: &Env, erp: &Erp) -> (Vec<String>, String) {
    let send = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http().request(method, format!("{}{path}", env.base)).bearer_auth(OTHER_API_KEY).json(&body).send()
    };
    let lines: Vec<serde_json::Value> = ["umb-globex", "umb-initech"]
        .iter()
        .map(|c| {
            json!({
                "id": format!("{c}-line"), "customer": c, "meter": "umb_calls", "sku": "umb-API",
                "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
                "params": { "tiers": [{ "up_to": null, "unit_price": "0.5" }] }
            })
        })
        .collect();
    let md = json!({
        "legal_entities": [{ "id": "umb-eu", "name": "Umbrella EU", "currency": "EUR", "erp_company": "9000", "erp_target": "sim" }],
        "customers": [
            { "id": "umb-globex", "name": "Umb Globex", "legal_entity": "umb-eu", "erp_account": "umb-C-1" },
            { "id": "umb-initech", "name": "Umb Initech", "legal_entity": "umb-eu", "erp_account": "umb-C-2" }
        ],
        "skus": [{ "id": "umb-API", "name": "umb calls", "erp_item": "umb-ITEM" }],
        "features": [{ "code": "umb-feature", "name": "umb feature", "meter": "umb_calls" }],
        "contract_lines": lines,
    });
    let r = send(
        reqwest::Method::POST,
        "/v1/meters",
        json!({"id": "umb_calls", "event_type": "umb_calls", "aggregation": "sum"}),
    );
    assert_eq!(r.await.unwrap().status(), 201);
    let r = send(reqwest::Method::PUT, "/v1/masterdata?effective_from=2025-01-01T00:00:00Z", md).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let events = vec![
        event("umb-e1", "umb-globex", "umb_calls", "2025-05-03T10:00:00Z", "4"),
        event("umb-e2", "umb-initech", "umb_calls", "2025-05-03T10:00:00Z", "2"),
    ];
    assert_eq!(env.ingest_as(Some(OTHER_API_KEY), events).await.unwrap().accepted, 2);
    let (status, _) = env
        .upload(
            OTHER_API_KEY,
            "name=umb-tiers&version=1.0.0&kind=rater",
            tollgate_e2e::bundled_component("graduated-tiers-0.1.0.wasm"),
        )
        .await;
    assert_eq!(status, 201);
    let activation = json!({"contract_line": "umb-globex-line", "plugin": "umb-tiers", "version": "1.0.0", "effective_from": "2025-01-01T00:00:00Z"});
    assert_eq!(send(reqwest::Method::POST, "/v1/activations", activation).await.unwrap().status(), 201);
    let key: serde_json::Value =
        send(reqwest::Method::POST, "/v1/api-keys", json!({"name": "umb-key"})).await.unwrap().json().await.unwrap();
    // One document posted, one rejected (an exception).
    erp.inject(
        json!([{ "kind": "delay", "ms": 0 }, { "kind": "reject", "code": "unknown-item", "message": "umb item" }]),
    )
    .await
    .unwrap();
    let closed: serde_json::Value = send(reqwest::Method::POST, "/v1/periods/2025-05/close?wait_ms=20000", json!(null))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let docs = closed["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2, "{closed}");
    let number = docs.iter().find_map(|d| d["state"]["erp_document_number"].as_str()).unwrap().to_string();
    let r = send(reqwest::Method::POST, "/v1/periods/2025-05/interim?date=2025-05-31", json!(null)).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut markers: Vec<String> = docs.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    markers.extend([
        "umb-".to_string(),
        "umb_calls".to_string(),
        number.clone(),
        key["id"].as_str().unwrap().to_string(),
    ]);
    (markers, number)
}

/// What tenant `umbrella` sees of its own data (compared before and after
/// tenant `acme` called every route).
async fn umbrella_view(env: &Env) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/events?limit=100",
        "/v1/meters",
        "/v1/masterdata",
        "/v1/plugins",
        "/v1/api-keys",
        "/v1/exceptions?all=true",
        "/v1/windows?meter=umb_calls",
        "/v1/activations/umb-globex-line",
    ] {
        let r = http().get(format!("{}{path}", env.base)).bearer_auth(OTHER_API_KEY).send().await.unwrap();
        let mut v: serde_json::Value = r.json().await.unwrap();
        if path == "/v1/plugins" {
            v["quota"]["uploads_last_hour"] = json!(null);
        }
        out.push(v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_lets_one_tenant_read_or_change_another_tenants_data() {
    use reqwest::Method as M;
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let (markers, number) = umbrella_data(&env, &erp).await;
    let doc = markers[0].clone();
    let before = umbrella_view(&env).await;
    let tiers = tollgate_e2e::bundled_component("graduated-tiers-0.1.0.wasm");
    let ce = json!([{"specversion": "1.0", "id": "umb-e1", "source": "s", "type": "umb_calls", "subject": "umb-globex",
                     "time": "2025-05-03T10:00:00Z", "data": {"quantity": "9"}}]);
    // Every route, called with acme's key and umbrella's ids: (method,
    // route, path, body). Reads come first; writes may create acme's own
    // things under umbrella's names, which is no leak.
    let reads: Vec<(M, &str, String)> = vec![
        (M::GET, "/healthz", "/healthz".into()),
        (M::GET, "/openapi.json", "/openapi.json".into()),
        (M::GET, "/v1/events", "/v1/events?customer=umb-globex".into()),
        (M::GET, "/v1/events/{id}", "/v1/events/umb-e1".into()),
        (M::GET, "/v1/windows", "/v1/windows?meter=umb_calls".into()),
        (M::GET, "/v1/meters", "/v1/meters".into()),
        (M::GET, "/v1/meters/{id}", "/v1/meters/umb_calls".into()),
        (M::GET, "/v1/unmatched", "/v1/unmatched?period=2025-05".into()),
        (M::GET, "/v1/customers/{id}", "/v1/customers/umb-globex".into()),
        (
            M::GET,
            "/v1/customers/{id}/entitlements/{feature}",
            "/v1/customers/umb-globex/entitlements/umb-feature".into(),
        ),
        (M::GET, "/v1/contract-lines/{id}/pricing", "/v1/contract-lines/umb-globex-line/pricing".into()),
        (M::GET, "/v1/api-keys", "/v1/api-keys?tenant=umbrella".into()),
        (M::GET, "/v1/tenants", "/v1/tenants".into()),
        (M::GET, "/v1/plugins", "/v1/plugins".into()),
        (M::GET, "/v1/storage", "/v1/storage".into()),
        (M::GET, "/v1/activations/{contract_line}", "/v1/activations/umb-globex-line".into()),
        (M::GET, "/v1/masterdata", "/v1/masterdata".into()),
        (M::GET, "/v1/masterdata/{collection}/{id}", "/v1/masterdata/customers/umb-globex".into()),
        (M::GET, "/v1/masterdata/{collection}/{id}/versions", "/v1/masterdata/customers/umb-globex/versions".into()),
        (M::GET, "/v1/periods/{period}/interim", "/v1/periods/2025-05/interim".into()),
        (M::GET, "/v1/documents/{id}", format!("/v1/documents/{doc}")),
        (M::GET, "/v1/lineage/documents/{number}", format!("/v1/lineage/documents/{number}")),
        (M::GET, "/v1/lineage/events/{id}", "/v1/lineage/events/umb-e1".into()),
        (M::GET, "/v1/exceptions", "/v1/exceptions?all=true".into()),
        (M::GET, "/v1/targets", "/v1/targets".into()),
    ];
    let writes: Vec<(M, &str, String, serde_json::Value)> = vec![
        (M::POST, "/v1/events", "/v1/events".into(), ce),
        (
            M::POST,
            "/v1/meters",
            "/v1/meters".into(),
            json!({"id": "umb_calls", "event_type": "umb_calls", "aggregation": "count"}),
        ),
        (M::POST, "/v1/api-keys", "/v1/api-keys".into(), json!({"name": "x", "tenant": "umbrella"})),
        (M::DELETE, "/v1/api-keys/{id}", format!("/v1/api-keys/{}", markers[markers.len() - 1]), json!(null)),
        (M::POST, "/v1/tenants", "/v1/tenants".into(), json!({"id": "umbrella", "name": "x"})),
        (M::POST, "/v1/plugins", "/v1/plugins?name=umb-tiers&version=1.0.0&kind=rater".into(), json!(null)),
        (
            M::POST,
            "/v1/activations",
            "/v1/activations".into(),
            json!({"contract_line": "umb-globex-line", "plugin": "umb-tiers", "version": "1.0.0", "effective_from": "2025-01-01T00:00:00Z"}),
        ),
        (M::PUT, "/v1/masterdata", "/v1/masterdata".into(), tollgate_e2e::masterdata()),
        (
            M::POST,
            "/v1/masterdata/{collection}/{id}/versions",
            "/v1/masterdata/customers/umb-globex/versions".into(),
            json!({"effective_from": "2025-01-01T00:00:00Z", "value": null}),
        ),
        (M::POST, "/v1/periods/{period}/close", "/v1/periods/2025-05/close".into(), json!(null)),
        (M::POST, "/v1/periods/{period}/interim", "/v1/periods/2025-05/interim?date=2025-05-31".into(), json!(null)),
        (
            M::POST,
            "/v1/exceptions/{document_id}/actions",
            format!("/v1/exceptions/{doc}/actions"),
            json!({"action": "cancel", "reason": "not yours"}),
        ),
    ];
    // The table covers every route the gateway serves: a new route fails here until it has a case.
    let covered: std::collections::BTreeSet<(String, String)> = reads
        .iter()
        .map(|(m, r, _)| (m.to_string(), r.to_string()))
        .chain(writes.iter().map(|(m, r, _, _)| (m.to_string(), r.to_string())))
        .collect();
    let served: std::collections::BTreeSet<(String, String)> =
        tollgate::api::endpoints().iter().map(|e| (e.method.to_string(), e.path.to_string())).collect();
    assert_eq!(covered, served, "every route needs an isolation case");
    for (method, route, path) in &reads {
        let r =
            http().request(method.clone(), format!("{}{path}", env.base)).bearer_auth(API_KEY).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(status < 500, "{method} {route}: {status} {text}");
        if status < 300 {
            for m in &markers {
                assert!(!text.contains(m.as_str()), "{method} {route} shows acme umbrella's {m:?}: {text}");
            }
        }
    }
    for (method, route, path, body) in writes {
        let mut req = http().request(method.clone(), format!("{}{path}", env.base)).bearer_auth(API_KEY);
        req = match route {
            "/v1/events" => req.header("content-type", "application/cloudevents-batch+json").body(body.to_string()),
            "/v1/plugins" => req.header("content-type", "application/wasm").body(tiers.clone()),
            _ if body.is_null() => req,
            _ => req.json(&body),
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert!(status < 500, "{method} {route}: {status} {}", r.text().await.unwrap());
    }
    assert_eq!(umbrella_view(&env).await, before, "acme's calls changed nothing of umbrella's");
}
