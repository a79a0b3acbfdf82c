//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps what a burst frees (parsing a large config, the first round of
//! polls, a reload) in per-thread arenas, so a steady daemon's resident memory would stay at
//! its peak. The daemon limits the arenas to two and, every few seconds, asks the allocator to
//! return free pages; both are no-ops with other allocators or C libraries.

/// Before the runtime's threads start: at most two malloc arenas.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; M_ARENA_MAX takes a count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free pages of every arena to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
