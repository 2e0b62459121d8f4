//! The query parameters the lists and the stream take, parsed once, at the edge, into typed
//! values: every malformed one is a [`QueryError::InvalidParameter`] that names it.
//!
//! `limit` is a positive integer (one too large to count is no limit); `after` is a cursor whose
//! type depends on the endpoint. A parameter given with an empty value (`after=`, as an empty
//! form field sends) counts as not given, on every endpoint. Unknown parameters are ignored.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use scores_core::ExamId;
use scores_core::wire::{QueryError, parse_exam_cursor, parse_limit, parse_seq_cursor};

/// `limit` and `after` as they arrived, percent-decoded, each given at most once, empty ones
/// left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RawParams {
    limit: Option<String>,
    after: Option<String>,
}

/// A page of `/students`: at most `limit` ids after `after`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct StudentsPage {
    pub(crate) limit: Option<usize>,
    pub(crate) after: Option<String>,
}

/// A page of `/exams`: at most `limit` exams after `after`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct ExamsPage {
    pub(crate) limit: Option<usize>,
    pub(crate) after: Option<ExamId>,
}

impl RawParams {
    /// Splits and decodes a query string (`+` is a space, as in forms).
    pub(crate) fn parse(query: Option<&str>) -> Result<RawParams, QueryError> {
        let mut params = RawParams::default();
        for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, slot) = match decode(name) {
                Some(name) if name == "limit" => ("limit", &mut params.limit),
                Some(name) if name == "after" => ("after", &mut params.after),
                _ => continue,
            };
            let value = decode(value)
                .ok_or_else(|| invalid(name, "it is not UTF-8 once percent-decoded".to_owned()))?;
            if slot.is_some() {
                return Err(invalid(name, "it is given more than once".to_owned()));
            }
            if !value.is_empty() {
                *slot = Some(value);
            }
        }
        Ok(params)
    }

    pub(crate) fn students(self) -> Result<StudentsPage, QueryError> {
        Ok(StudentsPage { limit: parse_limit(self.limit.as_deref())?, after: self.after })
    }

    pub(crate) fn exams(self) -> Result<ExamsPage, QueryError> {
        let after = match self.after.as_deref() {
            None => None,
            Some(after) => Some(parse_exam_cursor(after)?),
        };
        Ok(ExamsPage { limit: parse_limit(self.limit.as_deref())?, after })
    }

    /// `after` as the sequence number a stream starts after; `limit` is not taken there.
    pub(crate) fn stream_after(self) -> Result<Option<u64>, QueryError> {
        self.after.as_deref().map(parse_seq_cursor).transpose()
    }
}

/// `max_staleness` of `/readyz`: a duration such as `5s` or `500ms`; `None` when not given.
pub(crate) fn max_staleness(query: Option<&str>) -> Result<Option<Duration>, QueryError> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(name).as_deref() != Some("max_staleness") {
            continue;
        }
        if found.is_some() {
            return Err(invalid("max_staleness", "it is given more than once".to_owned()));
        }
        found = Some(value);
    }
    let Some(value) = found.and_then(decode).filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    humantime::parse_duration(&value).map(Some).map_err(|error| {
        invalid("max_staleness", format!("expected a duration such as `5s` ({error})"))
    })
}

fn invalid(name: &'static str, reason: String) -> QueryError {
    QueryError::InvalidParameter { name, reason }
}

/// A query string's name or value, decoded: `None` when the bytes it names are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().ok().map(|text| text.into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn check(query: &str, expected: Result<(Option<&str>, Option<&str>), &str>) {
        let parsed = RawParams::parse(Some(query));
        match expected {
            Ok((limit, after)) => assert_eq!(
                parsed,
                Ok(RawParams { limit: limit.map(Into::into), after: after.map(Into::into) }),
                "{query}"
            ),
            Err(message) => assert_eq!(parsed.unwrap_err().to_string(), message, "{query}"),
        }
    }

    #[test]
    fn max_staleness_is_a_duration() {
        assert_eq!(max_staleness(None), Ok(None));
        assert_eq!(max_staleness(Some("max_staleness=")), Ok(None));
        assert_eq!(max_staleness(Some("x=1&max_staleness=5s")), Ok(Some(Duration::from_secs(5))));
        assert_eq!(
            max_staleness(Some("max_staleness=1500ms")),
            Ok(Some(Duration::from_millis(1500)))
        );
        let error = max_staleness(Some("max_staleness=soon")).unwrap_err().to_string();
        assert!(error.starts_with("invalid query parameter `max_staleness`: expected"), "{error}");
        assert!(max_staleness(Some("max_staleness=1s&max_staleness=2s")).is_err());
    }

    #[test]
    fn parameters_are_decoded_once_each_and_empty_ones_are_not_given() {
        check("", Ok((None, None)));
        check("limit=3&after=a%20b", Ok((Some("3"), Some("a b"))));
        check("after=a+b&other=%FF", Ok((None, Some("a b"))));
        check("after=&limit=", Ok((None, None)));
        check("after", Ok((None, None)));
        check("after=%C3%A9", Ok((None, Some("é"))));
        check(
            "after=%FF",
            Err("invalid query parameter `after`: it is not UTF-8 once percent-decoded"),
        );
        check(
            "limit=1&limit=2",
            Err("invalid query parameter `limit`: it is given more than once"),
        );
    }
}
