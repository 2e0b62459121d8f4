//! Resident memory per event at 10M events, and fold speed at that size.
//! Run with `cargo bench -p scores-core --bench memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use scores_core::Scoreboard;

mod workload;

/// Counts the bytes the program holds on the heap.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call forwards to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[allow(clippy::print_stdout)]
fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants it quick.
    let n_events: usize =
        if std::env::args().any(|arg| arg == "--bench") { 10_000_000 } else { 100_000 };
    let events = workload::events(n_events, 100_000, 1_000, 4);
    let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
    let rss_before = resident_bytes().unwrap_or(0);

    let started = Instant::now();
    let mut board = Scoreboard::new();
    board.extend(&events);
    let folded = started.elapsed();
    let snapshot = board.snapshot();
    let published = started.elapsed() - folded;

    let heap = LIVE_BYTES.load(Ordering::Relaxed) - heap_before;
    let rss = resident_bytes().unwrap_or(0).saturating_sub(rss_before);
    println!("events:               {n_events}");
    println!("results:              {}", snapshot.n_results());
    println!(
        "fold:                 {:.2} M events/s",
        n_events as f64 / folded.as_secs_f64() / 1e6
    );
    println!("first snapshot:       {:.3} s", published.as_secs_f64());
    println!("heap bytes per event: {:.1} (scoreboard + snapshot)", heap as f64 / n_events as f64);
    println!("rss bytes per event:  {:.1}", rss as f64 / n_events as f64);
    drop(snapshot);
}
