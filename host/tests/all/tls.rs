//! TLS on both listeners with a certificate issued here by a throw-away CA:
//! gRPC, HTTPS and the CLI (`--ca-cert`) work when they trust the CA;
//! plain-text clients and clients without the CA are refused; unusable
//! files stop start-up with an error naming the key.

use crate::{get_json, start_erp, temp_dir, test_config};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate::config::TlsConfig;
use tollgate::proto::ingest_service_client::IngestServiceClient;
use tollgate::proto::{IngestRequest, UsageEvent};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

struct TestPki {
    ca_file: PathBuf,
    ca_pem: String,
    tls: TlsConfig,
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 it signed.
fn make_pki(dir: &Path) -> TestPki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Tollgate test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "localhost");
    let server_cert = server.signed_by(&server_key, &ca).unwrap();

    let ca_pem = AsRef::<rcgen::Certificate>::as_ref(&ca).pem();
    let (ca_file, cert_file, key_file) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&ca_file, &ca_pem).unwrap();
    std::fs::write(&cert_file, server_cert.pem()).unwrap();
    std::fs::write(&key_file, server_key.serialize_pem()).unwrap();
    TestPki { ca_file, ca_pem, tls: TlsConfig { cert_file, key_file, handshake_timeout_ms: 2_000 } }
}

fn one_event(id: &str) -> tonic::Request<IngestRequest> {
    let event = UsageEvent {
        id: id.into(),
        customer: "globex".into(),
        meter: "api_calls".into(),
        time: Some(prost_types::Timestamp { seconds: 1_746_259_200, nanos: 0 }),
        quantity: "3".into(),
        ..Default::default()
    };
    let mut request = tonic::Request::new(IngestRequest { events: vec![event] });
    request.metadata_mut().insert("authorization", "Bearer k".parse().unwrap());
    request
}

async fn grpc_over_tls(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<u32, String> {
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let answer = IngestServiceClient::new(channel).ingest(one_event("tls-2")).await.map_err(|e| format!("{e:?}"))?;
    Ok(answer.into_inner().accepted)
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_tls_with_the_configured_certificate() {
    let dir = temp_dir("tls-test");
    let pki = make_pki(&dir);
    let mut config = test_config(&dir, start_erp().await);
    config.tls = Some(pki.tls.clone());
    let gateway = tollgate::server::start(config).await.unwrap();
    let trusted = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");

    // gRPC over TLS, trusting the CA.
    assert_eq!(grpc_over_tls(gateway.grpc_addr, trusted()).await, Ok(1));
    // A client that does not trust the CA is refused at the handshake.
    let err = grpc_over_tls(gateway.grpc_addr, ClientTlsConfig::new().domain_name("localhost")).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Plain text on the TLS port gets no service.
    let plain = match IngestServiceClient::connect(format!("http://{}", gateway.grpc_addr)).await {
        Ok(mut client) => client.ingest(one_event("plain")).await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(plain.is_err(), "plain-text gRPC was served on the TLS port");

    // HTTPS, trusting the CA: the event sent over gRPC is there.
    let https = format!("https://{}", gateway.http_addr);
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder().no_proxy().add_root_certificate(ca).build().unwrap();
    let page = get_json(&client, &format!("{https}/v1/events?customer=globex"), "k").await;
    assert_eq!(page["events"].as_array().map(|e| e.len()), Some(1), "{page}");
    assert_eq!(page["events"][0]["id"], "tls-2");
    // Without the CA, and in plain text, the HTTP listener refuses.
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    let err = untrusting.get(format!("{https}/v1/events")).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    let err = untrusting.get(format!("http://{}/v1/events", gateway.http_addr)).bearer_auth("k").send().await;
    assert!(err.is_err(), "plain-text HTTP was served on the TLS port: {err:?}");

    // The CLI trusts the CA given with --ca-cert, and only then.
    let ca_file = pki.ca_file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let https = https.clone();
        move || {
            cli(&["api-key", "create", "--name", "ci", "--gateway", &https, "--api-key", "k", "--ca-cert", &ca_file])
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(created["key"].as_str().unwrap().starts_with("tg_"), "{created}");
    let out = tokio::task::spawn_blocking(move || cli(&["api-key", "list", "--gateway", &https, "--api-key", "k"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sending"), "{}", String::from_utf8_lossy(&out.stderr));

    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_files_stop_start_up_with_an_error_naming_the_key() {
    let dir = temp_dir("tls-bad-test");
    let pki = make_pki(&dir);
    let erp = start_erp().await;
    let start_with = |tls: TlsConfig| {
        let mut config = test_config(&dir, erp.clone());
        config.tls = Some(tls);
        async move {
            match tollgate::server::start(config).await {
                Ok(_) => panic!("started with unusable TLS files"),
                Err(e) => format!("{e:#}"),
            }
        }
    };

    let missing = TlsConfig { cert_file: dir.join("nope.pem"), ..pki.tls.clone() };
    let err = start_with(missing).await;
    assert!(err.starts_with("tls.cert_file: reading ") && err.contains("nope.pem"), "{err}");

    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = start_with(TlsConfig { cert_file: not_pem, ..pki.tls.clone() }).await;
    assert!(err.starts_with("tls.cert_file: ") && err.contains("holds no PEM certificate"), "{err}");

    let err = start_with(TlsConfig { key_file: pki.tls.cert_file.clone(), ..pki.tls.clone() }).await;
    assert!(err.starts_with("tls.key_file: ") && err.contains("holds no PEM private key"), "{err}");

    // A key that is not the certificate's.
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let err = start_with(TlsConfig { key_file: other_key, ..pki.tls.clone() }).await;
    assert!(err.contains("cannot be used together"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
