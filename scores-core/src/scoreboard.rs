//! The fold: [`Scoreboard::apply`] takes events one at a time; [`Scoreboard::snapshot`] publishes.
//!
//! A scoreboard has two halves, which a service may run on two threads:
//!
//! - [`Fold`] keeps what folding needs in plain hash maps and vectors, so an event costs a hash
//!   lookup and a binary search. It buffers what changed (the dirty students, the changed exam
//!   results) and hands that over as [`Changes`].
//! - [`Publisher`] merges [`Changes`] into the persistent maps of [`Snapshot`], so a hot exam
//!   that changes a thousand times between two snapshots is merged once per snapshot, not once
//!   per event, and readers share all that did not change.
//!
//! Averages are computed by the fold, event by event, so they do not depend on how events were
//! grouped into snapshots: a replay and the live service give the same bytes.

use std::sync::Arc;

use compact_str::CompactString;
use rustc_hash::FxHashMap;

use crate::event::{ExamId, Score, ScoreEvent, StudentId};
use crate::prefetch::prefetch;
use crate::results::{Found, Narrow, Row, Stored, Wide};
use crate::running_sum::RunningSum;
use crate::snapshot::{ExamEntry, ExamResult, Snapshot, StudentEntry};

mod bulk;

pub use bulk::{Resolved, StudentResolver};

/// The projection of the log: every student's and every exam's current results and averages.
///
/// One writer owns a `Scoreboard` and folds the log into it with [`apply`](Self::apply); readers
/// get immutable [`Snapshot`]s from [`snapshot`](Self::snapshot). [`split`](Self::split) parts
/// the folding from the publishing, to run them on two threads.
///
/// Semantics: a result is keyed by (student, exam); a later event for the same key replaces the
/// score (a regrade), and an event that repeats the current score changes nothing, so applying a
/// log twice gives the same board as applying it once. Averages are the mean of the current
/// scores and stay within 1e-15 relative of a recomputation however many regrades happen.
#[derive(Clone, Debug, Default)]
pub struct Scoreboard {
    fold: Fold,
    publisher: Publisher,
}

/// The folding half of a [`Scoreboard`]: applies events and hands over what they changed.
#[derive(Clone, Debug, Default)]
pub struct Fold {
    seq: u64,
    n_results: u64,
    /// Each student's dense index into `students`, in order of first appearance.
    student_index: StudentIndex,
    students: Vec<StudentRow>,
    /// Students handed over so far: those from here on are new to the publisher.
    n_students_handed_over: usize,
    /// The sequence numbers of the events that added the newest student and the newest exam.
    students_changed_at: u64,
    exams_changed_at: u64,
    exams: FxHashMap<ExamId, ExamRow>,
    /// Students changed since the last hand-over, each once.
    dirty_students: Vec<u32>,
    /// Exams changed since the last hand-over, each once.
    dirty_exams: Vec<ExamId>,
    /// Exam results changed since the last hand-over, in the order they changed; unused while
    /// `rebuild_exams` is set.
    changed_results: Vec<ResultChange>,
    /// More changes since the last hand-over than half the results the board holds (a replay,
    /// or a restore, folding millions of events before its first snapshot): the next hand-over
    /// carries every exam's results, rebuilt from the students' rows, which is then no dearer
    /// than merging the changes, and the changes are no longer buffered.
    rebuild_exams: bool,
    /// Which [`StudentResolver`] is in step with the fold: the epoch of the pass it will
    /// resolve next. 0, which no resolver holds, once a student is added another way.
    resolver_epoch: u64,
}

#[derive(Clone, Debug)]
struct StudentRow {
    id: StudentId,
    /// Sorted by exam, shared with the snapshots in two parts (see [`Row`]), with each result's
    /// slot in its exam's results beside it: a regrade names the slot it replaces, so
    /// publishing it costs no search.
    results: Row,
    sum: RunningSum,
    /// The sequence number of the last event that changed `results`.
    changed_at: u64,
    is_dirty: bool,
}

#[derive(Clone, Debug, Default)]
struct ExamRow {
    sum: RunningSum,
    /// How many students have a result on this exam: the slot the next new result takes.
    n_results: u32,
    /// The sequence number of the last event that changed this exam's results.
    changed_at: u64,
    is_dirty: bool,
}

/// A changed exam result: the new score of the student in `slot` of the exam's results.
#[derive(Clone, Copy, Debug)]
struct ResultChange {
    exam: ExamId,
    slot: u32,
    student_idx: u32,
    score: Score,
}

/// What a [`Fold`] changed since it last handed changes over: the input of
/// [`Publisher::publish`]. It owns its data, so it can cross threads.
#[derive(Debug)]
pub struct Changes {
    seq: u64,
    n_results: u64,
    students_changed_at: u64,
    exams_changed_at: u64,
    students: Vec<StudentChange>,
    exam_results: ExamResults,
    /// Each changed exam's running sum of scores, and the sequence number it last changed at.
    exam_sums: Vec<(ExamId, RunningSum, u64)>,
}

#[derive(Debug)]
struct StudentChange {
    idx: u32,
    /// The id of a student the publisher has not seen yet.
    new_id: Option<StudentId>,
    entry: StudentEntry,
}

#[derive(Debug)]
enum ExamResults {
    /// The changes in the order they happened.
    Merge(Vec<ResultChange>),
    /// Every exam's results, in slot order.
    Rebuild(Vec<(ExamId, Vec<ExamResult>)>),
}

/// Each student's dense index, by id. The ids are held inline (up to 24 bytes, as nearly all
/// are), so a lookup compares bytes in the table's own memory rather than following a pointer
/// to a cold allocation: with 100k students that was a cache miss per event.
pub(crate) type StudentIndex = FxHashMap<CompactString, u32>;

/// `student_id` as a [`StudentIndex`] key.
pub(crate) fn key(student_id: &StudentId) -> CompactString {
    CompactString::from(student_id.as_str())
}

/// The publishing half of a [`Scoreboard`]: merges [`Changes`] into the persistent maps that
/// snapshots share, and returns each new [`Snapshot`].
#[derive(Clone, Debug, Default)]
pub struct Publisher {
    published: Snapshot,
}

/// What [`Scoreboard::apply`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The first result for this (student, exam).
    New,
    /// A different score replaced the previous one.
    Regraded {
        /// The score replaced.
        previous: Score,
    },
    /// The event repeated the current score: nothing changed.
    Unchanged,
}

impl Scoreboard {
    /// An empty board at sequence number 0.
    pub fn new() -> Scoreboard {
        Scoreboard::default()
    }

    /// Folds the next event of the log into the board and advances the sequence number by one.
    pub fn apply(&mut self, event: &ScoreEvent) -> Applied {
        self.fold.apply(event)
    }

    /// Folds events in order, exactly as [`apply`](Self::apply) one at a time would; see
    /// [`Fold::apply_all`].
    pub fn apply_all<'a>(&mut self, events: impl IntoIterator<Item = &'a ScoreEvent>) {
        self.fold.apply_all(events);
    }

    /// Folds a large part of the log at once, exactly as [`apply`](Self::apply) one at a time
    /// would; see [`Fold::apply_bulk`].
    pub fn apply_bulk(&mut self, events: &[ScoreEvent]) {
        self.fold.apply_bulk(events);
    }

    /// Folds a pass resolved ahead of the fold; see [`Fold::apply_resolved`].
    pub fn apply_resolved(&mut self, pass: &Resolved) {
        self.fold.apply_resolved(pass);
    }

    /// See [`Fold::student_resolver`].
    pub fn student_resolver(&mut self) -> StudentResolver {
        self.fold.student_resolver()
    }

    /// The sequence number of the last event applied (0 before any).
    pub fn seq(&self) -> u64 {
        self.fold.seq
    }

    /// Publishes the board as it is now: merges the changes buffered since the last snapshot
    /// into the persistent maps and returns an immutable view at [`seq`](Self::seq).
    ///
    /// Costs time proportional to the changes since the last snapshot (times a logarithm), not
    /// to the size of the board; with no changes it is a clone of a few pointers.
    pub fn snapshot(&mut self) -> Snapshot {
        self.publisher.publish(self.fold.take_changes())
    }

    /// The two halves, to fold on one thread and publish on another: what
    /// [`Fold::take_changes`] returns, [`Publisher::publish`] turns into the next snapshot.
    pub fn split(self) -> (Fold, Publisher) {
        (self.fold, self.publisher)
    }
}

impl Fold {
    /// Folds the next event of the log and advances the sequence number by one.
    pub fn apply(&mut self, event: &ScoreEvent) -> Applied {
        let student_idx = self.student_idx(&event.student_id);
        self.apply_to(student_idx, event)
    }

    /// Folds events in order, exactly as [`apply`](Self::apply) one at a time would, but
    /// overlaps the memory latency of consecutive events. With more students than fit in cache,
    /// waiting on memory was most of the fold's time. Events are taken 1,024 at a time: first
    /// each is resolved to its student's index, lookups that do not depend on one another, so
    /// the processor overlaps their misses; then they are folded while what each will read is
    /// asked for some events ahead.
    pub fn apply_all<'a>(&mut self, events: impl IntoIterator<Item = &'a ScoreEvent>) {
        let mut events = events.into_iter();
        let mut resolved = Vec::new();
        loop {
            resolved.clear();
            let next = events.by_ref().take(RESOLVE_AHEAD);
            resolved.extend(next.map(|event| (self.student_idx(&event.student_id), event)));
            if resolved.is_empty() {
                return;
            }
            self.fold_resolved(&resolved);
        }
    }

    /// Folds events resolved to their students, in order. Four loads stand between an event and
    /// its fold, each needing the one before: the student's row, the header of its results
    /// (where they are, how many) and its log, their first and last exams (from which the
    /// search guesses), and the line the search starts from. Each is asked for a quarter of
    /// [`LOOKAHEAD`] events before the next needs it.
    fn fold_resolved(&mut self, events: &[(u32, &ScoreEvent)]) {
        for at in 0..events.len() {
            let row = |by: usize| {
                let &(student_idx, event) = events.get(at + by * LOOKAHEAD / 4)?;
                Some((self.students.get(student_idx as usize)?, event))
            };
            if let Some((row, _)) = row(4) {
                prefetch(row);
            }
            if let Some((row, _)) = row(3) {
                row.results.prefetch_header();
            }
            if let Some((row, _)) = row(2) {
                row.results.prefetch_ends();
            }
            if let Some((row, event)) = row(1) {
                row.results.prefetch_search(event.exam);
            }
            let (student_idx, event) = events[at];
            self.apply_to(student_idx, event);
        }
    }

    /// The sequence number of the last event applied (0 before any).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How many students have a result.
    pub fn n_students(&self) -> usize {
        self.students.len()
    }

    /// What changed since the last call, for [`Publisher::publish`]. Costs time proportional to
    /// the students and exams changed (or, after a very large batch, to the board's results).
    pub fn take_changes(&mut self) -> Changes {
        let mut students = Vec::with_capacity(self.dirty_students.len());
        for student_idx in self.dirty_students.drain(..) {
            let row = &mut self.students[student_idx as usize];
            row.is_dirty = false;
            if !row.sum.is_reliable() {
                row.sum = RunningSum::of(row.results.iter().map(|(_, score)| score.get()));
            }
            let is_new = student_idx as usize >= self.n_students_handed_over;
            students.push(StudentChange {
                idx: student_idx,
                new_id: is_new.then(|| row.id.clone()),
                entry: StudentEntry {
                    results: row.results.share(),
                    average: row.sum.mean(row.results.len()),
                    changed_at: row.changed_at,
                },
            });
        }
        self.n_students_handed_over = self.students.len();
        let exam_sums = self
            .dirty_exams
            .drain(..)
            .filter_map(|exam| {
                let row = self.exams.get_mut(&exam)?;
                row.is_dirty = false;
                Some((exam, row.sum, row.changed_at))
            })
            .collect();
        let exam_results = if self.rebuild_exams {
            self.rebuild_exams = false;
            ExamResults::Rebuild(self.results_by_exam())
        } else {
            let capacity = self.changed_results.len().min(MIN_CHANGES_TO_REBUILD as usize);
            ExamResults::Merge(std::mem::replace(
                &mut self.changed_results,
                Vec::with_capacity(capacity),
            ))
        };
        Changes {
            seq: self.seq,
            n_results: self.n_results,
            students_changed_at: self.students_changed_at,
            exams_changed_at: self.exams_changed_at,
            students,
            exam_results,
            exam_sums,
        }
    }

    /// Every exam's results from the students' rows, each in slot order: a student's result
    /// keeps the slot it took, and an exam's slots run `0..n_results`, so each result is put
    /// straight in its place.
    fn results_by_exam(&self) -> Vec<(ExamId, Vec<ExamResult>)> {
        let unfilled = ExamResult::new(u32::MAX, Score::ZERO);
        let mut by_exam: FxHashMap<ExamId, Vec<ExamResult>> = FxHashMap::default();
        by_exam.reserve(self.exams.len());
        by_exam.extend(
            self.exams.iter().map(|(&exam, row)| (exam, vec![unfilled; row.n_results as usize])),
        );
        for (student_idx, row) in (0u32..).zip(&self.students) {
            row.results.for_each_with_slot(|((exam, score), slot)| {
                let place =
                    by_exam.get_mut(&exam).and_then(|results| results.get_mut(slot as usize));
                if let Some(place) = place {
                    *place = ExamResult::new(student_idx, score);
                }
            });
        }
        by_exam.into_iter().collect()
    }

    fn apply_to(&mut self, student_idx: u32, event: &ScoreEvent) -> Applied {
        self.seq += 1;
        let ScoreEvent { exam, score, .. } = event;
        let row = &mut self.students[student_idx as usize];
        let (exam_row, slot);
        let applied = match row.results.find(*exam) {
            Found::Held(held, previous) => {
                if previous == *score {
                    return Applied::Unchanged;
                }
                slot = row.results.regrade(held, *score);
                row.sum.replace(previous.get(), score.get());
                exam_row = self.exams.entry(*exam).or_default();
                exam_row.sum.replace(previous.get(), score.get());
                Applied::Regraded { previous }
            }
            Found::Absent(absent) => {
                if row.results.is_empty() {
                    self.students_changed_at = self.seq;
                }
                row.sum.add(score.get());
                exam_row = self.exams.entry(*exam).or_default();
                exam_row.sum.add(score.get());
                if exam_row.n_results == 0 {
                    self.exams_changed_at = self.seq;
                }
                slot = exam_row.n_results;
                exam_row.n_results += 1;
                row.results.insert(absent, (*exam, *score), slot);
                self.n_results += 1;
                Applied::New
            }
        };
        row.changed_at = self.seq;
        exam_row.changed_at = self.seq;
        if !exam_row.is_dirty {
            exam_row.is_dirty = true;
            self.dirty_exams.push(*exam);
        }
        if !row.is_dirty {
            row.is_dirty = true;
            self.dirty_students.push(student_idx);
        }
        if !self.rebuild_exams {
            let change = ResultChange { exam: *exam, slot, student_idx, score: *score };
            self.changed_results.push(change);
            let rebuild_from = (self.n_results / 2).max(MIN_CHANGES_TO_REBUILD);
            if self.changed_results.len() as u64 > rebuild_from {
                self.rebuild_exams = true;
                self.changed_results = Vec::new();
            }
        }
        applied
    }

    /// A fold that goes on from `published`, over its students' and exams' rows, with nothing
    /// changed since: the fold of a restored board.
    fn resumed(
        published: &Snapshot,
        students: Vec<StudentRow>,
        exams: FxHashMap<ExamId, ExamRow>,
    ) -> Fold {
        let mut student_index = FxHashMap::default();
        student_index.reserve(students.len());
        student_index.extend(students.iter().zip(0u32..).map(|(row, idx)| (key(&row.id), idx)));
        Fold {
            seq: published.seq,
            n_results: published.n_results,
            student_index,
            n_students_handed_over: students.len(),
            students_changed_at: published.students_changed_at,
            exams_changed_at: published.exams_changed_at,
            students,
            exams,
            dirty_students: Vec::new(),
            dirty_exams: Vec::new(),
            changed_results: Vec::new(),
            rebuild_exams: false,
            resolver_epoch: 0,
        }
    }

    fn student_idx(&mut self, student_id: &StudentId) -> u32 {
        if let Some(&student_idx) = self.student_index.get(student_id.as_str()) {
            return student_idx;
        }
        self.resolver_epoch = 0;
        self.add_student(student_id)
    }

    /// Gives `student_id`, not yet known, the next dense index.
    fn add_student(&mut self, student_id: &StudentId) -> u32 {
        // Dense indices are u32: four billion students is beyond any feed this serves, and
        // saturating keeps a pathological one correct (if slow) rather than panicking.
        let student_idx = u32::try_from(self.students.len()).unwrap_or(u32::MAX);
        self.student_index.insert(key(student_id), student_idx);
        self.students.push(StudentRow {
            id: student_id.clone(),
            results: Row::default(),
            sum: RunningSum::default(),
            changed_at: 0,
            is_dirty: false,
        });
        student_idx
    }
}

impl Changes {
    /// The sequence number the snapshot built from these changes will have.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Publisher {
    /// Merges `changes` into the persistent maps and returns the snapshot at `changes.seq()`.
    /// Changes must be published in the order their fold handed them over.
    pub fn publish(&mut self, changes: Changes) -> Snapshot {
        let Changes {
            seq,
            n_results,
            students_changed_at,
            exams_changed_at,
            mut students,
            exam_results,
            mut exam_sums,
        } = changes;
        let published = &mut self.published;
        // In index order, new students (all at the end) are appended in turn.
        students.sort_unstable_by_key(|change| change.idx);
        let mut new_students = Vec::new();
        for StudentChange { idx, new_id, entry } in students {
            match new_id {
                Some(id) => {
                    published.students.push(entry);
                    published.student_ids.push(id.clone());
                    new_students.push((id, idx));
                }
                None => {
                    let known = published.students.set(idx as usize, entry);
                    debug_assert!(known, "a student not new to the publisher is published");
                }
            }
        }
        if !new_students.is_empty() {
            let new = new_students.iter().map(|(id, idx)| (id.as_str(), *idx)).collect();
            published.student_index.insert(new);
            // New students take places in id order: the ranks are computed again when needed.
            published.ranks = Arc::default();
        }
        match exam_results {
            ExamResults::Merge(mut changed) => {
                // A stable sort keeps each slot's changes in order, so the last one wins below,
                // and puts new results (each in the slot after the last) in the order they fill.
                changed.sort_by_key(|change| (change.exam, change.slot));
                for same_exam in changed.chunk_by(|a, b| a.exam == b.exam) {
                    let entry = published.exams.entry(same_exam[0].exam).or_default();
                    for same_slot in same_exam.chunk_by(|a, b| a.slot == b.slot) {
                        let change = same_slot[same_slot.len() - 1];
                        let result = ExamResult::new(change.student_idx, change.score);
                        if !entry.results.set(change.slot as usize, result) {
                            debug_assert_eq!(change.slot as usize, entry.results.len());
                            entry.results.push(result);
                        }
                    }
                    entry.by_student_id = Arc::default();
                }
            }
            ExamResults::Rebuild(by_exam) => {
                for (exam, results) in by_exam {
                    let entry = published.exams.entry(exam).or_default();
                    entry.results = results.into_iter().collect();
                    entry.by_student_id = Arc::default();
                }
            }
        }
        exam_sums.sort_unstable_by_key(|&(exam, _, _)| exam);
        for (exam, sum, changed_at) in exam_sums {
            if let Some(entry) = published.exams.get_mut(&exam) {
                entry.average = average(entry, sum);
                entry.changed_at = changed_at;
            }
        }
        published.seq = seq;
        published.n_results = n_results;
        published.students_changed_at = students_changed_at;
        published.exams_changed_at = exams_changed_at;
        published.clone()
    }
}

/// An exam's average from the fold's running sum, or, in the rare case that sum can no longer
/// vouch for its accuracy, from the exam's results.
fn average(entry: &ExamEntry, sum: RunningSum) -> f64 {
    let sum = if sum.is_reliable() {
        sum
    } else {
        RunningSum::of(entry.results.iter().map(|result| result.score().get()))
    };
    sum.mean(entry.results.len())
}

/// How many events ahead of the fold [`Fold::apply_all`] looks up rows.
const LOOKAHEAD: usize = 24;

/// How many events [`Fold::apply_all`] resolves to their students before it folds them.
const RESOLVE_AHEAD: usize = 1024;

/// Below this many buffered changes, merging them is always cheap enough.
const MIN_CHANGES_TO_REBUILD: u64 = 1 << 16;

/// A board's contents in the fold's own layout, as a checkpoint holds them: what
/// [`Scoreboard::from_parts`] builds a board from without a search or a sort.
pub(crate) struct Parts {
    pub(crate) seq: u64,
    pub(crate) n_results: u64,
    /// By dense index.
    pub(crate) students: Vec<StudentParts>,
    /// Each student's dense index, by id.
    pub(crate) student_index: StudentIndex,
    /// Each exam's running sum of scores and how many results it has.
    pub(crate) exams: Vec<(ExamId, RunningSum, u32)>,
}

/// A student's part of [`Parts`].
pub(crate) struct StudentParts {
    pub(crate) id: StudentId,
    /// Sorted by exam: those whose exams fit in 32 bits, then the others, in `wide`.
    pub(crate) results: Vec<Narrow>,
    pub(crate) wide: Vec<Wide>,
    /// Each result's slot in its exam's results, in the order of `results` then `wide`.
    pub(crate) slots: Vec<u32>,
}

impl Scoreboard {
    /// The board `parts` describe, as of `parts.seq`, with nothing published yet: the fold owns
    /// every row alone, so events folded before the first [`snapshot`](Self::snapshot) (the
    /// log's tail, at a restore) change them in place, and that snapshot publishes the whole
    /// board at once.
    pub(crate) fn from_parts(parts: Parts) -> Scoreboard {
        let Parts { seq, n_results, students, student_index, exams } = parts;
        let students: Vec<StudentRow> = students
            .into_iter()
            .map(|StudentParts { id, results, wide, slots }| StudentRow {
                id,
                sum: RunningSum::of(
                    results
                        .iter()
                        .map(|result| result.score())
                        .chain(wide.iter().map(|result| result.score()))
                        .map(Score::get),
                ),
                results: Row::new(results, wide, slots),
                changed_at: seq,
                is_dirty: true,
            })
            .collect();
        let dirty_exams = exams.iter().map(|&(exam, _, _)| exam).collect();
        let exams = exams
            .into_iter()
            .map(|(exam, sum, n_results)| {
                (exam, ExamRow { sum, n_results, changed_at: seq, is_dirty: true })
            })
            .collect();
        let fold = Fold {
            seq,
            n_results,
            student_index,
            dirty_students: (0..students.len() as u32).collect(),
            n_students_handed_over: 0,
            students_changed_at: seq,
            exams_changed_at: seq,
            students,
            exams,
            dirty_exams,
            changed_results: Vec::new(),
            rebuild_exams: true,
            resolver_epoch: 0,
        };
        Scoreboard { fold, publisher: Publisher::default() }
    }
}

impl From<Snapshot> for Scoreboard {
    /// A board that goes on folding from `snapshot`: the next event applied gets sequence
    /// number `snapshot.seq() + 1`. [`Scoreboard::decode_checkpoint`] restores a board from
    /// checkpoint bytes without building the snapshot first.
    fn from(snapshot: Snapshot) -> Scoreboard {
        let mut students = Vec::with_capacity(snapshot.n_students());
        while let (Some(id), Some(entry)) =
            (snapshot.student_ids.get(students.len()), snapshot.students.get(students.len()))
        {
            students.push(StudentRow {
                id: id.clone(),
                results: Row::of(&entry.results),
                sum: RunningSum::of(entry.results.iter().map(|(_, score)| score.get())),
                changed_at: entry.changed_at,
                is_dirty: false,
            });
        }
        // Visited exam by exam, in exam order, a student's results come up in the order the
        // student holds them: each student's next result is the one `filled` points at.
        let mut filled = vec![0usize; students.len()];
        let mut exams = FxHashMap::default();
        for (exam, entry) in &snapshot.exams {
            for (slot, student_idx) in (0u32..).zip(entry.results.iter().map(|r| r.student_idx())) {
                // A snapshot's exams and students hold the same results, so every one is found.
                let (Some(row), Some(filled)) =
                    (students.get_mut(student_idx as usize), filled.get_mut(student_idx as usize))
                else {
                    continue;
                };
                if row.results.base_exam(*filled) == Some(*exam) {
                    row.results.base_slots_mut()[*filled] = slot;
                    *filled += 1;
                }
            }
            let sum = RunningSum::of(entry.results.iter().map(|result| result.score().get()));
            let n_results = entry.results.len() as u32;
            let changed_at = entry.changed_at;
            exams.insert(*exam, ExamRow { sum, n_results, changed_at, is_dirty: false });
        }
        let fold = Fold::resumed(&snapshot, students, exams);
        Scoreboard { fold, publisher: Publisher { published: snapshot } }
    }
}

impl Extend<ScoreEvent> for Scoreboard {
    fn extend<I: IntoIterator<Item = ScoreEvent>>(&mut self, events: I) {
        events.into_iter().for_each(|event| {
            self.apply(&event);
        });
    }
}

impl<'a> Extend<&'a ScoreEvent> for Scoreboard {
    fn extend<I: IntoIterator<Item = &'a ScoreEvent>>(&mut self, events: I) {
        self.apply_all(events);
    }
}

impl FromIterator<ScoreEvent> for Scoreboard {
    fn from_iter<I: IntoIterator<Item = ScoreEvent>>(events: I) -> Scoreboard {
        let mut board = Scoreboard::new();
        board.extend(events);
        board
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::snapshot::{Listing, Page};

    fn event(student: &str, exam: u64, score: f64) -> ScoreEvent {
        ScoreEvent::new(student, exam, score).expect("valid event")
    }

    fn score(value: f64) -> Score {
        Score::new(value).expect("valid score")
    }

    /// An exam's number, results and average, as a reader sees them.
    type ExamView = (ExamId, Vec<(String, Score)>, f64);

    fn exams_of(snapshot: &Snapshot) -> Vec<ExamView> {
        let exams: Vec<ExamId> = snapshot.exams(Page::ALL).copied().collect();
        exams
            .into_iter()
            .map(|exam| {
                let report = snapshot.exam(exam).expect("listed");
                let results = report.results().map(|(id, score)| (id.to_string(), score)).collect();
                (exam, results, report.average)
            })
            .collect()
    }

    #[test]
    fn folding_far_more_changes_than_results_between_snapshots_rebuilds_the_same_exams() {
        let events: Vec<ScoreEvent> = (0..200_000u64)
            .map(|i| {
                let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                event(
                    &format!("s{}", mixed % 50),
                    10_000 + (mixed / 50) % 20,
                    (i % 101) as f64 / 100.0,
                )
            })
            .collect();
        let mut often = Scoreboard::new();
        let mut rarely = Scoreboard::new();
        for (i, event) in events.iter().enumerate() {
            often.apply(event);
            rarely.apply(event);
            if i % 1_000 == 999 {
                often.snapshot();
            }
            if i == 500 {
                rarely.snapshot();
            }
        }
        assert!(rarely.fold.rebuild_exams, "200k changes to 1k results trigger a rebuild");
        let often_snapshot = often.snapshot();
        let rarely_snapshot = rarely.snapshot();
        assert!(!rarely.fold.rebuild_exams);
        assert_eq!(exams_of(&rarely_snapshot), exams_of(&often_snapshot));
        assert_eq!(rarely_snapshot.n_results(), often_snapshot.n_results());
        // The board goes on merging changes one by one after the rebuild.
        for board in [&mut often, &mut rarely] {
            board.apply(&event("s1", 10_000, 0.123));
            board.apply(&event("new", 10_000, 0.5));
        }
        let (often_snapshot, rarely_snapshot) = (often.snapshot(), rarely.snapshot());
        let exam = rarely_snapshot.exam(ExamId(10_000)).expect("known");
        assert!(
            exam.results().any(|(id, score)| id.as_str() == "s1" && score == self::score(0.123))
        );
        assert_eq!(exams_of(&rarely_snapshot), exams_of(&often_snapshot));
    }

    /// A student's id, results and average, as a reader sees them.
    type StudentView = (String, Vec<(ExamId, Score)>, f64);

    fn students_of(snapshot: &Snapshot) -> Vec<StudentView> {
        let students = snapshot.students(Page::ALL).collect::<Vec<_>>();
        students
            .into_iter()
            .map(|id| {
                let report = snapshot.student(id).expect("listed");
                (id.to_string(), report.results().collect(), report.average)
            })
            .collect()
    }

    /// 20,000 events with new students throughout, regrades, and repeats that change nothing:
    /// folded in batches, they share students and rows with the snapshot before them.
    fn mixed_events() -> Vec<ScoreEvent> {
        (0..20_000u64)
            .map(|i| {
                let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                let student = format!("s{}", mixed % (50 + i / 100));
                event(&student, 10_000 + (mixed / 7) % 30, ((mixed / 3) % 4) as f64 / 4.0)
            })
            .collect()
    }

    #[test]
    fn apply_all_folds_exactly_as_apply_does_one_at_a_time() {
        let events = mixed_events();
        let mut one_at_a_time = Scoreboard::new();
        let mut all = Scoreboard::new();
        // Batches across several of `RESOLVE_AHEAD`, and shorter ones.
        let (long, short) = events.split_at(events.len() / 2);
        for batch in long.chunks(RESOLVE_AHEAD * 2 + 777).chain(short.chunks(777)) {
            batch.iter().for_each(|event| {
                one_at_a_time.apply(event);
            });
            all.apply_all(batch);
            let (expected, actual) = (one_at_a_time.snapshot(), all.snapshot());
            assert_eq!(actual.seq(), expected.seq());
            assert_eq!(students_of(&actual), students_of(&expected));
            assert_eq!(exams_of(&actual), exams_of(&expected));
        }
        assert!(all.snapshot().n_students() > 200);
    }

    #[test]
    fn a_split_board_publishes_on_another_thread_what_the_whole_one_does() {
        let events = mixed_events();
        // More changes at once than `MIN_CHANGES_TO_REBUILD`: the publisher rebuilds the exams.
        let many: Vec<ScoreEvent> = (0..70_000u64)
            .map(|i| event(&format!("s{}", i % 300), 10_000 + i / 300, (i % 7) as f64 / 7.0))
            .collect();
        let mut whole = Scoreboard::new();
        whole.apply(&event("restored", 1, 0.5));
        let (mut fold, mut publisher) = Scoreboard::from(whole.snapshot()).split();
        let (changes, received) = std::sync::mpsc::sync_channel(1);
        let publishing = std::thread::spawn(move || {
            received.into_iter().map(|changes| publisher.publish(changes)).collect::<Vec<_>>()
        });
        let mut rebuilt = 0;
        for batch in events.chunks(777).chain([&many[..], &events[..100]]) {
            whole.apply_all(batch);
            fold.apply_all(batch);
            let rebuilds = fold.rebuild_exams;
            rebuilt += usize::from(rebuilds);
            let handed_over = fold.take_changes();
            assert_eq!(matches!(handed_over.exam_results, ExamResults::Rebuild(_)), rebuilds);
            changes.send(handed_over).expect("the publisher runs");
        }
        drop(changes);
        let published = publishing.join().expect("the publisher does not panic");
        let expected = whole.snapshot();
        let actual = published.last().expect("published");
        assert_eq!(published.len(), events.len().div_ceil(777) + 2);
        assert_eq!(rebuilt, 1);
        assert_eq!(actual.seq(), expected.seq());
        assert_eq!(students_of(actual), students_of(&expected));
        assert_eq!(exams_of(actual), exams_of(&expected));
    }

    #[test]
    fn a_later_event_for_the_same_key_is_a_regrade() {
        let mut board = Scoreboard::new();
        assert_eq!(board.apply(&event("Marvin32", 11295, 0.64)), Applied::New);
        assert_eq!(
            board.apply(&event("Marvin32", 11295, 0.9)),
            Applied::Regraded { previous: score(0.64) }
        );
        let snapshot = board.snapshot();
        let student = snapshot.student("Marvin32").expect("known");
        assert_eq!(student.results().collect::<Vec<_>>(), [(ExamId(11295), score(0.9))]);
        assert_eq!(student.average, 0.9);
        assert_eq!(snapshot.exam(ExamId(11295)).expect("known").average, 0.9);
        assert_eq!(snapshot.n_results(), 1);
    }

    #[test]
    fn redelivery_changes_nothing_but_the_sequence_number() {
        let mut board = Scoreboard::new();
        board.apply(&event("a", 1, 0.5));
        let first = board.snapshot();
        assert_eq!(board.apply(&event("a", 1, 0.5)), Applied::Unchanged);
        let second = board.snapshot();
        assert_eq!(second.seq(), 2);
        assert_eq!(second.n_results(), first.n_results());
        assert_eq!(second.student("a").expect("known").average, 0.5);
    }

    #[test]
    fn zero_is_a_score_that_counts() {
        let mut board = Scoreboard::new();
        board.apply(&event("a", 1, 0.0));
        board.apply(&event("b", 1, 1.0));
        let snapshot = board.snapshot();
        assert_eq!(snapshot.student("a").expect("known").average, 0.0);
        let exam = snapshot.exam(ExamId(1)).expect("known");
        assert_eq!(exam.n_results(), 2);
        assert_eq!(exam.average, 0.5);
    }

    #[test]
    fn unknown_keys_are_none() {
        let mut board = Scoreboard::new();
        board.apply(&event("a", 1, 0.5));
        let snapshot = board.snapshot();
        assert!(snapshot.student("b").is_none());
        assert!(snapshot.exam(ExamId(2)).is_none());
    }

    #[test]
    fn lists_are_sorted_and_page_to_the_end() {
        let mut board = Scoreboard::new();
        for (student, exam) in [("c", 30), ("a", 100), ("b", 2), ("B", 2)] {
            board.apply(&event(student, exam, 0.5));
        }
        let snapshot = board.snapshot();
        fn ids<'a>(
            listing: Listing<'a, str, impl Iterator<Item = &'a str>>,
        ) -> (Vec<&'a str>, Option<&'a str>) {
            let mut listing = listing;
            (listing.by_ref().collect(), listing.next_cursor())
        }
        fn exams<'a>(
            listing: Listing<'a, ExamId, impl Iterator<Item = &'a ExamId>>,
        ) -> (Vec<ExamId>, Option<ExamId>) {
            let mut listing = listing;
            (listing.by_ref().copied().collect(), listing.next_cursor().copied())
        }
        assert_eq!(ids(snapshot.students(Page::ALL)), (vec!["B", "a", "b", "c"], None));
        let first = snapshot.students(Page { limit: Some(2), after: None });
        assert_eq!(first.total, 4);
        assert_eq!(ids(first), (vec!["B", "a"], Some("a")));
        let second = snapshot.students(Page { limit: Some(2), after: Some("a") });
        assert_eq!(ids(second), (vec!["b", "c"], None));
        let past_the_end = snapshot.students(Page { limit: Some(2), after: Some("zzz") });
        assert_eq!(ids(past_the_end), (vec![], None));
        // A cursor need not be a current key: paging resumes after where it would sort.
        assert_eq!(
            ids(snapshot.students(Page { limit: Some(1), after: Some("ab") })),
            (vec!["b"], Some("b"))
        );
        // The cursor is right whether or not the page was read first.
        assert_eq!(
            snapshot.students(Page { limit: Some(2), after: None }).next_cursor(),
            Some("a")
        );

        let page = snapshot.exams(Page { limit: Some(2), after: None });
        assert_eq!(exams(page), (vec![ExamId(2), ExamId(30)], Some(ExamId(30))));
        let rest = snapshot.exams(Page { limit: Some(2), after: Some(&ExamId(30)) });
        assert_eq!(exams(rest), (vec![ExamId(100)], None));
        assert_eq!(exams(snapshot.exams(Page { limit: Some(0), after: None })), (vec![], None));
    }

    #[test]
    fn exam_results_are_sorted_by_student() {
        let mut board = Scoreboard::new();
        for student in ["zed", "amy", "Kim"] {
            board.apply(&event(student, 7, 0.25));
        }
        let snapshot = board.snapshot();
        let exam = snapshot.exam(ExamId(7)).expect("known");
        let order: Vec<&str> = exam.results().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, ["Kim", "amy", "zed"]);
    }

    #[test]
    fn a_new_student_takes_its_place_in_the_exams_it_joins() {
        let order = |snapshot: &Snapshot, exam: u64| -> Vec<String> {
            let exam = snapshot.exam(ExamId(exam)).expect("known");
            exam.results().map(|(id, _)| id.to_string()).collect()
        };
        let mut board = Scoreboard::new();
        board.apply_all(&[event("carol", 1, 0.5), event("bob", 1, 0.5)]);
        let first = board.snapshot();
        assert_eq!(order(&first, 1), ["bob", "carol"]);
        // New students sort before, between and after the known ones; exam 1 changes only in
        // the second batch, after its order was computed for the first.
        board.apply_all(&[event("alice", 2, 0.5), event("bert", 2, 0.5), event("dave", 2, 0.5)]);
        let second = board.snapshot();
        assert_eq!(order(&second, 1), ["bob", "carol"]);
        assert_eq!(order(&second, 2), ["alice", "bert", "dave"]);
        board.apply_all(&[event("dave", 1, 0.1), event("alice", 1, 0.1), event("bert", 1, 0.1)]);
        assert_eq!(order(&board.snapshot(), 1), ["alice", "bert", "bob", "carol", "dave"]);
        assert_eq!(order(&first, 1), ["bob", "carol"]);
    }
}
