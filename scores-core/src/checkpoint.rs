//! A board as bytes, so that a restart folds only the log's tail.
//!
//! The encoding is compact and positional (all integers little-endian):
//!
//! ```text
//! "SCORESC2"  seq:u64  n_results:u64
//! n_students:u32  { id_len:u16 id:[u8]  n:u32 }*                          by student index
//! n_exams:u32     { exam:u64  n:u32 { student_index:u32 score:f64 }* }*   by exam, then slot
//! ```
//!
//! Each result is written once, in its exam's list, in the order of its slot (the order the
//! students first had a result on it): 12 bytes a result. That is also the order the board
//! keeps, so decoding builds the fold's layout in one pass over the bytes, with no sort and no
//! search. Read exam by exam, in exam order, each result goes at the end of its student's
//! results, which so come out sorted by exam; `n` in the student section is how many there
//! are, so each student's results are allocated once.
//!
//! Decoding checks everything a reader relies on (ids, scores, orders, indices and counts: every
//! student holds exactly the results the student section counts, and no exam lists a student
//! twice), so bad bytes give a [`CheckpointError`], never a panic or a board that answers
//! wrongly. Integrity against bit rot is the storage layer's job (the journal checksums the
//! bytes).
//!
//! Checkpoints of the first format (`"SCORESC1"`, which wrote every result twice, by student
//! and by exam) are refused with [`CheckpointError::EarlierFormat`]: the log they summarise is
//! folded again instead, once, and the next checkpoint is of this format.

use std::io::{self, Write};

use rustc_hash::FxHashMap;

use crate::event::{ExamId, InvalidScore, InvalidStudentId, Score, StudentId};
use crate::prefetch::prefetch;
use crate::results::{Narrow, Stored};
use crate::running_sum::RunningSum;
use crate::scoreboard::{Parts, Scoreboard, StudentIndex, StudentParts, key};
use crate::snapshot::Snapshot;

const MAGIC: &[u8; 8] = b"SCORESC2";
const EARLIER_MAGIC: &[u8; 8] = b"SCORESC1";
/// The bytes of one result in its exam's list: the student's index and the score.
const RESULT_LEN: usize = 12;
/// The fewest bytes a student takes in the student section: an empty id and its count.
const MIN_STUDENT_LEN: usize = 6;
/// How many bytes [`Snapshot::write_checkpoint`] gathers before it writes them out.
const WRITE_CHUNK: usize = 1 << 16;

/// Why checkpoint bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    /// The bytes do not start with the checkpoint magic (or a version this build knows).
    #[error("not a scores checkpoint (bad magic)")]
    BadMagic,
    /// The bytes are a checkpoint of the first format, which this build no longer reads.
    #[error("a checkpoint of an earlier format (SCORESC1)")]
    EarlierFormat,
    /// The bytes end before the structure does.
    #[error("checkpoint truncated at byte {offset}")]
    Truncated {
        /// Where more bytes were needed.
        offset: usize,
    },
    /// Bytes follow the end of the structure.
    #[error("{n_bytes} unexpected bytes after the checkpoint")]
    TrailingBytes {
        /// How many.
        n_bytes: usize,
    },
    /// A student id is invalid.
    #[error("student {index} has an invalid id: {error}")]
    StudentId {
        /// The student's index.
        index: usize,
        /// Why.
        error: InvalidStudentId,
    },
    /// A student id is not UTF-8.
    #[error("student {index} has an id that is not UTF-8")]
    StudentIdNotUtf8 {
        /// The student's index.
        index: usize,
    },
    /// A score is invalid.
    #[error("invalid score: {0}")]
    Score(InvalidScore),
    /// The structure contradicts itself: an order, an index or a count is wrong.
    #[error("inconsistent checkpoint: {0}")]
    Inconsistent(&'static str),
}

impl Snapshot {
    /// Writes this snapshot's checkpoint to `out`, a chunk at a time, so that a board of
    /// millions of results needs no buffer of its size; see the module docs for the layout.
    pub fn write_checkpoint(&self, out: &mut impl Write) -> io::Result<()> {
        let mut chunk = Vec::with_capacity(WRITE_CHUNK + 64);
        chunk.extend_from_slice(MAGIC);
        chunk.extend_from_slice(&self.seq.to_le_bytes());
        chunk.extend_from_slice(&self.n_results.to_le_bytes());
        let n_students = self.student_index.len();
        chunk.extend_from_slice(&(n_students as u32).to_le_bytes());
        for student_idx in 0..n_students {
            let (Some(id), Some(entry)) =
                (self.student_ids.get(student_idx), self.students.get(student_idx))
            else {
                break;
            };
            chunk.extend_from_slice(&(id.as_str().len() as u16).to_le_bytes());
            chunk.extend_from_slice(id.as_str().as_bytes());
            chunk.extend_from_slice(&(entry.results.len() as u32).to_le_bytes());
            write_if_full(&mut chunk, out)?;
        }
        chunk.extend_from_slice(&(self.exams.len() as u32).to_le_bytes());
        for (exam, entry) in &self.exams {
            chunk.extend_from_slice(&exam.0.to_le_bytes());
            chunk.extend_from_slice(&(entry.results.len() as u32).to_le_bytes());
            for (student_idx, score) in entry.results.iter().map(|r| (r.student_idx(), r.score())) {
                chunk.extend_from_slice(&student_idx.to_le_bytes());
                chunk.extend_from_slice(&score.get().to_le_bytes());
                write_if_full(&mut chunk, out)?;
            }
        }
        out.write_all(&chunk)
    }

    /// This snapshot's checkpoint as bytes; see [`write_checkpoint`](Self::write_checkpoint).
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let len = 64 + self.student_index.len() * 16 + self.n_results as usize * RESULT_LEN;
        let mut out = Vec::with_capacity(len);
        // Writing to a `Vec` cannot fail.
        let _ = self.write_checkpoint(&mut out);
        out
    }

    /// Decodes checkpoint bytes; as [`Scoreboard::decode_checkpoint`], for the snapshot alone.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<Snapshot, CheckpointError> {
        Scoreboard::decode_checkpoint(bytes).map(|mut board| board.snapshot())
    }
}

impl Scoreboard {
    /// Decodes checkpoint bytes written by [`Snapshot::write_checkpoint`] into a board that goes
    /// on folding from them: the next event applied gets sequence number `seq + 1`. One pass
    /// over the bytes, in time proportional to their length. Nothing is published until the
    /// first [`snapshot`](Self::snapshot), which publishes the whole board: events folded
    /// before it (a restore's log tail) change rows that no snapshot shares, in place.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<Scoreboard, CheckpointError> {
        decode(bytes).map(Scoreboard::from_parts)
    }
}

fn write_if_full(chunk: &mut Vec<u8>, out: &mut impl Write) -> io::Result<()> {
    if chunk.len() >= WRITE_CHUNK {
        out.write_all(chunk)?;
        chunk.clear();
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<Parts, CheckpointError> {
    let mut input = Input { bytes, offset: 0 };
    match input.take(MAGIC.len())? {
        magic if magic == MAGIC => {}
        magic if magic == EARLIER_MAGIC => return Err(CheckpointError::EarlierFormat),
        _ => return Err(CheckpointError::BadMagic),
    }
    let seq = input.u64()?;
    let n_results = input.u64()?;
    let n_students = input.u32()? as usize;
    // Capacities are bounded by the bytes left, so a hostile count allocates no more than the
    // bytes themselves would fill.
    let mut students = Vec::with_capacity(n_students.min(input.remaining() / MIN_STUDENT_LEN));
    let mut counted = Vec::with_capacity(students.capacity());
    for index in 0..n_students {
        let id_len = usize::from(input.u16()?);
        let id = std::str::from_utf8(input.take(id_len)?)
            .map_err(|_| CheckpointError::StudentIdNotUtf8 { index })?;
        let id = StudentId::new(id).map_err(|error| CheckpointError::StudentId { index, error })?;
        students.push(StudentParts {
            id,
            results: Vec::new(),
            wide: Vec::new(),
            slots: Vec::new(),
        });
        counted.push(input.u32()? as usize);
    }
    if counted.iter().map(|&n| n as u64).sum::<u64>() != n_results {
        return Err(CheckpointError::Inconsistent("result counts disagree"));
    }
    if n_results > (input.remaining() / RESULT_LEN) as u64 {
        return Err(CheckpointError::Truncated { offset: bytes.len() });
    }
    // Now that the counts are known to fit in the bytes, each student's results are allocated
    // once, at their size.
    for (student, &n) in students.iter_mut().zip(&counted) {
        student.results.reserve_exact(n);
        student.slots.reserve_exact(n);
    }
    let student_index = student_index(&students)?;
    let n_exams = input.u32()? as usize;
    let mut exams: Vec<(ExamId, RunningSum, u32)> =
        Vec::with_capacity(n_exams.min(input.remaining() / 12));
    let mut n_exam_results = 0u64;
    for _ in 0..n_exams {
        let exam = ExamId(input.u64()?);
        if exams.last().is_some_and(|&(previous, _, _)| previous >= exam) {
            return Err(CheckpointError::Inconsistent("exams are out of order"));
        }
        // Nearly always; the others go to each student's wide results, after the narrow ones.
        let narrow = u32::try_from(exam.0).ok();
        let n = input.u32()? as usize;
        let listed = input.take(n.saturating_mul(RESULT_LEN))?;
        let mut sum = RunningSum::default();
        for (slot, result) in (0u32..).zip(listed.chunks_exact(RESULT_LEN)) {
            prefetch_ahead(&students, listed, slot as usize);
            let (student_idx, score) = result.split_at(4);
            let student_idx = u32::from_le_bytes(array(student_idx));
            let score =
                Score::new(f64::from_le_bytes(array(score))).map_err(CheckpointError::Score)?;
            let Some(student) = students.get_mut(student_idx as usize) else {
                return Err(CheckpointError::Inconsistent("an exam names an unknown student"));
            };
            // Exams come in order, so a student's last result is on an earlier exam, unless
            // this exam listed the student already.
            let last = match student.wide.last() {
                Some(&(last, _)) => Some(last),
                None => student.results.last().map(|result| result.exam()),
            };
            if last == Some(exam) {
                return Err(CheckpointError::Inconsistent("an exam lists a student twice"));
            }
            if student.slots.len() == counted[student_idx as usize] {
                return Err(CheckpointError::Inconsistent(
                    "a student has more results than counted",
                ));
            }
            match narrow {
                Some(exam) => student.results.push(Narrow::of(exam, score)),
                None => student.wide.push((exam, score)),
            }
            student.slots.push(slot);
            sum.add(score.get());
        }
        n_exam_results += n as u64;
        // `n` is below 2^32: `listed` holds 12 bytes a result, and the bytes are in memory.
        exams.push((exam, sum, n as u32));
    }
    if input.remaining() > 0 {
        return Err(CheckpointError::TrailingBytes { n_bytes: input.remaining() });
    }
    // No student has more results than counted, and the counts sum to `n_results`: when the
    // exams list as many, every student has exactly its count.
    if n_exam_results != n_results {
        return Err(CheckpointError::Inconsistent("result counts disagree"));
    }
    Ok(Parts { seq, n_results, students, student_index, exams })
}

/// Each student's index by id; an error when an id appears twice.
fn student_index(students: &[StudentParts]) -> Result<StudentIndex, CheckpointError> {
    let mut index = FxHashMap::default();
    index.reserve(students.len());
    for (student_idx, student) in students.iter().enumerate() {
        let student_idx = u32::try_from(student_idx)
            .map_err(|_| CheckpointError::Inconsistent("more than 2^32 students"))?;
        if index.insert(key(&student.id), student_idx).is_some() {
            return Err(CheckpointError::Inconsistent("a student id appears twice"));
        }
    }
    Ok(index)
}

/// How many of an exam's results ahead [`decode`] asks for the row of the student it will put
/// a result in; at half that distance, for the end of the student's results and slots.
const PREFETCH_AHEAD: usize = 16;

/// An exam's results name students in no order of their own, so each result put in place
/// waits on memory twice (the student's row, then the end of its results) with 100k students.
/// Asking for both ahead of time overlaps those waits.
fn prefetch_ahead(students: &[StudentParts], listed: &[u8], at: usize) {
    let student_at = |ahead: usize| {
        let bytes = listed.get((at + ahead) * RESULT_LEN..(at + ahead) * RESULT_LEN + 4)?;
        students.get(u32::from_le_bytes(array(bytes)) as usize)
    };
    if let Some(row) = student_at(PREFETCH_AHEAD) {
        prefetch(row);
    }
    if let Some(row) = student_at(PREFETCH_AHEAD / 2) {
        prefetch(row.results.as_ptr().wrapping_add(row.results.len()));
        prefetch(row.slots.as_ptr().wrapping_add(row.slots.len()));
    }
}

/// `bytes` as an array; `bytes` has its length, cut by `chunks_exact` and `split_at`.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0; N];
    array.copy_from_slice(bytes);
    array
}

/// Reading fixed-width values from a byte slice, with the offset for errors.
struct Input<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        let end = self.offset.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(CheckpointError::Truncated { offset: self.offset })?;
        let taken = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(taken)
    }

    fn u16(&mut self) -> Result<u16, CheckpointError> {
        self.take(2).map(array).map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, CheckpointError> {
        self.take(4).map(array).map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        self.take(8).map(array).map(u64::from_le_bytes)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScoreEvent, Scoreboard};

    /// The checkpoint of a board holding `results`, `(student, exam, score)`.
    fn checkpoint(results: &[(&str, u64, f64)]) -> Vec<u8> {
        let mut board = Scoreboard::new();
        for &(student, exam, score) in results {
            board.apply(&ScoreEvent::new(student, exam, score).expect("valid"));
        }
        board.snapshot().encode_checkpoint()
    }

    /// Two students with a result each on one exam: the checkpoint ends with that exam's two
    /// `(student_index, score)` entries, 12 bytes each.
    fn two_results() -> Vec<u8> {
        checkpoint(&[("a", 11295, 0.25), ("b", 11295, 0.75)])
    }

    fn inconsistency(bytes: &[u8]) -> Option<&'static str> {
        match Snapshot::decode_checkpoint(bytes) {
            Err(CheckpointError::Inconsistent(why)) => Some(why),
            _ => None,
        }
    }

    #[test]
    fn each_result_takes_twelve_bytes() {
        let one = checkpoint(&[("a", 1, 0.5)]);
        let two = checkpoint(&[("a", 1, 0.5), ("a", 2, 0.5)]);
        assert_eq!(two.len() - one.len(), 8 + 4 + RESULT_LEN, "an exam and its one result");
        let three = checkpoint(&[("a", 1, 0.5), ("a", 2, 0.5), ("b", 2, 0.5)]);
        assert_eq!(three.len() - two.len(), 2 + 1 + 4 + RESULT_LEN, "a student and a result");
    }

    #[test]
    fn exams_may_list_their_students_in_any_order() {
        let bytes = two_results();
        let mut swapped = bytes.clone();
        let entries = swapped.len() - 24;
        swapped[entries..].rotate_left(12);
        let (original, swapped) = (
            Snapshot::decode_checkpoint(&bytes).expect("decodes"),
            Snapshot::decode_checkpoint(&swapped).expect("decodes"),
        );
        let results = |snapshot: &Snapshot| {
            let exam = snapshot.exam(ExamId(11295)).expect("has results");
            exam.results().map(|(id, score)| (id.to_string(), score)).collect::<Vec<_>>()
        };
        assert_eq!(results(&swapped), results(&original));
    }

    #[test]
    fn a_student_id_appearing_twice_is_inconsistent() {
        let mut bytes = two_results();
        // The second student's id, `b` (length 1 as a u16, then the byte), becomes `a`.
        let at = bytes.windows(3).position(|window| window == [1, 0, b'b']).expect("id b") + 2;
        bytes[at] = b'a';
        assert_eq!(inconsistency(&bytes), Some("a student id appears twice"));
    }

    #[test]
    fn an_exam_listing_a_student_twice_is_inconsistent() {
        let mut bytes = two_results();
        let last = bytes.len() - 12;
        // The second entry names the first student, with the first entry's score.
        let first = bytes[last - 12..last].to_vec();
        bytes[last..].copy_from_slice(&first);
        assert_eq!(inconsistency(&bytes), Some("an exam lists a student twice"));
    }

    #[test]
    fn a_student_with_more_results_than_counted_is_inconsistent() {
        // `a` on exam 1, `b` on exam 2; exam 2's one entry (the last 12 bytes) then names `a`.
        let mut bytes = checkpoint(&[("a", 1, 0.5), ("b", 2, 0.5)]);
        let last = bytes.len() - 12;
        bytes[last..last + 4].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(inconsistency(&bytes), Some("a student has more results than counted"));
    }

    #[test]
    fn counts_past_the_end_of_the_bytes_are_a_truncation_found_before_allocating() {
        let mut bytes = two_results();
        // n_results at 16, then n_students: u32 at 24; `a` is the first student: len 1, id, count.
        let huge = u64::from(u32::MAX);
        bytes[16..24].copy_from_slice(&(huge + 1).to_le_bytes());
        bytes[31..35].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Snapshot::decode_checkpoint(&bytes),
            Err(CheckpointError::Truncated { .. })
        ));
    }

    #[test]
    fn a_checkpoint_of_the_earlier_format_is_refused_by_name() {
        let mut bytes = two_results();
        bytes[..8].copy_from_slice(EARLIER_MAGIC);
        assert_eq!(Snapshot::decode_checkpoint(&bytes).err(), Some(CheckpointError::EarlierFormat));
        bytes[..8].copy_from_slice(b"SCORESX9");
        assert_eq!(Snapshot::decode_checkpoint(&bytes).err(), Some(CheckpointError::BadMagic));
    }

    #[test]
    fn a_decoded_checkpoint_writes_the_bytes_it_was_decoded_from() {
        let results: Vec<(String, u64, f64)> = (0..20_000u64)
            .map(|i| (format!("s{}", i % 700), i % 97, (i % 11) as f64 / 10.0))
            .collect();
        let results: Vec<(&str, u64, f64)> =
            results.iter().map(|(id, exam, score)| (id.as_str(), *exam, *score)).collect();
        let bytes = checkpoint(&results);
        assert!(bytes.len() > 2 * WRITE_CHUNK, "several chunks");
        let snapshot = Snapshot::decode_checkpoint(&bytes).expect("decodes");
        let mut written = Vec::new();
        snapshot.write_checkpoint(&mut written).expect("a Vec takes every write");
        assert_eq!(written, bytes);
    }
}
