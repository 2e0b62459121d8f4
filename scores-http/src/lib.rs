//! The HTTP face of `scores`, and the service runtime behind it.
//!
//! - [`router`]: an `axum::Router` over an [`AppState`]: the JSON API (`/students`,
//!   `/students/{id}`, `/exams`, `/exams/{number}`), the live re-broadcast `GET /scores`, the
//!   dashboard at `/`, and `/healthz`, `/readyz`, `/metrics`. Every query answers from one
//!   immutable snapshot, named by `X-Scores-Seq` and an `ETag`.
//! - [`api`]: the response shapes and [`ApiError`]; its `*_json` functions render a snapshot
//!   exactly as the endpoints do, for `scores replay`.
//! - [`service`]: feed → journal → fold → snapshot → HTTP, with restore on start and graceful
//!   shutdown.
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

pub mod api;
mod dashboard;
mod metrics;
mod rendered;
pub mod service;
pub mod simulator;
mod state;
mod stream;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use crate::api::ApiError;
pub use crate::metrics::Metrics;
pub use crate::state::AppState;

/// How long a query may take before it is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body accepted (413 past it); no endpoint reads one.
const MAX_REQUEST_BODY: usize = 16 * 1024;

/// The whole HTTP surface over `state`. See the crate docs.
pub fn router(state: AppState) -> Router {
    let queries = Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/dashboard.js", get(dashboard::script))
        .route("/assets/dashboard.css", get(dashboard::style))
        .route("/students", get(api::students))
        .route("/students/{id}", get(api::student))
        .route("/exams", get(api::exams))
        .route("/exams/{number}", get(api::exam))
        .route("/healthz", get(health))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        // Compression never applies to the event stream (the predicate skips
        // text/event-stream), but the stream is kept outside these layers all the same. Query
        // answers arrive already encoded when the client asks for gzip (see `rendered`), and
        // the layer leaves encoded responses as they are.
        .layer(CompressionLayer::new().compress_when(compressible()))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    Router::new()
        .route("/scores", get(stream::scores))
        .merge(queries)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record_request))
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BODY))
        .layer(middleware::map_response(with_api_error_bodies))
        .layer(TraceLayer::new_for_http())
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

async fn readiness(State(state): State<AppState>) -> Response {
    if !state.is_ready() {
        return ApiError::NotReady.into_response();
    }
    // Still ready while the journal refuses appends: every answer is right as of `seq`, which
    // stays put until the journal takes appends again. Why it refuses is said, for operators.
    #[derive(serde::Serialize)]
    struct Readiness {
        status: &'static str,
        seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        journal: Option<String>,
    }
    let body = Readiness {
        status: "ready",
        seq: state.snapshot().seq(),
        journal: state.journal_refusal().map(|refusal| format!("refusing appends: {refusal}")),
    };
    ([(CONTENT_TYPE, "application/json; charset=utf-8")], api::to_json(&body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics().render(&state.snapshot());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn no_route(request: Request) -> Response {
    ApiError::NoRoute(request.uri().path().to_owned()).into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// Gives the API's JSON error body to the errors tower-http's layers answer with on their own:
/// 408 from the timeout, 413 from the body limit. Any `X-Scores-Seq` already set is kept.
async fn with_api_error_bodies(response: Response) -> Response {
    let error = match response.status() {
        StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
        _ => return response,
    };
    let content_type = response.headers().get(CONTENT_TYPE);
    if content_type.is_some_and(|value| value.as_bytes().starts_with(b"application/json")) {
        return response;
    }
    let mut json = error.into_response();
    if let Some(seq) = response.headers().get(api::SEQ_HEADER) {
        json.headers_mut().insert(api::SEQ_HEADER, seq.clone());
    }
    json
}

async fn record_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let mut response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.metrics().record_request(route, response.status().as_u16(), started.elapsed());
    // Every response names a sequence number; query handlers set the one they answered from.
    if !response.headers().contains_key(api::SEQ_HEADER) && state.is_ready() {
        let seq = HeaderValue::from(state.snapshot().seq());
        response.headers_mut().insert(api::SEQ_HEADER, seq);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn the_timeouts_answer_gets_the_json_error_body_and_keeps_its_sequence_number() {
        let timed_out = Response::builder()
            .status(StatusCode::REQUEST_TIMEOUT)
            .header(api::SEQ_HEADER, "42")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = with_api_error_bodies(timed_out).await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[api::SEQ_HEADER], "42");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(
            &body[..],
            br#"{"error":{"code":"timeout","message":"the request took too long"}}"#
        );

        // An answer that is already JSON is left as it is.
        let response = with_api_error_bodies(ApiError::BodyTooLarge.into_response()).await;
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(body, ApiError::BodyTooLarge.to_json());
    }
}
