//! `cargo xtask <task>`: the project's set-up and run tasks, so a fresh
//! machine with only Rust needs nothing else.
//!
//! - `build-plugins`: installs the `wasm32-unknown-unknown` target, builds
//!   every crate under `plugins/` for it and turns each core module into a
//!   component with `wit-component` (no WASI: plugins import nothing). Writes
//!   `target/plugins/<name>-<version>.wasm` and `target/plugins/plugins.json`;
//!   the test components of `tests/components/` (one per listed variant) go
//!   to `target/test-components/`.
//! - `demo`: builds the plugins, the gateway and the ERP simulator, then
//!   runs `tollgate demo` (which starts the simulator beside it).
//! - `test`: builds the plugins, then runs the whole test suite, and
//!   validates `host/src/api/openapi.json` with the reference OpenAPI
//!   validator (`openapi-spec-validator` from PyPI, in a virtualenv under
//!   `target/`).
//! - `bench`: builds the plugins, then runs the benchmarks (`bench/`).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args.split_first().map(|(t, r)| (t.as_str(), r)).unwrap_or(("help", &[]));
    match task {
        "build-plugins" => build_plugins().map(|_| ()),
        "validate-openapi" => validate_openapi(),
        "demo" => {
            let dir = build_plugins()?;
            // The gateway and the ERP simulator it starts, in one build.
            cargo(&["build", "--release", "--package", "tollgate", "--package", "tollgate-erp-sim"], &[], &[])?;
            // The plugins are built into `<target>/plugins`.
            let target = dir.parent().context("the target directory")?;
            let gateway = target.join("release").join(format!("tollgate{}", std::env::consts::EXE_SUFFIX));
            let status = Command::new(&gateway)
                .args(["demo", "--plugins-dir", dir.to_str().unwrap()])
                .args(rest)
                .status()
                .with_context(|| format!("running {}", gateway.display()))?;
            if !status.success() {
                bail!("the demo failed ({status})");
            }
            Ok(())
        }
        "bench" => {
            let dir = build_plugins()?;
            let status = Command::new(cargo_bin())
                .args(["bench", "--package", "tollgate-bench"])
                .args(rest)
                .env("TOLLGATE_PLUGINS_DIR", &dir)
                .status()
                .context("running cargo bench")?;
            if !status.success() {
                bail!("benchmarks failed ({status})");
            }
            Ok(())
        }
        "test" => {
            let dir = build_plugins()?;
            let status = Command::new(cargo_bin())
                // The workspace's default members: every native crate, no
                // plugins (built above for wasm) and no xtask (no tests).
                .args(["test", "--release"])
                .args(rest)
                .env("TOLLGATE_PLUGINS_DIR", &dir)
                .status()
                .context("running cargo test")?;
            if !status.success() {
                bail!("tests failed ({status})");
            }
            validate_openapi()?;
            // The benchmarks are not run here (timings are not tests), but
            // they must keep compiling.
            let status = Command::new(cargo_bin())
                .args(["build", "--release", "--package", "tollgate-bench", "--benches"])
                .status()
                .context("building the benchmarks")?;
            if !status.success() {
                bail!("the benchmarks do not build ({status})");
            }
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo xtask <build-plugins | demo | test | bench | validate-openapi> [args...]");
            Ok(())
        }
    }
}

/// The validator's version, pinned.
const OPENAPI_VALIDATOR: &str = "openapi-spec-validator==0.7.1";

/// Validates the admin API's OpenAPI document with the reference validator.
fn validate_openapi() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join("target/py-tools");
    let python = venv.join("bin/python");
    let run = |cmd: &mut Command, what: &str| -> Result<()> {
        let status = cmd.status().with_context(|| format!("{what} (is python3 installed?)"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    };
    if !python.exists() {
        let has_python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
        if !has_python && std::env::var_os("CI").is_none() {
            eprintln!("warning: python3 not found: the OpenAPI document was NOT validated (CI requires it)");
            return Ok(());
        }
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "creating a Python virtualenv")?;
    }
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            OPENAPI_VALIDATOR,
        ]),
        "installing the OpenAPI validator",
    )?;
    let doc = root.join("host/src/api/openapi.json");
    run(
        Command::new(&python).args(["-m", "openapi_spec_validator"]).arg(&doc),
        "validating host/src/api/openapi.json as OpenAPI 3",
    )
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo(args: &[&str], more: &[&str], rest: &[String]) -> Result<()> {
    let status = Command::new(cargo_bin())
        .args(args)
        .args(more)
        .args(rest)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    manifest_path: PathBuf,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

/// A plugin as listed in `plugins.json`, read by the gateway at start-up.
#[derive(serde::Serialize)]
struct BundledPlugin {
    name: String,
    version: String,
    kind: String,
    file: String,
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => {
            let status = Command::new("rustup").args(["target", "add", WASM_TARGET]).status()?;
            if !status.success() {
                bail!("`rustup target add {WASM_TARGET}` failed");
            }
            Ok(())
        }
        Err(e) => bail!("rustup is needed to install the {WASM_TARGET} target: {e}"),
    }
}

fn build_plugins() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let out = Command::new(cargo_bin())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: Metadata = serde_json::from_slice(&out.stdout)?;
    let roots = [meta.workspace_root.join("plugins"), meta.workspace_root.join("tests").join("components")];
    let out_dir = meta.target_directory.join("plugins");
    let test_dir = meta.target_directory.join("test-components");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::create_dir_all(&test_dir)?;
    let mut listed = Vec::new();
    for p in meta.packages.iter().filter(|p| roots.iter().any(|r| p.manifest_path.starts_with(r))) {
        let info = p
            .metadata
            .as_ref()
            .and_then(|m| m.get("tollgate"))
            .with_context(|| format!("{}: [package.metadata.tollgate] with name and kind is required", p.name))?;
        let name = info["name"].as_str().context("metadata.tollgate.name")?.to_string();
        let kind = info["kind"].as_str().context("metadata.tollgate.kind")?.to_string();
        let test_only = info["test-only"].as_bool().unwrap_or(false);
        let core =
            meta.target_directory.join(WASM_TARGET).join("release").join(format!("{}.wasm", p.name.replace('-', "_")));
        let variants: Vec<Option<&str>> = match info["variants"].as_array() {
            Some(v) => v.iter().map(|x| x.as_str()).collect(),
            None => vec![None],
        };
        for variant in variants {
            build_wasm(&p.name, variant)?;
            let (dir, file) = match variant {
                Some(v) => (&test_dir, format!("{name}-{v}.wasm")),
                None if test_only => (&test_dir, format!("{name}.wasm")),
                None => (&out_dir, format!("{name}-{}.wasm", p.version)),
            };
            componentize(&core, &dir.join(&file))?;
            if !test_only {
                listed.push(BundledPlugin { name: name.clone(), version: p.version.clone(), kind: kind.clone(), file });
            }
        }
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    std::fs::write(out_dir.join("plugins.json"), serde_json::to_vec_pretty(&listed)?)?;
    eprintln!("plugins: {} built into {} (test components in {})", listed.len(), out_dir.display(), test_dir.display());
    Ok(out_dir)
}

/// Builds one plugin crate for wasm, alone: the SDK's world features must
/// not be unified across plugins, nor a test component's variants.
fn build_wasm(package: &str, feature: Option<&str>) -> Result<()> {
    let mut cmd = Command::new(cargo_bin());
    cmd.args(["build", "--quiet", "--release", "--target", WASM_TARGET, "--package", package]);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
    }
    // Plugins ship without debug info: smaller components, faster loads.
    let status = cmd
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        // Whole-program optimisation: guest code runs on every rating call.
        .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        // A 32 KiB shadow stack instead of 1 MiB: it holds only the frames'
        // address-taken locals, and a smaller memory means less to reset per
        // fresh instance. An overflow runs below address 0 and traps.
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", "-C link-arg=-zstack-size=32768")
        .status()
        .context("building plugins")?;
    if !status.success() {
        bail!("building plugin {package} {} failed ({status})", feature.unwrap_or_default());
    }
    Ok(())
}

fn componentize(core: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .with_context(|| format!("{}: not a core module with component type information", core.display()))?
        .validate(true)
        .encode()
        .with_context(|| format!("componentizing {}", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
