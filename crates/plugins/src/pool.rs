//! The slot pool: at most [`POOL_SLOTS`] calls hold an instance at once;
//! further calls wait for a slot.

use std::sync::{Condvar, Mutex};

/// Instances that may exist at once (one per running call).
pub const POOL_SLOTS: u32 = 64;

/// Counts free pool slots; a call waits for one.
pub(crate) struct Slots {
    pub(crate) free: Mutex<SlotCount>,
    pub(crate) freed: Condvar,
}

pub(crate) struct SlotCount {
    pub(crate) free: u32,
    /// Calls waiting for a slot: only then is a returned slot signalled
    /// (a wake-up is a system call, on every rating call otherwise).
    pub(crate) waiting: u32,
}

pub(crate) struct SlotGuard<'a>(&'a Slots);

impl Slots {
    pub(crate) fn new(slots: u32) -> Slots {
        Slots { free: Mutex::new(SlotCount { free: slots, waiting: 0 }), freed: Condvar::new() }
    }

    pub(crate) fn acquire(&self) -> SlotGuard<'_> {
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
