//! A snapshot as bytes, so that a restart folds only the log's tail.
//!
//! The encoding is compact and positional (all integers little-endian):
//!
//! ```text
//! "SCORESC1"  seq:u64  n_results:u64
//! n_students:u32  { id_len:u16 id:[u8]  n:u32 { exam:u64 score:f64 }* }*   by student index
//! n_exams:u32     { exam:u64  n:u32 { student_index:u32 score:f64 }* }*     by exam, then slot
//! ```
//!
//! An exam's results come in the order of their slots (the order the students first had a
//! result on it); checkpoints written before slots list them by student index, which decodes
//! the same. Decoding checks everything a reader relies on (ids, scores, orders, indices, counts,
//! and that the exams hold exactly the students' results), so bad bytes give a
//! [`CheckpointError`], never a panic or a board that answers wrongly. Integrity
//! against bit rot is the storage layer's job (the journal checksums the bytes).

use std::sync::Arc;

use crate::event::{ExamId, InvalidScore, InvalidStudentId, Score, StudentId};
use crate::id_index::IdIndex;
use crate::running_sum::RunningSum;
use crate::snapshot::{ExamEntry, Snapshot, StudentEntry};

const MAGIC: &[u8; 8] = b"SCORESC1";

/// Why checkpoint bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    /// The bytes do not start with the checkpoint magic (or a version this build knows).
    #[error("not a scores checkpoint (bad magic)")]
    BadMagic,
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
    /// Encodes this snapshot as checkpoint bytes; see the module docs for the layout.
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.n_results as usize * 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.n_results.to_le_bytes());
        let n_students = self.student_index.len();
        out.extend_from_slice(&(n_students as u32).to_le_bytes());
        for student_idx in 0..n_students {
            let (Some(id), Some(entry)) =
                (self.student_ids.get(student_idx), self.students.get(student_idx))
            else {
                break;
            };
            out.extend_from_slice(&(id.as_str().len() as u16).to_le_bytes());
            out.extend_from_slice(id.as_str().as_bytes());
            out.extend_from_slice(&(entry.results.len() as u32).to_le_bytes());
            for (exam, score) in entry.results.iter() {
                out.extend_from_slice(&exam.0.to_le_bytes());
                out.extend_from_slice(&score.get().to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.exams.len() as u32).to_le_bytes());
        for (exam, entry) in &self.exams {
            out.extend_from_slice(&exam.0.to_le_bytes());
            out.extend_from_slice(&(entry.results.len() as u32).to_le_bytes());
            for (student_idx, score) in entry.results.iter() {
                out.extend_from_slice(&student_idx.to_le_bytes());
                out.extend_from_slice(&score.get().to_le_bytes());
            }
        }
        out
    }

    /// Decodes checkpoint bytes written by [`encode_checkpoint`](Self::encode_checkpoint).
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<Snapshot, CheckpointError> {
        let mut input = Input { bytes, offset: 0 };
        if input.take(MAGIC.len())? != MAGIC {
            return Err(CheckpointError::BadMagic);
        }
        let seq = input.u64()?;
        let n_results = input.u64()?;
        let n_students = input.u32()? as usize;
        // What changed when is not kept: everything is as of the checkpoint.
        let mut snapshot = Snapshot {
            seq,
            n_results,
            students_changed_at: seq,
            exams_changed_at: seq,
            ..Snapshot::default()
        };
        let mut n_student_results = 0u64;
        let mut ids_in_order = Vec::with_capacity(n_students.min(input.remaining() / 8));
        for index in 0..n_students {
            let id_len = usize::from(input.u16()?);
            let id = std::str::from_utf8(input.take(id_len)?)
                .map_err(|_| CheckpointError::StudentIdNotUtf8 { index })?;
            let id =
                StudentId::new(id).map_err(|error| CheckpointError::StudentId { index, error })?;
            let n = input.u32()? as usize;
            let mut results = Vec::with_capacity(n.min(input.remaining() / 16));
            for _ in 0..n {
                let exam = ExamId(input.u64()?);
                let score = Score::new(input.f64()?).map_err(CheckpointError::Score)?;
                if results.last().is_some_and(|(previous, _)| *previous >= exam) {
                    return Err(CheckpointError::Inconsistent(
                        "a student's exams are out of order",
                    ));
                }
                results.push((exam, score));
            }
            n_student_results += n as u64;
            let sum = RunningSum::of(results.iter().map(|(_, score)| score.get()));
            let average = sum.mean(results.len());
            let index = u32::try_from(index)
                .map_err(|_| CheckpointError::Inconsistent("more than 2^32 students"))?;
            ids_in_order.push((id.clone(), index));
            snapshot.student_ids.push(id);
            let changed_at = snapshot.seq;
            snapshot.students.push(StudentEntry {
                results: Arc::new(results),
                average,
                changed_at,
            });
        }
        ids_in_order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if ids_in_order.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(CheckpointError::Inconsistent("a student id appears twice"));
        }
        snapshot.student_index =
            IdIndex::from_sorted(ids_in_order.iter().map(|(id, index)| (id.as_str(), *index)));
        let n_exams = input.u32()? as usize;
        let mut n_exam_results = 0u64;
        let mut previous_exam = None;
        // Per student, 1 + the ordinal of the last exam that listed them: a student listed
        // twice by one exam is caught without a set per exam.
        let mut listed_by = vec![0u32; n_students];
        for ordinal in 1..=n_exams as u32 {
            let exam = ExamId(input.u64()?);
            if previous_exam.is_some_and(|previous| previous >= exam) {
                return Err(CheckpointError::Inconsistent("exams are out of order"));
            }
            previous_exam = Some(exam);
            let n = input.u32()? as usize;
            let mut results = imbl::Vector::new();
            for _ in 0..n {
                let student_idx = input.u32()?;
                let score = Score::new(input.f64()?).map_err(CheckpointError::Score)?;
                let Some(listed_by) = listed_by.get_mut(student_idx as usize) else {
                    return Err(CheckpointError::Inconsistent("an exam names an unknown student"));
                };
                if *listed_by == ordinal {
                    return Err(CheckpointError::Inconsistent("an exam lists a student twice"));
                }
                *listed_by = ordinal;
                let student = snapshot.students.get(student_idx as usize);
                let student_has_it = student.is_some_and(|student| {
                    let found = student.results.binary_search_by_key(&exam, |(exam, _)| *exam);
                    found.is_ok_and(|index| student.results[index].1 == score)
                });
                if !student_has_it {
                    return Err(CheckpointError::Inconsistent(
                        "an exam's result is not among its student's results",
                    ));
                }
                results.push_back((student_idx, score));
            }
            n_exam_results += n as u64;
            let sum = RunningSum::of(results.iter().map(|(_, score)| score.get()));
            let average = sum.mean(results.len());
            let changed_at = snapshot.seq;
            let entry = ExamEntry { average, results, changed_at, by_student_id: Arc::default() };
            snapshot.exams.insert(exam, entry);
        }
        if input.remaining() > 0 {
            return Err(CheckpointError::TrailingBytes { n_bytes: input.remaining() });
        }
        if n_student_results != n_results || n_exam_results != n_results {
            return Err(CheckpointError::Inconsistent("result counts disagree"));
        }
        Ok(snapshot)
    }
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

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CheckpointError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u16(&mut self) -> Result<u16, CheckpointError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, CheckpointError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        self.array().map(u64::from_le_bytes)
    }

    fn f64(&mut self) -> Result<f64, CheckpointError> {
        self.array().map(f64::from_le_bytes)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScoreEvent, Scoreboard};

    /// Two students with a result each on one exam: the checkpoint ends with that exam's two
    /// `(student_index, score)` entries, 12 bytes each.
    fn two_results() -> Vec<u8> {
        let mut board = Scoreboard::new();
        for (student, score) in [("a", 0.25), ("b", 0.75)] {
            board.apply(&ScoreEvent::new(student, 11295, score).expect("valid"));
        }
        board.snapshot().encode_checkpoint()
    }

    fn inconsistency(bytes: &[u8]) -> Option<&'static str> {
        match Snapshot::decode_checkpoint(bytes) {
            Err(CheckpointError::Inconsistent(why)) => Some(why),
            _ => None,
        }
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
    fn an_exam_result_its_student_lacks_is_inconsistent() {
        let mut bytes = two_results();
        let score_at = bytes.len() - 8;
        bytes[score_at..].copy_from_slice(&0.5f64.to_le_bytes());
        assert_eq!(
            inconsistency(&bytes),
            Some("an exam's result is not among its student's results")
        );
    }
}
