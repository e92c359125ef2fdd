//! A real Tryton 8.2 ERP on 127.0.0.1, for the integration test of the
//! Tryton mapper.
//!
//! [`Tryton::start`] installs what it needs itself: a Python virtualenv
//! under `target/tryton-venv` with the pinned `trytond`,
//! `trytond-account-invoice` and `proteus` from PyPI (kept between runs),
//! then a fresh SQLite database in a temp dir (`trytond-admin`), the
//! company, chart of accounts, fiscal years, customers, product and payment
//! term (`tryton/setup.py`, printing their ids), and starts `trytond` on a
//! free port. Dropping it stops the server and removes the database.

use crate::{TempDir, http};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pinned versions (ERP-APIS.md: Tryton 8.2).
const PACKAGES: [&str; 3] = ["trytond==8.2.1", "trytond-account-invoice==8.2.0", "proteus==8.2.0"];
const USER: &str = "admin";
const PASSWORD: &str = "tollgate-admin-password";

pub struct Tryton {
    /// `http://127.0.0.1:<port>`: the gateway target's base URL.
    pub base: String,
    /// Record ids printed by `setup.py`: company, customers{globex,
    /// initech}, journal, receivable, revenue, unit, product, payment_term.
    pub ids: serde_json::Value,
    server: Child,
    _dir: TempDir,
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: could not start (is python3 installed?)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The virtualenv with the pinned packages, created or completed.
fn venv() -> Result<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tryton-venv");
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "creating the Tryton virtualenv")?;
    }
    run(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
        "installing Tryton from PyPI",
    )?;
    Ok(venv)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Tryton {
    /// A fresh Tryton with fiscal years (monthly periods) for `years`.
    pub async fn start(years: &[i32]) -> Result<Tryton> {
        let started = Instant::now();
        let venv = venv()?;
        let dir = TempDir::new("tryton");
        let port = free_port()?;
        let conf = dir.0.join("trytond.conf");
        std::fs::write(
            &conf,
            format!("[database]\nuri = sqlite://\npath = {}\n[web]\nlisten = 127.0.0.1:{port}\n", dir.0.display()),
        )?;
        std::fs::write(dir.0.join("erp.sqlite"), b"")?;
        let passfile = dir.0.join("password");
        std::fs::write(&passfile, PASSWORD)?;
        let bin = |name: &str| venv.join("bin").join(name);
        let admin = |args: &[&str], what: &str| {
            run(
                Command::new(bin("trytond-admin"))
                    .arg("-c")
                    .arg(&conf)
                    .args(["-d", "erp"])
                    .args(args)
                    .env("TRYTONPASSFILE", &passfile),
                what,
            )
        };
        admin(&["--all", "--email", "admin@example.com"], "creating the Tryton database")?;
        admin(&["-u", "account_invoice", "--activate-dependencies"], "activating account_invoice")?;
        let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/tryton/setup.py");
        let years: Vec<String> = years.iter().map(i32::to_string).collect();
        let ids = run(
            Command::new(bin("python")).arg(&setup).arg(&conf).args(&years).current_dir(&dir.0),
            "setting up the company, accounts and customers",
        )?;
        let ids: serde_json::Value = serde_json::from_str(&ids).with_context(|| format!("setup.py printed {ids:?}"))?;
        let log = std::fs::File::create(dir.0.join("trytond.log"))?;
        let server = Command::new(bin("trytond"))
            .arg("-c")
            .arg(&conf)
            .args(["-d", "erp"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting trytond")?;
        let tryton = Tryton { base: format!("http://127.0.0.1:{port}"), ids, server, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match tryton.rpc("model.res.user.search", serde_json::json!([[], 0, 1, null, {}])).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => return Err(e.context("trytond did not come up in 60 s")),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        eprintln!("tryton: ready on {} in {:.1} s", tryton.base, started.elapsed().as_secs_f64());
        Ok(tryton)
    }

    /// The settings of a gateway target posting here with the Tryton mapper.
    pub fn settings(&self) -> Vec<(String, String)> {
        let id = |k: &str| self.ids[k].to_string();
        vec![
            ("database".into(), "erp".into()),
            ("user".into(), USER.into()),
            ("password".into(), PASSWORD.into()),
            ("company".into(), id("company")),
            ("journal".into(), id("journal")),
            ("receivable_account".into(), id("receivable")),
            ("revenue_account".into(), id("revenue")),
            ("unit".into(), id("unit")),
            ("payment_term".into(), id("payment_term")),
        ]
    }

    /// One JSON-RPC call as the admin user; a Tryton error is an `Err`.
    pub async fn rpc(&self, method: &str, params: serde_json::Value) -> Result<serde_json::Value> {
        let body = serde_json::json!({ "id": 1, "method": method, "params": params });
        let r = http()
            .post(format!("{}/erp/rpc/", self.base))
            .basic_auth(USER, Some(PASSWORD))
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = r.status();
        let answer: serde_json::Value = r.json().await.with_context(|| format!("{method}: HTTP {status}"))?;
        if let Some(e) = answer.get("error") {
            bail!("{method}: Tryton error {e}");
        }
        Ok(answer["result"].clone())
    }

    /// The customer invoices whose reference is `reference`.
    pub async fn invoices(&self, reference: &str) -> Result<Vec<serde_json::Value>> {
        let domain = serde_json::json!([["reference", "=", reference], ["type", "=", "out"]]);
        let fields = ["number", "state", "untaxed_amount", "total_amount", "invoice_date", "party"];
        let found = self
            .rpc("model.account.invoice.search_read", serde_json::json!([domain, 0, null, null, fields, {}]))
            .await?;
        Ok(found.as_array().cloned().unwrap_or_default())
    }

    /// Every customer invoice.
    pub async fn all_invoices(&self) -> Result<Vec<serde_json::Value>> {
        let found = self
            .rpc(
                "model.account.invoice.search_read",
                serde_json::json!([[["type", "=", "out"]], 0, null, null, ["reference", "state"], {}]),
            )
            .await?;
        Ok(found.as_array().cloned().unwrap_or_default())
    }

    /// Closes the accounting period named `name` (e.g. "2025-04").
    pub async fn close_period(&self, name: &str) -> Result<()> {
        let ids = self
            .rpc("model.account.period.search", serde_json::json!([[["name", "=", name]], 0, null, null, {}]))
            .await?;
        if ids.as_array().is_none_or(|a| a.len() != 1) {
            bail!("no single period {name}: {ids}");
        }
        self.rpc("model.account.period.close", serde_json::json!([ids, {}])).await?;
        Ok(())
    }
}

impl Drop for Tryton {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A Tryton `Decimal` (`{"__class__": "Decimal", "decimal": "1.50"}`) as an exact decimal.
pub fn tryton_decimal(v: &serde_json::Value) -> rust_decimal::Decimal {
    v["decimal"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a Tryton decimal: {v}"))
}

/// A Tryton date (`{"__class__": "date", "year": .., "month": .., "day": ..}`) as `YYYY-MM-DD`.
pub fn tryton_date(v: &serde_json::Value) -> String {
    format!("{:04}-{:02}-{:02}", v["year"], v["month"].as_u64().unwrap_or(0), v["day"].as_u64().unwrap_or(0))
}
