//! A snapshot as bytes, so that a restart folds only the log's tail.
//!
//! The encoding is compact and positional (all integers little-endian):
//!
//! ```text
//! "SCORESC1"  seq:u64  n_results:u64
//! n_students:u32  { id_len:u16 id:[u8]  n:u32 { exam:u64 score:f64 }* }*   by student index
//! n_exams:u32     { exam:u64  n:u32 { student_index:u32 score:f64 }* }*     by exam, then index
//! ```
//!
//! Decoding checks everything a reader relies on (ids, scores, orders, indices, counts), so bad
//! bytes give a [`CheckpointError`], never a panic or a board that answers wrongly. Integrity
//! against bit rot is the storage layer's job (the journal checksums the bytes).

use std::sync::Arc;

use crate::event::{ExamId, InvalidScore, InvalidStudentId, Score, StudentId};
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
        let mut snapshot = Snapshot { seq, n_results, ..Snapshot::default() };
        let mut n_student_results = 0u64;
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
            if snapshot.student_index.insert(id.clone(), index).is_some() {
                return Err(CheckpointError::Inconsistent("a student id appears twice"));
            }
            snapshot.student_ids.push(id);
            snapshot.students.push(StudentEntry { results: Arc::new(results), average });
        }
        let n_exams = input.u32()? as usize;
        let mut n_exam_results = 0u64;
        let mut previous_exam = None;
        for _ in 0..n_exams {
            let exam = ExamId(input.u64()?);
            if previous_exam.is_some_and(|previous| previous >= exam) {
                return Err(CheckpointError::Inconsistent("exams are out of order"));
            }
            previous_exam = Some(exam);
            let n = input.u32()? as usize;
            let mut results = imbl::OrdMap::new();
            let mut previous_idx = None;
            for _ in 0..n {
                let student_idx = input.u32()?;
                let score = Score::new(input.f64()?).map_err(CheckpointError::Score)?;
                if student_idx as usize >= n_students {
                    return Err(CheckpointError::Inconsistent("an exam names an unknown student"));
                }
                if previous_idx.is_some_and(|previous| previous >= student_idx) {
                    return Err(CheckpointError::Inconsistent(
                        "an exam's students are out of order",
                    ));
                }
                previous_idx = Some(student_idx);
                results.insert(student_idx, score);
            }
            n_exam_results += n as u64;
            let sum = RunningSum::of(results.values().map(|score| score.get()));
            let average = sum.mean(results.len());
            let entry = ExamEntry { average, results, by_student_id: Arc::default() };
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
