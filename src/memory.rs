//! The process's use of glibc malloc, tuned for a server that holds one large table.
//!
//! glibc gives each thread that allocates concurrently its own arena (up to eight per core)
//! and keeps what is freed in each for reuse. Discovery parses, the planner, apply and the
//! read model each run on their own threads, so a replica kept several arenas, each holding
//! the peak of a transient it once built: measured at 100k targets, 17–19% of the resident
//! memory (docs/benchmarks.md, "Scale"). Four arenas, and a trim after large rebuilds, return
//! that to the system; so does a fixed mmap threshold for large blocks.
//!
//! The two calls below are the only foreign calls of the crate: `mallopt` before any thread
//! is started, `malloc_trim` at any time (both are thread-safe in glibc).

#![allow(unsafe_code)]

/// Arenas glibc may create. Measured at 100k targets (docs/benchmarks.md): 2 arenas saved
/// another 10-20% of the leader's memory but slowed a cold start by about a second (threads
/// waiting on arena locks); 4 keep the cold start and most of the saving.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 4;

/// Blocks at least this large get their own mapping, returned to the system when freed.
/// glibc starts at 128 KiB but raises its threshold to the size of every large block freed
/// (up to 32 MiB), so after a cold start (JSON pages of an API-server list, decoded group
/// lists, the vectors of a full plan) such blocks came from the arenas and their memory
/// stayed there, fragmented between long-lived objects. A fixed threshold keeps them out:
/// measured at 100k targets (docs/benchmarks.md, "Scale"), the leader's resident memory fell
/// by 13% (shape K) and the followers' by 13–17%, with no slower cold start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Limit glibc's arenas and fix its mmap threshold. Call first in `main`, before the runtime
/// starts its threads; `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` set in the environment
/// win.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: `mallopt` only sets a parameter of the allocator; it takes no pointers.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, ARENAS);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// Give memory freed after a large rebuild back to the system (glibc keeps it otherwise).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
