//! Bodies already rendered from the published snapshot.
//!
//! A snapshot never changes, so the body of a resource is a function of the snapshot and the
//! resource: the first request renders it, the requests that follow on the same snapshot send the
//! same bytes. A popular student or exam is then rendered once per published version (a few
//! dozen times a second under full-speed ingest) rather than once per request. The cache holds
//! the bodies of one snapshot only, replaced when a body is kept for a newer one; it is bounded
//! in entries and bytes, past which bodies are rendered and not kept.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use scores_core::{ExamId, Snapshot};

use crate::api::{self, ApiError, ListParams};
use crate::metrics::Metrics;

/// The most bodies kept for one snapshot.
const MAX_ENTRIES: usize = 4096;
/// The most bytes of bodies kept for one snapshot.
const MAX_BYTES: usize = 64 << 20;

/// What a query asks for, rendered from a snapshot alone: the key of a rendered body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Resource {
    Students(ListParams),
    Student(String),
    Exams(ListParams),
    Exam(ExamId),
}

impl Resource {
    fn render(&self, snapshot: &Snapshot) -> Result<Vec<u8>, ApiError> {
        match self {
            Resource::Students(params) => api::students_json(snapshot, params),
            Resource::Student(id) => api::student_json(snapshot, id),
            Resource::Exams(params) => api::exams_json(snapshot, params),
            Resource::Exam(exam) => api::exam_json(snapshot, *exam),
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
    bodies: HashMap<Resource, Bytes>,
    bytes: usize,
}

impl RenderCache {
    /// The body of `resource` on `snapshot`: the one already rendered, or a new rendering (kept
    /// when `snapshot` is the newest seen and the bounds allow). Errors are never kept.
    pub(crate) fn get_or_render(
        &self,
        snapshot: &Arc<Snapshot>,
        resource: Resource,
        metrics: &Metrics,
    ) -> Result<Bytes, ApiError> {
        if let Some(body) = self.get(snapshot, &resource) {
            metrics.bodies_reused.fetch_add(1, Ordering::Relaxed);
            return Ok(body);
        }
        metrics.bodies_rendered.fetch_add(1, Ordering::Relaxed);
        let body = Bytes::from(resource.render(snapshot)?);
        self.keep(snapshot, resource, body.clone());
        Ok(body)
    }

    fn get(&self, snapshot: &Arc<Snapshot>, resource: &Resource) -> Option<Bytes> {
        let generation = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = generation.as_ref().filter(|g| g.is_of(snapshot))?;
        generation.bodies.get(resource).cloned()
    }

    fn keep(&self, snapshot: &Arc<Snapshot>, resource: Resource, body: Bytes) {
        let mut generation = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = match &*generation {
            Some(current) if current.is_of(snapshot) => None,
            // A request that loaded its snapshot before the last publish: not worth keeping.
            Some(current) if current.seq > snapshot.seq() => return,
            _ => generation.replace(Generation::of(snapshot)),
        };
        if let Some(current) = generation.as_mut()
            && current.bodies.len() < MAX_ENTRIES
            && current.bytes + body.len() <= MAX_BYTES
        {
            current.bytes += body.len();
            current.bodies.insert(resource, body);
        }
        // The previous snapshot's bodies are freed after the lock is released.
        drop(generation);
        drop(stale);
    }
}

impl Generation {
    fn of(snapshot: &Arc<Snapshot>) -> Generation {
        Generation {
            snapshot: Arc::downgrade(snapshot),
            seq: snapshot.seq(),
            bodies: HashMap::new(),
            bytes: 0,
        }
    }

    fn is_of(&self, snapshot: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(snapshot))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use scores_core::{Score, ScoreEvent, Scoreboard, StudentId};

    use super::*;

    fn event(student: &str, exam: u64, score: f64) -> ScoreEvent {
        ScoreEvent {
            student_id: StudentId::new(student).unwrap(),
            exam: ExamId(exam),
            score: Score::new(score).unwrap(),
        }
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

        let a = cache.get_or_render(&first, resource(), &metrics).unwrap();
        let b = cache.get_or_render(&first, resource(), &metrics).unwrap();
        assert_eq!(a, api::student_json(&first, "ada").unwrap());
        assert_eq!(a.as_ptr(), b.as_ptr(), "the second request sends the kept body");
        assert_eq!(metrics.bodies_rendered.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.bodies_reused.load(Ordering::Relaxed), 1);

        board.apply(&event("ada", 2, 1.0));
        let second = Arc::new(board.snapshot());
        let c = cache.get_or_render(&second, resource(), &metrics).unwrap();
        assert_eq!(c, api::student_json(&second, "ada").unwrap());
        assert_ne!(a, c);

        // A request still holding the older snapshot gets that snapshot's answer.
        let d = cache.get_or_render(&first, resource(), &metrics).unwrap();
        assert_eq!(d, a);
        let e = cache.get_or_render(&second, resource(), &metrics).unwrap();
        assert_eq!(e.as_ptr(), c.as_ptr(), "an older request does not evict the newer bodies");
    }

    #[test]
    fn errors_and_distinct_queries_are_not_confused() {
        let cache = RenderCache::default();
        let metrics = Metrics::default();
        let snapshot = Arc::new(board(&[("ada", 1, 0.5), ("bob", 1, 0.25)]).snapshot());
        let ada =
            cache.get_or_render(&snapshot, Resource::Student("ada".to_owned()), &metrics).unwrap();
        let bob =
            cache.get_or_render(&snapshot, Resource::Student("bob".to_owned()), &metrics).unwrap();
        assert_ne!(ada, bob);
        let missing = Resource::Student("eve".to_owned());
        assert_eq!(
            cache.get_or_render(&snapshot, missing.clone(), &metrics),
            Err(ApiError::UnknownStudent("eve".to_owned()))
        );
        assert!(cache.get(&snapshot, &missing).is_none());

        let page = |limit: &str| {
            Resource::Students(ListParams { limit: Some(limit.to_owned()), after: None })
        };
        let one = cache.get_or_render(&snapshot, page("1"), &metrics).unwrap();
        let two = cache.get_or_render(&snapshot, page("2"), &metrics).unwrap();
        assert_eq!(
            one,
            api::students_json(&snapshot, &ListParams { limit: Some("1".to_owned()), after: None })
                .unwrap()
        );
        assert_ne!(one, two);
        assert!(cache.get_or_render(&snapshot, page("0"), &metrics).is_err());
    }
}
