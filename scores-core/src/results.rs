//! A student's results in two parts, so that publishing them does not copy them: a base that
//! the fold shares with snapshots, and a small overlay of what changed since the base was made.
//!
//! A snapshot must hold each student's results as they were at its sequence number, while the
//! fold goes on changing them. Shared whole, a student's results were copied by the first change
//! after each hand-over: with 100k students, nearly every event copied its student's row (about
//! a kilobyte), and the old copy lived until the next snapshot: a third of the service's CPU,
//! and much of the memory it held beyond the board itself. Now a change to a shared base
//! goes to the overlay, and the overlay is merged into a new base once it holds an eighth as
//! many results: a row is copied once per eighth of its length in changes, not once per change.

use std::sync::Arc;

use crate::event::{ExamId, Score};
use crate::prefetch::prefetch;

/// A student's current results, sorted by exam, as a snapshot holds them. Cloning is two
/// reference counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Results {
    /// Sorted by exam.
    base: Arc<Vec<(ExamId, Score)>>,
    /// The first `n_overlay` entries, sorted by exam; each replaces the base's result for its
    /// exam, if the base has one. The rest is room to grow in place while no snapshot shares
    /// it. A slice behind one pointer, where the base is a vector behind two, so a fold
    /// reading it waits on memory once, not twice.
    overlay: Option<Arc<[(ExamId, Score)]>>,
    n_overlay: u32,
    /// How many of the overlay's exams the base holds too.
    n_replaced: u32,
}

impl Results {
    /// How many results (one per exam).
    pub(crate) fn len(&self) -> usize {
        (self.base.len() + self.n_overlay as usize).saturating_sub(self.n_replaced as usize)
    }

    /// The overlay's results, sorted by exam.
    fn overlay(&self) -> &[(ExamId, Score)] {
        let overlay = self.overlay.as_deref().unwrap_or_default();
        overlay.get(..self.n_overlay as usize).unwrap_or(overlay)
    }

    /// `(exam, score)` by exam.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter { base: &self.base, overlay: self.overlay(), left: self.len() }
    }
}

/// A student's results in exam order: the base and the overlay merged.
#[derive(Clone, Debug)]
pub(crate) struct Iter<'a> {
    base: &'a [(ExamId, Score)],
    overlay: &'a [(ExamId, Score)],
    left: usize,
}

impl Iterator for Iter<'_> {
    type Item = (ExamId, Score);

    fn next(&mut self) -> Option<(ExamId, Score)> {
        let next = match (self.base.split_first(), self.overlay.split_first()) {
            (Some((&from_base, base)), Some((&from_overlay, overlay))) => {
                if from_base.0 < from_overlay.0 {
                    self.base = base;
                    from_base
                } else {
                    if from_base.0 == from_overlay.0 {
                        self.base = base;
                    }
                    self.overlay = overlay;
                    from_overlay
                }
            }
            (Some((&from_base, base)), None) => {
                self.base = base;
                from_base
            }
            (None, Some((&from_overlay, overlay))) => {
                self.overlay = overlay;
                from_overlay
            }
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

/// A student's results as the fold keeps them: [`Results`], and each result's slot in its
/// exam's results (the fold's own, never shared).
#[derive(Clone, Debug, Default)]
pub(crate) struct Row {
    results: Results,
    /// Beside the base's results, in their order.
    base_slots: Vec<u32>,
    /// Beside the overlay's results, in their order.
    overlay_slots: Vec<u32>,
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
    /// At `base` of the base, not in the overlay, where it would go at `overlay`.
    Base { base: usize, overlay: usize },
    /// At this index of the overlay.
    Overlay(usize),
}

/// Where a result a row does not hold would go: at `base` of the base, or at `overlay` of the
/// overlay.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Absent {
    base: usize,
    overlay: usize,
}

/// The overlay is merged into a new base once it holds more than this fraction of the base's
/// results (and more than [`MIN_OVERLAY`]): each merge copies the row, so a row is copied once
/// per `len / 8` changes made while it is shared, and the overlay, which the first change after
/// a hand-over copies, stays an eighth of the row.
const OVERLAY_FRACTION: usize = 8;

/// The overlay may always hold this many results.
const MIN_OVERLAY: usize = 8;

impl Row {
    /// A row holding `results`, sorted by exam, with `slots` beside them.
    pub(crate) fn new(results: Vec<(ExamId, Score)>, slots: Vec<u32>) -> Row {
        debug_assert_eq!(results.len(), slots.len());
        Row {
            results: Results {
                base: Arc::new(results),
                overlay: None,
                n_overlay: 0,
                n_replaced: 0,
            },
            base_slots: slots,
            overlay_slots: Vec::new(),
        }
    }

    /// A row holding what `results` holds, sharing it where it can; the slots are all 0, for
    /// the caller to fill in the order of [`base`](Self::base).
    pub(crate) fn of(results: &Results) -> Row {
        let base = match results.overlay {
            None => results.base.clone(),
            Some(_) => Arc::new(results.iter().collect()),
        };
        let base_slots = vec![0; base.len()];
        Row {
            results: Results { base, overlay: None, n_overlay: 0, n_replaced: 0 },
            base_slots,
            overlay_slots: Vec::new(),
        }
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
    pub(crate) fn share(&self) -> Results {
        self.results.clone()
    }

    /// `(exam, score)` by exam.
    pub(crate) fn iter(&self) -> Iter<'_> {
        self.results.iter()
    }

    /// `((exam, score), slot)` by exam.
    pub(crate) fn iter_with_slots(&self) -> impl Iterator<Item = ((ExamId, Score), u32)> + '_ {
        let overlay = self.results.overlay();
        let base =
            std::iter::zip(self.results.base.iter().copied(), self.base_slots.iter().copied());
        let mut overlay =
            std::iter::zip(overlay.iter().copied(), self.overlay_slots.iter().copied()).peekable();
        let mut base = base.peekable();
        std::iter::from_fn(move || match (base.peek(), overlay.peek()) {
            (Some(((in_base, _), _)), Some(((in_overlay, _), _))) => {
                if in_base < in_overlay {
                    base.next()
                } else {
                    if in_base == in_overlay {
                        base.next();
                    }
                    overlay.next()
                }
            }
            (Some(_), None) => base.next(),
            (None, _) => overlay.next(),
        })
    }

    /// The base: sorted by exam, and all the results when there is no overlay. For prefetching,
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

    /// Asks for the base's header (how many results, and where they are) and the overlay.
    pub(crate) fn prefetch_header(&self) {
        prefetch(Arc::as_ptr(&self.results.base));
        if let Some(overlay) = &self.results.overlay {
            prefetch(overlay.as_ptr());
        }
    }

    /// The slots beside [`base`](Self::base).
    pub(crate) fn base_slots_mut(&mut self) -> &mut [u32] {
        &mut self.base_slots
    }

    /// Where `exam`'s result is, or would go.
    pub(crate) fn find(&self, exam: ExamId) -> Found {
        let overlay = self.results.overlay();
        let overlay = match overlay.binary_search_by_key(&exam, |&(exam, _)| exam) {
            Ok(index) => return Found::Held(Held::Overlay(index), overlay[index].1),
            Err(index) => index,
        };
        match search(&self.results.base, exam) {
            Ok(base) => Found::Held(Held::Base { base, overlay }, self.results.base[base].1),
            Err(base) => Found::Absent(Absent { base, overlay }),
        }
    }

    /// Replaces the score of the result held at `held` (as [`find`](Self::find) answered,
    /// with nothing changed since) with `score`; returns the result's slot.
    pub(crate) fn regrade(&mut self, held: Held, score: Score) -> u32 {
        match held {
            Held::Base { base, overlay } => {
                let (exam, _) = self.results.base[base];
                let slot = self.base_slots[base];
                match self.in_place() {
                    Some(results) => results[base].1 = score,
                    None => {
                        self.results.n_replaced += 1;
                        self.add_to_overlay(overlay, (exam, score), slot);
                    }
                }
                slot
            }
            Held::Overlay(index) => {
                if let Some(overlay) = &mut self.results.overlay {
                    Arc::make_mut(overlay)[index].1 = score;
                }
                self.overlay_slots[index]
            }
        }
    }

    /// Adds `result`, which goes at `absent` (as [`find`](Self::find) answered, with nothing
    /// changed since), with `slot` beside it.
    pub(crate) fn insert(&mut self, absent: Absent, result: (ExamId, Score), slot: u32) {
        match self.in_place() {
            Some(results) => {
                reserve_one(results);
                results.insert(absent.base, result);
                reserve_one(&mut self.base_slots);
                self.base_slots.insert(absent.base, slot);
            }
            None => self.add_to_overlay(absent.overlay, result, slot),
        }
    }

    /// The results, sorted by exam, and the slots beside them, each with room for `n` more, for
    /// a fold that changes them in place: the overlay merged into the base, and the base copied
    /// if a snapshot shares it.
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

    /// The base, when the fold may change it in place: no snapshot shares it, and there is no
    /// overlay.
    fn in_place(&mut self) -> Option<&mut Vec<(ExamId, Score)>> {
        match self.results.overlay {
            None => Arc::get_mut(&mut self.results.base),
            Some(_) => None,
        }
    }

    fn add_to_overlay(&mut self, index: usize, result: (ExamId, Score), slot: u32) {
        let n_overlay = self.results.n_overlay as usize;
        let in_place = self.results.overlay.as_mut().and_then(Arc::get_mut);
        match in_place.filter(|overlay| overlay.len() > n_overlay) {
            Some(overlay) => {
                overlay.copy_within(index..n_overlay, index + 1);
                overlay[index] = result;
            }
            // Copied once, around the new result and with room for half as many again.
            None => {
                let (before, after) = self.results.overlay().split_at(index);
                let room = std::iter::repeat_n(result, n_overlay / 2 + 1);
                let copy = before.iter().copied().chain([result]).chain(after.iter().copied());
                self.results.overlay = Some(copy.chain(room).collect());
            }
        }
        self.results.n_overlay += 1;
        reserve_one(&mut self.overlay_slots);
        self.overlay_slots.insert(index, slot);
        if n_overlay + 1 > (self.results.base.len() / OVERLAY_FRACTION).max(MIN_OVERLAY) {
            self.merge(0);
        }
    }

    /// Merges the overlay into a new base of the row's own, with room for `room` more results
    /// and an eighth of the row besides.
    fn merge(&mut self, room: usize) {
        let capacity = self.len() + room;
        let mut results = Vec::with_capacity(capacity);
        let mut slots = Vec::with_capacity(capacity);
        for (result, slot) in self.iter_with_slots() {
            results.push(result);
            slots.push(slot);
        }
        self.results.base = Arc::new(results);
        self.results.overlay = None;
        self.results.n_overlay = 0;
        self.results.n_replaced = 0;
        self.base_slots = slots;
        self.overlay_slots = Vec::new();
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
        /// However changes and snapshots interleave (so the base is shared or not, the overlay
        /// empty, small or merged), the row holds what a map of the same changes holds, each
        /// result beside its slot, and every snapshot keeps what the row held when it was
        /// taken.
        #[test]
        fn a_row_holds_what_a_map_holds_and_snapshots_keep_theirs(
            steps in prop::collection::vec(step(), 0..400),
            bulk_at in any::<prop::sample::Index>(),
        ) {
            let mut row = Row::default();
            let mut model = Model::new();
            let mut shared: Vec<(Results, Vec<(ExamId, Score)>)> = Vec::new();
            let bulk_at = bulk_at.index(steps.len() + 1);
            for (n, Step { exam, score, share }) in steps.into_iter().enumerate() {
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
    fn changes_to_a_shared_row_go_to_the_overlay_until_it_is_merged() {
        let score = Score::new(0.5).expect("valid");
        let results: Vec<_> = (0..80).map(|exam| (ExamId(exam * 2), score)).collect();
        let mut row = Row::new(results, (0..80).collect());
        let snapshot = row.share();
        let base = row.base_ptr();
        // An eighth of 80 is 10: ten new results stay in the overlay, the eleventh merges.
        for exam in 0..11 {
            let Found::Absent(absent) = row.find(ExamId(exam * 2 + 1)) else {
                panic!("odd exams are absent");
            };
            row.insert(absent, (ExamId(exam * 2 + 1), score), 80 + exam as u32);
            assert_eq!(row.base_ptr() == base, exam < 10, "after {} new results", exam + 1);
        }
        assert_eq!(snapshot.len(), 80);
        assert_eq!(row.len(), 91);
        assert_eq!(row.base().len(), 91);
    }
}
