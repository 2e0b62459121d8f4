//! The bytes on disk: segment headers, batch frames and records, and reading them back.
//!
//! ```text
//! segment := "SCORESJ1" first_seq:u64 batch*
//! batch   := magic:u32 records_len:u32 records_crc:u32 header_crc:u32 record*
//! record  := len:u32 crc:u32 payload            (crc = CRC-32C of payload)
//! payload := seq:u64 exam:u64 score:f64 student_len:u16 student:[u8] id_len:u32 id:[u8]
//! ```
//!
//! All integers are little-endian; `header_crc` covers the batch header's first 12 bytes and
//! `records_crc` all of the batch's records. One `append` writes one batch, so a crash can tear
//! only the last batch, and a torn batch never passes its checksums.

use std::io::Read;
use std::sync::Arc;

use scores_core::{ExamId, Score, ScoreEvent, StudentId};

/// The eight bytes every segment file starts with: how a tool tells a journal file from others.
pub const SEGMENT_MAGIC: &[u8; 8] = b"SCORESJ1";
pub(crate) const SEGMENT_HEADER_LEN: usize = 16;
pub(crate) const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"SJB1");
pub(crate) const BATCH_HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
const PAYLOAD_FIXED_LEN: usize = 8 + 8 + 8 + 2 + 4;

/// One accepted event and the upstream's event id it came with, as handed to `append`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The event.
    pub event: ScoreEvent,
    /// The upstream's last event id when this event arrived (empty when it sends none); the feed
    /// resumes from the last one stored.
    pub upstream_id: Arc<str>,
}

/// An entry as stored, with the sequence number the journal gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// 1, 2, 3 … in log order.
    pub seq: u64,
    /// The event.
    pub event: ScoreEvent,
    /// The upstream's event id stored with it.
    pub upstream_id: Arc<str>,
}

/// What is wrong with bytes that should be a batch or a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The file does not start with the segment magic.
    #[error("bad segment header")]
    SegmentHeader,
    /// A batch header's magic or checksum is wrong.
    #[error("bad batch header")]
    BatchHeader,
    /// A batch's records do not match their checksum.
    #[error("batch checksum mismatch")]
    BatchChecksum,
    /// A record's length or checksum is wrong, or its payload does not parse.
    #[error("bad record")]
    Record,
    /// A record's sequence number is not the one that must come next.
    #[error("sequence number {found} where {expected} was due")]
    Sequence {
        /// The number due.
        expected: u64,
        /// The number found.
        found: u64,
    },
}

pub(crate) fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..].copy_from_slice(&first_seq.to_le_bytes());
    header
}

pub(crate) fn parse_segment_header(bytes: &[u8]) -> Result<u64, Corruption> {
    match bytes.get(..SEGMENT_HEADER_LEN) {
        Some(header) if &header[..8] == SEGMENT_MAGIC => Ok(u64_at(header, 8)),
        _ => Err(Corruption::SegmentHeader),
    }
}

/// Appends a batch holding `entries`, numbered from `first_seq`, to `out`.
pub(crate) fn encode_batch(entries: &[Entry], first_seq: u64, out: &mut Vec<u8>) {
    let batch_start = out.len();
    out.extend_from_slice(&[0; BATCH_HEADER_LEN]);
    for (seq, entry) in (first_seq..).zip(entries) {
        let record_start = out.len();
        out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        let student = entry.event.student_id.as_str().as_bytes();
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&entry.event.exam.0.to_le_bytes());
        out.extend_from_slice(&entry.event.score.get().to_le_bytes());
        // Student ids are at most 256 bytes (`StudentId::MAX_LEN`).
        out.extend_from_slice(&(student.len() as u16).to_le_bytes());
        out.extend_from_slice(student);
        out.extend_from_slice(&(entry.upstream_id.len() as u32).to_le_bytes());
        out.extend_from_slice(entry.upstream_id.as_bytes());
        let payload = &out[record_start + RECORD_HEADER_LEN..];
        let (len, crc) = (payload.len() as u32, crc32c::crc32c(payload));
        out[record_start..record_start + 4].copy_from_slice(&len.to_le_bytes());
        out[record_start + 4..record_start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let records = &out[batch_start + BATCH_HEADER_LEN..];
    let (records_len, records_crc) = (records.len() as u32, crc32c::crc32c(records));
    let header = &mut out[batch_start..batch_start + BATCH_HEADER_LEN];
    header[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&records_len.to_le_bytes());
    header[8..12].copy_from_slice(&records_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..12]);
    header[12..16].copy_from_slice(&header_crc.to_le_bytes());
}

/// A batch header that passed its own checksum.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchHeader {
    pub(crate) records_len: usize,
    pub(crate) records_crc: u32,
}

/// Parses a batch header; `bytes` must hold at least [`BATCH_HEADER_LEN`] bytes.
pub(crate) fn parse_batch_header(bytes: &[u8]) -> Result<BatchHeader, Corruption> {
    let header = bytes.get(..BATCH_HEADER_LEN).ok_or(Corruption::BatchHeader)?;
    let magic = u32_at(header, 0);
    if magic != BATCH_MAGIC || u32_at(header, 12) != crc32c::crc32c(&header[..12]) {
        return Err(Corruption::BatchHeader);
    }
    Ok(BatchHeader { records_len: u32_at(header, 4) as usize, records_crc: u32_at(header, 8) })
}

impl BatchHeader {
    /// Checks `records`, the bytes this header says follow it, against the header's checksum:
    /// what makes a batch whole. Recovery and every reader verify a batch with this.
    pub(crate) fn verify(&self, records: &[u8]) -> Result<(), Corruption> {
        if records.len() == self.records_len && crc32c::crc32c(records) == self.records_crc {
            Ok(())
        } else {
            Err(Corruption::BatchChecksum)
        }
    }
}

/// Reads the `len` bytes of a batch's records from `source` into `records` (replacing what it
/// held), growing it only as bytes arrive: a length from a damaged header (up to 4 GiB) never
/// allocates more than the source holds. Returns how many bytes were read; fewer than `len` is
/// a batch cut short.
pub(crate) fn read_records(
    source: &mut impl Read,
    len: usize,
    records: &mut Vec<u8>,
) -> std::io::Result<usize> {
    records.clear();
    source.take(len as u64).read_to_end(records)
}

/// Decodes the records of a batch whose checksum has been verified, checking that they are
/// numbered `expected_seq`, `expected_seq + 1`, … Returns the next sequence number due.
pub(crate) fn decode_records(
    mut records: &[u8],
    mut expected_seq: u64,
    mut on_record: impl FnMut(Record),
) -> Result<u64, (usize, Corruption)> {
    let total = records.len();
    while !records.is_empty() {
        let offset = total - records.len();
        let record = decode_record(records).map_err(|corruption| (offset, corruption))?;
        let (record, len) = record;
        if record.seq != expected_seq {
            let corruption = Corruption::Sequence { expected: expected_seq, found: record.seq };
            return Err((offset, corruption));
        }
        expected_seq += 1;
        records = &records[len..];
        on_record(record);
    }
    Ok(expected_seq)
}

/// Decodes the record at the start of `bytes`, checking its own checksum; returns it and its
/// length in bytes.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<(Record, usize), Corruption> {
    let header = bytes.get(..RECORD_HEADER_LEN).ok_or(Corruption::Record)?;
    let len = u32_at(header, 0) as usize;
    let payload =
        bytes.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len).ok_or(Corruption::Record)?;
    if u32_at(header, 4) != crc32c::crc32c(payload) || payload.len() < PAYLOAD_FIXED_LEN {
        return Err(Corruption::Record);
    }
    let seq = u64_at(payload, 0);
    let exam = ExamId(u64_at(payload, 8));
    let score = Score::new(f64::from_bits(u64_at(payload, 16))).map_err(|_| Corruption::Record)?;
    let student_len = usize::from(u16::from_le_bytes([payload[24], payload[25]]));
    let student = payload.get(26..26 + student_len).ok_or(Corruption::Record)?;
    let student = std::str::from_utf8(student).map_err(|_| Corruption::Record)?;
    let student_id = StudentId::new(student).map_err(|_| Corruption::Record)?;
    let id_at = 26 + student_len;
    let id_len =
        payload.get(id_at..id_at + 4).map(|b| u32_at(b, 0) as usize).ok_or(Corruption::Record)?;
    if id_at + 4 + id_len != payload.len() {
        return Err(Corruption::Record);
    }
    let upstream_id = std::str::from_utf8(&payload[id_at + 4..]).map_err(|_| Corruption::Record)?;
    let record = Record {
        seq,
        event: ScoreEvent { student_id, exam, score },
        upstream_id: Arc::from(upstream_id),
    };
    Ok((record, RECORD_HEADER_LEN + len))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Finds the offset of the first valid batch header at or after `from`, if any.
pub(crate) fn find_batch_header(bytes: &[u8], from: usize) -> Option<usize> {
    let magic = BATCH_MAGIC.to_le_bytes();
    let mut at = from;
    while let Some(found) =
        bytes.get(at..).and_then(|rest| rest.windows(4).position(|w| w == magic))
    {
        let offset = at + found;
        if parse_batch_header(&bytes[offset..]).is_ok() {
            return Some(offset);
        }
        at = offset + 1;
    }
    None
}

/// One batch as bytes of its own: what a journal append writes, and what a message of a
/// distributed log carries, so that both hold events in one format, checksummed the same way.
pub mod batch {
    use super::{BATCH_HEADER_LEN, Corruption, Entry, Record, decode_records, parse_batch_header};

    /// Appends a batch holding `entries`, numbered from `first_seq`, to `out`.
    pub fn encode(entries: &[Entry], first_seq: u64, out: &mut Vec<u8>) {
        super::encode_batch(entries, first_seq, out);
    }

    /// The bytes of a batch's header.
    pub const HEADER_LEN: usize = BATCH_HEADER_LEN;

    /// The bytes `entry` takes in a batch.
    pub fn encoded_len(entry: &Entry) -> usize {
        super::RECORD_HEADER_LEN
            + super::PAYLOAD_FIXED_LEN
            + entry.event.student_id.as_str().len()
            + entry.upstream_id.len()
    }

    /// Decodes `bytes`, which must hold exactly one batch, verified against its checksums. Its
    /// records must be numbered on from the first: the first's number comes back with them.
    pub fn decode(bytes: &[u8]) -> Result<Vec<Record>, Corruption> {
        let header = parse_batch_header(bytes)?;
        let records = &bytes[BATCH_HEADER_LEN..];
        header.verify(records)?;
        let Some(first_seq) = records.get(8..16).map(|seq| super::u64_at(seq, 0)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        decode_records(records, first_seq, |record| out.push(record))
            .map_err(|(_, corruption)| corruption)?;
        Ok(out)
    }
}
