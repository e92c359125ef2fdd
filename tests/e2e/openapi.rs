//! `/openapi.json` is served without a key and every operation it
//! documents reaches a handler of the running gateway.

use tollgate_e2e::{API_KEY, Env, Erp, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let r = http().get(format!("{}/openapi.json", env.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(&doc["openapi"].as_str().unwrap()[..2], "3.");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // Path parameters filled with a placeholder; no body, no query.
            let url: String =
                path.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>().join("/");
            let m = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let r = http().request(m, format!("{}{url}", env.base)).bearer_auth(API_KEY).send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            // The router's own "no such route" is a 404 or 405 with code
            // `no_route`; a handler's 404 says `not_found`.
            assert_ne!(status, 405, "{method} {path}");
            assert_ne!(body["error"]["code"], "no_route", "{method} {path}: not routed");
            operations += 1;
        }
    }
    assert!(operations >= 28, "{operations} operations");
    // An undocumented route is what the router's 404 looks like.
    let r = http().get(format!("{}/v1/nope", env.base)).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route", "{body}");
}
