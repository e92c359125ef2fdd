//! Shared helpers of the benchmarks (`cargo xtask bench`): timing
//! statistics and where the built plugins are.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The bundled plugins as `cargo xtask build-plugins` left them.
pub fn plugins_dir() -> PathBuf {
    std::env::var("TOLLGATE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

/// Per-call timings of `n` calls of `f`.
pub fn time_calls(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

/// The `p`-th percentile (0..=100) of timings, in microseconds.
pub fn percentile_us(timings: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = timings.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// Calls per second over the whole run.
pub fn per_second(timings: &[Duration]) -> f64 {
    timings.len() as f64 / timings.iter().sum::<Duration>().as_secs_f64()
}
