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
    assert!(err.message().contains("events: 10001 events in one batch; at most 10000"), "{}", err.message());

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

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {}", tollgate_e2e::API_KEY).parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_batches_gets_one_ack_per_batch_in_order() {
    use tokio_stream::StreamExt;
    use tollgate::proto::{EventStatus, IngestRequest, ingest_service_client::IngestServiceClient};
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let t = "2025-05-03T08:00:00Z";
    let batches = vec![
        IngestRequest {
            events: vec![event("s1", "globex", "api_calls", t, "10"), event("s2", "globex", "api_calls", t, "5")],
        },
        // s1 again (same content) is a duplicate across batches; s2 with new content conflicts.
        IngestRequest {
            events: vec![
                event("s1", "globex", "api_calls", t, "10"),
                event("s2", "globex", "api_calls", t, "6"),
                event("s3", "globex", "api_calls", t, "-1"),
                event("s4", "initech", "api_calls", t, "2.5"),
            ],
        },
        IngestRequest { events: vec![] },
        // Too many events: ends the call, naming the batch.
        IngestRequest { events: (0..10_001).map(|i| event(&format!("x{i}"), "c", "m", t, "1")).collect() },
        IngestRequest { events: vec![event("never", "globex", "api_calls", t, "1")] },
    ];
    let mut client = IngestServiceClient::connect(env.grpc.clone()).await.unwrap();
    let mut acks = client.ingest_stream(authorized(tokio_stream::iter(batches))).await.unwrap().into_inner();

    let first = acks.next().await.unwrap().unwrap();
    assert_eq!((first.sequence, first.response.as_ref().unwrap().accepted), (0, 2));
    let second = acks.next().await.unwrap().unwrap();
    assert_eq!(second.sequence, 1);
    let statuses: Vec<_> = second.response.as_ref().unwrap().results.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [EventStatus::Duplicate, EventStatus::Conflict, EventStatus::Rejected, EventStatus::Accepted]);
    let third = acks.next().await.unwrap().unwrap();
    assert_eq!((third.sequence, third.response.unwrap().results.len()), (2, 0));
    let err = acks.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("batch 3: events: 10001 events in one batch"), "{}", err.message());
    assert!(acks.next().await.is_none(), "the call ends after the refused batch");

    // What was acked is stored: a unary retry of it is all duplicates, and the
    // batch after the refused one was never taken.
    let again = env
        .ingest(vec![
            event("s1", "globex", "api_calls", t, "10"),
            event("s4", "initech", "api_calls", t, "2.5"),
            event("never", "globex", "api_calls", t, "1"),
        ])
        .await
        .unwrap();
    let statuses: Vec<_> = again.results.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [EventStatus::Duplicate, EventStatus::Duplicate, EventStatus::Accepted]);

    // A stream without a key is refused before anything is read.
    let err = client.ingest_stream(tokio_stream::iter(Vec::<IngestRequest>::new())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_grpc_health_checks_and_reflection_v1_and_v1alpha() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(env.grpc.clone()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "tollgate.v1.IngestService"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let err = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Both versions of the reflection protocol answer the same.
    reflect_v1(channel.clone()).await;
    reflect_v1alpha(channel).await;
}

/// Lists the services and finds the file of a message over one version of
/// gRPC reflection (`$version`: the module of `tonic_reflection::pb`).
macro_rules! reflection_test {
    ($name:ident, $version:ident) => {
        async fn $name(channel: tonic::transport::Channel) {
            use tokio_stream::StreamExt;
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            };
            let mut reflection = ServerReflectionClient::new(channel);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers =
                reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
            let answer = answers.next().await.unwrap().unwrap();
            let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
                panic!("unexpected answer {answer:?}")
            };
            let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
            for want in ["tollgate.v1.IngestService", "grpc.health.v1.Health"] {
                assert!(names.contains(&want), "{}: {names:?}", stringify!($version));
            }
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol("tollgate.v1.IngestAck".into())),
            };
            let mut answers =
                reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
            let answer = answers.next().await.unwrap().unwrap();
            assert!(
                matches!(answer.message_response, Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty()),
                "{}",
                stringify!($version)
            );
        }
    };
}

reflection_test!(reflect_v1, v1);
reflection_test!(reflect_v1alpha, v1alpha);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_over_http_single_and_batch_with_per_event_results() {
    use serde_json::json;
    use tollgate::proto::EventStatus;
    let erp = Erp::start().await.unwrap();
    let env = Env::start(&erp).await.unwrap();
    let post = |media: &'static str, body: serde_json::Value, key: Option<&'static str>| {
        let mut r = tollgate_e2e::http()
            .post(format!("{}/v1/events", env.base))
            .header("content-type", media)
            .body(body.to_string());
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let key = Some(tollgate_e2e::API_KEY);
    let ce = |id: &str, quantity: serde_json::Value| {
        json!({
            "specversion": "1.0", "id": id, "source": "api-gw", "type": "api_calls", "subject": "globex",
            "time": "2025-05-03T08:00:00Z", "datacontenttype": "application/json",
            "data": { "quantity": quantity, "dimensions": { "region": "eu-west" } }
        })
    };

    let (status, single) = post("application/cloudevents+json", ce("ce-1", json!("12.5")), key).await;
    assert_eq!(status, 200, "{single}");
    assert_eq!((single["accepted"].as_u64(), single["results"][0]["status"].as_str()), (Some(1), Some("accepted")));

    let mut no_subject = ce("ce-5", json!("1"));
    no_subject.as_object_mut().unwrap().remove("subject");
    let mut old_spec = ce("ce-6", json!("1"));
    old_spec["specversion"] = json!("0.3");
    let batch = json!([
        ce("ce-1", json!("12.5")),
        ce("ce-2", json!("7")),
        ce("ce-3", json!(7.1)),
        ce("ce-1", json!("13")),
        no_subject,
        old_spec,
        "not an event",
    ]);
    let (status, r) = post("application/cloudevents-batch+json; charset=utf-8", batch, key).await;
    assert_eq!(status, 200, "{r}");
    let lines: Vec<(String, String, String)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("field"), s("reason"))
        })
        .collect();
    assert_eq!(lines[0].0, "duplicate");
    assert_eq!(lines[1].0, "accepted");
    assert_eq!((lines[2].0.as_str(), lines[2].1.as_str()), ("rejected", "data.quantity"));
    assert!(lines[2].2.contains("JSON number"), "{}", lines[2].2);
    assert_eq!((lines[3].0.as_str(), lines[3].1.as_str()), ("conflict", "id"));
    assert_eq!((lines[4].0.as_str(), lines[4].1.as_str(), lines[4].2.as_str()), ("rejected", "subject", "required"));
    assert_eq!((lines[5].0.as_str(), lines[5].1.as_str()), ("rejected", "specversion"));
    assert_eq!((lines[6].0.as_str(), lines[6].1.as_str()), ("rejected", "event"));
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64(), r["conflicts"].as_u64(), r["rejected"].as_u64()),
        (Some(1), Some(1), Some(1), Some(4))
    );

    // The mapping is the gRPC event's: the same content over gRPC is a duplicate.
    let mut same = event("ce-2", "globex", "api_calls", "2025-05-03T08:00:00Z", "7.000");
    same.source = "api-gw".into();
    same.dimensions.insert("region".into(), "eu-west".into());
    let mut other = same.clone();
    other.id = "ce-1".into();
    let r = env.ingest(vec![same, other]).await.unwrap();
    let statuses: Vec<_> = r.results.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [EventStatus::Duplicate, EventStatus::Conflict]);

    let (status, err) = post("application/json", ce("ce-9", json!("1")), key).await;
    assert_eq!((status, err["error"]["field"].as_str()), (415, Some("content-type")));
    let (status, err) = post("application/cloudevents-batch+json", ce("ce-9", json!("1")), key).await;
    assert_eq!((status, err["error"]["field"].as_str()), (400, Some("body")));
    let (status, _) = post("application/cloudevents+json", ce("ce-9", json!("1")), None).await;
    assert_eq!(status, 401);
}

/// The event log's dedup retention runs on the gateway's clock, not the
/// wall clock: with a one-day retention, a resent id is a duplicate while
/// the clock stands still, and is forgotten (accepted again) once the clock
/// is moved two days on, though no real time passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_retention_follows_the_gateways_clock() {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&chrono::Utc);
    let clock = tollgate::clock::ManualClock::at(at("2026-01-10T12:00:00Z"));
    let erp = Erp::start().await.unwrap();
    let env = Env::start_with_clock(
        &erp.base,
        |c| c.ingest.dedup_retention_days = Some(1),
        std::sync::Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let once = || vec![event("kept-1", "globex", "api_calls", "2026-01-10T08:00:00Z", "5")];
    assert_eq!(env.ingest(once()).await.unwrap().accepted, 1);
    let again = env.ingest(once()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1), "within the retention: a duplicate");
    clock.advance(chrono::Duration::hours(23));
    let again = env.ingest(once()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1), "23 hours on: still remembered");
    clock.advance(chrono::Duration::hours(2));
    let again = env.ingest(once()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (1, 0), "past the retention on this clock: forgotten");
}
