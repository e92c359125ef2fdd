//! The runtime: its engines, the epoch ticker that enforces deadlines, and
//! the fresh store (fuel, deadline, memory limits) every call runs in.

use crate::PluginError;
use crate::engine::{Limits, MemoryReset, ResetMode, engine, host_can_swap};
use crate::load::Plugin;
use crate::pool::{POOL_SLOTS, Slots};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};

/// Epoch tick; deadlines are whole ticks.
pub(crate) const TICK: Duration = Duration::from_millis(5);
/// How often (in ticks: 10 s) a runtime resetting dirty pages only checks
/// that the host still cannot swap.
pub(crate) const SWAP_CHECK_TICKS: u64 = 2_000;

pub(crate) struct CallState {
    pub(crate) limits: StoreLimits,
}

/// The engines and their epoch ticker; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    /// Resets an instance's memory by rewriting it ([`ResetMode::Full`]):
    /// components whose memory starts at most [`REWRITE_MAX`] bytes, and all
    /// of them when `scan` is `None`.
    pub(crate) rewrite: Engine,
    /// Resets only written pages ([`ResetMode::DirtyPages`]), for larger
    /// memories; only on a host that cannot swap, unless configured off.
    pub(crate) scan: Option<Engine>,
    pub(crate) limits: Limits,
    /// Where compiled components are cached; `None` = no cache.
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) _ticker: Arc<Ticker>,
}

pub(crate) struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Engines with the sandbox configuration; `cache_dir` holds compiled
    /// components across restarts.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let scan = match limits.memory_reset {
            MemoryReset::Auto if !host_can_swap() => Some(engine(&limits, ResetMode::DirtyPages)?),
            MemoryReset::Auto => {
                tracing::warn!(
                    "this host can swap: plugins with more than {} KiB of memory are reset in full after \
                     every call, which is slower (see `plugins.memory_reset`)",
                    limits.rewrite_max >> 10
                );
                None
            }
            MemoryReset::Full => None,
        };
        let rewrite = engine(&limits, ResetMode::Full)?;
        let stop = Arc::new(AtomicBool::new(false));
        let engines: Vec<_> = std::iter::once(&rewrite).chain(&scan).map(Engine::weak).collect();
        let (s, mut swap_seen) = (stop.clone(), scan.is_none());
        std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
            for tick in 1u64.. {
                std::thread::sleep(TICK);
                if s.load(Ordering::Relaxed) {
                    break;
                }
                for e in &engines {
                    match e.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
                // Swap turned on after start defeats `DirtyPages` (see there).
                if !swap_seen && tick.is_multiple_of(SWAP_CHECK_TICKS) && host_can_swap() {
                    swap_seen = true;
                    tracing::error!(
                        "swap was turned on after the gateway started: a plugin call's memory may now reach \
                         the next call in its slot; restart the gateway (it then resets memory in full)"
                    );
                }
            }
        })?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Runtime {
            rewrite,
            scan,
            limits,
            cache_dir,
            slots: Arc::new(Slots::new(POOL_SLOTS)),
            _ticker: Arc::new(Ticker(stop)),
        })
    }

    /// The engine for a component whose largest memory starts at
    /// `initial_memory` bytes, by how its memory is best reset: a small
    /// memory is rewritten in full (cheaper than looking for the written
    /// pages), a larger one has only its written pages reset where that is
    /// safe. Bytes that do not parse (`None`) go to the rewrite engine, whose
    /// compilation then says what is wrong.
    pub(crate) fn engine_for(&self, initial_memory: Option<u64>) -> (&Engine, ResetMode) {
        match &self.scan {
            Some(scan) if initial_memory.is_some_and(|n| n > self.limits.rewrite_max as u64) => {
                (scan, ResetMode::DirtyPages)
            }
            _ => (&self.rewrite, ResetMode::Full),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn store(&self, plugin: &Plugin) -> Result<Store<CallState>, PluginError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size((self.limits.memory_mib as usize) << 20)
            .instances(8)
            .tables(8)
            .memories(2)
            .table_elements(100_000)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&plugin.engine, CallState { limits });
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel).map_err(|e| self.classify(e))?;
        let ticks = self.limits.deadline_ms.div_ceil(TICK.as_millis() as u64).max(1);
        store.set_epoch_deadline(ticks);
        Ok(store)
    }

    pub(crate) fn classify(&self, e: wasmtime::Error) -> PluginError {
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => {
                return PluginError::FuelExhausted { budget: self.limits.fuel };
            }
            Some(Trap::Interrupt) => {
                return PluginError::DeadlineExceeded { ms: self.limits.deadline_ms };
            }
            _ => {}
        }
        let chain = format!("{e:?}");
        if chain.contains("forcing trap when growing memory") {
            return PluginError::MemoryLimit { mib: self.limits.memory_mib };
        }
        let message = match e.downcast_ref::<Trap>() {
            Some(t) => t.to_string(),
            None => e.root_cause().to_string(),
        };
        let backtrace = e
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|b| b.to_string().lines().take(8).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        PluginError::Trap { message, backtrace }
    }

    pub(crate) fn check_output(&self, size: usize) -> Result<(), PluginError> {
        if size > self.limits.max_output_bytes {
            return Err(PluginError::TooLarge(format!(
                "output of {size} bytes; at most {} per call",
                self.limits.max_output_bytes
            )));
        }
        Ok(())
    }
}
