//! How a server's process hands memory back after a burst of large
//! messages.
//!
//! glibc serves an allocation of at least `M_MMAP_THRESHOLD` (128 KiB by
//! default) with its own `mmap`, returned to the system by `free`, but by
//! default it raises that threshold to the size of every such block that
//! is freed (up to 32 MiB). After the first 8 MB answer is freed, the next
//! ones come from the heap arenas, and a heap gives memory back only from
//! its top: with several threads' arenas and answers freed in any order,
//! most of it stays. Measured on the test server (32 connections, one
//! 8 MB answer each, all at once, connections kept open; the connection
//! buffers already shrink after a large answer): RSS 16 MiB before, 283
//! MiB at the peak, 47 MiB two seconds after with the default, 16-17 MiB
//! with a fixed threshold of 128 KiB or 1 MiB; `M_ARENA_MAX=2` alone
//! changed nothing (47 MiB). Setting the threshold fixes it (glibc stops
//! adjusting it), so a message buffer of a megabyte or more is mapped and
//! unmapped on its own. Smaller allocations, i.e. everything on the hot
//! path, are untouched; 1 MiB rather than 128 KiB keeps mid-sized
//! messages out of `mmap`'s page faults.

/// Allocations of at least this size are mapped on their own and go back
/// to the system as soon as they are freed.
pub const OWN_MAPPING_FROM: usize = 1 << 20;

/// Sets the allocator up as described above. Call it once, at start-up,
/// before threads exist ([`crate::runtime`] does); a no-op where the C
/// library is not glibc.
pub fn return_large_blocks_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(OWN_MAPPING_FROM).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a parameter of the allocator; glibc
        // documents M_MMAP_THRESHOLD as safe to set at any time.
        let done = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
        if done != 1 {
            tracing::debug!(
                "mallopt(M_MMAP_THRESHOLD) refused; freed large buffers may stay in the heap"
            );
        }
    }
}
