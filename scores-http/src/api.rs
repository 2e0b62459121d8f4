//! The four query endpoints: a request's resource, its version, and its body from the render
//! cache. The bodies themselves are [`scores_core::wire`]'s.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use scores_core::Snapshot;
use scores_core::wire::parse_exam_number;

use crate::error::{ApiError, JSON};
use crate::query::RawParams;
use crate::rendered::{Coding, Resource};
use crate::state::AppState;

/// The header that carries the snapshot's sequence number.
pub const SEQ_HEADER: HeaderName = HeaderName::from_static("x-scores-seq");
/// The request header that asks for an answer from a snapshot at least this recent.
pub const MIN_SEQ_HEADER: HeaderName = HeaderName::from_static("x-scores-min-seq");

/// The snapshot to answer from: the published one, once it has folded the sequence number
/// `X-Scores-Min-Seq` names (waiting a bounded time for it), so that a client that has seen
/// an answer at N never gets an older one, whichever replica it reaches.
async fn snapshot_for(state: &AppState, headers: &HeaderMap) -> Result<Arc<Snapshot>, ApiError> {
    let snapshot = state.ready_snapshot()?;
    let Some(min) = headers.get(MIN_SEQ_HEADER) else { return Ok(snapshot) };
    let text = min.to_str().unwrap_or_default();
    let min = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| ApiError::InvalidHeader {
            name: "x-scores-min-seq",
            reason: format!("expected a sequence number, got {text:?}"),
        })?;
    if snapshot.seq() >= min {
        return Ok(snapshot);
    }
    let waited = state.pipeline().snapshot_at_least(min, state.min_seq_wait()).await;
    waited.ok_or_else(|| ApiError::NotCaughtUp { seq: state.snapshot().seq(), min })
}

/// Answers a request for `resource` from the published snapshot: its sequence number in
/// `X-Scores-Seq`; an `ETag` that names the sequence number at which the resource last changed,
/// so that it changes only when the body would; 304 when the client already has it; otherwise
/// the body, rendered once per snapshot (see [`RenderCache`](crate::rendered::RenderCache)).
async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    resource: Result<Resource, ApiError>,
) -> Response {
    let snapshot = match snapshot_for(state, headers).await {
        Ok(snapshot) => snapshot,
        Err(error) => return error.into_response(),
    };
    let resource = match resource {
        Ok(resource) => resource,
        Err(error) => return with_snapshot_headers(error.into_response(), &snapshot),
    };
    // A resource the snapshot does not hold has no version; rendering it gives its 404.
    let etag = resource.changed_at(&snapshot).map(|changed_at| format!("W/\"{changed_at}\""));
    let response = match etag {
        Some(etag) if if_none_match(headers, &etag) => {
            (StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response()
        }
        etag => {
            let coding = if accepts_gzip(headers) { Coding::Gzip } else { Coding::Identity };
            match state.rendered().get_or_render(&snapshot, resource, coding, state.metrics()) {
                Ok((body, coding)) => {
                    let mut response =
                        ([(CONTENT_TYPE, HeaderValue::from_static(JSON))], body).into_response();
                    let headers = response.headers_mut();
                    if coding == Coding::Gzip {
                        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    }
                    // Digits, quotes and a slash: always a valid header value.
                    if let Some(etag) = etag.and_then(|etag| HeaderValue::from_str(&etag).ok()) {
                        headers.insert(ETAG, etag);
                    }
                    response
                }
                Err(error) => ApiError::from(error).into_response(),
            }
        }
    };
    with_snapshot_headers(response, &snapshot)
}

/// Names the snapshot that answered, and says that the body depends on `Accept-Encoding`.
fn with_snapshot_headers(mut response: Response, snapshot: &Snapshot) -> Response {
    let headers = response.headers_mut();
    headers.insert(SEQ_HEADER, HeaderValue::from(snapshot.seq()));
    // Whether the body is gzip depends on `Accept-Encoding`, so every answer says so, 304s
    // included (the compression layer says it only on bodies it could have compressed).
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    response
}

/// Whether `Accept-Encoding` accepts gzip: `gzip` (or `x-gzip`) with a non-zero quality, or,
/// when neither is named, `*` with one.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut named = None;
    let mut any = None;
    let codings = headers.get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok());
    for coding in codings.flat_map(|value| value.split(',')) {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let quality = parts
            .find_map(|param| param.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            named = Some(named.unwrap_or(0.0f32).max(quality));
        } else if name == "*" {
            any = Some(quality);
        }
    }
    named.or(any).is_some_and(|quality| quality > 0.0)
}

/// Whether `If-None-Match` lists `etag` (weak comparison) or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let weak_value = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = weak_value(etag);
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| value.split(',').any(|tag| tag.trim() == "*" || weak_value(tag) == ours))
}

/// Why an extractor refused the request, in the words of the error at the bottom of its chain:
/// "duplicate field `limit`", without axum's "Failed to deserialize query string: " before it.
pub(crate) fn reason(rejection: &dyn std::error::Error) -> String {
    std::iter::successors(Some(rejection), |error| error.source())
        .last()
        .map_or_else(String::new, ToString::to_string)
}

fn segment(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(segment)| segment).map_err(|rejection| ApiError::InvalidPath(reason(&rejection)))
}

pub(crate) async fn students(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let page = RawParams::parse(query.as_deref()).and_then(RawParams::students);
    answer(&state, &headers, page.map(Resource::Students).map_err(ApiError::from)).await
}

pub(crate) async fn student(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    answer(&state, &headers, segment(path).map(Resource::Student)).await
}

pub(crate) async fn exams(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let page = RawParams::parse(query.as_deref()).and_then(RawParams::exams);
    answer(&state, &headers, page.map(Resource::Exams).map_err(ApiError::from)).await
}

pub(crate) async fn exam(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let exam = segment(path).and_then(|number| Ok(parse_exam_number(&number)?));
    answer(&state, &headers, exam.map(Resource::Exam)).await
}
