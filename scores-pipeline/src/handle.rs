//! [`Pipeline`]: what the frontends read from a running pipeline.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
    ready: AtomicBool,
    /// Why the log refuses appends, while it does.
    log_refusal: Mutex<Option<String>>,
    /// Why the pipeline failed and is stopping, once it has.
    failure: Mutex<Option<String>>,
    counters: Counters,
    log: Option<Arc<dyn LogRead>>,
    /// [`Role`] as a number: 0 for none (the file journal's single writer).
    role: AtomicU8,
    /// The sequence number of the log's last event, as last seen (for a shared log).
    log_end: AtomicU64,
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
            log_refusal: Mutex::new(None),
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
        pipeline.publish(snapshot);
        pipeline.set_ready();
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

    /// Whether the projections are restored, so that the snapshot answers queries.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Why the log refuses appends, while it does: nothing new becomes visible meanwhile, and
    /// every answer is still right as of the snapshot's sequence number.
    pub fn log_refusal(&self) -> Option<String> {
        self.0.log_refusal.lock().unwrap_or_else(PoisonError::into_inner).clone()
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

    pub(crate) fn set_ready(&self) {
        self.0.ready.store(true, Ordering::Release);
    }

    pub(crate) fn set_log_refusal(&self, reason: Option<String>) {
        *self.0.log_refusal.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }

    pub(crate) fn set_failure(&self, reason: String) {
        *self.0.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }
}
