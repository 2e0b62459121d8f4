//! [`ApiError`]: every request the service does not answer with a body, as a status and a
//! JSON body `{"error": {"code": …, "message": …}}`.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scores_core::wire::{QueryError, error_json};

/// The content type of every JSON answer.
pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// A request the API cannot answer. Each maps to a status and a JSON body
/// `{"error": {"code": …, "message": …}}`; none is ever a 500 for bad input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The query has no answer: a malformed parameter, an unknown student or exam.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A request header is malformed.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// The header.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A path segment does not decode (say, percent-encoding that is not UTF-8).
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// No such endpoint.
    #[error("no endpoint {0}")]
    NoRoute(String),
    /// Access control is on and the request carries no token it knows.
    #[error("this service needs a token: send Authorization: Bearer TOKEN")]
    Unauthorized,
    /// The request's `Host` is not a name this service answers to (see `--allowed-hosts`).
    #[error("this service does not answer to that host name; see --allowed-hosts")]
    HostNotAllowed,
    /// The endpoint exists, but not for this method.
    #[error("method not allowed; this endpoint answers GET")]
    MethodNotAllowed,
    /// The service has no state to answer from yet, for the reason given.
    #[error("not ready: {0}; try again shortly")]
    NotReady(String),
    /// `GET /scores` from a point where the log is damaged: those events cannot be read.
    #[error("the log is damaged where this stream would start: {0}")]
    LogDamaged(String),
    /// `GET /scores` while the log cannot be read (NATS away, say).
    #[error("the log cannot be read now: {0}; try again shortly")]
    LogUnavailable(String),
    /// `/readyz` while the service shuts down: still answering, about to close.
    #[error("the service is shutting down; send requests elsewhere")]
    Draining,
    /// `/readyz?max_staleness=…`: this replica last heard from its log longer ago than that.
    #[error("{}", stale_message(*.staleness, *.max))]
    Stale {
        /// How long ago it last heard from the log; `None` when it never has.
        staleness: Option<std::time::Duration>,
        /// The most the request allows.
        max: std::time::Duration,
    },
    /// The request's `X-Scores-Min-Seq` names an event this replica has not folded within the
    /// time it waits.
    #[error("this replica has folded events up to {seq}, not yet {min}; try again shortly")]
    NotCaughtUp {
        /// The sequence number of its snapshot.
        seq: u64,
        /// The one asked for.
        min: u64,
    },
    /// The service failed (it could not restore its projections, say) and is stopping.
    #[error("the service failed and is stopping: {0}")]
    Failed(String),
    /// As many connections as the service serves are open; this one answers health checks only.
    #[error("the service is serving as many connections as it allows; try again shortly")]
    TooManyConnections,
    /// As many `GET /scores` streams as the service allows are open.
    #[error("the service is serving as many event streams as it allows ({max}); try again later")]
    TooManyStreams {
        /// The limit.
        max: usize,
    },
    /// A request took longer than the service allows.
    #[error("the request took too long")]
    Timeout,
    /// A request came with a body over the limit (no endpoint takes one).
    #[error("the request body is over the limit of {max} bytes", max = crate::MAX_REQUEST_BODY)]
    BodyTooLarge,
    /// Something failed inside the service. The detail is logged, never sent.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Query(error) if error.is_not_found() => StatusCode::NOT_FOUND,
            ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::Query(_) | ApiError::InvalidHeader { .. } | ApiError::InvalidPath(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::HostNotAllowed => StatusCode::FORBIDDEN,
            ApiError::NotReady(_)
            | ApiError::Stale { .. }
            | ApiError::Draining
            | ApiError::LogUnavailable(_)
            | ApiError::NotCaughtUp { .. }
            | ApiError::Failed(_)
            | ApiError::TooManyConnections
            | ApiError::TooManyStreams { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal | ApiError::LogDamaged(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Query(error) => error.code(),
            ApiError::InvalidHeader { .. } => "invalid_header",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::HostNotAllowed => "host_not_allowed",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Stale { .. } => "stale",
            ApiError::Draining => "draining",
            ApiError::LogDamaged(_) => "log_damaged",
            ApiError::LogUnavailable(_) => "log_unavailable",
            ApiError::NotCaughtUp { .. } => "not_caught_up",
            ApiError::Failed(_) => "failed",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::TooManyStreams { .. } => "too_many_streams",
            ApiError::Timeout => "timeout",
            ApiError::BodyTooLarge => "body_too_large",
            ApiError::Internal => "internal",
        }
    }

    /// The JSON body: `{"error":{"code":…,"message":…}}`.
    pub fn to_json(&self) -> Vec<u8> {
        error_json(self.code(), &self.to_string())
    }
}

fn stale_message(staleness: Option<std::time::Duration>, max: std::time::Duration) -> String {
    let max = humantime::format_duration(max);
    match staleness {
        Some(staleness) => format!(
            "last heard from the log {:.1} s ago, more than max_staleness={max} allows",
            staleness.as_secs_f64()
        ),
        None => format!("has not heard from the log since it started (max_staleness={max})"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A 503 while restoring is the readiness the service announces, not a failure: a
        // health checker polling `/readyz` at start would otherwise fill the log with errors.
        if matches!(self, ApiError::Internal) {
            tracing::error!(error = %self, "request failed");
        }
        let mut response =
            (self.status(), [(CONTENT_TYPE, HeaderValue::from_static(JSON))], self.to_json())
                .into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self == ApiError::Unauthorized {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
