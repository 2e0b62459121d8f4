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
//!
//! A base holds each result in 12 bytes ([`Narrow`]) while every exam of the row fits in 32
//! bits, as the feed's 5-digit exams do, and in 16 ([`Wide`]) once one does not: the bases are
//! most of a board's memory. [`Results`] and [`Row`] are the two layouts behind one face; the
//! code is written once, generic over the layout, in [`ResultsOf`] and [`RowOf`].

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::{ExamId, Score};
use crate::prefetch::prefetch;

/// A result as a base holds it: an exam and its score.
pub(crate) trait Stored: Copy + Debug + Send + Sync + 'static {
    /// `(exam, score)` in this layout, or `None` if the exam does not fit it.
    fn new(result: (ExamId, Score)) -> Option<Self>;
    fn exam(self) -> ExamId;
    fn score(self) -> Score;
    fn set_score(&mut self, score: Score);

    fn get(self) -> (ExamId, Score) {
        (self.exam(), self.score())
    }
}

/// A result whose exam fits in 32 bits, in 12 bytes where `(ExamId, Score)` takes 16.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, packed(4))]
pub(crate) struct Narrow {
    exam: u32,
    score: Score,
}

// The packing is the point: a board holds one of these per result.
const _: () = assert!(std::mem::size_of::<Narrow>() == 12);

impl Narrow {
    pub(crate) fn of(exam: u32, score: Score) -> Narrow {
        Narrow { exam, score }
    }

    /// Whether this layout holds `exam`: whether it fits in 32 bits.
    pub(crate) fn holds(exam: ExamId) -> bool {
        u32::try_from(exam.0).is_ok()
    }
}

impl Stored for Narrow {
    fn new((exam, score): (ExamId, Score)) -> Option<Narrow> {
        Some(Narrow { exam: u32::try_from(exam.0).ok()?, score })
    }

    fn exam(self) -> ExamId {
        ExamId(u64::from(self.exam))
    }

    fn score(self) -> Score {
        self.score
    }

    fn set_score(&mut self, score: Score) {
        self.score = score;
    }
}

/// Any result.
pub(crate) type Wide = (ExamId, Score);

impl Stored for Wide {
    fn new(result: Wide) -> Option<Wide> {
        Some(result)
    }

    fn exam(self) -> ExamId {
        self.0
    }

    fn score(self) -> Score {
        self.1
    }

    fn set_score(&mut self, score: Score) {
        self.1 = score;
    }
}

/// Matches a [`Results`], [`Row`], [`Iter`] or [`Room`] on its layout, binding the inside to
/// `$inner` in `$body`, which is written once for both.
macro_rules! each_layout {
    ($value:expr, $inner:pat => $body:expr) => {
        match $value {
            Self::Narrow($inner) => $body,
            Self::Wide($inner) => $body,
        }
    };
}

/// A student's current results, sorted by exam, as a snapshot holds them. Cloning is two
/// reference counts.
#[derive(Clone, Debug)]
pub(crate) enum Results {
    Narrow(ResultsOf<Narrow>),
    Wide(ResultsOf<Wide>),
}

impl Default for Results {
    fn default() -> Results {
        Results::Narrow(ResultsOf::default())
    }
}

impl Results {
    /// How many results (one per exam).
    pub(crate) fn len(&self) -> usize {
        each_layout!(self, results => results.len())
    }

    /// `(exam, score)` by exam.
    pub(crate) fn iter(&self) -> Iter<'_> {
        match self {
            Results::Narrow(results) => Iter::Narrow(results.iter()),
            Results::Wide(results) => Iter::Wide(results.iter()),
        }
    }
}

/// [`Results`] in one layout.
#[derive(Clone, Debug)]
pub(crate) struct ResultsOf<E> {
    /// Sorted by exam.
    base: Arc<Vec<E>>,
    /// What changed since the base was made, in the order it changed, of which this view holds
    /// the first `n_logged` entries. A later entry for an exam replaces an earlier one, and
    /// each replaces the base's result for its exam.
    log: Option<Log>,
    n_logged: u32,
    /// How many of the logged exams the base does not hold.
    n_added: u32,
}

impl<E> Default for ResultsOf<E> {
    fn default() -> ResultsOf<E> {
        ResultsOf { base: Arc::default(), log: None, n_logged: 0, n_added: 0 }
    }
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

impl<E: Stored> ResultsOf<E> {
    fn len(&self) -> usize {
        self.base.len() + self.n_added as usize
    }

    /// This view's entries of the log, in the order they were written.
    fn logged(&self) -> &[Entry] {
        let log = self.log.as_deref().unwrap_or_default();
        log.get(..self.n_logged as usize).unwrap_or(log)
    }

    fn iter(&self) -> IterOf<'_, E> {
        // Newest first, so that a stable sort puts each exam's latest entry first, and dedup
        // keeps it.
        let mut latest: Vec<_> = self.logged().iter().rev().map(Entry::get).collect();
        latest.sort_by_key(|&(exam, _)| exam);
        latest.dedup_by_key(|&mut (exam, _)| exam);
        IterOf { base: &self.base, latest: latest.into_iter(), left: self.len() }
    }

    /// The same results in the wide layout; the log is shared, not copied.
    fn widen(&self) -> ResultsOf<Wide> {
        ResultsOf {
            base: Arc::new(self.base.iter().map(|result| result.get()).collect()),
            log: self.log.clone(),
            n_logged: self.n_logged,
            n_added: self.n_added,
        }
    }
}

/// A student's results in exam order.
#[derive(Clone, Debug)]
pub(crate) enum Iter<'a> {
    Narrow(IterOf<'a, Narrow>),
    Wide(IterOf<'a, Wide>),
}

impl Iterator for Iter<'_> {
    type Item = (ExamId, Score);

    fn next(&mut self) -> Option<(ExamId, Score)> {
        each_layout!(self, iter => iter.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        each_layout!(self, iter => iter.size_hint())
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// [`Iter`] in one layout: the base merged with the log's latest entry for each exam.
#[derive(Clone, Debug)]
pub(crate) struct IterOf<'a, E> {
    base: &'a [E],
    /// Sorted by exam, one per exam.
    latest: std::vec::IntoIter<(ExamId, Score)>,
    left: usize,
}

impl<E: Stored> Iterator for IterOf<'_, E> {
    type Item = (ExamId, Score);

    fn next(&mut self) -> Option<(ExamId, Score)> {
        let next = match (self.base.split_first(), self.latest.as_slice().first()) {
            (Some((&from_base, base)), Some(&from_log)) => {
                if from_base.exam() < from_log.0 {
                    self.base = base;
                    from_base.get()
                } else {
                    if from_base.exam() == from_log.0 {
                        self.base = base;
                    }
                    self.latest.next();
                    from_log
                }
            }
            (Some((&from_base, base)), None) => {
                self.base = base;
                from_base.get()
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

/// A student's results as the fold keeps them: [`Results`], each result's slot in its exam's
/// results, and an index of the log (the fold's own, never shared).
#[derive(Clone, Debug)]
pub(crate) enum Row {
    Narrow(RowOf<Narrow>),
    Wide(RowOf<Wide>),
}

impl Default for Row {
    fn default() -> Row {
        Row::Narrow(RowOf::default())
    }
}

/// [`Row`] in one layout.
#[derive(Debug)]
pub(crate) struct RowOf<E> {
    results: ResultsOf<E>,
    /// Beside the base's results, in their order.
    base_slots: Vec<u32>,
    /// The logged exams in exam order: for each, the entry that holds its result now.
    logged: Vec<Logged>,
    /// How many of the log's entries a snapshot may hold: the row writes only beyond them.
    n_shared: u32,
}

impl<E> Default for RowOf<E> {
    fn default() -> RowOf<E> {
        RowOf {
            results: ResultsOf::default(),
            base_slots: Vec::new(),
            logged: Vec::new(),
            n_shared: 0,
        }
    }
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

/// A row's results and slots, for a fold that changes them in place: what
/// [`Row::make_room`] gives.
pub(crate) enum Room<'a> {
    Narrow(&'a mut Vec<Narrow>, &'a mut Vec<u32>),
    Wide(&'a mut Vec<Wide>, &'a mut Vec<u32>),
}

impl Row {
    /// A row holding `results` then `wide`, all sorted by exam, with `slots` beside them: in
    /// the narrow layout, as it is given, when no exam is wide.
    pub(crate) fn new(results: Vec<Narrow>, wide: Vec<Wide>, slots: Vec<u32>) -> Row {
        debug_assert_eq!(results.len() + wide.len(), slots.len());
        if wide.is_empty() {
            return Row::Narrow(RowOf::new(results, slots));
        }
        let all = results.iter().map(|result| result.get()).chain(wide).collect();
        Row::Wide(RowOf::new(all, slots))
    }

    /// A row holding what `results` holds, sharing it where it can; the slots are all 0, for
    /// the caller to fill in the order of [`base_exam`](Self::base_exam).
    pub(crate) fn of(results: &Results) -> Row {
        match results {
            Results::Narrow(results) => Row::Narrow(RowOf::of(results)),
            Results::Wide(results) => Row::Wide(RowOf::of(results)),
        }
    }

    /// How many results.
    pub(crate) fn len(&self) -> usize {
        each_layout!(self, row => row.results.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The results as they are now, for a snapshot: it shares this row's memory, and this row
    /// no longer changes that memory in place.
    pub(crate) fn share(&mut self) -> Results {
        match self {
            Row::Narrow(row) => Results::Narrow(row.share()),
            Row::Wide(row) => Results::Wide(row.share()),
        }
    }

    /// `(exam, score)` by exam.
    pub(crate) fn iter(&self) -> Iter<'_> {
        match self {
            Row::Narrow(row) => Iter::Narrow(row.results.iter()),
            Row::Wide(row) => Iter::Wide(row.results.iter()),
        }
    }

    /// Calls `f` with `((exam, score), slot)` of each result, by exam.
    pub(crate) fn for_each_with_slot(&self, f: impl FnMut(((ExamId, Score), u32))) {
        each_layout!(self, row => row.iter_with_slots().for_each(f))
    }

    /// The exam of the base's result at `index`: with nothing logged, the row's result at
    /// `index`.
    pub(crate) fn base_exam(&self, index: usize) -> Option<ExamId> {
        each_layout!(self, row => row.results.base.get(index).map(|result| result.exam()))
    }

    /// Where the base's header is (how many results, and where they are), for prefetching.
    pub(crate) fn base_ptr(&self) -> *const () {
        each_layout!(self, row => Arc::as_ptr(&row.results.base).cast())
    }

    /// Asks for the base's first and last results, from which a search guesses.
    pub(crate) fn prefetch_ends(&self) {
        each_layout!(self, row => {
            let base = &row.results.base;
            [base.first(), base.last()].into_iter().flatten().for_each(|result| prefetch(result));
        })
    }

    /// Asks for the line of the base where a search for `exam` starts.
    pub(crate) fn prefetch_search(&self, exam: ExamId) {
        each_layout!(self, row => {
            let base = &row.results.base;
            if let Some(start) = base.get(guess(base, exam)) {
                prefetch(start);
            }
        })
    }

    /// Asks for the base's header (how many results, and where they are), the log's index,
    /// and the log's next entry.
    pub(crate) fn prefetch_header(&self) {
        each_layout!(self, row => row.prefetch_header())
    }

    /// The slots beside the base.
    pub(crate) fn base_slots_mut(&mut self) -> &mut [u32] {
        each_layout!(self, row => &mut row.base_slots)
    }

    /// Where `exam`'s result is, or would go.
    pub(crate) fn find(&self, exam: ExamId) -> Found {
        each_layout!(self, row => row.find(exam))
    }

    /// Replaces the score of the result held at `held` (as [`find`](Self::find) answered,
    /// with nothing changed since) with `score`; returns the result's slot.
    #[inline]
    pub(crate) fn regrade(&mut self, held: Held, score: Score) -> u32 {
        each_layout!(self, row => row.regrade(held, score))
    }

    /// Adds `result`, which goes at `absent` (as [`find`](Self::find) answered, with nothing
    /// changed since), with `slot` beside it.
    pub(crate) fn insert(&mut self, absent: Absent, result: (ExamId, Score), slot: u32) {
        match self {
            Row::Narrow(row) => match Narrow::new(result) {
                Some(narrow) => row.insert(absent, narrow, slot),
                None => {
                    let mut wide = row.widen();
                    wide.insert(absent, result, slot);
                    *self = Row::Wide(wide);
                }
            },
            Row::Wide(row) => row.insert(absent, result, slot),
        }
    }

    /// The results, sorted by exam, and the slots beside them, each with room for `n` more, for
    /// a fold that changes them in place: the log merged into the base, and the base copied if
    /// a snapshot shares it. In the wide layout if `wide`, for exams that do not fit 32 bits.
    pub(crate) fn make_room(&mut self, n: usize, wide: bool) -> Room<'_> {
        if wide {
            self.widen();
        }
        match self {
            Row::Narrow(row) => {
                let (results, slots) = row.make_room(n);
                Room::Narrow(results, slots)
            }
            Row::Wide(row) => {
                let (results, slots) = row.make_room(n);
                Room::Wide(results, slots)
            }
        }
    }

    /// The row in the wide layout, holding the same results.
    fn widen(&mut self) {
        if let Row::Narrow(row) = self {
            *self = Row::Wide(row.widen());
        }
    }
}

impl RowOf<Narrow> {
    /// The same results in the wide layout, taken from this row: where [`find`](Row::find)
    /// answered before, it answers the same. The log is shared, not copied.
    fn widen(&mut self) -> RowOf<Wide> {
        RowOf {
            results: self.results.widen(),
            base_slots: std::mem::take(&mut self.base_slots),
            logged: std::mem::take(&mut self.logged),
            n_shared: self.n_shared,
        }
    }
}

impl<E: Stored> Clone for RowOf<E> {
    /// A row with a log of its own: a log has one writer.
    fn clone(&self) -> RowOf<E> {
        let log = self.results.log.as_deref().map(|log| {
            log.iter()
                .map(|entry| {
                    let copy = Entry::default();
                    copy.set(entry.get());
                    copy
                })
                .collect()
        });
        RowOf {
            results: ResultsOf { log, ..self.results.clone() },
            base_slots: self.base_slots.clone(),
            logged: self.logged.clone(),
            n_shared: 0,
        }
    }
}

impl<E: Stored> RowOf<E> {
    fn new(results: Vec<E>, slots: Vec<u32>) -> RowOf<E> {
        let results = ResultsOf { base: Arc::new(results), ..ResultsOf::default() };
        RowOf { results, base_slots: slots, logged: Vec::new(), n_shared: 0 }
    }

    fn of(results: &ResultsOf<E>) -> RowOf<E> {
        let base = match results.n_logged {
            0 => results.base.clone(),
            // Every exam, logged or not, is one the base's layout holds: a row widens before it
            // logs an exam that its layout does not.
            _ => Arc::new(results.iter().filter_map(E::new).collect()),
        };
        let base_slots = vec![0; base.len()];
        let results = ResultsOf { base, ..ResultsOf::default() };
        RowOf { results, base_slots, logged: Vec::new(), n_shared: 0 }
    }

    fn share(&mut self) -> ResultsOf<E> {
        self.n_shared = self.results.n_logged;
        self.results.clone()
    }

    /// A logged exam's result. The log holds every entry its index names: the two change
    /// together.
    fn logged_result(&self, logged: &Logged) -> (ExamId, Score) {
        self.results.logged()[logged.entry as usize].get()
    }

    /// `((exam, score), slot)` by exam.
    fn iter_with_slots(&self) -> impl Iterator<Item = ((ExamId, Score), u32)> + '_ {
        let base = std::iter::zip(
            self.results.base.iter().map(|result| result.get()),
            self.base_slots.iter().copied(),
        );
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

    fn prefetch_header(&self) {
        prefetch(Arc::as_ptr(&self.results.base));
        if let Some(log) = &self.results.log {
            prefetch(self.logged.as_ptr());
            if let Some(next) = log.get(self.results.n_logged as usize) {
                prefetch(next);
            }
        }
    }

    fn find(&self, exam: ExamId) -> Found {
        let found = self.logged.binary_search_by_key(&exam, |logged| self.logged_result(logged).0);
        let logged = match found {
            Ok(index) => {
                let (_, score) = self.logged_result(&self.logged[index]);
                return Found::Held(Held::Logged(index), score);
            }
            Err(index) => index,
        };
        match search(&self.results.base, exam) {
            Ok(base) => Found::Held(Held::Base { base, logged }, self.results.base[base].score()),
            Err(base) => Found::Absent(Absent { base, logged }),
        }
    }

    fn regrade(&mut self, held: Held, score: Score) -> u32 {
        match held {
            Held::Base { base, logged } => {
                let exam = self.results.base[base].exam();
                let slot = self.base_slots[base];
                match self.in_place() {
                    Some(results) => results[base].set_score(score),
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
            results[index].set_score(score);
        }
        slot
    }

    /// As [`Row::insert`], for a result in this layout.
    fn insert(&mut self, absent: Absent, stored: E, slot: u32) {
        let result = stored.get();
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
        results.insert(base_index, stored);
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

    fn make_room(&mut self, n: usize) -> (&mut Vec<E>, &mut Vec<u32>) {
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
    fn in_place(&mut self) -> Option<&mut Vec<E>> {
        match self.results.log {
            None => Arc::get_mut(&mut self.results.base),
            Some(_) => None,
        }
    }

    /// Merges the log into a new base of the row's own, with room for `room` more results.
    fn merge(&mut self, room: usize) {
        let capacity = self.results.len() + room;
        let mut results = Vec::with_capacity(capacity);
        let mut slots = Vec::with_capacity(capacity);
        for (result, slot) in self.iter_with_slots() {
            // The row widened before it logged an exam its layout does not hold.
            if let Some(result) = E::new(result) {
                results.push(result);
                slots.push(slot);
            }
        }
        self.results = ResultsOf { base: Arc::new(results), ..ResultsOf::default() };
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
#[inline]
pub(crate) fn search<E: Stored>(results: &[E], exam: ExamId) -> Result<usize, usize> {
    let found = |window: &[E], offset: usize| {
        let index = offset + window.partition_point(|result| result.exam() < exam);
        match results.get(index) {
            Some(result) if result.exam() == exam => Ok(index),
            _ => Err(index),
        }
    };
    let start = guess(results, exam);
    let Some(at_start) = results.get(start).map(|result| result.exam()) else {
        return Err(0);
    };
    let mut step = 1;
    if at_start < exam {
        // In (start, len]: double the step until an exam at least `exam`, or the end.
        while start + step < results.len() && results[start + step].exam() < exam {
            step *= 2;
        }
        let from = start + step / 2 + 1;
        found(&results[from..(start + step + 1).min(results.len())], from)
    } else {
        // In [0, start]: double the step until an exam at most `exam`, or the start.
        while step <= start && results[start - step].exam() > exam {
            step *= 2;
        }
        let from = start.saturating_sub(step);
        found(&results[from..=start - step / 2], from)
    }
}

/// The index `exam` would have in `results` if their exams were spread evenly between the
/// first and the last; 0 when there are none.
#[inline]
fn guess<E: Stored>(results: &[E], exam: ExamId) -> usize {
    let (Some(first), Some(last)) = (results.first(), results.last()) else {
        return 0;
    };
    let (first, last) = (first.exam(), last.exam());
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
        // Now and then an exam on either side of 32 bits: the row widens when it takes the first
        // that does not fit.
        let exam = prop_oneof![39 => 0..120u64, 1 => 0xFFFF_FFFE..0x1_0000_0002u64];
        (exam, 0..4u8, prop::bool::weighted(0.2)).prop_map(|(exam, score, share)| Step {
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

    fn base(row: &Row) -> Vec<(ExamId, Score)> {
        match row {
            Row::Narrow(row) => row.results.base.iter().map(|result| result.get()).collect(),
            Row::Wide(row) => row.results.base.to_vec(),
        }
    }

    /// The results, the slots' count and the room left in both, of a [`Room`].
    fn room(room: Room<'_>) -> (Vec<(ExamId, Score)>, usize, usize) {
        let (results, room_left) = match &room {
            Room::Narrow(results, _) => (
                results.iter().map(|result| result.get()).collect(),
                results.capacity() - results.len(),
            ),
            Room::Wide(results, _) => (results.to_vec(), results.capacity() - results.len()),
        };
        let (Room::Narrow(_, slots) | Room::Wide(_, slots)) = room;
        (results, slots.len(), room_left.min(slots.capacity() - slots.len()))
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
            bulk_wide in any::<bool>(),
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
                    // A bulk fold's way in: one base of the row's own, with room, in the wide
                    // layout if asked.
                    let (base, n_slots, room_left) = room(row.make_room(4, bulk_wide));
                    prop_assert_eq!(&base, &results(&model));
                    prop_assert_eq!(n_slots, base.len());
                    prop_assert!(room_left >= 4);
                    prop_assert!(!bulk_wide || matches!(row, Row::Wide(_)));
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
                let mut held_with_slots = Vec::new();
                row.for_each_with_slot(|result| held_with_slots.push(result));
                prop_assert_eq!(held_with_slots, with_slots);
                if model.keys().any(|&exam| exam > u64::from(u32::MAX)) {
                    prop_assert!(matches!(row, Row::Wide(_)), "an exam past 32 bits widens the row");
                }
                if share {
                    shared.push((row.share(), results(&model)));
                }
            }
            for (results, then) in &shared {
                prop_assert_eq!(results.iter().len(), then.len());
                prop_assert_eq!(&results.iter().collect::<Vec<_>>(), then);
                let row = Row::of(results);
                prop_assert_eq!(&base(&row), then);
            }
        }
    }

    #[test]
    fn changes_to_a_shared_row_go_to_the_log_until_it_is_full() {
        let score = Score::new(0.5).expect("valid");
        let results: Vec<_> = (0..160).map(|exam| Narrow::of(exam * 2, score)).collect();
        let mut row = Row::new(results, Vec::new(), (0..160).collect());
        let snapshot = row.share();
        let base_ptr = row.base_ptr();
        // A sixteenth of 160 is 10: ten new results fill the log, the eleventh merges it.
        for exam in 0..11 {
            let Found::Absent(absent) = row.find(ExamId(exam * 2 + 1)) else {
                panic!("odd exams are absent");
            };
            row.insert(absent, (ExamId(exam * 2 + 1), score), 160 + exam as u32);
            assert_eq!(row.base_ptr() == base_ptr, exam < 10, "after {} new results", exam + 1);
        }
        assert_eq!(snapshot.len(), 160);
        assert_eq!(row.len(), 171);
        assert_eq!(base(&row).len(), 171);
    }

    #[test]
    fn a_row_is_narrow_until_an_exam_does_not_fit_32_bits() {
        let score = Score::new(0.5).expect("valid");
        let narrow: Vec<_> = (0..20).map(|exam| Narrow::of(exam, score)).collect();
        let results: Vec<_> = narrow.iter().map(|result| result.get()).collect();
        let mut row = Row::new(narrow.clone(), Vec::new(), (0..20).collect());
        assert!(matches!(row, Row::Narrow(_)));
        let snapshot = row.share();
        let wide = (ExamId(u64::from(u32::MAX) + 1), score);
        let Found::Absent(absent) = row.find(wide.0) else {
            panic!("the exam is absent");
        };
        row.insert(absent, wide, 20);
        assert!(matches!(row, Row::Wide(_)));
        assert!(matches!(snapshot, Results::Narrow(_)));
        assert_eq!(snapshot.iter().collect::<Vec<_>>(), results);
        let mut now = results.clone();
        now.push(wide);
        assert_eq!(row.iter().collect::<Vec<_>>(), now);
        let restored = Row::new(narrow, vec![wide], (0..21).collect());
        assert!(matches!(restored, Row::Wide(_)));
        assert_eq!(restored.iter().collect::<Vec<_>>(), now);
    }
}
