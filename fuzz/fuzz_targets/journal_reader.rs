//! A segment holding arbitrary bytes after a valid header, in memory: the reader and the
//! recovery scan must both answer (records, or a typed error; never a panic) and agree. Where
//! the scan finds valid batches and then nothing, the reader reads exactly their records; where
//! the scan finds a tail, the reader reads them and then an error; where the scan finds damage
//! inside the log, the reader ends in an error too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scores_journal::{Reader, scan_segment};

fuzz_target!(|body: &[u8]| {
    let mut segment = b"SCORESJ1".to_vec();
    segment.extend_from_slice(&1u64.to_le_bytes());
    segment.extend_from_slice(body);
    let scan = scan_segment(&segment);
    let (mut n_records, mut failed) = (0u64, false);
    for record in Reader::from_bytes(segment) {
        match record {
            Ok(record) => {
                assert!(!failed, "a record after an error");
                n_records += 1;
                assert_eq!(record.seq, n_records, "records numbered from the header's 1");
            }
            Err(_) => failed = true,
        }
    }
    match scan {
        Ok(scan) => {
            assert_eq!(n_records, scan.next_seq - 1, "{scan:?}");
            assert_eq!(failed, scan.tail.is_some(), "{scan:?}");
        }
        Err(damage) => assert!(failed, "the scan found {damage:?}, the reader nothing"),
    }
});
