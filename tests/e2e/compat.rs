//! A data directory written by an earlier build opens and serves with this
//! one: the fixture under `tests/fixtures/datadir/` was written by the
//! gateway of commit `1e20c3a` (before the crates were split by layer) with
//! [`write_the_data_dir_fixture`], which also recorded what that gateway
//! answered to every probe in `answers.json`. The test starts this build's
//! gateway on a copy and asks again.
//!
//! To write the fixture again (only when the stored format changes on
//! purpose, with a migration): `TOLLGATE_WRITE_FIXTURE=1 cargo test --release
//! -p tollgate-e2e -- --ignored write_the_data_dir_fixture`.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tollgate::proto::UsageEvent;
use tollgate_e2e::{API_KEY, Env, Erp, TempDir, bundled_component, event};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/datadir")
}

/// What the fixture's gateway was sent, in order (ingested before and
/// after the close of April).
fn april_usage() -> Vec<UsageEvent> {
    let mut corrected = event("g2", "globex", "api_calls", "2025-04-03T11:00:00Z", "75.25");
    corrected.revision = 1;
    let mut retraction = event("i3", "initech", "api_calls", "2025-04-10T00:00:00Z", "0");
    retraction.revision = 1;
    retraction.retract = true;
    let mut with_dims = event("g4", "globex", "api_calls", "2025-04-20T08:30:00Z", "12.5");
    with_dims.dimensions.insert("region".into(), "eu-west".into());
    vec![
        event("g1", "globex", "api_calls", "2025-04-01T00:00:00Z", "150"),
        event("g2", "globex", "api_calls", "2025-04-03T11:00:00Z", "40"),
        event("i1", "initech", "api_calls", "2025-04-02T09:00:00Z", "3"),
        event("i3", "initech", "api_calls", "2025-04-10T00:00:00Z", "9"),
        event("h1", "hooli", "api_calls", "2025-04-05T00:00:00Z", "2"),
        event("f1", "globex", "fees", "2025-04-30T23:59:59.5Z", "1.005"),
        corrected,
        retraction,
        with_dims,
    ]
}

fn late_usage() -> Vec<UsageEvent> {
    vec![
        event("g-late", "globex", "api_calls", "2025-04-30T23:00:00Z", "10.5"),
        event("g-may", "globex", "api_calls", "2025-05-02T10:00:00Z", "7"),
    ]
}

/// The GET requests whose answers must not change (as tenant `acme`).
fn probes(document_numbers: &[String], document_ids: &[String]) -> Vec<String> {
    let mut p: Vec<String> = [
        "/v1/meters",
        "/v1/meters/api_calls",
        "/v1/meters/api_days",
        "/v1/windows?meter=api_calls",
        "/v1/windows?meter=api_days",
        "/v1/windows?meter=fees",
        "/v1/windows?meter=api_days&dimensions.region=eu-west",
        "/v1/windows?meter=api_calls&customer=globex&from=2025-04-02T00:00:00Z&to=2025-04-30T00:00:00Z",
        "/v1/events?customer=globex",
        "/v1/events/g2",
        "/v1/events/i3",
        "/v1/unmatched?period=2025-04",
        "/v1/plugins",
        "/v1/activations/initech-api",
        "/v1/masterdata",
        "/v1/masterdata/contract_lines/globex-api/versions",
        "/v1/masterdata/contract_lines/globex-api?as_of=2025-04-10T00:00:00Z",
        "/v1/customers/globex",
        "/v1/contract-lines/globex-api/pricing",
        "/v1/exceptions",
        "/v1/periods/2025-05/interim",
        "/v1/lineage/events/g2",
    ]
    .map(String::from)
    .to_vec();
    p.extend(document_numbers.iter().map(|n| format!("/v1/lineage/documents/{n}")));
    p.extend(document_ids.iter().map(|d| format!("/v1/documents/{d}")));
    p
}

async fn answers(env: &Env, probes: &[String]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for path in probes {
        let (status, body) = env.get(path).await.unwrap();
        out.insert(path.clone(), json!({ "status": status, "body": body }));
    }
    out
}

/// Copies a directory tree; returns each file's length by its path under
/// `from`. With `trim`, trailing zero bytes are left out of the copy (the
/// event index's journal is preallocated: 64 MiB of mostly zeros), and
/// `restore` sets each copied file back to its recorded length.
fn copy_dir(from: &Path, to: &Path, trim: bool, restore: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut lengths = BTreeMap::new();
    copy_tree(from, to, Path::new(""), trim, restore, &mut lengths);
    lengths
}

fn copy_tree(
    from: &Path,
    to: &Path,
    rel: &Path,
    trim: bool,
    restore: &BTreeMap<String, u64>,
    lengths: &mut BTreeMap<String, u64>,
) {
    std::fs::create_dir_all(to.join(rel)).unwrap();
    for entry in std::fs::read_dir(from.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(from, to, &rel, trim, restore, lengths);
            continue;
        }
        let mut bytes = std::fs::read(entry.path()).unwrap();
        let key = rel.to_string_lossy().replace('\\', "/");
        lengths.insert(key.clone(), bytes.len() as u64);
        if trim {
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            bytes.truncate(end);
        }
        std::fs::write(to.join(&rel), &bytes).unwrap();
        if let Some(len) = restore.get(&key) {
            std::fs::OpenOptions::new().write(true).open(to.join(&rel)).unwrap().set_len(*len).unwrap();
        }
    }
}

/// Where two JSON values differ, as `path: then → now`.
fn differences(then: &Value, now: &Value, at: &str) -> Vec<String> {
    match (then, now) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let null = Value::Null;
            keys.into_iter()
                .flat_map(|k| differences(a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null), &format!("{at}.{k}")))
                .collect()
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().flat_map(|(i, (x, y))| differences(x, y, &format!("{at}[{i}]"))).collect()
        }
        _ if then == now => vec![],
        _ => vec![format!("{at}: {then} → {now}")],
    }
}

/// Writes `tests/fixtures/datadir/` (see the module comment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the compatibility fixture; run by hand with TOLLGATE_WRITE_FIXTURE=1"]
async fn write_the_data_dir_fixture() {
    if std::env::var_os("TOLLGATE_WRITE_FIXTURE").is_none() {
        return;
    }
    let erp = Erp::start().await.unwrap();
    let mut env = Env::start(&erp).await.unwrap();
    let tiers = bundled_component("graduated-tiers-0.1.0.wasm");
    assert_eq!(env.upload(API_KEY, "name=my-tiers&version=1.0.0&kind=rater", tiers).await.0, 201);
    let activation = json!({ "contract_line": "initech-api", "plugin": "my-tiers", "version": "1.0.0",
                             "effective_from": "2025-04-01T00:00:00Z" });
    assert_eq!(env.post("/v1/activations", &activation).await.0, 201);
    let days = json!({ "id": "api_days", "event_type": "api_calls", "aggregation": "count", "window": "1d",
                       "group_by": ["region"], "description": "calls per day and region" });
    assert_eq!(env.post("/v1/meters", &days).await.0, 201);
    let mut amended = tollgate_e2e::masterdata()["contract_lines"][0].clone();
    amended["params"] = json!({ "tiers": [ { "up_to": null, "unit_price": "0.09" } ] });
    let amendment = json!({ "effective_from": "2025-04-15T00:00:00Z", "value": amended, "reason": "amendment 3" });
    let (status, body) = env.post("/v1/masterdata/contract_lines/globex-api/versions", &amendment).await;
    assert_eq!(status, 201, "{body}");

    let r = env.ingest(april_usage()).await.unwrap();
    assert_eq!((r.accepted, r.rejected), (9, 0), "{r:?}");
    let closed = env.close("2025-04").await.unwrap();
    let docs = closed["documents"].as_array().unwrap();
    assert!(!docs.is_empty() && docs.iter().all(|d| d["state"]["status"] == "posted"), "{closed:#}");
    assert_eq!(env.ingest(late_usage()).await.unwrap().accepted, 2);
    let (status, interim) = env.post("/v1/periods/2025-05/interim?date=2025-05-03", &json!(null)).await;
    assert_eq!(status, 200, "{interim}");
    assert!(!interim["documents"].as_array().unwrap().is_empty(), "{interim}");

    let ids: Vec<String> = docs.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    let numbers: Vec<String> =
        docs.iter().map(|d| d["state"]["erp_document_number"].as_str().unwrap().to_string()).collect();
    let recorded = answers(&env, &probes(&numbers, &ids)).await;
    let failed: Vec<_> = recorded.iter().filter(|(_, a)| a["status"] != 200).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    if let Some(g) = env.gateway.take() {
        g.shutdown().await;
    }
    let out = fixture_dir();
    let _ = std::fs::remove_dir_all(&out);
    let lengths = copy_dir(&env.config.data_dir, &out.join("data"), true, &BTreeMap::new());
    let index = json!({ "document_ids": ids, "document_numbers": numbers, "file_lengths": lengths,
                        "answers": recorded });
    std::fs::write(out.join("answers.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_written_by_an_earlier_build_opens_and_serves_the_same_answers() {
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("answers.json")).expect("fixture answers")).unwrap();
    let strings = |key: &str| -> Vec<String> {
        recorded[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let (ids, numbers) = (strings("document_ids"), strings("document_numbers"));
    let copy = TempDir::new("compat");
    let lengths: BTreeMap<String, u64> = serde_json::from_value(recorded["file_lengths"].clone()).unwrap();
    copy_dir(&fixture_dir().join("data"), &copy.0.join("data"), false, &lengths);
    // The ERP still holds the fixture's invoices: its numbers go on.
    let erp = Erp::start_numbered_after(numbers.len()).await.unwrap();
    let data_dir = copy.0.join("data");
    // The master data are the stored ones: a configured file would be
    // applied again at start-up (what it changes takes effect now).
    let env = Env::start_configured(&erp, |c| {
        c.data_dir = data_dir;
        c.tenants[0].masterdata_file = None;
    })
    .await
    .unwrap();

    let mut now = answers(&env, &probes(&numbers, &ids)).await;
    let mut then: BTreeMap<String, Value> = serde_json::from_value(recorded["answers"].clone()).unwrap();
    // Counted in memory over the last hour, not stored.
    for answers in [&mut now, &mut then] {
        if let Some(quota) = answers.get_mut("/v1/plugins").and_then(|a| a["body"]["quota"].as_object_mut()) {
            quota.remove("uploads_last_hour");
        }
    }
    assert_eq!(now.len(), then.len());
    for (path, answer) in &then {
        assert_eq!(answer["status"], 200, "{path} answered {answer} when the fixture was written");
    }
    let changed: Vec<String> = then
        .iter()
        .filter(|(path, answer)| &now[*path] != *answer)
        .map(|(path, answer)| format!("{path}: {}", differences(answer, &now[path], "").join("; ")))
        .collect();
    assert!(changed.is_empty(), "{} answers changed:\n{}", changed.len(), changed.join("\n"));

    // What was stored still decides: every event of the fixture is a
    // duplicate (or superseded by its stored correction), the closed period posts nothing new, and its late usage is
    // still reported.
    let mut again = april_usage();
    again.extend(late_usage());
    let r = env.ingest(again).await.unwrap();
    assert_eq!((r.accepted, r.duplicates, r.superseded), (0, 9, 2), "{r:?}");
    let closed = env.close("2025-04").await.unwrap();
    assert_eq!(closed["already_closed"], true, "{closed:#}");
    let stored: Vec<&str> = closed["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(stored, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(closed["late_usage"].as_array().is_some_and(|l| !l.is_empty()), "{closed:#}");
    assert!(erp.invoices().await.unwrap().is_empty(), "nothing was posted again");

    // And it goes on working: new usage is counted and a new period closes.
    let r = env.ingest(vec![event("m1", "initech", "api_calls", "2025-05-09T00:00:00Z", "4")]).await.unwrap();
    assert_eq!(r.accepted, 1);
    let may = env.close("2025-05").await.unwrap();
    assert!(may["documents"].as_array().unwrap().iter().all(|d| d["state"]["status"] == "posted"), "{may:#}");
    assert_eq!(erp.invoices().await.unwrap().len(), may["documents"].as_array().unwrap().len());
}
