//! With `--features heap-count`, for measuring where memory goes: the allocator counts the
//! bytes live, as asked for and as mimalloc rounds them up (its size classes), and a thread logs
//! both beside the resident set every second (target `scores::heap`). With `SCORES_HEAP_STATS`
//! set to a path, it also writes mimalloc's statistics there as JSON each second; a build with
//! `CFLAGS=-DMI_STAT=2` adds, for each size class, the blocks live and the pages that hold them.
//! Off by default: counting costs two atomic additions an allocation.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// mimalloc, counting.
pub(crate) struct Counting;

/// Bytes live, as asked for.
static REQUESTED: AtomicUsize = AtomicUsize::new(0);
/// Bytes live, as mimalloc gave them.
static USABLE: AtomicUsize = AtomicUsize::new(0);

const MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The size of the block mimalloc gave for `ptr` (0 for null).
fn usable(ptr: *const u8) -> usize {
    // SAFETY: every pointer this module passes came from mimalloc (or is null, which
    // `mi_usable_size` answers with 0).
    #[allow(unsafe_code)]
    unsafe {
        MIMALLOC.usable_size(ptr)
    }
}

// SAFETY: each method forwards to mimalloc's with the same arguments and returns what it
// returns; the counting around it only reads sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let ptr = unsafe { MIMALLOC.alloc(layout) };
        REQUESTED.fetch_add(layout.size(), Relaxed);
        USABLE.fetch_add(usable(ptr), Relaxed);
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        let ptr = unsafe { MIMALLOC.alloc_zeroed(layout) };
        REQUESTED.fetch_add(layout.size(), Relaxed);
        USABLE.fetch_add(usable(ptr), Relaxed);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED.fetch_sub(layout.size(), Relaxed);
        USABLE.fetch_sub(usable(ptr), Relaxed);
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { MIMALLOC.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = usable(ptr);
        // SAFETY: the caller's contract for `realloc`, passed on.
        let moved = unsafe { MIMALLOC.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            REQUESTED.fetch_add(new_size, Relaxed);
            REQUESTED.fetch_sub(layout.size(), Relaxed);
            USABLE.fetch_add(usable(moved), Relaxed);
            USABLE.fetch_sub(before, Relaxed);
        }
        moved
    }
}

/// Logs the heap and the resident set every `period`, on a thread of its own, for as long as
/// the process runs.
pub(crate) fn report_every(period: Duration) {
    let stats_to = std::env::var_os("SCORES_HEAP_STATS");
    let spawned = std::thread::Builder::new().name("heap-count".into()).spawn(move || {
        loop {
            std::thread::sleep(period);
            let rss_kb = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
                let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            });
            tracing::info!(
                target: "scores::heap",
                requested_mib = REQUESTED.load(Relaxed) >> 20,
                usable_mib = USABLE.load(Relaxed) >> 20,
                rss_mib = rss_kb.map(|kb| kb >> 10),
                "heap"
            );
            if let Some(path) = &stats_to {
                let written = mimalloc::MiMalloc::stats_json()
                    .map_err(std::io::Error::other)
                    .and_then(|json| std::fs::write(path, json.to_bytes()));
                if let Err(error) = written {
                    tracing::warn!(target: "scores::heap", %error, "mimalloc's statistics not written");
                }
            }
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(target: "scores::heap", %error, "no thread to report the heap");
    }
}
