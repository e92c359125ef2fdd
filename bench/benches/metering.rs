//! Metering at scale: 10 000 customers × 5 meters (sum grouped by region,
//! count, max, unique_count, latest), hourly windows over a 31-day month,
//! events in random time order through the real write path (event log,
//! group commit, index batches with the window updates).
//!
//! Reports window updates per second (each event updates one window of one
//! meter) and the process's resident memory as the run goes, to show it
//! levels off instead of growing with the number of windows. Ends with
//! `metering: updates_per_s=<n> peak_rss_mb=<n>`.
//!
//! `TOLLGATE_BENCH_METERING_EVENTS` (default 2 000 000) sets the number of
//! events; 37 200 000 touches every window of the month once on average.
//!
//! Then fair share: tenant `heavy` stores `TOLLGATE_BENCH_FAIRSHARE_EVENTS`
//! (default 1 000 000) events no meter reads and creates a meter over them;
//! while it builds, tenant `light` reads its windows (as `GET /v1/windows`
//! does: wait for its own events, then read) and appends small batches. Its
//! latencies are compared with the same loop with no build running. Ends
//! with `fairshare: build_s=<s> read_p99_ms=<ms> idle_read_p99_ms=<ms> …`.

/// The gateway's allocator (see `host/src/bin/tollgate.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::time::Instant;
use tollgate::eventlog::index::Index;
use tollgate::eventlog::{EventLog, LogError, LogOptions, StoredEvent};
use tollgate::metering::window::{self, WindowFilter};
use tollgate::metering::{MeterSpec, MeterState};

const CUSTOMERS: u64 = 10_000;
const HOURS: u64 = 31 * 24;
const BATCH: usize = 5_000;
const WRITERS: usize = 4;
/// (event type = meter id, aggregation, value, group by)
const METERS: [(&str, &str, &str, &[&str]); 5] = [
    ("api_calls", "sum", "quantity", &["region"]),
    ("requests", "count", "count", &[]),
    ("latency_ms", "max", "quantity", &[]),
    ("active_users", "unique_count", "dimensions.user", &[]),
    ("seats", "latest", "quantity", &[]),
];
const REGIONS: [&str; 3] = ["eu", "us", "apac"];

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn event(i: u64, rng: &mut Rng, month: DateTime<Utc>, now: DateTime<Utc>) -> StoredEvent {
    let (kind, customer, hour, second) =
        (rng.next() % 5, rng.next() % CUSTOMERS, rng.next() % HOURS, rng.next() % 3600);
    let quantity = Decimal::new((rng.next() % 100_000) as i64, 2);
    let mut dimensions = BTreeMap::new();
    dimensions.insert("region".to_string(), REGIONS[(rng.next() % 3) as usize].to_string());
    dimensions.insert("user".to_string(), format!("u{}", rng.next() % 50));
    StoredEvent {
        lsn: 0,
        id: format!("e{i}"),
        revision: 0,
        retracted: false,
        customer: format!("customer-{customer:05}"),
        meter: METERS[kind as usize].0.to_string(),
        time: month + Duration::seconds((hour * 3600 + second) as i64),
        quantity,
        dimensions,
        source: "bench".into(),
        digest: format!("{i:064x}"),
        received_at: now,
    }
}

/// Resident and peak resident memory of this process, MiB.
fn rss_mb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn append_retrying(log: &EventLog, tenant: &str, events: Vec<StoredEvent>) {
    loop {
        match log.append(tenant, events.clone()).await {
            Ok(_) => return,
            Err(LogError::Saturated { retry_after_ms, .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(retry_after_ms)).await
            }
            Err(e) => panic!("append: {e}"),
        }
    }
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("TOLLGATE_BENCH_METERING_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let dir = std::env::temp_dir().join(format!("tollgate-metering-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let index = Index::open(&dir.join("eventlog")).expect("index");
    let mut options = LogOptions::new(dir.join("wal"), std::sync::Arc::new(tollgate::clock::SystemClock));
    if let Some(n) = std::env::var("TOLLGATE_BENCH_MAX_UNINDEXED").ok().and_then(|v| v.parse().ok()) {
        options.max_unindexed_events = n;
    }
    let log = EventLog::open(index, options).expect("event log");
    let now = Utc::now();
    for (id, aggregation, value, group_by) in METERS {
        let (meter, _) = log.create_meter("bench", spec(id, aggregation, value, group_by, now)).await.expect("create");
        assert_eq!(meter.state, MeterState::Active);
    }
    let month = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().expect("month");

    println!(
        "metering: {n} events, {CUSTOMERS} customers × {} meters × {HOURS} hours, random time order",
        METERS.len()
    );
    let (rss_start, _) = rss_mb();
    let started = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_report = n / 4;
    let mut sent = 0u64;
    let mut in_flight = tokio::task::JoinSet::new();
    while sent < n {
        let batch: Vec<StoredEvent> =
            (sent..(sent + BATCH as u64).min(n)).map(|i| event(i, &mut rng, month, now)).collect();
        sent += batch.len() as u64;
        if in_flight.len() >= WRITERS {
            in_flight.join_next().await;
        }
        let log = log.clone();
        in_flight.spawn(async move { append_retrying(&log, "bench", batch).await });
        if sent >= next_report {
            let (rss, _) = rss_mb();
            println!(
                "  {:>3} %: {sent} events, {:.0} events/s so far, RSS {rss} MiB",
                sent * 100 / n,
                sent as f64 / started.elapsed().as_secs_f64()
            );
            next_report += n / 4;
        }
    }
    while in_flight.join_next().await.is_some() {}
    log.sync().await.expect("sync");
    let secs = started.elapsed().as_secs_f64();
    let (rss_end, peak) = rss_mb();

    // Every event is in exactly one window of its meter.
    let index = log.index();
    let mut events = 0;
    let mut windows = 0;
    for (id, ..) in METERS {
        let meter = window::load_meter(index, "bench", id).expect("read").expect("meter");
        let rows = window::windows(index, "bench", &meter, &WindowFilter::default()).expect("windows");
        windows += rows.len();
        events += rows.iter().map(|r| r.window.events).sum::<u64>();
    }
    assert_eq!(events, n, "events counted in windows");
    let disk: u64 = walk_size(&dir);
    println!(
        "  {n} window updates in {secs:.1} s; {windows} windows; RSS {rss_start} MiB at start, {rss_end} MiB at \
         the end, peak {peak} MiB; {} MiB on disk",
        disk >> 20
    );
    println!("metering: updates_per_s={:.0} peak_rss_mb={peak}", n as f64 / secs);
    fair_share(&log, now).await;
    log.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An hourly meter of event type `id`.
fn spec(id: &str, aggregation: &str, value: &str, group_by: &[&str], now: DateTime<Utc>) -> tollgate::metering::Meter {
    let spec = MeterSpec {
        id: id.into(),
        event_type: id.into(),
        aggregation: serde_json::from_value(serde_json::json!(aggregation)).expect("aggregation"),
        value: Some(value.into()),
        group_by: group_by.iter().map(|g| g.to_string()).collect(),
        window: Some("1h".into()),
        description: String::new(),
    };
    spec.validate(now).expect("meter")
}

/// Tenant `light`'s one-event write, then its read (as the API's window
/// read: its own events indexed first), timed; (read, write) milliseconds.
async fn light_round(log: &EventLog, meter: &tollgate::metering::Meter, i: u64, now: DateTime<Utc>) -> (f64, f64) {
    let mut e = event(i, &mut Rng(i | 1), Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(), now);
    (e.id, e.meter, e.customer) = (format!("light-{i}"), "calls".into(), "light-customer".into());
    let t = Instant::now();
    log.append("light", vec![e]).await.expect("light append");
    let write = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    log.sync_tenant("light").await.expect("sync");
    WAITS.lock().unwrap_or_else(|p| p.into_inner()).push(t.elapsed().as_secs_f64() * 1e3);
    let rows = window::windows(log.index(), "light", meter, &WindowFilter::default()).expect("windows");
    assert!(!rows.is_empty(), "light's event is not in its windows");
    (t.elapsed().as_secs_f64() * 1e3, write)
}

/// How long each of light's reads waited for its own write to be indexed
/// (milliseconds), part of the read's time.
static WAITS: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

async fn fair_share(log: &EventLog, now: DateTime<Utc>) {
    let n: u64 =
        std::env::var("TOLLGATE_BENCH_FAIRSHARE_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let month = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().expect("month");
    let (light, _) = log.create_meter("light", spec("calls", "sum", "quantity", &[], now)).await.expect("light meter");
    let _ = light_round(log, &light, 0, now).await;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut sent = 0;
    while sent < n {
        let batch: Vec<StoredEvent> = (sent..(sent + BATCH as u64).min(n))
            .map(|i| {
                let mut e = event(i, &mut rng, month, now);
                e.meter = "heavy_calls".into();
                e
            })
            .collect();
        sent += batch.len() as u64;
        if in_flight.len() >= WRITERS {
            in_flight.join_next().await;
        }
        let log = log.clone();
        in_flight.spawn(async move { append_retrying(&log, "heavy", batch).await });
    }
    while in_flight.join_next().await.is_some() {}
    log.sync().await.expect("sync");
    // The same loop with nothing else running: the limit.
    let (mut idle_reads, mut idle_writes) = (Vec::new(), Vec::new());
    for i in 1..=2_000 {
        let (r, w) = light_round(log, &light, i, now).await;
        idle_reads.push(r);
        idle_writes.push(w);
    }
    let started = Instant::now();
    // Creating the meter answers once it is built; light works meanwhile.
    let build = tokio::spawn({
        let log = log.clone();
        async move {
            log.create_meter("heavy", spec("heavy_calls", "sum", "quantity", &[], now)).await.expect("heavy meter")
        }
    });
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    let mut i = 10_000;
    while !build.is_finished() {
        let (r, w) = light_round(log, &light, i, now).await;
        reads.push(r);
        writes.push(w);
        i += 1;
    }
    let build_s = started.elapsed().as_secs_f64();
    let waits = WAITS.lock().unwrap_or_else(|p| p.into_inner()).split_off(2_001);
    let (meter, _) = build.await.expect("build task");
    assert_eq!(meter.state, MeterState::Active);
    let built = window::windows(log.index(), "heavy", &meter, &WindowFilter::default()).expect("windows");
    assert_eq!(built.iter().map(|r| r.window.events).sum::<u64>(), n, "the built meter counts every event");
    let rounds = reads.len();
    let slow = reads.iter().filter(|r| **r > 10.0).count();
    let ((rp50, rp99, rmax), (wp50, wp99, wmax)) = (percentiles(reads), percentiles(writes));
    let ((ip50, ip99, imax), (iwp50, iwp99, iwmax)) = (percentiles(idle_reads), percentiles(idle_writes));
    println!("  heavy builds a meter over {n} events in {build_s:.1} s; light's {rounds} rounds meanwhile:");
    println!(
        "    read  p50 {rp50:.2} ms, p99 {rp99:.2} ms, max {rmax:.2} ms (idle: {ip50:.2} / {ip99:.2} / {imax:.2})"
    );
    let (sp50, sp99, smax) = percentiles(waits);
    println!("      {slow} of {rounds} reads over 10 ms");
    println!(
        "      of which waiting for its write to be indexed: p50 {sp50:.2} ms, p99 {sp99:.2} ms, max {smax:.2} ms"
    );
    println!(
        "    write p50 {wp50:.2} ms, p99 {wp99:.2} ms, max {wmax:.2} ms (idle: {iwp50:.2} / {iwp99:.2} / {iwmax:.2})"
    );
    println!(
        "fairshare: build_s={build_s:.1} read_p99_ms={rp99:.2} reads_over_10ms={slow}/{rounds} idle_read_p99_ms={ip99:.2} write_p99_ms={wp99:.2} \
         idle_write_p99_ms={iwp99:.2}"
    );
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
