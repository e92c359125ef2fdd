//! Effective-dated master data through the HTTP API: a retroactive
//! amendment splits a period's rating at its effective time, history and
//! "as of" reads show every version, a legal-entity split bills each region
//! by its own company, and usage of a SKU without an ERP item waits until
//! the ERP team maps it.

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_e2e::{Env, Erp, dec, event, masterdata};

fn line(price: &str) -> serde_json::Value {
    let mut l = masterdata()["contract_lines"][0].clone();
    l["params"] = json!({ "tiers": [ { "up_to": null, "unit_price": price } ] });
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retroactive_amendment_rates_usage_before_it_on_the_old_terms_and_after_it_on_the_new() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    env.ingest(vec![
        event("a1", "globex", "api_calls", "2025-05-03T08:00:00Z", "10"),
        event("a2", "globex", "api_calls", "2025-05-14T23:59:59Z", "5"),
        event("a3", "globex", "api_calls", "2025-05-15T00:00:00Z", "20"),
    ])
    .await
    .unwrap();
    let versions = "/v1/masterdata/contract_lines/globex-api/versions";

    // Amendments start on a window boundary of the line's meter.
    let (status, body) =
        env.post(versions, &json!({ "effective_from": "2025-05-15T00:30:00Z", "value": line("0.5") })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("effective_from")), "{body}");
    let (status, body) =
        env.post(versions, &json!({ "effective_from": "2025-05-15T00:00:00Z", "value": { "id": "other" } })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("value.id")), "{body}");
    let mut broken = line("0.5");
    broken["sku"] = json!("NOPE");
    let (status, body) =
        env.post(versions, &json!({ "effective_from": "2025-05-15T00:00:00Z", "value": broken })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("contract_lines[0].sku")), "{body}");

    // From the 15th: one flat price of 0.5 (recorded now, effective in the past).
    let (status, body) = env
        .post(
            versions,
            &json!({ "effective_from": "2025-05-15T00:00:00Z", "value": line("0.5"), "reason": "amendment 7" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let recorded_at = body["versions"][0]["recorded_at"].as_str().unwrap().to_string();

    let (status, body) = env.get(versions).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let history = body["versions"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{body}");
    assert_eq!(history[0]["effective_from"], "1970-01-01T00:00:00Z", "loaded at start-up: since always");
    assert_eq!(history[1]["reason"], "amendment 7");
    assert_eq!(history[0]["value"]["params"], masterdata()["contract_lines"][0]["params"], "history is kept");

    let price_as_of = |query: String| {
        let env = &env;
        async move {
            let (status, body) = env.get(&format!("/v1/masterdata/contract_lines/globex-api?{query}")).await.unwrap();
            assert_eq!(status, 200, "{body}");
            body["params"]["tiers"][0]["unit_price"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(price_as_of("as_of=2025-05-14T23:00:00Z".into()).await, "0.10");
    assert_eq!(price_as_of("as_of=2025-05-15T00:00:00Z".into()).await, "0.5");
    // As known before the amendment was recorded, the 15th had the old terms.
    let before = chrono::DateTime::parse_from_rfc3339(&recorded_at).unwrap() - chrono::Duration::milliseconds(1);
    let known_at = before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(price_as_of(format!("as_of=2025-05-20T00:00:00Z&known_at={known_at}")).await, "0.10");
    let (_, snapshot) = env.get("/v1/masterdata?as_of=2025-05-20T00:00:00Z").await.unwrap();
    assert_eq!(snapshot["contract_lines"][0]["params"]["tiers"][0]["unit_price"], "0.5", "{snapshot}");
    let (status, body) = env.get("/v1/masterdata/contract_lines/globex-api?as_of=yesterday").await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("query")), "{body}");

    // The close rates each part on its own terms: 15 calls on the old tiers
    // (0.10 each up to 100), 20 calls at 0.5.
    let closed = env.close("2025-05").await.unwrap();
    let doc = closed["documents"].as_array().unwrap().iter().find(|d| d["customer"] == "globex").unwrap().clone();
    let lines: Vec<_> = doc["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["part"].as_str().unwrap().to_string(), dec(&l["quantity"]), dec(&l["unit_price"])))
        .collect();
    assert_eq!(
        lines,
        [
            ("2025-05-01T00:00:00Z".to_string(), Decimal::from(15), Decimal::new(10, 2)),
            ("2025-05-15T00:00:00Z".to_string(), Decimal::from(20), Decimal::new(5, 1)),
        ],
        "{doc}"
    );
    assert_eq!(dec(&doc["total"]), Decimal::new(1150, 2));
    // Each line says which part of the period it bills.
    let service: Vec<_> =
        doc["lines"].as_array().unwrap().iter().map(|l| (l["usage_from"].clone(), l["usage_to"].clone())).collect();
    assert_eq!(
        service,
        [
            (json!("2025-05-01T00:00:00Z"), json!("2025-05-15T00:00:00Z")),
            (json!("2025-05-15T00:00:00Z"), json!("2025-06-01T00:00:00Z")),
        ]
    );
    let invoices = erp.invoices().await.unwrap();
    let globex = invoices.iter().find(|i| i["account"] == "C-1").unwrap();
    assert_eq!(dec(&globex["total"]), Decimal::new(1150, 2), "{globex}");

    // Lineage names the contract-line version each part was rated on.
    let number = doc["state"]["erp_document_number"].as_str().unwrap();
    let (_, lineage) = env.get(&format!("/v1/lineage/documents/{number}")).await.unwrap();
    let rated: Vec<_> = lineage["contract_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["part"].as_str().unwrap().to_string(), c["event_count"].as_u64().unwrap()))
        .collect();
    assert_eq!(rated, [("2025-05-01T00:00:00Z".into(), 2), ("2025-05-15T00:00:00Z".into(), 1)], "{lineage}");
    let v: Vec<_> = lineage["contract_lines"].as_array().unwrap().iter().map(|c| &c["contract_line_version"]).collect();
    assert_ne!(v[0], v[1], "{lineage}");

    // An amendment after the close is not posted; the repeated close reports
    // which parts now differ from what was billed.
    let (status, body) =
        env.post(versions, &json!({ "effective_from": "2025-05-01T00:00:00Z", "value": line("1") })).await;
    assert_eq!(status, 201, "{body}");
    let again = env.close("2025-05").await.unwrap();
    assert_eq!(again["already_closed"], true);
    let late = again["late_usage"].as_array().unwrap();
    assert_eq!(late.len(), 1, "{again}");
    assert_eq!(late[0]["part"], "2025-05-01T00:00:00Z");
    assert_ne!(late[0]["billed_version"], late[0]["current_version"], "{again}");
    assert_eq!(erp.invoices().await.unwrap().len(), invoices.len(), "nothing is posted twice");

    // Ending the line: a value is required (null ends), and it is gone from then on.
    let (status, body) = env.post(versions, &json!({ "effective_from": "2025-07-01T00:00:00Z" })).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("body")), "{body}");
    let (status, body) = env
        .post(
            versions,
            &json!({ "effective_from": "2025-06-01T00:00:00Z", "value": line("0.4"), "effective_to": "2025-07-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["versions"].as_array().unwrap().len(), 2, "the version and the line's end: {body}");
    assert_eq!(price_as_of("as_of=2025-06-30T23:00:00Z".into()).await, "0.4");
    let (status, _) = env.get("/v1/masterdata/contract_lines/globex-api?as_of=2025-07-01T00:00:00Z").await.unwrap();
    assert_eq!(status, 404);
    let (_, body) = env.get(versions).await.unwrap();
    assert_eq!(body["versions"].as_array().unwrap().len(), 5, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_entity_split_bills_each_region_by_its_company_once_the_sku_is_mapped() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let (status, body) = env
        .post(
            "/v1/meters",
            &json!({ "id": "regional", "event_type": "regional", "aggregation": "sum", "group_by": ["region"] }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut md = masterdata();
    md["legal_entities"].as_array_mut().unwrap().push(json!({
        "id": "acme-nl", "name": "Acme NL", "currency": "EUR", "erp_company": "3000", "erp_target": "sim",
        "country": "NL", "tax_context": "NL-VAT-21"
    }));
    md["skus"].as_array_mut().unwrap().push(json!({ "id": "REG", "name": "Regional calls" }));
    md["contract_lines"].as_array_mut().unwrap().push(json!({
        "id": "globex-regional", "customer": "globex", "meter": "regional", "sku": "REG",
        "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
        "params": { "tiers": [ { "up_to": null, "unit_price": "1" } ] },
        "legal_entity_split": { "dimension": "region", "entities": { "nl": "acme-nl" } }
    }));
    let mut wrong = md.clone();
    wrong["contract_lines"][2]["legal_entity_split"]["dimension"] = json!("country");
    let (status, body) = env.put("/v1/masterdata", &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "contract_lines[2].legal_entity_split.dimension", "{body}");
    let (status, body) = env.put("/v1/masterdata", &md).await;
    assert_eq!(status, 200, "{body}");

    let regional = |id: &str, region: &str, quantity: &str| {
        let mut e = event(id, "globex", "regional", "2025-06-02T10:00:00Z", quantity);
        e.dimensions.insert("region".into(), region.into());
        e
    };
    env.ingest(vec![regional("r1", "de", "5"), regional("r2", "nl", "7"), regional("r3", "fr", "1")]).await.unwrap();

    // The SKU has no ERP item: its usage waits, owned by the ERP team.
    let (_, body) = env.get("/v1/unmatched?period=2025-06").await.unwrap();
    let waiting = body["unmatched"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{body}");
    assert_eq!(waiting[0]["reason"], "sku-without-erp-item");
    assert_eq!(waiting[0]["owner"], "erp");
    assert_eq!(waiting[0]["contract_line"], "globex-regional");
    assert_eq!(waiting[0]["events"], 3);

    // The ERP team maps it (since always): the queue empties.
    let (status, body) = env
        .post(
            "/v1/masterdata/skus/REG/versions",
            &json!({ "effective_from": "1970-01-01T00:00:00Z",
                     "value": { "id": "REG", "name": "Regional calls", "erp_item": "ITEM-REG", "gl_account": "4010" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, body) = env.get("/v1/unmatched?period=2025-06").await.unwrap();
    assert_eq!(body["unmatched"], json!([]), "{body}");

    // nl usage is billed by Acme NL (company 3000), the rest by Acme EU (1000).
    let closed = env.close("2025-06").await.unwrap();
    let mut docs: Vec<_> = closed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["customer"] == "globex")
        .map(|d| (d["erp_company"].as_str().unwrap().to_string(), d["customer"].clone(), dec(&d["total"])))
        .collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    // The Acme NL document carries its tax context; its line, the usage's
    // dimensions and the SKU's GL account.
    let nl = closed["documents"].as_array().unwrap().iter().find(|d| d["erp_company"] == "3000").unwrap();
    assert_eq!(nl["tax_context"], "NL-VAT-21", "{nl:#}");
    let regional_line = nl["lines"].as_array().unwrap().iter().find(|l| l["sku"] == "REG").unwrap();
    assert_eq!(regional_line["dimensions"], json!({ "region": "nl" }), "{nl:#}");
    assert_eq!(regional_line["gl_account"], "4010");
    assert_eq!(
        docs,
        [
            ("1000".to_string(), json!("globex"), Decimal::from(6)),
            ("3000".to_string(), json!("globex"), Decimal::from(7))
        ],
        "{closed}"
    );
    let mut companies: Vec<_> = erp
        .invoices()
        .await
        .unwrap()
        .iter()
        .filter(|i| i["account"] == "C-1")
        .map(|i| (i["company"].as_str().unwrap().to_string(), dec(&i["total"])))
        .collect();
    companies.sort();
    assert_eq!(companies, [("1000".to_string(), Decimal::from(6)), ("3000".to_string(), Decimal::from(7))]);
}
