//! Compiling components, bounded in time, and the compiled cache on disk
//! keyed by (engine version and configuration, component SHA-256).

use crate::{PluginError, Runtime};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Longest a component may take to compile.
pub const MAX_COMPILE_TIME: Duration = Duration::from_secs(20);

/// Feeds `std::hash::Hash` into SHA-256: a hash that is stable across
/// processes, for cache keys.
pub(crate) struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

impl Runtime {
    /// The cache key of a component: engine version and configuration, and
    /// the component's own hash.
    pub(crate) fn cache_path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine = tollgate_core::hex(&h.0.finalize());
        Some(dir.join(format!("{sha256}-{}.cwasm", &engine[..16])))
    }

    /// A compiled component from the cache, if there is one that this engine accepts.
    #[allow(unsafe_code)]
    pub(crate) fn cached(&self, engine: &Engine, path: &std::path::Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be a component
        // serialized by wasmtime. Only `compile` below writes this directory,
        // from `Component::serialize` of an engine whose version and
        // configuration are part of the file name; wasmtime additionally
        // checks the header and refuses a file from another version or
        // configuration (we then recompile). The directory is the gateway's
        // own data directory: whoever can write it can already change every
        // stored record.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled component");
                None
            }
        }
    }

    /// Compiles (or loads from the cache) a component, within [`MAX_COMPILE_TIME`].
    pub(crate) fn compile(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> Result<Component, PluginError> {
        let path = self.cache_path(engine, sha256);
        if let Some(c) = path.as_deref().and_then(|p| self.cached(engine, p)) {
            return Ok(c);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, owned) = (engine.clone(), bytes.to_vec());
        std::thread::Builder::new()
            .name("wasm-compile".into())
            .spawn(move || {
                let _ = tx.send(Component::new(&engine, &owned));
            })
            .map_err(|e| PluginError::Trap {
                message: format!("starting the compiler: {e}"),
                backtrace: String::new(),
            })?;
        let component = match rx.recv_timeout(MAX_COMPILE_TIME) {
            Ok(r) => {
                r.map_err(|e| PluginError::IncompatibleInterface(format!("not a valid WebAssembly component: {e:#}")))?
            }
            Err(_) => {
                return Err(PluginError::TooLarge(format!(
                    "compilation took longer than {} s",
                    MAX_COMPILE_TIME.as_secs()
                )));
            }
        };
        if let Some(path) = path {
            // Written whole then renamed, so a crash never leaves half a file.
            static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = WRITES.fetch_add(1, Ordering::Relaxed);
            let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
            let written = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|b| std::fs::write(&tmp, b).map_err(|e| e.to_string()))
                .and_then(|_| std::fs::rename(&tmp, &path).map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled component");
            }
        }
        Ok(component)
    }
}
