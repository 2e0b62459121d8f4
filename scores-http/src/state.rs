//! What every handler shares: the published snapshot, readiness, metrics, the journal's read
//! side, and the shutdown signal that ends live streams.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use scores_core::Snapshot;
use scores_journal::ReadHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::rendered::RenderCache;

/// Shared state behind the router; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    snapshot: ArcSwap<Snapshot>,
    retired: Mutex<Option<Arc<Snapshot>>>,
    rendered: RenderCache,
    ready: AtomicBool,
    /// Why the journal refuses appends, while it does.
    journal_refusal: Mutex<Option<String>>,
    /// Why the service failed and is stopping, once it has.
    failure: Mutex<Option<String>>,
    /// One permit per `GET /scores` stream that may open.
    streams: Arc<Semaphore>,
    /// One permit per chunk of `GET /scores` being read from the journal at once.
    stream_reads: Arc<Semaphore>,
    max_streams: usize,
    metrics: Metrics,
    journal: Option<ReadHandle>,
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// State that is not ready until [`publish`](Self::publish) and [`set_ready`](Self::set_ready)
    /// are called. `journal` serves `GET /scores`, to at most `max_streams` clients at once;
    /// `shutdown` turning `true` ends live streams.
    pub fn new(
        journal: Option<ReadHandle>,
        max_streams: usize,
        shutdown: watch::Receiver<bool>,
    ) -> AppState {
        AppState(Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            retired: Mutex::new(None),
            rendered: RenderCache::default(),
            ready: AtomicBool::new(false),
            journal_refusal: Mutex::new(None),
            failure: Mutex::new(None),
            streams: Arc::new(Semaphore::new(max_streams)),
            stream_reads: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            )),
            max_streams,
            metrics: Metrics::default(),
            journal,
            shutdown,
        }))
    }

    /// Ready state serving a fixed snapshot: for tests and offline use.
    pub fn serving(snapshot: Snapshot) -> AppState {
        let (_, shutdown) = watch::channel(false);
        let state = AppState::new(None, 0, shutdown);
        state.publish(snapshot);
        state.set_ready();
        state
    }

    /// Makes `snapshot` the one every new request reads.
    ///
    /// The snapshot it replaces is kept until the next publish, so that requests still reading
    /// it have long finished when it is freed, and the freeing (the old version's own rows and
    /// nodes, milliseconds for a large batch) falls to the publishing thread, not to a request.
    pub fn publish(&self, snapshot: Snapshot) {
        let replaced = self.0.snapshot.swap(Arc::new(snapshot));
        self.metrics().snapshots_published.fetch_add(1, Ordering::Relaxed);
        let mut retired = self.0.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let freed = retired.replace(replaced);
        drop(retired);
        drop(freed);
    }

    /// The service has restored its projections and answers queries.
    pub fn set_ready(&self) {
        self.0.ready.store(true, Ordering::Release);
    }

    /// Whether queries are answered yet.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Records why the journal refuses appends, or with `None` that it takes them again.
    pub(crate) fn set_journal_refusal(&self, reason: Option<String>) {
        *self.0.journal_refusal.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }

    /// Why the journal refuses appends, while it does: nothing new becomes visible meanwhile.
    pub fn journal_refusal(&self) -> Option<String> {
        self.0.journal_refusal.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records that the service failed and is stopping: `/readyz` says why meanwhile.
    pub(crate) fn set_failure(&self, reason: String) {
        *self.0.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    /// Why the service failed, once it has.
    pub fn failure(&self) -> Option<String> {
        self.0.failure.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A place for one more `GET /scores` stream, held for the stream's life; or why not.
    pub(crate) fn stream_slot(&self) -> Result<StreamSlot, ApiError> {
        let Ok(permit) = self.0.streams.clone().try_acquire_owned() else {
            self.metrics().streams_refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::TooManyStreams { max: self.0.max_streams });
        };
        self.metrics().streams_open.fetch_add(1, Ordering::Relaxed);
        Ok(StreamSlot { _permit: permit, state: self.clone() })
    }

    /// The permits for reading chunks of `GET /scores` from the journal.
    pub(crate) fn stream_reads(&self) -> Arc<Semaphore> {
        self.0.stream_reads.clone()
    }

    /// The published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.snapshot.load_full()
    }

    pub(crate) fn ready_snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        if self.is_ready() { Ok(self.snapshot()) } else { Err(ApiError::NotReady) }
    }

    /// Bodies rendered from the published snapshot.
    pub(crate) fn rendered(&self) -> &RenderCache {
        &self.0.rendered
    }

    /// The service's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn journal(&self) -> Option<ReadHandle> {
        self.0.journal.clone()
    }

    pub(crate) fn shutdown(&self) -> watch::Receiver<bool> {
        self.0.shutdown.clone()
    }
}

/// One open `GET /scores` stream, counted while it lives.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    state: AppState,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.state.metrics().streams_open.fetch_sub(1, Ordering::Relaxed);
    }
}
