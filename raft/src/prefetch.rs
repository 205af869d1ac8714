//! Asking the CPU for memory ahead of use: for loops that walk objects scattered over a
//! large heap in an order of their own (a plan's batch in (job, owner) order reads desired
//! targets stored by id hash), where waiting for each cache miss in turn is most of the loop.
//!
//! A plain read ahead does not do it: the reference counts taken in such loops are locked
//! instructions, which wait for every earlier load, so the misses are still waited for one
//! after the other. A prefetch is not held back by them.
//!
//! The one `unsafe` block asks for a `prefetcht0`, which never reads the memory and cannot
//! fault, whatever the address.

#![allow(unsafe_code)]

/// Start loading the cache line holding `address` into the caches, without waiting for it.
/// A hint only: it never reads the memory, and any address is allowed.
#[inline(always)]
pub fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` does not access memory and never faults, for any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
