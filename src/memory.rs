//! The process's use of glibc malloc, tuned for a server that holds one large table.
//!
//! glibc gives each thread that allocates concurrently its own arena (up to eight per core)
//! and keeps what is freed in each for reuse. Discovery parses, the planner, apply and the
//! read model each run on their own threads, so a replica kept several arenas, each holding
//! the peak of a transient it once built: measured at 100k targets, 17–19% of the resident
//! memory (docs/benchmarks.md, "Scale"). Four arenas, and a trim after large rebuilds, return
//! that to the system.
//!
//! The two calls below are the only foreign calls of the crate: `mallopt` before any thread
//! is started, `malloc_trim` at any time (both are thread-safe in glibc).

#![allow(unsafe_code)]

/// Arenas glibc may create. Measured at 100k targets (docs/benchmarks.md): 2 arenas saved
/// another 10-20% of the leader's memory but slowed a cold start by about a second (threads
/// waiting on arena locks); 4 keep the cold start and most of the saving.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 4;

/// Limit glibc's arenas. Call first in `main`, before the runtime starts its threads; a
/// `MALLOC_ARENA_MAX` set in the environment wins.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets a parameter of the allocator; it takes no pointers.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
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
