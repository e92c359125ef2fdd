//! A real ERP: invoices posted into Tryton 8.2 (SQLite, started on
//! 127.0.0.1 by the test, installed from PyPI by the test set-up) through
//! the Tryton mapper and the normal outbox, read back from Tryton, posted
//! again without a duplicate, and a closed period's rejection handled in
//! the exception queue (re-routed, retried after a master-data fix, posted).

use serde_json::{Value, json};
use tollgate_e2e::tryton::{Tryton, tryton_date, tryton_decimal};
use tollgate_e2e::{Env, dec, event, masterdata};

/// The test master data with Tryton's record ids as ERP ids.
fn tryton_masterdata(t: &Tryton) -> Value {
    let mut md = masterdata();
    md["legal_entities"][0]["erp_company"] = t.ids["company"].to_string().into();
    md["customers"][0]["erp_account"] = t.ids["customers"]["globex"].to_string().into();
    md["customers"][1]["erp_account"] = t.ids["customers"]["initech"].to_string().into();
    md["skus"][0]["erp_item"] = t.ids["product"].to_string().into();
    md
}

/// The one invoice Tryton holds for a document, checked against it.
async fn the_invoice(tryton: &Tryton, doc: &Value, date: &str) -> Value {
    let found = tryton.invoices(doc["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(found.len(), 1, "one invoice per document: {found:#?}");
    let invoice = found[0].clone();
    assert_eq!(invoice["state"], "posted", "{invoice}");
    assert_eq!(invoice["number"], doc["state"]["erp_document_number"], "{invoice}");
    assert_eq!(tryton_decimal(&invoice["untaxed_amount"]), dec(&doc["total"]), "{invoice} {doc}");
    assert_eq!(tryton_date(&invoice["invoice_date"]), date);
    invoice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_post_into_a_real_tryton_exactly_once() {
    let tryton = Tryton::start(&[2025]).await.unwrap();
    tryton.close_period("2025-04").await.unwrap();
    let start = || Env::posting_to_base(&tryton.base, "tryton", tryton.settings(), 30_000, tryton_masterdata(&tryton));
    let env = start().await.unwrap();
    let usage = vec![
        event("g-may", "globex", "api_calls", "2025-05-03T08:00:00Z", "150"),
        event("i-may", "initech", "api_calls", "2025-05-04T09:30:00Z", "3"),
        event("g-apr", "globex", "api_calls", "2025-04-10T10:00:00Z", "10"),
    ];
    assert_eq!(env.ingest(usage.clone()).await.unwrap().accepted, 3);

    // May: one posted Tryton invoice per customer, totals equal to the cent
    // (globex: 100 × 0.10 + 50 × 0.0125 rounded; initech: 3 × 0.333 rounded).
    let may = env.close_within("2025-05", 90_000).await.unwrap();
    let docs = may["documents"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 2, "{may:#}");
    let totals: Vec<_> = docs.iter().map(|d| dec(&d["total"])).collect();
    assert!(totals.contains(&"10.63".parse().unwrap()) && totals.contains(&"1.00".parse().unwrap()), "{totals:?}");
    for d in &docs {
        assert_eq!(d["state"]["status"], "posted", "{d}");
        the_invoice(&tryton, d, "2025-05-31").await;
    }

    // The same documents posted again, by a second gateway with an empty
    // store (same master data, same events, so the same document ids): each
    // conversation starts by finding the document in Tryton, so nothing is
    // created twice and the numbers are Tryton's first ones.
    let again = start().await.unwrap();
    again.ingest(usage.clone()).await.unwrap();
    let may_again = again.close_within("2025-05", 90_000).await.unwrap();
    for (first, second) in docs.iter().zip(may_again["documents"].as_array().unwrap()) {
        assert_eq!(first["id"], second["id"]);
        assert_eq!(second["state"]["status"], "posted", "{second}");
        assert_eq!(first["state"]["erp_document_number"], second["state"]["erp_document_number"]);
        the_invoice(&tryton, second, "2025-05-31").await;
    }
    assert_eq!(tryton.all_invoices().await.unwrap().len(), 2, "no duplicate invoice");

    // April is closed in Tryton: the rejection waits in the exception queue
    // with Tryton's own message, for finance.
    let april = env.close_within("2025-04", 90_000).await.unwrap();
    let doc = april["documents"][0].clone();
    assert_eq!(doc["state"]["status"], "rejected", "{april:#}");
    let (_, queue) = env.get("/v1/exceptions").await.unwrap();
    let exception =
        queue["exceptions"].as_array().unwrap().iter().find(|e| e["document_id"] == doc["id"]).unwrap().clone();
    assert_eq!(exception["rejection"]["code"], "period-closed", "{exception}");
    assert_eq!(exception["rejection"]["owner"], "finance");
    assert_eq!(exception["rejection"]["suggested_action"], "reroute");
    let message = exception["rejection"]["message"].as_str().unwrap();
    assert!(message.contains("reopen the period \"2025-04\""), "{message}");

    // Finance re-routes it to the next period, May: the draft Tryton kept
    // from the refused post is re-dated, but Tryton numbers invoices in
    // date order and May's are numbered up to the 31st — a rejection again,
    // for finance, with what to do.
    let id = doc["id"].as_str().unwrap();
    let (status, body) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "reroute" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["posting_period"], "2025-05");
    let rejected = env.wait_status(id, "rejected").await;
    assert_eq!(rejected["state"]["rejection"]["code"], "date-out-of-sequence", "{rejected:#}");
    assert_eq!(rejected["state"]["rejection"]["suggested_action"], "reroute");

    // Master data learns that globex is billed to its other Tryton party;
    // finance retries: the draft Tryton holds no longer matches the
    // document, so the mapper deletes it and creates the invoice anew (still
    // refused for its date).
    let other_party = tryton.ids["customers"]["initech"].to_string();
    let globex = json!({ "id": "globex", "name": "Globex", "legal_entity": "acme-eu", "erp_account": other_party });
    let (status, body) = env
        .post(
            "/v1/masterdata/customers/globex/versions",
            &json!({ "effective_from": "2025-01-01T00:00:00Z", "value": globex }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "retry" })).await;
    assert_eq!(status, 200, "{body}");
    let rejected = env.wait_status(id, "rejected").await;
    assert_eq!(rejected["state"]["rejection"]["code"], "date-out-of-sequence", "{rejected:#}");
    let drafts = tryton.invoices(id).await.unwrap();
    assert_eq!(drafts.len(), 1, "the stale draft was replaced, not kept beside: {drafts:#?}");
    assert_eq!(drafts[0]["party"].to_string(), other_party);

    // Re-routed to June, it posts — still one invoice for the document, to
    // the party master data now names.
    let (status, body) =
        env.post(&format!("/v1/exceptions/{id}/actions"), &json!({ "action": "reroute", "period": "2025-06" })).await;
    assert_eq!(status, 200, "{body}");
    let posted = env.wait_status(id, "posted").await;
    let invoice = the_invoice(&tryton, &posted, "2025-06-01").await;
    assert_eq!(invoice["party"].to_string(), other_party);
    assert_eq!(tryton.all_invoices().await.unwrap().len(), 3);
    let (_, queue) = env.get("/v1/exceptions").await.unwrap();
    assert_eq!(queue["exceptions"], json!([]));
}
