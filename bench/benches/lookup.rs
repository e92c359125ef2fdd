//! Synchronous look-ups under load: account, entitlement and pricing
//! reference requests over HTTP at a fixed arrival rate (open loop: latency
//! is measured from when each request was due, so a slow answer cannot hide
//! the requests queued behind it), against a real gateway with 2 000
//! customers, their contract lines and this month's usage in the windows.
//! Ends with `lookup: p50_ms=<n> p99_ms=<n> rps=<n>`.
//!
//! `TOLLGATE_BENCH_LOOKUP_RPS` (default 5 000) and
//! `TOLLGATE_BENCH_LOOKUP_SECONDS` (default 10) set the load.

/// The gateway's allocator (see `host/src/bin/tollgate.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use chrono::Utc;
use serde_json::json;
use std::time::{Duration, Instant};
use tollgate_bench::{gateway_config, percentile_us};

const KEY: &str = "lookup-bench-key";
const CUSTOMERS: usize = 2_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn masterdata() -> serde_json::Value {
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|i| json!({ "id": format!("c{i}"), "name": format!("Customer {i}"), "legal_entity": "le", "erp_account": format!("A-{i}") }))
        .collect();
    let lines: Vec<_> = (0..CUSTOMERS)
        .map(|i| {
            json!({
                "id": format!("c{i}-api"), "customer": format!("c{i}"), "meter": "api_calls", "sku": "API",
                "rater": { "plugin": "graduated-tiers" }, "currency": "EUR", "commitment": "1000",
                "params": { "tiers": [ { "up_to": "1000", "unit_price": "0.01" }, { "up_to": null, "unit_price": "0.005" } ] }
            })
        })
        .collect();
    json!({
        "legal_entities": [ { "id": "le", "name": "Acme", "currency": "EUR", "erp_company": "1000", "erp_target": "none" } ],
        "customers": customers,
        "skus": [ { "id": "API", "name": "API calls", "erp_item": "ITEM-API" } ],
        "contract_lines": lines,
        "features": [ { "code": "api", "name": "API access", "meter": "api_calls" } ]
    })
}

#[tokio::main]
async fn main() {
    let rps = env_u64("TOLLGATE_BENCH_LOOKUP_RPS", 5_000);
    let seconds = env_u64("TOLLGATE_BENCH_LOOKUP_SECONDS", 10);
    let dir = std::env::temp_dir().join(format!("tollgate-lookup-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let (meters, md) = (dir.join("meters.json"), dir.join("masterdata.json"));
    std::fs::write(
        &meters,
        json!([{ "id": "api_calls", "event_type": "api_calls", "aggregation": "sum" }]).to_string(),
    )
    .expect("meters");
    std::fs::write(&md, masterdata().to_string()).expect("master data");
    let config = gateway_config(&dir, KEY, Some(meters), Some(md));
    let gateway = tollgate::server::start(config).await.expect("gateway");
    let base = format!("http://{}", gateway.http_addr);
    let client = reqwest::Client::builder().no_proxy().build().expect("client");

    // This month's usage: 24 events per customer, one per hour of today.
    let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let events: Vec<_> = (0..CUSTOMERS * 24)
        .map(|i| {
            json!({
                "specversion": "1.0", "id": format!("e{i}"), "source": "bench", "type": "api_calls",
                "subject": format!("c{}", i % CUSTOMERS),
                "time": (today + chrono::Duration::hours((i / CUSTOMERS) as i64)).min(Utc::now()).to_rfc3339(),
                "data": { "quantity": "3" }
            })
        })
        .collect();
    for chunk in events.chunks(5_000) {
        let r = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(KEY)
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::to_vec(chunk).expect("json"))
            .send()
            .await
            .expect("ingest");
        assert!(r.status().is_success(), "ingest: {}", r.status());
    }

    let total = rps * seconds;
    let period = Duration::from_nanos(1_000_000_000 / rps);
    println!("lookup: {total} requests at {rps}/s (account, entitlement, pricing in turn), {CUSTOMERS} customers");
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..total {
        ticker.tick().await;
        let due = started + period * i as u32;
        let customer = (i as usize * 7919) % CUSTOMERS;
        let path = match i % 3 {
            0 => format!("/v1/customers/c{customer}"),
            1 => format!("/v1/customers/c{customer}/entitlements/api"),
            _ => format!("/v1/contract-lines/c{customer}-api/pricing"),
        };
        let (client, url) = (client.clone(), format!("{base}{path}"));
        requests.spawn(async move {
            let r = client.get(&url).bearer_auth(KEY).send().await.expect("request");
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.bytes().await.expect("body");
            (i % 3, due.elapsed())
        });
    }
    let mut by_kind: [Vec<Duration>; 3] = Default::default();
    while let Some(done) = requests.join_next().await {
        let (kind, took) = done.expect("request task");
        by_kind[kind as usize].push(took);
    }
    let secs = started.elapsed().as_secs_f64();
    for (name, timings) in ["account", "entitlement", "pricing"].iter().zip(&by_kind) {
        println!(
            "  {name:<12} p50 {:.2} ms  p99 {:.2} ms  ({} requests)",
            percentile_us(timings, 50.0) / 1000.0,
            percentile_us(timings, 99.0) / 1000.0,
            timings.len()
        );
    }
    let all: Vec<Duration> = by_kind.concat();
    println!(
        "lookup: p50_ms={:.2} p99_ms={:.2} rps={:.0}",
        percentile_us(&all, 50.0) / 1000.0,
        percentile_us(&all, 99.0) / 1000.0,
        all.len() as f64 / secs
    );
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
