//! The board at scale, on the three workloads users have: memory per result while ingesting
//! and after a restore, and the speed of each step a service takes with it (fold while
//! publishing, checkpoint, restore, fold the log's tail after it, replay).
//!
//! Run with `cargo bench -p scores-core --bench memory` (10M events per workload);
//! `N_EVENTS=3000000` for fewer, `WORKLOAD=simulated-100k` for one. Heap bytes come from a
//! counting allocator; CPU-seconds from `/proc/self/stat`, beside wall time.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use scores_core::{ScoreEvent, Scoreboard};

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

/// Events folded between two snapshots while "ingesting": about what the service folds in its
/// 5 ms between snapshots at full speed.
const INGEST_BATCH: usize = 4_096;

/// This process's user + system CPU time so far.
fn cpu_time() -> Duration {
    let usage = std::fs::read_to_string("/proc/self/stat").ok().and_then(|stat| {
        let fields: Vec<u64> = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        Some(fields.iter().sum::<u64>())
    });
    // Clock ticks are 100 a second on Linux.
    Duration::from_millis(usage.unwrap_or(0) * 10)
}

/// Runs `step`, printing its wall and CPU time, and events a second over `n_events`.
fn timed<T>(label: &str, n_events: usize, step: impl FnOnce() -> T) -> T {
    let (started, cpu) = (Instant::now(), cpu_time());
    let value = step();
    let (wall, cpu) = (started.elapsed(), cpu_time().saturating_sub(cpu));
    let rate = if n_events > 0 {
        format!(", {:.2} M events/s", n_events as f64 / wall.as_secs_f64() / 1e6)
    } else {
        String::new()
    };
    println!(
        "  {label:<44} {:>6.2} s wall, {:>6.2} CPU-s{rate}",
        wall.as_secs_f64(),
        cpu.as_secs_f64()
    );
    value
}

fn heap_per_result(label: &str, base: usize, n_results: u64) {
    let heap = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(base);
    println!("  {label:<44} {:>6.1} heap bytes per result", heap as f64 / n_results as f64);
}

/// Makes a workload of so many events.
type Workload = fn(usize) -> Vec<ScoreEvent>;

fn run(name: &str, events: &[ScoreEvent]) {
    println!("{name}: {} events", events.len());
    let base = LIVE_BYTES.load(Ordering::Relaxed);
    let at_checkpoint = events.len() * 6 / 10;
    let (head, tail) = events.split_at(at_checkpoint);

    // Ingest: fold in batches, a snapshot after each, the last one kept (as readers hold it).
    let mut board = Scoreboard::new();
    let snapshot = timed("fold 60%, a snapshot every 4096 events", head.len(), || {
        let mut snapshot = board.snapshot();
        for batch in head.chunks(INGEST_BATCH) {
            board.apply_all(batch);
            snapshot = board.snapshot();
        }
        snapshot
    });
    heap_per_result("board + last snapshot", base, snapshot.n_results());
    let bytes = timed("encode checkpoint", 0, || snapshot.encode_checkpoint());
    println!(
        "  {:<44} {:>6.1} bytes per result",
        "checkpoint",
        bytes.len() as f64 / snapshot.n_results() as f64
    );
    drop((board, snapshot));

    // A clean restart: the checkpoint at the head, published.
    let base_with_bytes = LIVE_BYTES.load(Ordering::Relaxed);
    let base = base_with_bytes - bytes.len();
    let snapshot = timed("restart: decode checkpoint, first snapshot", 0, || {
        Scoreboard::decode_checkpoint(&bytes).expect("own checkpoint decodes").snapshot()
    });
    heap_per_result("restored snapshot", base_with_bytes, snapshot.n_results());
    drop(snapshot);

    // A restart after a crash: the log's tail folded after the checkpoint, then published.
    let mut board = timed("restart after a crash: decode checkpoint", 0, || {
        Scoreboard::decode_checkpoint(&bytes).expect("own checkpoint decodes")
    });
    drop(bytes);
    timed("  then fold the 40% tail", tail.len(), || board.apply_all(tail));
    let snapshot = timed("  then the first snapshot", 0, || board.snapshot());
    heap_per_result("board + snapshot after the tail", base, snapshot.n_results());
    drop((board, snapshot));

    let base = LIVE_BYTES.load(Ordering::Relaxed);
    let snapshot = timed("replay: fold 100%, then snapshot", events.len(), || {
        let mut board = Scoreboard::new();
        board.apply_all(events);
        board.snapshot()
    });
    heap_per_result("replayed snapshot", base, snapshot.n_results());
    println!(
        "  {:<44} {} results, {} students, {} exams",
        "board",
        snapshot.n_results(),
        snapshot.n_students(),
        snapshot.n_exams()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants it quick.
    let default_events =
        if std::env::args().any(|arg| arg == "--bench") { 10_000_000 } else { 100_000 };
    let n_events =
        std::env::var("N_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(default_events);
    let only = std::env::var("WORKLOAD").ok();
    let workloads: [(&str, Workload); 3] = [
        ("simulated-defaults (200 students, 1,000 exams, bursts of 20)", |n| {
            workload::simulated(n, 200, 1_000, 20, 4)
        }),
        ("simulated-100k (100k students, 10k exams, bursts of 20)", |n| {
            workload::simulated(n, 100_000, 10_000, 20, 4)
        }),
        ("increasing (100k students, a new exam every 1,000 events)", |n| {
            workload::events(n, 100_000, 1_000, 4)
        }),
    ];
    for (name, events) in workloads {
        if only.as_deref().is_some_and(|only| !name.starts_with(only)) {
            continue;
        }
        run(name, &events(n_events));
    }
}
