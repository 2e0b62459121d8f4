//! The answers to the four queries as JSON, byte for byte as the HTTP API sends them, and the
//! text of their parameters. The API and `scores replay` both render through here, so the two
//! print the same bytes for the same events.
//!
//! Bodies are written straight from the snapshot into one buffer: a list of 100k student ids is
//! never copied, and values are printed as serde_json prints them (`0.0`, `0.64`, escaped
//! strings).

use serde::Serialize;

use crate::event::ExamId;
use crate::snapshot::{Page, Snapshot};

/// A query that has no answer: a malformed parameter, or a student or exam with no results.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
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
}

impl QueryError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::UnknownStudent(_) => "student_not_found",
            QueryError::UnknownExam(_) => "exam_not_found",
            QueryError::InvalidExamNumber(_) => "invalid_exam_number",
            QueryError::InvalidParameter { .. } => "invalid_parameter",
        }
    }

    /// Whether the query was well formed and names what the snapshot does not hold (a 404, where
    /// the others are a 400).
    pub fn is_not_found(&self) -> bool {
        matches!(self, QueryError::UnknownStudent(_) | QueryError::UnknownExam(_))
    }

    /// The error body: `{"error":{"code":…,"message":…}}`.
    pub fn to_json(&self) -> Vec<u8> {
        error_json(self.code(), &self.to_string())
    }
}

/// An error body, `{"error":{"code":…,"message":…}}`, as every error of the API is written.
pub fn error_json(code: &str, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Detail<'a>,
    }
    #[derive(Serialize)]
    struct Detail<'a> {
        code: &'a str,
        message: &'a str,
    }
    to_json(&Body { error: Detail { code, message } })
}

/// `GET /students`: `{"students":[…],"total":N,"next":…}`, `next` only when more follow.
pub fn students_json(snapshot: &Snapshot, page: Page<'_, str>) -> Vec<u8> {
    let on_page = page.limit.unwrap_or(usize::MAX).min(snapshot.n_students());
    let mut listing = snapshot.students(page);
    let mut out = Vec::with_capacity(64 + on_page * 20);
    out.extend_from_slice(b"{\"students\":[");
    for (i, id) in listing.by_ref().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(&mut out, id);
    }
    out.extend_from_slice(format!("],\"total\":{}", listing.total).as_bytes());
    if let Some(next) = listing.next_cursor() {
        out.extend_from_slice(b",\"next\":");
        write_json_str(&mut out, next);
    }
    out.push(b'}');
    out
}

/// `GET /students/{id}`: `{"studentId":…,"results":[{"exam":…,"score":…},…],"average":…}`.
pub fn student_json(snapshot: &Snapshot, student_id: &str) -> Result<Vec<u8>, QueryError> {
    let report = snapshot
        .student(student_id)
        .ok_or_else(|| QueryError::UnknownStudent(student_id.to_owned()))?;
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

/// `GET /exams`: `{"exams":[…],"total":N,"next":…}`, `next` only when more follow.
pub fn exams_json(snapshot: &Snapshot, page: Page<'_, ExamId>) -> Vec<u8> {
    #[derive(Serialize)]
    struct ExamsBody {
        exams: Vec<u64>,
        total: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<u64>,
    }
    let mut listing = snapshot.exams(page);
    let exams = listing.by_ref().map(|exam| exam.0).collect();
    to_json(&ExamsBody {
        exams,
        total: listing.total,
        next: listing.next_cursor().map(|exam| exam.0),
    })
}

/// `GET /exams/{number}`: `{"exam":N,"results":[{"studentId":…,"score":…},…],"average":…}`.
pub fn exam_json(snapshot: &Snapshot, exam: ExamId) -> Result<Vec<u8>, QueryError> {
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
    let report = snapshot.exam(exam).ok_or(QueryError::UnknownExam(exam.0))?;
    let results = report.results();
    Ok(to_json(&ExamBody {
        exam: exam.0,
        results: results
            .map(|(id, score)| StudentResult { student_id: id.as_str(), score: score.get() })
            .collect(),
        average: report.average,
    }))
}

/// A page's `limit`: a positive integer written in digits (`None` is no limit, and so is one
/// too large to count: more than any list holds).
pub fn parse_limit(limit: Option<&str>) -> Result<Option<usize>, QueryError> {
    let Some(limit) = limit.filter(|limit| !limit.is_empty()) else { return Ok(None) };
    if !limit.bytes().all(|b| b.is_ascii_digit()) || limit.bytes().all(|b| b == b'0') {
        return Err(invalid("limit", format!("expected a positive integer, got {limit:?}")));
    }
    Ok(limit.parse::<usize>().ok())
}

/// The `after` of the exam list: an exam number.
pub fn parse_exam_cursor(after: &str) -> Result<ExamId, QueryError> {
    parse_digits(after).map(ExamId).ok_or_else(|| {
        invalid(
            "after",
            format!("expected an exam number (an integer from 0 to {}), got {after:?}", u64::MAX),
        )
    })
}

/// The `after` of the event stream: the sequence number it starts after.
pub fn parse_seq_cursor(after: &str) -> Result<u64, QueryError> {
    parse_digits(after).ok_or_else(|| {
        invalid(
            "after",
            format!(
                "expected a sequence number (an integer from 0 to {}), got {after:?}",
                u64::MAX
            ),
        )
    })
}

/// The `{number}` of `/exams/{number}`.
pub fn parse_exam_number(number: &str) -> Result<ExamId, QueryError> {
    parse_digits(number).map(ExamId).ok_or_else(|| QueryError::InvalidExamNumber(number.to_owned()))
}

/// `text` as an integer written in decimal digits only: `from_str` also takes a leading `+`,
/// which no limit, cursor or exam number is written with.
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

fn invalid(name: &'static str, reason: String) -> QueryError {
    QueryError::InvalidParameter { name, reason }
}

fn to_json(body: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs (strings, integers, finite floats) into memory cannot
    // fail; an empty body would be the only outcome of a bug here.
    serde_json::to_vec(body).unwrap_or_default()
}

/// Appends `value` as serde_json writes it.
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

    #[test]
    fn limits_are_positive_integers_and_huge_ones_are_no_limit() {
        assert_eq!(parse_limit(None), Ok(None));
        assert_eq!(parse_limit(Some("7")), Ok(Some(7)));
        assert_eq!(parse_limit(Some("999999999999999999999999")), Ok(None));
        for bad in ["0", "000", "x", "+5", "-1", "1.5", " 1"] {
            let error = parse_limit(Some(bad)).unwrap_err().to_string();
            assert_eq!(
                error,
                format!(
                    "invalid query parameter `limit`: expected a positive integer, got {bad:?}"
                )
            );
        }
    }
}
