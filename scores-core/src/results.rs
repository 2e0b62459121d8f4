//! A student's results in two parts, so that publishing them copies nothing: a base that the
//! fold shares with snapshots, and a log of what changed since the base was made, which
//! snapshots share by prefix.
//!
//! A snapshot must hold each student's results as they were at its sequence number, while the
//! fold goes on changing them. Shared whole, a student's results would be copied by the first
//! change after each hand-over: with 100k students, nearly every event would copy its student's
//! row (about a kilobyte). So changes are appended to a log that the row alone writes, beyond
//! every snapshot's view, and the change after a hand-over is written in place; the log is
//! merged into a new base once it holds a sixteenth as many entries as the base has results, so
//! a row is copied once per sixteenth of its length in changes. (A sorted overlay, copied by the
//! first change after each hand-over, came before the log: one allocation per event, freed on
//! the publisher's thread; docs/PERFORMANCE.md has the figures.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::{ExamId, Score};
use crate::prefetch::prefetch;

/// A student's current results, sorted by exam, as a snapshot holds them. Cloning is two
/// reference counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Results {
    /// Sorted by exam.
    base: Arc<Vec<(ExamId, Score)>>,
    /// What changed since the base was made, in the order it changed, of which this view holds
    /// the first `n_logged` entries. A later entry for an exam replaces an earlier one, and
    /// each replaces the base's result for its exam.
    log: Option<Log>,
    n_logged: u32,
    /// How many of the logged exams the base does not hold.
    n_added: u32,
}

/// Changes to one row in the order they were made, shared by prefix. The row that made the log
/// is the only one that writes to it, and it writes only beyond every view it gave out (a
/// snapshot holds the log with how many entries it saw), so a hand-over copies nothing and the
/// change after it is written in place. Entries are atomics, written and read relaxed: a reader
/// gets its view through the hand-over, which orders the writes before it. So sharing needs no
/// `unsafe`, and on x86 they are plain loads and stores.
type Log = Arc<[Entry]>;

#[derive(Debug, Default)]
struct Entry {
    exam: AtomicU64,
    score: AtomicU64,
}

impl Entry {
    fn get(&self) -> (ExamId, Score) {
        (ExamId(self.exam.load(Relaxed)), Score::from_bits(self.score.load(Relaxed)))
    }

    fn set(&self, (exam, score): (ExamId, Score)) {
        self.exam.store(exam.0, Relaxed);
        self.score.store(score.to_bits(), Relaxed);
    }
}

impl Results {
    /// How many results (one per exam).
    pub(crate) fn len(&self) -> usize {
        self.base.len() + self.n_added as usize
    }

    /// This view's entries of the log, in the order they were written.
    fn logged(&self) -> &[Entry] {
        let log = self.log.as_deref().unwrap_or_default();
        log.get(..self.n_logged as usize).unwrap_or(log)
    }

    /// `(exam, score)` by exam.
    pub(crate) fn iter(&self) -> Iter<'_> {
        // Newest first, so that a stable sort puts each exam's latest entry first, and dedup
        // keeps it.
        let mut latest: Vec<_> = self.logged().iter().rev().map(Entry::get).collect();
        latest.sort_by_key(|&(exam, _)| exam);
        latest.dedup_by_key(|&mut (exam, _)| exam);
        Iter { base: &self.base, latest: latest.into_iter(), left: self.len() }
    }
}

/// A student's results in exam order: the base merged with the log's latest entry for each
/// exam.
#[derive(Clone, Debug)]
pub(crate) struct Iter<'a> {
    base: &'a [(ExamId, Score)],
    /// Sorted by exam, one per exam.
    latest: std::vec::IntoIter<(ExamId, Score)>,
    left: usize,
}

impl Iterator for Iter<'_> {
    type Item = (ExamId, Score);

    fn next(&mut self) -> Option<(ExamId, Score)> {
        let next = match (self.base.split_first(), self.latest.as_slice().first()) {
            (Some((&from_base, base)), Some(&from_log)) => {
                if from_base.0 < from_log.0 {
                    self.base = base;
                    from_base
                } else {
                    if from_base.0 == from_log.0 {
                        self.base = base;
                    }
                    self.latest.next();
                    from_log
                }
            }
            (Some((&from_base, base)), None) => {
                self.base = base;
                from_base
            }
            (None, Some(_)) => self.latest.next()?,
            (None, None) => return None,
        };
        self.left = self.left.saturating_sub(1);
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// A student's results as the fold keeps them: [`Results`], each result's slot in its exam's
/// results, and an index of the log (the fold's own, never shared).
#[derive(Debug, Default)]
pub(crate) struct Row {
    results: Results,
    /// Beside the base's results, in their order.
    base_slots: Vec<u32>,
    /// The logged exams in exam order: for each, the entry that holds its result now.
    logged: Vec<Logged>,
    /// How many of the log's entries a snapshot may hold: the row writes only beyond them.
    n_shared: u32,
}

/// A logged exam, as the fold finds it: its exam and score are in the log.
#[derive(Clone, Copy, Debug)]
struct Logged {
    /// The log's entry that holds the exam's result now.
    entry: u32,
    slot: u32,
}

/// Where a row holds an exam's result, or where it would go: what [`Row::find`] answers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Found {
    /// The row holds a result for the exam, with this score.
    Held(Held, Score),
    /// The row holds none.
    Absent(Absent),
}

/// Where a row holds a result.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Held {
    /// At `base` of the base, not logged; it would go at `logged` of the log's index.
    Base { base: usize, logged: usize },
    /// At this place of the log's index.
    Logged(usize),
}

/// Where a result a row does not hold would go: at `base` of the base, or at `logged` of the
/// log's index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Absent {
    base: usize,
    logged: usize,
}

/// A log holds this fraction of its base's results (and at least [`MIN_LOG`]); when it is full
/// it is merged into a new base. Each merge copies the row, so a row is copied once per
/// `len / 16` changes made while it is shared. A sixteenth, not an eighth: the same speed, and
/// smaller logs (docs/PERFORMANCE.md).
const LOG_FRACTION: usize = 16;

/// A log may always hold this many entries.
const MIN_LOG: usize = 8;

impl Clone for Row {
    /// A row with a log of its own: a log has one writer.
    fn clone(&self) -> Row {
        let log = self.results.log.as_deref().map(|log| {
            log.iter()
                .map(|entry| {
                    let copy = Entry::default();
                    copy.set(entry.get());
                    copy
                })
                .collect()
        });
        Row {
            results: Results { log, ..self.results.clone() },
            base_slots: self.base_slots.clone(),
            logged: self.logged.clone(),
            n_shared: 0,
        }
    }
}

impl Row {
    /// A row holding `results`, sorted by exam, with `slots` beside them.
    pub(crate) fn new(results: Vec<(ExamId, Score)>, slots: Vec<u32>) -> Row {
        debug_assert_eq!(results.len(), slots.len());
        let results = Results { base: Arc::new(results), ..Results::default() };
        Row { results, base_slots: slots, logged: Vec::new(), n_shared: 0 }
    }

    /// A row holding what `results` holds, sharing it where it can; the slots are all 0, for
    /// the caller to fill in the order of [`base`](Self::base).
    pub(crate) fn of(results: &Results) -> Row {
        let base = match results.n_logged {
            0 => results.base.clone(),
            _ => Arc::new(results.iter().collect()),
        };
        let base_slots = vec![0; base.len()];
        let results = Results { base, ..Results::default() };
        Row { results, base_slots, logged: Vec::new(), n_shared: 0 }
    }

    /// How many results.
    pub(crate) fn len(&self) -> usize {
        self.results.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The results as they are now, for a snapshot: it shares this row's memory, and this row
    /// no longer changes that memory in place.
    pub(crate) fn share(&mut self) -> Results {
        self.n_shared = self.results.n_logged;
        self.results.clone()
    }

    /// `(exam, score)` by exam.
    pub(crate) fn iter(&self) -> Iter<'_> {
        self.results.iter()
    }

    /// A logged exam's result. The log holds every entry its index names: the two change
    /// together.
    fn logged_result(&self, logged: &Logged) -> (ExamId, Score) {
        self.results.logged()[logged.entry as usize].get()
    }

    /// `((exam, score), slot)` by exam.
    pub(crate) fn iter_with_slots(&self) -> impl Iterator<Item = ((ExamId, Score), u32)> + '_ {
        let base =
            std::iter::zip(self.results.base.iter().copied(), self.base_slots.iter().copied());
        let mut logged =
            self.logged.iter().map(|logged| (self.logged_result(logged), logged.slot)).peekable();
        let mut base = base.peekable();
        std::iter::from_fn(move || match (base.peek(), logged.peek()) {
            (Some(((in_base, _), _)), Some(((in_log, _), _))) => {
                if in_base < in_log {
                    base.next()
                } else {
                    if in_base == in_log {
                        base.next();
                    }
                    logged.next()
                }
            }
            (Some(_), None) => base.next(),
            (None, _) => logged.next(),
        })
    }

    /// The base: sorted by exam, and all the results when nothing is logged. For prefetching,
    /// and for guessing where an exam goes.
    pub(crate) fn base(&self) -> &[(ExamId, Score)] {
        &self.results.base
    }

    /// Where the base's header is (how many results, and where they are), for prefetching.
    pub(crate) fn base_ptr(&self) -> *const Vec<(ExamId, Score)> {
        Arc::as_ptr(&self.results.base)
    }

    /// Asks for the line of the base where a search for `exam` starts.
    pub(crate) fn prefetch_search(&self, exam: ExamId) {
        let base = &self.results.base;
        if let Some(start) = base.get(guess(base, exam)) {
            prefetch(start);
        }
    }

    /// Asks for the base's header (how many results, and where they are), the log's index,
    /// and the log's next entry.
    pub(crate) fn prefetch_header(&self) {
        prefetch(Arc::as_ptr(&self.results.base));
        if let Some(log) = &self.results.log {
            prefetch(self.logged.as_ptr());
            if let Some(next) = log.get(self.results.n_logged as usize) {
                prefetch(next);
            }
        }
    }

    /// The slots beside [`base`](Self::base).
    pub(crate) fn base_slots_mut(&mut self) -> &mut [u32] {
        &mut self.base_slots
    }

    /// Where `exam`'s result is, or would go.
    pub(crate) fn find(&self, exam: ExamId) -> Found {
        let found = self.logged.binary_search_by_key(&exam, |logged| self.logged_result(logged).0);
        let logged = match found {
            Ok(index) => {
                let (_, score) = self.logged_result(&self.logged[index]);
                return Found::Held(Held::Logged(index), score);
            }
            Err(index) => index,
        };
        match search(&self.results.base, exam) {
            Ok(base) => Found::Held(Held::Base { base, logged }, self.results.base[base].1),
            Err(base) => Found::Absent(Absent { base, logged }),
        }
    }

    /// Replaces the score of the result held at `held` (as [`find`](Self::find) answered,
    /// with nothing changed since) with `score`; returns the result's slot.
    pub(crate) fn regrade(&mut self, held: Held, score: Score) -> u32 {
        match held {
            Held::Base { base, logged } => {
                let (exam, _) = self.results.base[base];
                let slot = self.base_slots[base];
                match self.in_place() {
                    Some(results) => results[base].1 = score,
                    None => match self.log((exam, score)) {
                        Some(entry) => {
                            reserve_one(&mut self.logged);
                            self.logged.insert(logged, Logged { entry, slot });
                        }
                        None => return self.regrade_merged(exam, score, slot),
                    },
                }
                slot
            }
            Held::Logged(index) => {
                let Logged { entry, slot } = self.logged[index];
                let (exam, _) = self.logged_result(&self.logged[index]);
                match self.results.logged().get(entry as usize) {
                    // Beyond every snapshot's view: written over in place.
                    Some(written) if entry >= self.n_shared => written.set((exam, score)),
                    _ => match self.log((exam, score)) {
                        Some(entry) => self.logged[index].entry = entry,
                        None => return self.regrade_merged(exam, score, slot),
                    },
                }
                slot
            }
        }
    }

    /// Regrades `exam` in a row just merged, whose base is its own.
    fn regrade_merged(&mut self, exam: ExamId, score: Score, slot: u32) -> u32 {
        let results = Arc::make_mut(&mut self.results.base);
        if let Ok(index) = search(results, exam) {
            results[index].1 = score;
        }
        slot
    }

    /// Adds `result`, which goes at `absent` (as [`find`](Self::find) answered, with nothing
    /// changed since), with `slot` beside it.
    pub(crate) fn insert(&mut self, absent: Absent, result: (ExamId, Score), slot: u32) {
        let base_index = match self.in_place() {
            Some(_) => absent.base,
            None => match self.log(result) {
                Some(entry) => {
                    let logged = Logged { entry, slot };
                    reserve_one(&mut self.logged);
                    self.logged.insert(absent.logged, logged);
                    self.results.n_added += 1;
                    return;
                }
                // Merged: the base is the row's own, and the place in it has moved.
                None => search(&self.results.base, result.0).unwrap_or_else(|index| index),
            },
        };
        let results = Arc::make_mut(&mut self.results.base);
        reserve_one(results);
        results.insert(base_index, result);
        reserve_one(&mut self.base_slots);
        self.base_slots.insert(base_index, slot);
    }

    /// Appends `result` to the log, made if there is none, and returns its entry; or, when the
    /// log is full, merges it into a new base of the row's own and returns `None`, for the
    /// caller to change that base in place.
    fn log(&mut self, result: (ExamId, Score)) -> Option<u32> {
        let n_logged = self.results.n_logged;
        let log = self.results.log.get_or_insert_with(|| {
            let capacity = (self.results.base.len() / LOG_FRACTION).max(MIN_LOG);
            (0..capacity).map(|_| Entry::default()).collect()
        });
        match log.get(n_logged as usize) {
            Some(entry) => {
                entry.set(result);
                self.results.n_logged += 1;
                Some(n_logged)
            }
            None => {
                self.merge(1);
                None
            }
        }
    }

    /// The results, sorted by exam, and the slots beside them, each with room for `n` more, for
    /// a fold that changes them in place: the log merged into the base, and the base copied if
    /// a snapshot shares it.
    pub(crate) fn make_room(&mut self, n: usize) -> (&mut Vec<(ExamId, Score)>, &mut Vec<u32>) {
        if self.in_place().is_none() {
            self.merge(n);
        }
        // Merged, the base is the row's own: this does not copy it.
        let results = Arc::make_mut(&mut self.results.base);
        if results.capacity() - results.len() < n {
            results.reserve_exact(n.max(results.len() / 8 + 4));
        }
        if self.base_slots.capacity() - self.base_slots.len() < n {
            self.base_slots.reserve_exact(n.max(self.base_slots.len() / 8 + 4));
        }
        (results, &mut self.base_slots)
    }

    /// The base, when the fold may change it in place: no snapshot shares it, and nothing is
    /// logged.
    fn in_place(&mut self) -> Option<&mut Vec<(ExamId, Score)>> {
        match self.results.log {
            None => Arc::get_mut(&mut self.results.base),
            Some(_) => None,
        }
    }

    /// Merges the log into a new base of the row's own, with room for `room` more results.
    fn merge(&mut self, room: usize) {
        let capacity = self.len() + room;
        let mut results = Vec::with_capacity(capacity);
        let mut slots = Vec::with_capacity(capacity);
        for (result, slot) in self.iter_with_slots() {
            results.push(result);
            slots.push(slot);
        }
        self.results = Results { base: Arc::new(results), ..Results::default() };
        self.base_slots = slots;
        self.logged.clear();
        self.n_shared = 0;
    }
}

/// Where `exam` is in a student's results (sorted by exam), or where it would go, as
/// `binary_search` answers: from where the results' first and last exams say it should be,
/// searching outwards in steps that double. A student's exams are spread about evenly (the
/// feed numbers exams in sequence), so the guess is usually the place or next to it, and the
/// search reads one or two cache lines, where a binary search over a thousand results read
/// ten, most of them not in cache. However wrong the guess, the search takes at most about
/// twice a binary search's steps.
pub(crate) fn search(results: &[(ExamId, Score)], exam: ExamId) -> Result<usize, usize> {
    let found = |window: &[(ExamId, Score)], offset: usize| {
        let index = offset + window.partition_point(|(e, _)| *e < exam);
        match results.get(index) {
            Some((e, _)) if *e == exam => Ok(index),
            _ => Err(index),
        }
    };
    let start = guess(results, exam);
    let Some(&(at_start, _)) = results.get(start) else {
        return Err(0);
    };
    let mut step = 1;
    if at_start < exam {
        // In (start, len]: double the step until an exam at least `exam`, or the end.
        while start + step < results.len() && results[start + step].0 < exam {
            step *= 2;
        }
        let from = start + step / 2 + 1;
        found(&results[from..(start + step + 1).min(results.len())], from)
    } else {
        // In [0, start]: double the step until an exam at most `exam`, or the start.
        while step <= start && results[start - step].0 > exam {
            step *= 2;
        }
        let from = start.saturating_sub(step);
        found(&results[from..=start - step / 2], from)
    }
}

/// The index `exam` would have in `results` if their exams were spread evenly between the
/// first and the last; 0 when there are none.
fn guess(results: &[(ExamId, Score)], exam: ExamId) -> usize {
    let (Some(&(first, _)), Some(&(last, _))) = (results.first(), results.last()) else {
        return 0;
    };
    if exam <= first {
        return 0;
    }
    if exam >= last {
        return results.len() - 1;
    }
    // Here first < exam < last; in u128, the product cannot overflow.
    let along = u128::from(exam.0 - first.0) * (results.len() - 1) as u128;
    (along / u128::from(last.0 - first.0)) as usize
}

/// Makes room for one more value, growing by an eighth where a `Vec` doubles: a board's slack
/// is in every student's results, and with doubling it averaged a quarter of their memory.
pub(crate) fn reserve_one<T>(values: &mut Vec<T>) {
    if values.len() == values.capacity() {
        values.reserve_exact(values.len() / 8 + 4);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn search_answers_as_binary_search_does(
            // Exams spread evenly, in clusters, or far apart: the guess is near or far off.
            mut exams in prop::collection::vec(
                prop_oneof![0..50u64, 10_000..10_100u64, any::<u64>()], 0..300
            ),
            queries in prop::collection::vec(any::<prop::sample::Index>(), 1..50),
            far in any::<u64>(),
        ) {
            exams.sort_unstable();
            exams.dedup();
            let results: Vec<(ExamId, Score)> =
                exams.iter().map(|&exam| (ExamId(exam), Score::new(0.5).expect("valid"))).collect();
            let mut asked: Vec<u64> = queries.iter().map(|i| *i.get(&[0, 1, 49, 10_050, far])).collect();
            for exam in &exams {
                asked.extend([*exam, exam.saturating_sub(1), exam.saturating_add(1)]);
            }
            for exam in asked.into_iter().map(ExamId) {
                prop_assert_eq!(
                    search(&results, exam),
                    results.binary_search_by_key(&exam, |(exam, _)| *exam),
                    "exam {:?}", exam
                );
            }
        }
    }

    /// One step: a result for `exam` (a new one, a regrade, or the same score again), then,
    /// if `share`, a snapshot of the row.
    #[derive(Clone, Debug)]
    struct Step {
        exam: u64,
        score: u8,
        share: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (0..120u64, 0..4u8, prop::bool::weighted(0.2)).prop_map(|(exam, score, share)| Step {
            exam,
            score,
            share,
        })
    }

    /// The model of a row: each exam's score and slot.
    type Model = BTreeMap<u64, (Score, u32)>;

    fn results(model: &Model) -> Vec<(ExamId, Score)> {
        model.iter().map(|(&exam, &(score, _))| (ExamId(exam), score)).collect()
    }

    proptest! {
        /// However changes and snapshots interleave (so the base is shared or not, the log
        /// empty, small or merged), the row holds what a map of the same changes holds, each
        /// result beside its slot, and every snapshot keeps what the row held when it was
        /// taken.
        #[test]
        fn a_row_holds_what_a_map_holds_and_snapshots_keep_theirs(
            steps in prop::collection::vec(step(), 0..400),
            bulk_at in any::<prop::sample::Index>(),
            fork_at in any::<prop::sample::Index>(),
        ) {
            let mut row = Row::default();
            let mut model = Model::new();
            let mut shared: Vec<(Results, Vec<(ExamId, Score)>)> = Vec::new();
            let bulk_at = bulk_at.index(steps.len() + 1);
            let fork_at = fork_at.index(steps.len() + 1);
            for (n, Step { exam, score, share }) in steps.into_iter().enumerate() {
                if n == fork_at {
                    // A copy of the row changes every result it holds: the row, which may
                    // have written its log beyond every snapshot, sees none of it.
                    let mut fork = row.clone();
                    for exam in model.keys().map(|&exam| ExamId(exam)) {
                        if let Found::Held(held, _) = fork.find(exam) {
                            fork.regrade(held, Score::new(0.99).expect("valid"));
                        }
                    }
                }
                if n == bulk_at {
                    // A bulk fold's way in: one base of the row's own, with room.
                    let (base, slots) = row.make_room(4);
                    prop_assert_eq!(&*base, &results(&model));
                    prop_assert_eq!(slots.len(), base.len());
                    prop_assert!(base.capacity() - base.len() >= 4);
                }
                let score = Score::new(f64::from(score) / 4.0).expect("valid");
                let (exam, slot) = (ExamId(exam), model.len() as u32);
                match row.find(exam) {
                    Found::Held(held, previous) => {
                        let (held_score, held_slot) = model[&exam.0];
                        prop_assert_eq!(previous, held_score);
                        prop_assert_eq!(row.regrade(held, score), held_slot);
                        model.insert(exam.0, (score, held_slot));
                    }
                    Found::Absent(absent) => {
                        prop_assert!(!model.contains_key(&exam.0));
                        row.insert(absent, (exam, score), slot);
                        model.insert(exam.0, (score, slot));
                    }
                }
                prop_assert_eq!(row.len(), model.len());
                prop_assert_eq!(row.iter().len(), model.len());
                prop_assert_eq!(row.iter().collect::<Vec<_>>(), results(&model));
                let with_slots: Vec<_> =
                    model.iter().map(|(&exam, &(score, slot))| ((ExamId(exam), score), slot)).collect();
                prop_assert_eq!(row.iter_with_slots().collect::<Vec<_>>(), with_slots);
                if share {
                    shared.push((row.share(), results(&model)));
                }
            }
            for (results, then) in &shared {
                prop_assert_eq!(results.iter().len(), then.len());
                prop_assert_eq!(&results.iter().collect::<Vec<_>>(), then);
                let row = Row::of(results);
                prop_assert_eq!(row.base(), &then[..]);
            }
        }
    }

    #[test]
    fn changes_to_a_shared_row_go_to_the_log_until_it_is_full() {
        let score = Score::new(0.5).expect("valid");
        let results: Vec<_> = (0..160).map(|exam| (ExamId(exam * 2), score)).collect();
        let mut row = Row::new(results, (0..160).collect());
        let snapshot = row.share();
        let base = row.base_ptr();
        // A sixteenth of 160 is 10: ten new results fill the log, the eleventh merges it.
        for exam in 0..11 {
            let Found::Absent(absent) = row.find(ExamId(exam * 2 + 1)) else {
                panic!("odd exams are absent");
            };
            row.insert(absent, (ExamId(exam * 2 + 1), score), 160 + exam as u32);
            assert_eq!(row.base_ptr() == base, exam < 10, "after {} new results", exam + 1);
        }
        assert_eq!(snapshot.len(), 160);
        assert_eq!(row.len(), 171);
        assert_eq!(row.base().len(), 171);
    }
}
