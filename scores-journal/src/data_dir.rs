//! Where things are: a service's data directory, and the segment files of a journal directory.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::JournalError;

/// A service's data directory: its journal in `journal/`, its projection checkpoint in
/// `checkpoint`, and, for a replica of a shared log with an upstream, its standby spool in
/// `standby/`. The one place that layout is written down; the service and `scores replay`
/// both go through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is created or read yet).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The journal's directory, for [`Journal::open`](crate::Journal::open).
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// The checkpoint file, for [`save_checkpoint`](crate::save_checkpoint) and
    /// [`load_checkpoint`](crate::load_checkpoint).
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join("checkpoint")
    }

    /// A replica's standby spool: what it heard from the upstream, in the journal format.
    pub fn standby_dir(&self) -> PathBuf {
        self.root.join("standby")
    }

    /// The journal directory `dir` names: the journal of a data directory, or `dir` itself when
    /// it has no `journal/` (it is a journal directory).
    pub fn journal_dir_of(dir: &Path) -> PathBuf {
        let journal = DataDir::new(dir).journal_dir();
        if journal.is_dir() { journal } else { dir.to_path_buf() }
    }
}

/// One segment file of a journal directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// The sequence number its name says it starts at.
    pub first_seq: u64,
    /// Its path.
    pub path: PathBuf,
    /// Its length in bytes when listed.
    pub len: u64,
}

/// The segment files (`<first_seq>.seg`) of journal directory `dir`, in order; other files
/// are not segments and are left out.
pub fn segment_files(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let listing = |e| JournalError::io("listing journal directory", dir, e);
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name();
        let first_seq =
            name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|s| s.parse().ok());
        if let Some(first_seq) = first_seq {
            let len = entry.metadata().map_err(listing)?.len();
            segments.push(SegmentFile { first_seq, path: entry.path(), len });
        }
    }
    segments.sort_unstable_by_key(|segment| segment.first_seq);
    Ok(segments)
}
