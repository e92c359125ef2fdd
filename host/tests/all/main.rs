//! Integration tests of the `tollgate` crate: the CLI binary, the server
//! process under SIGKILL, and the plugin sandbox, through their public
//! interfaces.

mod cli;
mod crash;
mod fixtures;
mod sandbox;

use std::path::{Path, PathBuf};

/// `target/<sub>` as `cargo xtask build-plugins` left it.
pub fn built(sub: &str, env: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(sub))
}

pub fn plugins_dir() -> PathBuf {
    built("plugins", "TOLLGATE_PLUGINS_DIR")
}
