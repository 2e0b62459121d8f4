//! Immutable, cheaply cloned views of the scoreboard at one sequence number, and their queries.

use std::iter::Peekable;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use crate::chunked::{ChunkedVec, SlotVec};
use crate::event::{ExamId, Score, StudentId};
use crate::id_index::IdIndex;
use crate::results::Results;

/// The scoreboard as it was after folding events `1..=seq`: the projection readers query.
///
/// A `Snapshot` never changes. Cloning it is O(1) (it shares structure with the scoreboard and
/// with other snapshots), so a reader can hold one for a whole request while the writer goes on
/// folding, and every answer drawn from it reflects the same sequence number.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) n_results: u64,
    /// The sequence number of the event that added the newest student (0 before any).
    pub(crate) students_changed_at: u64,
    /// The sequence number of the event that added the newest exam (0 before any).
    pub(crate) exams_changed_at: u64,
    /// Each student's dense index, by id, in id order. Changes only when a new student appears.
    pub(crate) student_index: IdIndex,
    /// Each student's id, by dense index. Append-only.
    pub(crate) student_ids: ChunkedVec<StudentId>,
    /// Per-student results and average, by dense index.
    pub(crate) students: ChunkedVec<StudentEntry>,
    pub(crate) exams: imbl::OrdMap<ExamId, ExamEntry>,
    /// Each student's position in id order, by dense index: computed by the first reader that
    /// needs it and shared by every snapshot with the same students. The publisher replaces it
    /// whenever a student is added.
    pub(crate) ranks: Arc<OnceLock<Ranks>>,
}

/// Positions in student-id order, by dense student index.
pub(crate) type Ranks = Arc<[u32]>;

#[derive(Clone, Debug)]
pub(crate) struct StudentEntry {
    /// This student's current score per exam, sorted by exam, shared with the writer.
    pub(crate) results: Results,
    pub(crate) average: f64,
    /// The sequence number of the last event that changed this student's results.
    pub(crate) changed_at: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ExamEntry {
    /// `(student index, score)` by slot: a student's result keeps the slot it took when it was
    /// new, so a new result is appended and a regrade replaces one value. Publishing a batch
    /// then copies the tail and the chunks regraded, where a map keyed by student copied a
    /// node for nearly every result added. Plain `Copy` data: no string is compared.
    pub(crate) results: SlotVec<ExamResult, EXAM_CHUNK>,
    pub(crate) average: f64,
    /// The sequence number of the last event that changed this exam's results.
    pub(crate) changed_at: u64,
    /// The results in student-id order, computed by the first reader that asks and shared by
    /// every snapshot holding this version of the exam. The writer replaces it on each change.
    pub(crate) by_student_id: Arc<OnceLock<ByStudentId>>,
}

/// An exam's results in student-id order.
type ByStudentId = Arc<[ExamResult]>;

/// Exam results a chunk: with its reference counts, a chunk is 1,024 bytes, an allocator size
/// class of its own.
pub(crate) const EXAM_CHUNK: usize = 84;

const _: () = assert!(16 + EXAM_CHUNK * std::mem::size_of::<ExamResult>() == 1024);

/// A student's result on an exam, as the exam's results hold it: the student's dense index and
/// the score, in 12 bytes where the pair `(u32, Score)` took 16 (its `f64` aligned to 8), so a
/// board's exam results take a quarter less memory, and publishing copies a quarter less.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, packed(4))]
pub(crate) struct ExamResult {
    student_idx: u32,
    score: Score,
}

// The packing is the point: a board holds one of these per result.
const _: () = assert!(std::mem::size_of::<ExamResult>() == 12);

impl ExamResult {
    pub(crate) fn new(student_idx: u32, score: Score) -> ExamResult {
        ExamResult { student_idx, score }
    }

    pub(crate) fn student_idx(self) -> u32 {
        self.student_idx
    }

    pub(crate) fn score(self) -> Score {
        self.score
    }
}

/// Which part of a sorted list to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page<'a, K: ?Sized> {
    /// At most this many items; `None` for all that remain.
    pub limit: Option<usize>,
    /// Start after this key (the `next` of the previous page); `None` to start at the beginning.
    pub after: Option<&'a K>,
}

impl<K: ?Sized> Page<'_, K> {
    /// The whole list.
    pub const ALL: Self = Page { limit: None, after: None };
}

/// One page of a sorted list, borrowed from its snapshot: an iterator over the page's items, in
/// order, then [`next_cursor`](Listing::next_cursor), where the next page starts. Nothing is
/// copied: a page of 100k student ids is written straight from the snapshot's index.
#[derive(Debug)]
pub struct Listing<'a, K: ?Sized, I: Iterator<Item = &'a K>> {
    /// How many items the whole list holds.
    pub total: usize,
    rest: Peekable<I>,
    left: usize,
    last: Option<&'a K>,
}

impl<'a, K: ?Sized, I: Iterator<Item = &'a K>> Listing<'a, K, I> {
    fn new(items: I, limit: Option<usize>, total: usize) -> Self {
        Listing { total, rest: items.peekable(), left: limit.unwrap_or(usize::MAX), last: None }
    }

    /// When more items follow this page, the cursor to pass as [`Page::after`] for the next
    /// (the page's last item). The page's items not yet taken are skipped.
    pub fn next_cursor(mut self) -> Option<&'a K> {
        self.by_ref().for_each(drop);
        self.last.filter(|_| self.rest.peek().is_some())
    }
}

impl<'a, K: ?Sized, I: Iterator<Item = &'a K>> Iterator for Listing<'a, K, I> {
    type Item = &'a K;

    fn next(&mut self) -> Option<&'a K> {
        self.left = self.left.checked_sub(1)?;
        let item = self.rest.next()?;
        self.last = Some(item);
        Some(item)
    }
}

/// A student's current results, sorted by exam, and their average.
#[derive(Clone, Debug)]
pub struct StudentReport {
    /// The student.
    pub student_id: StudentId,
    results: Results,
    /// The mean of the student's current score per exam.
    pub average: f64,
}

impl StudentReport {
    /// `(exam, score)` for each exam the student has a result for, by exam number.
    pub fn results(&self) -> impl ExactSizeIterator<Item = (ExamId, Score)> + '_ {
        self.results.iter()
    }
}

/// An exam's current results, sorted by student, and their average.
#[derive(Clone, Debug)]
pub struct ExamReport {
    /// The exam.
    pub exam: ExamId,
    results: ByStudentId,
    student_ids: ChunkedVec<StudentId>,
    /// The mean of the exam's current score per student.
    pub average: f64,
}

impl ExamReport {
    /// `(student, score)` for each student with a result on this exam, by student id.
    pub fn results(&self) -> impl ExactSizeIterator<Item = (&StudentId, Score)> + '_ {
        self.results.iter().map(|result| {
            let (student_idx, score) = (result.student_idx(), result.score());
            // Every index in an exam's results was pushed to `student_ids` in the same merge
            // or an earlier one, and `student_ids` is append-only.
            let id = self
                .student_ids
                .get(student_idx as usize)
                .expect("exam results index known students");
            (id, score)
        })
    }

    /// How many students have a result on this exam.
    pub fn n_results(&self) -> usize {
        self.results.len()
    }
}

impl Snapshot {
    /// The sequence number of the last event folded into this snapshot (0 before any).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How many students have at least one result.
    pub fn n_students(&self) -> usize {
        self.student_index.len()
    }

    /// How many exams have at least one result.
    pub fn n_exams(&self) -> usize {
        self.exams.len()
    }

    /// How many (student, exam) results there are.
    pub fn n_results(&self) -> u64 {
        self.n_results
    }

    /// The sequence number of the last event that changed the list of students (added one):
    /// the student list of this snapshot is that of every snapshot from that number on that
    /// has as many students. 0 before any student. After a restore from a checkpoint it may
    /// name the checkpoint's sequence number instead, which is as true: the list did not
    /// change between the two.
    pub fn students_changed_at(&self) -> u64 {
        self.students_changed_at
    }

    /// As [`students_changed_at`](Self::students_changed_at), for the list of exams.
    pub fn exams_changed_at(&self) -> u64 {
        self.exams_changed_at
    }

    /// The sequence number of the last event that changed `student_id`'s results (and so its
    /// average), or `None` for a student with no results. Two snapshots that give the same
    /// number give the same report. As with the lists, a restored board may name its
    /// checkpoint's number for a student unchanged since.
    pub fn student_changed_at(&self, student_id: &str) -> Option<u64> {
        let index = self.student_index.get(student_id)? as usize;
        Some(self.students.get(index)?.changed_at)
    }

    /// As [`student_changed_at`](Self::student_changed_at), for an exam.
    pub fn exam_changed_at(&self, exam: ExamId) -> Option<u64> {
        Some(self.exams.get(&exam)?.changed_at)
    }

    /// A page of student ids, in byte order of their UTF-8.
    pub fn students<'a>(
        &'a self,
        page: Page<'_, str>,
    ) -> Listing<'a, str, impl Iterator<Item = &'a str> + use<'a>> {
        let ids = self.student_index.after(page.after).map(|(id, _)| id);
        Listing::new(ids, page.limit, self.student_index.len())
    }

    /// A student's results and average, or `None` for a student with no results.
    pub fn student(&self, student_id: &str) -> Option<StudentReport> {
        let index = self.student_index.get(student_id)? as usize;
        let entry = self.students.get(index)?;
        Some(StudentReport {
            student_id: self.student_ids.get(index)?.clone(),
            results: entry.results.clone(),
            average: entry.average,
        })
    }

    /// A page of exam numbers, in numeric order.
    pub fn exams<'a>(
        &'a self,
        page: Page<'_, ExamId>,
    ) -> Listing<'a, ExamId, impl Iterator<Item = &'a ExamId> + use<'a>> {
        let lower = page.after.copied().map_or(Bound::Unbounded, Bound::Excluded);
        let exams = self.exams.range((lower, Bound::Unbounded)).map(|(exam, _)| exam);
        Listing::new(exams, page.limit, self.exams.len())
    }

    /// An exam's results and average, or `None` for an exam with no results.
    pub fn exam(&self, exam: ExamId) -> Option<ExamReport> {
        let entry = self.exams.get(&exam)?;
        let results = entry.by_student_id.get_or_init(|| {
            // Sorting by rank compares integers, where sorting by id would compare strings,
            // each in an allocation of its own and mostly cold.
            let ranks = self.ranks();
            let rank = |student_idx: u32| ranks.get(student_idx as usize).copied();
            let mut results: Vec<ExamResult> = entry.results.iter().copied().collect();
            results.sort_unstable_by_key(|result| rank(result.student_idx()));
            results.into()
        });
        Some(ExamReport {
            exam,
            results: results.clone(),
            student_ids: self.student_ids.clone(),
            average: entry.average,
        })
    }

    /// Each student's position in id order, by dense index.
    fn ranks(&self) -> &[u32] {
        self.ranks.get_or_init(|| {
            let mut ranks = vec![0; self.student_index.len()];
            for (rank, (_, student_idx)) in self.student_index.after(None).enumerate() {
                // Indices are dense, `0..n_students`: each student's slot is filled once.
                if let Some(slot) = ranks.get_mut(student_idx as usize) {
                    *slot = rank as u32;
                }
            }
            ranks.into()
        })
    }
}
