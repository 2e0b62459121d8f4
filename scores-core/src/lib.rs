//! The pure domain of `scores`: exam-result events, their decoding, and the fold of an event log
//! into a scoreboard that readers query through immutable snapshots.
//!
//! Everything here is deterministic: no IO, no clock, no threads, no randomness. Sequence numbers
//! arrive with the data (the n-th event applied is number n), so replaying a log always gives the
//! same board, and tests and fuzzers drive the crate directly.
//!
//! - [`ScoreEvent`], [`StudentId`], [`ExamId`], [`Score`]: the domain values, validated when built.
//! - [`decode`]: an SSE event's type and data to a [`Decoded`] event or a typed [`DecodeError`].
//! - [`Scoreboard`]: the writer's projection; [`Scoreboard::apply`] folds one event,
//!   [`Scoreboard::apply_all`] a batch. [`Scoreboard::split`] parts it into a [`Fold`] and a
//!   [`Publisher`], to fold one batch while the last is merged into a snapshot on another thread.
//! - [`Snapshot`]: an immutable view at one sequence number, with sorted, paged queries; it
//!   writes its checkpoint ([`Snapshot::write_checkpoint`]), and
//!   [`Scoreboard::decode_checkpoint`] resumes the fold from one in a pass over its bytes.
//! - [`wire`]: a snapshot's answers to the four queries as the JSON the API sends, and the
//!   text of their parameters.
//!
//! # Example
//!
//! ```
//! use scores_core::{decode, Decoded, ExamId, Page, Scoreboard};
//!
//! let feed = [
//!     r#"{"studentId":"Marvin32","exam":11295,"score":0.64}"#,
//!     r#"{"studentId":"Susana_Langworth","exam":11295,"score":0.9}"#,
//!     r#"{"studentId":"Marvin32","exam":11295,"score":0.7}"#, // a regrade
//! ];
//! let mut board = Scoreboard::new();
//! for data in feed {
//!     if let Decoded::Event(event) = decode("score", data)? {
//!         board.apply(&event);
//!     }
//! }
//! let snapshot = board.snapshot();
//! assert_eq!(snapshot.seq(), 3);
//! assert_eq!(snapshot.students(Page::ALL).collect::<Vec<_>>(), ["Marvin32", "Susana_Langworth"]);
//! let exam = snapshot.exam(ExamId(11295)).expect("the exam has results");
//! assert_eq!(exam.n_results(), 2);
//! assert!((exam.average - 0.8).abs() < 1e-15);
//! assert_eq!(snapshot.student("Marvin32").expect("known").average, 0.7);
//! # Ok::<(), scores_core::DecodeError>(())
//! ```

mod checkpoint;
mod chunked;
mod decode;
mod event;
mod id_index;
mod prefetch;
mod results;
mod running_sum;
mod scoreboard;
mod snapshot;
pub mod wire;

pub use crate::checkpoint::CheckpointError;
pub use crate::decode::{
    DecodeError, Decoded, Field, JsonKind, JsonNumber, LENIENT_MAX_LEN, LENIENT_MAX_NESTING,
    MAX_DEPTH, SCORE_EVENT_TYPES, decode,
};
pub use crate::event::{
    ExamId, InvalidEvent, InvalidScore, InvalidStudentId, Score, ScoreEvent, StudentId,
};
pub use crate::scoreboard::{
    Applied, Changes, Fold, Publisher, Resolved, Scoreboard, StudentResolver,
};
pub use crate::snapshot::{ExamReport, Listing, Page, Snapshot, StudentReport};
