//! The ingest pipeline of `scores`: feed → log → fold → publish → checkpoint, behind a read
//! handle that the frontends (`scores-http`, `scores-cli`) serve from.
//!
//! - [`start`] opens the log, restores the projections from the last checkpoint and the log's
//!   tail, and reads the upstream feed into the log until asked to stop; [`Running`] completes
//!   when it has stopped.
//! - [`Pipeline`]: the read handle. The published [`Snapshot`](scores_core::Snapshot), whether
//!   it is ready and why not, the [`Counters`], and the log's read side.
//! - [`log`]: the log abstraction, [`Log`] for the writer and [`LogRead`] for readers, with the
//!   file journal (`scores-journal`) as its embedded implementation.
//!
//! An event becomes visible only once the log holds it durably; a snapshot is the fold of the
//! log up to its sequence number, and every answer drawn from one reflects that number.

mod align;
mod checkpointer;
mod config;
mod counters;
mod error;
mod fold;
mod handle;
mod ingest;
mod jetstream;
mod lease;
pub mod log;
mod nats;
mod replica;
mod run;
mod standby;
mod supervise;

pub use crate::config::PipelineConfig;
pub use crate::counters::Counters;
pub use crate::error::PipelineError;
pub use crate::fold::MIN_PUBLISH_INTERVAL;
pub use crate::handle::{Pipeline, Role};
pub use crate::jetstream::{JetStreamConfig, JetStreamLog, open_reader};
pub use crate::log::{Cursor, Log, LogError, LogRead};
pub use crate::nats::{NatsAuth, NatsTls};
pub use crate::run::start;
pub use crate::standby::StandbyLimits;
pub use crate::supervise::Running;
pub use scores_journal::{FsyncPolicy, Options as JournalOptions};
pub use scores_sse::FeedConfig;
