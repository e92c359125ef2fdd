//! Connection hygiene (issue #19, finding 5): the `tollgate` process under
//! an open-file limit of 1 024 is held open by 2 000 idle or half-sent HTTP
//! connections and 200 silent gRPC ones; they are closed within the header
//! read timeout, and the gateway answers `/healthz` and gRPC ingest
//! throughout.

use crate::plugins_dir;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "conn-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_gateway_keeps_serving_under_1024_open_files() {
    // The test itself holds 2 200 sockets.
    rlimit::increase_nofile_limit(8192).unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-connections-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let config = dir.join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\ngrpc_listen = \"127.0.0.1:{grpc}\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
             [connections]\nheader_read_timeout_ms = 1000\n\
             [plugins]\nbundled_dir = {plugins:?}\ncache_dir = {cache:?}\n\
             [[tenants]]\nid = \"acme\"\napi_key_sha256 = [\"{hash}\"]\n",
            data = dir.join("data"),
            plugins = plugins_dir(),
            cache = plugins_dir().join("../tollgate-test-cache"),
            hash = tollgate::auth::hash_key(KEY),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    // A hard open-file limit of 1 024 for the gateway (the shell sets it, then execs).
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 1024 && exec \"$0\" serve --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_tollgate"))
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    let healthy = |client: reqwest::Client, base: String| async move {
        client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    };
    let started = Instant::now();
    while !healthy(client.clone(), base.clone()).await {
        assert!(started.elapsed() < Duration::from_secs(20), "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2 000 HTTP connections that send nothing, or half a request line, and 200 silent gRPC ones.
    let held = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        for i in 0..2000 {
            let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
            if i % 2 == 1 {
                s.write_all(b"GET /healthz HT").unwrap();
            }
            held.push(s);
        }
        for _ in 0..200 {
            held.push(TcpStream::connect(("127.0.0.1", grpc)).unwrap());
        }
        held
    })
    .await
    .unwrap();
    let opened = Instant::now();

    // Served throughout: /healthz on fresh connections, and gRPC ingest.
    let mut grpc_client =
        tollgate::proto::ingest_service_client::IngestServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
    for round in 0..15 {
        assert!(
            healthy(client.clone(), base.clone()).await,
            "healthz failed in round {round} with idle connections held"
        );
        let mut request = tonic::Request::new(tollgate::proto::IngestRequest {
            events: vec![tollgate::proto::UsageEvent {
                id: format!("e{round}"),
                customer: "c".into(),
                meter: "m".into(),
                time: Some(prost_types::Timestamp { seconds: 1_748_000_000, nanos: 0 }),
                quantity: "1".into(),
                ..Default::default()
            }],
        });
        request.metadata_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
        let acked = grpc_client.ingest(request).await.expect("gRPC ingest while connections are held");
        assert_eq!(acked.into_inner().accepted, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every held connection was closed by the gateway (EOF or reset), within the timeout and some slack.
    let closed = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for mut s in held {
            let left = Duration::from_secs(6).saturating_sub(opened.elapsed()).max(Duration::from_millis(10));
            s.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 512];
            // A half-sent request may get an error response first; then the connection ends.
            let ended = loop {
                match s.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) => break !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                }
            };
            closed += usize::from(ended);
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, 2200, "every idle connection is closed");
    assert!(opened.elapsed() < Duration::from_secs(8), "closed within the timeout: {:?}", opened.elapsed());
    assert!(healthy(client.clone(), base.clone()).await);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
