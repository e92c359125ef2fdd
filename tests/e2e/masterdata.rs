//! Master data through the HTTP admin API: validation names the field.

use serde_json::json;
use tollgate_e2e::{API_KEY, Env, Erp, http, masterdata};

async fn put(env: &Env, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = http().put(format!("{}/v1/masterdata", env.base)).bearer_auth(API_KEY).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_master_data_is_refused_with_the_field_and_the_old_data_stays() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let (_, before) = env.get("/v1/masterdata").await.unwrap();
    let cases = [
        ("/contract_lines/0/sku", json!("NOPE"), "contract_lines[0].sku", "unknown sku"),
        (
            "/contract_lines/1/rater",
            json!({ "plugin": "no-such-plugin" }),
            "contract_lines[1].rater",
            "no plugin named",
        ),
        ("/contract_lines/0/rater", json!({ "plugin": "generic-json" }), "contract_lines[0].rater", "not a Rater"),
        ("/contract_lines/0/currency", json!("USD"), "contract_lines[0].currency", "differs from legal entity"),
        ("/legal_entities/0/erp_target", json!("nowhere"), "legal_entities[0].erp_target", "no ERP target"),
        ("/customers/1/id", json!("globex"), "customers[1].id", "appears twice"),
        ("/customers/1/parent", json!("initech"), "customers[1].parent", "loops back"),
        ("/customers/0/parent", json!("nobody"), "customers[0].parent", "unknown customer"),
        ("/contract_lines/0/legal_entity", json!("nowhere"), "contract_lines[0].legal_entity", "unknown legal entity"),
        ("/contract_lines/0/billing_anchor_day", json!(31), "contract_lines[0].billing_anchor_day", "1..=28"),
        ("/contract_lines/0/subscription", json!("sub-9"), "contract_lines[0].subscription", "unknown subscription"),
        ("/legal_entities/0/country", json!("Germany"), "legal_entities[0].country", "ISO 3166"),
    ];
    for (pointer, value, field, message) in cases {
        let mut md = masterdata();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match md.pointer_mut(parent).unwrap() {
            serde_json::Value::Object(o) => o.insert(key.to_string(), value),
            other => panic!("{parent}: {other}"),
        };
        let (status, body) = put(&env, &md).await;
        assert_eq!(status, 400, "{pointer}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(message), "{body}");
    }
    let (status, body) = put(&env, &json!({ "customers": [{ "id": "x" }] })).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "body");
    let (status, stored) = env.get("/v1/masterdata").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(stored, before, "a refused update leaves the stored data as it was");
    assert_eq!(stored["contract_lines"][1]["id"], "initech-api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_usage_waits_with_its_reason_and_is_billed_once_the_master_data_is_fixed() {
    use tollgate_e2e::{dec, event};
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let (status, body) =
        env.post("/v1/meters", &json!({ "id": "storage", "event_type": "storage", "aggregation": "sum" })).await;
    assert_eq!(status, 201, "{body}");
    let r = env
        .ingest(vec![
            event("g1", "globex", "api_calls", "2025-05-03T08:00:00Z", "10"),
            event("h1", "hooli", "api_calls", "2025-05-03T08:00:00Z", "7"),
            event("h2", "hooli", "api_calls", "2025-05-04T09:00:00Z", "3"),
            event("s1", "globex", "storage", "2025-05-05T10:00:00Z", "2.5"),
            event("w1", "globex", "widgets", "2025-05-05T10:00:00Z", "1"),
            event("o1", "soylent", "api_calls", "2025-04-30T23:59:59Z", "4"),
        ])
        .await
        .unwrap();
    assert_eq!(r.accepted, 6, "{r:?}");

    let (status, body) = env.get("/v1/unmatched?period=2025-05").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let items: Vec<_> = body["unmatched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["reason"].as_str().unwrap().to_string(),
                u["owner"].as_str().unwrap().to_string(),
                u["customer"].as_str().unwrap_or("").to_string(),
                u["event_type"].as_str().unwrap().to_string(),
                u["events"].as_u64().unwrap(),
            )
        })
        .collect();
    let item = |r: &str, o: &str, c: &str, t: &str, n: u64| (r.into(), o.into(), c.into(), t.into(), n);
    assert_eq!(
        items,
        [
            item("no-meter", "product", "", "widgets", 1),
            item("unknown-customer", "finance", "hooli", "api_calls", 2),
            item("no-contract-line", "finance", "globex", "storage", 1),
        ],
        "{body}"
    );
    let (status, body) = env.get("/v1/unmatched?period=2025-13").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("period")), "{body}");

    // Closing April bills nothing of soylent's usage and says why.
    let april = env.close("2025-04").await.unwrap();
    let waiting = april["unmatched"].as_array().unwrap();
    assert!(waiting.iter().any(|u| u["customer"] == "soylent" && u["reason"] == "unknown-customer"), "{april}");

    // A meter for the widgets: their usage moves on to the next missing piece.
    let (status, body) =
        env.post("/v1/meters", &json!({ "id": "widgets", "event_type": "widgets", "aggregation": "count" })).await;
    assert_eq!(status, 201, "{body}");
    let (_, body) = env.get("/v1/unmatched?period=2025-05").await.unwrap();
    let reasons: Vec<_> = body["unmatched"].as_array().unwrap().iter().map(|u| (&u["reason"], &u["meter"])).collect();
    assert!(reasons.contains(&(&json!("no-contract-line"), &json!("widgets"))), "{body}");
    assert!(!reasons.iter().any(|(r, _)| *r == "no-meter"), "{body}");

    // Fix the master data: the queue empties by itself.
    let mut md = masterdata();
    md["customers"].as_array_mut().unwrap().push(json!({
        "id": "hooli", "name": "Hooli", "legal_entity": "acme-eu", "erp_account": "C-3"
    }));
    md["skus"].as_array_mut().unwrap().push(json!({ "id": "STO", "name": "Storage", "erp_item": "ITEM-STO" }));
    md["contract_lines"].as_array_mut().unwrap().extend([
        json!({
            "id": "hooli-api", "customer": "hooli", "meter": "api_calls", "sku": "API",
            "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
            "params": { "tiers": [ { "up_to": null, "unit_price": "0.5" } ] }
        }),
        json!({
            "id": "globex-storage", "customer": "globex", "meter": "storage", "sku": "STO",
            "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
            "params": { "tiers": [ { "up_to": null, "unit_price": "2" } ] }
        }),
        json!({
            "id": "globex-widgets", "customer": "globex", "meter": "widgets", "sku": "STO",
            "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
            "params": { "tiers": [ { "up_to": null, "unit_price": "0" } ] }
        }),
    ]);
    let (status, body) = put(&env, &md).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = env.get("/v1/unmatched?period=2025-05").await.unwrap();
    assert_eq!(body["unmatched"], json!([]), "{body}");

    // The waiting usage is billed by the close like any other.
    let closed = env.close("2025-05").await.unwrap();
    assert!(closed.get("unmatched").is_none(), "{closed}");
    let invoices = erp.invoices().await.unwrap();
    let invoice = |account: &str| invoices.iter().find(|i| i["account"] == account).cloned().unwrap_or_default();
    // hooli: 10 calls × 0.5; globex: 10 calls (1.00) and 2.5 storage × 2 (5.00).
    assert_eq!(dec(&invoice("C-3")["total"]), rust_decimal::Decimal::from(5), "{invoices:?}");
    assert_eq!(dec(&invoice("C-1")["total"]), rust_decimal::Decimal::from(6), "{invoices:?}");
}
