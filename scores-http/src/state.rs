//! What every handler shares: the pipeline's read handle, the render cache, the limits on
//! event streams, the HTTP counters, and the shutdown signal that ends live streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use scores_core::Snapshot;
use scores_pipeline::{LogRead, Pipeline};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::access::{AllowedHosts, ApiTokens};
use crate::error::ApiError;
use crate::jwt::ApiJwt;
use crate::metrics::Metrics;
use crate::rendered::RenderCache;

/// Shared state behind the router; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    pipeline: Pipeline,
    rendered: RenderCache,
    /// One permit per `GET /scores` stream that may open.
    streams: Arc<Semaphore>,
    /// One permit per chunk of `GET /scores` being read from the log at once.
    stream_reads: Arc<Semaphore>,
    max_streams: usize,
    /// How long a request with `X-Scores-Min-Seq` waits for the snapshot to get there.
    min_seq_wait: Duration,
    metrics: Metrics,
    /// What `GET /metrics` reports: `metrics`, the pipeline's counters, the process's.
    exposition: Registry,
    shutdown: watch::Receiver<bool>,
    /// A shutdown is under way: `/readyz` says so while requests are still served.
    draining: AtomicBool,
    /// When set, only requests carrying one of these tokens are answered (see `access`).
    api_tokens: Option<Arc<ApiTokens>>,
    /// When set, requests carrying a JWT it takes are answered too (see `jwt`).
    api_jwt: Option<Arc<ApiJwt>>,
    /// The names a request's `Host` may carry.
    allowed_hosts: AllowedHosts,
    /// `/metrics` has a listener of its own: the main router leaves it out.
    metrics_elsewhere: bool,
}

/// How long [`AppState::new`] lets a request with `X-Scores-Min-Seq` wait.
pub const DEFAULT_MIN_SEQ_WAIT: Duration = Duration::from_secs(1);

impl AppState {
    /// The frontend's state over `pipeline`: its log serves `GET /scores`, to at most
    /// `max_streams` clients at once; `shutdown` turning `true` ends live streams.
    pub fn new(
        pipeline: Pipeline,
        max_streams: usize,
        shutdown: watch::Receiver<bool>,
    ) -> AppState {
        let metrics = Metrics::default();
        let exposition = metrics.registry(pipeline.clone());
        AppState(Arc::new(Shared {
            pipeline,
            rendered: RenderCache::default(),
            streams: Arc::new(Semaphore::new(max_streams)),
            stream_reads: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            )),
            max_streams,
            min_seq_wait: DEFAULT_MIN_SEQ_WAIT,
            metrics,
            exposition,
            shutdown,
            draining: AtomicBool::new(false),
            api_tokens: None,
            api_jwt: None,
            allowed_hosts: AllowedHosts::any(),
            metrics_elsewhere: false,
        }))
    }

    /// This state, letting a request with `X-Scores-Min-Seq` wait at most `wait` (when nothing
    /// else holds it yet; otherwise unchanged).
    pub fn with_min_seq_wait(mut self, wait: Duration) -> AppState {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.min_seq_wait = wait;
        }
        self
    }

    /// This state, answering only requests that carry one of `tokens` (when nothing else holds
    /// it yet; otherwise unchanged).
    pub fn with_api_tokens(mut self, tokens: Arc<ApiTokens>) -> AppState {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.api_tokens = Some(tokens);
        }
        self
    }

    /// This state, answering only requests whose `Host` is among `hosts` (when nothing else
    /// holds it yet; otherwise unchanged).
    pub fn with_allowed_hosts(mut self, hosts: AllowedHosts) -> AppState {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.allowed_hosts = hosts;
        }
        self
    }

    /// This state, for a service whose `/metrics` is on a listener of its own (when nothing
    /// else holds it yet; otherwise unchanged).
    pub fn with_metrics_elsewhere(mut self) -> AppState {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.metrics_elsewhere = true;
        }
        self
    }

    pub(crate) fn metrics_elsewhere(&self) -> bool {
        self.0.metrics_elsewhere
    }

    pub(crate) fn allowed_hosts(&self) -> &AllowedHosts {
        &self.0.allowed_hosts
    }

    /// This state, answering requests that carry a JWT `jwt` takes (when nothing else holds it
    /// yet; otherwise unchanged). Access control is then on.
    pub fn with_api_jwt(mut self, jwt: Arc<ApiJwt>) -> AppState {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.api_jwt = Some(jwt);
        }
        self
    }

    /// The JWTs a request may carry instead of a token, when set.
    pub(crate) fn api_jwt(&self) -> Option<&ApiJwt> {
        self.0.api_jwt.as_deref()
    }

    /// The tokens a request must carry, when access control is on.
    pub(crate) fn api_tokens(&self) -> Option<&ApiTokens> {
        self.0.api_tokens.as_deref()
    }

    /// How long a request with `X-Scores-Min-Seq` waits at most.
    pub(crate) fn min_seq_wait(&self) -> Duration {
        self.0.min_seq_wait
    }

    /// Ready state serving a fixed snapshot, with no log behind it: for tests and offline use.
    pub fn serving(snapshot: Snapshot) -> AppState {
        let (_, shutdown) = watch::channel(false);
        AppState::new(Pipeline::fixed(snapshot), 0, shutdown)
    }

    /// The pipeline this state serves.
    pub fn pipeline(&self) -> &Pipeline {
        &self.0.pipeline
    }

    /// Whether queries are answered yet.
    pub fn is_ready(&self) -> bool {
        self.0.pipeline.is_ready()
    }

    /// The published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.pipeline.snapshot()
    }

    /// Makes `/readyz` answer 503 `draining` from now on; everything else is served as before.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a shutdown is draining this instance.
    pub(crate) fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// The answer to a query while the pipeline is not ready, with its reason.
    pub(crate) fn not_ready(&self) -> ApiError {
        let reason = self.0.pipeline.not_ready_reason();
        ApiError::NotReady(reason.unwrap_or_else(|| "restoring the projections".to_owned()))
    }

    pub(crate) fn ready_snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        if self.is_ready() { Ok(self.snapshot()) } else { Err(self.not_ready()) }
    }

    /// A place for one more `GET /scores` stream, held for the stream's life; or why not.
    pub(crate) fn stream_slot(&self) -> Result<StreamSlot, ApiError> {
        let Ok(permit) = self.0.streams.clone().try_acquire_owned() else {
            self.metrics().streams_refused.inc();
            return Err(ApiError::TooManyStreams { max: self.0.max_streams });
        };
        self.metrics().streams_open.inc();
        Ok(StreamSlot { _permit: permit, state: self.clone() })
    }

    /// The permits for reading chunks of `GET /scores` from the log.
    pub(crate) fn stream_reads(&self) -> Arc<Semaphore> {
        self.0.stream_reads.clone()
    }

    /// Bodies rendered from the published snapshot.
    pub(crate) fn rendered(&self) -> &RenderCache {
        &self.0.rendered
    }

    /// The frontend's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// What `GET /metrics` reports.
    pub(crate) fn exposition(&self) -> &Registry {
        &self.0.exposition
    }

    pub(crate) fn log(&self) -> Option<Arc<dyn LogRead>> {
        self.0.pipeline.log()
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
        self.state.metrics().streams_open.dec();
    }
}
