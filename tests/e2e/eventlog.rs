//! The event log through gRPC and HTTP: API keys created and revoked at run
//! time, corrections and retractions reflected in metering, event queries by
//! customer, meter and time range, and backpressure.

use tollgate::proto::{EventStatus, UsageEvent};
use tollgate_e2e::{ADMIN_KEY, API_KEY, Env, Erp, dec, event, http};

async fn json(r: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_created_listed_and_revoked_and_only_their_hash_is_stored() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let keys = format!("{}/v1/api-keys", env.base);

    // A tenant's key makes another key for the same tenant; it is shown once.
    let (status, created) =
        json(http().post(&keys).bearer_auth(API_KEY).json(&serde_json::json!({"name": "ci"}))).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("tg_") && key.len() > 60, "{key}");
    assert_eq!(created["tenant"], "acme");
    let id = created["id"].as_str().unwrap().to_string();

    // The new key works on gRPC and HTTP, as the same tenant.
    let r = env.ingest_as(Some(&key), vec![event("k1", "globex", "api_calls", "2025-05-03T08:00:00Z", "2")]).await;
    assert_eq!(r.unwrap().accepted, 1);
    let (status, page) = json(http().get(format!("{}/v1/events?customer=globex", env.base)).bearer_auth(&key)).await;
    assert_eq!((status, page["events"][0]["id"].as_str()), (200, Some("k1")));

    // Listing shows ids and names, never a secret.
    let (_, list) = json(http().get(&keys).bearer_auth(API_KEY)).await;
    assert!(list["api_keys"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str() && k["name"] == "ci"));
    assert!(!list.to_string().contains(&key));
    // Nor is the secret anywhere on disk.
    for entry in walk(&env.config.data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()), "{} holds the key", entry.display());
    }

    // A tenant cannot make keys for another tenant; the operator can.
    let (status, body) =
        json(http().post(&keys).bearer_auth(API_KEY).json(&serde_json::json!({"name": "x", "tenant": "umbrella"})))
            .await;
    assert_eq!(status, 403, "{body}");
    // A tenant the configuration does not name is refused, naming it: a typo
    // creates no tenant. The operator creates one explicitly first.
    let boot = serde_json::json!({"name": "boot", "tenant": "initech"});
    let (status, body) = json(http().post(&keys).bearer_auth(ADMIN_KEY).json(&boot)).await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("tenant")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("\"initech\""), "{body}");
    let tenants = format!("{}/v1/tenants", env.base);
    let new_tenant = serde_json::json!({"id": "initech", "name": "Initech"});
    let (status, _) = json(http().post(&tenants).bearer_auth(API_KEY).json(&new_tenant)).await;
    assert_eq!(status, 403, "a tenant's key creates no tenant");
    let (status, created) = json(http().post(&tenants).bearer_auth(ADMIN_KEY).json(&new_tenant)).await;
    assert_eq!((status, created["id"].as_str()), (201, Some("initech")), "{created}");
    assert_eq!(created["created_by"].as_str().map(str::len), Some(12), "who created it is kept: {created}");
    let (status, _) = json(http().post(&tenants).bearer_auth(ADMIN_KEY).json(&new_tenant)).await;
    assert_eq!(status, 409);
    let (_, listed) = json(http().get(&tenants).bearer_auth(ADMIN_KEY)).await;
    let ids: Vec<_> = listed["tenants"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acme", "umbrella", "initech"], "{listed}");
    // Auth schemes are case-insensitive (RFC 9110).
    let (status, _) = json(http().post(&keys).header("authorization", format!("BEARER {ADMIN_KEY}")).json(&boot)).await;
    assert_eq!(status, 201);
    let (status, body) = json(http().post(&keys).bearer_auth(ADMIN_KEY).json(&boot)).await;
    assert_eq!(status, 201, "{body}");
    let initech = body["key"].as_str().unwrap().to_string();
    let r = env.ingest_as(Some(&initech), vec![event("k1", "c", "api_calls", "2025-05-03T08:00:00Z", "5")]).await;
    assert_eq!(r.unwrap().accepted, 1, "same id, other tenant: a different event");
    // The operator key owns no data.
    let err = env.ingest_as(Some(ADMIN_KEY), vec![event("k2", "c", "m", "2025-05-03T08:00:00Z", "1")]).await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::PermissionDenied);
    let (status, body) = json(http().post(&keys).bearer_auth(ADMIN_KEY).json(&serde_json::json!({"name": "x"}))).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("tenant")));

    // A revoked key is refused, naming the revocation.
    let (status, body) = json(http().delete(format!("{keys}/{id}")).bearer_auth(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["revoked_at"].is_string());
    let err = env.ingest_as(Some(&key), vec![event("k3", "globex", "api_calls", "2025-05-03T08:00:00Z", "1")]).await;
    let err = err.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.message().contains("revoked"), "{}", err.message());
    let (status, _) = json(http().get(&keys).bearer_auth(&key)).await;
    assert_eq!(status, 401);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn revision(mut e: UsageEvent, revision: u32) -> UsageEvent {
    e.revision = revision;
    e
}

fn retraction(id: &str, revision: u32) -> UsageEvent {
    UsageEvent { id: id.into(), revision, retract: true, ..UsageEvent::default() }
}

async fn total(env: &Env, customer: &str, meter: &str) -> (String, u64) {
    let (_, w) = env.get(&format!("/v1/windows?customer={customer}&meter={meter}")).await.unwrap();
    assert!(w["total"]["value"].is_string(), "{w}");
    (dec(&w["total"]["value"]).to_string(), w["total"]["events"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_and_retractions_move_usage_in_metering_and_keep_history() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let r = env
        .ingest(vec![
            event("a", "globex", "api_calls", "2025-05-03T08:10:00Z", "10"),
            event("b", "globex", "api_calls", "2025-05-03T09:10:00Z", "5"),
            event("c", "globex", "api_calls", "2025-05-03T09:20:00Z", "1.5"),
        ])
        .await
        .unwrap();
    assert_eq!(r.accepted, 3);
    assert_eq!(total(&env, "globex", "api_calls").await, ("16.5".into(), 3));

    // Correct "a": new quantity and a later hour; retract "b"; an old
    // revision of "a" arriving late is superseded, not counted.
    let corrected = revision(event("a", "globex", "api_calls", "2025-05-03T10:05:00Z", "12.25"), 1);
    let r = env
        .ingest(vec![
            corrected.clone(),
            retraction("b", 1),
            event("a", "globex", "api_calls", "2025-05-03T08:10:00Z", "10"),
            corrected.clone(),
        ])
        .await
        .unwrap();
    let statuses: Vec<_> = r.results.iter().map(|x| EventStatus::try_from(x.status).unwrap()).collect();
    assert_eq!(
        statuses,
        [EventStatus::Accepted, EventStatus::Accepted, EventStatus::Superseded, EventStatus::Duplicate],
        "{r:?}"
    );
    assert_eq!(total(&env, "globex", "api_calls").await, ("13.75".into(), 2));
    let (_, w) = env.get("/v1/windows?customer=globex&meter=api_calls").await.unwrap();
    let hours: Vec<(&str, String)> = w["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["start"].as_str().unwrap(), tollgate_e2e::value_text(&w["value"])))
        .collect();
    assert_eq!(
        hours,
        [
            // Emptied by the retraction: no value, not a 0 that reads as one.
            ("2025-05-03T08:00:00Z", "empty".into()),
            ("2025-05-03T09:00:00Z", "1.5".into()),
            ("2025-05-03T10:00:00Z", "12.25".into())
        ]
    );

    // Same revision, different content: a conflict; the stored one stands.
    let r =
        env.ingest(vec![revision(event("a", "globex", "api_calls", "2025-05-03T10:05:00Z", "99"), 1)]).await.unwrap();
    assert_eq!(r.conflicts, 1);
    assert_eq!(r.results[0].field, "id");

    // The history of "a": revision 1 current, revision 0 replaced.
    let (status, h) = env.get("/v1/events/a").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        (h["current"]["revision"].as_u64(), dec(&h["current"]["quantity"]).to_string()),
        (Some(1), "12.25".into())
    );
    assert_eq!(h["replaced"].as_array().unwrap().len(), 1);
    assert_eq!(dec(&h["replaced"][0]["quantity"]).to_string(), "10");
    let (_, h) = env.get("/v1/events/b").await.unwrap();
    assert_eq!(h["current"]["retracted"], true);

    // A retraction before its event keeps the event out when it arrives.
    let r = env.ingest(vec![retraction("late", 1)]).await.unwrap();
    assert_eq!(r.accepted, 1);
    let r = env.ingest(vec![event("late", "globex", "api_calls", "2025-05-03T11:00:00Z", "7")]).await.unwrap();
    assert_eq!(r.superseded, 1);
    assert_eq!(total(&env, "globex", "api_calls").await, ("13.75".into(), 2));
    // A retraction needs a revision.
    let r = env.ingest(vec![retraction("c", 0)]).await.unwrap();
    assert_eq!((r.rejected, r.results[0].field.as_str()), (1, "revision"));

    // Over HTTP, as CloudEvents: a correction with the `revision` extension.
    let ce = serde_json::json!({"specversion": "1.0", "id": "c", "source": "s", "type": "api_calls",
        "subject": "globex", "time": "2025-05-03T09:20:00Z", "revision": 2, "data": {"quantity": "2"}});
    let (status, body) = json(
        http()
            .post(format!("{}/v1/events", env.base))
            .bearer_auth(API_KEY)
            .header("content-type", "application/cloudevents+json")
            .json(&ce),
    )
    .await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(total(&env, "globex", "api_calls").await, ("14.25".into(), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_queried_by_customer_meter_and_time_range_in_pages() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let mut events = Vec::new();
    for h in 0..10 {
        events.push(event(&format!("g{h}"), "globex", "api_calls", &format!("2025-05-03T{h:02}:30:00Z"), "1"));
        events.push(event(&format!("s{h}"), "globex", "storage", &format!("2025-05-03T{h:02}:30:00Z"), "2"));
        events.push(event(&format!("i{h}"), "initech", "api_calls", &format!("2025-05-03T{h:02}:30:00Z"), "3"));
    }
    assert_eq!(env.ingest(events).await.unwrap().accepted, 30);
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    };
    let (_, p) = env
        .get("/v1/events?customer=globex&meter=api_calls&from=2025-05-03T02:00:00Z&to=2025-05-03T05:00:00Z")
        .await
        .unwrap();
    assert_eq!(ids(&p), ["g2", "g3", "g4"]);
    let (_, p) = env.get("/v1/events?customer=globex&limit=7").await.unwrap();
    assert_eq!(ids(&p).len(), 7);
    let next = p["next"].as_str().unwrap();
    let (_, p2) = env.get(&format!("/v1/events?customer=globex&limit=100&after={next}")).await.unwrap();
    assert_eq!(ids(&p).len() + ids(&p2).len(), 20);
    assert!(p2["next"].is_null());
    let (_, p) = env.get("/v1/events?meter=api_calls&from=2025-05-03T09:00:00Z").await.unwrap();
    assert_eq!(ids(&p), ["g9", "i9"]);
    let (status, body) = env.get("/v1/events?from=yesterday").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("from")));
    let (status, body) = env.get("/v1/events?limit=0").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("limit")));
    let (status, _) = env.get("/v1/events/nope").await.unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_write_path_answers_resource_exhausted_and_429_with_a_retry_hint_and_drops_nothing() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start_configured(&erp, |c| c.ingest.max_unindexed_events = 10_000).await.unwrap();
    let log = env.gateway.as_ref().unwrap().event_log().clone();
    log.hold_indexing(true);
    let batch = |n: usize, from: usize| -> Vec<UsageEvent> {
        (from..from + n).map(|i| event(&format!("bp{i}"), "globex", "api_calls", "2025-05-03T08:00:00Z", "1")).collect()
    };
    assert_eq!(env.ingest(batch(6000, 0)).await.unwrap().accepted, 6000);
    let err = env.ingest_as(Some(API_KEY), batch(6000, 6000)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("max_unindexed_events"), "{}", err.message());
    let hint = err.metadata().get("grpc-retry-pushback-ms").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    assert!(hint.is_some_and(|ms| ms > 0), "no retry hint: {:?}", err.metadata());
    let ce: Vec<serde_json::Value> = (0..5000)
        .map(|i| {
            serde_json::json!({"specversion": "1.0", "id": format!("h{i}"), "source": "s", "type": "api_calls",
            "subject": "globex", "time": "2025-05-03T08:00:00Z", "data": {"quantity": "1"}})
        })
        .collect();
    let r = http()
        .post(format!("{}/v1/events", env.base))
        .bearer_auth(API_KEY)
        .header("content-type", "application/cloudevents-batch+json")
        .json(&ce)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());

    // Released, the refused batch goes through; what was accepted is all there.
    log.hold_indexing(false);
    let mut tries = 0;
    let accepted = loop {
        match env.ingest_as(Some(API_KEY), batch(6000, 6000)).await {
            Ok(r) => break r.accepted,
            Err(e) if e.code() == tonic::Code::ResourceExhausted && tries < 100 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(hint.unwrap_or(100))).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(accepted, 6000);
    assert_eq!(total(&env, "globex", "api_calls").await, ("12000".into(), 12000));
}
