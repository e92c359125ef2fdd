//! The clock of the workflows: business time (when an event was received,
//! a period closed, a key created, an outbox entry due) comes from here and
//! nowhere else in the gateway, so tests can hold it still or move it. The
//! layers below take it as an input (the core's [`Clock`] trait): the event
//! log (dedup retention and its sweep), stored master data (which version is
//! in effect), the plugin registry (upload times).
//! Timeouts and pacing use the monotonic clock (`std::time::Instant`,
//! tokio's timers), which is not business time.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
pub use tollgate_core::clock::{Clock, SharedClock};

/// The system's wall clock: what a gateway runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is set or advanced (tests, replays
/// at a chosen instant); clones share the same instant.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn at(instant: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(instant)))
    }

    pub fn set(&self, instant: DateTime<Utc>) {
        *self.lock() = instant;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.lock();
        *now += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_its_clones_move_with_it() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-31T23:59:00Z").unwrap().with_timezone(&Utc);
        let clock = ManualClock::at(t0);
        let shared: SharedClock = Arc::new(clock.clone());
        assert_eq!(shared.now(), t0);
        clock.advance(chrono::Duration::minutes(2));
        assert_eq!(shared.now().to_rfc3339(), "2026-02-01T00:01:00+00:00");
        clock.set(t0);
        assert_eq!(shared.now(), t0);
    }
}
