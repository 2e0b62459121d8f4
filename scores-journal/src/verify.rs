//! Verifying sealed segments: the ones a journal no longer appends to, which [`Journal::open`]
//! does not read (it verifies only the last) and a restart from a checkpoint may never read.
//! Damage there (bit rot, a bad disk, a stray write) would otherwise go unnoticed until a
//! client asks for events inside it.
//!
//! [`Journal::open`]: crate::Journal::open

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::ops::ControlFlow;
use std::path::Path;

use crate::data_dir::{SegmentFile, segment_files};
use crate::error::JournalError;
use crate::format::{
    BATCH_HEADER_LEN, Corruption, SEGMENT_HEADER_LEN, decode_records, parse_batch_header,
    parse_segment_header, read_records,
};

/// Verifies every sealed segment of journal directory `dir` (all but the last), in order:
/// each batch whole and passing its checksums, its records numbered on from the segment's name,
/// each segment ending where the next begins. Reads a batch at a time, so memory stays small
/// whatever a segment's size. After each segment it calls `pace` with the bytes read, so that
/// a caller can bound how fast it reads, or stop ([`ControlFlow::Break`]). Returns what is
/// damaged, at most one error a segment; a segment that cannot be read at all is an error too.
pub fn verify_sealed_segments(
    dir: &Path,
    mut pace: impl FnMut(u64) -> ControlFlow<()>,
) -> Result<Vec<JournalError>, JournalError> {
    let segments = segment_files(dir)?;
    let mut damage = Vec::new();
    let Some((_, sealed)) = segments.split_last() else { return Ok(damage) };
    for (index, segment) in sealed.iter().enumerate() {
        let next_first_seq = segments[index + 1].first_seq;
        match verify_segment(segment) {
            Ok(next_seq) if next_seq == next_first_seq => {}
            Ok(next_seq) => damage.push(JournalError::Gap {
                segment: segments[index + 1].path.clone(),
                expected: next_seq,
                found: next_first_seq,
            }),
            Err(error) => damage.push(error),
        }
        if pace(segment.len).is_break() {
            break;
        }
    }
    Ok(damage)
}

/// Verifies one sealed segment; returns the sequence number after its last record.
fn verify_segment(segment: &SegmentFile) -> Result<u64, JournalError> {
    let path = &segment.path;
    let io = |error| JournalError::io("verifying journal segment", path, error);
    let corrupt = |offset: u64, corruption| JournalError::Corrupt {
        segment: path.clone(),
        offset,
        corruption,
    };
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path).map_err(io)?);
    let mut header = [0; SEGMENT_HEADER_LEN];
    reader.read_exact(&mut header).map_err(|_| corrupt(0, Corruption::SegmentHeader))?;
    let first_seq = parse_segment_header(&header).map_err(|c| corrupt(0, c))?;
    if first_seq != segment.first_seq {
        return Err(corrupt(0, Corruption::SegmentHeader));
    }
    let (mut offset, mut next_seq) = (SEGMENT_HEADER_LEN as u64, first_seq);
    let mut records = Vec::new();
    loop {
        let mut batch_header = [0; BATCH_HEADER_LEN];
        match read_full(&mut reader, &mut batch_header).map_err(io)? {
            0 => return Ok(next_seq),
            BATCH_HEADER_LEN => {}
            _ => return Err(JournalError::TornTail { segment: path.clone(), offset }),
        }
        let batch = parse_batch_header(&batch_header).map_err(|c| corrupt(offset, c))?;
        if read_records(&mut reader, batch.records_len, &mut records).map_err(io)?
            < batch.records_len
        {
            return Err(JournalError::TornTail { segment: path.clone(), offset });
        }
        batch.verify(&records).map_err(|c| corrupt(offset, c))?;
        let records_at = offset + BATCH_HEADER_LEN as u64;
        next_seq = decode_records(&records, next_seq, drop)
            .map_err(|(at, c)| corrupt(records_at + at as u64, c))?;
        offset = records_at + batch.records_len as u64;
    }
}

/// Fills `buf` as far as the file goes; returns how many bytes it read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
