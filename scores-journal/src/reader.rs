//! Reading records back: from any sequence number, across segments, verifying as it goes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::data_dir::segment_files;
use crate::error::JournalError;
use crate::format::{
    BATCH_HEADER_LEN, Corruption, Record, SEGMENT_HEADER_LEN, decode_record, parse_batch_header,
    parse_segment_header, read_records,
};

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// A cloneable handle on a journal for readers on other threads or tasks: reads what has been
/// appended and waits for more.
#[derive(Clone, Debug)]
pub struct ReadHandle {
    dir: PathBuf,
    segments: Arc<RwLock<Vec<u64>>>,
    durable: watch::Receiver<u64>,
}

/// The journal was dropped: no more records will come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the journal is closed")]
pub struct Closed;

impl ReadHandle {
    pub(crate) fn new(
        dir: PathBuf,
        segments: Arc<RwLock<Vec<u64>>>,
        durable: watch::Receiver<u64>,
    ) -> ReadHandle {
        ReadHandle { dir, segments, durable }
    }

    /// The sequence number of the last record appended (and durable, per the fsync policy).
    pub fn last_seq(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Waits until a record after `seq` has been appended; returns the new last sequence number.
    pub async fn wait_beyond(&mut self, seq: u64) -> Result<u64, Closed> {
        let last = self.durable.wait_for(|&last| last > seq).await.map_err(|_| Closed)?;
        Ok(*last)
    }

    /// Reads the records from `from_seq` to the last one appended now.
    pub fn read_from(&self, from_seq: u64) -> Reader {
        let end = self.last_seq();
        Reader::over(self.dir.clone(), self.segments(), from_seq.max(1), Some(end))
    }

    /// Makes `reader`, made by [`read_from`](Self::read_from), go on to the records appended
    /// since it was made or last extended, from where it stands. A reader that follows the
    /// journal this way reads each record once, where a new reader per read would read the
    /// segment again from its start. A reader that met an error stays ended.
    pub fn extend(&self, reader: &mut Reader) -> Result<(), JournalError> {
        let end = self.last_seq();
        reader.extend_to(end, &self.segments())
    }

    fn segments(&self) -> Vec<u64> {
        self.segments.read().map(|segments| segments.clone()).unwrap_or_default()
    }
}

/// An iterator over records in sequence order, each verified against its checksums. After an
/// error it ends.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    /// The segments still to read, in order: their paths and, when known from their names, their
    /// first sequence numbers (checked against the header).
    segments: VecDeque<(PathBuf, Option<u64>)>,
    from_seq: u64,
    end_seq: Option<u64>,
    open: Option<OpenSegment>,
    /// The sequence number the next record must have.
    next_seq: Option<u64>,
    /// The records of the batch in hand, verified against the batch's checksum and decoded one
    /// at a time as they are read: a reader holds one batch's bytes, never its records.
    batch: Vec<u8>,
    /// Where in `batch` the next record starts.
    batch_pos: usize,
    /// Where `batch` starts in its segment, for the offsets of errors.
    batch_offset: u64,
    /// The first sequence number of the last segment opened.
    last_opened: Option<u64>,
    /// The bytes of the one segment [`Reader::from_bytes`] reads, until it is opened.
    in_memory: Option<Vec<u8>>,
    /// No more records until extended: the end was reached (or there was none to read).
    done: bool,
    /// An error ended the reader for good.
    failed: bool,
}

#[derive(Debug)]
struct OpenSegment {
    path: PathBuf,
    file: Source,
    /// Where the next batch starts. Past it the buffer may hold bytes read ahead, beyond the
    /// last record made durable.
    offset: u64,
}

/// Where a segment's bytes come from.
#[derive(Debug)]
enum Source {
    File(BufReader<File>),
    Memory(io::Cursor<Vec<u8>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::File(file) => file.read(buf),
            Source::Memory(bytes) => bytes.read(buf),
        }
    }
}

impl io::Seek for Source {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        match self {
            Source::File(file) => file.seek(position),
            Source::Memory(bytes) => bytes.seek(position),
        }
    }
}

impl Reader {
    pub(crate) fn over(
        dir: PathBuf,
        segments: Vec<u64>,
        from_seq: u64,
        end_seq: Option<u64>,
    ) -> Reader {
        let mut reader = Reader {
            dir,
            segments: VecDeque::new(),
            from_seq,
            end_seq,
            open: None,
            next_seq: None,
            batch: Vec::new(),
            batch_pos: 0,
            batch_offset: 0,
            last_opened: None,
            in_memory: None,
            done: end_seq.is_some_and(|end| end < from_seq),
            failed: false,
        };
        reader.queue_segments(&segments);
        reader
    }

    /// Queues the segments to read out of all of `segments`: from the last that begins at or
    /// before `from_seq`, or, once one has been opened, those after it.
    fn queue_segments(&mut self, segments: &[u64]) {
        let start = match self.last_opened {
            Some(opened) => segments.partition_point(|&first| first <= opened),
            None => segments.partition_point(|&first| first <= self.from_seq).saturating_sub(1),
        };
        let dir = &self.dir;
        let paths = segments[start..].iter().map(|&first| (segment_path(dir, first), Some(first)));
        self.segments = paths.collect();
    }

    /// See [`ReadHandle::extend`].
    fn extend_to(&mut self, end_seq: u64, segments: &[u64]) -> Result<(), JournalError> {
        if self.failed || self.end_seq.is_none_or(|old_end| end_seq <= old_end) {
            return Ok(());
        }
        // A reader whose end fell inside the batch in hand goes on with the rest of it: records
        // are decoded only as they are read.
        if let Some(segment) = self.open.as_mut() {
            // Drops what was read ahead past the next batch, which may not be what is there
            // now: a failed append is cut off and written again.
            segment
                .file
                .seek(SeekFrom::Start(segment.offset))
                .map_err(|e| JournalError::io("reading journal segment", &segment.path, e))?;
        }
        self.end_seq = Some(end_seq);
        self.done = false;
        self.queue_segments(segments);
        Ok(())
    }

    /// Reads a whole journal directory, every segment to its end, without opening it for
    /// writing (so nothing is repaired: a torn tail is reported as an error).
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Reader, JournalError> {
        let dir = dir.as_ref();
        let segments = segment_files(dir)?.into_iter().map(|segment| segment.first_seq).collect();
        Ok(Reader::over(dir.to_path_buf(), segments, 1, None))
    }

    /// Reads one segment file, wherever it is and whatever it is called, to its end. Its first
    /// sequence number comes from its header.
    pub fn open_segment(path: impl AsRef<Path>) -> Reader {
        let mut reader = Reader::over(PathBuf::new(), Vec::new(), 1, None);
        reader.segments.push_back((path.as_ref().to_path_buf(), None));
        reader
    }

    /// Reads one segment held in memory (a copy, or what a fuzzer makes), as
    /// [`open_segment`](Self::open_segment) reads a file: errors name the segment `<memory>`.
    pub fn from_bytes(segment: Vec<u8>) -> Reader {
        let mut reader = Reader::open_segment("<memory>");
        reader.in_memory = Some(segment);
        reader
    }

    fn next_batch(&mut self) -> Result<bool, JournalError> {
        loop {
            if self.open.is_none() {
                let Some((path, first_seq)) = self.segments.pop_front() else {
                    return Ok(false);
                };
                self.open_file(path, first_seq)?;
            }
            let Some(segment) = self.open.as_mut() else {
                continue;
            };
            let mut header = [0; BATCH_HEADER_LEN];
            match read_full(&mut segment.file, &mut header) {
                Err(e) => {
                    return Err(JournalError::io("reading journal segment", &segment.path, e));
                }
                Ok(0) => {
                    self.open = None;
                    continue;
                }
                Ok(n) if n < BATCH_HEADER_LEN => {
                    return Err(JournalError::TornTail {
                        segment: segment.path.clone(),
                        offset: segment.offset,
                    });
                }
                Ok(_) => {}
            }
            let corrupt = |segment: &OpenSegment, offset: u64, corruption| JournalError::Corrupt {
                segment: segment.path.clone(),
                offset,
                corruption,
            };
            let batch_header =
                parse_batch_header(&header).map_err(|c| corrupt(segment, segment.offset, c))?;
            let n_read = read_records(&mut segment.file, batch_header.records_len, &mut self.batch)
                .map_err(|e| JournalError::io("reading journal segment", &segment.path, e))?;
            if n_read < batch_header.records_len {
                return Err(JournalError::TornTail {
                    segment: segment.path.clone(),
                    offset: segment.offset,
                });
            }
            batch_header.verify(&self.batch).map_err(|c| corrupt(segment, segment.offset, c))?;
            self.batch_offset = segment.offset + BATCH_HEADER_LEN as u64;
            self.batch_pos = 0;
            // At the end, the segment stays open: `ReadHandle::extend` goes on from here.
            segment.offset = self.batch_offset + batch_header.records_len as u64;
            return Ok(true);
        }
    }

    fn open_file(&mut self, path: PathBuf, first_seq: Option<u64>) -> Result<(), JournalError> {
        let mut file = match self.in_memory.take() {
            Some(bytes) => Source::Memory(io::Cursor::new(bytes)),
            None => {
                let file = File::open(&path)
                    .map_err(|e| JournalError::io("opening journal segment", &path, e))?;
                Source::File(BufReader::with_capacity(256 << 10, file))
            }
        };
        let mut header = [0; SEGMENT_HEADER_LEN];
        let n_read = read_full(&mut file, &mut header)
            .map_err(|e| JournalError::io("reading journal segment", &path, e))?;
        if n_read < SEGMENT_HEADER_LEN {
            return Err(JournalError::TornTail { segment: path, offset: 0 });
        }
        let first_seq = match parse_segment_header(&header) {
            Ok(found) if first_seq.is_none_or(|named| named == found) => found,
            _ => {
                return Err(JournalError::Corrupt {
                    segment: path,
                    offset: 0,
                    corruption: crate::format::Corruption::SegmentHeader,
                });
            }
        };
        match self.next_seq {
            Some(expected) if expected != first_seq => {
                return Err(JournalError::Gap { segment: path, expected, found: first_seq });
            }
            _ => self.next_seq = Some(first_seq),
        }
        self.open = Some(OpenSegment { path, file, offset: SEGMENT_HEADER_LEN as u64 });
        self.last_opened = Some(first_seq);
        Ok(())
    }

    /// Decodes the next record of the batch in hand: `None` for one before `from_seq`.
    fn next_in_batch(&mut self) -> Result<Option<Record>, JournalError> {
        let expected = self.next_seq.unwrap_or(1);
        let at = self.batch_pos;
        let corrupt = |reader: &Reader, at: usize, corruption| JournalError::Corrupt {
            segment: reader.open.as_ref().map(|open| open.path.clone()).unwrap_or_default(),
            offset: reader.batch_offset + at as u64,
            corruption,
        };
        let (record, len) = decode_record(&self.batch[at..]).map_err(|c| corrupt(self, at, c))?;
        if record.seq != expected {
            let found = record.seq;
            return Err(corrupt(self, at, Corruption::Sequence { expected, found }));
        }
        self.batch_pos += len;
        self.next_seq = Some(expected + 1);
        Ok((record.seq >= self.from_seq).then_some(record))
    }
}

impl Iterator for Reader {
    type Item = Result<Record, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            // Nothing past the end is read, not even a batch header: it may not be durable.
            if self.end_seq.is_some_and(|end| self.next_seq.unwrap_or(1) > end) {
                self.done = true;
                break;
            }
            let step = if self.batch_pos < self.batch.len() {
                self.next_in_batch()
            } else {
                self.next_batch().map(|more| {
                    self.done = !more;
                    None
                })
            };
            match step {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => {}
                Err(error) => {
                    (self.done, self.failed) = (true, true);
                    return Some(Err(error));
                }
            }
        }
        None
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use scores_core::ScoreEvent;

    use super::*;
    use crate::{Entry, Journal, Options};

    #[test]
    fn a_reader_whose_end_falls_inside_a_batch_is_extended_without_losing_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
        let entry = |seq: u64| Entry {
            event: ScoreEvent::new("Marvin32", seq, 0.5).unwrap(),
            upstream_id: Arc::from(""),
        };
        journal.append(&(1..=10).map(entry).collect::<Vec<_>>()).unwrap();
        let handle = journal.read_handle();
        // The journal never ends a reader inside a batch; made by hand, this one ends at 4 of 10.
        let mut reader = Reader::over(dir.path().to_path_buf(), handle.segments(), 2, Some(4));
        let seqs = |reader: &mut Reader| reader.map(|r| r.unwrap().seq).collect::<Vec<_>>();
        assert_eq!(seqs(&mut reader), [2, 3, 4]);
        handle.extend(&mut reader).unwrap();
        assert_eq!(seqs(&mut reader), [5, 6, 7, 8, 9, 10]);
    }
}
