//! [`Pipeline`]: what the frontends read from a running pipeline.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use scores_core::Snapshot;
use tokio::sync::watch;

use crate::counters::Counters;
use crate::log::LogRead;

/// A read handle on a running pipeline, cheap to clone: the published snapshot, whether it is
/// ready and why not, its counters, and the log's read side.
#[derive(Clone, Debug)]
pub struct Pipeline(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    snapshot: ArcSwap<Snapshot>,
    retired: Mutex<Option<Arc<Snapshot>>>,
    /// The published snapshot's sequence number, for readers waiting for a newer one.
    published: watch::Sender<u64>,
    /// [`Readiness::is_ready`], kept apart so that every query reads one atomic.
    ready: AtomicBool,
    readiness: Mutex<Readiness>,
    /// Why the log refuses appends, while it does.
    log_refusal: Mutex<Option<String>>,
    /// Damage found in the log, each named with its place, the first [`MAX_DAMAGE_KEPT`].
    damage: Mutex<Vec<String>>,
    /// Why the pipeline failed and is stopping, once it has.
    failure: Mutex<Option<String>>,
    counters: Counters,
    log: Option<Arc<dyn LogRead>>,
    /// [`Role`] as a number: 0 for none (the file journal's single writer).
    role: AtomicU8,
    /// The sequence number of the log's last event, as last seen (for a shared log).
    log_end: AtomicU64,
}

/// How many places of damage [`Pipeline::damage`] names; past them, only the count grows.
const MAX_DAMAGE_KEPT: usize = 8;

/// What readiness is made of. A replica answers only from a state its log really held: a
/// checkpoint it restored, or what it read once it reached the log. A replica that has neither
/// (a wrong password, a typo in the host, NATS down on its first start) would serve an empty
/// board as if it were the real one.
#[derive(Debug, Default)]
struct Readiness {
    /// The projections are restored; the sequence number they were restored to.
    restored: Option<u64>,
    /// When a replica of a shared log last heard from the log; `None` until it first does.
    last_heard: Option<Instant>,
}

impl Readiness {
    fn is_ready(&self, shared_log: bool) -> bool {
        match self.restored {
            None => false,
            Some(seq) => !shared_log || seq > 0 || self.last_heard.is_some(),
        }
    }
}

/// What a replica of a shared log does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It holds the lease: it reads the upstream into the log (and folds the log, as every
    /// replica does).
    Ingester,
    /// It folds the log; another replica ingests.
    Follower,
}

impl Role {
    /// `ingester` or `follower`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingester => "ingester",
            Role::Follower => "follower",
        }
    }
}

impl Pipeline {
    /// A handle that is not ready until a snapshot is published and the pipeline says so.
    pub(crate) fn new(log: Option<Arc<dyn LogRead>>) -> Pipeline {
        Pipeline(Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            retired: Mutex::new(None),
            published: watch::Sender::new(0),
            ready: AtomicBool::new(false),
            readiness: Mutex::default(),
            log_refusal: Mutex::new(None),
            damage: Mutex::default(),
            failure: Mutex::new(None),
            counters: Counters::default(),
            log,
            role: AtomicU8::new(0),
            log_end: AtomicU64::new(0),
        }))
    }

    /// A handle with no log behind it that is not ready: what frontends see while a pipeline
    /// restores its projections.
    pub fn restoring() -> Pipeline {
        Pipeline::new(None)
    }

    /// A ready handle with no log behind it, serving `snapshot` until another is
    /// [published](Self::publish): for tests, and for a board folded by the caller.
    pub fn fixed(snapshot: Snapshot) -> Pipeline {
        let pipeline = Pipeline::new(None);
        let seq = snapshot.seq();
        pipeline.publish(snapshot);
        pipeline.set_restored(seq);
        pipeline
    }

    /// The published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.snapshot.load_full()
    }

    /// The published snapshot once it has folded event `seq`, waiting at most `within` for it;
    /// `None` when it has not by then.
    pub async fn snapshot_at_least(&self, seq: u64, within: Duration) -> Option<Arc<Snapshot>> {
        let snapshot = self.snapshot();
        if snapshot.seq() >= seq {
            return Some(snapshot);
        }
        let mut published = self.0.published.subscribe();
        let waited =
            tokio::time::timeout(within, published.wait_for(|&published| published >= seq));
        match waited.await {
            Ok(Ok(_)) => Some(self.snapshot()).filter(|snapshot| snapshot.seq() >= seq),
            _ => None,
        }
    }

    /// Whether the snapshot answers queries: the projections are restored and, on a shared
    /// log, come from a checkpoint or from the log itself (see [`not_ready_reason`]).
    ///
    /// [`not_ready_reason`]: Self::not_ready_reason
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Why the pipeline is not ready, while it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        let readiness = self.0.readiness.lock().unwrap_or_else(PoisonError::into_inner);
        if readiness.is_ready(self.role().is_some()) {
            return None;
        }
        Some(match readiness.restored {
            None => "restoring the projections".to_owned(),
            Some(_) => {
                let problem = self.log_refusal().unwrap_or_else(|| "reaching the log".to_owned());
                format!(
                    "no checkpoint to answer from, and the log has not been read yet: {problem}"
                )
            }
        })
    }

    /// How long since this replica last heard from its shared log (the stream's end read, or a
    /// message seen): how stale its answers may be. `None` for the file journal, which is
    /// local, and for a replica that has not heard from the log since it started.
    pub fn staleness(&self) -> Option<Duration> {
        let readiness = self.0.readiness.lock().unwrap_or_else(PoisonError::into_inner);
        readiness.last_heard.map(|heard| heard.elapsed())
    }

    /// Why the log refuses appends, while it does: nothing new becomes visible meanwhile, and
    /// every answer is still right as of the snapshot's sequence number.
    pub fn log_refusal(&self) -> Option<String> {
        self.0.log_refusal.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Where the log was found damaged (its segment and offset), once it was: every answer is
    /// still right as of the snapshot, but events inside the damage cannot be read again.
    pub fn damage(&self) -> Vec<String> {
        self.0.damage.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reports damage found in the log, named with its place (a [`LogError`] says the segment
    /// and offset): logged as an error, counted and kept for [`damage`](Self::damage) the first
    /// time it is found.
    ///
    /// [`LogError`]: crate::LogError
    pub fn report_damage(&self, place: String) {
        let mut damage = self.0.damage.lock().unwrap_or_else(PoisonError::into_inner);
        if damage.contains(&place) {
            return;
        }
        tracing::error!(damage = %place, "the log is damaged: events there cannot be read again");
        self.counters().log_damage_found.fetch_add(1, Ordering::Relaxed);
        if damage.len() < MAX_DAMAGE_KEPT {
            damage.push(place);
        }
    }

    /// Why the pipeline failed (it could not restore its projections, say), once it has.
    pub fn failure(&self) -> Option<String> {
        self.0.failure.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The pipeline's counters.
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// The log's read side; `None` for a [`fixed`](Self::fixed) handle.
    pub fn log(&self) -> Option<Arc<dyn LogRead>> {
        self.0.log.clone()
    }

    /// What this replica does, for a shared log; `None` for the file journal, which has one
    /// writer only.
    pub fn role(&self) -> Option<Role> {
        match self.0.role.load(Ordering::Relaxed) {
            1 => Some(Role::Follower),
            2 => Some(Role::Ingester),
            _ => None,
        }
    }

    /// How many events the log holds that the published snapshot does not, for a shared log.
    pub fn lag(&self) -> Option<u64> {
        self.role()?;
        Some(self.0.log_end.load(Ordering::Relaxed).saturating_sub(self.snapshot().seq()))
    }

    pub(crate) fn set_role(&self, role: Role) {
        let role = match role {
            Role::Follower => 1,
            Role::Ingester => 2,
        };
        self.0.role.store(role, Ordering::Relaxed);
    }

    pub(crate) fn set_log_end(&self, seq: u64) {
        self.0.log_end.store(seq, Ordering::Relaxed);
    }

    /// Makes `snapshot` the one every new reader gets. The running pipeline publishes each
    /// snapshot it folds; a caller that folds a board itself publishes its own.
    ///
    /// The snapshot it replaces is kept until the next publish, so that requests still reading
    /// it have long finished when it is freed, and the freeing (the old version's own rows and
    /// nodes, milliseconds for a large batch) falls to the publishing thread, not to a request.
    pub fn publish(&self, snapshot: Snapshot) {
        let seq = snapshot.seq();
        let replaced = self.0.snapshot.swap(Arc::new(snapshot));
        self.0.published.send_replace(seq);
        self.counters().snapshots_published.fetch_add(1, Ordering::Relaxed);
        let mut retired = self.0.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let freed = retired.replace(replaced);
        drop(retired);
        drop(freed);
    }

    /// The projections are restored, to `seq`.
    pub(crate) fn set_restored(&self, seq: u64) {
        self.update_readiness(|readiness| readiness.restored = Some(seq));
    }

    /// A replica of a shared log last heard from the log at `heard`.
    pub(crate) fn heard_from_log(&self, heard: Instant) {
        self.update_readiness(|readiness| readiness.last_heard = Some(heard));
    }

    fn update_readiness(&self, change: impl FnOnce(&mut Readiness)) {
        let mut readiness = self.0.readiness.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut readiness);
        // Readiness, once reached, stays: a replica that loses its log goes on answering from
        // what it has, and says how stale that is.
        if readiness.is_ready(self.role().is_some()) && !self.0.ready.swap(true, Ordering::AcqRel) {
            tracing::info!(seq = self.snapshot().seq(), "ready");
        }
    }

    pub(crate) fn set_log_refusal(&self, reason: Option<String>) {
        *self.0.log_refusal.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }

    pub(crate) fn set_failure(&self, reason: String) {
        *self.0.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }
}
