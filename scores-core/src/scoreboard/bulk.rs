//! Folding a large part of the log at once: [`Fold::apply_bulk`], for a replay and a restore's
//! tail.
//!
//! Event by event, on a board with more students than fit in cache, each event waits on memory:
//! its student's row, the row's results, the place in them, the slots beside them. In bulk, the
//! events are first put in order of student (stably, so each student's events keep their order
//! in the log), then each student's events are folded one after another while its results are
//! in cache, and then the exams are brought up to date in log order, over rows that all fit in
//! cache. Each row sees the same steps [`Fold::apply`] would take, in the same order, so the
//! board is the same to the bit: the same results, the same running sums, the same slots.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Fold, StudentIndex, key};
use crate::event::{Score, ScoreEvent};
use crate::prefetch::prefetch;
use crate::results::{Narrow, Room, Stored, reserve_one, search};
use crate::running_sum::RunningSum;

/// The most events one pass folds: its scratch (a student index, a place in student order and
/// an outcome per event) stays below 64 MB.
const MAX_PASS: usize = 1 << 21;

/// What an event did to its student's results, found in the students' pass and read in the
/// exams'.
#[derive(Clone, Copy)]
enum Outcome {
    Unchanged,
    Regraded {
        previous: Score,
    },
    /// The first result for its key, at `index` of its student's results once the students'
    /// pass is done; the exams' pass gives it its slot.
    New {
        index: u32,
        slot: u32,
    },
}

/// A slot or an index not yet known: every one is known before the pass ends.
const UNKNOWN: u32 = u32::MAX;

/// How many events ahead a walk in student order asks for the event it will read.
const PREFETCH_AHEAD: usize = 16;

impl Fold {
    /// Folds `events` in order into the board exactly as [`apply`](Self::apply) one at a time
    /// would, in passes that each read a student's results once rather than once per event:
    /// for a large part of a log (a replay, a restore's tail) on a board with many students,
    /// several times faster than [`apply_all`](Self::apply_all).
    ///
    /// The next [`take_changes`](Self::take_changes) hands over every exam's results, rebuilt
    /// from the students' rows (time proportional to the board's results), so for a batch far
    /// smaller than the board, `apply_all` is the cheaper way.
    pub fn apply_bulk(&mut self, events: &[ScoreEvent]) {
        for pass in events.chunks(MAX_PASS) {
            self.bulk_pass(pass);
        }
    }

    /// Folds a pass resolved by this fold's [`StudentResolver`] (on another thread, say),
    /// exactly as [`apply_bulk`](Self::apply_bulk) would fold its events. A pass out of step
    /// with the fold (students were added to the fold another way since the resolver was
    /// made, a pass before this one was not folded, or another resolver was made since) is
    /// resolved again here, and so is every later pass of that resolver.
    pub fn apply_resolved(&mut self, pass: &Resolved) {
        let in_step = pass.epoch == self.resolver_epoch
            && pass.first_new as usize == self.students.len()
            && pass.events.len() <= MAX_PASS;
        if !in_step {
            return self.apply_bulk(&pass.events);
        }
        self.resolver_epoch = pass.next_epoch;
        for (&student_idx, event) in pass.students.iter().zip(&pass.events) {
            if student_idx as usize == self.students.len() {
                self.add_student(&event.student_id);
            }
        }
        self.fold_pass(&pass.events, &pass.by_student);
    }

    /// A resolver that gives students the indices this fold would give them, for passes
    /// folded with [`apply_resolved`](Self::apply_resolved) in the order it resolved them.
    /// One resolver at a time: making one puts any made before out of step.
    pub fn student_resolver(&mut self) -> StudentResolver {
        let n_students = u32::try_from(self.students.len()).unwrap_or(u32::MAX);
        self.resolver_epoch = fresh_epoch();
        StudentResolver {
            index: self.student_index.clone(),
            n_students,
            epoch: self.resolver_epoch,
        }
    }

    fn bulk_pass(&mut self, events: &[ScoreEvent]) {
        // Resolved in log order: new students take their indices in order of first appearance,
        // as `apply` gives them.
        let students: Vec<u32> =
            events.iter().map(|event| self.student_idx(&event.student_id)).collect();
        let by_student = InStudentOrder::of(&students, self.students.len());
        drop(students);
        self.fold_pass(events, &by_student);
    }

    fn fold_pass(&mut self, events: &[ScoreEvent], by_student: &InStudentOrder) {
        if events.is_empty() {
            return;
        }
        let first_seq = self.seq + 1;
        let mut outcomes = vec![Outcome::Unchanged; events.len()];
        self.fold_students(events, by_student, first_seq, &mut outcomes);
        self.fold_exams(events, first_seq, &mut outcomes);
        self.give_slots(by_student, &outcomes);
        self.seq = first_seq + events.len() as u64 - 1;
        // The changes were not buffered one by one: the exams are rebuilt at the next hand-over.
        self.rebuild_exams = true;
        self.changed_results = Vec::new();
    }

    /// Each student's events, in log order, into its results and running sum; a new result
    /// gets its place in the slots, to be filled by [`give_slots`](Self::give_slots).
    fn fold_students(
        &mut self,
        events: &[ScoreEvent],
        by_student: &InStudentOrder,
        first_seq: u64,
        outcomes: &mut [Outcome],
    ) {
        let order = &by_student.order;
        // Exams past 32 bits are rare: a pass without any looks no further.
        let wide_pass = events.iter().any(|event| !Narrow::holds(event.exam));
        for (student_idx, range) in by_student.groups() {
            if let Some(ahead) = self.students.get(student_idx as usize + 2) {
                prefetch(ahead.results.base_ptr());
            }
            let row = &mut self.students[student_idx as usize];
            let wide = wide_pass
                && order[range.clone()].iter().any(|&at| !Narrow::holds(events[at as usize].exam));
            let student = StudentEvents { events, order, range, first_seq };
            let folded = match row.results.make_room(student.range.len(), wide) {
                Room::Narrow(results, slots) => {
                    student.fold(results, slots, &mut row.sum, outcomes)
                }
                Room::Wide(results, slots) => student.fold(results, slots, &mut row.sum, outcomes),
            };
            let Some(changed_at) = folded.changed_at else {
                continue;
            };
            row.changed_at = changed_at;
            if !row.is_dirty {
                row.is_dirty = true;
                self.dirty_students.push(student_idx);
            }
            if let Some(first_at) = folded.first_at {
                self.students_changed_at = first_at;
            }
            self.n_results += folded.n_new;
        }
    }

    /// The exams' running sums and counts, in log order; each new result takes the next slot
    /// of its exam.
    fn fold_exams(&mut self, events: &[ScoreEvent], first_seq: u64, outcomes: &mut [Outcome]) {
        for ((event, outcome), seq) in events.iter().zip(outcomes).zip(first_seq..) {
            let row = match outcome {
                Outcome::Unchanged => continue,
                Outcome::Regraded { previous } => {
                    let row = self.exams.entry(event.exam).or_default();
                    row.sum.replace(previous.get(), event.score.get());
                    row
                }
                Outcome::New { slot, .. } => {
                    let row = self.exams.entry(event.exam).or_default();
                    row.sum.add(event.score.get());
                    if row.n_results == 0 {
                        self.exams_changed_at = seq;
                    }
                    *slot = row.n_results;
                    row.n_results += 1;
                    row
                }
            };
            row.changed_at = seq;
            if !row.is_dirty {
                row.is_dirty = true;
                self.dirty_exams.push(event.exam);
            }
        }
    }

    /// Writes each new result's slot beside it in its student's row, student by student.
    fn give_slots(&mut self, by_student: &InStudentOrder, outcomes: &[Outcome]) {
        let order = &by_student.order;
        for (student_idx, range) in by_student.groups() {
            let slots = self.students[student_idx as usize].results.base_slots_mut();
            for at in range {
                if let Some(&ahead) = order.get(at + PREFETCH_AHEAD) {
                    prefetch(&outcomes[ahead as usize]);
                }
                if let Outcome::New { index, slot } = outcomes[order[at] as usize]
                    && let Some(place) = slots.get_mut(index as usize)
                {
                    *place = slot;
                }
            }
        }
    }
}

/// Gives each student of a log the dense index a [`Fold`] gives it, ahead of the fold: the
/// hash lookup per event, and the grouping of a pass's events by student, can then be done on
/// a thread of their own. Made by [`Fold::student_resolver`].
#[derive(Clone, Debug)]
pub struct StudentResolver {
    index: StudentIndex,
    n_students: u32,
    /// The epoch of the next pass: the fold's, while the resolver is in step with it.
    epoch: u64,
}

impl StudentResolver {
    /// `events`, the next of the log, resolved into a pass for [`Fold::apply_resolved`].
    pub fn resolve(&mut self, events: Vec<ScoreEvent>) -> Resolved {
        let first_new = self.n_students;
        let students = events
            .iter()
            .map(|event| {
                let id = event.student_id.as_str();
                if let Some(&student_idx) = self.index.get(id) {
                    return student_idx;
                }
                let student_idx = self.n_students;
                self.index.insert(key(&event.student_id), student_idx);
                self.n_students = self.n_students.saturating_add(1);
                student_idx
            })
            .collect::<Vec<u32>>();
        let by_student = InStudentOrder::of(&students, self.n_students as usize);
        let epoch = self.epoch;
        self.epoch = fresh_epoch();
        Resolved { events, students, first_new, epoch, next_epoch: self.epoch, by_student }
    }
}

/// Events with their students resolved and grouped: see [`StudentResolver`].
#[derive(Debug)]
pub struct Resolved {
    events: Vec<ScoreEvent>,
    /// Each event's student.
    students: Vec<u32>,
    /// The resolver's number of students before this pass: the index of its first new one.
    first_new: u32,
    /// The fold must be at this epoch to fold the pass, and is at `next_epoch` after.
    epoch: u64,
    next_epoch: u64,
    by_student: InStudentOrder,
}

impl Resolved {
    /// The events, in log order.
    pub fn events(&self) -> &[ScoreEvent] {
        &self.events
    }
}

/// A number never handed out before in this process: the epochs that tie a resolver to the
/// state of the fold it resolves for (0 is never handed out).
fn fresh_epoch() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A pass's events grouped by student in index order, each group in log order.
#[derive(Debug)]
struct InStudentOrder {
    /// Offsets into the pass.
    order: Vec<u32>,
    /// Where each student's group ends in `order`, by student index.
    ends: Vec<u32>,
}

impl InStudentOrder {
    /// A counting sort of `students` (each a student's index, below `n_students`).
    fn of(students: &[u32], n_students: usize) -> InStudentOrder {
        let mut ends = vec![0u32; n_students];
        for &student in students {
            ends[student as usize] += 1;
        }
        // Each student's start, then moved on to its end as its offsets are put in place.
        let mut start = 0;
        for end in &mut ends {
            (*end, start) = (start, start + *end);
        }
        let mut order = vec![0u32; students.len()];
        for (offset, &student) in (0u32..).zip(students) {
            let at = &mut ends[student as usize];
            order[*at as usize] = offset;
            *at += 1;
        }
        InStudentOrder { order, ends }
    }

    /// Each student with events in the pass, and where its events are in `order`.
    fn groups(&self) -> impl Iterator<Item = (u32, std::ops::Range<usize>)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        (0u32..)
            .zip(starts.zip(&self.ends))
            .filter(|(_, (start, end))| start < *end)
            .map(|(student_idx, (start, &end))| (student_idx, start as usize..end as usize))
    }
}

/// One student's events in a pass: `order[range]`, offsets into `events`.
struct StudentEvents<'a> {
    events: &'a [ScoreEvent],
    order: &'a [u32],
    range: Range<usize>,
    first_seq: u64,
}

/// What a student's events did to its row.
struct Folded {
    /// The sequence number of the last event that changed the row, if any did.
    changed_at: Option<u64>,
    /// The sequence number of the event that gave an empty row its first result.
    first_at: Option<u64>,
    /// How many results were new.
    n_new: u64,
}

impl StudentEvents<'_> {
    /// Folds the events, in log order, into the student's `results` (with room for them all)
    /// and running sum; a new result gets its place in the `slots`, to be filled by
    /// [`Fold::give_slots`], and its index in `outcomes`.
    fn fold<E: Stored>(
        &self,
        results: &mut Vec<E>,
        slots: &mut Vec<u32>,
        sum: &mut RunningSum,
        outcomes: &mut [Outcome],
    ) -> Folded {
        let StudentEvents { events, order, first_seq, .. } = *self;
        let mut folded = Folded { changed_at: None, first_at: None, n_new: 0 };
        for at in self.range.clone() {
            if let Some(&ahead) = order.get(at + PREFETCH_AHEAD) {
                prefetch(&events[ahead as usize]);
                prefetch(&outcomes[ahead as usize]);
            }
            let offset = order[at] as usize;
            let ScoreEvent { exam, score, .. } = events[offset];
            let seq = first_seq + offset as u64;
            outcomes[offset] = match search(results, exam) {
                Ok(index) => {
                    let previous = results[index].score();
                    if previous == score {
                        continue;
                    }
                    results[index].set_score(score);
                    sum.replace(previous.get(), score.get());
                    Outcome::Regraded { previous }
                }
                Err(index) => {
                    // The row is in a layout that holds every exam of these events.
                    let Some(result) = E::new((exam, score)) else {
                        continue;
                    };
                    if results.is_empty() {
                        folded.first_at = Some(seq);
                    }
                    reserve_one(results);
                    results.insert(index, result);
                    sum.add(score.get());
                    reserve_one(slots);
                    slots.insert(index, UNKNOWN);
                    folded.n_new += 1;
                    Outcome::New { index: UNKNOWN, slot: UNKNOWN }
                }
            };
            folded.changed_at = Some(seq);
        }
        if folded.n_new > 0 {
            // Where each new result ended up, while the results are in cache.
            for &offset in &order[self.range.clone()] {
                let offset = offset as usize;
                if let Outcome::New { index, .. } = &mut outcomes[offset]
                    && let Ok(found) = search(results, events[offset].exam)
                {
                    // A student has at most one result per exam, far fewer than 2^32.
                    *index = found as u32;
                }
            }
        }
        folded
    }
}
