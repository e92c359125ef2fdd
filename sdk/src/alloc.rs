//! A bump allocator for plugins, on by default in guest builds.
//!
//! Production runs every call in a fresh instance, so memory is never reused
//! across calls: allocating from a static arena by bumping a pointer, and
//! never freeing, is both correct and the cheapest thing possible. It also
//! means no `memory.grow` for small calls, and fewer fresh pages touched.
//! When the arena is exhausted, allocation falls back to the standard
//! allocator (which grows memory), so large inputs still work.

#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use std::alloc::System;

/// Ample for a rating call (its input, parameters and output take a few
/// KiB); kept small because a fresh instance's memory is reset page by page
/// after every call, and every page of the initial memory is walked (see
/// BENCHMARKS.md). Bigger calls (a mapper's document of many lines) continue
/// in the standard allocator.
const ARENA_BYTES: usize = 64 * 1024;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: wasm32-unknown-unknown guests are single-threaded.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

struct Next(UnsafeCell<usize>);
// SAFETY: as above, single-threaded.
unsafe impl Sync for Next {}
static NEXT: Next = Next(UnsafeCell::new(0));

/// The plugin allocator: arena first, then the standard allocator.
pub struct Bump;

impl Bump {
    fn base() -> usize {
        ARENA.0.get() as usize
    }
    fn owns(p: *mut u8) -> bool {
        (p as usize) >= Self::base() && (p as usize) < Self::base() + ARENA_BYTES
    }
}

// SAFETY: every pointer handed out is either a fresh, suitably aligned,
// in-bounds range of the arena that no other allocation overlaps (the bump
// pointer only moves forward, except to give back the very last allocation),
// or comes from `System`, to which it is returned.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded; `NEXT` is only touched here and in realloc/dealloc.
        let next = unsafe { &mut *NEXT.0.get() };
        let start = (Self::base() + *next + layout.align() - 1) & !(layout.align() - 1);
        let end = start + layout.size();
        if end <= Self::base() + ARENA_BYTES {
            *next = end - Self::base();
            return start as *mut u8;
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::owns(ptr) {
            // SAFETY: single-threaded.
            let next = unsafe { &mut *NEXT.0.get() };
            // Give back the last allocation; the rest lives until the instance ends.
            if ptr as usize + layout.size() == Self::base() + *next {
                *next = ptr as usize - Self::base();
            }
        } else {
            // SAFETY: not ours, so it came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::owns(ptr) {
            // SAFETY: single-threaded.
            let next = unsafe { &mut *NEXT.0.get() };
            // The last allocation grows or shrinks in place when it fits.
            if ptr as usize + layout.size() == Self::base() + *next
                && ptr as usize + new_size <= Self::base() + ARENA_BYTES
            {
                *next = ptr as usize + new_size - Self::base();
                return ptr;
            }
            // SAFETY: a valid layout of the same alignment.
            let new = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
            if !new.is_null() {
                // SAFETY: both ranges are valid for the smaller size and do not overlap.
                unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            }
            new
        } else {
            // SAFETY: not ours: `System` owns it.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}
