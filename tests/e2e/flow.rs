//! The whole path: gRPC ingest → close period → ERP invoices → lineage.

use rust_decimal::Decimal;
use std::collections::BTreeSet;
use tollgate::proto::EventStatus;
use tollgate_e2e::{Env, Erp, dec, event};

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn statuses(r: &tollgate::proto::IngestResponse) -> Vec<(String, EventStatus, String)> {
    r.results.iter().map(|x| (x.id.clone(), x.status(), x.field.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_to_invoice_with_duplicates_invalid_events_and_two_customers() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();

    let mut missing_time = event("x2", "initech", "api_calls", "2025-03-05T00:00:00Z", "1");
    missing_time.time = None;
    let batch1 = vec![
        event("g1", "globex", "api_calls", "2025-03-01T10:15:00Z", "40.5"),
        event("g2", "globex", "api_calls", "2025-03-01T10:45:00Z", "59.5"),
        event("g3", "globex", "api_calls", "2025-03-15T23:59:59.999Z", "1000.125"),
        event("g1", "globex", "api_calls", "2025-03-01T10:15:00Z", "40.50"), // retried in the same batch
        event("i1", "initech", "api_calls", "2025-03-02T00:00:00Z", "10"),
        event("i2", "initech", "api_calls", "2025-03-31T23:00:00Z", "0.001"),
        event("x1", "initech", "api_calls", "2025-03-05T00:00:00Z", "1e3"),
        missing_time,
        event("x3", "", "api_calls", "2025-03-05T00:00:00Z", "1"),
        event("g-apr", "globex", "api_calls", "2025-04-01T00:00:00Z", "5"), // next period
        event("g-feb", "globex", "api_calls", "2025-02-28T23:59:59Z", "7"), // previous period
    ];
    let r = env.ingest(batch1).await.unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected, r.conflicts), (7, 1, 3, 0), "{:?}", statuses(&r));
    let s = statuses(&r);
    assert_eq!(s[3], ("g1".into(), EventStatus::Duplicate, String::new()));
    assert_eq!(s[6].1, EventStatus::Rejected);
    assert_eq!(s[6].2, "quantity");
    assert!(r.results[6].reason.contains("not a decimal"), "{}", r.results[6].reason);
    assert_eq!((s[7].1, s[7].2.as_str()), (EventStatus::Rejected, "time"));
    assert_eq!((s[8].1, s[8].2.as_str()), (EventStatus::Rejected, "customer"));

    // A producer retry: one duplicate, one conflicting reuse of an id, one new event.
    let batch2 = vec![
        event("g2", "globex", "api_calls", "2025-03-01T10:45:00Z", "59.5"),
        event("g3", "globex", "api_calls", "2025-03-15T23:59:59.999Z", "999"),
        event("i3", "initech", "api_calls", "2025-03-20T12:00:00Z", "3.3333"),
    ];
    let r = env.ingest(batch2).await.unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected, r.conflicts), (1, 1, 0, 1), "{:?}", statuses(&r));
    assert_eq!(r.results[1].field, "id");

    let close = env.close("2025-03").await.unwrap();
    assert_eq!(close["already_closed"], false);
    let docs = close["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2);
    assert!(docs.iter().all(|d| d["state"]["status"] == "posted"), "{close:#}");

    let invoices = erp.invoices().await.unwrap();
    assert_eq!(invoices.len(), 2, "one invoice per customer: {invoices:#?}");
    let globex = invoices.iter().find(|i| i["customer"] == "globex").unwrap();
    let initech = invoices.iter().find(|i| i["customer"] == "initech").unwrap();

    // globex: 40.5 + 59.5 + 1000.125 = 1100.125 units; 100 × 0.10 + 1000.125 × 0.0125 (12.5015625 → 12.50).
    let lines = globex["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!((dec(&lines[0]["quantity"]), dec(&lines[0]["amount"])), (d("100"), d("10.00")));
    assert_eq!((dec(&lines[1]["quantity"]), dec(&lines[1]["amount"])), (d("1000.125"), d("12.50")));
    assert_eq!(globex["total"], "22.50");
    assert_eq!(globex["account"], "C-1");
    // initech: 10 + 0.001 + 3.3333 = 13.3343 × 0.333 = 4.4403219 → 4.44 (half even).
    assert_eq!(initech["lines"][0]["quantity"], "13.3343");
    assert_eq!(initech["total"], "4.44");

    // Lineage from the ERP number back to rule, windows and source events.
    let number = globex["number"].as_str().unwrap();
    let (status, lineage) = env.get(&format!("/v1/lineage/documents/{number}")).await.unwrap();
    assert_eq!(status, 200, "{lineage}");
    assert_eq!(lineage["document"]["id"], globex["document_id"]);
    let line = &lineage["contract_lines"][0];
    assert_eq!(line["contract_line"], "globex-api");
    assert_eq!(dec(&line["quantity"]), d("1100.125"));
    assert_eq!(line["rule"]["plugin"], "graduated-tiers");
    assert_eq!(line["rule"]["version"], "0.1.0");
    let wasm = std::fs::read(tollgate_e2e::plugins_dir().join("graduated-tiers-0.1.0.wasm")).unwrap();
    assert_eq!(line["rule"]["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm)));
    let events: BTreeSet<&str> = line["event_ids"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(events, BTreeSet::from(["g1", "g2", "g3"]));
    let windows = line["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0]["start"], "2025-03-01T10:00:00Z");
    assert_eq!(windows[0]["id"], "api_calls/globex/2025-03-01T10:00:00Z");
    assert_eq!((dec(&windows[0]["value"]), windows[0]["events"].as_u64()), (d("100.0"), Some(2)));
    assert!(line["charges"][1]["explain"].as_str().unwrap().contains("1000.125 × 0.0125"));

    let (status, _) = env.get("/v1/lineage/documents/INV-999999").await.unwrap();
    assert_eq!(status, 404);
}
