//! The writer: opening (with torn-tail recovery), group-committed appends, segment rotation.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::data_dir::segment_files;
use crate::error::JournalError;
use crate::format::{
    self, Corruption, Entry, SEGMENT_HEADER_LEN, decode_records, encode_batch, find_batch_header,
    parse_batch_header, parse_segment_header, segment_header,
};
use crate::reader::{ReadHandle, Reader, segment_path};

/// When appended batches are forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` after every batch, before `append` returns. Loses nothing that `append`
    /// acknowledged, even on power loss. The default.
    Always,
    /// `fdatasync` at most once per interval (at the first append after it elapses, and on
    /// [`Journal::sync`]). A process crash loses nothing (the bytes are in the OS page cache);
    /// an OS crash or power loss can lose up to one interval of acknowledged batches.
    Interval(Duration),
    /// Never `fdatasync`; the OS writes back when it likes. A process crash loses nothing; an OS
    /// crash or power loss can lose anything not yet written back. For tests and benchmarks.
    Never,
}

/// How a journal is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// When batches reach stable storage.
    pub fsync: FsyncPolicy,
    /// A new segment is started once the current one reaches this size.
    pub segment_bytes: u64,
}

impl Default for Options {
    /// `FsyncPolicy::Always` and 64 MiB segments.
    fn default() -> Options {
        Options { fsync: FsyncPolicy::Always, segment_bytes: 64 << 20 }
    }
}

/// What opening the journal found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The last segment ended in an incomplete or torn batch (a crash during an append that
    /// therefore never returned), which was cut off.
    pub torn_tail: Option<TornTail>,
    /// The last segment ended in bytes that are neither whole batches nor a batch cut short (a
    /// complete batch failing its checksum, say): kept aside in a file of their own before the
    /// segment was cut there, since they may have been acknowledged.
    pub quarantined: Option<Quarantined>,
    /// The sequence number of the last record (0 for an empty journal).
    pub last_seq: u64,
    /// How many segment files the journal has.
    pub n_segments: usize,
}

/// A torn tail cut off on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment it was in.
    pub segment: PathBuf,
    /// Where the segment now ends.
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
}

/// Damaged bytes at the end of the last segment, moved aside on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The segment they were at the end of.
    pub segment: PathBuf,
    /// Where in it they started (where the segment now ends).
    pub offset: u64,
    /// How many bytes.
    pub bytes: u64,
    /// The file that now holds them, beside the segment.
    pub file: PathBuf,
}

/// The file in a journal directory that one writer at a time holds locked.
const LOCK_FILE: &str = "lock";

/// The ordered, durable event log: one writer appends; any number of readers read.
///
/// Opening a directory that does not exist or is empty starts a new log. See the crate docs
/// for the file format and what each [`FsyncPolicy`] can lose.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    options: Options,
    segments: Arc<RwLock<Vec<u64>>>,
    file: File,
    segment_len: u64,
    /// Records in the active segment.
    n_segment_records: u64,
    next_seq: u64,
    last_upstream_id: Arc<str>,
    batch: Vec<u8>,
    last_sync: Instant,
    durable: watch::Sender<u64>,
    n_syncs: u64,
    /// A write failed part-way and could not be undone: appending more could corrupt the log.
    poisoned: bool,
    /// Held locked for the journal's life, so that no second writer opens the directory.
    _lock: File,
}

impl Journal {
    /// Opens the journal in `dir` (creating it if needed), cutting off a torn tail. The
    /// directory is locked (an OS file lock on `dir/lock`, released when the journal is dropped
    /// or the process ends): while one journal has it open, opening it again fails with
    /// [`JournalError::Locked`], in this process or another.
    pub fn open(
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(Journal, Recovery), JournalError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| JournalError::io("creating journal directory", &dir, e))?;
        let lock = lock_dir(&dir)?;
        let mut segments = list_segments(&dir)?;
        let mut recovery = Recovery::default();
        if segments.is_empty() {
            create_segment(&dir, 1)?;
            segments.push(1);
        }
        let last_first_seq = *segments.last().unwrap_or(&1);
        let path = segment_path(&dir, last_first_seq);
        let scan = recover_segment(&path, last_first_seq, &mut recovery)?;
        let (next_seq, last_upstream_id) = match scan.last_upstream_id {
            Some(id) => (scan.next_seq, id),
            // An empty last segment: the previous one (if any) holds the last record.
            None => (scan.next_seq, last_id_before(&dir, &segments, last_first_seq)?),
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| JournalError::io("opening journal segment", &path, e))?;
        recovery.last_seq = next_seq - 1;
        recovery.n_segments = segments.len();
        if let Some(torn) = &recovery.torn_tail {
            tracing::warn!(segment = %torn.segment.display(), offset = torn.offset, bytes = torn.bytes_dropped, "cut off a torn tail (an append interrupted by a crash)");
        }
        if let Some(kept) = &recovery.quarantined {
            tracing::error!(segment = %kept.segment.display(), offset = kept.offset, bytes = kept.bytes, file = %kept.file.display(), "the journal's last batch is damaged, not cut short: its bytes were moved aside and the log goes on without it; the events in it may have been acknowledged");
        }
        let journal = Journal {
            dir,
            options,
            segments: Arc::new(RwLock::new(segments)),
            file,
            segment_len: scan.len,
            n_segment_records: next_seq - last_first_seq,
            next_seq,
            last_upstream_id,
            batch: Vec::new(),
            last_sync: Instant::now(),
            durable: watch::Sender::new(next_seq - 1),
            n_syncs: 0,
            poisoned: false,
            _lock: lock,
        };
        Ok((journal, recovery))
    }

    /// Appends `entries` as one batch and returns the sequence number of the last one. Returns
    /// once the batch is durable as the [`FsyncPolicy`] defines it; readers see it from then on.
    pub fn append(&mut self, entries: &[Entry]) -> Result<u64, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let Some(last) = entries.last() else {
            return Ok(self.next_seq - 1);
        };
        self.batch.clear();
        encode_batch(entries, self.next_seq, &mut self.batch);
        let batch_len = self.batch.len() as u64;
        if self.n_segment_records > 0 && self.segment_len + batch_len > self.options.segment_bytes {
            self.rotate()?;
        }
        if let Err(error) = self.file.write_all(&self.batch) {
            self.undo_partial_write();
            return Err(JournalError::io(
                "appending to journal segment",
                &self.active_path(),
                error,
            ));
        }
        self.segment_len += batch_len;
        self.n_segment_records += entries.len() as u64;
        self.next_seq += entries.len() as u64;
        self.last_upstream_id = last.upstream_id.clone();
        let due = match self.options.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(interval) => self.last_sync.elapsed() >= interval,
            FsyncPolicy::Never => false,
        };
        if due {
            self.sync()?;
        }
        let last_seq = self.next_seq - 1;
        self.durable.send_replace(last_seq);
        Ok(last_seq)
    }

    /// Forces everything appended so far to stable storage (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file
            .sync_data()
            .map_err(|e| JournalError::io("syncing journal segment", &self.active_path(), e))?;
        self.last_sync = Instant::now();
        self.n_syncs += 1;
        Ok(())
    }

    /// How many times this journal has called `fdatasync` since it was opened.
    pub fn n_syncs(&self) -> u64 {
        self.n_syncs
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The upstream event id stored with the last record (empty for an empty journal): where the
    /// feed resumes.
    pub fn last_upstream_id(&self) -> &str {
        &self.last_upstream_id
    }

    /// The sequence number of the first record the journal still holds (its first segment's
    /// first), or [`next_seq`](Self::next_seq) when it holds none.
    pub fn first_seq(&self) -> u64 {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        segments.first().copied().unwrap_or(self.next_seq)
    }

    /// Deletes the segments whose records all come before `seq`, for a journal kept as a
    /// window rather than a whole log (a replica's spool). With `seq` past the last record the
    /// active segment is sealed first, so that everything goes. Records from a segment's start
    /// up to `seq` stay until the whole segment can go. Readers open on a deleted segment read
    /// on from their open file.
    pub fn discard_before(&mut self, seq: u64) -> Result<(), JournalError> {
        if seq >= self.next_seq && self.n_segment_records > 0 {
            self.rotate()?;
        }
        let mut segments = self.segments.write().unwrap_or_else(PoisonError::into_inner);
        // A segment can go when the next one starts at or before `seq`; the last never does.
        let n_gone = segments.windows(2).take_while(|pair| pair[1] <= seq).count();
        if n_gone == 0 {
            return Ok(());
        }
        let gone: Vec<u64> = segments.drain(..n_gone).collect();
        drop(segments);
        for first_seq in gone {
            let path = segment_path(&self.dir, first_seq);
            fs::remove_file(&path)
                .map_err(|e| JournalError::io("deleting journal segment", &path, e))?;
        }
        Ok(())
    }

    /// A cheap, cloneable handle for reading from other threads and for waiting on appends.
    pub fn read_handle(&self) -> ReadHandle {
        ReadHandle::new(self.dir.clone(), self.segments.clone(), self.durable.subscribe())
    }

    /// Reads the records from `from_seq` up to the last one appended.
    pub fn read_from(&self, from_seq: u64) -> Reader {
        self.read_handle().read_from(from_seq)
    }

    fn active_path(&self) -> PathBuf {
        let first_seq = self.next_seq - self.n_segment_records;
        segment_path(&self.dir, first_seq)
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let path = create_segment(&self.dir, self.next_seq)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| JournalError::io("opening journal segment", &path, e))?;
        self.segment_len = SEGMENT_HEADER_LEN as u64;
        self.n_segment_records = 0;
        if let Ok(mut segments) = self.segments.write() {
            segments.push(self.next_seq);
        }
        Ok(())
    }

    /// After a failed write, cuts the segment back to its last whole batch, or refuses further
    /// appends if even that fails.
    fn undo_partial_write(&mut self) {
        if self.file.set_len(self.segment_len).and_then(|()| self.file.sync_data()).is_err() {
            tracing::error!(segment = %self.active_path().display(), "a failed append could not be undone; the journal accepts no more appends");
            self.poisoned = true;
        }
    }
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    Ok(segment_files(dir)?.into_iter().map(|segment| segment.first_seq).collect())
}

/// Creates a segment file holding only its header, durably (file and directory synced).
fn create_segment(dir: &Path, first_seq: u64) -> Result<PathBuf, JournalError> {
    let path = segment_path(dir, first_seq);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| JournalError::io("creating journal segment", &path, e))?;
    file.write_all(&segment_header(first_seq))
        .and_then(|()| file.sync_all())
        .map_err(|e| JournalError::io("writing journal segment header", &path, e))?;
    sync_dir(dir)?;
    Ok(path)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io("syncing directory", dir, e))
}

/// What a last segment holds, as [`scan_segment`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// The sequence number after the segment's last valid record.
    pub next_seq: u64,
    /// The upstream id of the segment's last valid record; `None` when it has none.
    pub last_upstream_id: Option<Arc<str>>,
    /// Where the valid batches end: the segment's length once its tail is cut off.
    pub len: u64,
    /// What follows them, when anything does.
    pub tail: Option<Tail>,
}

/// What follows the last valid batch of a last segment, with no valid batch after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// A batch cut short, or zeros (what a crash leaves where a write did not reach the disk):
    /// an append that never returned. Cut off.
    Torn,
    /// Anything else: a whole batch that fails its checksum, a header that is not one. Bit rot
    /// or a foreign write, perhaps of something acknowledged: kept aside, then cut off.
    Damaged,
}

impl Tail {
    /// What `bytes` (from a position no whole batch starts at, to the end) are, by their look.
    fn of(bytes: &[u8]) -> Tail {
        if bytes.iter().all(|&b| b == 0) { Tail::Torn } else { Tail::Damaged }
    }
}

/// Verifies every batch of a last segment held in `bytes` (header included) and finds where
/// its valid batches end and what follows them, as [`Journal::open`] does before it repairs
/// anything, without touching a file. `Err` holds the offset and the damage when the header is
/// wrong or a bad batch is followed by a valid one (the log itself is damaged, not its tail).
pub fn scan_segment(bytes: &[u8]) -> Result<SegmentScan, (u64, Corruption)> {
    let corrupt = |offset: usize, corruption| (offset as u64, corruption);
    let first_seq = parse_segment_header(bytes).map_err(|c| corrupt(0, c))?;
    let mut offset = SEGMENT_HEADER_LEN;
    let mut next_seq = first_seq;
    let mut last_upstream_id = None;
    let tail = loop {
        if offset == bytes.len() {
            break None;
        }
        if bytes.len() - offset < format::BATCH_HEADER_LEN {
            break Some(Tail::Torn);
        }
        let header = match parse_batch_header(&bytes[offset..]) {
            Ok(header) => header,
            Err(corruption) => {
                // At the tail only if nothing valid follows; otherwise the log is damaged.
                if find_batch_header(bytes, offset + 1).is_some() {
                    return Err(corrupt(offset, corruption));
                }
                break Some(Tail::of(&bytes[offset..]));
            }
        };
        let records_at = offset + format::BATCH_HEADER_LEN;
        let Some(records) = bytes.get(records_at..records_at + header.records_len) else {
            // The batch's header is whole but its records run past the end: cut short.
            break Some(Tail::Torn);
        };
        if let Err(corruption) = header.verify(records) {
            if find_batch_header(bytes, records_at + header.records_len).is_some() {
                return Err(corrupt(offset, corruption));
            }
            // Whole, yet failing its checksum: an append that returned may have written it.
            break Some(Tail::of(&bytes[offset..]));
        }
        next_seq = decode_records(records, next_seq, |record| {
            last_upstream_id = Some(record.upstream_id);
        })
        .map_err(|(at, corruption)| corrupt(records_at + at, corruption))?;
        offset = records_at + header.records_len;
    };
    Ok(SegmentScan { next_seq, last_upstream_id, len: offset as u64, tail })
}

/// Reads the last segment whole, verifies every batch, and cuts off its tail: a torn one as it
/// is, a damaged one after writing it to a file beside the segment.
fn recover_segment(
    path: &Path,
    first_seq: u64,
    recovery: &mut Recovery,
) -> Result<SegmentScan, JournalError> {
    let bytes = fs::read(path).map_err(|e| JournalError::io("reading journal segment", path, e))?;
    if bytes.len() < SEGMENT_HEADER_LEN {
        // Created, then interrupted before its header was whole: nothing was ever stored in it.
        let dir = path.parent().unwrap_or(Path::new("."));
        create_segment(dir, first_seq)?;
        recovery.torn_tail = Some(TornTail {
            segment: path.to_path_buf(),
            offset: 0,
            bytes_dropped: bytes.len() as u64,
        });
        return Ok(SegmentScan {
            next_seq: first_seq,
            last_upstream_id: None,
            len: SEGMENT_HEADER_LEN as u64,
            tail: None,
        });
    }
    let corrupt = |offset, corruption| JournalError::Corrupt {
        segment: path.to_path_buf(),
        offset,
        corruption,
    };
    // The header must name the number the file is named by.
    if parse_segment_header(&bytes) != Ok(first_seq) {
        return Err(corrupt(0, Corruption::SegmentHeader));
    }
    let scan = scan_segment(&bytes).map_err(|(offset, corruption)| corrupt(offset, corruption))?;
    let Some(tail) = scan.tail else { return Ok(scan) };
    let (offset, n_bytes) = (scan.len, bytes.len() as u64 - scan.len);
    match tail {
        Tail::Torn => {
            let segment = path.to_path_buf();
            recovery.torn_tail = Some(TornTail { segment, offset, bytes_dropped: n_bytes });
        }
        Tail::Damaged => {
            let file = quarantine(path, offset, &bytes[offset as usize..])?;
            let segment = path.to_path_buf();
            recovery.quarantined = Some(Quarantined { segment, offset, bytes: n_bytes, file });
        }
    }
    let file = OpenOptions::new().write(true).open(path);
    file.and_then(|f| f.set_len(offset).and_then(|()| f.sync_all()))
        .map_err(|e| JournalError::io("cutting off the tail of", path, e))?;
    Ok(scan)
}

/// Writes `bytes`, found at `offset` of `segment`, to a file beside it, synced before the
/// segment is cut; returns the file's path.
fn quarantine(segment: &Path, offset: u64, bytes: &[u8]) -> Result<PathBuf, JournalError> {
    let mut name = segment.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-at-{offset}"));
    let path = segment.with_file_name(name);
    let written = File::create(&path).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written.map_err(|e| JournalError::io("keeping damaged bytes aside in", &path, e))?;
    if let Some(dir) = segment.parent() {
        sync_dir(dir)?;
    }
    Ok(path)
}

/// Takes the journal directory's lock, writing this process's id into the lock file for the
/// next one to name.
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| JournalError::io("opening the journal's lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().parse().ok();
            return Err(JournalError::Locked { dir: dir.to_path_buf(), holder });
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(JournalError::io("locking the journal directory", dir, e));
        }
    }
    let written = file.set_len(0).and_then(|()| {
        file.seek(io::SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())
    });
    written.map_err(|e| JournalError::io("writing the journal's lock file", &path, e))?;
    Ok(file)
}

/// The upstream id of the last record before segment `first_seq`, or empty when there is none.
fn last_id_before(dir: &Path, segments: &[u64], first_seq: u64) -> Result<Arc<str>, JournalError> {
    let Some(&previous) = segments.iter().rev().find(|&&s| s < first_seq) else {
        return Ok(Arc::from(""));
    };
    let reader = Reader::over(dir.to_path_buf(), vec![previous], previous, Some(first_seq - 1));
    let mut last = Arc::from("");
    for record in reader {
        last = record?.upstream_id;
    }
    Ok(last)
}
