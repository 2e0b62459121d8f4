//! A segment holding arbitrary bytes after a valid header must read as records or a typed error,
//! offline and through `Journal::open`'s recovery; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scores_journal::{Journal, Options, Reader};

fuzz_target!(|body: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let mut segment = b"SCORESJ1".to_vec();
    segment.extend_from_slice(&1u64.to_le_bytes());
    segment.extend_from_slice(body);
    if std::fs::write(dir.path().join("00000000000000000001.seg"), &segment).is_err() {
        return;
    }
    if let Ok(reader) = Reader::open_dir(dir.path()) {
        reader.for_each(drop);
    }
    if let Ok((journal, _)) = Journal::open(dir.path(), Options::default()) {
        journal.read_from(1).for_each(drop);
    }
});
