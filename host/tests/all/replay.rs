//! Property: any sequence of accepted batches — extreme quantities, resent
//! duplicates, corrections and retractions included — with a SIGKILL and a
//! restart after any batch, reads back as the windows an independent model
//! computes, and the restarted gateway keeps serving.
//!
//! Deterministic under `cargo test` (a fixed seed, `TOLLGATE_REPLAY_CASES`
//! cases, default 24); `TOLLGATE_REPLAY_SEED=<n>` explores other sequences.

use crate::crash::{KEY, Server, temp};
use crate::get_json;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use tollgate::proto::ingest_service_client::IngestServiceClient;
use tollgate::proto::{EventStatus, IngestRequest, UsageEvent};

const METERS: &str = r#"[
  {"id": "u_sum", "event_type": "usage", "aggregation": "sum", "value": "quantity", "window": "1h"},
  {"id": "u_count", "event_type": "usage", "aggregation": "count", "window": "1h"},
  {"id": "u_min", "event_type": "usage", "aggregation": "min", "value": "quantity", "window": "1h"},
  {"id": "u_max", "event_type": "usage", "aggregation": "max", "value": "quantity", "window": "1h"},
  {"id": "u_unique", "event_type": "usage", "aggregation": "unique_count", "value": "quantity", "window": "1h"}
]"#;
const CUSTOMERS: usize = 3;
const HOURS: u32 = 3;
/// 2026-11-10T00:00:00Z: the first hour events fall in.
const BASE: i64 = 1_794_268_800;
/// The largest quantity accepted (15 + 12 digits).
const EXTREME: &str = "999999999999999.999999999999";
/// Units of 10^-12 in one.
const UNITS: i128 = 1_000_000_000_000;

/// Where and how much: the content of one event.
#[derive(Debug, Clone, PartialEq)]
struct Content {
    customer: usize,
    hour: u32,
    second: u32,
    /// As sent (any notation of the value).
    quantity: String,
}

#[derive(Debug, Clone)]
enum Op {
    New(Content),
    /// The same event again, same revision and content: a duplicate.
    Resend(usize),
    /// A higher revision of a live event, with new content.
    Correct(usize, Content),
    /// A higher revision that retracts a live event.
    Retract(usize),
}

#[derive(Debug, Clone)]
struct Batch {
    ops: Vec<Op>,
    restart: bool,
}

fn quantity() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(EXTREME.to_string()),
        1 => Just("0".to_string()),
        1 => Just("0.000000000001".to_string()),
        1 => Just("1.000".to_string()),
        1 => Just("1".to_string()),
        4 => (0u64..1_000_000_000_000_000, 0usize..=12, 0u64..1_000_000_000_000).prop_map(|(int, places, frac)| {
            if places == 0 { int.to_string() } else { format!("{int}.{:0>places$}", frac % 10u64.pow(places as u32)) }
        }),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    (0..CUSTOMERS, 0..HOURS, 0u32..3600, quantity()).prop_map(|(customer, hour, second, quantity)| Content {
        customer,
        hour,
        second,
        quantity,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => content().prop_map(Op::New),
        1 => any::<usize>().prop_map(Op::Resend),
        2 => (any::<usize>(), content()).prop_map(|(t, c)| Op::Correct(t, c)),
        1 => any::<usize>().prop_map(Op::Retract),
    ]
}

fn batches() -> impl Strategy<Value = Vec<Batch>> {
    prop::collection::vec(
        (prop::collection::vec(op(), 1..40), prop::bool::weighted(0.5))
            .prop_map(|(ops, restart)| Batch { ops, restart }),
        1..7,
    )
}

/// The model: each id's latest revision and content (`None` once retracted).
#[derive(Default)]
struct Model {
    events: BTreeMap<String, (u32, Option<Content>)>,
}

impl Model {
    fn live(&self) -> Vec<String> {
        self.events.iter().filter(|(_, (_, c))| c.is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// Units of 10^-12 of a quantity string.
    fn units(q: &str) -> i128 {
        let (int, frac) = q.split_once('.').unwrap_or((q, ""));
        int.parse::<i128>().unwrap() * UNITS + format!("{frac:0<12}").parse::<i128>().unwrap()
    }

    fn text(units: i128) -> String {
        let (int, frac) = (units / UNITS, units % UNITS);
        if frac == 0 { int.to_string() } else { format!("{int}.{}", format!("{frac:012}").trim_end_matches('0')) }
    }

    /// Per meter: (customer, window start) → (events, value).
    fn windows(&self, meter: &str) -> BTreeMap<(String, i64), (u64, String)> {
        let mut groups: BTreeMap<(String, i64), Vec<i128>> = BTreeMap::new();
        for c in self.events.values().filter_map(|(_, c)| c.as_ref()) {
            let key = (format!("c-{}", c.customer), BASE + i64::from(c.hour) * 3600);
            groups.entry(key).or_default().push(Model::units(&c.quantity));
        }
        groups
            .into_iter()
            .map(|(k, q)| {
                let value = match meter {
                    "u_sum" => Model::text(q.iter().sum()),
                    "u_count" => q.len().to_string(),
                    "u_min" => Model::text(*q.iter().min().unwrap()),
                    "u_max" => Model::text(*q.iter().max().unwrap()),
                    _ => q.iter().collect::<BTreeSet<_>>().len().to_string(),
                };
                (k, (q.len() as u64, value))
            })
            .collect()
    }
}

fn usage_event(id: &str, revision: u32, content: Option<&Content>) -> UsageEvent {
    match content {
        None => UsageEvent { id: id.into(), revision, retract: true, ..UsageEvent::default() },
        Some(c) => UsageEvent {
            id: id.into(),
            customer: format!("c-{}", c.customer),
            meter: "usage".into(),
            time: Some(prost_types::Timestamp {
                seconds: BASE + i64::from(c.hour) * 3600 + i64::from(c.second),
                nanos: 0,
            }),
            quantity: c.quantity.clone(),
            source: "replay-property".into(),
            revision,
            ..UsageEvent::default()
        },
    }
}

/// What the gateway shows: per meter, (customer, start) → (events, value)
/// of the windows that hold events; a window emptied by corrections reads
/// as events 0 and value null, and is left out.
async fn shown(server: &Server, meter: &str) -> Result<BTreeMap<(String, i64), (u64, String)>, TestCaseError> {
    let client = reqwest::Client::new();
    let w = get_json(&client, &format!("{}/v1/windows?meter={meter}", server.http), KEY).await;
    let mut out = BTreeMap::new();
    for row in w["windows"].as_array().ok_or_else(|| TestCaseError::fail(format!("no windows: {w}")))? {
        let events = row["events"].as_u64().unwrap();
        let start = chrono::DateTime::parse_from_rfc3339(row["start"].as_str().unwrap()).unwrap().timestamp();
        if events == 0 {
            prop_assert!(row["value"].is_null(), "an emptied window shows a value: {row}");
            continue;
        }
        let value = row["value"].as_str().unwrap_or_default().to_string();
        out.insert((row["customer"].as_str().unwrap().to_string(), start), (events, value));
    }
    Ok(out)
}

async fn run_case(batches: Vec<Batch>) -> Result<(), TestCaseError> {
    let dir = temp("replay");
    let mut server = Server::with_meters(&dir, METERS, false);
    server.start().await;
    let mut model = Model::default();
    let mut next_id = 0;
    for (b, batch) in batches.iter().enumerate() {
        // Ops on earlier events name one live at the batch's start; each id
        // appears at most once per batch.
        let live = model.live();
        let mut touched = BTreeSet::new();
        let mut sent = Vec::new();
        for op in &batch.ops {
            let pick = |t: &usize| (!live.is_empty()).then(|| live[t % live.len()].clone());
            let (event, expect) = match op {
                Op::New(c) => {
                    next_id += 1;
                    let id = format!("e{next_id}");
                    model.events.insert(id.clone(), (0, Some(c.clone())));
                    (usage_event(&id, 0, Some(c)), EventStatus::Accepted)
                }
                Op::Resend(t) | Op::Correct(t, _) | Op::Retract(t) => {
                    let Some(id) = pick(t).filter(|id| touched.insert(id.clone())) else { continue };
                    let (revision, current) = model.events[&id].clone();
                    match op {
                        Op::Resend(_) => (usage_event(&id, revision, current.as_ref()), EventStatus::Duplicate),
                        Op::Correct(_, c) => {
                            model.events.insert(id.clone(), (revision + 1, Some(c.clone())));
                            (usage_event(&id, revision + 1, Some(c)), EventStatus::Accepted)
                        }
                        _ => {
                            model.events.insert(id.clone(), (revision + 1, None));
                            (usage_event(&id, revision + 1, None), EventStatus::Accepted)
                        }
                    }
                }
            };
            sent.push((event, expect));
        }
        let mut client = IngestServiceClient::connect(server.grpc.clone()).await.unwrap();
        let mut req = tonic::Request::new(IngestRequest { events: sent.iter().map(|(e, _)| e.clone()).collect() });
        req.metadata_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
        let answer = client.ingest(req).await.map_err(|s| TestCaseError::fail(format!("batch {b}: {s}")))?;
        for (r, (e, expect)) in answer.into_inner().results.iter().zip(&sent) {
            let status = EventStatus::try_from(r.status).unwrap();
            prop_assert_eq!(status, *expect, "batch {}: event {:?}: {} {}", b, e, r.field, r.reason);
        }
        if batch.restart {
            server.kill();
            server.start().await;
        }
        for meter in ["u_sum", "u_count", "u_min", "u_max", "u_unique"] {
            let (expected, actual) = (model.windows(meter), shown(&server, meter).await?);
            prop_assert_eq!(&actual, &expected, "meter {} after batch {} (restart: {})", meter, b, batch.restart);
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn any_accepted_batches_with_restarts_anywhere_replay_to_the_same_windows() {
    let cases = std::env::var("TOLLGATE_REPLAY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let rng = match std::env::var("TOLLGATE_REPLAY_SEED").ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
        }
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 32, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Err(e) = runner.run(&batches(), |b| rt.block_on(run_case(b))) {
        panic!("{e}");
    }
}
