//! How the event log is tuned and how acknowledgements relate to the disk.

use std::path::PathBuf;
use std::time::Duration;
use tollgate_core::clock::SharedClock;

/// How acknowledgements relate to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the group's fdatasync. The only mode for real use.
    Fsync,
    /// Acknowledge first and write the log up to 300 ms later. Exists only
    /// so the crash test can show that it loses acknowledged events; set by
    /// the environment variable [`UNSAFE_ACK_BEFORE_WRITE_ENV`], in builds
    /// with the `test-switches` feature (tests only).
    #[cfg(feature = "test-switches")]
    UnsafeAckBeforeWrite,
}

/// Test-only switch: `1` makes the gateway acknowledge before writing.
#[cfg(feature = "test-switches")]
pub const UNSAFE_ACK_BEFORE_WRITE_ENV: &str = "TOLLGATE_TEST_ONLY_UNSAFE_ACK_BEFORE_WRITE";

/// Tuning of the event log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub wal_dir: PathBuf,
    /// A WAL segment is closed and a new one started beyond this size.
    pub segment_bytes: u64,
    /// Most events accepted into the write path and not yet indexed.
    pub max_unindexed_events: usize,
    /// Longest a request waits for room among those before it is refused as
    /// saturated: a backlog that drains within it costs the client no retry
    /// (nor the gateway a second decoding of the request).
    pub admission_wait: Duration,
    /// Forget an event id this long after it was received (None: never).
    pub dedup_retention: Option<chrono::Duration>,
    pub durability: Durability,
    /// How often the index is flushed and WAL segments behind it deleted.
    pub checkpoint_every: Duration,
    /// How often expired dedup entries are swept (with a retention only;
    /// default: a tenth of the retention, between 100 ms and 1 h).
    pub sweep_every: Option<Duration>,
    /// Business time: when a dedup entry has outlived the retention. The
    /// store reads no clock of its own.
    pub clock: SharedClock,
}

impl LogOptions {
    pub fn new(wal_dir: PathBuf, clock: SharedClock) -> LogOptions {
        LogOptions {
            clock,
            wal_dir,
            segment_bytes: 64 << 20,
            max_unindexed_events: 50_000,
            admission_wait: Duration::from_millis(200),
            dedup_retention: None,
            durability: Durability::Fsync,
            checkpoint_every: Duration::from_secs(1),
            sweep_every: None,
        }
    }
}
