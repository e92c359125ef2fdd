//! `tollgate demo`: the whole flow on one machine. Starts the ERP simulator
//! (the `tollgate-erp-sim` program, as a child process) and the gateway
//! (embedded store in a fresh directory, bundled plugins) on 127.0.0.1,
//! sends sample usage over gRPC (with a duplicate and an invalid event),
//! closes last month, and prints the invoice lines the ERP received and the
//! lineage of each invoice.

use crate::auth::hash_key;
use crate::config::{Config, ErpTargetConfig, PluginsConfig, PostingConfig, TenantConfig};
use crate::proto::{IngestRequest, UsageEvent, ingest_service_client::IngestServiceClient};
use crate::server;
use anyhow::{Context, Result, bail};
use chrono::{Datelike, Duration, TimeZone, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A JSON string field, or "" (for printing).
fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}

/// One row of the invoice-lines table.
fn row(cols: [&str; 5]) {
    println!("    {:<12} {:<38} {:>12} {:>10} {:>10}", cols[0], cols[1], cols[2], cols[3], cols[4]);
}

/// The demo tenant's API key (sent as `authorization: Bearer ...`).
pub const DEMO_API_KEY: &str = "demo-acme-key";
const MASTERDATA: &str = include_str!("../demo/masterdata.json");
const METERS: &str = include_str!("../demo/meters.json");

/// The ERP simulator program, running until dropped.
struct Simulator {
    child: std::process::Child,
    url: String,
}

impl Simulator {
    /// Starts `program` on a free loopback port; its first line on stdout
    /// names the address.
    fn start(program: &std::path::Path) -> Result<Simulator> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(program)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the ERP simulator {}", program.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut line).context("reading the ERP simulator's address")?;
        }
        let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_string) else {
            let _ = child.kill();
            bail!("the ERP simulator {} did not say where it listens (it said {line:?})", program.display());
        };
        Ok(Simulator { child, url })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn run(plugins_dir: PathBuf, erp_sim: PathBuf) -> Result<()> {
    let work = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let masterdata = work.join("masterdata.json");
    std::fs::write(&masterdata, MASTERDATA)?;
    let meters = work.join("meters.json");
    std::fs::write(&meters, METERS)?;

    let sim = Simulator::start(&erp_sim)?;
    let erp_url = sim.url.clone();

    let config = Config {
        data_dir: work.join("data"),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: "127.0.0.1:0".parse()?,
        tls: None,
        plugins: PluginsConfig { bundled_dir: plugins_dir, ..PluginsConfig::default() },
        posting: PostingConfig::default(),
        ingest: Default::default(),
        connections: Default::default(),
        admin_api_key_sha256: vec![],
        tenants: vec![TenantConfig {
            id: "acme".into(),
            api_key_sha256: vec![hash_key(DEMO_API_KEY)],
            meters_file: Some(meters),
            masterdata_file: Some(masterdata),
        }],
        erp_targets: BTreeMap::from([(
            "erp-sim".to_string(),
            ErpTargetConfig { timeout_ms: 5_000, ..ErpTargetConfig::new(erp_url.clone(), "generic-json") },
        )]),
    };
    config.validate()?;
    let gateway = server::start(config).await?;
    println!("Tollgate demo");
    println!("  gateway: gRPC {} · HTTP {} · ERP simulator {erp_url}", gateway.grpc_addr, gateway.http_addr);
    println!("  data:    {}", work.display());

    // Last calendar month: a period that is over and can be closed.
    let now = Utc::now();
    let this_month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().context("month start")?;
    let start = this_month - Duration::days(1);
    let period = format!("{:04}-{:02}", start.year(), start.month());
    let month_start = Utc.with_ymd_and_hms(start.year(), start.month(), 1, 0, 0, 0).single().context("period start")?;

    let mut events = Vec::new();
    let mut push = |id: String, customer: &str, meter: &str, hours: i64, quantity: &str| {
        let t = month_start + Duration::hours(hours);
        events.push(UsageEvent {
            id,
            customer: customer.into(),
            meter: meter.into(),
            time: Some(prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }),
            quantity: quantity.into(),
            dimensions: [("region".to_string(), "eu-west".to_string())].into(),
            source: "demo".into(),
            ..UsageEvent::default()
        });
    };
    for day in 0..20 {
        push(format!("gx-api-{day}"), "globex", "api_calls", day * 24 + 9, "612.5");
        push(format!("gx-sto-{day}"), "globex", "storage_gb_hours", day * 24 + 12, "240");
        push(format!("it-api-{day}"), "initech", "api_calls", day * 24 + 15, "41");
    }
    push("gx-api-3".into(), "globex", "api_calls", 3 * 24 + 9, "612.5"); // a retried event: duplicate
    push("bad-1".into(), "initech", "api_calls", 10, "12,5"); // invalid quantity: rejected

    let mut client = IngestServiceClient::connect(format!("http://{}", gateway.grpc_addr)).await?;
    let mut request = tonic::Request::new(IngestRequest { events });
    request.metadata_mut().insert("authorization", format!("Bearer {DEMO_API_KEY}").parse()?);
    let response = client.ingest(request).await?.into_inner();
    println!(
        "\nIngest (gRPC): {} accepted, {} duplicate, {} rejected",
        response.accepted, response.duplicates, response.rejected
    );
    for r in response.results.iter().filter(|r| !r.field.is_empty()) {
        println!("  event {:?}: {} — {}", r.id, r.field, r.reason);
    }

    let http = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://{}", gateway.http_addr);
    let close: serde_json::Value = http
        .post(format!("{base}/v1/periods/{period}/close?wait_ms=20000"))
        .bearer_auth(DEMO_API_KEY)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let docs = close["documents"].as_array().cloned().unwrap_or_default();
    println!("\nClosed period {period}: {} posting documents", docs.len());

    let invoices: serde_json::Value = http.get(format!("{erp_url}/generic/invoices")).send().await?.json().await?;
    let invoices = invoices["invoices"].as_array().cloned().unwrap_or_default();
    if invoices.is_empty() {
        bail!("the ERP received no invoice");
    }
    println!("\nInvoices posted to the ERP:");
    for inv in &invoices {
        println!(
            "\n  {}  customer {} (account {})  {} – {}",
            inv["number"].as_str().unwrap_or("?"),
            inv["customer"].as_str().unwrap_or("?"),
            inv["account"].as_str().unwrap_or("?"),
            inv["period_start"].as_str().unwrap_or(""),
            inv["period_end"].as_str().unwrap_or("")
        );
        row(["item", "description", "quantity", "unit price", "amount"]);
        for l in inv["lines"].as_array().into_iter().flatten() {
            row(["item", "description", "quantity", "unit_price", "amount"].map(|k| text(&l[k])));
        }
        println!("    {:>86} {}", inv["total"].as_str().unwrap_or(""), inv["currency"].as_str().unwrap_or(""));
    }

    println!("\nLineage (GET /v1/lineage/documents/{{number}}):");
    for inv in &invoices {
        let number = inv["number"].as_str().unwrap_or_default();
        let lineage: serde_json::Value = http
            .get(format!("{base}/v1/lineage/documents/{number}"))
            .bearer_auth(DEMO_API_KEY)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        println!("\n  {number} ← document {}", lineage["document"]["id"].as_str().unwrap_or("?"));
        for c in lineage["contract_lines"].as_array().into_iter().flatten() {
            let events: Vec<&str> =
                c["event_ids"].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
            println!(
                "    {} ({} = {}) rated by {}@{} sha256 {}…",
                c["contract_line"].as_str().unwrap_or("?"),
                c["meter"].as_str().unwrap_or("?"),
                c["quantity"].as_str().unwrap_or("?"),
                c["rule"]["plugin"].as_str().unwrap_or("?"),
                c["rule"]["version"].as_str().unwrap_or("?"),
                &c["rule"]["sha256"].as_str().unwrap_or("")[..12.min(c["rule"]["sha256"].as_str().unwrap_or("").len())]
            );
            for ch in c["charges"].as_array().into_iter().flatten() {
                println!("      {}", ch["explain"].as_str().unwrap_or(""));
            }
            println!(
                "      {} hourly windows, {} events: {}{}",
                c["windows"].as_array().map_or(0, Vec::len),
                events.len(),
                events.iter().take(5).copied().collect::<Vec<_>>().join(", "),
                if events.len() > 5 { ", …" } else { "" }
            );
        }
    }
    gateway.shutdown().await;
    drop(sim);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
