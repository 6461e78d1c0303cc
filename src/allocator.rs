//! Keeps the core's resident memory to what it uses.
//!
//! Each pass allocates and frees the swarm's JSON and the rendered configs (megabytes at 1,000
//! services). With glibc's defaults the core's RSS climbed by 2.6–3.5 MB a minute under churn
//! (`deploy/bench/soak.sh`: 14 to 53 MB in 10 minutes) while its live heap stayed under 17 MB and
//! nothing leaked (heaptrack: 0.6 MB still allocated at exit). The cause is glibc's dynamic mmap
//! threshold: after a large mmapped buffer is freed, glibc raises the threshold, so later large
//! buffers (response bodies, growing byte buffers) come from the heap, whose pages stay resident
//! and fragment. A fixed threshold keeps them mmapped (returned on free): the RSS then stayed at
//! about 13.5 MB through the churn. `malloc_trim` after each pass returns what the heap freed.

/// Buffers of this size and more are mmapped, whatever was freed before.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Sets glibc's mmap threshold to [`MMAP_THRESHOLD`] (fixed, which turns off its dynamic
/// adjustment), unless `MALLOC_MMAP_THRESHOLD_` is set. Call first in `main`, before any thread
/// starts. A no-op on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter, and no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Returns freed heap pages to the kernel (glibc's `malloc_trim(0)`); a no-op elsewhere.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
