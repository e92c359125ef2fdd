//! Crash test: the `tollgate` server process is SIGKILLed at random moments
//! during concurrent gRPC ingest and restarted on the same data directory.
//! Afterwards every acknowledged event is stored exactly once and the
//! metered totals equal the sum of the acknowledged events — and with the
//! test-only "acknowledge before writing" switch, the same run loses
//! acknowledged events, which shows the test can see a loss.
//!
//! `TOLLGATE_CRASH_KILLS=<n>` runs more kills (default 20).

use crate::{get_json, plugins_dir};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate::proto::ingest_service_client::IngestServiceClient;
use tollgate::proto::{EventStatus, IngestRequest, UsageEvent};

pub(crate) const KEY: &str = "crash-key";
const CUSTOMERS: [&str; 3] = ["c-a", "c-b", "c-c"];
const METERS: [&str; 2] = ["api_calls", "storage_gb_hours"];
const WRITERS: usize = 4;
const BATCH: usize = 40;

/// A small deterministic generator (xorshift), seeded per run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) struct Server {
    config: PathBuf,
    pub(crate) grpc: String,
    pub(crate) http: String,
    unsafe_ack: bool,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn new(dir: &Path, unsafe_ack: bool) -> Server {
        Server::with_meters(dir, include_str!("../../demo/meters.json"), unsafe_ack)
    }

    /// A server of tenant `acme` (key [`KEY`]) with the meters of `meters` (JSON).
    pub(crate) fn with_meters(dir: &Path, meters_json: &str, unsafe_ack: bool) -> Server {
        let (grpc, http) = (free_port(), free_port());
        let config = dir.join("tollgate.toml");
        let meters = dir.join("meters.json");
        std::fs::write(&meters, meters_json).unwrap();
        let text = format!(
            "data_dir = {data:?}\ngrpc_listen = \"127.0.0.1:{grpc}\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
             [plugins]\nbundled_dir = {plugins:?}\ncache_dir = {cache:?}\n\
             [[tenants]]\nid = \"acme\"\napi_key_sha256 = [\"{hash}\"]\nmeters_file = {meters:?}\n",
            data = dir.join("data"),
            plugins = plugins_dir(),
            cache = plugins_dir().join("../tollgate-test-cache"),
            hash = tollgate::auth::hash_key(KEY),
        );
        std::fs::write(&config, text).unwrap();
        Server {
            config,
            grpc: format!("http://127.0.0.1:{grpc}"),
            http: format!("http://127.0.0.1:{http}"),
            unsafe_ack,
            log: dir.join("server.log"),
            child: None,
        }
    }

    pub(crate) async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.args(["serve", "--config"]).arg(&self.config).stdout(Stdio::null()).stderr(log);
        cmd.env_remove(tollgate::eventlog::UNSAFE_ACK_BEFORE_WRITE_ENV).env("RUST_LOG", "warn");
        if self.unsafe_ack {
            cmd.env(tollgate::eventlog::UNSAFE_ACK_BEFORE_WRITE_ENV, "1");
        }
        self.child = Some(cmd.spawn().unwrap());
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited at start-up ({status}); log: {}", std::fs::read_to_string(&self.log).unwrap());
            }
            if client.get(format!("{}/healthz", self.http)).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server not ready after 10 s; log: {}", std::fs::read_to_string(&self.log).unwrap());
    }

    /// SIGKILL: no shutdown code runs.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Default)]
struct Ledger {
    /// Events whose batch was acknowledged (accepted or duplicate).
    acked: BTreeMap<String, (String, String, Decimal)>,
    /// Batches sent without an answer: stored or not, nobody knows.
    uncertain: Vec<Vec<UsageEvent>>,
}

fn batch(run: u64, writer: usize, seq: u64, rng: &mut Rng) -> Vec<UsageEvent> {
    let now = chrono::Utc::now();
    (0..BATCH)
        .map(|i| {
            let t = now - chrono::Duration::seconds(rng.between(0, 7200) as i64);
            UsageEvent {
                id: format!("r{run:x}-w{writer}-{seq}-{i}"),
                customer: CUSTOMERS[rng.between(0, 3) as usize].into(),
                meter: METERS[rng.between(0, 2) as usize].into(),
                time: Some(prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }),
                quantity: format!("{}.{:03}", rng.between(0, 1000), rng.between(0, 1000)),
                source: "crash-test".into(),
                ..UsageEvent::default()
            }
        })
        .collect()
}

/// Sends one batch; true when it was acknowledged.
async fn send(grpc: &str, events: &[UsageEvent]) -> bool {
    let Ok(mut client) = IngestServiceClient::connect(grpc.to_string()).await else { return false };
    let mut req = tonic::Request::new(IngestRequest { events: events.to_vec() });
    req.metadata_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    req.set_timeout(Duration::from_secs(5));
    match client.ingest(req).await {
        Ok(r) => {
            let r = r.into_inner();
            for res in &r.results {
                let s = EventStatus::try_from(res.status).unwrap();
                assert!(
                    matches!(s, EventStatus::Accepted | EventStatus::Duplicate),
                    "event {} answered {s:?}: {} {}",
                    res.id,
                    res.field,
                    res.reason
                );
            }
            true
        }
        Err(_) => false,
    }
}

fn record(ledger: &Mutex<Ledger>, events: Vec<UsageEvent>, acked: bool) {
    let mut l = ledger.lock().unwrap();
    if acked {
        for e in events {
            let q = Decimal::from_str_exact(&e.quantity).unwrap();
            l.acked.insert(e.id, (e.customer, e.meter, q));
        }
    } else {
        l.uncertain.push(events);
    }
}

/// Concurrent writers while the server is killed `kills` times.
async fn ingest_through_kills(server: &mut Server, kills: usize, seed: u64) -> Arc<Mutex<Ledger>> {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (ledger, stop, grpc) = (ledger.clone(), stop.clone(), server.grpc.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut seq = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let events = batch(seed, w, seq, &mut rng);
                seq += 1;
                let acked = send(&grpc, &events).await;
                record(&ledger, events, acked);
                if !acked {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    let mut rng = Rng(seed);
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.between(80, 400))).await;
        server.kill();
        server.start().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    ledger
}

/// Every live event of the tenant: id → (customer, meter, quantity), with
/// the number of times each id was listed.
async fn stored(server: &Server) -> (HashMap<String, (String, String, Decimal)>, HashMap<String, usize>) {
    let client = reqwest::Client::new();
    let (mut events, mut seen) = (HashMap::new(), HashMap::new());
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/events?limit=5000", server.http);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page = get_json(&client, &url, KEY).await;
        for e in page["events"].as_array().unwrap() {
            let id = e["id"].as_str().unwrap().to_string();
            *seen.entry(id.clone()).or_default() += 1;
            let q = Decimal::from_str_exact(e["quantity"].as_str().unwrap()).unwrap();
            events
                .insert(id, (e["customer"].as_str().unwrap().to_string(), e["meter"].as_str().unwrap().to_string(), q));
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return (events, seen),
        }
    }
}

async fn metered_total(server: &Server, customer: &str, meter: &str) -> (Decimal, u64) {
    let url = format!("{}/v1/windows?customer={customer}&meter={meter}", server.http);
    let w = get_json(&reqwest::Client::new(), &url, KEY).await;
    (Decimal::from_str_exact(w["total"]["value"].as_str().unwrap()).unwrap(), w["total"]["events"].as_u64().unwrap())
}

pub(crate) fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_nothing_acknowledged_and_counts_nothing_twice() {
    let kills: usize = std::env::var("TOLLGATE_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = temp("durable");
    let mut server = Server::new(&dir, false);
    server.start().await;
    let ledger = ingest_through_kills(&mut server, kills, 0x5eed_2026).await;

    // Batches that got no answer are sent again until they are answered:
    // then every event sent has been acknowledged, once or more.
    let uncertain = std::mem::take(&mut ledger.lock().unwrap().uncertain);
    for events in uncertain {
        let mut tries = 0;
        while !send(&server.grpc, &events).await {
            tries += 1;
            assert!(tries < 50, "the restarted server keeps refusing a batch");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        record(&ledger, events, true);
    }
    let acked = std::mem::take(&mut ledger.lock().unwrap().acked);
    assert!(acked.len() > 20 * BATCH, "the run ingested too little to mean anything: {}", acked.len());

    let (events, seen) = stored(&server).await;
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored more than once: {twice:?}");
    let missing: Vec<_> = acked.keys().filter(|id| !events.contains_key(*id)).take(10).collect();
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}…");
    assert_eq!(events.len(), acked.len(), "stored events that were never sent");
    for (id, (c, m, q)) in &acked {
        assert_eq!(events[id], (c.clone(), m.clone(), *q), "event {id} changed");
    }
    for c in CUSTOMERS {
        for m in METERS {
            let expected: Decimal = acked.values().filter(|(ac, am, _)| ac == c && am == m).map(|(_, _, q)| *q).sum();
            let count = acked.values().filter(|(ac, am, _)| ac == c && am == m).count() as u64;
            assert_eq!(metered_total(&server, c, m).await, (expected, count), "metered total of {c}/{m}");
        }
    }
    eprintln!("crash test: {kills} kills, {} events acknowledged, all stored once, totals exact", acked.len());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_before_the_write_loses_acknowledged_events_under_the_same_kills() {
    let dir = temp("unsafe");
    let mut server = Server::new(&dir, true);
    server.start().await;
    let mut lost = 0;
    let mut acked_total = 0;
    for round in 0..10u64 {
        let ledger = ingest_through_kills(&mut server, 2, 0xbad_ac4 + round).await;
        let acked = std::mem::take(&mut ledger.lock().unwrap().acked);
        acked_total += acked.len();
        let (events, _) = stored(&server).await;
        lost += acked.keys().filter(|id| !events.contains_key(*id)).count();
        if lost > 0 {
            break;
        }
    }
    eprintln!("without the write before the ack: {lost} of {acked_total} acknowledged events lost");
    assert!(lost > 0, "acknowledging before writing lost nothing: the crash test could not see a loss");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
