//! The plugin runtime: WebAssembly components run by wasmtime, sandboxed.
//!
//! Deny by default: a plugin is linked against an empty linker, so it can
//! import no function at all (a types-only interface import is fine); it gets
//! no clock, randomness, filesystem or network, which makes every call a pure
//! function of its input and therefore replayable.
//!
//! Every call gets a fresh instance (from a pre-instantiated component) in a
//! fresh store — a rater of interface 0.4.0 rates up to [`BATCH_INPUTS`]
//! usages per call, older ones one (see [`Runtime::rate_batch`]) — with: a
//! fuel budget (deterministic instruction limit), an epoch deadline
//! (wall-clock limit), a linear-memory cap, instance/table limits, and an
//! output-size cap. NaNs are canonicalised so floats inside a plugin
//! cannot make results differ across machines.
//!
//! Instances come from a pooling allocator (memory slots are reused, not
//! mapped per call); at most [`POOL_SLOTS`] calls run at once and further
//! calls wait for a slot. A slot's memory is made fresh after every call in
//! one of two ways ([`ResetMode`]), each in its own engine: a memory that
//! starts small (at most [`REWRITE_MAX`], e.g. every plugin built with the
//! SDK) is rewritten in full, which is cheaper than finding the pages a call
//! wrote; a larger one has only its written pages reset, where the host
//! cannot swap (otherwise it is rewritten too: see [`ResetMode::DirtyPages`]
//! for why). Compiled components are cached on disk under a key
//! of (wasmtime version and engine configuration, plugin SHA-256), so a
//! restart does not recompile. Uploads are bounded in size and compilation
//! in time.

pub use crate::config::MemoryReset;
use crate::config::PluginsConfig;
use crate::rating::Charge;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, Linker, TypedFunc};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap,
};

/// Generated host bindings, one module per supported version of
/// `wit/` (see `wit/README.md`). The host works in the newest types
/// ([`bindings::rating`]) and converts for older plugins.
pub mod bindings {
    /// `tollgate:plugin@0.1.0` (`wit/since_v0.1.0`).
    pub mod v0_1 {
        pub mod rater {
            wasmtime::component::bindgen!({ world: "rater", path: "../wit/since_v0.1.0" });
        }
        pub mod mapper {
            wasmtime::component::bindgen!({
                world: "erp-mapper",
                path: "../wit/since_v0.1.0",
                with: { "tollgate:plugin/types": super::rater::tollgate::plugin::types },
            });
        }
        pub use rater::tollgate::plugin::types;
    }
    /// `tollgate:plugin@0.2.0` (`wit/since_v0.2.0`).
    pub mod v0_2 {
        pub mod rater {
            wasmtime::component::bindgen!({ world: "rater", path: "../wit/since_v0.2.0" });
        }
        pub use rater::tollgate::plugin::types;
    }
    /// `tollgate:plugin@0.3.0` (`wit/since_v0.3.0`): the ERP mapper as a
    /// conversation.
    pub mod v0_3 {
        pub mod mapper {
            wasmtime::component::bindgen!({ world: "erp-mapper", path: "../wit/since_v0.3.0" });
        }
        pub use mapper::tollgate::plugin::types;
    }
    /// `tollgate:plugin@0.4.0` (`wit/since_v0.4.0`): the rater in batches.
    /// Its types are those of 0.2.0 (the component model compares types by
    /// structure), so the host uses the 0.2.0 Rust types for both.
    pub mod v0_4 {
        pub mod rater {
            wasmtime::component::bindgen!({
                world: "rater",
                path: "../wit/since_v0.4.0",
                with: { "tollgate:plugin/types": super::super::v0_2::types },
            });
        }
    }
    /// The 0.1.0 types (rater and ERP mapper).
    pub use v0_1::types;
    /// The newest rating types (0.2.0, unchanged in 0.4.0), in which the host rates.
    pub use v0_2::types as rating;
    /// The newest posting types, in which the host maps and posts.
    pub use v0_3::types as posting;
}

use bindings::posting as pwit;
use bindings::rating as rwit;
use bindings::types as wit;
use bindings::v0_1::mapper::{ErpMapper as MapperV1, ErpMapperPre as MapperV1Pre};
use bindings::v0_1::rater::{Rater as RaterV1, RaterPre as RaterV1Pre};
use bindings::v0_2::rater::{Rater as RaterV2, RaterPre as RaterV2Pre};
use bindings::v0_3::mapper::{ErpMapper as MapperV3, ErpMapperPre as MapperV3Pre};
use bindings::v0_4::rater::{Rater as RaterV4, RaterPre as RaterV4Pre};

/// A rater world the host serves, newest first.
const RATER_WORLDS: [&str; 3] =
    ["tollgate:plugin/rater@0.4.0", "tollgate:plugin/rater@0.2.0", "tollgate:plugin/rater@0.1.0"];
/// Worlds that still run but are no longer accepted for upload (see
/// `wit/README.md`: at most two live versions per world).
const DEPRECATED_WORLDS: [&str; 1] = ["tollgate:plugin/rater@0.1.0"];
/// An ERP mapper world the host serves, newest first.
const MAPPER_WORLDS: [&str; 2] = ["tollgate:plugin/erp-mapper@0.3.0", "tollgate:plugin/erp-mapper@0.1.0"];

/// Most usages a 0.4.0 rater rates in one call (one fresh instance).
pub const BATCH_INPUTS: usize = 32;
/// Largest component accepted, bytes.
pub const MAX_COMPONENT_BYTES: usize = 16 << 20;
/// Longest a component may take to compile.
pub const MAX_COMPILE_TIME: Duration = Duration::from_secs(20);
/// Instances that may exist at once (one per running call).
pub const POOL_SLOTS: u32 = 64;
/// With [`ResetMode::DirtyPages`], bytes of a pooled memory slot that are
/// reset in place on reuse instead of being returned to the kernel: with
/// `PAGEMAP_SCAN` (Linux ≥ 6.7) only the pages a call dirtied are found and
/// copied back from the image, with no `madvise` (whose TLB shoot-downs
/// dominate on small VMs); a fresh instance then starts without page
/// faults. Older kernels memset this prefix.
const KEEP_RESIDENT: usize = 1 << 20;
/// Memories that start at most this size are reset by rewriting them in
/// full after every call ([`ResetMode::Full`], no system call): measured
/// cheaper than finding the written pages up to 256 KiB, even at 320 KiB,
/// dearer from 448 KiB (BENCHMARKS.md). With `Full`, memory beyond
/// [`Limits::rewrite_max`] is returned to the kernel (`madvise`) and faults
/// in again on its next use.
pub const REWRITE_MAX: usize = 256 << 10;
/// Epoch tick; deadlines are whole ticks.
const TICK: Duration = Duration::from_millis(5);
/// How often (in ticks: 10 s) a runtime resetting dirty pages only checks
/// that the host still cannot swap.
const SWAP_CHECK_TICKS: u64 = 2_000;

/// The world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Rater,
    ErpMapper,
}

impl Kind {
    /// The worlds a plugin of this kind may implement, newest first.
    pub fn worlds(self) -> &'static [&'static str] {
        match self {
            Kind::Rater => &RATER_WORLDS,
            Kind::ErpMapper => &MAPPER_WORLDS,
        }
    }
}

/// Whether a world still runs but is refused for new uploads.
pub fn is_deprecated(world: &str) -> bool {
    DEPRECATED_WORLDS.contains(&world)
}

/// Why a plugin failed, with a stable code per kind (see [`PluginError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("fuel exhausted: the call used its whole budget of {budget} units")]
    FuelExhausted { budget: u64 },
    #[error("deadline exceeded: the call ran longer than {ms} ms")]
    DeadlineExceeded { ms: u64 },
    #[error("memory limit reached: linear memory may not grow beyond {mib} MiB")]
    MemoryLimit { mib: u64 },
    #[error("trap: {message}")]
    Trap { message: String, backtrace: String },
    #[error("invalid output: {field}: {message}")]
    InvalidOutput { field: String, message: String },
    #[error("plugin error {code}{}: {message}", field.as_deref().map(|f| format!(" at {f}")).unwrap_or_default())]
    Plugin { code: String, field: Option<String>, message: String },
    #[error("incompatible interface: {0}")]
    IncompatibleInterface(String),
    #[error("too large: {0}")]
    TooLarge(String),
}

impl PluginError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::FuelExhausted { .. } => "fuel-exhausted",
            PluginError::DeadlineExceeded { .. } => "deadline-exceeded",
            PluginError::MemoryLimit { .. } => "memory-limit",
            PluginError::Trap { .. } => "trap",
            PluginError::InvalidOutput { .. } => "invalid-output",
            PluginError::Plugin { .. } => "plugin-error",
            PluginError::IncompatibleInterface(_) => "incompatible-interface",
            PluginError::TooLarge(_) => "too-large",
        }
    }
}

impl From<wit::PluginError> for PluginError {
    fn from(e: wit::PluginError) -> Self {
        PluginError::Plugin { code: e.code, field: e.field, message: e.message }
    }
}

impl From<rwit::PluginError> for PluginError {
    fn from(e: rwit::PluginError) -> Self {
        PluginError::Plugin { code: e.code, field: e.field, message: e.message }
    }
}

/// Domain → newest input (moved, not copied).
impl From<tollgate_core::rating::RaterInput> for rwit::Usage {
    fn from(u: tollgate_core::rating::RaterInput) -> Self {
        rwit::Usage {
            tenant: u.tenant,
            customer: u.customer,
            contract_line: u.contract_line,
            sku: u.sku,
            meter: u.meter,
            currency: u.currency,
            period_start: u.period_start,
            period_end: u.period_end,
            quantity: to_wit(u.quantity),
            dimensions: u.dimensions,
            params: u.params,
            related: u
                .related
                .into_iter()
                .map(|r| rwit::RelatedCharge {
                    contract_line: r.contract_line,
                    sku: r.sku,
                    description: r.description,
                    amount: to_wit(r.amount),
                    currency: r.currency,
                })
                .collect(),
        }
    }
}

/// Newest → 0.1.0 input: an older rater does not see `related`.
impl From<&rwit::Usage> for wit::Usage {
    fn from(u: &rwit::Usage) -> Self {
        wit::Usage {
            tenant: u.tenant.clone(),
            customer: u.customer.clone(),
            contract_line: u.contract_line.clone(),
            sku: u.sku.clone(),
            meter: u.meter.clone(),
            currency: u.currency.clone(),
            period_start: u.period_start.clone(),
            period_end: u.period_end.clone(),
            quantity: u.quantity.convert(),
            dimensions: u.dimensions.clone(),
            params: u.params.clone(),
        }
    }
}

/// 0.1.0 → newest output.
impl From<wit::ChargeLine> for rwit::ChargeLine {
    fn from(l: wit::ChargeLine) -> Self {
        rwit::ChargeLine {
            sku: l.sku,
            description: l.description,
            quantity: l.quantity.convert(),
            unit_price: l.unit_price.convert(),
            amount: l.amount.convert(),
            explain: l.explain,
        }
    }
}

impl From<pwit::PluginError> for PluginError {
    fn from(e: pwit::PluginError) -> Self {
        PluginError::Plugin { code: e.code, field: e.field, message: e.message }
    }
}

/// Newest → 0.1.0 mapper input: an older mapper does not see the target,
/// the posting period, the tax context nor the lines' dimensions and accounts.
impl From<&pwit::PostingDocument> for wit::PostingDocument {
    fn from(d: &pwit::PostingDocument) -> Self {
        wit::PostingDocument {
            id: d.id.clone(),
            tenant: d.tenant.clone(),
            legal_entity: d.legal_entity.clone(),
            erp_company: d.erp_company.clone(),
            customer: d.customer.clone(),
            erp_account: d.erp_account.clone(),
            currency: d.currency.clone(),
            period_start: d.period_start.clone(),
            period_end: d.period_end.clone(),
            issue_date: d.issue_date.clone(),
            lines: d
                .lines
                .iter()
                .map(|l| wit::DocumentLine {
                    sku: l.sku.clone(),
                    erp_item: l.erp_item.clone(),
                    description: l.description.clone(),
                    quantity: l.quantity.convert(),
                    unit_price: l.unit_price.convert(),
                    amount: l.amount.convert(),
                })
                .collect(),
            total: d.total.convert(),
        }
    }
}

impl From<&pwit::TargetConfig> for wit::TargetConfig {
    fn from(t: &pwit::TargetConfig) -> Self {
        wit::TargetConfig { name: t.name.clone(), settings: t.settings.clone() }
    }
}

impl From<&pwit::ErpResponse> for wit::ErpResponse {
    fn from(r: &pwit::ErpResponse) -> Self {
        wit::ErpResponse { status: r.status, headers: r.headers.clone(), body: r.body.clone() }
    }
}

impl From<wit::ErpRequest> for pwit::ErpRequest {
    fn from(r: wit::ErpRequest) -> Self {
        pwit::ErpRequest { method: r.method, path: r.path, headers: r.headers, body: r.body }
    }
}

impl From<wit::PluginError> for pwit::PluginError {
    fn from(e: wit::PluginError) -> Self {
        pwit::PluginError { code: e.code, field: e.field, message: e.message }
    }
}

/// A 0.1.0 mapper's outcome: every answer ends its (one-step) conversation.
impl From<wit::PostingOutcome> for pwit::Step {
    fn from(o: wit::PostingOutcome) -> Self {
        match o {
            wit::PostingOutcome::Posted(n) => pwit::Step::Posted(n),
            wit::PostingOutcome::Rejected(e) => pwit::Step::Rejected(e.into()),
            wit::PostingOutcome::Transient(m) => pwit::Step::Transient(m),
        }
    }
}

/// Per-call limits, and how memory is made fresh between calls.
#[derive(Debug, Clone)]
pub struct Limits {
    pub fuel: u64,
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub max_output_bytes: usize,
    pub memory_reset: MemoryReset,
    /// Memories that start at most this many bytes are rewritten in full
    /// after a call ([`REWRITE_MAX`]); larger ones have only their written
    /// pages reset, where that is safe (see [`ResetMode`]).
    pub rewrite_max: usize,
}

impl From<&PluginsConfig> for Limits {
    fn from(c: &PluginsConfig) -> Self {
        Limits {
            fuel: c.fuel,
            deadline_ms: c.deadline_ms,
            memory_mib: c.memory_limit_mib,
            max_output_bytes: c.max_output_bytes,
            memory_reset: c.memory_reset,
            rewrite_max: REWRITE_MAX,
        }
    }
}

/// How an instance's memory is made fresh for the next call (chosen per
/// plugin at load, see [`Runtime::new`] and [`MemoryReset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetMode {
    /// Only the pages the call wrote are found (`PAGEMAP_SCAN`, Linux ≥ 6.7;
    /// older kernels: as `Full`) and copied back. Needs a host that cannot
    /// swap: Wasmtime 48 looks for written pages that are *present*, so a
    /// page swapped out between the write and the reset would keep the
    /// call's data for the next instance in the slot.
    DirtyPages,
    /// All of the kept-resident memory is rewritten from the image.
    Full,
}

/// Whether this process's memory may be swapped out: any active swap
/// device (`/proc/swaps`), unless its cgroup allows no swap
/// (`memory.swap.max` = 0). Unknown counts as yes.
pub fn host_can_swap() -> bool {
    let cgroup_swap_max = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|c| {
        let path = c.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
        std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.swap.max")).ok()
    });
    swap_possible(std::fs::read_to_string("/proc/swaps").ok().as_deref(), cgroup_swap_max.as_deref())
}

/// [`host_can_swap`] from the two files' contents.
fn swap_possible(proc_swaps: Option<&str>, cgroup_swap_max: Option<&str>) -> bool {
    if cgroup_swap_max.map(str::trim) == Some("0") {
        return false;
    }
    // The first line is a header; every further line is an active device.
    proc_swaps.is_none_or(|t| t.lines().skip(1).any(|l| !l.trim().is_empty()))
}

impl Default for Limits {
    /// The production defaults of `[plugins]`.
    fn default() -> Self {
        Limits::from(&PluginsConfig::default())
    }
}

/// A compiled, checked plugin, ready to instantiate.
pub struct Plugin {
    pub name: String,
    pub version: semver::Version,
    pub kind: Kind,
    /// SHA-256 of the component bytes: the plugin's identity.
    pub sha256: String,
    pre: Pre,
    /// The engine it was compiled for (see [`Runtime::engine_for`]).
    engine: Engine,
    reset: ResetMode,
    code_bytes: u64,
}

impl Plugin {
    /// Bytes of its compiled image (code and data) in memory.
    pub fn code_bytes(&self) -> u64 {
        self.code_bytes
    }

    /// How this plugin's memory is made fresh for the next call.
    pub fn reset_mode(&self) -> ResetMode {
        self.reset
    }

    /// The versioned world the component implements, e.g.
    /// `tollgate:plugin/rater@0.2.0`.
    pub fn world(&self) -> &'static str {
        match self.pre {
            Pre::RaterV4(..) => RATER_WORLDS[0],
            Pre::RaterV2(_) => RATER_WORLDS[1],
            Pre::RaterV1(_) => RATER_WORLDS[2],
            Pre::MapperV3(_) => MAPPER_WORLDS[0],
            Pre::MapperV1(_) => MAPPER_WORLDS[1],
        }
    }
}

enum Pre {
    RaterV4(RaterV4Pre<CallState>, ComponentExportIndex),
    RaterV2(RaterV2Pre<CallState>),
    RaterV1(RaterV1Pre<CallState>),
    MapperV3(MapperV3Pre<CallState>),
    MapperV1(MapperV1Pre<CallState>),
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} ({:?}, sha256 {})", self.name, self.version, self.kind, self.sha256)
    }
}

struct CallState {
    limits: StoreLimits,
}

/// The engines and their epoch ticker; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    /// Resets an instance's memory by rewriting it ([`ResetMode::Full`]):
    /// components whose memory starts at most [`REWRITE_MAX`] bytes, and all
    /// of them when `scan` is `None`.
    rewrite: Engine,
    /// Resets only written pages ([`ResetMode::DirtyPages`]), for larger
    /// memories; only on a host that cannot swap, unless configured off.
    scan: Option<Engine>,
    limits: Limits,
    /// Where compiled components are cached; `None` = no cache.
    cache_dir: Option<PathBuf>,
    slots: Arc<Slots>,
    _ticker: Arc<Ticker>,
}

/// Counts free pool slots; a call waits for one.
struct Slots {
    free: Mutex<SlotCount>,
    freed: Condvar,
}

struct SlotCount {
    free: u32,
    /// Calls waiting for a slot: only then is a returned slot signalled
    /// (a wake-up is a system call, on every rating call otherwise).
    waiting: u32,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(slots: u32) -> Slots {
        Slots { free: Mutex::new(SlotCount { free: slots, waiting: 0 }), freed: Condvar::new() }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut count = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while count.free == 0 {
            count.waiting += 1;
            count = self.freed.wait(count).unwrap_or_else(|p| p.into_inner());
            count.waiting -= 1;
        }
        count.free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut count = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        count.free += 1;
        if count.waiting > 0 {
            drop(count);
            self.0.freed.notify_one();
        }
    }
}

/// Feeds `std::hash::Hash` into SHA-256: a hash that is stable across
/// processes, for cache keys.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An engine with the sandbox configuration, resetting memory by `reset`.
fn engine(limits: &Limits, reset: ResetMode) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_SLOTS)
        .total_core_instances(POOL_SLOTS * 4)
        .total_memories(POOL_SLOTS * 2)
        .total_tables(POOL_SLOTS * 4)
        .max_core_instances_per_component(8)
        .max_memories_per_component(2)
        .max_tables_per_component(4)
        .max_memories_per_module(1)
        .max_tables_per_module(2)
        .table_elements(20_000)
        .max_memory_size((limits.memory_mib as usize) << 20)
        .max_unused_warm_slots(POOL_SLOTS)
        .table_keep_resident(64 << 10);
    match reset {
        ResetMode::DirtyPages => pool.linear_memory_keep_resident(KEEP_RESIDENT).pagemap_scan(wasmtime::Enabled::Auto),
        ResetMode::Full => pool.linear_memory_keep_resident(limits.rewrite_max).pagemap_scan(wasmtime::Enabled::No),
    };
    let mut config = wasmtime::Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        // Small functions (allocator shims, accessors) inlined into their
        // callers: fewer fuel and epoch checks at function entries.
        .compiler_inlining(wasmtime::Inlining::Yes)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(16))
        .max_wasm_stack(1 << 20);
    // Profiling aid: a perf map names JIT-compiled Wasm functions for `perf`.
    if std::env::var_os("TOLLGATE_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Ok(Engine::new(&config)?)
}

/// The largest initial linear memory of the component's core modules, in
/// bytes; `None` if the bytes do not parse.
fn initial_memory_bytes(bytes: &[u8]) -> Option<u64> {
    let mut largest = 0u64;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::MemorySection(memories) = payload.ok()? {
            for m in memories {
                let m = m.ok()?;
                // (The parser refuses page sizes that do not fit; never wraps.)
                let page = 1u64.checked_shl(m.page_size_log2.unwrap_or(16)).unwrap_or(u64::MAX);
                largest = largest.max(m.initial.saturating_mul(page));
            }
        }
    }
    Some(largest)
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
    fn engine_for(&self, initial_memory: Option<u64>) -> (&Engine, ResetMode) {
        match &self.scan {
            Some(scan) if initial_memory.is_some_and(|n| n > self.limits.rewrite_max as u64) => {
                (scan, ResetMode::DirtyPages)
            }
            _ => (&self.rewrite, ResetMode::Full),
        }
    }

    /// The cache key of a component: engine version and configuration, and
    /// the component's own hash.
    fn cache_path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine = crate::hex(&h.0.finalize());
        Some(dir.join(format!("{sha256}-{}.cwasm", &engine[..16])))
    }

    /// A compiled component from the cache, if there is one that this engine accepts.
    #[allow(unsafe_code)]
    fn cached(&self, engine: &Engine, path: &std::path::Path) -> Option<Component> {
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
    fn compile(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> Result<Component, PluginError> {
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

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles and checks a component: size, no function imports, the world
    /// of `kind` (its exports' names and signatures; the 0.1.0 worlds' are
    /// type-checked by the bindings' `new`, the others' by `typed_export`),
    /// and the pooling allocator's limits (checked when it is compiled).
    pub fn load(&self, name: &str, version: semver::Version, kind: Kind, bytes: &[u8]) -> Result<Plugin, PluginError> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(PluginError::TooLarge(format!("{} bytes; at most {MAX_COMPONENT_BYTES}", bytes.len())));
        }
        let initial_memory = initial_memory_bytes(bytes);
        if let Some(initial) = initial_memory.filter(|n| *n > self.limits.memory_mib << 20) {
            return Err(PluginError::TooLarge(format!(
                "linear memory starts at {} KiB; the cap is {} MiB (plugins.memory_limit_mib)",
                initial >> 10,
                self.limits.memory_mib
            )));
        }
        let sha256 = crate::hex(&Sha256::digest(bytes));
        let (engine, reset) = self.engine_for(initial_memory);
        let component = self.compile(engine, bytes, &sha256)?;
        let image = component.image_range();
        let code_bytes = (image.end as usize).saturating_sub(image.start as usize) as u64;
        check_imports(engine, &component)?;
        let linker: Linker<CallState> = Linker::new(engine);
        let pre =
            linker.instantiate_pre(&component).map_err(|e| PluginError::IncompatibleInterface(format!("{e:#}")))?;
        let refused = |errors: Vec<(&str, wasmtime::Error)>| {
            let why: Vec<String> = errors.iter().map(|(world, e)| format!("{world}: {e:#}")).collect();
            PluginError::IncompatibleInterface(format!(
                "implements none of the supported worlds {} ({})",
                kind.worlds().join(", "),
                why.join("; ")
            ))
        };
        let pre = match kind {
            Kind::Rater => match RaterV4Pre::new(pre.clone()).and_then(|p| {
                let rate_batch = typed_export::<RateBatchParams<'_>, RateBatchResults>(
                    p.instance_pre(),
                    "tollgate:plugin/rating@0.4.0",
                    "rate-batch",
                )?;
                Ok(Pre::RaterV4(p, rate_batch))
            }) {
                Ok(p) => p,
                Err(e4) => match RaterV2Pre::new(pre.clone()).and_then(|p| {
                    typed_export::<(&rwit::Usage,), (Result<Vec<rwit::ChargeLine>, rwit::PluginError>,)>(
                        p.instance_pre(),
                        "tollgate:plugin/rating@0.2.0",
                        "rate",
                    )?;
                    Ok(p)
                }) {
                    Ok(p) => Pre::RaterV2(p),
                    Err(e2) => match RaterV1Pre::new(pre) {
                        Ok(p) => Pre::RaterV1(p),
                        Err(e1) => {
                            return Err(refused(vec![
                                (RATER_WORLDS[0], e4),
                                (RATER_WORLDS[1], e2),
                                (RATER_WORLDS[2], e1),
                            ]));
                        }
                    },
                },
            },
            Kind::ErpMapper => match MapperV3Pre::new(pre.clone()).and_then(|p| {
                check_mapper_v3(p.instance_pre())?;
                Ok(p)
            }) {
                Ok(p) => Pre::MapperV3(p),
                Err(e3) => match MapperV1Pre::new(pre) {
                    Ok(p) => Pre::MapperV1(p),
                    Err(e1) => return Err(refused(vec![(MAPPER_WORLDS[0], e3), (MAPPER_WORLDS[1], e1)])),
                },
            },
        };
        Ok(Plugin { name: name.to_string(), version, kind, sha256, pre, engine: engine.clone(), reset, code_bytes })
    }

    fn store(&self, plugin: &Plugin) -> Result<Store<CallState>, PluginError> {
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

    fn classify(&self, e: wasmtime::Error) -> PluginError {
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

    /// Rates one canonical usage with a rater plugin; the charges come back
    /// checked (every field named on error) and in exact decimals.
    pub fn rate(&self, plugin: &Plugin, input: &rwit::Usage) -> Result<Vec<Charge>, PluginError> {
        self.rate_metered(plugin, input).0
    }

    /// [`Runtime::rate`], also telling how much fuel the call used (with a
    /// fuel error, the whole budget).
    pub fn rate_metered(&self, plugin: &Plugin, input: &rwit::Usage) -> (Result<Vec<Charge>, PluginError>, u64) {
        let (answers, fuel) = self.call_rater(plugin, std::slice::from_ref(input));
        (answers.and_then(single_answer).and_then(|lines| self.checked(lines)), fuel)
    }

    /// Rates several usages with one rater; answer `i` is exactly what
    /// [`Runtime::rate`] gives for `inputs[i]`. A 0.4.0 rater takes up to
    /// [`BATCH_INPUTS`] usages per call (one fresh instance, the limits of
    /// one call: a batch that stays within them means each usage would
    /// have); older raters take one per call. A batch that traps or exceeds
    /// a limit is rated again usage by usage, so only the offending usage
    /// fails, with its own error; after a batch runs out of fuel or time,
    /// the remaining usages go one by one too (this rule is costly).
    pub fn rate_batch(&self, plugin: &Plugin, inputs: &[rwit::Usage]) -> Vec<Result<Vec<Charge>, PluginError>> {
        if !matches!(plugin.pre, Pre::RaterV4(..)) {
            return inputs.iter().map(|input| self.rate(plugin, input)).collect();
        }
        let mut out = Vec::with_capacity(inputs.len());
        let mut batched = true;
        for chunk in inputs.chunks(BATCH_INPUTS) {
            if batched && chunk.len() > 1 {
                match self.call_rater(plugin, chunk).0 {
                    Ok(answers) if answers.len() == chunk.len() => {
                        out.extend(answers.into_iter().map(|a| a.and_then(|lines| self.checked(lines))));
                        continue;
                    }
                    Err(PluginError::FuelExhausted { .. } | PluginError::DeadlineExceeded { .. }) => batched = false,
                    _ => {}
                }
            }
            out.extend(chunk.iter().map(|input| self.rate(plugin, input)));
        }
        out
    }

    /// One call of a rater on a fresh instance: `inputs` in one batch (a
    /// 0.4.0 rater) or exactly one input (older ones). `Err` is a failure of
    /// the whole call (a trap or limit); `Ok` holds the rater's answer per
    /// input, unchecked. Also tells the fuel used.
    #[allow(clippy::type_complexity)]
    fn call_rater(
        &self,
        plugin: &Plugin,
        inputs: &[rwit::Usage],
    ) -> (Result<Vec<Result<Vec<rwit::ChargeLine>, PluginError>>, PluginError>, u64) {
        if matches!(plugin.pre, Pre::MapperV3(_) | Pre::MapperV1(_)) {
            return (Err(PluginError::IncompatibleInterface(format!("{} is not a rater", plugin.name))), 0);
        }
        let one = |r: Result<Vec<rwit::ChargeLine>, PluginError>| vec![r];
        let _slot = self.slots.acquire();
        let mut store = match self.store(plugin) {
            Ok(s) => s,
            Err(e) => return (Err(e), 0),
        };
        let result = match (&plugin.pre, inputs) {
            (Pre::RaterV4(pre, rate_batch), _) => call_rate_batch(&mut store, pre, rate_batch, inputs)
                .map(|answers| answers.into_iter().map(|a| a.map_err(PluginError::from)).collect()),
            (Pre::RaterV2(pre), [input]) => pre
                .instantiate(&mut store)
                .and_then(|i: RaterV2| i.tollgate_plugin_rating().call_rate(&mut store, input))
                .map(|r| one(r.map_err(PluginError::from))),
            (Pre::RaterV1(pre), [input]) => pre
                .instantiate(&mut store)
                .and_then(|i: RaterV1| i.call_rate(&mut store, &wit::Usage::from(input)))
                .map(|r| {
                    one(r.map(|lines| lines.into_iter().map(rwit::ChargeLine::from).collect()).map_err(Into::into))
                }),
            (Pre::RaterV2(_) | Pre::RaterV1(_), _) => unreachable!("older raters are called with one input"),
            (Pre::MapperV3(_) | Pre::MapperV1(_), _) => unreachable!("checked above"),
        };
        let fuel_used = self.limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        (result.map_err(|e| self.classify(e)), fuel_used)
    }

    /// A rater's answer for one input: within the output cap, converted to
    /// exact decimals (errors name the field).
    fn checked(&self, answer: Vec<rwit::ChargeLine>) -> Result<Vec<Charge>, PluginError> {
        let size: usize = answer.iter().map(|l| l.sku.len() + l.description.len() + l.explain.len() + 64).sum();
        self.check_output(size)?;
        charges_from_wit(answer)
    }

    /// One rater instance reused across calls, for benchmarks and tools only:
    /// production rating always takes a fresh instance per call.
    pub fn warm_rater(&self, plugin: &Plugin) -> Result<WarmRater, PluginError> {
        let mut store = self.store(plugin)?;
        let instance = match &plugin.pre {
            Pre::RaterV4(pre, _) => WarmInstance::V4(pre.instantiate(&mut store).map_err(|e| self.classify(e))?),
            Pre::RaterV2(pre) => WarmInstance::V2(pre.instantiate(&mut store).map_err(|e| self.classify(e))?),
            Pre::RaterV1(pre) => WarmInstance::V1(pre.instantiate(&mut store).map_err(|e| self.classify(e))?),
            Pre::MapperV3(_) | Pre::MapperV1(_) => {
                return Err(PluginError::IncompatibleInterface(format!("{} is not a rater", plugin.name)));
            }
        };
        Ok(WarmRater { runtime: self.clone(), store, instance })
    }

    fn check_output(&self, size: usize) -> Result<(), PluginError> {
        if size > self.limits.max_output_bytes {
            return Err(PluginError::TooLarge(format!(
                "output of {size} bytes; at most {} per call",
                self.limits.max_output_bytes
            )));
        }
        Ok(())
    }

    /// Runs `f` on a fresh instance of an ERP mapper, of whichever version
    /// it implements, also telling how much fuel the call used.
    fn with_mapper_metered<R>(
        &self,
        plugin: &Plugin,
        f: impl FnOnce(MapperInstance<'_>, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> (Result<R, PluginError>, u64) {
        if matches!(plugin.pre, Pre::RaterV1(_) | Pre::RaterV2(_) | Pre::RaterV4(..)) {
            return (Err(PluginError::IncompatibleInterface(format!("{} is not an erp-mapper", plugin.name))), 0);
        }
        let _slot = self.slots.acquire();
        let mut store = match self.store(plugin) {
            Ok(s) => s,
            Err(e) => return (Err(e), 0),
        };
        let result = match &plugin.pre {
            Pre::MapperV3(pre) => pre.instantiate(&mut store).and_then(|i| f(MapperInstance::V3(&i), &mut store)),
            Pre::MapperV1(pre) => pre.instantiate(&mut store).and_then(|i| f(MapperInstance::V1(&i), &mut store)),
            Pre::RaterV1(_) | Pre::RaterV2(_) | Pre::RaterV4(..) => unreachable!("checked above"),
        };
        let fuel_used = self.limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        (result.map_err(|e| self.classify(e)), fuel_used)
    }

    fn with_mapper<R>(
        &self,
        plugin: &Plugin,
        f: impl FnOnce(MapperInstance<'_>, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.with_mapper_metered(plugin, f).0
    }

    /// Checks a request a mapper produced: size and shape.
    fn checked_request(&self, req: pwit::ErpRequest) -> Result<pwit::ErpRequest, PluginError> {
        self.check_output(
            req.body.len() + req.path.len() + req.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        )?;
        check_request(&req)?;
        Ok(req)
    }

    /// Maps a posting document to the first request of its ERP conversation.
    pub fn map_document(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
    ) -> Result<pwit::ErpRequest, PluginError> {
        self.map_document_metered(plugin, doc, target).0
    }

    /// [`Runtime::map_document`], also telling how much fuel the call used.
    pub fn map_document_metered(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
    ) -> (Result<pwit::ErpRequest, PluginError>, u64) {
        let (result, fuel) = self.with_mapper_metered(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_map_document(s, doc, target),
            MapperInstance::V1(i) => i
                .call_map_document(s, &doc.into(), &target.into())
                .map(|r| r.map(Into::into).map_err(pwit::PluginError::from)),
        });
        let checked = result.and_then(|r| r.map_err(PluginError::from)).and_then(|req| self.checked_request(req));
        (checked, fuel)
    }

    /// The request that finds an earlier posting, if the ERP needs one.
    pub fn lookup_request(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
    ) -> Result<Option<pwit::ErpRequest>, PluginError> {
        let req = self.with_mapper(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_lookup_request(s, doc, target),
            MapperInstance::V1(i) => i.call_lookup_request(s, &doc.into(), &target.into()).map(|r| r.map(Into::into)),
        })?;
        req.map(|r| self.checked_request(r)).transpose()
    }

    /// Reads a look-up answer: nothing there, posted under a number, or a
    /// request to finish an earlier posting.
    pub fn read_lookup(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
        response: &pwit::ErpResponse,
    ) -> Result<pwit::LookupOutcome, PluginError> {
        let outcome = self.with_mapper(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_read_lookup(s, doc, target, response),
            MapperInstance::V1(i) => i.call_read_lookup(s, &response.into()).map(|r| {
                r.map(|found| found.map_or(pwit::LookupOutcome::Absent, pwit::LookupOutcome::Found))
                    .map_err(pwit::PluginError::from)
            }),
        })??;
        match outcome {
            pwit::LookupOutcome::Next(r) => Ok(pwit::LookupOutcome::Next(self.checked_request(r)?)),
            pwit::LookupOutcome::Found(n) => Ok(pwit::LookupOutcome::Found(check_number(n)?)),
            other => Ok(other),
        }
    }

    /// Reads the ERP's answer `response` to `request`, a request of the
    /// conversation posting `doc`.
    pub fn read_response(
        &self,
        plugin: &Plugin,
        doc: &pwit::PostingDocument,
        target: &pwit::TargetConfig,
        request: &pwit::ErpRequest,
        response: &pwit::ErpResponse,
    ) -> Result<pwit::Step, PluginError> {
        let step = self.with_mapper(plugin, |m, s| match m {
            MapperInstance::V3(i) => i.tollgate_plugin_posting().call_read_response(s, doc, target, request, response),
            MapperInstance::V1(i) => i.call_read_response(s, &response.into()).map(Into::into),
        })?;
        match step {
            pwit::Step::Next(r) => Ok(pwit::Step::Next(self.checked_request(r)?)),
            pwit::Step::Posted(n) => Ok(pwit::Step::Posted(check_number(n)?)),
            other => Ok(other),
        }
    }
}

/// A fresh ERP mapper instance, of the version its component implements.
enum MapperInstance<'a> {
    V3(&'a MapperV3),
    V1(&'a MapperV1),
}

/// A rater instance kept across calls (see [`Runtime::warm_rater`]).
pub struct WarmRater {
    runtime: Runtime,
    store: Store<CallState>,
    instance: WarmInstance,
}

enum WarmInstance {
    V4(RaterV4),
    V1(RaterV1),
    V2(RaterV2),
}

impl WarmRater {
    /// Calls `rate` again on the same instance, with a refilled budget.
    pub fn rate(&mut self, input: &rwit::Usage) -> Result<Vec<Charge>, PluginError> {
        let rt = &self.runtime;
        self.store.set_fuel(rt.limits.fuel).map_err(|e| rt.classify(e))?;
        self.store.set_epoch_deadline(rt.limits.deadline_ms.div_ceil(TICK.as_millis() as u64).max(1));
        let lines = match &self.instance {
            WarmInstance::V4(i) => single_answer(
                i.tollgate_plugin_rating()
                    .call_rate_batch(&mut self.store, std::slice::from_ref(input))
                    .map_err(|e| rt.classify(e))?
                    .into_iter()
                    .map(|a| a.map_err(PluginError::from))
                    .collect(),
            )?,
            WarmInstance::V2(i) => {
                i.tollgate_plugin_rating().call_rate(&mut self.store, input).map_err(|e| rt.classify(e))??
            }
            WarmInstance::V1(i) => i
                .call_rate(&mut self.store, &wit::Usage::from(input))
                .map_err(|e| rt.classify(e))??
                .into_iter()
                .map(rwit::ChargeLine::from)
                .collect(),
        };
        charges_from_wit(lines)
    }
}

/// Parameters and results of a 0.4.0 rater's `rate-batch`.
type RateBatchParams<'a> = (&'a [rwit::Usage],);
type RateBatchResults = (Vec<Result<Vec<rwit::ChargeLine>, rwit::PluginError>>,);

/// The export `name` of the exported instance `interface`, type-checked
/// against parameters `P` and results `R`. The bindings' `Pre::new` only
/// looks an interface's exports up by name (their `instantiate` type-checks,
/// on every instance), so load checks each export here, once.
fn typed_export<P, R>(
    pre: &wasmtime::component::InstancePre<CallState>,
    interface: &str,
    name: &str,
) -> wasmtime::Result<ComponentExportIndex>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
    R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
{
    let component = pre.component();
    let (_, instance) = component
        .get_export(None, interface)
        .ok_or_else(|| wasmtime::format_err!("no exported instance `{interface}`"))?;
    let (item, index) = component
        .get_export(Some(&instance), name)
        .ok_or_else(|| wasmtime::format_err!("no export `{name}` in `{interface}`"))?;
    match item {
        // The check the bindings make when they load an instance
        // (`typecheck` is public but hidden from the docs for them).
        ComponentItem::ComponentFunc(func) => func
            .typecheck::<P, R>(&pre.instance_type())
            .map_err(|e| e.context(format!("type-checking export func `{name}`")))?,
        _ => return Err(wasmtime::format_err!("export `{name}` of `{interface}` is not a function")),
    }
    Ok(index)
}

/// Type-checks the four functions of an ERP mapper 0.3.0.
fn check_mapper_v3(pre: &wasmtime::component::InstancePre<CallState>) -> wasmtime::Result<()> {
    use pwit::{ErpRequest, ErpResponse, LookupOutcome, PluginError, PostingDocument, Step, TargetConfig};
    const POSTING: &str = "tollgate:plugin/posting@0.3.0";
    typed_export::<(&PostingDocument, &TargetConfig), (Result<ErpRequest, PluginError>,)>(
        pre,
        POSTING,
        "map-document",
    )?;
    typed_export::<(&PostingDocument, &TargetConfig), (Option<ErpRequest>,)>(pre, POSTING, "lookup-request")?;
    typed_export::<(&PostingDocument, &TargetConfig, &ErpResponse), (Result<LookupOutcome, PluginError>,)>(
        pre,
        POSTING,
        "read-lookup",
    )?;
    typed_export::<(&PostingDocument, &TargetConfig, &ErpRequest, &ErpResponse), (Step,)>(
        pre,
        POSTING,
        "read-response",
    )?;
    Ok(())
}

/// `rate-batch` of a fresh instance of a 0.4.0 rater: the bindings'
/// `instantiate` + `call_rate_batch`, without type-checking the export anew
/// for every instance (about 1 % of a fresh call).
#[allow(unsafe_code)]
fn call_rate_batch(
    store: &mut Store<CallState>,
    pre: &RaterV4Pre<CallState>,
    rate_batch: &ComponentExportIndex,
    inputs: &[rwit::Usage],
) -> wasmtime::Result<Vec<Result<Vec<rwit::ChargeLine>, rwit::PluginError>>> {
    let instance = pre.instance_pre().instantiate(&mut *store)?;
    let func = instance
        .get_func(&mut *store, rate_batch)
        .ok_or_else(|| wasmtime::format_err!("no export `rate-batch` found"))?;
    // SAFETY: `typed_export` type-checked this export of this component
    // against exactly these parameters and results when the plugin
    // was loaded (a plugin failing the check is refused), and every instance
    // of a component has the component's types.
    let typed: TypedFunc<RateBatchParams<'_>, RateBatchResults> = unsafe { TypedFunc::new_unchecked(func) };
    Ok(typed.call(&mut *store, (inputs,))?.0)
}

/// The one answer a rater gave for one input.
fn single_answer(
    mut answers: Vec<Result<Vec<rwit::ChargeLine>, PluginError>>,
) -> Result<Vec<rwit::ChargeLine>, PluginError> {
    match answers.len() {
        1 => answers.pop().expect("one answer"),
        n => Err(PluginError::InvalidOutput {
            field: "results".into(),
            message: format!("{n} answers for 1 input; a rater answers once per input"),
        }),
    }
}

/// Most bytes of an ERP document number.
pub const MAX_ERP_NUMBER_BYTES: usize = 256;

/// An ERP document number a mapper read from an answer: it identifies a
/// posted document for good, so it must be text one can show and look up
/// (the fuzzed NetSuite mapper once read a `Location: \r` as number "\r").
fn check_number(n: String) -> Result<String, PluginError> {
    let invalid = |message: String| PluginError::InvalidOutput { field: "erp_document_number".into(), message };
    if n.trim().is_empty() {
        return Err(invalid(format!("{n:?} is empty or only white space; the ERP answer names no document")));
    }
    if n.len() > MAX_ERP_NUMBER_BYTES || n.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{:?}{} is not a document number (control characters, or over {MAX_ERP_NUMBER_BYTES} bytes)",
            n.chars().take(64).collect::<String>(),
            if n.len() > 64 { "…" } else { "" }
        )));
    }
    Ok(n)
}

/// An ERP request must have an HTTP method token and a path starting with '/'.
fn check_request(req: &pwit::ErpRequest) -> Result<(), PluginError> {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
    if !token(&req.method) {
        return Err(PluginError::InvalidOutput {
            field: "method".into(),
            message: format!("{:?} is not an HTTP method (GET, POST, PUT, PATCH, ...)", req.method),
        });
    }
    if !req.path.starts_with('/') {
        return Err(PluginError::InvalidOutput {
            field: "path".into(),
            message: format!("{:?} must start with '/'", req.path),
        });
    }
    Ok(())
}

/// Checks a rater's output and converts it to exact decimals; errors name
/// the offending field (`lines[2].amount`).
fn charges_from_wit(lines: Vec<rwit::ChargeLine>) -> Result<Vec<Charge>, PluginError> {
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            // Field names are only written out for an error: this runs on every call.
            let f = |name: &str| format!("lines[{i}].{name}");
            let exact = |d: &rwit::Decimal, name: &str| {
                tollgate_sdk::decimal::from_parts(d.parts()).ok_or_else(|| PluginError::InvalidOutput {
                    field: f(name),
                    message: format!("decimal scale {} is above 28", d.scale),
                })
            };
            if l.sku.is_empty() {
                return Err(PluginError::InvalidOutput { field: f("sku"), message: "empty".into() });
            }
            Ok(Charge {
                quantity: exact(&l.quantity, "quantity")?,
                unit_price: exact(&l.unit_price, "unit_price")?,
                amount: exact(&l.amount, "amount")?,
                sku: l.sku,
                description: l.description,
                explain: l.explain,
            })
        })
        .collect()
}

/// Refuses any import that is not a types-only instance, naming it.
fn check_imports(engine: &Engine, component: &Component) -> Result<(), PluginError> {
    let ty = component.component_type();
    for (name, import) in ty.imports(engine) {
        match &import.ty {
            ComponentItem::ComponentInstance(instance) => {
                for (export, item) in instance.exports(engine) {
                    if !matches!(item.ty, ComponentItem::Type(_)) {
                        return Err(PluginError::IncompatibleInterface(format!(
                            "imports `{name}` with `{export}`; plugins may import no functions (no WASI, no host calls)"
                        )));
                    }
                }
            }
            ComponentItem::Type(_) => {}
            _ => {
                return Err(PluginError::IncompatibleInterface(format!(
                    "imports `{name}`; plugins may import no functions (no WASI, no host calls)"
                )));
            }
        }
    }
    Ok(())
}

/// The WIT `decimal` record, in every version of the interface (its shape
/// never changed): converts to and from exact decimals.
pub trait WitDecimal: Sized {
    fn from_parts(p: tollgate_sdk::decimal::Parts) -> Self;
    fn parts(&self) -> tollgate_sdk::decimal::Parts;
    /// The same value as another version's decimal.
    fn convert<D: WitDecimal>(&self) -> D {
        D::from_parts(self.parts())
    }
}

macro_rules! wit_decimal {
    ($($t:ty),*) => {$(
        impl WitDecimal for $t {
            fn from_parts(p: tollgate_sdk::decimal::Parts) -> Self {
                Self { mantissa_low: p.mantissa_low, mantissa_high: p.mantissa_high, negative: p.negative, scale: p.scale }
            }
            fn parts(&self) -> tollgate_sdk::decimal::Parts {
                tollgate_sdk::decimal::Parts {
                    mantissa_low: self.mantissa_low,
                    mantissa_high: self.mantissa_high,
                    negative: self.negative,
                    scale: self.scale,
                }
            }
        }
    )*};
}
wit_decimal!(wit::Decimal, rwit::Decimal, pwit::Decimal);

/// Exact decimal → WIT decimal (of whichever version the context needs).
pub fn to_wit<D: WitDecimal>(d: rust_decimal::Decimal) -> D {
    D::from_parts(tollgate_sdk::decimal::to_parts(d))
}

/// The exact value of a WIT decimal coming out of a plugin; an
/// `invalid-output` error naming `field` when its scale is above 28.
pub fn from_wit(d: &impl WitDecimal, field: &str) -> Result<rust_decimal::Decimal, PluginError> {
    let p = d.parts();
    let scale = p.scale;
    tollgate_sdk::decimal::from_parts(p).ok_or_else(|| PluginError::InvalidOutput {
        field: field.to_string(),
        message: format!("decimal scale {scale} is above 28"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_is_possible_with_an_active_device_unless_the_cgroup_forbids_it() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        let device = format!("{header}/swapfile                               file\t\t65532\t\t0\t\t-2\n");
        assert!(!swap_possible(Some(header), None));
        assert!(swap_possible(Some(&device), None));
        assert!(swap_possible(Some(&device), Some("max\n")));
        assert!(!swap_possible(Some(&device), Some("0\n")));
        // Unknown (no /proc/swaps): assume it can.
        assert!(swap_possible(None, None));
    }

    #[test]
    fn a_components_memory_size_is_read_before_compiling() {
        // A core module whose memory section holds `memories` (each encoded
        // as limits: flags, initial pages, page size if flag 0x08).
        let module = |memories: &[&[u8]]| {
            let body: Vec<u8> = std::iter::once(memories.len() as u8).chain(memories.concat()).collect();
            let mut m = b"\0asm\x01\0\0\0\x05".to_vec();
            m.push(body.len() as u8);
            m.extend(body);
            m
        };
        assert_eq!(initial_memory_bytes(&module(&[&[0x00, 3]])), Some(3 << 16));
        // Custom page sizes: 2 pages of 1 byte.
        assert_eq!(initial_memory_bytes(&module(&[&[0x08, 2, 0]])), Some(2));
        // Several memories: the largest counts.
        assert_eq!(initial_memory_bytes(&module(&[&[0x00, 3], &[0x00, 5], &[0x08, 9, 0]])), Some(5 << 16));
        // A page size no memory can have does not parse (compilation says why).
        assert_eq!(initial_memory_bytes(&module(&[&[0x08, 2, 64]])), None);
        assert_eq!(initial_memory_bytes(b"\0asm\x01\0\0\0"), Some(0));
        assert_eq!(initial_memory_bytes(b"not wasm"), None);
    }
}
