//! A bump allocator, the SDK's global allocator in `wasm32` builds (feature
//! `bump-allocator`, on by default).
//!
//! The host runs every call in a fresh instance and throws its memory away afterwards, so
//! a driver never needs to reuse freed memory: allocating is moving a pointer, freeing is
//! nothing (except for the most recent block, which is given back, so short-lived
//! temporaries cost nothing). Parsing and normalizing a payload allocates a lot of small,
//! short-lived values; without the general allocator's bookkeeping that work is markedly
//! faster (`cargo xtask bench`).
//!
//! The arena comes from the system allocator in chunks of 1 MiB (or one block's size, if
//! larger), so everything else that allocates in the module keeps working. Memory grows
//! with what a call allocates in total, bounded by the host's memory limit; a driver that
//! allocates without bound in one call should turn the feature off.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use std::alloc::System;

/// Bytes taken from the system allocator at a time.
const CHUNK: usize = 1 << 20;

/// The allocator. Single-threaded: `wasm32-wasip2` components have one thread.
pub struct Bump {
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: a component instance runs on one thread; nothing is shared between threads.
unsafe impl Sync for Bump {}

impl Bump {
    /// An empty arena; the first allocation takes its first chunk.
    pub const fn new() -> Self {
        Self {
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }

    /// A block for `layout` from the current chunk, or from a new one.
    fn bump(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        let start = (self.next.get() + align - 1) & !(align - 1);
        if let Some(end) = start.checked_add(layout.size())
            && self.end.get() != 0
            && end <= self.end.get()
        {
            self.next.set(end);
            return start as *mut u8;
        }
        // A new chunk; the rest of the old one is abandoned.
        let Some(size) = layout.size().checked_add(align).map(|s| s.max(CHUNK)) else {
            return core::ptr::null_mut();
        };
        let Ok(chunk_layout) = Layout::from_size_align(size, align.max(16)) else {
            return core::ptr::null_mut();
        };
        // SAFETY: `chunk_layout` has a non-zero size.
        let chunk = unsafe { System.alloc(chunk_layout) };
        if chunk.is_null() {
            return chunk;
        }
        let start = ((chunk as usize) + align - 1) & !(align - 1);
        self.next.set(start + layout.size());
        self.end.set(chunk as usize + size);
        start as *mut u8
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.bump(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Only the latest block can be given back.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The latest block grows or shrinks in place while the chunk has room.
        if ptr as usize + layout.size() == self.next.get()
            && let Some(end) = (ptr as usize).checked_add(new_size)
            && end <= self.end.get()
        {
            self.next.set(end);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the alignment comes from a valid layout and `new_size` is non-zero (it is
        // larger than the old size).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = self.bump(new_layout);
        if !new.is_null() {
            // SAFETY: both blocks are valid for `layout.size()` bytes and do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
        }
        new
    }
}
