//! Append rate per fsync policy, replay read speed from a 10M-event journal, and restart time
//! (open + load checkpoint + fold the tail). Run with `cargo bench -p scores-journal`.
//! The journal is written under `$SCORES_BENCH_DIR` (default: the system temp directory).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use scores_core::{ExamId, Score, ScoreEvent, Scoreboard, StudentId};
use scores_journal::{Entry, FsyncPolicy, Journal, Options, load_checkpoint, save_checkpoint};

const BATCH: usize = 1_000;

fn entries(n: usize, first_seq: u64, students: &[StudentId]) -> Vec<Entry> {
    (first_seq..first_seq + n as u64)
        .map(|seq| Entry {
            event: ScoreEvent {
                student_id: students
                    [(seq.wrapping_mul(0x9E37_79B9) % students.len() as u64) as usize]
                    .clone(),
                exam: ExamId(10_000 + seq / 1_000),
                score: Score::new((seq % 1_000) as f64 / 999.0).unwrap(),
            },
            upstream_id: Arc::from(seq.to_string()),
        })
        .collect()
}

fn append(
    dir: &std::path::Path,
    fsync: FsyncPolicy,
    n_events: usize,
    students: &[StudentId],
) -> f64 {
    let options = Options { fsync, ..Options::default() };
    let (mut journal, _) = Journal::open(dir, options).unwrap();
    let batches: Vec<Vec<Entry>> =
        (0..n_events / BATCH).map(|i| entries(BATCH, (i * BATCH) as u64 + 1, students)).collect();
    let started = Instant::now();
    for batch in &batches {
        journal.append(batch).unwrap();
    }
    journal.sync().unwrap();
    n_events as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let n_events = if quick { 100_000 } else { 10_000_000 };
    let base = std::env::var_os("SCORES_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let students: Vec<StudentId> =
        (0..100_000).map(|i| StudentId::new(&format!("Student.Name{i}")).unwrap()).collect();

    for (name, fsync, n) in [
        ("always (fdatasync per 1,000-event batch)", FsyncPolicy::Always, n_events / 10),
        ("interval 10 ms", FsyncPolicy::Interval(Duration::from_millis(10)), n_events),
        ("never", FsyncPolicy::Never, n_events / 10),
    ] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let rate = append(dir.path(), fsync, n, &students);
        println!("append, fsync {name}: {:.2} M events/s ({n} events)", rate / 1e6);
    }

    let dir = tempfile::tempdir_in(&base).unwrap();
    append(dir.path(), FsyncPolicy::Never, n_events, &students);
    let (journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    let started = Instant::now();
    let n_read = journal.read_from(1).inspect(|record| assert!(record.is_ok())).count();
    let read_rate = n_read as f64 / started.elapsed().as_secs_f64();
    println!("replay read: {:.2} M events/s ({n_read} events)", read_rate / 1e6);
    drop(journal);

    // A checkpoint 100k events before the end, as a periodic checkpoint would leave it.
    let checkpoint = dir.path().join("checkpoint");
    let tail = 100_000.min(n_events / 10);
    let (journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    let mut board: Scoreboard =
        journal.read_from(1).take(n_events - tail).map(|r| r.unwrap().event).collect();
    save_checkpoint(&checkpoint, &board.snapshot()).unwrap();
    drop((journal, board));
    let checkpoint_bytes = std::fs::metadata(&checkpoint).unwrap().len();

    let started = Instant::now();
    let (journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    let opened = started.elapsed();
    let mut board = load_checkpoint(&checkpoint).unwrap().unwrap();
    let loaded = started.elapsed() - opened;
    let from = board.seq() + 1;
    board.extend(journal.read_from(from).map(|r| r.unwrap().event));
    let snapshot = board.snapshot();
    let total = started.elapsed();
    assert_eq!(snapshot.seq(), n_events as u64);
    println!(
        "restart with {n_events} events journaled: {:.2} s (open {:.2} s, load {} MB checkpoint {:.2} s, fold {tail}-event tail and publish {:.2} s)",
        total.as_secs_f64(),
        opened.as_secs_f64(),
        checkpoint_bytes / 1_000_000,
        loaded.as_secs_f64(),
        (total - opened - loaded).as_secs_f64()
    );
}
