//! Why the pipeline could not start or stopped: [`PipelineError`].

use scores_journal::JournalError;

use crate::log::LogError;

/// Why the pipeline could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The log could not be opened, read or appended to.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The feed's HTTP client could not be built.
    #[error(transparent)]
    Feed(#[from] scores_sse::BuildError),
    /// A thread could not be started.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A task or thread of the pipeline panicked: a bug, reported rather than hidden.
    #[error("the {0} panicked")]
    Panicked(&'static str),
    /// Records reached the fold out of order: a gap or an overlap in what the log handed over.
    #[error("the log handed over record {found} where {expected} was due")]
    OutOfOrder {
        /// The sequence number due.
        expected: u64,
        /// The one that came.
        found: u64,
    },
    /// Asked to stop while the log refused appends. Nothing visible was lost: the events not
    /// yet stored were never acknowledged, and the next start asks the upstream for them
    /// again, after the last event id the log holds.
    #[error(
        "stopped while the log refused appends ({0}); the events received since the last \
         stored one were not kept, and the next start asks the upstream for them again"
    )]
    StoppedWhileRefused(LogError),
}

impl From<JournalError> for PipelineError {
    fn from(error: JournalError) -> PipelineError {
        PipelineError::Log(error.into())
    }
}
