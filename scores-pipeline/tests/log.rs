//! One conformance suite for every log: the file journal, and a JetStream stream on a real
//! nats-server. Each case opens the log afresh (a restart) as often as it needs to, through
//! the `open` it is given.

#![allow(clippy::unwrap_used)]

#[path = "support/nats.rs"]
mod nats;

use std::sync::Arc;
use std::time::Duration;

use scores_core::wire::{exams_json, students_json};
use scores_core::{Page, ScoreEvent, Scoreboard};
use scores_pipeline::log::{Entry, Log, LogRead, Record};
use scores_pipeline::{JetStreamConfig, JetStreamLog, JournalOptions};

fn entry(n: u64) -> Entry {
    let student = format!("student{}", n % 7);
    let event = ScoreEvent::new(&student, 100 + n % 5, (n % 11) as f64 / 10.0).unwrap();
    Entry { event, upstream_id: Arc::from(format!("id-{n}")) }
}

fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
    range.map(entry).collect()
}

/// Every record from `from` to the end, through a cursor read `chunk` at a time.
fn read_all(reader: &dyn LogRead, from: u64, chunk: usize) -> Vec<Record> {
    let mut cursor = reader.cursor(from);
    let mut records = Vec::new();
    loop {
        let read = cursor.read(chunk).unwrap();
        if read.is_empty() {
            return records;
        }
        assert!(read.len() <= chunk);
        records.extend(read);
    }
}

fn check_records(records: &[Record], first_seq: u64, expected: &[Entry]) {
    assert_eq!(records.len(), expected.len());
    for ((record, entry), seq) in records.iter().zip(expected).zip(first_seq..) {
        assert_eq!(record.seq, seq);
        assert_eq!(record.event, entry.event);
        assert_eq!(record.upstream_id, entry.upstream_id);
    }
}

/// The answers a board folded from `records` gives.
fn answers(records: &[Record]) -> (Vec<u8>, Vec<u8>) {
    let mut board = Scoreboard::new();
    for record in records {
        board.apply(&record.event);
    }
    let snapshot = board.snapshot();
    (students_json(&snapshot, Page::ALL), exams_json(&snapshot, Page::ALL))
}

/// The suite. `open` opens the log as a restarted writer would; `runtime` runs the futures
/// `LogRead` returns.
fn conformance(open: &mut dyn FnMut() -> Box<dyn Log>, runtime: &tokio::runtime::Runtime) {
    // Empty.
    let mut log = open();
    assert_eq!(log.next_seq(), 1);
    assert_eq!(log.last_upstream_id(), "");
    let reader = log.reader();
    assert_eq!(reader.last_seq(), 0);
    assert!(read_all(&*reader, 1, 10).is_empty());

    // Appends are numbered on from 1, in order, and read back whole from any number, through
    // cursors read any number of records at a time.
    let first = entries(1..4);
    let second = entries(4..20);
    assert_eq!(log.append(&first).unwrap(), 3);
    assert_eq!(log.append(&second).unwrap(), 19);
    assert_eq!(log.next_seq(), 20);
    assert_eq!(log.last_upstream_id(), "id-19");
    let all: Vec<Entry> = first.iter().chain(&second).cloned().collect();
    wait_until(runtime, &*reader, 19);
    for from in 1..=20 {
        for chunk in [1, 2, 7, 100] {
            let records = read_all(&*reader, from, chunk);
            check_records(&records, from, &all[(from - 1) as usize..]);
        }
    }
    let restored: Vec<Record> = log.read_from(5).collect::<Result<_, _>>().unwrap();
    check_records(&restored, 5, &all[4..]);

    // Following: a cursor at the end reads nothing, then the next append, once durable.
    let mut cursor = reader.cursor(20);
    assert!(cursor.read(10).unwrap().is_empty());
    let waiting = reader.wait_beyond(19);
    let third = entries(20..23);
    assert_eq!(log.append(&third).unwrap(), 22);
    let last =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), waiting).await });
    assert_eq!(last.unwrap().unwrap(), 22);
    check_records(&cursor.read(10).unwrap(), 20, &third);
    assert!(cursor.read(10).unwrap().is_empty());
    drop((cursor, reader));
    log.sync().unwrap();
    drop(log);

    // A restart resumes: numbering goes on, and the last upstream id is the last stored.
    let mut log = open();
    assert_eq!(log.next_seq(), 23);
    assert_eq!(log.last_upstream_id(), "id-22");
    let reader = log.reader();
    wait_until(runtime, &*reader, 22);
    let before = read_all(&*reader, 1, 1000);
    assert_eq!(before.len(), 22);

    // Re-delivery: the same events again are stored again, numbered on, and change no answer.
    let again: Vec<Entry> = all.iter().chain(&third).cloned().collect();
    assert_eq!(log.append(&again).unwrap(), 44);
    wait_until(runtime, &*reader, 44);
    let after = read_all(&*reader, 1, 1000);
    assert_eq!(after.len(), 44);
    assert_eq!(after[..22], before[..]);
    assert_eq!(answers(&after), answers(&before));

    // A batch larger than a NATS message (1 MB) is appended whole and read back in order.
    let big: Vec<Entry> = (0..40_000u64)
        .map(|n| Entry {
            upstream_id: Arc::from(format!("big-{n}-{}", "x".repeat(20))),
            ..entry(n)
        })
        .collect();
    assert_eq!(log.append(&big).unwrap(), 44 + 40_000);
    wait_until(runtime, &*reader, 44 + 40_000);
    check_records(&read_all(&*reader, 45, 4096), 45, &big);
    assert_eq!(log.last_upstream_id(), &*big[39_999].upstream_id);
}

fn wait_until(runtime: &tokio::runtime::Runtime, reader: &dyn LogRead, seq: u64) {
    if reader.last_seq() >= seq {
        return;
    }
    let waited = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), reader.wait_beyond(seq - 1)).await
    });
    assert!(waited.unwrap().unwrap() >= seq);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn the_file_journal_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let mut open = || -> Box<dyn Log> {
        let (journal, _) =
            scores_journal::Journal::open(dir.path(), JournalOptions::default()).unwrap();
        Box::new(journal)
    };
    conformance(&mut open, &runtime);
}

#[test]
fn a_jetstream_stream_conforms() {
    let Some(server) = nats::start_one() else { return };
    let runtime = runtime();
    let config = JetStreamConfig::new(vec![server.url()]);
    let mut term = 0;
    let mut open = || -> Box<dyn Log> {
        term += 1;
        let log = runtime.block_on(JetStreamLog::connect(config.clone(), term)).unwrap();
        Box::new(log)
    };
    conformance(&mut open, &runtime);
}

#[test]
fn a_writer_opened_later_fences_the_one_before() {
    let Some(server) = nats::start_one() else { return };
    let runtime = runtime();
    let config = JetStreamConfig::new(vec![server.url()]);
    let mut old = runtime.block_on(JetStreamLog::connect(config.clone(), 1)).unwrap();
    assert_eq!(old.append(&entries(1..3)).unwrap(), 2);
    let mut new = runtime.block_on(JetStreamLog::connect(config.clone(), 2)).unwrap();
    assert_eq!(new.next_seq(), 3);
    let refused = old.append(&entries(3..5));
    assert!(
        matches!(refused, Err(scores_pipeline::LogError::Fenced { .. })),
        "the deposed writer's append: {refused:?}"
    );
    assert_eq!(new.append(&entries(3..5)).unwrap(), 4);
    let reader = new.reader();
    wait_until(&runtime, &*reader, 4);
    check_records(&read_all(&*reader, 1, 100), 1, &entries(1..5));
}
