//! The HTTP frontend of `scores`, over a running pipeline's read handle
//! ([`scores_pipeline::Pipeline`]).
//!
//! - [`router`]: an `axum::Router` over an [`AppState`]: the JSON API (`/students`,
//!   `/students/{id}`, `/exams`, `/exams/{number}`), the live re-broadcast `GET /scores`, the
//!   dashboard at `/`, and `/healthz`, `/readyz`, `/metrics`. Every query answers from one
//!   immutable snapshot, named by `X-Scores-Seq` and an `ETag`.
//! - [`api`]: the four query endpoints, answered from the render cache with bodies rendered by
//!   [`scores_core::wire`]; every refusal is an [`ApiError`].
//! - [`service`]: a pipeline and this frontend on a socket, run together until shutdown.
//! - [`simulator`]: a stand-in for the upstream feed, deterministic from a seed.
//!
//! # Example
//!
//! ```
//! use axum::body::Body;
//! use axum::http::Request;
//! use scores_core::{decode, Decoded, Scoreboard};
//! use scores_http::{router, AppState};
//! use tower::ServiceExt as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut board = Scoreboard::new();
//! if let Decoded::Event(event) = decode("score", r#"{"studentId":"Marvin32","exam":11295,"score":0.64}"#)? {
//!     board.apply(&event);
//! }
//! let app = router(AppState::serving(board.snapshot()));
//! let response = app.oneshot(Request::get("/students").body(Body::empty())?).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["x-scores-seq"], "1");
//! # Ok(())
//! # }
//! ```

mod access;
pub mod api;
mod dashboard;
mod error;
mod finish;
mod jwt;
mod metrics;
mod query;
mod readiness;
mod rendered;
mod server;
pub mod service;
pub mod simulator;
mod state;
mod stream;
mod tls;

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::finish::FinishLayer;

pub use crate::access::{AllowedHosts, ApiTokens, TOKEN_COOKIE};
pub use crate::error::ApiError;
pub use crate::jwt::ApiJwt;
pub use crate::metrics::Metrics;
pub use crate::server::ConnectionLimits;
pub use crate::state::{AppState, DEFAULT_MIN_SEQ_WAIT};
pub use crate::tls::TlsFiles;

/// How long a query may take before it is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body accepted (413 past it); no endpoint reads one.
const MAX_REQUEST_BODY: usize = 16 * 1024;

/// The whole HTTP surface over `state`. See the crate docs.
pub fn router(state: AppState) -> Router {
    // Query answers arrive already encoded when the client asks for gzip (see `rendered`), and
    // the event stream is never compressed: the compression layer is for these alone.
    let mut pages = Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/dashboard.js", get(dashboard::script))
        .route("/assets/dashboard.css", get(dashboard::style));
    if !state.metrics_elsewhere() {
        pages = pages.route("/metrics", get(metrics));
    }
    let pages = pages.layer(CompressionLayer::new().compress_when(compressible()));
    let queries = Router::new()
        .route("/students", get(api::students))
        .route("/students/{id}", get(api::student))
        .route("/exams", get(api::exams))
        .route("/exams/{number}", get(api::exam))
        .route("/healthz", get(health))
        .route("/readyz", get(readiness::readiness))
        .merge(pages)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    Router::new()
        .route("/scores", get(stream::scores))
        .merge(queries)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(read_streamed_body))
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), check_host))
        .layer(FinishLayer::new(state.clone()))
        // Failures are logged where they happen (a 500 by `ApiError`); a 503 while restoring or
        // at a limit is the service working as designed, not an error for the log.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal.into_response()))
        .with_state(state)
}

/// `/metrics` alone, for a listener of its own (`--metrics-listen`): no access control, since
/// such a listener is meant to stay internal.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .layer(CompressionLayer::new().compress_when(compressible()))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal.into_response()))
        .with_state(state)
}

/// tower-http's default predicate, but with the render cache's size threshold.
fn compressible() -> impl Predicate {
    SizeAbove::new(rendered::MIN_GZIP_BYTES as u64)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
}

async fn health() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json; charset=utf-8")], r#"{"status":"ok"}"#)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = metrics::render(state.exposition());
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}

/// Answers 401 `unauthorized` to a request access control does not let in (see `access`).
async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let (path, headers) = (request.uri().path(), request.headers());
    if access::authorized(state.api_tokens(), state.api_jwt(), path, headers) {
        return next.run(request).await;
    }
    ApiError::Unauthorized.into_response()
}

/// Answers 403 `host_not_allowed` to a request whose `Host` is not allowed.
async fn check_host(
    State(state): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if state.allowed_hosts().admit(request.uri().path(), request.headers()) {
        return next.run(request).await;
    }
    ApiError::HostNotAllowed.into_response()
}

/// Reads a body whose length was not given (`Transfer-Encoding: chunked`) before any handler
/// runs: no endpoint reads a body, so without this one over the limit would never be noticed
/// and would be answered as if it were not there, where a `Content-Length` over it is a 413.
/// The body limit's layer, outside this one, bounds what is read.
async fn read_streamed_body(request: Request, next: axum::middleware::Next) -> Response {
    use axum::body::HttpBody as _;
    if request.body().size_hint().exact().is_some() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(_) => ApiError::BodyTooLarge.into_response(),
    }
}

async fn no_route(request: Request) -> Response {
    ApiError::NoRoute(request.uri().path().to_owned()).into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}
