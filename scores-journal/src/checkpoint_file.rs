//! Projection checkpoints on disk: a snapshot's bytes with a checksum, replaced atomically.
//!
//! ```text
//! checkpoint := "SCORESK1" len:u64 crc:u32 bytes      (crc = CRC-32C of bytes)
//! ```
//!
//! Written to a temporary file, synced, renamed over the old one, and the directory synced, so a
//! crash leaves either the old checkpoint or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;

use scores_core::Snapshot;

use crate::error::{CheckpointProblem, JournalError};
use crate::journal::sync_dir;

const MAGIC: &[u8; 8] = b"SCORESK1";
const HEADER_LEN: usize = 20;

/// Stores `snapshot` at `path`, atomically and durably.
pub fn save_checkpoint(path: &Path, snapshot: &Snapshot) -> Result<(), JournalError> {
    let bytes = snapshot.encode_checkpoint();
    let temporary = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&temporary)?;
        file.write_all(MAGIC)?;
        file.write_all(&(bytes.len() as u64).to_le_bytes())?;
        file.write_all(&crc32c::crc32c(&bytes).to_le_bytes())?;
        file.write_all(&bytes)?;
        file.sync_all()
    };
    write().map_err(|e| JournalError::io("writing checkpoint", &temporary, e))?;
    fs::rename(&temporary, path)
        .map_err(|e| JournalError::io("renaming checkpoint into place", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Loads the checkpoint at `path`; `Ok(None)` when there is none.
pub fn load_checkpoint(path: &Path) -> Result<Option<Snapshot>, JournalError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(JournalError::io("reading checkpoint", path, error)),
    };
    let problem = |reason| JournalError::Checkpoint { path: path.to_path_buf(), reason };
    let (header, body) =
        bytes.split_at_checked(HEADER_LEN).ok_or(problem(CheckpointProblem::Checksum))?;
    let mut len = [0; 8];
    len.copy_from_slice(&header[8..16]);
    let mut crc = [0; 4];
    crc.copy_from_slice(&header[16..20]);
    if &header[..8] != MAGIC
        || u64::from_le_bytes(len) != body.len() as u64
        || u32::from_le_bytes(crc) != crc32c::crc32c(body)
    {
        return Err(problem(CheckpointProblem::Checksum));
    }
    Snapshot::decode_checkpoint(body).map(Some).map_err(|e| problem(CheckpointProblem::Decode(e)))
}
