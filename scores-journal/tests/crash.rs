//! SIGKILL at random moments: every batch whose `append` returned must survive, intact, and the
//! journal must reopen cleanly every time.
//!
//! A custom harness: run without arguments, this is the parent, which runs this same binary as
//! an appending child (selected by an environment variable), kills it with SIGKILL after a
//! random delay, and checks the journal against what the child acknowledged on stdout.

// A test binary: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scores_core::ScoreEvent;
use scores_journal::{Entry, FsyncPolicy, Journal, Options};

const CHILD_DIR: &str = "SCORES_JOURNAL_CRASH_CHILD_DIR";
const KILLS: u32 = 30;
const OPTIONS: Options = Options { fsync: FsyncPolicy::Always, segment_bytes: 256 << 10 };

fn entry(seq: u64) -> Entry {
    Entry {
        event: ScoreEvent::new(
            &format!("Student.{}", seq % 97),
            10_000 + seq / 50,
            (seq % 101) as f64 / 100.0,
        )
        .unwrap(),
        upstream_id: Arc::from(seq.to_string()),
    }
}

/// A tiny deterministic generator (xorshift), seeded per run.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn child(dir: &str) {
    let (mut journal, _) = Journal::open(dir, OPTIONS).unwrap();
    let mut state = u64::from(std::process::id()) | 1;
    let mut stdout = std::io::stdout().lock();
    loop {
        let first = journal.next_seq();
        let n = 1 + next_random(&mut state) % 300;
        let batch: Vec<Entry> = (first..first + n).map(entry).collect();
        let last = journal.append(&batch).unwrap();
        // Acknowledge only after `append` returned: from here on the batch must survive.
        writeln!(stdout, "{last}").unwrap();
        stdout.flush().unwrap();
    }
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut acknowledged = 0;
    let mut torn_tails = 0;
    for kill in 1..=KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + next_random(&mut state) % 60));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // A line cut by the kill fails to parse and is ignored: it was never a whole ack.
        let acked = lines.map_while(Result::ok).filter_map(|line| line.parse::<u64>().ok()).max();
        acknowledged = acked.unwrap_or(acknowledged).max(acknowledged);

        let (journal, recovery) = Journal::open(dir.path(), OPTIONS)
            .unwrap_or_else(|error| panic!("kill {kill}: the journal must reopen: {error}"));
        torn_tails += u32::from(recovery.torn_tail.is_some());
        assert!(
            recovery.last_seq >= acknowledged,
            "kill {kill}: acknowledged up to {acknowledged}, recovered only {}",
            recovery.last_seq
        );
        let mut expected_seq = 1;
        for record in journal.read_from(1) {
            let record = record.unwrap_or_else(|error| panic!("kill {kill}: {error}"));
            assert_eq!(record.seq, expected_seq, "kill {kill}: records are contiguous");
            let stored = Entry { event: record.event, upstream_id: record.upstream_id };
            assert_eq!(stored, entry(record.seq), "kill {kill}: record {} is intact", record.seq);
            expected_seq += 1;
        }
        assert_eq!(expected_seq - 1, recovery.last_seq, "kill {kill}: every record reads back");
    }
    println!(
        "crash: {KILLS} kills, {acknowledged} records acknowledged and all recovered, \
         {torn_tails} torn tails cut off, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("1 passed, 0 failed");
}

fn main() {
    match std::env::var(CHILD_DIR) {
        Ok(dir) => child(&dir),
        Err(_) => parent(),
    }
}
