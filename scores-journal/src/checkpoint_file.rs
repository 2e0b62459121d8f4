//! Projection checkpoints on disk: a snapshot's bytes with a checksum, replaced atomically.
//!
//! ```text
//! checkpoint := "SCORESK1" len:u64 crc:u32 bytes      (crc = CRC-32C of bytes)
//! ```
//!
//! Written to a temporary file as the snapshot is encoded (the header, whose length and
//! checksum are known only at the end, last), synced, renamed over the old one, and the
//! directory synced, so a crash leaves either the old checkpoint or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek as _, SeekFrom, Write};
use std::path::Path;

use scores_core::{Scoreboard, Snapshot};

use crate::error::{CheckpointProblem, JournalError};
use crate::journal::sync_dir;

const MAGIC: &[u8; 8] = b"SCORESK1";
const HEADER_LEN: usize = 20;

/// Stores `snapshot` at `path`, atomically and durably.
pub fn save_checkpoint(path: &Path, snapshot: &Snapshot) -> Result<(), JournalError> {
    let temporary = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
        file.write_all(&[0; HEADER_LEN])?;
        let mut body = Checksummed { out: &mut file, len: 0, crc: 0 };
        snapshot.write_checkpoint(&mut body)?;
        let (len, crc) = (body.len, body.crc);
        let mut file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(len, crc))?;
        file.sync_all()
    };
    write().map_err(|e| JournalError::io("writing checkpoint", &temporary, e))?;
    fs::rename(&temporary, path)
        .map_err(|e| JournalError::io("renaming checkpoint into place", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Loads the checkpoint at `path` as a board that goes on folding from it; `Ok(None)` when
/// there is none.
pub fn load_checkpoint(path: &Path) -> Result<Option<Scoreboard>, JournalError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(JournalError::io("reading checkpoint", path, error)),
    };
    let problem = |reason| JournalError::Checkpoint { path: path.to_path_buf(), reason };
    let (header_bytes, body) =
        bytes.split_at_checked(HEADER_LEN).ok_or(problem(CheckpointProblem::Checksum))?;
    if header_bytes != header(body.len() as u64, crc32c::crc32c(body)) {
        return Err(problem(CheckpointProblem::Checksum));
    }
    Scoreboard::decode_checkpoint(body).map(Some).map_err(|e| problem(CheckpointProblem::Decode(e)))
}

fn header(len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&len.to_le_bytes());
    header[16..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Passes bytes on to `out`, counting them and checksumming them as they go.
struct Checksummed<W> {
    out: W,
    len: u64,
    crc: u32,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.out.write(bytes)?;
        self.len += n as u64;
        self.crc = crc32c::crc32c_append(self.crc, &bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
