//! Test support: a gateway and an ERP simulator on 127.0.0.1, driven only
//! through their public interfaces (gRPC, HTTP).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use tollgate::config::{Config, ErpTargetConfig, PluginsConfig, PostingConfig, TenantConfig};
use tollgate::proto::ingest_service_client::IngestServiceClient;
use tollgate::proto::{IngestRequest, IngestResponse, UsageEvent};
use tollgate::server::Gateway;

pub mod tryton;

pub const API_KEY: &str = "test-key-acme";
pub const OTHER_API_KEY: &str = "test-key-umbrella";
/// The operator key: manages API keys of every tenant.
pub const ADMIN_KEY: &str = "test-key-operator";

/// The bundled plugins built by `cargo xtask build-plugins`.
pub fn plugins_dir() -> PathBuf {
    let dir = std::env::var_os("TOLLGATE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    assert!(
        dir.join("plugins.json").exists(),
        "no bundled plugins in {}: run the tests with `cargo xtask test` (it builds them)",
        dir.display()
    );
    dir
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "tollgate-test-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The ERP simulator, in this process, reached over HTTP.
pub struct Erp {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Erp {
    pub async fn start() -> Result<Erp> {
        Self::start_at("127.0.0.1:0".parse()?).await
    }

    /// On a given address (e.g. one a target already points at).
    pub async fn start_at(addr: std::net::SocketAddr) -> Result<Erp> {
        Self::serve(addr, tollgate_erp_sim::Sim::new()).await
    }

    /// An ERP that numbered `n` generic invoices before this test (they are
    /// not in [`Erp::invoices`]).
    pub async fn start_numbered_after(n: usize) -> Result<Erp> {
        Self::serve("127.0.0.1:0".parse()?, tollgate_erp_sim::Sim::numbered_after(n)).await
    }

    async fn serve(addr: std::net::SocketAddr, sim: tollgate_erp_sim::Sim) -> Result<Erp> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = sim.serve(listener).await;
        });
        Ok(Erp { base, task })
    }

    pub async fn invoices(&self) -> Result<Vec<serde_json::Value>> {
        let v: serde_json::Value = http().get(format!("{}/generic/invoices", self.base)).send().await?.json().await?;
        Ok(v["invoices"].as_array().cloned().unwrap_or_default())
    }

    pub async fn inject(&self, faults: serde_json::Value) -> Result<()> {
        http().post(format!("{}/_sim/faults", self.base)).json(&faults).send().await?.error_for_status()?;
        Ok(())
    }

    /// Closes accounting periods (`YYYY-MM`) in the ERP.
    pub async fn close_periods(&self, periods: &[&str]) -> Result<()> {
        http().put(format!("{}/_sim/closed-periods", self.base)).json(&periods).send().await?.error_for_status()?;
        Ok(())
    }

    pub async fn stats(&self) -> Result<serde_json::Value> {
        Ok(http().get(format!("{}/_sim/stats", self.base)).send().await?.json().await?)
    }
}

impl Drop for Erp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("http client")
}

/// The master data of the tests: tenant `acme`, two customers, graduated tiers.
pub fn masterdata() -> serde_json::Value {
    serde_json::json!({
        "legal_entities": [
            { "id": "acme-eu", "name": "Acme EU", "currency": "EUR", "erp_company": "1000", "erp_target": "sim" }
        ],
        "customers": [
            { "id": "globex", "name": "Globex", "legal_entity": "acme-eu", "erp_account": "C-1" },
            { "id": "initech", "name": "Initech", "legal_entity": "acme-eu", "erp_account": "C-2" }
        ],
        "skus": [ { "id": "API", "name": "API calls", "erp_item": "ITEM-API" } ],
        "contract_lines": [
            {
                "id": "globex-api", "customer": "globex", "meter": "api_calls", "sku": "API",
                "rater": { "plugin": "graduated-tiers", "version": "0.1.0" }, "currency": "EUR",
                "params": { "tiers": [
                    { "up_to": "100", "unit_price": "0.10" },
                    { "up_to": null, "unit_price": "0.0125" }
                ] }
            },
            {
                "id": "initech-api", "customer": "initech", "meter": "api_calls", "sku": "API",
                "rater": { "plugin": "graduated-tiers" }, "currency": "EUR",
                "params": { "tiers": [ { "up_to": null, "unit_price": "0.333" } ], "rounding": { "scale": 2, "mode": "half_even" } }
            }
        ]
    })
}

/// The meters of the tests: `api_calls` and `fees` sum `quantity` per hour.
pub fn meters() -> serde_json::Value {
    serde_json::json!([
        { "id": "api_calls", "event_type": "api_calls", "aggregation": "sum" },
        { "id": "fees", "event_type": "fees", "aggregation": "sum" }
    ])
}

/// A running gateway with its data directory.
pub struct Env {
    pub gateway: Option<Gateway>,
    pub config: Config,
    pub base: String,
    pub grpc: String,
    /// The gateway's business time (the system clock unless a test sets one).
    pub clock: tollgate::clock::SharedClock,
    _dir: std::sync::Arc<TempDir>,
}

impl Env {
    /// Starts a gateway posting to `erp`, with the test master data for `acme`.
    pub async fn start(erp: &Erp) -> Result<Env> {
        Self::start_configured(erp, |_| {}).await
    }

    /// [`Env::start`] with changes to the configuration.
    pub async fn start_configured(erp: &Erp, change: impl FnOnce(&mut Config)) -> Result<Env> {
        Self::start_at(&erp.base, change).await
    }

    /// [`Env::start_configured`] with the `sim` target at `erp_base`.
    pub async fn start_at(erp_base: &str, change: impl FnOnce(&mut Config)) -> Result<Env> {
        Self::start_with_clock(erp_base, change, std::sync::Arc::new(tollgate::clock::SystemClock)).await
    }

    /// [`Env::start_at`] with the gateway's business time read from `clock`.
    pub async fn start_with_clock(
        erp_base: &str,
        change: impl FnOnce(&mut Config),
        clock: tollgate::clock::SharedClock,
    ) -> Result<Env> {
        let dir = std::sync::Arc::new(TempDir::new("gw"));
        let md = dir.0.join("masterdata.json");
        std::fs::write(&md, serde_json::to_vec(&masterdata())?)?;
        let meters_file = dir.0.join("meters.json");
        std::fs::write(&meters_file, serde_json::to_vec(&meters())?)?;
        let config = Config {
            data_dir: dir.0.join("data"),
            grpc_listen: "127.0.0.1:0".parse()?,
            http_listen: "127.0.0.1:0".parse()?,
            tls: None,
            plugins: PluginsConfig {
                bundled_dir: plugins_dir(),
                cache_dir: Some(plugins_dir().join("../tollgate-test-cache")),
                ..PluginsConfig::default()
            },
            posting: PostingConfig { backoff_initial_ms: 20, backoff_max_ms: 200, poll_ms: 20, close_schedule: None },
            ingest: Default::default(),
            connections: Default::default(),
            admin_api_key_sha256: vec![tollgate::auth::hash_key(ADMIN_KEY)],
            tenants: vec![
                TenantConfig {
                    id: "acme".into(),
                    api_key_sha256: vec![tollgate::auth::hash_key(API_KEY)],
                    meters_file: Some(meters_file),
                    masterdata_file: Some(md),
                },
                TenantConfig {
                    id: "umbrella".into(),
                    api_key_sha256: vec![tollgate::auth::hash_key(OTHER_API_KEY)],
                    meters_file: None,
                    masterdata_file: None,
                },
            ],
            erp_targets: BTreeMap::from([(
                "sim".to_string(),
                ErpTargetConfig { timeout_ms: 2_000, ..ErpTargetConfig::new(erp_base.to_string(), "generic-json") },
            )]),
        };
        let mut config = config;
        change(&mut config);
        Self::with_config(config, dir, clock).await
    }

    async fn with_config(
        config: Config,
        dir: std::sync::Arc<TempDir>,
        clock: tollgate::clock::SharedClock,
    ) -> Result<Env> {
        config.validate()?;
        let gateway = tollgate::server::start_with_clock(config.clone(), clock.clone()).await?;
        Ok(Env {
            base: format!("http://{}", gateway.http_addr),
            grpc: format!("http://{}", gateway.grpc_addr),
            gateway: Some(gateway),
            config,
            clock,
            _dir: dir,
        })
    }

    /// Stops the gateway and starts it again on the same data directory.
    pub async fn restart(self) -> Result<Env> {
        self.stop_and_start(false).await
    }

    /// Kills the gateway mid-work ([`Gateway::kill`]) and starts it again on
    /// the same data directory.
    pub async fn kill_and_restart(self) -> Result<Env> {
        self.stop_and_start(true).await
    }

    async fn stop_and_start(mut self, kill: bool) -> Result<Env> {
        if let Some(g) = self.gateway.take() {
            if kill { g.kill().await } else { g.shutdown().await }
        }
        let (config, dir, clock) = (self.config.clone(), self._dir.clone(), self.clock.clone());
        drop(self);
        // sled releases its file lock once its last handle is gone.
        for _ in 0..100 {
            match Self::with_config(config.clone(), dir.clone(), clock.clone()).await {
                Ok(env) => return Ok(env),
                Err(e) if format!("{e:#}").contains("lock") => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => return Err(e),
            }
        }
        bail!("the store stayed locked after shutdown")
    }

    pub async fn ingest_as(&self, key: Option<&str>, events: Vec<UsageEvent>) -> Result<IngestResponse, tonic::Status> {
        let mut client = IngestServiceClient::connect(self.grpc.clone())
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(IngestRequest { events });
        if let Some(k) = key {
            request.metadata_mut().insert("authorization", format!("Bearer {k}").parse().expect("ascii key"));
        }
        client.ingest(request).await.map(|r| r.into_inner())
    }

    pub async fn ingest(&self, events: Vec<UsageEvent>) -> Result<IngestResponse> {
        self.ingest_as(Some(API_KEY), events).await.context("ingest")
    }

    /// Closes `period` and waits (20 s at most) until every document is
    /// posted or rejected.
    pub async fn close(&self, period: &str) -> Result<serde_json::Value> {
        self.close_within(period, 20_000).await
    }

    /// [`Env::close`], waiting `wait_ms` at most.
    pub async fn close_within(&self, period: &str, wait_ms: u64) -> Result<serde_json::Value> {
        let r = http()
            .post(format!("{}/v1/periods/{period}/close?wait_ms={wait_ms}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        if !status.is_success() {
            bail!("close {period}: HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// A gateway whose legal entity posts, from 2025 on, to a target named
    /// after `mapper` at `erp`, with the given settings.
    pub async fn posting_to(erp: &Erp, mapper: &str, settings: &[(&str, &str)], timeout_ms: u64) -> Result<Env> {
        let settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::posting_to_base(&erp.base, mapper, settings, timeout_ms, masterdata()).await
    }

    /// [`Env::posting_to`] an ERP at `base`, with master data `md` (its
    /// legal entity's target is set to `mapper`).
    pub async fn posting_to_base(
        base: &str,
        mapper: &str,
        settings: Vec<(String, String)>,
        timeout_ms: u64,
        mut md: serde_json::Value,
    ) -> Result<Env> {
        let mut target = ErpTargetConfig::new(base.to_string(), mapper);
        target.timeout_ms = timeout_ms;
        target.settings = settings.into_iter().collect();
        if mapper == "tryton" {
            // The test's Tryton runs on SQLite: concurrent posts could share a number.
            target.max_concurrency = 1;
        }
        let name = mapper.to_string();
        let env = Self::start_at(base, move |c| {
            c.erp_targets.insert(name, target);
        })
        .await?;
        md["legal_entities"][0]["erp_target"] = mapper.into();
        let (status, body) = env.put("/v1/masterdata?effective_from=2025-01-01T00:00:00Z", &md).await;
        if status != 200 {
            bail!("master data for {mapper}: HTTP {status}: {body}");
        }
        Ok(env)
    }

    /// `POST /v1/periods/{period}/close` without waiting for the postings.
    pub async fn close_nowait(&self, period: &str) -> (u16, serde_json::Value) {
        self.post(&format!("/v1/periods/{period}/close"), &serde_json::Value::Null).await
    }

    /// Polls a document until its status is `want` (60 s at most).
    pub async fn wait_status(&self, id: &str, want: &str) -> serde_json::Value {
        let mut doc = serde_json::Value::Null;
        for _ in 0..3000 {
            doc = self.get(&format!("/v1/documents/{id}")).await.expect("GET /v1/documents/{id}").1;
            if doc["state"]["status"] == want {
                return doc;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("document {id} never became {want}: {doc:#}");
    }

    pub async fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let r = http().get(format!("{}{path}", self.base)).bearer_auth(API_KEY).send().await?;
        Ok((r.status().as_u16(), r.json().await?))
    }
}

/// A usage event at `time` (RFC 3339).
pub fn event(id: &str, customer: &str, meter: &str, time: &str, quantity: &str) -> UsageEvent {
    let t = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 time");
    UsageEvent {
        id: id.into(),
        customer: customer.into(),
        meter: meter.into(),
        time: Some(prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }),
        quantity: quantity.into(),
        dimensions: Default::default(),
        source: "test".into(),
        ..UsageEvent::default()
    }
}

/// An exact decimal from a JSON string field.
pub fn dec(v: &serde_json::Value) -> rust_decimal::Decimal {
    let s = v.as_str().unwrap_or_else(|| panic!("expected a decimal string, got {v}"));
    rust_decimal::Decimal::from_str_exact(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// A window's value as text: the exact decimal, or `empty` for a window no
/// event counts (its value is `null`).
pub fn value_text(v: &serde_json::Value) -> String {
    if v.is_null() { "empty".into() } else { dec(v).to_string() }
}

/// A test component built by `cargo xtask build-plugins` (`tests/components/`).
pub fn test_component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("TOLLGATE_TEST_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-components"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run the tests with `cargo xtask test`)", path.display()))
}

/// A bundled plugin's component bytes.
pub fn bundled_component(file: &str) -> Vec<u8> {
    std::fs::read(plugins_dir().join(file)).expect("bundled plugin")
}

impl Env {
    /// `POST /v1/plugins` as `key`.
    pub async fn upload(&self, key: &str, query: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
        let r = http()
            .post(format!("{}/v1/plugins?{query}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        (r.status().as_u16(), r.json().await.expect("json answer"))
    }

    /// `POST` JSON as the test tenant.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// `PUT` JSON as the test tenant.
    pub async fn put(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = http()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.expect("json answer"))
    }
}
