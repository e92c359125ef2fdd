//! Wires the stages together and runs them: the gRPC ingest service, the
//! HTTP admin API and the outbox worker, over one embedded store.

use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::config::Config;
use crate::error::ApiError;
use crate::eventlog::{Durability, EventLog, LogOptions, UNSAFE_ACK_BEFORE_WRITE_ENV};
use crate::ingest::{Ingestor, grpc::IngestGrpc};
use crate::masterdata::{self, MasterData};
use crate::metering::MeterSpec;
use crate::posting::Poster;
use crate::proto::ingest_service_server::IngestServiceServer;
use crate::rating::registry::{Registry, RegistryRefs};
use crate::rating::runtime::{Limits, Runtime};
use crate::store::Store;
use crate::tls::TlsMaterial;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running gateway.
pub struct Gateway {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    log: EventLog,
}

impl Gateway {
    /// The event log (for operations such as [`EventLog::hold_indexing`]).
    pub fn event_log(&self) -> &EventLog {
        &self.log
    }

    /// Stops accepting, lets in-flight requests finish, stops the worker.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.log.shutdown().await;
    }

    /// Stops at once, as a crash would, for crash tests: every task is
    /// aborted where it stands (an ERP request in flight is dropped
    /// unanswered, nothing after it is recorded); the event log's threads
    /// are stopped so the data directory can be opened again.
    pub async fn kill(self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.log.shutdown().await;
    }

    /// Runs until Ctrl-C / SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = ctrl_c => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Opens the store, loads plugins and master data, binds both listeners and
/// starts serving.
pub async fn start(config: Config) -> Result<Gateway> {
    let tls = config.tls.as_ref().map(TlsMaterial::load).transpose()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store =
        Store::open(&config.data_dir).with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let runtime = Runtime::new(
        Limits::from(&config.plugins),
        Some(config.plugins.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("compiled"))),
    )
    .context("starting the plugin runtime")?;
    let registry = Registry::new(runtime);
    let n = registry.load_bundled(&config.plugins.bundled_dir)?;
    let uploaded = registry.load_uploaded(&store)?;
    tracing::info!(plugins = uploaded, "uploaded plugins loaded");
    tracing::info!(plugins = n, dir = %config.plugins.bundled_dir.display(), "bundled plugins loaded");

    let migrated = masterdata::migrate_unversioned(&store).await.context("versioning stored master data")?;
    if migrated > 0 {
        tracing::info!(tenants = migrated, "master data stored before versioning imported as versions since always");
    }
    let log = EventLog::open(store.eventlog.clone(), log_options(&config)).context("opening the event log")?;
    for t in &config.tenants {
        if let Some(file) = &t.meters_file {
            create_meters(&log, &t.id, file).await?;
        }
        if let Some(file) = &t.masterdata_file {
            let text = std::fs::read(file).with_context(|| format!("tenant {}: reading {}", t.id, file.display()))?;
            let data: MasterData =
                serde_json::from_slice(&text).with_context(|| format!("tenant {}: {}", t.id, file.display()))?;
            let refs =
                RegistryRefs { tenant: &t.id, registry: &registry, targets: &config.erp_targets, meters: log.meters() };
            let in_file = |e: ApiError| {
                anyhow::anyhow!("tenant {}: {}: {}: {}", t.id, file.display(), e.field.unwrap_or_default(), e.message)
            };
            data.validate(&refs).map_err(in_file)?;
            // What the file changes takes effect now; what is new to the
            // master data applies since always.
            let now = chrono::Utc::now();
            let written = masterdata::write(&store, &t.id, &refs, now, |h| {
                let mut changes =
                    h.diff(&data, now, masterdata::history::SINCE_ALWAYS, now).map_err(ApiError::internal)?;
                masterdata::snap_to_windows(&mut changes, h, &refs);
                Ok(changes)
            })
            .await
            .map_err(in_file)?;
            tracing::info!(tenant = %t.id, file = %file.display(), versions = written.versions.len(), "master data loaded");
        }
    }

    let auth = Arc::new(Auth::new(&config.tenants, &config.admin_api_key_sha256, Some(store.clone())));
    let poster = Poster::new(store.clone(), registry.clone(), config.erp_targets.clone(), config.posting.clone());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let grpc_listener =
        TcpListener::bind(config.grpc_listen).await.with_context(|| format!("binding {}", config.grpc_listen))?;
    let http_listener =
        TcpListener::bind(config.http_listen).await.with_context(|| format!("binding {}", config.http_listen))?;
    let (grpc_addr, http_addr) = (grpc_listener.local_addr()?, http_listener.local_addr()?);

    let mut tasks = Vec::new();
    let ingestor = Ingestor::new(log.clone());
    let ingest = IngestGrpc::new(ingestor.clone(), auth.clone());
    let mut rx = shutdown_rx.clone();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<IngestServiceServer<IngestGrpc>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the gRPC reflection service")?;
    let mut grpc = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        grpc = grpc.tls_config(tls.grpc()).context("configuring TLS for the gRPC listener")?;
    }
    // Acks are small writes: without TCP_NODELAY, Nagle's algorithm holds
    // one back until the client's delayed ACK (40 ms on Linux) arrives
    // (measured in BENCHMARKS.md, ingest).
    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    tasks.push(tokio::spawn(async move {
        let result = grpc
            .add_service(health)
            .add_service(reflection)
            .add_service(IngestServiceServer::new(ingest))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }));

    let app = api::router(AppState {
        store: store.clone(),
        auth,
        registry: registry.clone(),
        targets: Arc::new(config.erp_targets.clone()),
        poster: poster.clone(),
        ingestor,
        masterdata: Arc::new(
            crate::lookup::MasterDataCache::load_all(&store).context("indexing master data for look-ups")?,
        ),
    });
    let http_listener = match &tls {
        Some(t) => HttpListener::Tls(t.http_listener(http_listener)),
        None => HttpListener::Plain(axum::serve::ListenerExt::tap_io(http_listener, no_delay)),
    };
    let mut rx = shutdown_rx.clone();
    let stop = async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tasks.push(tokio::spawn(async move {
        let result = match http_listener {
            HttpListener::Tls(listener) => axum::serve(listener, app).with_graceful_shutdown(stop).await,
            HttpListener::Plain(listener) => axum::serve(listener, app).with_graceful_shutdown(stop).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    if let Some(schedule) = config.posting.close_schedule.clone() {
        let scheduler = crate::posting::schedule::Scheduler {
            store: store.clone(),
            registry: registry.clone(),
            targets: Arc::new(config.erp_targets.clone()),
            log: log.clone(),
            poster: poster.clone(),
            tenants: config.tenants.iter().map(|t| t.id.clone()).collect(),
            schedule,
        };
        tasks.push(tokio::spawn(scheduler.run(shutdown_rx.clone())));
    }
    tasks.push(tokio::spawn(poster.run(shutdown_rx)));

    tracing::info!(%grpc_addr, %http_addr, tls = config.tls.is_some(), "tollgate serving");
    Ok(Gateway { grpc_addr, http_addr, shutdown, tasks, log })
}

/// Creates a tenant's meters from a JSON file (an array of meter
/// definitions, as `POST /v1/meters` takes them); meters that exist with
/// the same definition are kept, a different definition stops start-up.
async fn create_meters(log: &EventLog, tenant: &str, file: &std::path::Path) -> anyhow::Result<()> {
    let context = || format!("tenant {tenant}: {}", file.display());
    let text = std::fs::read(file).with_context(context)?;
    let specs: Vec<MeterSpec> = serde_json::from_slice(&text).with_context(context)?;
    for (i, spec) in specs.into_iter().enumerate() {
        let meter = spec
            .validate(chrono::Utc::now())
            .map_err(|e| anyhow::anyhow!("{}: [{i}].{}: {}", context(), e.field.unwrap_or_default(), e.message))?;
        let (meter, created) = log.create_meter(tenant, meter).await.with_context(context)?;
        if created {
            tracing::info!(%tenant, meter = %meter.id, "meter created");
        }
    }
    Ok(())
}

enum HttpListener {
    Plain(axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)>),
    Tls(crate::tls::TlsListener),
}

/// Sets TCP_NODELAY on an accepted connection: responses are sent as they
/// are written, not held back by Nagle's algorithm until the client's
/// delayed ACK (40 ms on Linux).
pub(crate) fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "setting TCP_NODELAY");
    }
}

fn log_options(config: &Config) -> LogOptions {
    let mut o = LogOptions::new(config.data_dir.join("wal"));
    o.segment_bytes = config.ingest.wal_segment_mib << 20;
    o.max_unindexed_events = config.ingest.max_unindexed_events;
    o.dedup_retention = config.ingest.dedup_retention_days.map(|d| chrono::Duration::days(i64::from(d)));
    if std::env::var(UNSAFE_ACK_BEFORE_WRITE_ENV).is_ok_and(|v| v == "1") {
        tracing::warn!(
            "{UNSAFE_ACK_BEFORE_WRITE_ENV}=1: events are acknowledged BEFORE they are written; a crash loses them. \
             This exists for the crash test only"
        );
        o.durability = Durability::UnsafeAckBeforeWrite;
    }
    o
}
