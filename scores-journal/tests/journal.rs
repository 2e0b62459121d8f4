//! The journal's documented outcomes: round trips, torn tails, corruption, empty segments,
//! checkpoints, and waiting for appends.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scores_core::{ScoreEvent, Scoreboard};
use scores_journal::{
    Corruption, Entry, FsyncPolicy, Journal, JournalError, Options, Reader, load_checkpoint,
    save_checkpoint, verify_sealed_segments,
};

/// The entry stored at `seq` in these tests: content derived from the number, so any record
/// can be checked on its own.
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

fn entries(seqs: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    seqs.map(entry).collect()
}

const SMALL_SEGMENTS: Options = Options { fsync: FsyncPolicy::Never, segment_bytes: 4096 };

fn read_all(journal: &Journal, from: u64) -> Vec<u64> {
    journal
        .read_from(from)
        .map(|record| {
            let record = record.unwrap();
            assert_eq!(
                Entry { event: record.event, upstream_id: record.upstream_id },
                entry(record.seq)
            );
            record.seq
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    paths.sort();
    paths
}

/// Appends batches of 10 up to `n` records and closes the journal.
fn journal_with(dir: &Path, n: u64, options: Options) {
    let (mut journal, _) = Journal::open(dir, options).unwrap();
    for start in (1..=n).step_by(10) {
        journal.append(&entries(start..=(start + 9).min(n))).unwrap();
    }
}

#[test]
fn records_come_back_in_order_from_any_sequence_number_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 500, SMALL_SEGMENTS);
    assert!(segments(dir.path()).len() > 3, "small segments rotate");
    let (journal, recovery) = Journal::open(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!(recovery.last_seq, 500);
    assert_eq!(recovery.torn_tail, None);
    assert_eq!(journal.next_seq(), 501);
    assert_eq!(journal.last_upstream_id(), "500");
    assert_eq!(read_all(&journal, 1), (1..=500).collect::<Vec<_>>());
    assert_eq!(read_all(&journal, 0), (1..=500).collect::<Vec<_>>());
    assert_eq!(read_all(&journal, 237), (237..=500).collect::<Vec<_>>());
    assert_eq!(read_all(&journal, 500), [500]);
    assert_eq!(read_all(&journal, 501), Vec::<u64>::new());
    let offline: Vec<u64> = Reader::open_dir(dir.path()).unwrap().map(|r| r.unwrap().seq).collect();
    assert_eq!(offline, (1..=500).collect::<Vec<_>>());
}

#[test]
fn a_journal_kept_as_a_window_lets_its_oldest_segments_go_and_reopens_from_the_first_kept() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 500, SMALL_SEGMENTS);
    let (mut journal, _) = Journal::open(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!(journal.first_seq(), 1);
    let n_segments = segments(dir.path()).len();
    journal.discard_before(237).unwrap();
    let first = journal.first_seq();
    assert!(first > 1 && first <= 237, "only whole segments before 237 go: {first}");
    assert!(segments(dir.path()).len() < n_segments);
    assert_eq!(read_all(&journal, first), (first..=500).collect::<Vec<_>>());
    // Reopened, it holds the same window and appends after it.
    drop(journal);
    let (mut journal, recovery) = Journal::open(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!((journal.first_seq(), recovery.last_seq), (first, 500));
    // Past the end: everything goes, and numbering goes on.
    journal.discard_before(501).unwrap();
    assert_eq!(journal.first_seq(), 501);
    assert!(read_all(&journal, 501).is_empty());
    journal.append(&entries(501..=510)).unwrap();
    drop(journal);
    let (journal, _) = Journal::open(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!(read_all(&journal, journal.first_seq()), (501..=510).collect::<Vec<_>>());
}

#[test]
fn one_segment_file_reads_on_its_own_whatever_it_is_called() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 500, SMALL_SEGMENTS);
    let second = segments(dir.path())[1].clone();
    let copy = dir.path().join("copy.bin");
    fs::copy(&second, &copy).unwrap();
    let seqs: Vec<u64> = Reader::open_segment(&copy).map(|r| r.unwrap().seq).collect();
    let first = seqs[0];
    assert!(first > 1, "the second segment starts past the first");
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());

    fs::write(&copy, b"this file is not a journal segment").unwrap();
    let results: Vec<_> = Reader::open_segment(&copy).collect();
    assert!(matches!(&results[..], [Err(JournalError::Corrupt { offset: 0, .. })]), "{results:?}");
}

#[test]
fn a_missing_or_empty_directory_starts_a_new_log() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("not/yet/there");
    let (mut journal, recovery) = Journal::open(&dir, Options::default()).unwrap();
    assert_eq!((recovery.last_seq, journal.next_seq(), journal.last_upstream_id()), (0, 1, ""));
    assert_eq!(journal.append(&[]).unwrap(), 0);
    assert_eq!(journal.append(&entries(1..=3)).unwrap(), 3);
    assert_eq!(read_all(&journal, 1), [1, 2, 3]);
}

#[test]
fn a_tail_cut_at_any_byte_of_the_last_batch_is_cut_off_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 20, Options::default());
    let segment = segments(dir.path()).pop().unwrap();
    let whole = fs::read(&segment).unwrap();
    let (mut journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    journal.append(&entries(21..=25)).unwrap();
    drop(journal);
    let with_last_batch = fs::read(&segment).unwrap();
    for cut in whole.len() + 1..with_last_batch.len() {
        fs::write(&segment, &with_last_batch[..cut]).unwrap();
        let (journal, recovery) = Journal::open(dir.path(), Options::default()).unwrap();
        let torn = recovery.torn_tail.expect("a torn tail is reported");
        assert_eq!(
            (torn.offset, torn.bytes_dropped),
            (whole.len() as u64, (cut - whole.len()) as u64)
        );
        assert_eq!(recovery.last_seq, 20);
        assert_eq!(journal.last_upstream_id(), "20");
        assert_eq!(read_all(&journal, 1), (1..=20).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&segment).unwrap().len(), whole.len() as u64);
    }
}

#[test]
fn zeros_at_the_tail_are_torn_and_other_bytes_are_kept_aside_and_appending_goes_on() {
    let garbage = [vec![0xAB; 40], b"SJB1 not really a batch".to_vec()];
    for (tail, torn) in
        [(vec![0u8; 3000], true), (garbage[0].clone(), false), (garbage[1].clone(), false)]
    {
        let dir = tempfile::tempdir().unwrap();
        journal_with(dir.path(), 30, Options::default());
        let segment = segments(dir.path()).pop().unwrap();
        let length = fs::metadata(&segment).unwrap().len();
        OpenOptions::new().append(true).open(&segment).unwrap().write_all(&tail).unwrap();
        let (mut journal, recovery) = Journal::open(dir.path(), Options::default()).unwrap();
        if torn {
            assert_eq!(recovery.torn_tail.unwrap().bytes_dropped, tail.len() as u64);
            assert_eq!(recovery.quarantined, None);
        } else {
            let kept = recovery.quarantined.expect("the bytes are kept aside");
            assert_eq!((kept.offset, kept.bytes), (length, tail.len() as u64));
            assert_eq!(fs::read(&kept.file).unwrap(), tail);
            assert_eq!(recovery.torn_tail, None);
        }
        assert_eq!(journal.append(&entries(31..=40)).unwrap(), 40);
        drop(journal);
        let (journal, recovery) = Journal::open(dir.path(), Options::default()).unwrap();
        assert_eq!((recovery.torn_tail, recovery.quarantined), (None, None));
        assert_eq!(read_all(&journal, 1), (1..=40).collect::<Vec<_>>());
    }
}

#[test]
fn a_flipped_byte_in_the_last_whole_batch_is_kept_aside_never_cut_off_silently() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 20, Options::default());
    let segment = segments(dir.path()).pop().unwrap();
    let before_last = fs::read(&segment).unwrap().len();
    let (mut journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    journal.append(&entries(21..=40)).unwrap();
    drop(journal);
    let whole = fs::read(&segment).unwrap();
    // A byte of a record, and a byte of the batch header.
    for at in [whole.len() - 10, before_last + 5] {
        let mut bytes = whole.clone();
        bytes[at] ^= 0x01;
        fs::write(&segment, &bytes).unwrap();
        let (journal, recovery) = Journal::open(dir.path(), Options::default()).unwrap();
        let kept = recovery.quarantined.expect("a damaged last batch is reported");
        assert_eq!(kept.offset, before_last as u64, "flipped at {at}");
        assert_eq!(fs::read(&kept.file).unwrap(), &bytes[before_last..]);
        assert_eq!(recovery.torn_tail, None);
        assert_eq!(recovery.last_seq, 20);
        assert_eq!(read_all(&journal, 1), (1..=20).collect::<Vec<_>>());
        drop(journal);
        fs::remove_file(&kept.file).unwrap();
    }
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    match Journal::open(dir.path(), Options::default()) {
        Err(JournalError::Locked { dir: locked, holder }) => {
            assert_eq!(locked, dir.path());
            assert_eq!(holder, Some(std::process::id()));
        }
        other => panic!("a second writer opened the journal: {other:?}"),
    }
    let message = Journal::open(dir.path(), Options::default()).unwrap_err().to_string();
    assert!(
        message.contains(&format!("in use by another process (pid {})", std::process::id())),
        "{message}"
    );
    drop(journal);
    Journal::open(dir.path(), Options::default()).expect("free again once the first is dropped");
}

#[test]
fn damage_before_a_valid_batch_is_corruption_named_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 30, Options::default());
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    // Byte 16 is the first batch's header; 16 + 16 + 20 lies inside its first record.
    for (at, expected) in [(16usize, Corruption::BatchHeader), (52, Corruption::BatchChecksum)] {
        bytes[at] ^= 0x40;
        fs::write(&segment, &bytes).unwrap();
        match Journal::open(dir.path(), Options::default()) {
            Err(JournalError::Corrupt { segment: reported, offset, corruption }) => {
                assert_eq!((reported, offset, corruption), (segment.clone(), 16, expected));
            }
            other => panic!("expected corruption at byte 16, got {other:?}"),
        }
        bytes[at] ^= 0x40;
    }
}

#[test]
fn damage_in_an_earlier_segment_is_reported_by_readers_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 500, SMALL_SEGMENTS);
    let first = segments(dir.path()).remove(0);
    let mut bytes = fs::read(&first).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&first, &bytes).unwrap();
    let (journal, _) = Journal::open(dir.path(), SMALL_SEGMENTS).unwrap();
    let results: Vec<_> = journal.read_from(1).collect();
    let error = results.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(error, JournalError::Corrupt { segment, corruption: Corruption::BatchChecksum, .. } if *segment == first),
        "{error}"
    );
    assert!(
        results[..results.len() - 1].iter().all(Result::is_ok),
        "records before the damage still read"
    );
    assert!(error.to_string().contains("is corrupt at byte"), "{error}");
}

/// A byte flipped in a segment the checkpoint covers went unnoticed: the service was ready,
/// and only a client reading that far found the damage.
#[test]
fn verifying_sealed_segments_finds_damage_anywhere_with_its_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 500, SMALL_SEGMENTS);
    let paths = segments(dir.path());
    assert!(paths.len() >= 4, "{paths:?}");
    let mut paced = 0;
    assert!(
        verify_sealed_segments(dir.path(), |bytes| {
            paced += bytes;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .is_empty()
    );
    let sealed_bytes: u64 =
        paths[..paths.len() - 1].iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert_eq!(paced, sealed_bytes, "every sealed segment read, the active one not");

    // One byte flipped in a record, in the second segment; one cut off the end of the third.
    let mut bytes = fs::read(&paths[1]).unwrap();
    bytes[100] ^= 0x01;
    fs::write(&paths[1], &bytes).unwrap();
    let bytes = fs::read(&paths[2]).unwrap();
    fs::write(&paths[2], &bytes[..bytes.len() - 1]).unwrap();
    let damage =
        verify_sealed_segments(dir.path(), |_| std::ops::ControlFlow::Continue(())).unwrap();
    assert_eq!(damage.len(), 2, "{damage:?}");
    assert!(
        matches!(&damage[0], JournalError::Corrupt { segment, offset: 16, corruption: Corruption::BatchChecksum } if *segment == paths[1]),
        "{}",
        damage[0]
    );
    assert!(
        matches!(&damage[1], JournalError::TornTail { segment, .. } if *segment == paths[2]),
        "{}",
        damage[1]
    );
}

/// Found by the fuzzer: a batch header whose checksum holds but whose length says 3.4 GB made
/// readers allocate all of it before reading, and the process ran out of memory.
#[test]
fn a_batch_longer_than_its_file_allocates_nothing_and_is_cut_short() {
    let header = [0x53, 0x4a, 0x42, 0x31, 0x00, 0x38, 0x00, 0xce];
    let crcs = [0x10, 0x53, 0x53, 0x4a, 0xfe, 0x2f, 0x71, 0xbd];
    let mut segment = b"SCORESJ1".to_vec();
    segment.extend_from_slice(&1u64.to_le_bytes());
    segment.extend_from_slice(&header);
    segment.extend_from_slice(&crcs);
    let results: Vec<_> = Reader::from_bytes(segment.clone()).collect();
    assert!(matches!(results[..], [Err(JournalError::TornTail { offset: 16, .. })]), "{results:?}");
    // Sealed, followed by another segment: the verifier says the same.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("00000000000000000001.seg"), &segment).unwrap();
    fs::write(dir.path().join("00000000000000000002.seg"), b"SCORESJ1\x02\0\0\0\0\0\0\0").unwrap();
    let damage =
        verify_sealed_segments(dir.path(), |_| std::ops::ControlFlow::Continue(())).unwrap();
    assert!(matches!(damage[..], [JournalError::TornTail { offset: 16, .. }]), "{damage:?}");
}

#[test]
fn a_zero_length_last_segment_is_recreated_and_the_previous_id_recovered() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 30, Options::default());
    fs::write(dir.path().join(format!("{:020}.seg", 31)), b"").unwrap();
    let (mut journal, recovery) = Journal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(recovery.torn_tail.unwrap().bytes_dropped, 0);
    assert_eq!((recovery.last_seq, journal.last_upstream_id()), (30, "30"));
    journal.append(&entries(31..=35)).unwrap();
    assert_eq!(read_all(&journal, 1), (1..=35).collect::<Vec<_>>());
}

#[test]
fn a_zero_length_segment_between_others_is_reported_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 500, SMALL_SEGMENTS);
    let middle = segments(dir.path()).remove(1);
    fs::write(&middle, b"").unwrap();
    let errors: Vec<JournalError> =
        Reader::open_dir(dir.path()).unwrap().filter_map(Result::err).collect();
    assert!(
        matches!(&errors[..], [JournalError::TornTail { segment, offset: 0 }] if *segment == middle),
        "{errors:?}"
    );
}

#[test]
fn a_truncated_segment_copy_read_offline_reports_its_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    journal_with(dir.path(), 30, Options::default());
    let segment = segments(dir.path()).pop().unwrap();
    let bytes = fs::read(&segment).unwrap();
    fs::write(&segment, &bytes[..bytes.len() - 5]).unwrap();
    let results: Vec<_> = Reader::open_dir(dir.path()).unwrap().collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20);
    assert!(matches!(results.last().unwrap(), Err(JournalError::TornTail { .. })));
}

#[test]
fn checkpoints_round_trip_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint");
    assert!(load_checkpoint(&path).unwrap().is_none());
    let mut board: Scoreboard = (1..=200).map(|seq| entry(seq).event).collect();
    let snapshot = board.snapshot();
    save_checkpoint(&path, &snapshot).unwrap();
    let loaded = load_checkpoint(&path).unwrap().unwrap().snapshot();
    assert_eq!(loaded.seq(), 200);
    assert_eq!(loaded.n_results(), snapshot.n_results());
    assert_eq!(loaded.encode_checkpoint(), snapshot.encode_checkpoint());
    assert!(!dir.path().join("checkpoint.tmp").exists());

    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let error = load_checkpoint(&path).unwrap_err();
    assert!(error.to_string().contains("bad header or checksum"), "{error}");
}

#[test]
fn an_extended_reader_goes_on_from_where_it_stands_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), SMALL_SEGMENTS).unwrap();
    let handle = journal.read_handle();
    // One reader from the start, one from the live end (nothing to read until appends), one
    // from the middle of the first batch.
    let mut readers =
        [(handle.read_from(1), 1), (handle.read_from(1), 1), (handle.read_from(3), 3)];
    readers[1].0 = handle.read_from(handle.last_seq() + 1);
    let mut next_seq = 1;
    for round in 0..60u64 {
        let n = round * 7 % 39 + 1;
        journal.append(&entries(next_seq..=next_seq + n - 1)).unwrap();
        next_seq += n;
        for (reader, expected) in &mut readers {
            handle.extend(reader).unwrap();
            // Some rounds take part of what there is, or extend twice, leaving records
            // buffered or nothing new.
            let take = if round % 3 == 0 { (round % 20) as usize } else { usize::MAX };
            for record in reader.by_ref().take(take) {
                let record = record.unwrap();
                assert_eq!(record.seq, *expected, "round {round}");
                assert_eq!(
                    Entry { event: record.event, upstream_id: record.upstream_id },
                    entry(record.seq)
                );
                *expected += 1;
            }
            if round % 5 == 0 {
                handle.extend(reader).unwrap();
            }
        }
    }
    assert!(segments(dir.path()).len() > 10, "the reads crossed segments");
    for (reader, expected) in &mut readers {
        handle.extend(reader).unwrap();
        for record in reader.by_ref() {
            assert_eq!(record.unwrap().seq, *expected);
            *expected += 1;
        }
        assert_eq!(*expected, next_seq, "every record read once, in order");
        assert!(reader.next().is_none(), "nothing past the end");
    }
}

#[test]
fn an_extended_reader_reads_again_what_it_had_read_ahead_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), SMALL_SEGMENTS).unwrap();
    journal.append(&entries(1..=3)).unwrap();
    // A failed append leaves bytes past the end, which the journal then cuts off and writes
    // again. A reader reads them ahead meanwhile.
    let segment = segments(dir.path()).pop().unwrap();
    let durable_len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[0xFF; 200]).unwrap();
    let handle = journal.read_handle();
    let mut reader = handle.read_from(1);
    assert_eq!(reader.by_ref().map(|r| r.unwrap().seq).collect::<Vec<_>>(), [1, 2, 3]);
    OpenOptions::new().write(true).open(&segment).unwrap().set_len(durable_len).unwrap();
    journal.append(&entries(4..=5)).unwrap();
    handle.extend(&mut reader).unwrap();
    assert_eq!(reader.map(|r| r.unwrap().seq).collect::<Vec<_>>(), [4, 5]);
}

#[tokio::test]
async fn readers_wait_for_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    let mut handle = journal.read_handle();
    let waiter = tokio::spawn(async move {
        let last = handle.wait_beyond(0).await.unwrap();
        handle.read_from(1).map(|r| r.unwrap().seq).take(last as usize).collect::<Vec<_>>()
    });
    journal.append(&entries(1..=3)).unwrap();
    assert_eq!(waiter.await.unwrap(), [1, 2, 3]);
    let mut handle = journal.read_handle();
    drop(journal);
    assert!(handle.wait_beyond(3).await.is_err(), "a closed journal ends the wait");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the batch sizes, segment size, starting point and how much is read between
    /// appends, a reader that is extended after each append reads every record from its start
    /// once, in order.
    #[test]
    fn extended_readers_read_each_record_once(
        batches in proptest::collection::vec((1u64..30, 0usize..40), 1..40),
        segment_bytes in 512u64..8192,
        from in 1u64..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { fsync: FsyncPolicy::Never, segment_bytes };
        let (mut journal, _) = Journal::open(dir.path(), options).unwrap();
        let handle = journal.read_handle();
        let mut reader = handle.read_from(from);
        let (mut next_seq, mut expected) = (1, from);
        for (n, take) in batches {
            journal.append(&entries(next_seq..=next_seq + n - 1)).unwrap();
            next_seq += n;
            handle.extend(&mut reader).unwrap();
            for record in reader.by_ref().take(take) {
                proptest::prop_assert_eq!(record.unwrap().seq, expected);
                expected += 1;
            }
        }
        for record in reader.by_ref() {
            proptest::prop_assert_eq!(record.unwrap().seq, expected);
            expected += 1;
        }
        proptest::prop_assert_eq!(expected, next_seq.max(from));
    }
}
