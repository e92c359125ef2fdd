//! Ingest through gRPC: authentication, limits, per-event errors, tenancy.

use tollgate_e2e::{Env, Erp, OTHER_API_KEY, event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unknown_api_key_is_unauthenticated() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let e = vec![event("e1", "globex", "api_calls", "2025-05-03T08:00:00Z", "1")];
    let err = env.ingest_as(None, e.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.message().contains("authorization"), "{}", err.message());
    let err = env.ingest_as(Some("nope"), e).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let r = tollgate_e2e::http().get(format!("{}/v1/masterdata", env.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_name_the_field_and_a_bad_event_never_fails_the_batch() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let too_many: Vec<_> =
        (0..10_001).map(|i| event(&format!("e{i}"), "c", "m", "2025-05-03T08:00:00Z", "1")).collect();
    let err = env.ingest_as(Some(tollgate_e2e::API_KEY), too_many).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("events: 10001 events in one request; at most 10000"), "{}", err.message());

    let far_future = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let mut dims = event("d1", "c", "m", "2025-05-03T08:00:00Z", "1");
    dims.dimensions.insert("region".into(), "x".repeat(300));
    let r = env
        .ingest(vec![
            event("ok", "c", "m", "2025-05-03T08:00:00Z", "0.000000000001"),
            event("f1", "c", "m", &far_future, "1"),
            event("q1", "c", "m", "2025-05-03T08:00:00Z", "0.0000000000001"),
            event("q2", "c", "m", "2025-05-03T08:00:00Z", "-1"),
            event("m1", "c", "API Calls", "2025-05-03T08:00:00Z", "1"),
            dims,
        ])
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = r.results.iter().map(|x| (x.field.as_str(), x.reason.as_str())).collect();
    assert_eq!(r.accepted, 1);
    assert_eq!(got[1].0, "time");
    assert!(got[1].1.contains("in the future"));
    assert_eq!(got[2], ("quantity", "0.0000000000001 has 13 decimal places; at most 12 are accepted"));
    assert_eq!(got[3].0, "quantity");
    assert!(got[3].1.contains("negative"));
    assert_eq!(got[4].0, "meter");
    assert_eq!(got[5].0, "dimensions.region");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_by_their_keys() {
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let e = || vec![event("same-id", "globex", "api_calls", "2025-05-03T08:00:00Z", "150")];
    // The same event id is independent per tenant.
    assert_eq!(env.ingest(e()).await.unwrap().accepted, 1);
    assert_eq!(env.ingest_as(Some(OTHER_API_KEY), e()).await.unwrap().accepted, 1);
    let close = env.close("2025-05").await.unwrap();
    let number = close["documents"][0]["state"]["erp_document_number"].as_str().unwrap().to_string();
    // The other tenant cannot see acme's lineage.
    let r = tollgate_e2e::http()
        .get(format!("{}/v1/lineage/documents/{number}", env.base))
        .bearer_auth(OTHER_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // acme's invoice counts acme's event only once.
    let invoices = erp.invoices().await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["total"], "10.63");
}
