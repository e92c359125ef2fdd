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
    ];
    for (pointer, value, field, message) in cases {
        let mut md = masterdata();
        *md.pointer_mut(pointer).unwrap() = value;
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
