//! `JournalError`: everything that can go wrong, with the file and offset it concerns.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scores_core::CheckpointError;

use crate::format::Corruption;

/// A journal operation failed. Corruption is reported with its segment and byte offset and is
/// never skipped silently.
#[derive(Clone, Debug, thiserror::Error)]
pub enum JournalError {
    /// The operating system refused an operation.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// Stored bytes fail their checks: bit rot, a foreign file, or a damaged disk.
    #[error("journal segment {} is corrupt at byte {offset}: {corruption}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Where in it.
        offset: u64,
        /// What is wrong.
        corruption: Corruption,
    },
    /// A segment ends in the middle of a batch. Opening the journal cuts such a tail off; a
    /// reader of files that were not opened as a journal (say, a copy) reports it.
    #[error("journal segment {} ends inside a batch at byte {offset}", segment.display())]
    TornTail {
        /// The segment file.
        segment: PathBuf,
        /// Where the incomplete batch starts.
        offset: u64,
    },
    /// Consecutive segments do not continue each other's sequence numbers.
    #[error("journal segment {} starts at sequence number {found}, but {expected} was due", segment.display())]
    Gap {
        /// The segment that does not follow on.
        segment: PathBuf,
        /// The number due.
        expected: u64,
        /// The number it starts with.
        found: u64,
    },
    /// Another journal (in this process or another) has the directory open for writing.
    #[error(
        "journal {} is in use by another process{}; stop it first, or give this one another data directory",
        dir.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The journal directory.
        dir: PathBuf,
        /// The process id the holder wrote into the lock file, when it could be read.
        holder: Option<u32>,
    },
    /// An earlier append failed and could not be undone; appending more could corrupt the log.
    #[error(
        "the journal failed an earlier write that could not be undone; it accepts no more appends"
    )]
    Poisoned,
    /// A checkpoint file fails its checksum or does not decode.
    #[error("checkpoint {} is unusable: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        reason: CheckpointProblem,
    },
}

/// Why a checkpoint file is unusable.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CheckpointProblem {
    /// The file's header or checksum is wrong.
    #[error("bad header or checksum")]
    Checksum,
    /// The bytes pass the checksum but do not decode.
    #[error("{0}")]
    Decode(CheckpointError),
}

impl JournalError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> JournalError {
        JournalError::Io { action, path: path.to_path_buf(), source: Arc::new(source) }
    }
}
