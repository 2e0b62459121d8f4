//! The log the pipeline appends to and folds: an abstraction with the file journal as its
//! embedded implementation.
//!
//! A log holds [`Entry`]s in order, numbered 1, 2, 3 … as they are appended; an append returns
//! once its entries are durable, with the number of the last. The writer side is [`Log`], one
//! per process; the read side is [`LogRead`], shared by every reader (the `GET /scores`
//! re-broadcast), which follows the log's durable end and reads from any number through a
//! [`Cursor`].

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use scores_journal::{Journal, JournalError, ReadHandle, Reader};

pub use scores_journal::{Entry, Record};

/// Why a log could not append or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// NATS could not be reached, or did not answer in time: worth retrying.
    #[error("NATS: {0}")]
    Nats(String),
    /// The stream does not exist (it was deleted, say).
    #[error("the stream {0} does not exist")]
    StreamMissing(String),
    /// Another ingester published after this one's last message: this one no longer holds
    /// the lease, and must not append.
    #[error(
        "fenced: the stream moved past message {expected}, this ingester's last; another took over"
    )]
    Fenced {
        /// The stream sequence this ingester expected to follow.
        expected: u64,
    },
    /// The stream ends before what this replica has folded: it was deleted or replaced since.
    #[error(
        "the stream holds events up to {stream_end}, fewer than the {folded} this replica has \
         folded: it was deleted or replaced; not ingesting into it"
    )]
    Diverged {
        /// The stream's last event.
        stream_end: u64,
        /// The last event this replica folded.
        folded: u64,
    },
    /// A message of the stream is not what scores writes.
    #[error("message {message} of the stream: {reason}")]
    Corrupt {
        /// Its stream sequence.
        message: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl LogError {
    /// Whether the log's stored bytes are damaged (a checksum, a gap, a torn batch where none
    /// can be, a message scores did not write): reading there again fails again, where other
    /// errors (NATS away) pass.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            LogError::Journal(
                JournalError::Corrupt { .. }
                    | JournalError::TornTail { .. }
                    | JournalError::Gap { .. }
            ) | LogError::Corrupt { .. }
        )
    }

    /// Whether the log can take no more appends from this writer: retrying would risk the log
    /// itself (a failed write that could not be undone, a deposed ingester), so it stops.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            LogError::Journal(JournalError::Poisoned)
                | LogError::Fenced { .. }
                | LogError::Corrupt { .. }
        )
    }
}

/// The log was closed: no more records will come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the log is closed")]
pub struct Closed;

/// The writer's side of a log: appends, and what a restart needs.
pub trait Log: Send + 'static {
    /// The sequence number the next appended entry gets (1 for an empty log).
    fn next_seq(&self) -> u64;

    /// The upstream id of the last entry appended ("" when there is none): where the feed
    /// resumes.
    fn last_upstream_id(&self) -> &str;

    /// Appends `entries` in order, durably (as the log's policy defines it), and returns the
    /// sequence number of the last. After an error nothing of `entries` is in the log.
    fn append(&mut self, entries: &[Entry]) -> Result<u64, LogError>;

    /// Makes every appended entry durable, whatever the policy.
    fn sync(&mut self) -> Result<(), LogError>;

    /// How many times the log has been synced to stable storage.
    fn n_syncs(&self) -> u64;

    /// The records from `from` to the last appended, in order, each verified: for restoring.
    fn read_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_>;

    /// The read side, for readers on other threads and tasks.
    fn reader(&self) -> Arc<dyn LogRead>;
}

/// The read side of a log, shared by every reader.
pub trait LogRead: Send + Sync + Debug {
    /// The sequence number of the last durable record (0 for an empty log).
    fn last_seq(&self) -> u64;

    /// Completes once a record after `seq` is durable, with the new last sequence number.
    fn wait_beyond(&self, seq: u64) -> BoxFuture<'static, Result<u64, Closed>>;

    /// A cursor that reads from `from` on.
    fn cursor(&self, from: u64) -> Box<dyn Cursor>;
}

/// Reads a log in order from where it stands, each record once, up to the durable end at each
/// read. Reads block: call them where blocking is allowed.
pub trait Cursor: Send {
    /// Up to `max` records after the last one read; none when the cursor is at the durable end.
    /// After an error the cursor reads nothing more.
    fn read(&mut self, max: usize) -> Result<Vec<Record>, LogError>;
}

impl Log for Journal {
    fn next_seq(&self) -> u64 {
        Journal::next_seq(self)
    }

    fn last_upstream_id(&self) -> &str {
        Journal::last_upstream_id(self)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<u64, LogError> {
        Ok(Journal::append(self, entries)?)
    }

    fn sync(&mut self) -> Result<(), LogError> {
        Ok(Journal::sync(self)?)
    }

    fn n_syncs(&self) -> u64 {
        Journal::n_syncs(self)
    }

    fn read_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_> {
        Box::new(Journal::read_from(self, from).map(|record| Ok(record?)))
    }

    fn reader(&self) -> Arc<dyn LogRead> {
        Arc::new(self.read_handle())
    }
}

impl LogRead for ReadHandle {
    fn last_seq(&self) -> u64 {
        ReadHandle::last_seq(self)
    }

    fn wait_beyond(&self, seq: u64) -> BoxFuture<'static, Result<u64, Closed>> {
        let mut handle = self.clone();
        Box::pin(async move { ReadHandle::wait_beyond(&mut handle, seq).await.map_err(|_| Closed) })
    }

    fn cursor(&self, from: u64) -> Box<dyn Cursor> {
        Box::new(JournalCursor {
            handle: self.clone(),
            from,
            reader: None,
            failed: false,
            damage: None,
        })
    }
}

/// A journal [`Reader`] kept from one read to the next and extended to the durable end: the
/// segment is read once, where a new reader per read would read it again from its start.
struct JournalCursor {
    handle: ReadHandle,
    from: u64,
    reader: Option<Reader>,
    failed: bool,
    /// Damage met after records that were returned: the next read's error.
    damage: Option<JournalError>,
}

impl Cursor for JournalCursor {
    fn read(&mut self, max: usize) -> Result<Vec<Record>, LogError> {
        if let Some(damage) = self.damage.take() {
            return Err(damage.into());
        }
        if self.failed {
            return Ok(Vec::new());
        }
        self.failed = true;
        let mut reader = match self.reader.take() {
            Some(mut reader) => {
                self.handle.extend(&mut reader)?;
                reader
            }
            None => self.handle.read_from(self.from),
        };
        // The records before damage are returned first; the damage is the next read's error.
        let mut records = Vec::new();
        for record in reader.by_ref().take(max) {
            match record {
                Ok(record) => records.push(record),
                Err(error) if records.is_empty() => return Err(error.into()),
                Err(error) => {
                    self.damage = Some(error);
                    return Ok(records);
                }
            }
        }
        self.reader = Some(reader);
        self.failed = false;
        Ok(records)
    }
}
