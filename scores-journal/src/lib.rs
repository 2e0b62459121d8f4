//! The durable, ordered event log of `scores`: every accepted event, numbered 1, 2, 3 … in the
//! order it was accepted. The log is the source of truth; projections are rebuilt from it.
//!
//! - [`Journal`]: the single writer. [`Journal::open`] recovers (cutting off a torn tail, the
//!   trace of a crash mid-append), [`Journal::append`] writes a batch of [`Entry`]s with one
//!   write and, under [`FsyncPolicy::Always`], one `fdatasync` (group commit).
//! - [`Reader`]: records from any sequence number, verified against their checksums;
//!   [`ReadHandle`] gives readers on other tasks the journal's progress and waits for appends.
//! - [`save_checkpoint`] / [`load_checkpoint`]: a projection snapshot stored atomically, so a
//!   restart folds only the records after it.
//!
//! # On disk
//!
//! A data directory holds segment files named by their first sequence number
//! (`00000000000000000001.seg`), each starting a new one past [`Options::segment_bytes`]:
//!
//! ```text
//! segment := "SCORESJ1" first_seq:u64 batch*
//! batch   := magic:u32 ("SJB1") records_len:u32 records_crc:u32 header_crc:u32 record*
//! record  := len:u32 crc:u32 payload              crc: CRC-32C of payload
//! payload := seq:u64 exam:u64 score:f64(bits) student_len:u16 student:[u8] id_len:u32 id:[u8]
//! ```
//!
//! Integers are little-endian. `header_crc` is the CRC-32C of the batch header's first 12 bytes,
//! `records_crc` of all its records. One append is one batch, written whole before the next
//! begins, so a crash can tear only the last batch, and a torn batch fails its checksums.
//!
//! # Recovery
//!
//! On open, the directory is locked (one writer at a time: [`JournalError::Locked`] names the
//! holder's pid), and the last segment is read whole and every batch verified. What follows the
//! last valid batch, with no valid batch after it, is one of two things:
//!
//! - a batch cut short (its header or its records run past the end of the file), or zeros
//!   (what a crash leaves where a write never reached the disk): a torn tail, an append that
//!   never returned. It is cut off, and reported in [`Recovery::torn_tail`] with a warning.
//! - anything else, such as a whole batch that fails its checksum: damage, perhaps to a batch
//!   that was acknowledged. Its bytes are written to `SEGMENT.damaged-at-OFFSET` beside the
//!   segment and synced, then the segment is cut there, and [`Recovery::quarantined`] and an
//!   error in the log say so: nothing is dropped silently, and the service goes on.
//!
//! A bad batch *followed* by a valid one is damage inside the log: [`JournalError::Corrupt`]
//! names the segment and offset, and the journal does not open. Earlier segments are verified
//! whenever they are read. A missing or empty directory starts a new log; a last segment
//! shorter than its header is re-created.
//!
//! # What each fsync policy can lose
//!
//! | policy | process crash (SIGKILL) | OS crash or power loss |
//! | --- | --- | --- |
//! | [`FsyncPolicy::Always`] | nothing acknowledged | nothing acknowledged |
//! | [`FsyncPolicy::Interval`] | nothing acknowledged | up to one interval of acknowledged batches |
//! | [`FsyncPolicy::Never`] | nothing acknowledged | whatever the OS had not written back |
//!
//! # Example
//!
//! ```
//! use scores_core::ScoreEvent;
//! use scores_journal::{Entry, Journal, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let event = ScoreEvent::new("Marvin32", 11295, 0.64)?;
//! let (mut journal, recovery) = Journal::open(dir.path(), Options::default())?;
//! assert_eq!(recovery.last_seq, 0);
//! let last_seq = journal.append(&[Entry { event: event.clone(), upstream_id: "17".into() }])?;
//! assert_eq!(last_seq, 1);
//! drop(journal);
//!
//! let (journal, _) = Journal::open(dir.path(), Options::default())?;
//! assert_eq!(journal.last_upstream_id(), "17");
//! let records: Vec<_> = journal.read_from(1).collect::<Result<_, _>>()?;
//! assert_eq!(records[0].event, event);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint_file;
mod data_dir;
mod error;
mod format;
mod journal;
mod reader;
mod verify;

pub use crate::checkpoint_file::{load_checkpoint, save_checkpoint};
pub use crate::data_dir::{DataDir, SegmentFile, segment_files};
pub use crate::error::{CheckpointProblem, JournalError};
pub use crate::format::{Corruption, Entry, Record, SEGMENT_MAGIC, batch};
pub use crate::journal::{
    FsyncPolicy, Journal, Options, Quarantined, Recovery, SegmentScan, Tail, TornTail, scan_segment,
};
pub use crate::reader::{Closed, ReadHandle, Reader};
pub use crate::verify::verify_sealed_segments;
