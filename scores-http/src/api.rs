//! The four query endpoints: their wire shapes, their errors, and the rendering that `scores
//! replay` shares so that both print the same bytes for the same events.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RETRY_AFTER, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scores_core::{ExamId, Page, Snapshot};
use serde::Serialize;

use crate::query::{RawParams, parse_digits};
pub use crate::query::{parse_exam_cursor, parse_limit};
use crate::rendered::{Coding, Resource};
use crate::state::AppState;

/// The header that carries the snapshot's sequence number.
pub const SEQ_HEADER: HeaderName = HeaderName::from_static("x-scores-seq");
const JSON: &str = "application/json; charset=utf-8";

/// A request the API cannot answer. Each maps to a status and a JSON body
/// `{"error": {"code": …, "message": …}}`; none is ever a 500 for bad input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No student with this id has any results.
    #[error("no student {0:?} has any results")]
    UnknownStudent(String),
    /// No exam with this number has any results.
    #[error("exam {0} has no results")]
    UnknownExam(u64),
    /// The exam number is not an integer from 0 to `u64::MAX`.
    #[error("exam number must be an integer from 0 to {max}, got {0:?}", max = u64::MAX)]
    InvalidExamNumber(String),
    /// A query parameter is malformed.
    #[error("invalid query parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
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
    /// The endpoint exists, but not for this method.
    #[error("method not allowed; this endpoint answers GET")]
    MethodNotAllowed,
    /// The service is still restoring its projections from the journal.
    #[error("the service is restoring its state from the journal; try again shortly")]
    NotReady,
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
            ApiError::UnknownStudent(_) | ApiError::UnknownExam(_) | ApiError::NoRoute(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::InvalidExamNumber(_)
            | ApiError::InvalidParameter { .. }
            | ApiError::InvalidHeader { .. }
            | ApiError::InvalidPath(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady
            | ApiError::Failed(_)
            | ApiError::TooManyConnections
            | ApiError::TooManyStreams { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownStudent(_) => "student_not_found",
            ApiError::UnknownExam(_) => "exam_not_found",
            ApiError::InvalidExamNumber(_) => "invalid_exam_number",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::InvalidHeader { .. } => "invalid_header",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::NotReady => "not_ready",
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
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: String,
        }
        let body = Body { error: Detail { code: self.code(), message: self.to_string() } };
        to_json(&body)
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
        response
    }
}

#[derive(Serialize)]
struct ExamsBody {
    exams: Vec<u64>,
    total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

#[derive(Serialize)]
struct ExamBody<'a> {
    exam: u64,
    results: Vec<StudentResult<'a>>,
    average: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StudentResult<'a> {
    student_id: &'a str,
    score: f64,
}

pub(crate) fn to_json(body: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs (strings, integers, finite floats) into memory cannot
    // fail; an empty body would be the only outcome of a bug here.
    serde_json::to_vec(body).unwrap_or_default()
}

/// `GET /students` as JSON. Writes the ids straight from the snapshot: a list of 100k ids is
/// never copied.
pub fn students_json(snapshot: &Snapshot, page: Page<'_, str>) -> Vec<u8> {
    let limit = page.limit.unwrap_or(usize::MAX);
    let mut ids = snapshot.student_ids_after(page.after).peekable();
    let mut out = Vec::with_capacity(64 + snapshot.n_students().min(limit) * 20);
    out.extend_from_slice(b"{\"students\":[");
    let mut last = None;
    for (i, id) in ids.by_ref().take(limit).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(&mut out, id);
        last = Some(id);
    }
    out.extend_from_slice(format!("],\"total\":{}", snapshot.n_students()).as_bytes());
    if let (Some(last), Some(_)) = (last, ids.peek()) {
        out.extend_from_slice(b",\"next\":");
        write_json_str(&mut out, last);
    }
    out.push(b'}');
    out
}

/// Appends `value` as serde_json writes it (escaped strings; `0.0`, `0.64`), so hand-assembled
/// bodies print values exactly as the derived ones do.
fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Serializing strings, integers and finite floats into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Appends `text` as a JSON string, exactly as [`write_json`] would. An id holds no control
/// character and rarely a quote or a backslash, so it is nearly always copied whole: serde_json
/// escapes a byte at a time, which was half the time of listing 100k students.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    let plain =
        text.bytes().fold(true, |plain, b| plain & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        write_json(out, text);
    }
}

/// `GET /students/{id}` as JSON, written straight into the buffer.
pub fn student_json(snapshot: &Snapshot, student_id: &str) -> Result<Vec<u8>, ApiError> {
    let report = snapshot
        .student(student_id)
        .ok_or_else(|| ApiError::UnknownStudent(student_id.to_owned()))?;
    let results = report.results();
    let mut out = Vec::with_capacity(64 + results.len() * 40);
    out.extend_from_slice(b"{\"studentId\":");
    write_json_str(&mut out, report.student_id.as_str());
    out.extend_from_slice(b",\"results\":[");
    for (i, (exam, score)) in results.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"exam\":");
        write_json(&mut out, &exam.0);
        out.extend_from_slice(b",\"score\":");
        write_json(&mut out, &score.get());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"average\":");
    write_json(&mut out, &report.average);
    out.push(b'}');
    Ok(out)
}

/// `GET /exams` as JSON.
pub fn exams_json(snapshot: &Snapshot, page: Page<'_, ExamId>) -> Vec<u8> {
    let listing = snapshot.exams(page);
    to_json(&ExamsBody {
        exams: listing.items.iter().map(|exam| exam.0).collect(),
        total: listing.total,
        next: listing.next.map(|exam| exam.0),
    })
}

/// Parses the `{number}` of `/exams/{number}`.
pub fn parse_exam(number: &str) -> Result<ExamId, ApiError> {
    parse_digits(number).map(ExamId).ok_or_else(|| ApiError::InvalidExamNumber(number.to_owned()))
}

/// `GET /exams/{number}` as JSON.
pub fn exam_json(snapshot: &Snapshot, exam: ExamId) -> Result<Vec<u8>, ApiError> {
    let report = snapshot.exam(exam).ok_or(ApiError::UnknownExam(exam.0))?;
    let results = report.results();
    Ok(to_json(&ExamBody {
        exam: exam.0,
        results: results
            .map(|(id, score)| StudentResult { student_id: id.as_str(), score: score.get() })
            .collect(),
        average: report.average,
    }))
}

/// Answers a request for `resource` from the published snapshot: its sequence number in
/// `X-Scores-Seq`; an `ETag` that names the sequence number at which the resource last changed,
/// so that it changes only when the body would; 304 when the client already has it; otherwise
/// the body, rendered once per snapshot (see [`RenderCache`](crate::rendered::RenderCache)).
fn answer(state: &AppState, headers: &HeaderMap, resource: Result<Resource, ApiError>) -> Response {
    let snapshot = match state.ready_snapshot() {
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
                Err(error) => error.into_response(),
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
    answer(&state, &headers, page.map(Resource::Students))
}

pub(crate) async fn student(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    answer(&state, &headers, segment(path).map(Resource::Student))
}

pub(crate) async fn exams(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let page = RawParams::parse(query.as_deref()).and_then(RawParams::exams);
    answer(&state, &headers, page.map(Resource::Exams))
}

pub(crate) async fn exam(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let exam = segment(path).and_then(|number| parse_exam(&number));
    answer(&state, &headers, exam.map(Resource::Exam))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    proptest::proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(
            text in r#"[a-z"\\\x00-\x1f\x7f-\x{a0}é€😀]{0,12}"#,
        ) {
            let mut out = b"[".to_vec();
            write_json_str(&mut out, &text);
            let mut expected = b"[".to_vec();
            serde_json::to_writer(&mut expected, &text).unwrap();
            proptest::prop_assert_eq!(out, expected);
        }
    }
}
