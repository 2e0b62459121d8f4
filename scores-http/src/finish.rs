//! What every response gets on its way out, whichever handler or layer answered: the request is
//! counted in the metrics and logged (target `scores_http::access`, at INFO, with method, route,
//! status and latency; the path itself, which names students, only at DEBUG; a health check that
//! passes at DEBUG, since load balancers and scripts poll them many times a second), the response names a sequence number, and the errors tower-http's
//! layers answer on their own (408 from the timeout, 413 from the body limit) get the API's JSON
//! error body.
//!
//! A hand-written layer, not `axum::middleware::from_fn`: that one clones the inner service and
//! boxes a future per request, about a microsecond, a fifth of what `/healthz` costs in process
//! (`cargo bench -p scores-http --bench answers`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::api;
use crate::error::ApiError;
use crate::state::AppState;

/// Wraps a service so that its responses are finished as the module says.
#[derive(Clone, Debug)]
pub(crate) struct FinishLayer {
    state: AppState,
}

impl FinishLayer {
    pub(crate) fn new(state: AppState) -> FinishLayer {
        FinishLayer { state }
    }
}

impl<S> Layer<S> for FinishLayer {
    type Service = Finish<S>;

    fn layer(&self, inner: S) -> Finish<S> {
        Finish { inner, state: self.state.clone() }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Finish<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Finish<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FinishFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        let access = tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO)
            .then(|| (request.method().clone(), request.uri().clone()));
        FinishFuture {
            inner: self.inner.call(request),
            state: self.state.clone(),
            route,
            access,
            started: Instant::now(),
        }
    }
}

pin_project! {
    pub(crate) struct FinishFuture<F> {
        #[pin]
        inner: F,
        state: AppState,
        route: Option<MatchedPath>,
        // The request's method and target, while the access log is on.
        access: Option<(Method, Uri)>,
        started: Instant,
    }
}

/// The target of the access log's lines: `RUST_LOG=info,scores_http::access=warn` silences it.
const ACCESS_LOG: &str = "scores_http::access";

/// The health checks' routes: logged at DEBUG while they pass.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

impl<F, E> Future for FinishFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = with_api_error_body(ready!(this.inner.poll(cx))?);
        let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let state = &*this.state;
        let (status, latency) = (response.status().as_u16(), this.started.elapsed());
        state.metrics().record_request(route, status, latency);
        if let Some((method, uri)) = this.access.take() {
            let latency_us = latency.as_micros() as u64;
            // The route (`/students/{id}`), not the path: student ids are personal data, and a
            // log shipper takes whatever INFO says. The path is there at DEBUG.
            if !(PROBES.contains(&route) && response.status().is_success()) {
                tracing::info!(target: ACCESS_LOG, %method, route, status, latency_us, "request");
            }
            tracing::debug!(target: ACCESS_LOG, %method, path = %uri, status, latency_us, "request");
        }
        Poll::Ready(Ok(with_seq(state, response)))
    }
}

/// Gives the API's JSON error body to a 408 or 413 that does not have one. Any `X-Scores-Seq`
/// already set is kept.
fn with_api_error_body(response: Response) -> Response {
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

/// Names the published snapshot's sequence number, unless the handler named the one it answered
/// from (query handlers do), or the service is still restoring and has none.
fn with_seq(state: &AppState, mut response: Response) -> Response {
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
        let response = with_api_error_body(timed_out);
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[api::SEQ_HEADER], "42");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(
            &body[..],
            br#"{"error":{"code":"timeout","message":"the request took too long"}}"#
        );

        // An answer that is already JSON is left as it is.
        let response = with_api_error_body(ApiError::BodyTooLarge.into_response());
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(body, ApiError::BodyTooLarge.to_json());
    }
}
