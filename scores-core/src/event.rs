//! The domain values: a score event and the student id, exam id and score it carries.
//!
//! Each value is validated when it is built, so a `ScoreEvent` in hand is always well formed.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One exam result as the feed reports it: `student_id` scored `score` on `exam`.
///
/// Serializes to the feed's compact shape, `{"studentId":"Marvin32","exam":11295,"score":0.64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreEvent {
    /// Who sat the exam.
    pub student_id: StudentId,
    /// Which exam.
    pub exam: ExamId,
    /// The score, in `0.0..=1.0`.
    pub score: Score,
}

impl ScoreEvent {
    /// The event with these field values, validated as [`decode`](crate::decode) validates
    /// them; the error names the field that is invalid.
    ///
    /// ```
    /// use scores_core::{InvalidEvent, ScoreEvent};
    ///
    /// let event = ScoreEvent::new("Marvin32", 11295, 0.64)?;
    /// assert_eq!(event.student_id.as_str(), "Marvin32");
    /// assert_eq!(event.score.get(), 0.64);
    /// assert!(matches!(ScoreEvent::new("Marvin32", 11295, 1.5), Err(InvalidEvent::Score(_))));
    /// # Ok::<(), InvalidEvent>(())
    /// ```
    pub fn new(student_id: &str, exam: u64, score: f64) -> Result<ScoreEvent, InvalidEvent> {
        Ok(ScoreEvent {
            student_id: StudentId::new(student_id).map_err(InvalidEvent::StudentId)?,
            exam: ExamId(exam),
            score: Score::new(score).map_err(InvalidEvent::Score)?,
        })
    }
}

/// Why field values do not make a [`ScoreEvent`]; decoding reports the same as a
/// [`DecodeError`](crate::DecodeError).
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum InvalidEvent {
    /// The student id breaks the rules.
    #[error("field `studentId` is invalid: {0}")]
    StudentId(InvalidStudentId),
    /// The score is not a number in `0..=1`.
    #[error("field `score` is out of range: {0}")]
    Score(InvalidScore),
}

/// A student's user name: non-empty UTF-8, at most [`StudentId::MAX_LEN`] bytes, no control
/// characters.
///
/// Cloning is cheap (a reference count), so projections keep one allocation per student.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StudentId(Arc<str>);

/// Why a string is not a valid [`StudentId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStudentId {
    /// The id is the empty string.
    #[error("it is empty")]
    Empty,
    /// The id is longer than [`StudentId::MAX_LEN`] bytes.
    #[error("it is {len} bytes long, more than the limit of {max}", max = StudentId::MAX_LEN)]
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id contains a control character.
    #[error("it contains the control character U+{code_point:04X} at byte {byte_offset}")]
    ControlCharacter {
        /// The offending character's code point.
        code_point: u32,
        /// Where it starts, in bytes from the start of the id.
        byte_offset: usize,
    },
}

impl StudentId {
    /// The longest id accepted, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Validates `id` and makes it a `StudentId`.
    pub fn new(id: &str) -> Result<StudentId, InvalidStudentId> {
        if id.is_empty() {
            return Err(InvalidStudentId::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return Err(InvalidStudentId::TooLong { len: id.len() });
        }
        // Printable ASCII, as ids nearly always are, holds no control character.
        let printable_ascii = id.bytes().all(|b| (b' '..=b'~').contains(&b));
        if !printable_ascii
            && let Some((byte_offset, c)) = id.char_indices().find(|(_, c)| c.is_control())
        {
            return Err(InvalidStudentId::ControlCharacter { code_point: c.into(), byte_offset });
        }
        Ok(StudentId(Arc::from(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StudentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StudentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StudentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for StudentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StudentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        StudentId::new(&id).map_err(serde::de::Error::custom)
    }
}

/// An exam number: any non-negative integer that fits a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExamId(pub u64);

impl fmt::Display for ExamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A score: a finite number in `0.0..=1.0`. `0.0` is a valid score.
///
/// Negative zero is stored as `0.0`, so equal scores have equal bits and `Score` is `Eq`.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub struct Score(f64);

impl Eq for Score {}

impl std::hash::Hash for Score {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// Why a number is not a valid [`Score`].
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum InvalidScore {
    /// NaN or an infinity.
    #[error("{value} is not a finite number")]
    NotFinite {
        /// The rejected value.
        value: f64,
    },
    /// A finite number below 0 or above 1.
    #[error("{value} is outside 0..=1")]
    OutOfRange {
        /// The rejected value.
        value: f64,
    },
}

impl Score {
    /// The score 0.
    pub const ZERO: Score = Score(0.0);

    /// Validates `value` and makes it a `Score`.
    pub fn new(value: f64) -> Result<Score, InvalidScore> {
        if !value.is_finite() {
            return Err(InvalidScore::NotFinite { value });
        }
        if !(0.0..=1.0).contains(&value) {
            return Err(InvalidScore::OutOfRange { value });
        }
        // `-0.0` passes the range check; adding `0.0` turns it into `+0.0`.
        Ok(Score(value + 0.0))
    }

    /// The score as a number.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The score's bits, for storing it where only plain words go (a row's shared log).
    pub(crate) fn to_bits(self) -> u64 {
        self.0.to_bits()
    }

    /// The score whose [`to_bits`](Self::to_bits) are `bits`.
    pub(crate) fn from_bits(bits: u64) -> Score {
        Score(f64::from_bits(bits))
    }
}

impl fmt::Debug for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Score::new(f64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_student(input: &str, expected: Result<(), InvalidStudentId>) {
        assert_eq!(StudentId::new(input).map(|_| ()), expected, "input: {input:?}");
    }

    #[test]
    fn events_built_from_values_are_validated_like_decoded_ones() {
        let event = ScoreEvent::new("Marvin32", 11295, 0.0).expect("valid");
        assert_eq!(
            (event.student_id.as_str(), event.exam, event.score.get()),
            ("Marvin32", ExamId(11295), 0.0)
        );
        assert_eq!(
            ScoreEvent::new("", 1, 0.5).map_err(|e| e.to_string()),
            Err("field `studentId` is invalid: it is empty".to_owned())
        );
        assert!(matches!(
            ScoreEvent::new("a", 1, -0.1),
            Err(InvalidEvent::Score(InvalidScore::OutOfRange { .. }))
        ));
    }

    #[test]
    fn student_ids_follow_the_rules() {
        check_student("Marvin32", Ok(()));
        check_student("Hannah.Herman76", Ok(()));
        check_student("Zoë_Ürsel", Ok(()));
        check_student("", Err(InvalidStudentId::Empty));
        check_student(&"a".repeat(256), Ok(()));
        check_student(&"a".repeat(257), Err(InvalidStudentId::TooLong { len: 257 }));
        check_student(
            "ab\ncd",
            Err(InvalidStudentId::ControlCharacter { code_point: 0x0A, byte_offset: 2 }),
        );
        // The edges of printable ASCII, which needs no look at each character.
        check_student(" ~", Ok(()));
        check_student(
            "a\u{7f}",
            Err(InvalidStudentId::ControlCharacter { code_point: 0x7F, byte_offset: 1 }),
        );
        check_student(
            "\u{1f}a",
            Err(InvalidStudentId::ControlCharacter { code_point: 0x1F, byte_offset: 0 }),
        );
        check_student(
            "é\u{7f}",
            Err(InvalidStudentId::ControlCharacter { code_point: 0x7F, byte_offset: 2 }),
        );
    }

    #[test]
    fn scores_are_finite_and_within_zero_and_one() {
        assert_eq!(Score::new(0.0).map(Score::get), Ok(0.0));
        assert_eq!(Score::new(1.0).map(Score::get), Ok(1.0));
        assert_eq!(Score::new(-0.0).map(|s| s.get().to_bits()), Ok(0.0f64.to_bits()));
        assert_eq!(Score::new(1.0000001), Err(InvalidScore::OutOfRange { value: 1.0000001 }));
        assert_eq!(Score::new(-0.5), Err(InvalidScore::OutOfRange { value: -0.5 }));
        assert!(matches!(Score::new(f64::NAN), Err(InvalidScore::NotFinite { .. })));
        assert!(matches!(Score::new(f64::INFINITY), Err(InvalidScore::NotFinite { .. })));
    }

    #[test]
    fn event_serializes_in_the_feeds_shape() {
        let event = ScoreEvent {
            student_id: StudentId::new("Marvin32").unwrap(),
            exam: ExamId(11295),
            score: Score::new(0.64).unwrap(),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(json, r#"{"studentId":"Marvin32","exam":11295,"score":0.64}"#);
        assert_eq!(serde_json::from_str::<ScoreEvent>(&json).unwrap(), event);
    }
}
