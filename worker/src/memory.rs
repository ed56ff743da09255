//! The process's allocator settings: what keeps the peak RSS of a build of a large context in
//! bounds (issue 15: ≤ 50 MB at 100,000 files).
//!
//! glibc gives each thread that contends for malloc an arena of its own, up to eight per core,
//! and a freed block stays in its arena; blocks above a threshold are mmapped, but that
//! threshold grows to the largest block freed so far (up to 32 MiB), so after the first large
//! table is freed the next ones are carved from the heap and never returned. A build's large
//! tables (the walked context, the stat cache, the file lists of a selection) are made and
//! freed by different threads of rayon's and tokio's pools: with 100,000 files, the arenas
//! and the grown threshold cost about 45 MB of the 110 MB a one-file edit peaked at
//! (bench/scaling/README.md). One arena and a fixed 128 KiB threshold keep freed memory
//! reusable by any thread and return every large block to the kernel when it is freed; the
//! same builds took the same time.

use crate::sys;

/// The arena cap: one, shared by every thread.
const ARENAS: i32 = 1;
/// Blocks of this size or more are mmapped and unmapped when freed (glibc's initial value,
/// kept from growing).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Caps the C allocator's arenas and fixes its mmap threshold (see the module's note).
/// Call first thing in `main`, before any thread is started. Returns false where the C library
/// has no such settings (not glibc), which changes nothing but memory use.
pub fn limit_allocator() -> bool {
    sys::limit_malloc(ARENAS, MMAP_THRESHOLD)
}

/// Returns the free pages in the middle of the C allocator's heap to the kernel. Call after a
/// phase that freed many small blocks at once (a context walk's per-directory lists, 12 MB at
/// 100,000 files) and before the next one allocates its large tables: the next peak then does
/// not sit on top of the previous one's holes.
pub fn release_free_memory() {
    sys::trim_malloc();
}
