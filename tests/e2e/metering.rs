//! Meters through the public interfaces: defined over HTTP, fed by gRPC and
//! CloudEvents, read as windows; every aggregation, group-by, late and
//! out-of-order events, corrections and retractions, a meter created after
//! its events, and restarts.

use serde_json::{Value, json};
use tollgate::proto::{EventStatus, UsageEvent};
use tollgate_e2e::{API_KEY, Env, Erp, dec, event};

fn request(id: &str, time: &str, calls: &str, region: &str, user: &str, latency: &str) -> UsageEvent {
    let mut e = event(id, "globex", "requests", time, calls);
    e.dimensions = [("region", region), ("user", user), ("latency_ms", latency)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    e
}

fn revised(mut e: UsageEvent, revision: u32) -> UsageEvent {
    e.revision = revision;
    e
}

fn retraction(id: &str, revision: u32) -> UsageEvent {
    UsageEvent { id: id.into(), revision, retract: true, source: "test".into(), ..UsageEvent::default() }
}

/// `(window start, group-by values, value, events)` of a meter's windows.
async fn windows(env: &Env, query: &str) -> (Vec<(String, String, String, u64)>, Value) {
    let (status, body) = env.get(&format!("/v1/windows?{query}")).await.unwrap();
    assert_eq!(status, 200, "{query}: {body}");
    let rows = body["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let dims = w["dimensions"].as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect::<Vec<_>>();
            (
                w["start"].as_str().unwrap().to_string(),
                dims.join(","),
                tollgate_e2e::value_text(&w["value"]),
                w["events"].as_u64().unwrap(),
            )
        })
        .collect();
    (rows, body["total"].clone())
}

fn row(start: &str, dims: &str, value: &str, events: u64) -> (String, String, String, u64) {
    (start.into(), dims.into(), value.into(), events)
}

async fn total(env: &Env, query: &str) -> String {
    dec(&windows(env, query).await.1["value"]).to_string()
}

async fn create(env: &Env, spec: Value) -> (u16, Value) {
    env.post("/v1/meters", &spec).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aggregation_with_groups_late_events_corrections_and_retractions() {
    let erp = Erp::start().await.unwrap();
    let mut env = Env::start(&erp).await.unwrap();
    for spec in [
        json!({ "id": "req_sum", "event_type": "requests", "aggregation": "sum", "group_by": ["region"] }),
        json!({ "id": "req_count", "event_type": "requests", "aggregation": "count" }),
        json!({ "id": "latency_min", "event_type": "requests", "aggregation": "min", "value": "dimensions.latency_ms" }),
        json!({ "id": "latency_max", "event_type": "requests", "aggregation": "max", "value": "dimensions.latency_ms" }),
        json!({ "id": "users", "event_type": "requests", "aggregation": "unique_count", "value": "dimensions.user", "window": "1d" }),
    ] {
        let (status, body) = create(&env, spec.clone()).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "active");
        // The same definition again is accepted as it is.
        assert_eq!(create(&env, spec).await.0, 200);
    }

    // In one batch and out of time order; r4 arrives later for an hour
    // already metered, and "old" is five months late.
    let r = env
        .ingest(vec![
            request("r3", "2025-06-10T11:15:00Z", "5", "eu", "ann", "200"),
            request("r1", "2025-06-10T10:05:00Z", "3", "eu", "ann", "120"),
            request("r2", "2025-06-10T10:30:00Z", "2", "us", "bob", "80.5"),
        ])
        .await
        .unwrap();
    assert_eq!(r.accepted, 3, "{r:?}");
    let r = env
        .ingest(vec![
            request("r4", "2025-06-10T10:59:59Z", "1", "eu", "cat", "15"),
            request("old", "2025-01-02T00:30:00Z", "4", "eu", "dan", "50"),
        ])
        .await
        .unwrap();
    assert_eq!(r.accepted, 2, "{r:?}");

    let (rows, sum) = windows(&env, "meter=req_sum&customer=globex").await;
    assert_eq!(
        rows,
        [
            row("2025-01-02T00:00:00Z", "eu", "4", 1),
            row("2025-06-10T10:00:00Z", "eu", "4", 2),
            row("2025-06-10T10:00:00Z", "us", "2", 1),
            row("2025-06-10T11:00:00Z", "eu", "5", 1),
        ]
    );
    assert_eq!((dec(&sum["value"]).to_string(), sum["events"].as_u64()), ("15".into(), Some(5)));
    assert_eq!(total(&env, "meter=req_sum&dimensions.region=eu").await, "13");
    assert_eq!(total(&env, "meter=req_sum&from=2025-06-01T00:00:00Z&to=2025-07-01T00:00:00Z").await, "11");
    let (rows, _) = windows(&env, "meter=req_count&customer=globex&from=2025-06-01T00:00:00Z").await;
    assert_eq!(rows, [row("2025-06-10T10:00:00Z", "", "3", 3), row("2025-06-10T11:00:00Z", "", "1", 1)]);
    let (rows, _) = windows(&env, "meter=latency_min&from=2025-06-01T00:00:00Z").await;
    assert_eq!(rows, [row("2025-06-10T10:00:00Z", "", "15", 3), row("2025-06-10T11:00:00Z", "", "200", 1)]);
    let (rows, max) = windows(&env, "meter=latency_max&from=2025-06-01T00:00:00Z").await;
    assert_eq!(rows, [row("2025-06-10T10:00:00Z", "", "120", 3), row("2025-06-10T11:00:00Z", "", "200", 1)]);
    assert_eq!(dec(&max["value"]).to_string(), "200");
    let (rows, users) = windows(&env, "meter=users").await;
    assert_eq!(rows, [row("2025-01-02T00:00:00Z", "", "1", 1), row("2025-06-10T00:00:00Z", "", "3", 4)]);
    // Distinct over the whole range, not the sum of the days' counts.
    assert_eq!(dec(&users["value"]).to_string(), "4");

    // A correction raises r1's latency; then r1 and r4 are retracted: the
    // extremes and distinct users are recomputed from what is left.
    let r = env.ingest(vec![revised(request("r1", "2025-06-10T10:05:00Z", "3", "eu", "ann", "300"), 1)]).await.unwrap();
    assert_eq!(r.accepted, 1);
    let (rows, _) = windows(&env, "meter=latency_max&from=2025-06-10T10:00:00Z&to=2025-06-10T11:00:00Z").await;
    assert_eq!(rows, [row("2025-06-10T10:00:00Z", "", "300", 3)]);
    let r = env.ingest(vec![retraction("r1", 2)]).await.unwrap();
    assert_eq!(r.accepted, 1, "{r:?}");
    let (rows, _) = windows(&env, "meter=latency_max&from=2025-06-10T10:00:00Z&to=2025-06-10T11:00:00Z").await;
    assert_eq!(rows, [row("2025-06-10T10:00:00Z", "", "80.5", 2)]);
    let r = env.ingest(vec![retraction("r4", 1)]).await.unwrap();
    assert_eq!(r.accepted, 1, "{r:?}");
    let (rows, _) = windows(&env, "meter=latency_min&from=2025-06-10T10:00:00Z&to=2025-06-10T11:00:00Z").await;
    assert_eq!(rows, [row("2025-06-10T10:00:00Z", "", "80.5", 1)]);
    let (rows, _) = windows(&env, "meter=users&from=2025-06-10T00:00:00Z").await;
    assert_eq!(rows, [row("2025-06-10T00:00:00Z", "", "2", 2)]);
    assert_eq!(total(&env, "meter=req_sum&dimensions.region=eu&from=2025-06-10T00:00:00Z").await, "5");

    // An event a meter cannot read is refused naming the field and meter;
    // the others of the batch are stored.
    let mut no_latency = request("bad1", "2025-06-10T12:00:00Z", "1", "eu", "eve", "1");
    no_latency.dimensions.remove("latency_ms");
    let r = env
        .ingest(vec![
            no_latency,
            request("bad2", "2025-06-10T12:00:00Z", "1", "eu", "eve", "fast"),
            request("ok", "2025-06-10T12:00:00Z", "1", "eu", "eve", "9"),
        ])
        .await
        .unwrap();
    let statuses: Vec<_> = r.results.iter().map(|x| EventStatus::try_from(x.status).unwrap()).collect();
    assert_eq!(statuses, [EventStatus::Rejected, EventStatus::Rejected, EventStatus::Accepted], "{r:?}");
    assert_eq!(r.results[0].field, "dimensions.latency_ms");
    assert!(r.results[0].reason.contains("latency_m"), "{}", r.results[0].reason);
    assert_eq!(r.results[1].field, "dimensions.latency_ms");
    assert!(r.results[1].reason.contains("not a decimal"), "{}", r.results[1].reason);

    // Windows survive a restart, and new events keep counting.
    env = env.restart().await.unwrap();
    assert_eq!(total(&env, "meter=req_count&from=2025-06-10T00:00:00Z").await, "3");
    env.ingest(vec![request("after", "2025-06-10T12:30:00Z", "2", "us", "fred", "10")]).await.unwrap();
    assert_eq!(total(&env, "meter=req_count&from=2025-06-10T00:00:00Z").await, "4");
    assert_eq!(total(&env, "meter=users&from=2025-06-10T00:00:00Z").await, "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_created_after_its_events_counts_them_and_latest_follows_event_time() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    // Seats reported as a gauge, one of them over CloudEvents; no meter yet.
    env.ingest(vec![
        event("s1", "globex", "seats", "2025-06-10T09:00:00Z", "10"),
        event("s2", "globex", "seats", "2025-06-10T17:00:00Z", "12"),
    ])
    .await
    .unwrap();
    let ce = json!({
        "specversion": "1.0", "id": "s3", "source": "test", "type": "seats", "subject": "globex",
        "time": "2025-06-10T12:00:00Z", "data": { "quantity": "15" }
    });
    let r = tollgate_e2e::http()
        .post(format!("{}/v1/events", env.base))
        .bearer_auth(API_KEY)
        .header("content-type", "application/cloudevents+json")
        .body(ce.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, listed) = env.get("/v1/meters").await.unwrap();
    assert_eq!(listed["unmetered"]["seats"], 3, "{listed}");

    let (status, meter) = create(
        &env,
        json!({ "id": "seats", "event_type": "seats", "aggregation": "latest", "window": "1d", "description": "seats in use" }),
    )
    .await;
    assert_eq!(status, 201, "{meter}");
    assert_eq!((meter["value"].as_str(), meter["window"].as_str()), (Some("quantity"), Some("1d")));
    let (_, listed) = env.get("/v1/meters").await.unwrap();
    assert!(listed["unmetered"].get("seats").is_none(), "{listed}");
    // The latest by event time (17:00), not by arrival.
    let (rows, _) = windows(&env, "meter=seats&customer=globex").await;
    assert_eq!(rows, [row("2025-06-10T00:00:00Z", "", "12", 3)]);
    env.ingest(vec![revised(event("s2", "globex", "seats", "2025-06-10T17:00:00Z", "11"), 1)]).await.unwrap();
    assert_eq!(total(&env, "meter=seats").await, "11");
    env.ingest(vec![retraction("s2", 2)]).await.unwrap();
    let (rows, _) = windows(&env, "meter=seats&customer=globex").await;
    assert_eq!(rows, [row("2025-06-10T00:00:00Z", "", "15", 2)]);

    // Meters are immutable; definitions and queries are checked field by field.
    let (status, body) = create(&env, json!({ "id": "seats", "event_type": "seats", "aggregation": "max" })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (409, Some("id")), "{body}");
    let (status, body) =
        create(&env, json!({ "id": "x", "event_type": "seats", "aggregation": "sum", "window": "7m" })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("window")), "{body}");
    let (status, body) = create(&env, json!({ "id": "x", "event_type": "seats", "aggregation": "avg" })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("body")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("avg"), "{body}");
    let (status, body) = env.get("/v1/windows?meter=nope").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("meter")), "{body}");
    let (status, body) = env.get("/v1/windows?meter=seats&dimensions.region=eu").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("dimensions.region")), "{body}");
    let (status, body) = env.get("/v1/meters/seats").await.unwrap();
    assert_eq!((status, body["aggregation"].as_str()), (200, Some("latest")));
}
