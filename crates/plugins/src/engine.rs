//! The engine configuration of the sandbox (pooling allocator, fuel, epoch
//! deadlines, NaN canonicalisation), the per-call limits, and how a pooled
//! instance's memory is made fresh between calls.

use crate::pool::POOL_SLOTS;
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// With [`ResetMode::DirtyPages`], bytes of a pooled memory slot that are
/// reset in place on reuse instead of being returned to the kernel: with
/// `PAGEMAP_SCAN` (Linux ≥ 6.7) only the pages a call dirtied are found and
/// copied back from the image, with no `madvise` (whose TLB shoot-downs
/// dominate on small VMs); a fresh instance then starts without page
/// faults. Older kernels memset this prefix.
pub(crate) const KEEP_RESIDENT: usize = 1 << 20;
/// Memories that start at most this size are reset by rewriting them in
/// full after every call ([`ResetMode::Full`], no system call): measured
/// cheaper than finding the written pages up to 256 KiB, even at 320 KiB,
/// dearer from 448 KiB (BENCHMARKS.md). With `Full`, memory beyond
/// [`Limits::rewrite_max`] is returned to the kernel (`madvise`) and faults
/// in again on its next use.
pub const REWRITE_MAX: usize = 256 << 10;

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

impl Default for Limits {
    /// The production defaults of `[plugins]`.
    fn default() -> Self {
        Limits {
            fuel: 50_000_000,
            deadline_ms: 100,
            memory_mib: 64,
            max_output_bytes: 1 << 20,
            memory_reset: MemoryReset::Auto,
            rewrite_max: REWRITE_MAX,
        }
    }
}

/// How a plugin instance's memory is made fresh for the next call (the
/// `plugins.memory_reset` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryReset {
    /// Small memories rewritten in full; of larger ones only the written
    /// pages when the host cannot swap (checked at start), else `Full`.
    #[default]
    Auto,
    /// Always all of an instance's (kept-resident) memory rewritten.
    Full,
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
pub(crate) fn swap_possible(proc_swaps: Option<&str>, cgroup_swap_max: Option<&str>) -> bool {
    if cgroup_swap_max.map(str::trim) == Some("0") {
        return false;
    }
    // The first line is a header; every further line is an active device.
    proc_swaps.is_none_or(|t| t.lines().skip(1).any(|l| !l.trim().is_empty()))
}

/// An engine with the sandbox configuration, resetting memory by `reset`.
pub(crate) fn engine(limits: &Limits, reset: ResetMode) -> anyhow::Result<Engine> {
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
pub(crate) fn initial_memory_bytes(bytes: &[u8]) -> Option<u64> {
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
