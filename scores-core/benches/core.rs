//! Fold, decode and snapshot throughput. Run with `cargo bench -p scores-core --bench core`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use scores_core::{ScoreEvent, Scoreboard, decode};

mod workload;

const N_EVENTS: usize = 1_000_000;
const N_STUDENTS: u64 = 100_000;
const RESULTS_PER_EXAM: u64 = 1_000;

fn fold(c: &mut Criterion) {
    let events = workload::events(N_EVENTS, N_STUDENTS, RESULTS_PER_EXAM, 1);
    let mut group = c.benchmark_group("fold");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N_EVENTS as u64));
    group.bench_function("apply 1M events into an empty board", |b| {
        b.iter_with_large_drop(|| {
            let mut board = Scoreboard::new();
            events.iter().for_each(|event| {
                board.apply(black_box(event));
            });
            board
        })
    });
    group.bench_function("apply_all 1M events into an empty board", |b| {
        b.iter_with_large_drop(|| {
            let mut board = Scoreboard::new();
            board.apply_all(black_box(&events));
            board
        })
    });
    for every in [1024, 16384] {
        group.bench_function(format!("apply 1M events, snapshot every {every}"), |b| {
            b.iter_with_large_drop(|| {
                let mut board = Scoreboard::new();
                let mut snapshot = board.snapshot();
                for batch in events.chunks(every) {
                    batch.iter().for_each(|event| {
                        board.apply(event);
                    });
                    snapshot = board.snapshot();
                }
                (board, snapshot)
            })
        });
    }
    // Hot students: 200 students, each collecting thousands of results, as with the
    // simulator's defaults. Publishing copies what changed; this is where that must stay small.
    let hot_students = workload::events(N_EVENTS, 200, RESULTS_PER_EXAM, 1);
    group.bench_function("apply 1M events over 200 students, snapshot every 16384", |b| {
        b.iter_with_large_drop(|| {
            let mut board = Scoreboard::new();
            let mut snapshot = board.snapshot();
            for batch in hot_students.chunks(16384) {
                batch.iter().for_each(|event| {
                    board.apply(event);
                });
                snapshot = board.snapshot();
            }
            (board, snapshot)
        })
    });
    let few_students = workload::events(N_EVENTS, 1_000, RESULTS_PER_EXAM, 1);
    group.bench_function("apply 1M events over 1k students into an empty board", |b| {
        b.iter_with_large_drop(|| {
            let mut board = Scoreboard::new();
            few_students.iter().for_each(|event| {
                board.apply(black_box(event));
            });
            board
        })
    });
    group.finish();
}

fn decode_throughput(c: &mut Criterion) {
    let lines: Vec<String> = workload::events(100_000, N_STUDENTS, RESULTS_PER_EXAM, 2)
        .iter()
        .map(|event| serde_json::to_string(event).expect("serializable"))
        .collect();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    group.bench_function("decode 100k feed events", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(decode("score", black_box(line)).is_ok());
            }
        })
    });
    group.finish();
}

fn snapshot_cost(c: &mut Criterion) {
    let events = workload::events(N_EVENTS + 1024, N_STUDENTS, RESULTS_PER_EXAM, 3);
    let (history, recent) = events.split_at(N_EVENTS);
    let mut folded = Scoreboard::new();
    folded.extend(history);
    let mut published = folded.clone();
    published.snapshot();

    let mut group = c.benchmark_group("snapshot at 1M events");
    group.sample_size(10);
    group.bench_function("first snapshot (publish once after folding 1M)", |b| {
        // The routine returns the board so that dropping it is not timed.
        b.iter_batched(
            || folded.clone(),
            |mut board| (board.snapshot(), board),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("after 1024 more events", |b| {
        b.iter_batched(
            || {
                let mut board = published.clone();
                board.extend(recent);
                board
            },
            |mut board| (board.snapshot(), board),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("with nothing changed", |b| {
        let mut board = published.clone();
        b.iter(|| board.snapshot())
    });
    group.finish();
}

/// The service under load at 100k students: a board already holding 5M results, folding batches
/// of 65,536 and publishing after each, the previous snapshot freed as it is replaced. Two
/// shapes: exams that advance as the feed's do (each exam collects ~1,000 results and is done),
/// and the simulator's 1,000 exams recurring in bursts of 20, so that every exam keeps growing
/// (5,000 results each at the start). The 5M boards are built only when this benchmark runs, and
/// after the others: they would change their memory.
fn fold_onto_a_grown_board(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N_EVENTS as u64));
    type Workload = fn(usize, u64) -> Vec<ScoreEvent>;
    let shapes: [(&str, Workload); 2] = [
        ("", |n, seed| workload::events(n, N_STUDENTS, RESULTS_PER_EXAM, seed)),
        (", the simulator's exams", |n, seed| workload::simulated(n, N_STUDENTS, 1_000, 20, seed)),
    ];
    for (shape, events_of) in shapes {
        let events = events_of(N_EVENTS, 1);
        let grown = std::sync::OnceLock::new();
        let name =
            format!("apply_all 1M events onto 5M over 100k students{shape}, snapshot every 65536");
        group.bench_function(name, |b| {
            let grown = grown.get_or_init(|| {
                let mut board: Scoreboard = events_of(5 * N_EVENTS, 2).into_iter().collect();
                let _ = board.snapshot();
                board
            });
            b.iter_batched(
                || grown.clone(),
                |mut board| {
                    let mut snapshot = board.snapshot();
                    for batch in events.chunks(65536) {
                        board.apply_all(batch);
                        snapshot = board.snapshot();
                    }
                    (board, snapshot)
                },
                BatchSize::LargeInput,
            )
        });
    }
}

criterion_group!(benches, fold, decode_throughput, snapshot_cost, fold_onto_a_grown_board);
criterion_main!(benches);
