//! Ingest benchmark: a load generator sending gRPC batches of realistic
//! events with concurrency over loopback, against (a) the real gateway —
//! validation, dedup, write-ahead log with fdatasync and group commit,
//! indexing — and (b) a no-op server that decodes each batch and answers
//! "accepted" for every event, in the same run (both with TCP_NODELAY, as
//! the gateway's listeners; the no-op server gets its batches
//! [`NOOP_TIMES`] over, so its runs last about as long); then CloudEvents
//! batches over HTTP to the real gateway.
//!
//! `cargo xtask bench` (or `cargo bench -p tollgate-bench --bench ingest`).
//! Knobs: `TOLLGATE_BENCH_EVENTS` (events per measured run, default 300000),
//! `TOLLGATE_BENCH_CONCURRENCY` (requests in flight, default 16).

/// The gateway's allocator (see `host/src/bin/tollgate.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio_stream::Stream;
use tollgate::proto::ingest_service_client::IngestServiceClient;
use tollgate::proto::ingest_service_server::{IngestService, IngestServiceServer};
use tollgate::proto::{EventResult, EventStatus, IngestAck, IngestRequest, IngestResponse, UsageEvent};
use tollgate_bench::{gateway_config, percentile_us};
use tonic::{Request, Response, Status, Streaming};

const KEY: &str = "bench-key";
const BATCH: usize = 500;
/// Times the no-op server's run sends its batches (see `main`).
const NOOP_TIMES: usize = 6;
const CUSTOMERS: usize = 2_000;
const METERS: [&str; 5] = ["api_calls", "storage_gb_hours", "compute_seconds", "egress_gb", "seats"];
const REGIONS: [&str; 4] = ["eu-west", "eu-central", "us-east", "ap-south"];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `n` events in batches of [`BATCH`], ids unique to `run`.
fn batches(run: &str, n: usize) -> Vec<IngestRequest> {
    let base = chrono::Utc::now() - chrono::Duration::hours(2);
    (0..n.div_ceil(BATCH))
        .map(|b| IngestRequest {
            events: (0..BATCH)
                .map(|i| {
                    let k = b * BATCH + i;
                    let t = base + chrono::Duration::milliseconds((k % 3_600_000) as i64);
                    UsageEvent {
                        id: format!("{run}-{k:010}-{:08x}", (k as u64).wrapping_mul(0x9e37_79b9) as u32),
                        customer: format!("cust-{:05}", (k * 7919) % CUSTOMERS),
                        meter: METERS[k % METERS.len()].into(),
                        time: Some(prost_types::Timestamp {
                            seconds: t.timestamp(),
                            nanos: t.timestamp_subsec_nanos() as i32,
                        }),
                        quantity: format!("{}.{:03}", k % 1000, k % 997),
                        dimensions: [("region".to_string(), REGIONS[k % REGIONS.len()].to_string())].into(),
                        source: "bench-loadgen".into(),
                        ..UsageEvent::default()
                    }
                })
                .collect(),
        })
        .collect()
}

/// Decodes and acks only: the ceiling any ingest server on this machine has.
struct Noop;

#[tonic::async_trait]
impl IngestService for Noop {
    async fn ingest(&self, request: Request<IngestRequest>) -> Result<Response<IngestResponse>, Status> {
        if request.metadata().get("authorization").is_none() {
            return Err(Status::unauthenticated("no key"));
        }
        let events = request.into_inner().events;
        let results = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| EventResult {
                index: i as u32,
                id: e.id,
                status: EventStatus::Accepted as i32,
                field: String::new(),
                reason: String::new(),
            })
            .collect::<Vec<_>>();
        Ok(Response::new(IngestResponse { accepted: results.len() as u32, results, ..Default::default() }))
    }

    type IngestStreamStream = Pin<Box<dyn Stream<Item = Result<IngestAck, Status>> + Send>>;

    async fn ingest_stream(
        &self,
        _: Request<Streaming<IngestRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        Err(Status::unimplemented("not measured"))
    }
}

struct Run {
    events: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    retries: usize,
}

impl Run {
    fn per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

type Task = tokio::task::JoinHandle<(Vec<Duration>, usize)>;

/// Waits for the load tasks: each gives its latencies and saturated retries.
async fn finish(events: usize, start: Instant, tasks: Vec<Task>) -> Run {
    let (mut latencies, mut retries) = (Vec::new(), 0);
    for t in tasks {
        let (l, r) = t.await.expect("load task");
        latencies.extend(l);
        retries += r;
    }
    Run { events, seconds: start.elapsed().as_secs_f64(), latencies, retries }
}

/// Sends every batch `times` times over `connections` channels with
/// `concurrency` requests in flight; a RESOURCE_EXHAUSTED answer is retried
/// after its hint. (Only the no-op server takes a batch more than once: the
/// gateway would answer "duplicate".)
async fn grpc_load(addr: SocketAddr, batches: Vec<IngestRequest>, times: usize, concurrency: usize) -> Run {
    let connections = 4.min(concurrency);
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(IngestServiceClient::connect(format!("http://{addr}")).await.expect("connect"));
    }
    let events: usize = batches.iter().map(|b| b.events.len()).sum::<usize>() * times;
    let total = batches.len() * times;
    let batches = std::sync::Arc::new(batches);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut client = clients[w % connections].clone();
        let (batches, next) = (batches.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut retries) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let batch = &batches[i % batches.len()];
                // From the first try: an ack's latency includes waits after a refusal.
                let t = Instant::now();
                loop {
                    let mut req = Request::new(batch.clone());
                    req.metadata_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
                    match client.ingest(req).await {
                        Ok(r) => {
                            lat.push(t.elapsed());
                            let r = r.into_inner();
                            assert_eq!(r.accepted as usize, batch.events.len(), "every event is new");
                            break;
                        }
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            retries += 1;
                            let ms = s
                                .metadata()
                                .get("grpc-retry-pushback-ms")
                                .and_then(|v| v.to_str().ok()?.parse().ok())
                                .unwrap_or(100);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        Err(s) => panic!("ingest failed: {s}"),
                    }
                }
            }
            (lat, retries)
        }));
    }
    finish(events, start, tasks).await
}

/// The same batches as CloudEvents over HTTP.
async fn http_load(base: &str, batches: Vec<IngestRequest>, concurrency: usize) -> Run {
    let bodies: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| {
            let ces: Vec<serde_json::Value> = b
                .events
                .iter()
                .map(|e| {
                    let t = e.time.as_ref().expect("time");
                    let time = chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("time");
                    serde_json::json!({
                        "specversion": "1.0", "id": e.id, "source": e.source, "type": e.meter,
                        "subject": e.customer, "time": time.to_rfc3339(),
                        "data": { "quantity": e.quantity, "dimensions": e.dimensions },
                    })
                })
                .collect();
            serde_json::to_vec(&ces).expect("json")
        })
        .collect();
    let events: usize = batches.iter().map(|b| b.events.len()).sum();
    let client = reqwest::Client::new();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, queue, url) = (client.clone(), queue.clone(), format!("{base}/v1/events"));
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut retries) = (Vec::new(), 0);
            loop {
                let Some(body) = queue.lock().unwrap().pop() else { break };
                let t = Instant::now();
                loop {
                    let r = client
                        .post(&url)
                        .header("authorization", format!("Bearer {KEY}"))
                        .header("content-type", "application/cloudevents-batch+json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("http send");
                    if r.status() == 429 {
                        retries += 1;
                        // The body's `retry_after_ms` is finer than `Retry-After` (whole seconds).
                        let secs: u64 =
                            r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        let ms = body["error"]["retry_after_ms"].as_u64().unwrap_or(secs * 1000);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        continue;
                    }
                    assert!(r.status().is_success(), "HTTP ingest failed: {}", r.status());
                    let answer: serde_json::Value = r.json().await.expect("json answer");
                    assert_eq!(answer["accepted"].as_u64(), Some(BATCH as u64), "every event is new");
                    lat.push(t.elapsed());
                    break;
                }
            }
            (lat, retries)
        }));
    }
    finish(events, start, tasks).await
}

fn ms(d: &[Duration], p: f64) -> f64 {
    percentile_us(d, p) / 1000.0
}

fn report(name: &str, r: &Run) {
    println!(
        "{name:<34} {:>9.0} events/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} events, {:.2} s, {} saturated retries)",
        r.per_s(),
        ms(&r.latencies, 50.0),
        ms(&r.latencies, 99.0),
        r.events,
        r.seconds,
        r.retries
    );
}

/// Lets the gateway finish the previous run's background work (indexing,
/// then the index's flushes and compactions) so that no run is measured
/// while the other's leftovers share the two cores.
async fn settle(gateway: &tollgate::server::Gateway) {
    gateway.event_log().sync().await.expect("index caught up");
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::main]
async fn main() {
    let n = env_usize("TOLLGATE_BENCH_EVENTS", 300_000);
    let concurrency = env_usize("TOLLGATE_BENCH_CONCURRENCY", 16);
    let dir = std::env::temp_dir().join(format!("tollgate-ingest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    // One hourly sum meter per event type, as a tenant would define them.
    let meters = dir.join("meters.json");
    let specs: Vec<_> = METERS
        .iter()
        .map(|m| serde_json::json!({ "id": m, "event_type": m, "aggregation": "sum", "group_by": ["region"] }))
        .collect();
    std::fs::write(&meters, serde_json::to_vec(&specs).expect("json")).expect("meters file");
    let config = gateway_config(&dir, KEY, Some(meters), None);
    let gateway = tollgate::server::start(config).await.expect("gateway");
    let noop_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let noop_addr = noop_listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IngestServiceServer::new(Noop))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(noop_listener).with_nodelay(Some(true))),
    );

    println!(
        "ingest: {n} events per run in gRPC batches of {BATCH}, {concurrency} requests in flight, {CUSTOMERS} customers × {} meters",
        METERS.len()
    );
    // Warm-up of both (connections, allocator, the gateway's first segment).
    grpc_load(noop_addr, batches("warm-noop", 20_000), 1, concurrency).await;
    grpc_load(gateway.grpc_addr, batches("warm", 20_000), 1, concurrency).await;

    let (mut durable, mut noop) = (Vec::new(), Vec::new());
    for round in 0..2 {
        settle(&gateway).await;
        // The no-op server is several times faster: its run sends the same
        // batches NOOP_TIMES over, so that it lasts as long as a durable one.
        let r = grpc_load(noop_addr, batches(&format!("noop{round}"), n), NOOP_TIMES, concurrency).await;
        report(&format!("gRPC no-op server, round {round}"), &r);
        noop.push(r);
        settle(&gateway).await;
        let r = grpc_load(gateway.grpc_addr, batches(&format!("durable{round}"), n), 1, concurrency).await;
        report(&format!("gRPC gateway (fsync), round {round}"), &r);
        durable.push(r);
    }
    let total = |runs: &[Run]| -> (f64, Vec<Duration>) {
        let events: usize = runs.iter().map(|r| r.events).sum();
        let secs: f64 = runs.iter().map(|r| r.seconds).sum();
        (events as f64 / secs, runs.iter().flat_map(|r| r.latencies.clone()).collect())
    };
    let (durable_per_s, durable_lat) = total(&durable);
    let (noop_per_s, _) = total(&noop);

    let http = http_load(&format!("http://{}", gateway.http_addr), batches("http", n / 2), concurrency).await;
    report("HTTP CloudEvents gateway (fsync)", &http);

    // Everything acknowledged is indexed and counted.
    let wal_segments = std::fs::read_dir(dir.join("data/wal")).map(|d| d.count()).unwrap_or(0);
    println!("write-ahead log segments on disk after the run: {wal_segments}");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "ingest: durable_per_s={durable_per_s:.0} noop_per_s={noop_per_s:.0} ratio={:.3} p99_ms={:.2}",
        durable_per_s / noop_per_s,
        ms(&durable_lat, 99.0)
    );
}
