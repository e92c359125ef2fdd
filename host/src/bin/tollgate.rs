//! The `tollgate` command: parse arguments, build the pieces, run them.

use anyhow::{Context, Result};
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
        /// The gateway's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        gateway: String,
        /// The tenant's API key.
        #[arg(long, env = "TOLLGATE_API_KEY")]
        api_key: String,
        /// Wait this long for every document to be posted, milliseconds.
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
    },
    /// Print the SHA-256 of an API key, for `tenants[].api_key_sha256`.
    HashKey { key: String },
    /// Run the demo: gateway, ERP simulator, sample usage, posted invoices.
    Demo {
        /// Directory of the bundled plugins (`cargo xtask build-plugins`).
        #[arg(long, default_value = "target/plugins")]
        plugins_dir: PathBuf,
    },
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
        Command::ClosePeriod { period, gateway, api_key, wait_ms } => {
            let url = format!("{}/v1/periods/{period}/close?wait_ms={wait_ms}", gateway.trim_end_matches('/'));
            let response = reqwest::Client::builder()
                .no_proxy()
                .build()?
                .post(&url)
                .bearer_auth(api_key)
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.context("reading the gateway's answer")?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            if !status.is_success() {
                anyhow::bail!("close-period failed: HTTP {status}");
            }
        }
        Command::HashKey { key } => println!("{}", tollgate::auth::hash_key(&key)),
        Command::Demo { plugins_dir } => tollgate::demo::run(plugins_dir).await?,
    }
    Ok(())
}
