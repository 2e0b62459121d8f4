//! The query parameters the lists and the stream take, parsed once, at the edge, into typed
//! values: every malformed one is an [`ApiError::InvalidParameter`] that names it.
//!
//! `limit` is a positive integer (one too large to count is no limit); `after` is a cursor whose
//! type depends on the endpoint. A parameter given with an empty value (`after=`, as an empty
//! form field sends) counts as not given, on every endpoint. Unknown parameters are ignored.

use percent_encoding::percent_decode_str;
use scores_core::ExamId;

use crate::api::ApiError;

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
    pub(crate) fn parse(query: Option<&str>) -> Result<RawParams, ApiError> {
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

    pub(crate) fn students(self) -> Result<StudentsPage, ApiError> {
        Ok(StudentsPage { limit: parse_limit(self.limit.as_deref())?, after: self.after })
    }

    pub(crate) fn exams(self) -> Result<ExamsPage, ApiError> {
        let after = match self.after.as_deref() {
            None => None,
            Some(after) => Some(parse_exam_cursor(after)?),
        };
        Ok(ExamsPage { limit: parse_limit(self.limit.as_deref())?, after })
    }

    /// `after` as the sequence number a stream starts after; `limit` is not taken there.
    pub(crate) fn stream_after(self) -> Result<Option<u64>, ApiError> {
        let Some(after) = self.after else { return Ok(None) };
        parse_digits(&after).map(Some).ok_or_else(|| {
            invalid(
                "after",
                format!(
                    "expected a sequence number (an integer from 0 to {}), got {after:?}",
                    u64::MAX
                ),
            )
        })
    }
}

/// `limit`'s value: a positive integer written in digits; one past `usize::MAX` is no limit.
pub fn parse_limit(limit: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(limit) = limit.filter(|limit| !limit.is_empty()) else { return Ok(None) };
    if !limit.bytes().all(|b| b.is_ascii_digit()) || limit.bytes().all(|b| b == b'0') {
        return Err(invalid("limit", format!("expected a positive integer, got {limit:?}")));
    }
    // Digits too many to count: more than any list holds.
    Ok(limit.parse::<usize>().ok())
}

/// The `after` of `/exams`: an exam number.
pub fn parse_exam_cursor(after: &str) -> Result<ExamId, ApiError> {
    parse_digits(after).map(ExamId).ok_or_else(|| {
        invalid(
            "after",
            format!("expected an exam number (an integer from 0 to {}), got {after:?}", u64::MAX),
        )
    })
}

/// `text` as an integer written in decimal digits only: `from_str` also takes a leading `+`,
/// which no limit, cursor or exam number is written with.
pub(crate) fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

fn invalid(name: &'static str, reason: String) -> ApiError {
    ApiError::InvalidParameter { name, reason }
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
