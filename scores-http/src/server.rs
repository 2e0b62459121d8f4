//! The router on a socket: hyper's HTTP/1, with a deadline for each request's headers and a cap
//! on open connections.
//!
//! - A connection has [`ConnectionLimits::header_read_timeout`] to send a request's headers,
//!   from the moment it opens or its last response was sent: a connection that sends nothing,
//!   half a request line, or sits idle between kept-alive requests, is closed then.
//! - At most [`ConnectionLimits::max_connections`] connections are served. Past the cap, a
//!   connection is still accepted (so the listen queue never fills and the process never runs
//!   out of descriptors at `accept`), answers one request, `/healthz` and `/readyz` as usual and
//!   anything else 503 `too_many_connections`, and is closed; a few of those at a time, the
//!   rest closed at once. A health checker keeps its answer while the service is saturated.
//!
//! hyper answers a request it cannot parse (a bad request line, a target that is not a URI,
//! headers over its limits: 400, 414, 431) itself, with an empty body, before any handler or
//! layer sees it; it offers no hook to give those answers the API's JSON body.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tls::TlsFiles;

/// How connections are bounded. [`Default`]: 10 s for headers, 4,096 connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a connection has to send a request's headers, counted from when it opened or
    /// its last response was sent.
    pub header_read_timeout: Duration,
    /// The most connections served at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits { header_read_timeout: Duration::from_secs(10), max_connections: 4096 }
    }
}

/// Connections past the cap answered at once; more than that are closed unanswered.
const SHED_AT_ONCE: usize = 32;
/// How long a connection past the cap has to send its request: a health checker sends it at
/// once, and idle connections must not hold the few places there are.
const SHED_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How often reaching the cap is logged at most.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener`, over TLS when `tls` is given (the handshake within the header
/// deadline), until `stopped` completes, then lets open connections finish (live streams end
/// on the same signal). Accept errors are logged and retried.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    state: AppState,
    limits: ConnectionLimits,
    tls: Option<Arc<TlsFiles>>,
    stopped: impl Future<Output = ()>,
) {
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let shed = Arc::new(Semaphore::new(SHED_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut cap_logged: Option<Instant> = None;
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, say: the connections open now are still served.
                    tracing::error!(%error, "cannot accept a connection; retrying in 10 ms");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        // Small answers go out at once; Nagle's algorithm would hold them for the next ACK.
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = served.clone().try_acquire_owned() {
            let metrics_state = state.clone();
            metrics_state.metrics().connections_open.inc();
            let (builder, app, watcher) = (builder.clone(), app.clone(), graceful.watcher());
            let acceptor = tls.as_deref().map(TlsFiles::acceptor);
            let deadline = limits.header_read_timeout;
            tokio::spawn(async move {
                // A connection that ends in an error (a reset, a header timeout, a handshake
                // refused or too slow) has nothing left to answer: hyper or rustls has said
                // what it could to the client.
                match acceptor {
                    None => {
                        let connection =
                            builder.serve_connection(TokioIo::new(stream), service(app));
                        let _ = watcher.watch(connection).await;
                    }
                    Some(acceptor) => {
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(deadline, acceptor.accept(stream)).await
                        {
                            let connection =
                                builder.serve_connection(TokioIo::new(stream), service(app));
                            let _ = watcher.watch(connection).await;
                        }
                    }
                }
                metrics_state.metrics().connections_open.dec();
                drop(permit);
            });
            continue;
        }
        state.metrics().connections_shed.inc();
        if cap_logged.is_none_or(|at| at.elapsed() >= CAP_LOG_EVERY) {
            cap_logged = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection cap reached: new connections get /healthz and /readyz only, then close"
            );
        }
        // Past the cap over TLS, a connection is closed: its handshake would cost what the cap
        // is there to save.
        if tls.is_none()
            && let Ok(permit) = shed.clone().try_acquire_owned()
        {
            shed_connection(&builder, stream, app.clone(), &graceful, permit);
        }
    }
    graceful.shutdown().await;
}

/// One request on a connection past the cap: health and readiness as usual, anything else 503.
fn shed_connection(
    builder: &http1::Builder,
    stream: TcpStream,
    app: Router,
    graceful: &GracefulShutdown,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut builder = builder.clone();
    builder.keep_alive(false).header_read_timeout(SHED_HEADER_READ_TIMEOUT);
    let answer = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        async move {
            match request.uri().path() {
                "/healthz" | "/readyz" => app.oneshot(request.map(axum::body::Body::new)).await,
                _ => Ok::<Response, std::convert::Infallible>(
                    ApiError::TooManyConnections.into_response(),
                ),
            }
        }
    });
    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), answer));
    tokio::spawn(async move {
        let _ = connection.await;
        drop(permit);
    });
}

/// `app` as a hyper service.
fn service(
    app: Router,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        app.clone().oneshot(request.map(axum::body::Body::new))
    })
}
