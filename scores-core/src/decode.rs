//! Decoding a feed event's `data` into a [`ScoreEvent`], with a typed error for every rejection.
//!
//! Strict JSON is tried first. Only when the text is not JSON at all is it read again as JSON5,
//! which accepts the old README's example `{"exam": 3, "studentId": "foo", score: .991}` (a bare
//! key and a leading-dot number). Either way the same field rules apply. Work is bounded
//! whatever the input: data nested deeper than [`MAX_DEPTH`] is a [`DecodeError::TooDeep`],
//! found by one pass before any parser runs, and the JSON5 fallback, which recurses without a limit of its own,
//! sees only texts of at most [`LENIENT_MAX_LEN`] bytes that open at most [`LENIENT_MAX_NESTING`]
//! arrays or objects. The feed's own compact
//! shape is read by a small reader of its own before either, with the same result, faster.
//! Scores are read exactly: the text of a double printed at full precision reads back as that
//! double.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::event::{
    ExamId, InvalidEvent, InvalidScore, InvalidStudentId, Score, ScoreEvent, StudentId,
};

/// What a feed event turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// A valid score event.
    Event(ScoreEvent),
    /// An event of a type other than `score` (or the SSE default `message`): not an error, but
    /// nothing to fold. Callers count these.
    Ignored,
}

/// The event types that carry scores: the feed's own `score`, and `message`, the type SSE gives
/// an event that names none (as a pasted `data:` line does).
pub const SCORE_EVENT_TYPES: [&str; 2] = ["score", "message"];

/// A field of the event's JSON object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `studentId`
    StudentId,
    /// `exam`
    Exam,
    /// `score`
    Score,
}

impl Field {
    /// The field's name in the JSON object.
    pub fn name(self) -> &'static str {
        match self {
            Field::StudentId => "studentId",
            Field::Exam => "exam",
            Field::Score => "score",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of a JSON value, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

/// A JSON number as the parser read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JsonNumber {
    /// A non-negative integer that fits a `u64`.
    Unsigned(u64),
    /// A negative integer that fits an `i64`.
    Negative(i64),
    /// Any other number: a fraction, an exponent, or an integer too large for 64 bits.
    Float(f64),
}

impl fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonNumber::Unsigned(n) => write!(f, "{n}"),
            JsonNumber::Negative(n) => write!(f, "{n}"),
            JsonNumber::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Why an event's data is not a valid score event.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The data is neither JSON nor JSON5.
    #[error("data is not JSON: {message} at {}", data_position(*line, *column))]
    NotJson {
        /// The strict JSON parser's description of the first problem.
        message: String,
        /// 1-based line of the problem, within the data (several `data:` lines make several).
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// The data nests arrays or objects deeper than [`MAX_DEPTH`]; no score event does.
    #[error("data nests arrays or objects deeper than {limit}")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// The data is JSON, but not an object.
    #[error("data is {found}, not a JSON object")]
    NotAnObject {
        /// What it is instead.
        found: JsonKind,
    },
    /// A required field is absent.
    #[error("field `{field}` is missing")]
    Missing {
        /// The absent field.
        field: Field,
    },
    /// A field appears twice; which value was meant is unknowable.
    #[error("field `{field}` appears more than once")]
    Duplicate {
        /// The repeated field.
        field: Field,
    },
    /// A field holds the wrong kind of value.
    #[error("field `{field}` has the wrong type: expected {expected}, found {found}")]
    WrongType {
        /// The field.
        field: Field,
        /// What the field must hold.
        expected: &'static str,
        /// What it holds.
        found: JsonKind,
    },
    /// `studentId` is a string but not a valid id.
    #[error("field `studentId` is invalid: {0}")]
    StudentId(InvalidStudentId),
    /// `exam` is a number but not an integer in `0..=u64::MAX`.
    #[error("field `exam` is out of range: expected an integer from 0 to {max}, found {found}", max = u64::MAX)]
    ExamOutOfRange {
        /// The number found.
        found: JsonNumber,
    },
    /// `score` is a number but not a valid score.
    #[error("field `score` is out of range: {0}")]
    Score(InvalidScore),
}

impl From<InvalidEvent> for DecodeError {
    fn from(invalid: InvalidEvent) -> DecodeError {
        match invalid {
            InvalidEvent::StudentId(error) => DecodeError::StudentId(error),
            InvalidEvent::Score(error) => DecodeError::Score(error),
        }
    }
}

/// Where in an event's data a problem is: its column when the data is one line (as nearly
/// always), so that it does not read as a line of the file or stream the event came from.
fn data_position(line: usize, column: usize) -> String {
    if line == 1 {
        format!("column {column}")
    } else {
        format!("line {line} of the data, column {column}")
    }
}

impl DecodeError {
    /// A short, stable name for the reason, for metrics labels (`not_json`, `missing`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::NotAnObject { .. } => "not_an_object",
            DecodeError::Missing { .. } => "missing_field",
            DecodeError::Duplicate { .. } => "duplicate_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::StudentId(InvalidStudentId::Empty) => "empty",
            DecodeError::StudentId(InvalidStudentId::TooLong { .. }) => "too_long",
            DecodeError::StudentId(InvalidStudentId::ControlCharacter { .. }) => {
                "control_character"
            }
            DecodeError::ExamOutOfRange { .. } | DecodeError::Score(_) => "out_of_range",
        }
    }
}

/// Decodes one feed event: `event_type` is the SSE event type, `data` its data.
///
/// Types other than [`SCORE_EVENT_TYPES`] are [`Decoded::Ignored`] without looking at `data`.
/// Unknown fields are ignored.
///
/// ```
/// use scores_core::{decode, Decoded, DecodeError, Field};
///
/// let Decoded::Event(event) = decode("score", r#"{"studentId":"Marvin32","exam":11295,"score":0.64}"#)? else {
///     unreachable!()
/// };
/// assert_eq!(event.student_id.as_str(), "Marvin32");
///
/// // The old README's example is not JSON, but decodes through the lenient fallback.
/// assert!(matches!(decode("score", r#"{"exam": 3, "studentId": "foo", score: .991}"#), Ok(Decoded::Event(_))));
///
/// assert_eq!(decode("score", r#"{"exam":3,"score":0.5}"#), Err(DecodeError::Missing { field: Field::StudentId }));
/// assert_eq!(decode("heartbeat", "whatever"), Ok(Decoded::Ignored));
/// # Ok::<(), DecodeError>(())
/// ```
pub fn decode(event_type: &str, data: &str) -> Result<Decoded, DecodeError> {
    if !SCORE_EVENT_TYPES.contains(&event_type) {
        return Ok(Decoded::Ignored);
    }
    let raw = match read_canonical(data) {
        Some(raw) => raw,
        None => read_general(data)?,
    };
    raw.validate().map(Decoded::Event)
}

/// How deeply the data may nest arrays and objects: serde_json's own recursion limit. A score
/// event nests one level, or a few with unknown fields.
pub const MAX_DEPTH: usize = 128;

/// The longest data the JSON5 fallback reads. A score event pasted by hand is far shorter; the
/// fallback's parser recurses without a limit, so it never sees text long enough to hurt.
pub const LENIENT_MAX_LEN: usize = 4096;

/// How many arrays and objects, in all, data may open and still be read as JSON5: an upper
/// bound on its nesting that needs no parsing (brackets inside strings count too).
pub const LENIENT_MAX_NESTING: usize = 16;

/// Reads any JSON, or JSON5 when it is not JSON.
fn read_general(data: &str) -> Result<RawEvent<'_>, DecodeError> {
    // serde_json skips an unknown field's value without a depth limit (iteratively, so
    // safely); the limit is checked first so that deep data is rejected alike wherever it is.
    if json_depth_exceeds(data, MAX_DEPTH) {
        return Err(DecodeError::TooDeep { limit: MAX_DEPTH });
    }
    serde_json::from_str::<RawEvent<'_>>(data).or_else(|strict_error| {
        let not_json = || DecodeError::NotJson {
            message: strict_message(&strict_error),
            line: strict_error.line(),
            column: strict_error.column(),
        };
        if !lenient_fits(data) {
            return Err(not_json());
        }
        json5::from_str::<RawEvent<'_>>(data).map_err(|_| not_json())
    })
}

/// Whether `data`, read as JSON, opens more than `limit` arrays or objects inside one another.
/// One pass, no recursion; brackets inside strings do not count.
fn json_depth_exceeds(data: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in data.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether `data` is small and shallow enough for the JSON5 fallback.
fn lenient_fits(data: &str) -> bool {
    data.len() <= LENIENT_MAX_LEN
        && data.bytes().filter(|&byte| byte == b'[' || byte == b'{').count() <= LENIENT_MAX_NESTING
}

/// Reads the feed's own shape, `{"studentId":"…","exam":…,"score":…}`, without the general
/// parser, which takes most of a decode's time: the fields in that order, no spaces, an id with
/// no escapes or control characters, an exam of digits, and a score of one digit and maybe a
/// fraction. Anything else, valid or not, is `None` and left to [`read_general`], which reads
/// whatever this accepts the same way: the id is its text, the exam its integer, and the score
/// the double nearest its text, which both find (serde_json with `float_roundtrip`, and
/// `str::parse`).
fn read_canonical(data: &str) -> Option<RawEvent<'_>> {
    let rest = data.strip_prefix(r#"{"studentId":""#)?;
    let id_len = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    let (id, rest) = rest.split_at(id_len);
    let rest = rest.strip_prefix(r#"","exam":"#)?;
    let (exam, rest) = rest.split_at(rest.bytes().position(|b| !b.is_ascii_digit())?);
    // JSON allows no leading zero; `parse` fails on an empty or overlong integer.
    if exam.len() > 1 && exam.starts_with('0') {
        return None;
    }
    let exam = exam.parse::<u64>().ok()?;
    let score = rest.strip_prefix(r#","score":"#)?.strip_suffix('}')?;
    let (units, fraction) = score.split_at_checked(1)?;
    let plain_fraction = match fraction.strip_prefix('.') {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => fraction.is_empty(),
    };
    if !units.bytes().all(|b| b.is_ascii_digit()) || !plain_fraction {
        return None;
    }
    let score = score.parse::<f64>().ok()?;
    Some(RawEvent::Object {
        student_id: Slot::Present(RawValue::String(Cow::Borrowed(id))),
        exam: Slot::Present(RawValue::Number(JsonNumber::Unsigned(exam))),
        score: Slot::Present(RawValue::Number(JsonNumber::Float(score))),
    })
}

/// serde_json's message without the " at line L column C" suffix, which the error carries apart.
fn strict_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(end) => message[..end].to_owned(),
        None => message,
    }
}

/// The event's JSON as read, before any field rule is applied. Reading it fails only on syntax,
/// so that every data-level problem becomes a typed [`DecodeError`] in [`RawEvent::validate`].
enum RawEvent<'a> {
    Object { student_id: Slot<'a>, exam: Slot<'a>, score: Slot<'a> },
    Other(JsonKind),
}

/// One known field: absent, present once, or present more than once.
#[derive(Default)]
enum Slot<'a> {
    #[default]
    Absent,
    Present(RawValue<'a>),
    Repeated,
}

impl<'a> Slot<'a> {
    fn fill(&mut self, value: RawValue<'a>) {
        *self = match self {
            Slot::Absent => Slot::Present(value),
            Slot::Present(_) | Slot::Repeated => Slot::Repeated,
        };
    }

    fn take(self, field: Field) -> Result<RawValue<'a>, DecodeError> {
        match self {
            Slot::Absent => Err(DecodeError::Missing { field }),
            Slot::Repeated => Err(DecodeError::Duplicate { field }),
            Slot::Present(value) => Ok(value),
        }
    }
}

enum RawValue<'a> {
    String(Cow<'a, str>),
    Number(JsonNumber),
    Other(JsonKind),
}

impl RawValue<'_> {
    fn kind(&self) -> JsonKind {
        match self {
            RawValue::String(_) => JsonKind::String,
            RawValue::Number(_) => JsonKind::Number,
            RawValue::Other(kind) => *kind,
        }
    }
}

impl RawEvent<'_> {
    fn validate(self) -> Result<ScoreEvent, DecodeError> {
        let (student_id, exam, score) = match self {
            RawEvent::Object { student_id, exam, score } => (student_id, exam, score),
            RawEvent::Other(found) => return Err(DecodeError::NotAnObject { found }),
        };
        let student_id = match student_id.take(Field::StudentId)? {
            RawValue::String(id) => StudentId::new(&id).map_err(DecodeError::StudentId)?,
            other => return Err(wrong_type(Field::StudentId, "a string", &other)),
        };
        let exam = match exam.take(Field::Exam)? {
            RawValue::Number(JsonNumber::Unsigned(n)) => ExamId(n),
            RawValue::Number(found) => return Err(DecodeError::ExamOutOfRange { found }),
            other => return Err(wrong_type(Field::Exam, "an integer", &other)),
        };
        let score = match score.take(Field::Score)? {
            RawValue::Number(number) => {
                let value = match number {
                    JsonNumber::Unsigned(n) => n as f64,
                    JsonNumber::Negative(n) => n as f64,
                    JsonNumber::Float(x) => x,
                };
                Score::new(value).map_err(DecodeError::Score)?
            }
            other => return Err(wrong_type(Field::Score, "a number", &other)),
        };
        Ok(ScoreEvent { student_id, exam, score })
    }
}

fn wrong_type(field: Field, expected: &'static str, found: &RawValue<'_>) -> DecodeError {
    DecodeError::WrongType { field, expected, found: found.kind() }
}

impl<'de> Deserialize<'de> for RawEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawEventVisitor)
    }
}

struct RawEventVisitor;

impl<'de> Visitor<'de> for RawEventVisitor {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut student_id, mut exam, mut score) = (Slot::Absent, Slot::Absent, Slot::Absent);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Known(Field::StudentId) => student_id.fill(map.next_value()?),
                Key::Known(Field::Exam) => exam.fill(map.next_value()?),
                Key::Known(Field::Score) => score.fill(map.next_value()?),
                Key::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawEvent::Object { student_id, exam, score })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(RawEvent::Other(JsonKind::Array))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawEvent::Other(JsonKind::Null))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawEvent::Other(JsonKind::Bool))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawEvent::Other(JsonKind::Number))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawEvent::Other(JsonKind::Number))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawEvent::Other(JsonKind::Number))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawEvent::Other(JsonKind::String))
    }
}

enum Key {
    Known(Field),
    Unknown,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "studentId" => Key::Known(Field::StudentId),
            "exam" => Key::Known(Field::Exam),
            "score" => Key::Known(Field::Score),
            _ => Key::Unknown,
        })
    }
}

impl<'de> Deserialize<'de> for RawValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawValueVisitor)
    }
}

struct RawValueVisitor;

impl<'de> Visitor<'de> for RawValueVisitor {
    type Value = RawValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(RawValue::String(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(RawValue::String(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(RawValue::String(Cow::Owned(text)))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(RawValue::Number(JsonNumber::Unsigned(n)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(RawValue::Number(match u64::try_from(n) {
            Ok(n) => JsonNumber::Unsigned(n),
            Err(_) => JsonNumber::Negative(n),
        }))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        Ok(RawValue::Number(JsonNumber::Float(x)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawValue::Other(JsonKind::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawValue::Other(JsonKind::Null))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawValue::Other(JsonKind::Bool))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(RawValue::Other(JsonKind::Array))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(RawValue::Other(JsonKind::Object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(data: &str, expected: Result<(&str, u64, f64), DecodeError>) {
        let actual = decode("score", data).map(|decoded| match decoded {
            Decoded::Event(e) => (e.student_id.as_str().to_owned(), e.exam.0, e.score.get()),
            Decoded::Ignored => panic!("a score event was ignored"),
        });
        let expected = expected.map(|(id, exam, score)| (id.to_owned(), exam, score));
        assert_eq!(actual, expected, "data: {data}");
    }

    fn check_message(data: &str, expected: &str) {
        let error = decode("score", data).expect_err("must be rejected");
        assert_eq!(error.to_string(), expected, "data: {data}");
    }

    #[test]
    fn decodes_the_feeds_events() {
        check(
            r#"{"studentId":"Marvin32","exam":11295,"score":0.64}"#,
            Ok(("Marvin32", 11295, 0.64)),
        );
        check(
            r#"{"studentId":"Gretchen.Mayert","exam":13118,"score":0.7895103274760336}"#,
            Ok(("Gretchen.Mayert", 13118, 0.7895103274760336)),
        );
        check(r#"{"score":0,"exam":0,"studentId":"a","extra":[1,{"x":2}]}"#, Ok(("a", 0, 0.0)));
        check(r#"{"studentId":"a\u00e9\"","exam":1,"score":1}"#, Ok(("aé\"", 1, 1.0)));
        check(
            r#"{"studentId":"a","exam":18446744073709551615,"score":1e-3}"#,
            Ok(("a", u64::MAX, 0.001)),
        );
    }

    /// The feed prints scores at full precision: the shortest text that reads back as the
    /// same double, often 17 significant digits. Reading that text must give that double, not
    /// a neighbour (serde_json's default float parsing gave a neighbour for about one score in
    /// ten; its `float_roundtrip` feature reads them exactly).
    #[test]
    fn scores_printed_at_full_precision_decode_to_the_same_double() {
        check(
            r#"{"studentId":"a","exam":1,"score":0.22675341419059195}"#,
            Ok(("a", 1, 0.22675341419059195)),
        );
        check(
            r#"{studentId: 'a', exam: 1, score: 0.22675341419059195}"#,
            Ok(("a", 1, 0.22675341419059195)),
        );
    }

    proptest::proptest! {
        #[test]
        fn every_score_round_trips_through_its_shortest_text(score in 0.0..=1.0f64) {
            let strict = format!(r#"{{"studentId":"a","exam":1,"score":{score}}}"#);
            let lenient = format!("{{studentId: 'a', exam: 1, score: {score}}}");
            for data in [strict, lenient] {
                let Ok(Decoded::Event(event)) = decode("score", &data) else {
                    panic!("{data} did not decode");
                };
                proptest::prop_assert_eq!(event.score.get().to_bits(), score.to_bits(), "{}", data);
            }
        }
    }

    proptest::proptest! {
        /// Whatever the fast reading of the feed's shape accepts, it reads as the general
        /// parser does: ids with quotes, escapes, control and non-ASCII characters; exams with
        /// leading zeros or past `u64::MAX`; scores negative, out of range or longer than a
        /// double; things after the score.
        #[test]
        fn the_feeds_shape_reads_as_the_general_parser_reads_it(
            id in r#"[a-zA-Z0-9._"\\\x00-\x1f\x7f-\x{a0}é]{0,12}"#,
            exam in "[0-9]{1,21}",
            score in r"-?[0-9]{1,2}(\.[0-9]{0,30})?",
            tail in "(|}| }|}})",
        ) {
            let data = format!(r#"{{"studentId":"{id}","exam":{exam},"score":{score}{tail}"#);
            if let Some(raw) = read_canonical(&data) {
                let general = read_general(&data).and_then(RawEvent::validate);
                proptest::prop_assert_eq!(raw.validate(), general, "{}", data);
            }
        }

        /// ... and it does read the feed's events, rather than leaving them all to the general
        /// parser.
        #[test]
        fn the_feeds_events_take_the_fast_reading(
            id in "[a-zA-Z0-9._]{1,20}",
            exam: u64,
            score in 0.0..=1.0f64,
        ) {
            let data = format!(r#"{{"studentId":"{id}","exam":{exam},"score":{score}}}"#);
            let raw = read_canonical(&data);
            proptest::prop_assert!(raw.is_some(), "{}", data);
            let general = read_general(&data).and_then(RawEvent::validate);
            proptest::prop_assert_eq!(raw.map(RawEvent::validate), Some(general));
        }
    }

    #[test]
    fn old_readme_example_decodes_through_the_lenient_fallback() {
        check(r#"{"exam": 3, "studentId": "foo", score: .991}"#, Ok(("foo", 3, 0.991)));
    }

    #[test]
    fn rejections_name_the_field_and_the_reason() {
        check_message(
            r#"{"studentId":"a","exam":1"#,
            "data is not JSON: EOF while parsing an object at column 25",
        );
        check_message("", "data is not JSON: EOF while parsing a value at column 0");
        // Two `data:` lines make two lines of data.
        check_message(
            "{\"studentId\":\"a\",\n\"exam\":x}",
            "data is not JSON: expected value at line 2 of the data, column 8",
        );
        check_message("[1,2]", "data is an array, not a JSON object");
        check_message(r#"{"exam":1,"score":0.5}"#, "field `studentId` is missing");
        check_message(r#"{"studentId":"a","score":0.5}"#, "field `exam` is missing");
        check_message(r#"{"studentId":"a","exam":1}"#, "field `score` is missing");
        check_message(
            r#"{"studentId":7,"exam":1,"score":0.5}"#,
            "field `studentId` has the wrong type: expected a string, found a number",
        );
        check_message(
            r#"{"studentId":"a","exam":"11295","score":0.5}"#,
            "field `exam` has the wrong type: expected an integer, found a string",
        );
        check_message(
            r#"{"studentId":"a","exam":1,"score":null}"#,
            "field `score` has the wrong type: expected a number, found null",
        );
        check_message(
            r#"{"studentId":"","exam":1,"score":0.5}"#,
            "field `studentId` is invalid: it is empty",
        );
        check_message(
            &format!(r#"{{"studentId":"{}","exam":1,"score":0.5}}"#, "x".repeat(300)),
            "field `studentId` is invalid: it is 300 bytes long, more than the limit of 256",
        );
        check_message(
            r#"{"studentId":"a\u0000","exam":1,"score":0.5}"#,
            "field `studentId` is invalid: it contains the control character U+0000 at byte 1",
        );
        check_message(
            r#"{"studentId":"a","exam":-3,"score":0.5}"#,
            "field `exam` is out of range: expected an integer from 0 to 18446744073709551615, found -3",
        );
        check_message(
            r#"{"studentId":"a","exam":18446744073709551616,"score":0.5}"#,
            "field `exam` is out of range: expected an integer from 0 to 18446744073709551615, found 18446744073709552000",
        );
        check_message(
            r#"{"studentId":"a","exam":2.5,"score":0.5}"#,
            "field `exam` is out of range: expected an integer from 0 to 18446744073709551615, found 2.5",
        );
        check_message(
            r#"{"studentId":"a","exam":1,"score":1.5}"#,
            "field `score` is out of range: 1.5 is outside 0..=1",
        );
        check_message(
            r#"{"studentId":"a","exam":1,"score":-0.1}"#,
            "field `score` is out of range: -0.1 is outside 0..=1",
        );
        check_message(
            r#"{"studentId":"a","exam":1,"exam":2,"score":0.5}"#,
            "field `exam` appears more than once",
        );
    }

    #[test]
    fn lenient_fallback_applies_the_same_rules() {
        check_message(
            "{studentId: 'a', exam: 1, score: Infinity}",
            "field `score` is out of range: inf is not a finite number",
        );
        check_message("{exam: 1, score: .5}", "field `studentId` is missing");
    }

    #[test]
    fn other_event_types_are_ignored_not_errors() {
        assert_eq!(decode("heartbeat", "not json at all"), Ok(Decoded::Ignored));
        assert_eq!(decode("", "{}"), Ok(Decoded::Ignored));
        assert!(matches!(
            decode("message", r#"{"studentId":"a","exam":1,"score":0.5}"#),
            Ok(Decoded::Event(_))
        ));
    }

    /// serde_json refuses nesting past 128; the JSON5 fallback recursed on the same text
    /// without a limit and overflowed the stack at about 50,000 brackets.
    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let too_deep = Err(DecodeError::TooDeep { limit: MAX_DEPTH });
        for data in [
            "[".repeat(50_000),
            "{\"a\":".repeat(200_000),
            "{a:".repeat(60_000),
            format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000)),
            format!(r#"{{"studentId":"a","exam":1,"score":0.5,"x":{}}}"#, "[".repeat(129)),
            format!(
                r#"{{"studentId":"a","exam":1,"score":0.5,"x":{}{}}}"#,
                "[".repeat(129),
                "]".repeat(129)
            ),
        ] {
            assert_eq!(decode("score", &data).map(|_| ()), too_deep, "{}…", &data[..40]);
        }
        // Not JSON, and opening too many arrays for the fallback to be tried.
        let shallow_but_busy = format!("{{a:{}1{}}}", "[".repeat(20), "]".repeat(20));
        assert_eq!(decode("score", &shallow_but_busy).expect_err("rejected").reason(), "not_json");
        // Brackets inside strings are not nesting.
        check(
            &format!(r#"{{"studentId":"{}","exam":1,"score":0.5}}"#, "[".repeat(200)),
            Ok((&"[".repeat(200), 1, 0.5)),
        );
        check(r#"{"studentId":"a\\","exam":1,"score":0.5,"x":[[["]"]]]}"#, Ok(("a\\", 1, 0.5)));
    }

    #[test]
    fn the_lenient_fallback_reads_only_short_texts() {
        let padded =
            format!("{{studentId: 'a', exam: 1, score: .5{}}}", " ".repeat(LENIENT_MAX_LEN));
        assert_eq!(decode("score", &padded).expect_err("rejected").reason(), "not_json");
        check(&padded.replace(&" ".repeat(LENIENT_MAX_LEN), ""), Ok(("a", 1, 0.5)));
    }

    #[test]
    fn reasons_are_stable_metric_labels() {
        let reason = |data: &str| decode("score", data).expect_err("rejected").reason();
        assert_eq!(reason("nope"), "not_json");
        assert_eq!(reason(&"[".repeat(129)), "too_deep");
        assert_eq!(reason(r#"{"exam":1,"score":0.5}"#), "missing_field");
        assert_eq!(reason(r#"{"studentId":"a","exam":1,"score":2}"#), "out_of_range");
    }
}
