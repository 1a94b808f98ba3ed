//! The global allocator: the system allocator, except that very large allocations are lazy
//! anonymous mappings (`MAP_NORESERVE`) that cost memory only when touched.
//!
//! Why: `kafka-protocol` 0.18 sizes `Vec::with_capacity` from array lengths read off the wire
//! before decoding a single element, so an 8-byte request claiming 2^31 elements asks for
//! hundreds of GiB; the system allocator refuses and Rust aborts the process. With lazy
//! mappings the reservation succeeds, the decoder runs out of input after at most the frame's
//! bytes of elements, returns an error, and the mapping is released. Memory actually used stays
//! bounded by `socket.request.max.bytes`. (Upstream fix pending: kafka-protocol-rs PR #200.)
//! Caveat: with `vm.overcommit_memory=2` the kernel counts these mappings and refuses them.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are lazy mappings.
pub const LAZY_ALLOCATION_BYTES_MIN: usize = 256 << 20;
/// Mappings are page aligned; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

pub struct LazyLargeAlloc;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_ALLOCATION_BYTES_MIN && layout.align() <= PAGE_BYTES
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from a
// private anonymous mapping of exactly `layout.size()` bytes (and unmapped with that size);
// `is_lazy` depends only on the layout, which callers must pass unchanged to `dealloc`.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED { std::ptr::null_mut() } else { p.cast() }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: anonymous mappings are zero-filled.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            // SAFETY: `ptr` came from our mmap of exactly `layout.size()` bytes.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` forms a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            // SAFETY: both old and new live in `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, free the old block: the default protocol.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservation_is_lazy_and_released() {
        let a = LazyLargeAlloc;
        let layout = Layout::from_size_align(1 << 40, 8).unwrap();
        // SAFETY: test of the allocator itself; the block is written within bounds and freed.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "a 1 TiB lazy reservation must succeed");
            *p = 7;
            *p.add((1 << 40) - 1) = 9;
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
        }
    }
}
