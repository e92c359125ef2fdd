//! `tollgate-erp-sim --listen 127.0.0.1:9090`: the ERP simulator as a
//! process. Its first line on stdout is `listening on http://ADDR` (with
//! `--listen 127.0.0.1:0`, the port it was given), for whoever started it.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "ERP simulator for Tollgate (loopback only)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs to stderr: stdout carries the address line only.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    tracing::info!(%addr, "ERP simulator listening");
    tollgate_erp_sim::Sim::new().serve(listener).await?;
    Ok(())
}
