//! An allocator that remembers, per thread, the largest single allocation.
//!
//! A decoder that trusts a length field shows it by one large allocation
//! (`Vec::with_capacity(declared)`, `vec![0; declared]`), so the largest
//! single request is what a fuzz case checks. The record is kept per
//! thread, so test threads running side by side do not see each other's
//! allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// The largest allocation this thread asked for since the last reset.
    /// A const-initialized `Cell` of a `Copy` type: reading it never
    /// allocates, so the allocator may use it.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, recording the largest allocation of each thread.
/// Install it as the test binary's `#[global_allocator]`.
pub struct PeakAlloc;

fn note(bytes: usize) {
    // `try_with`: a thread being torn down has no slot left; ignore it.
    let _ = LARGEST.try_with(|largest| {
        if bytes > largest.get() {
            largest.set(bytes);
        }
    });
}

// SAFETY: every call is passed through unchanged to the system allocator;
// recording a size touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// The largest single allocation this thread made while running `work`.
fn largest_allocation<T>(work: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = work();
    (result, LARGEST.with(Cell::get))
}

/// Runs `work` and fails if any single allocation it made exceeded
/// `limit_bytes`.
pub fn within_allocation_limit<T>(
    limit_bytes: usize,
    work: impl FnOnce() -> T,
) -> Result<T, String> {
    let (result, largest) = largest_allocation(work);
    if largest > limit_bytes {
        return Err(format!(
            "an allocation of {largest} bytes, over this input's limit of {limit_bytes}"
        ));
    }
    Ok(result)
}

/// Whether [`PeakAlloc`] is the global allocator: a run without it would
/// measure nothing and pass whatever the decoder does.
pub(crate) fn installed() -> bool {
    let probe_bytes = 4096;
    let (_, largest) =
        largest_allocation(|| std::hint::black_box(Vec::<u8>::with_capacity(probe_bytes)));
    largest >= probe_bytes
}
