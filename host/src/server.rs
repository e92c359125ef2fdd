//! Wires the stages together and runs them: the gRPC ingest service, the
//! HTTP admin API and the outbox worker, over one embedded store.

use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::connections::{Connections, Evict};
use crate::error::ApiError;
use crate::eventlog::{EventLog, LogOptions};
use crate::ingest::{Ingestor, grpc::IngestGrpc};
use crate::masterdata::{self, MasterData};
use crate::metering::MeterSpec;
use crate::plugins::registry::Registry;
use crate::plugins::{Limits, Runtime};
use crate::posting::Poster;
use crate::proto::ingest_service_server::IngestServiceServer;
use crate::rating::RegistryRefs;
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
    /// are stopped so the data directory can be opened again. Only in builds
    /// with the `test-switches` feature (tests).
    #[cfg(feature = "test-switches")]
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
/// starts serving, on the system clock.
pub async fn start(config: Config) -> Result<Gateway> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with the business time read from `clock` (see
/// [`crate::clock`]): every workflow of this gateway reads its "now" there.
pub async fn start_with_clock(config: Config, clock: SharedClock) -> Result<Gateway> {
    let tls = config.tls.as_ref().map(TlsMaterial::load).transpose()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store =
        Store::open(&config.data_dir).with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let runtime = Runtime::new(
        Limits::from(&config.plugins),
        Some(config.plugins.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("compiled"))),
    )
    .context("starting the plugin runtime")?;
    let p = &config.plugins;
    let registry = Registry::new(runtime)
        .with_quota(crate::plugins::registry::Quota {
            versions: p.quota_versions,
            bytes: p.quota_mib << 20,
            uploads_per_hour: p.quota_uploads_per_hour,
        })
        .with_residency(crate::plugins::registry::Residency {
            max_bytes: p.loaded_mib << 20,
            idle: std::time::Duration::from_secs(p.unload_idle_secs),
        });
    let n = registry.load_bundled(&config.plugins.bundled_dir)?;
    let uploaded = registry.load_uploaded(&store)?;
    tracing::info!(plugins = uploaded, "uploaded plugins loaded");
    tracing::info!(plugins = n, dir = %config.plugins.bundled_dir.display(), "bundled plugins loaded");

    let migrated =
        masterdata::migrate_unversioned(&store, clock.now()).await.context("versioning stored master data")?;
    if migrated > 0 {
        tracing::info!(tenants = migrated, "master data stored before versioning imported as versions since always");
    }
    let log =
        EventLog::open(store.eventlog.clone(), log_options(&config, clock.clone())).context("opening the event log")?;
    for t in &config.tenants {
        if let Some(file) = &t.meters_file {
            create_meters(&log, &t.id, file, clock.now()).await?;
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
            let now = clock.now();
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
    let poster =
        Poster::new(store.clone(), registry.clone(), config.erp_targets.clone(), config.posting.clone(), clock.clone());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let grpc_listener =
        TcpListener::bind(config.grpc_listen).await.with_context(|| format!("binding {}", config.grpc_listen))?;
    let http_listener =
        TcpListener::bind(config.http_listen).await.with_context(|| format!("binding {}", config.http_listen))?;
    let (grpc_addr, http_addr) = (grpc_listener.local_addr()?, http_listener.local_addr()?);

    let mut tasks = Vec::new();
    let ingestor = Ingestor::new(log.clone());
    let ingest = IngestGrpc::new(ingestor.clone(), auth.clone(), clock.clone());
    let mut rx = shutdown_rx.clone();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<IngestServiceServer<IngestGrpc>>().await;
    // Reflection in both versions: `grpc.reflection.v1`, and `v1alpha`,
    // which many clients (grpcio-reflection, older grpcurl) still speak only.
    let reflecting = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflecting().build_v1().context("building the gRPC reflection service")?;
    let reflection_alpha = reflecting().build_v1alpha().context("building the gRPC reflection service (v1alpha)")?;
    let c = &config.connections;
    let open_files = crate::connections::raise_open_file_limit();
    let max_connections = crate::connections::bound_under(c.max_connections, open_files);
    if max_connections < c.max_connections {
        tracing::warn!(
            configured = c.max_connections,
            bound = max_connections,
            open_files,
            "connections.max_connections lowered to fit the open-file limit"
        );
    }
    let header_read = std::time::Duration::from_millis(c.header_read_timeout_ms);
    let mut grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_millis(c.grpc_keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_millis(c.grpc_keepalive_timeout_ms)));
    if let Some(tls) = &tls {
        grpc = grpc.tls_config(tls.grpc()).context("configuring TLS for the gRPC listener")?;
    }
    // Acks are small writes: without TCP_NODELAY, Nagle's algorithm holds
    // one back until the client's delayed ACK (40 ms on Linux) arrives
    // (measured in BENCHMARKS.md, ingest).
    let grpc_connections = Connections::new("grpc", max_connections, header_read, Evict::Silent);
    let incoming = {
        use tokio_stream::StreamExt;
        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)).filter_map(move |r| match r
        {
            Ok(tcp) => grpc_connections.admit(tcp).map(Ok),
            Err(e) => Some(Err(e)),
        })
    };
    tasks.push(tokio::spawn(async move {
        let result = grpc
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(
                IngestServiceServer::new(ingest).max_decoding_message_size(crate::ingest::MAX_GRPC_MESSAGE_BYTES),
            )
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
            crate::lookup::MasterDataCache::load_all(&store, clock.clone())
                .context("indexing master data for look-ups")?,
        ),
        clock: clock.clone(),
    });
    let http_connections = Connections::new("http", max_connections, header_read, Evict::Idle);
    let http_tls = tls.as_ref().map(TlsMaterial::http_acceptor);
    tasks.push(tokio::spawn(serve_http(
        http_listener,
        http_tls,
        app,
        http_connections,
        header_read,
        shutdown_rx.clone(),
    )));
    if let Some(schedule) = config.posting.close_schedule.clone() {
        let scheduler = crate::posting::schedule::Scheduler {
            store: store.clone(),
            registry: registry.clone(),
            targets: Arc::new(config.erp_targets.clone()),
            log: log.clone(),
            poster: poster.clone(),
            tenants: config.tenants.iter().map(|t| t.id.clone()).collect(),
            schedule,
            clock: clock.clone(),
        };
        tasks.push(tokio::spawn(scheduler.run(shutdown_rx.clone())));
    }
    tasks.push(tokio::spawn({
        // Uploaded plugins not called for a while leave memory.
        let (registry, mut stop) = (registry.clone(), shutdown_rx.clone());
        async move {
            let mut every = tokio::time::interval(registry.idle_check_every());
            loop {
                tokio::select! {
                    _ = every.tick() => { registry.unload_idle(); }
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
    }));
    tasks.push(tokio::spawn(poster.run(shutdown_rx)));

    tracing::info!(%grpc_addr, %http_addr, tls = config.tls.is_some(), "tollgate serving");
    Ok(Gateway { grpc_addr, http_addr, shutdown, tasks, log })
}

/// Creates a tenant's meters from a JSON file (an array of meter
/// definitions, as `POST /v1/meters` takes them); meters that exist with
/// the same definition are kept, a different definition stops start-up.
async fn create_meters(
    log: &EventLog,
    tenant: &str,
    file: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let context = || format!("tenant {tenant}: {}", file.display());
    let text = std::fs::read(file).with_context(context)?;
    let specs: Vec<MeterSpec> = serde_json::from_slice(&text).with_context(context)?;
    for (i, spec) in specs.into_iter().enumerate() {
        let meter = spec
            .validate(now)
            .map_err(|e| anyhow::anyhow!("{}: [{i}].{}: {}", context(), e.field.unwrap_or_default(), e.message))?;
        let (meter, created) = log.create_meter(tenant, meter).await.with_context(context)?;
        if created {
            tracing::info!(%tenant, meter = %meter.id, "meter created");
        }
    }
    Ok(())
}

/// Serves the admin API: every accepted connection is tracked
/// ([`Connections`]: the bound, the first-bytes deadline, room for
/// newcomers), has its TLS handshake (if any) in its own task, and is
/// served as HTTP/1.1 by hyper with a header read timeout. On `stop`, no
/// new connection is taken and open ones finish what they serve.
async fn serve_http(
    listener: TcpListener,
    tls: Option<(tokio_rustls::TlsAcceptor, std::time::Duration)>,
    app: axum::Router,
    connections: Arc<Connections>,
    header_read: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut open = tokio::task::JoinSet::new();
    let (drain, draining) = watch::channel(false);
    loop {
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            Some(_) = open.join_next(), if !open.is_empty() => {}
            accepted = listener.accept() => {
                let mut tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Resource errors (e.g. too many open files) back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                no_delay(&mut tcp);
                let Some(tracked) = connections.admit(tcp) else { continue };
                let service = Api { router: app.clone(), conn: tracked.state() };
                let (tls, draining) = (tls.clone(), draining.clone());
                open.spawn(async move {
                    match tls {
                        None => serve_connection(tracked, service, header_read, draining).await,
                        Some((acceptor, timeout)) => match tokio::time::timeout(timeout, acceptor.accept(tracked)).await {
                            Ok(Ok(stream)) => serve_connection(stream, service, header_read, draining).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        },
                    }
                });
            }
        }
    }
    let _ = drain.send(true);
    while open.join_next().await.is_some() {}
}

/// One HTTP/1.1 connection, until it closes or the server drains.
async fn serve_connection<I>(io: I, service: Api, header_read: std::time::Duration, mut draining: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read).keep_alive(true);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        }
        _ = async { let _ = draining.wait_for(|d| *d).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The admin API as one connection's hyper service: counts the requests in
/// progress on the connection (an idle one may make room for a newcomer).
#[derive(Clone)]
struct Api {
    router: axum::Router,
    conn: Arc<crate::connections::ConnState>,
}

impl hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for Api {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        struct InFlight(Arc<crate::connections::ConnState>);
        impl Drop for InFlight {
            fn drop(&mut self) {
                self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        self.conn.in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let guard = InFlight(self.conn.clone());
        let mut router = self.router.clone();
        Box::pin(async move {
            let _in_flight = guard;
            tower_service::Service::call(&mut router, req).await
        })
    }
}

/// Sets TCP_NODELAY on an accepted connection: responses are sent as they
/// are written, not held back by Nagle's algorithm until the client's
/// delayed ACK (40 ms on Linux).
pub(crate) fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "setting TCP_NODELAY");
    }
}

fn log_options(config: &Config, clock: SharedClock) -> LogOptions {
    let mut o = LogOptions::new(config.data_dir.join("wal"), clock);
    o.segment_bytes = config.ingest.wal_segment_mib << 20;
    o.max_unindexed_events = config.ingest.max_unindexed_events;
    o.dedup_retention = config.ingest.dedup_retention_days.map(|d| chrono::Duration::days(i64::from(d)));
    #[cfg(feature = "test-switches")]
    {
        use crate::eventlog::{Durability, UNSAFE_ACK_BEFORE_WRITE_ENV};
        if std::env::var(UNSAFE_ACK_BEFORE_WRITE_ENV).is_ok_and(|v| v == "1") {
            tracing::warn!(
                "{UNSAFE_ACK_BEFORE_WRITE_ENV}=1: events are acknowledged BEFORE they are written; a crash loses \
                 them. This exists for the crash test only"
            );
            o.durability = Durability::UnsafeAckBeforeWrite;
        }
    }
    o
}
