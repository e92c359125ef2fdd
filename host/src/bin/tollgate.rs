//! The `tollgate` command: parse arguments, build the pieces, run them.

use anyhow::{Context, Result};

/// mimalloc rather than the system allocator: a rating call allocates for
/// every string it hands to or takes from a plugin, and the fresh-instance
/// call measured 5 % faster with it (BENCHMARKS.md). The benchmarks use the
/// same allocator, so they measure what this binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "Usage-to-ERP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file.
        #[arg(long, short, default_value = "tollgate.toml")]
        config: PathBuf,
    },
    /// Close a billing period on a running gateway and post its invoices.
    ClosePeriod {
        /// The period, YYYY-MM.
        period: String,
        #[command(flatten)]
        at: GatewayArgs,
        /// Wait this long for every document to be posted, milliseconds.
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
    },
    /// Manage API keys on a running gateway (stored hashed; a new key is
    /// printed once).
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Print the SHA-256 of an API key, for `tenants[].api_key_sha256`.
    HashKey { key: String },
    /// Work with plugins: run golden fixtures, upload to a gateway.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the demo: gateway, ERP simulator, sample usage, posted invoices.
    Demo {
        /// Directory of the bundled plugins (`cargo xtask build-plugins`).
        #[arg(long, default_value = "target/plugins")]
        plugins_dir: PathBuf,
        /// The ERP simulator program (`tollgate-erp-sim`); by default the
        /// one beside this program.
        #[arg(long)]
        erp_sim: Option<PathBuf>,
    },
}

/// Where the gateway is and the key to call it with.
#[derive(clap::Args)]
struct GatewayArgs {
    /// The gateway's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// A tenant's API key, or the operator key.
    #[arg(long, env = "TOLLGATE_API_KEY")]
    api_key: String,
    /// PEM file of a CA to trust besides the system's, for a gateway
    /// serving TLS with a private certificate.
    #[arg(long, env = "TOLLGATE_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

impl GatewayArgs {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.trim_end_matches('/'))
    }

    fn client(&self) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("--ca-cert: reading {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-cert: {} is not a PEM certificate", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(builder.build()?)
    }
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key; prints it once, with its id.
    Create {
        /// What the key is for, e.g. "billing-service".
        #[arg(long)]
        name: String,
        /// The tenant (needed with the operator key).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        at: GatewayArgs,
    },
    /// List keys (ids, names, dates; never secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        at: GatewayArgs,
    },
    /// Revoke a key by its id.
    Revoke {
        id: String,
        #[command(flatten)]
        at: GatewayArgs,
    },
}

/// Sends a request to the gateway, prints its JSON answer, fails on an error status.
async fn call(request: reqwest::RequestBuilder, what: &str) -> Result<()> {
    let response = request.send().await.with_context(|| format!("{what}: sending"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the gateway's answer")?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    if !status.is_success() {
        anyhow::bail!("{what} failed: HTTP {status}");
    }
    Ok(())
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run a rater's golden fixtures (`<case>.input.json` → `<case>.expected.json`)
    /// with the production engine configuration and limits.
    Test {
        /// The component (`.wasm`).
        plugin: PathBuf,
        /// Directory of fixtures.
        fixtures: PathBuf,
        /// Rewrite the expected files from the plugin's output.
        #[arg(long)]
        bless: bool,
        /// Take the limits from this gateway configuration instead of the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Upload a component to a running gateway.
    Push {
        /// The component (`.wasm`).
        plugin: PathBuf,
        #[arg(long)]
        name: String,
        /// Semver version; versions are immutable.
        #[arg(long)]
        version: String,
        /// rater or erp-mapper.
        #[arg(long, default_value = "rater")]
        kind: String,
        #[command(flatten)]
        at: GatewayArgs,
    },
}

/// Runs fixtures and prints a report; false when any case failed.
fn plugin_test(
    plugin: &std::path::Path,
    fixtures: &std::path::Path,
    bless: bool,
    config: Option<PathBuf>,
) -> Result<bool> {
    use tollgate::plugins::fixtures::{self, Outcome};
    use tollgate::plugins::{Kind, Limits, Runtime};
    let limits = match config {
        Some(path) => Limits::from(&tollgate::config::Config::load(&path)?.plugins),
        None => Limits::default(),
    };
    let runtime = Runtime::new(limits, None)?;
    let bytes = std::fs::read(plugin).with_context(|| format!("reading {}", plugin.display()))?;
    // A rater, or else an ERP mapper: the component's world decides.
    let version = semver::Version::new(0, 0, 0);
    let loaded = runtime
        .load("under-test", version.clone(), Kind::Rater, &bytes)
        .or_else(|rater_err| runtime.load("under-test", version, Kind::ErpMapper, &bytes).map_err(|_| rater_err))
        .map_err(|e| anyhow::anyhow!("{}: {}: {e}", plugin.display(), e.code()))?;
    if tollgate::plugins::is_deprecated(loaded.world()) {
        println!(
            "note: {} implements {}, which is deprecated: a gateway refuses new uploads of it (see wit/README.md)",
            plugin.display(),
            loaded.world()
        );
    }
    let reports = fixtures::run(&runtime, &loaded, fixtures, bless)?;
    let width = reports.iter().map(|r| r.name.len()).max().unwrap_or(0).max(7);
    println!("{:<width$}  {:<7}  fuel used / budget", "fixture", "result");
    let (mut passed, mut failed) = (0, 0);
    for r in &reports {
        let share = r.fuel_used as f64 * 100.0 / r.fuel_budget.max(1) as f64;
        let fuel = format!("{} / {} ({share:.3} %)", r.fuel_used, r.fuel_budget);
        match &r.outcome {
            Outcome::Passed => {
                passed += 1;
                println!("{:<width$}  {:<7}  {fuel}", r.name, "ok");
            }
            Outcome::Blessed => {
                passed += 1;
                println!("{:<width$}  {:<7}  {fuel}", r.name, "blessed");
            }
            Outcome::Failed(diffs) => {
                failed += 1;
                println!("{:<width$}  {:<7}  {fuel}", r.name, "FAILED");
                for d in diffs {
                    println!("    {d}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Demo { .. }) { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve { config } => {
            let config = tollgate::config::Config::load(&config)?;
            tollgate::server::start(config).await?.run_until_signal().await;
        }
        Command::ClosePeriod { period, at, wait_ms } => {
            let url = at.url(&format!("/v1/periods/{period}/close?wait_ms={wait_ms}"));
            call(at.client()?.post(&url).bearer_auth(&at.api_key), "close-period").await?;
        }
        Command::ApiKey(cmd) => match cmd {
            ApiKeyCommand::Create { name, tenant, at } => {
                let body = serde_json::json!({ "name": name, "tenant": tenant });
                let request = at.client()?.post(at.url("/v1/api-keys")).bearer_auth(&at.api_key).json(&body);
                call(request, "api-key create").await?
            }
            ApiKeyCommand::List { tenant, at } => {
                let mut r = at.client()?.get(at.url("/v1/api-keys")).bearer_auth(&at.api_key);
                if let Some(t) = tenant {
                    r = r.query(&[("tenant", t)]);
                }
                call(r, "api-key list").await?
            }
            ApiKeyCommand::Revoke { id, at } => {
                let url = at.url(&format!("/v1/api-keys/{id}"));
                call(at.client()?.delete(url).bearer_auth(&at.api_key), "api-key revoke").await?
            }
        },
        Command::HashKey { key } => println!("{}", tollgate::auth::hash_key(&key)),
        Command::Demo { plugins_dir, erp_sim } => {
            let beside = || -> anyhow::Result<PathBuf> {
                let exe = std::env::current_exe().context("finding this program")?;
                Ok(exe.with_file_name(format!("tollgate-erp-sim{}", std::env::consts::EXE_SUFFIX)))
            };
            let erp_sim = match erp_sim {
                Some(p) => p,
                None => beside()?,
            };
            tollgate::demo::run(plugins_dir, erp_sim).await?
        }
        Command::Plugin(PluginCommand::Test { plugin, fixtures, bless, config }) => {
            if !plugin_test(&plugin, &fixtures, bless, config)? {
                std::process::exit(1);
            }
        }
        Command::Plugin(PluginCommand::Push { plugin, name, version, kind, at }) => {
            let bytes = std::fs::read(&plugin).with_context(|| format!("reading {}", plugin.display()))?;
            let request = at
                .client()?
                .post(at.url("/v1/plugins"))
                .query(&[("name", &name), ("version", &version), ("kind", &kind)])
                .bearer_auth(&at.api_key)
                .header("content-type", "application/wasm")
                .body(bytes);
            call(request, "push").await?;
        }
    }
    Ok(())
}
