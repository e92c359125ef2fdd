//! Tollgate's plugins: WebAssembly components run by wasmtime, sandboxed;
//! the registry of loaded plugins; the golden-fixture runner.
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
//!
//! Where each concern lives:
//! - `engine`: the engine configuration, per-call [`Limits`], memory reset;
//! - `pool`: the instance slots a call waits for;
//! - `compile`: compilation within a time bound and the compiled cache;
//! - `load`: checks at load (size, memory, imports, the world's types) and
//!   [`Plugin`];
//! - `runtime`: [`Runtime`], its epoch ticker and the per-call store;
//! - `rater` and `mapper`: the calls of each kind;
//! - [`bindings`]: one file per WIT version, with its conversions;
//! - [`registry`]: loaded plugins by owner, name and version; uploads;
//! - [`fixtures`]: golden fixtures run exactly as production calls them.
//!
//! Layer: above `tollgate-core` and `tollgate-store`; no HTTP server or
//! client and no gRPC (checked by `crates/core/tests/layers.rs`). Calls are
//! blocking; an upload compiles on tokio's blocking pool.

pub mod bindings;
mod compile;
mod decimal;
mod engine;
mod error;
pub mod fixtures;
mod load;
mod mapper;
mod pool;
mod rater;
pub mod registry;
mod runtime;

pub use compile::MAX_COMPILE_TIME;
pub use decimal::{WitDecimal, from_wit, to_wit};
pub use engine::{Limits, MemoryReset, REWRITE_MAX, ResetMode, host_can_swap};
pub use error::PluginError;
pub use load::{Kind, MAX_COMPONENT_BYTES, Plugin, is_deprecated};
pub use mapper::MAX_ERP_NUMBER_BYTES;
pub use pool::POOL_SLOTS;
pub use rater::{BATCH_INPUTS, WarmRater};
pub use runtime::Runtime;
