//! The service: a pipeline and its HTTP frontend, run together until shutdown.
//!
//! HTTP serves from the start: `/healthz` answers and `/readyz` says 503 while the pipeline
//! restores its projections. A shutdown first drains for [`ServiceConfig::shutdown_delay`]
//! (`/readyz` answers 503 `draining` while everything else is served, so that a load balancer
//! stops sending requests before the listener closes), then stops the pipeline (the feed stops, the log drains,
//! syncs and is checkpointed) and lets HTTP requests finish; a pipeline that fails stops the
//! frontend too, and its error is the service's.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scores_pipeline::{PipelineConfig, PipelineError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access::{AllowedHosts, ApiTokens};
use crate::jwt::ApiJwt;
use crate::router;
use crate::server::ConnectionLimits;
use crate::state::{AppState, DEFAULT_MIN_SEQ_WAIT};
use crate::tls::TlsFiles;

/// How the service runs. [`ServiceConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The pipeline: upstream, data directory, log, checkpoints, feed.
    pub pipeline: PipelineConfig,
    /// The header-read deadline and the cap on open connections.
    pub connections: ConnectionLimits,
    /// The most `GET /scores` streams open at once; past it, 503 `too_many_streams`.
    pub max_streams: usize,
    /// How long a query with `X-Scores-Min-Seq` waits for this replica to get there before it
    /// is answered 503 `not_caught_up`.
    pub min_seq_wait: Duration,
    /// How long `/readyz` answers 503 `draining`, everything else served as usual, between the
    /// shutdown signal and the listener closing. Zero closes at once.
    pub shutdown_delay: Duration,
    /// When set, only requests carrying one of these tokens are answered (health checks and
    /// the dashboard's page excepted); the caller may reload them meanwhile.
    pub api_tokens: Option<Arc<ApiTokens>>,
    /// When set, requests carrying a JWT it takes are answered too.
    pub api_jwt: Option<Arc<ApiJwt>>,
    /// The names a request's `Host` may carry; `None`: as [`AllowedHosts::default_for`] the
    /// listen address says.
    pub allowed_hosts: Option<AllowedHosts>,
    /// Serve `/metrics` on a listener of its own at this address (and not on the main one), so
    /// that it can stay internal.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate and key (the caller may reload them meanwhile).
    pub tls: Option<Arc<TlsFiles>>,
}

impl ServiceConfig {
    /// The pipeline's defaults, [`ConnectionLimits::default`], [`DEFAULT_MAX_STREAMS`] and
    /// [`DEFAULT_MIN_SEQ_WAIT`]; no shutdown delay; no access control.
    pub fn new(pipeline: PipelineConfig) -> ServiceConfig {
        ServiceConfig {
            pipeline,
            connections: ConnectionLimits::default(),
            max_streams: DEFAULT_MAX_STREAMS,
            min_seq_wait: DEFAULT_MIN_SEQ_WAIT,
            shutdown_delay: Duration::ZERO,
            api_tokens: None,
            api_jwt: None,
            allowed_hosts: None,
            metrics_listen: None,
            tls: None,
        }
    }
}

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The pipeline could not start, or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The listen address could not be read.
    #[error("reading the listen address: {0}")]
    Io(std::io::Error),
    /// The HTTP server's task panicked: a bug, reported rather than hidden.
    #[error("the HTTP server panicked")]
    Panicked,
}

/// How many `GET /scores` streams [`ServiceConfig::new`] allows: each holds at most one log
/// batch and one chunk in memory while its client does not read.
pub const DEFAULT_MAX_STREAMS: usize = 128;

/// Runs the service on `listener` until `shutdown` completes, then stops gracefully.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let address = listener.local_addr().map_err(ServiceError::Io)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let (pipeline, running) = scores_pipeline::start(config.pipeline, stop_rx.clone()).await?;
    let mut state = AppState::new(pipeline, config.max_streams, stop_rx.clone())
        .with_min_seq_wait(config.min_seq_wait);
    if let Some(tokens) = config.api_tokens {
        state = state.with_api_tokens(tokens);
    }
    if let Some(jwt) = config.api_jwt {
        state = state.with_api_jwt(jwt);
    }
    let allowed_hosts = config.allowed_hosts.unwrap_or_else(|| AllowedHosts::default_for(address));
    state = state.with_allowed_hosts(allowed_hosts);
    let metrics_listener = match config.metrics_listen {
        Some(metrics_address) => {
            let bound = TcpListener::bind(metrics_address).await.map_err(ServiceError::Io)?;
            state = state.with_metrics_elsewhere();
            tracing::info!(url = %format!("http://{metrics_address}/metrics"), "metrics are served apart");
            Some(bound)
        }
        None => None,
    };
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    tracing::info!(url = %format!("{scheme}://{address}"), "scores is listening");
    let metrics_server = metrics_listener.map(|listener| {
        let mut stop = stop_rx.clone();
        let limits = ConnectionLimits { max_connections: 64, ..config.connections };
        tokio::spawn(crate::server::serve(
            listener,
            crate::metrics_router(state.clone()),
            state.clone(),
            limits,
            None,
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            },
        ))
    });

    let mut http_stop = stop_rx;
    let server = tokio::spawn(crate::server::serve(
        listener,
        router(state.clone()),
        state.clone(),
        config.connections,
        config.tls,
        async move {
            let _ = http_stop.wait_for(|stopped| *stopped).await;
        },
    ));
    let (signal_stop, draining) = (stop_tx.clone(), state.clone());
    let delay = config.shutdown_delay;
    tokio::spawn(async move {
        shutdown.await;
        if !delay.is_zero() {
            tracing::info!(
                ?delay,
                "shutting down: /readyz answers 503 draining, then the listener closes"
            );
            draining.start_draining();
            tokio::time::sleep(delay).await;
        }
        tracing::info!("shutting down: stopping the feed, flushing the log, draining requests");
        let _ = signal_stop.send(true);
    });
    // The pipeline ends on a stop, or first when it fails: then the frontend stops too.
    let ran = running.wait().await;
    let _ = stop_tx.send(true);
    let served = server.await;
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    ran?;
    served.map_err(|_| ServiceError::Panicked)
}
