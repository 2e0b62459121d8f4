//! Bodies already rendered from the published snapshot.
//!
//! A snapshot never changes, so the body of a resource is a function of the snapshot and the
//! resource: the first request renders it, the requests that follow on the same snapshot send the
//! same bytes. A popular student or exam is then rendered once per published version (a few
//! dozen times a second under full-speed ingest) rather than once per request. The cache holds
//! the bodies of one snapshot only, replaced when a body is kept for a newer one; it is bounded
//! in entries and bytes, past which bodies are rendered and not kept. A body's gzip encoding is
//! kept beside it, the first time a client asks for it: compressing a 300 KB exam took longer
//! than rendering it.
//!
//! The listings outlive their snapshot. Students and exams are never removed, so of two
//! snapshots with as many students, the later lists the same students as the earlier (its set
//! contains the earlier's and is no larger); the same holds for exams. A `/students` body (2 MB
//! and ~8 ms to render with 100k students) is then rendered again only when a student is added,
//! not on every snapshot.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use scores_core::wire::{self, QueryError};
use scores_core::{ExamId, Page, Snapshot};

use crate::metrics::Metrics;
use crate::query::{ExamsPage, StudentsPage};

/// The most bodies kept for one snapshot.
const MAX_ENTRIES: usize = 4096;
/// The most bytes of bodies kept for one snapshot.
const MAX_BYTES: usize = 64 << 20;
/// Bodies up to this size are sent as they are: gzip saves little on them, or makes them longer.
/// The router's compression layer uses the same threshold.
pub(crate) const MIN_GZIP_BYTES: usize = 1024;

/// How a body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
}

/// What a query asks for, rendered from a snapshot alone: the key of a rendered body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Resource {
    Students(StudentsPage),
    Student(String),
    Exams(ExamsPage),
    Exam(ExamId),
}

/// How many students and exams a snapshot holds: all that its listings depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sizes {
    students: usize,
    exams: usize,
}

impl Sizes {
    fn of(snapshot: &Snapshot) -> Sizes {
        Sizes { students: snapshot.n_students(), exams: snapshot.n_exams() }
    }
}

impl Resource {
    /// Whether the body rendered on a snapshot of `rendered_on` sizes is this resource's body
    /// on another snapshot, of `now` sizes. See the module docs.
    fn outlives_its_snapshot(&self, rendered_on: Sizes, now: Sizes) -> bool {
        match self {
            Resource::Students(_) => rendered_on.students == now.students,
            Resource::Exams(_) => rendered_on.exams == now.exams,
            Resource::Student(_) | Resource::Exam(_) => false,
        }
    }

    /// The sequence number at which this resource last changed in `snapshot`: its body is the
    /// same on every snapshot that gives the same number. `None` when the snapshot does not
    /// hold it (an unknown student or exam).
    pub(crate) fn changed_at(&self, snapshot: &Snapshot) -> Option<u64> {
        match self {
            Resource::Students(_) => Some(snapshot.students_changed_at()),
            Resource::Student(id) => snapshot.student_changed_at(id),
            Resource::Exams(_) => Some(snapshot.exams_changed_at()),
            Resource::Exam(exam) => snapshot.exam_changed_at(*exam),
        }
    }

    fn render(&self, snapshot: &Snapshot) -> Result<Vec<u8>, QueryError> {
        match self {
            Resource::Students(page) => Ok(wire::students_json(
                snapshot,
                Page { limit: page.limit, after: page.after.as_deref() },
            )),
            Resource::Student(id) => wire::student_json(snapshot, id),
            Resource::Exams(page) => Ok(wire::exams_json(
                snapshot,
                Page { limit: page.limit, after: page.after.as_ref() },
            )),
            Resource::Exam(exam) => wire::exam_json(snapshot, *exam),
        }
    }
}

/// The bodies rendered from one snapshot. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RenderCache(Mutex<Option<Generation>>);

#[derive(Debug)]
struct Generation {
    /// Weak: the cache never keeps a snapshot alive (freeing one is the publisher's work, not a
    /// request's), yet its address cannot be reused by a later snapshot while it names this one.
    snapshot: Weak<Snapshot>,
    seq: u64,
    sizes: Sizes,
    bodies: HashMap<Resource, Kept>,
    bytes: usize,
}

/// A rendered body, and its gzip encoding once a client has asked for it.
#[derive(Clone, Debug)]
struct Kept {
    identity: Bytes,
    gzip: Option<Bytes>,
}

impl RenderCache {
    /// The body of `resource` on `snapshot`, in `coding` when it is worth compressing (the
    /// coding used comes back with it): the one already kept, or a new rendering or compression
    /// (kept when `snapshot` is the newest seen and the bounds allow). Errors are never kept.
    pub(crate) fn get_or_render(
        &self,
        snapshot: &Arc<Snapshot>,
        resource: Resource,
        coding: Coding,
        metrics: &Metrics,
    ) -> Result<(Bytes, Coding), QueryError> {
        let kept = self.get(snapshot, &resource);
        let identity = match kept {
            Some(Kept { identity, gzip }) => match (coding, gzip) {
                (Coding::Gzip, Some(gzip)) => {
                    metrics.bodies_reused.inc();
                    return Ok((gzip, Coding::Gzip));
                }
                (Coding::Gzip, None) if identity.len() > MIN_GZIP_BYTES => identity,
                _ => {
                    metrics.bodies_reused.inc();
                    return Ok((identity, Coding::Identity));
                }
            },
            None => {
                metrics.bodies_rendered.inc();
                Bytes::from(resource.render(snapshot)?)
            }
        };
        let gzip = (coding == Coding::Gzip && identity.len() > MIN_GZIP_BYTES)
            .then(|| {
                metrics.bodies_compressed.inc();
                gzip(&identity)
            })
            .flatten();
        self.keep(snapshot, resource, Kept { identity: identity.clone(), gzip: gzip.clone() });
        Ok(match gzip {
            Some(gzip) => (gzip, Coding::Gzip),
            None => (identity, Coding::Identity),
        })
    }

    fn get(&self, snapshot: &Arc<Snapshot>, resource: &Resource) -> Option<Kept> {
        let generation = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = generation.as_ref().filter(|g| {
            g.is_of(snapshot) || resource.outlives_its_snapshot(g.sizes, Sizes::of(snapshot))
        })?;
        generation.bodies.get(resource).cloned()
    }

    fn keep(&self, snapshot: &Arc<Snapshot>, resource: Resource, kept: Kept) {
        let mut generation = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = match &*generation {
            Some(current) if current.is_of(snapshot) => None,
            // A request that loaded its snapshot before the last publish: not worth keeping.
            Some(current) if current.seq > snapshot.seq() => return,
            _ => {
                let (next, stale) = Generation::after(generation.take(), snapshot);
                *generation = Some(next);
                stale
            }
        };
        if let Some(current) = generation.as_mut() {
            current.keep(resource, kept);
        }
        // The previous snapshot's bodies are freed after the lock is released.
        drop(generation);
        drop(stale);
    }
}

impl Generation {
    /// Keeps `kept`, or adds its gzip encoding to the body already kept, within the bounds.
    fn keep(&mut self, resource: Resource, kept: Kept) {
        let size = |kept: &Kept| kept.identity.len() + kept.gzip.as_ref().map_or(0, Bytes::len);
        let added = match self.bodies.get(&resource) {
            Some(old) => size(&kept).saturating_sub(size(old)),
            None if self.bodies.len() < MAX_ENTRIES => size(&kept),
            None => return,
        };
        if self.bytes + added <= MAX_BYTES {
            self.bytes += added;
            self.bodies.insert(resource, kept);
        }
    }

    /// The generation of `snapshot`, with the bodies of `previous` that are still its bodies
    /// (see the module docs); what remains of `previous` comes back, to be freed unlocked.
    fn after(
        previous: Option<Generation>,
        snapshot: &Arc<Snapshot>,
    ) -> (Generation, Option<Generation>) {
        let mut next = Generation {
            snapshot: Arc::downgrade(snapshot),
            seq: snapshot.seq(),
            sizes: Sizes::of(snapshot),
            bodies: HashMap::new(),
            bytes: 0,
        };
        let Some(mut previous) = previous else { return (next, None) };
        let (rendered_on, now) = (previous.sizes, next.sizes);
        let held = previous
            .bodies
            .extract_if(|resource, _| resource.outlives_its_snapshot(rendered_on, now));
        for (resource, kept) in held {
            next.keep(resource, kept);
        }
        (next, Some(previous))
    }

    fn is_of(&self, snapshot: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(snapshot))
    }
}

/// `body` gzip-encoded; `None` in the (unexpected) case the encoder fails, and then the body is
/// sent as it is. The fastest level: on a 117 KB exam answer it gives 34.0 KB against level
/// 6's 31.3 KB (`gzip -1` / `gzip -6`), for a fraction of the time, and under full ingest a
/// body is compressed about once per snapshot.
fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use scores_core::{ScoreEvent, Scoreboard};

    use super::*;

    fn event(student: &str, exam: u64, score: f64) -> ScoreEvent {
        ScoreEvent::new(student, exam, score).unwrap()
    }

    fn board(events: &[(&str, u64, f64)]) -> Scoreboard {
        let mut board = Scoreboard::new();
        for &(student, exam, score) in events {
            board.apply(&event(student, exam, score));
        }
        board
    }

    #[test]
    fn a_body_is_rendered_once_per_snapshot_and_again_for_a_new_one() {
        let cache = RenderCache::default();
        let metrics = Metrics::default();
        let mut board = board(&[("ada", 1, 0.5)]);
        let first = Arc::new(board.snapshot());
        let resource = || Resource::Student("ada".to_owned());

        let a = cache.get_or_render(&first, resource(), Coding::Identity, &metrics).unwrap().0;
        let b = cache.get_or_render(&first, resource(), Coding::Identity, &metrics).unwrap().0;
        assert_eq!(a, wire::student_json(&first, "ada").unwrap());
        assert_eq!(a.as_ptr(), b.as_ptr(), "the second request sends the kept body");
        assert_eq!(metrics.bodies_rendered.get(), 1);
        assert_eq!(metrics.bodies_reused.get(), 1);

        board.apply(&event("ada", 2, 1.0));
        let second = Arc::new(board.snapshot());
        let c = cache.get_or_render(&second, resource(), Coding::Identity, &metrics).unwrap().0;
        assert_eq!(c, wire::student_json(&second, "ada").unwrap());
        assert_ne!(a, c);

        // A request still holding the older snapshot gets that snapshot's answer.
        let d = cache.get_or_render(&first, resource(), Coding::Identity, &metrics).unwrap().0;
        assert_eq!(d, a);
        let e = cache.get_or_render(&second, resource(), Coding::Identity, &metrics).unwrap().0;
        assert_eq!(e.as_ptr(), c.as_ptr(), "an older request does not evict the newer bodies");
    }

    #[test]
    fn listings_outlive_their_snapshot_until_a_student_or_exam_is_added() {
        let cache = RenderCache::default();
        let metrics = Metrics::default();
        let render = |snapshot: &Arc<Snapshot>, resource: Resource| {
            cache.get_or_render(snapshot, resource, Coding::Identity, &metrics).unwrap().0
        };
        let students = || Resource::Students(StudentsPage::default());
        let exams = || Resource::Exams(ExamsPage::default());
        let mut board = board(&[("ada", 1, 0.5)]);
        let first = Arc::new(board.snapshot());
        let students_first = render(&first, students());
        let exams_first = render(&first, exams());

        // A new exam, no new student: the student listing is the one kept.
        board.apply(&event("ada", 2, 0.5));
        let second = Arc::new(board.snapshot());
        let students_second = render(&second, students());
        assert_eq!(students_second.as_ptr(), students_first.as_ptr());
        let exams_second = render(&second, exams());
        assert_eq!(exams_second, wire::exams_json(&second, Page::ALL));
        assert_ne!(exams_second, exams_first);
        // Kept for the second snapshot (a new generation), and still the first one's body.
        assert_eq!(render(&second, students()).as_ptr(), students_first.as_ptr());
        assert_eq!(render(&first, students()).as_ptr(), students_first.as_ptr());

        // A new student, no new exam: the other way round.
        board.apply(&event("bob", 2, 0.5));
        let third = Arc::new(board.snapshot());
        let students_third = render(&third, students());
        assert_eq!(students_third, wire::students_json(&third, Page::ALL));
        assert_ne!(students_third, students_first);
        assert_eq!(render(&third, exams()).as_ptr(), exams_second.as_ptr());
        // A request still on the first snapshot is not answered from the third's listing.
        assert_eq!(render(&first, students()), students_first);
        assert_eq!(render(&first, exams()), exams_first);
    }

    #[test]
    fn errors_and_distinct_queries_are_not_confused() {
        let cache = RenderCache::default();
        let metrics = Metrics::default();
        let snapshot = Arc::new(board(&[("ada", 1, 0.5), ("bob", 1, 0.25)]).snapshot());
        let ada = cache
            .get_or_render(
                &snapshot,
                Resource::Student("ada".to_owned()),
                Coding::Identity,
                &metrics,
            )
            .unwrap()
            .0;
        let bob = cache
            .get_or_render(
                &snapshot,
                Resource::Student("bob".to_owned()),
                Coding::Identity,
                &metrics,
            )
            .unwrap()
            .0;
        assert_ne!(ada, bob);
        let missing = Resource::Student("eve".to_owned());
        assert_eq!(
            cache.get_or_render(&snapshot, missing.clone(), Coding::Identity, &metrics),
            Err(QueryError::UnknownStudent("eve".to_owned()))
        );
        assert!(cache.get(&snapshot, &missing).is_none());

        let page = |limit| Resource::Students(StudentsPage { limit: Some(limit), after: None });
        let one = cache.get_or_render(&snapshot, page(1), Coding::Identity, &metrics).unwrap().0;
        let two = cache.get_or_render(&snapshot, page(2), Coding::Identity, &metrics).unwrap().0;
        assert_eq!(one, wire::students_json(&snapshot, Page { limit: Some(1), after: None }));
        assert_ne!(one, two);
    }

    #[test]
    fn the_gzip_encoding_is_kept_beside_the_body_and_small_bodies_are_sent_as_they_are() {
        use std::io::Read as _;

        let cache = RenderCache::default();
        let metrics = Metrics::default();
        let results: Vec<(String, u64, f64)> =
            (0..100).map(|exam| ("ada".to_owned(), exam, 0.5)).collect();
        let events: Vec<(&str, u64, f64)> =
            results.iter().map(|(s, e, x)| (s.as_str(), *e, *x)).collect();
        let snapshot = Arc::new(board(&events).snapshot());
        let ada = || Resource::Student("ada".to_owned());

        let (identity, coding) =
            cache.get_or_render(&snapshot, ada(), Coding::Identity, &metrics).unwrap();
        assert_eq!(coding, Coding::Identity);
        let (gzip, coding) = cache.get_or_render(&snapshot, ada(), Coding::Gzip, &metrics).unwrap();
        assert_eq!(coding, Coding::Gzip);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..]).read_to_end(&mut decoded).unwrap();
        assert_eq!(decoded, identity);
        let (again, _) = cache.get_or_render(&snapshot, ada(), Coding::Gzip, &metrics).unwrap();
        assert_eq!(again.as_ptr(), gzip.as_ptr(), "compressed once per snapshot");
        assert_eq!(metrics.bodies_rendered.get(), 1);
        assert_eq!(metrics.bodies_compressed.get(), 1);
        assert_eq!(metrics.bodies_reused.get(), 1);

        // Under `MIN_GZIP_BYTES`.
        let exams = Resource::Exams(ExamsPage { limit: Some(1), after: None });
        let (small, coding) =
            cache.get_or_render(&snapshot, exams, Coding::Gzip, &metrics).unwrap();
        assert_eq!(
            (&small[..], coding),
            (&br#"{"exams":[0],"total":100,"next":0}"#[..], Coding::Identity)
        );
    }
}
