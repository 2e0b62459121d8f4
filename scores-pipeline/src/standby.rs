//! [`Standby`]: what a replica hears from the upstream on its own connection, kept while it
//! does not ingest so that it can take over where the stream ends, and handed to the log while
//! it does.
//!
//! Every replica started with an upstream keeps one connection to it for its whole life
//! (`pull_feed` into [`Standby::push`]). The buffer is a window on the upstream, bounded by
//! count and by age: its oldest events give way. On taking the lease, [`Standby::take_over`]
//! aligns the buffer after the stream's last events (see `align`); from then on the ingester
//! hands on what follows ([`Standby::hand_over`]) and the writer says what the log stored
//! ([`Standby::stored`]).
//!
//! Events no log has yet (while the log is away, the ingester reads on) are kept past the count
//! and age limits, bounded only by size; so too after the term ends, until another ingester
//! publishes, so that whoever takes over when the log is back, this replica included, can align
//! on them. The window is spooled to the data directory, so a restart keeps it: an event that
//! arrived before the restart is kept as one no log may have. Only the size limit loses
//! events, counted and said.
//!
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scores_journal::{FsyncPolicy, Journal, JournalError, Options, batch};
use tokio::sync::Notify;

use crate::align::{ALIGN_RUN, Alignment, align};
use crate::counters::Counters;
use crate::error::PipelineError;
use crate::log::Entry;

/// How much a standby keeps. [`Default`] is about a minute of a busy feed, and a spool of
/// 64 MiB for events no log has yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyLimits {
    /// The most events kept; past it the oldest give way, unless no log has them yet.
    pub max_events: usize,
    /// Events older than this give way as new ones arrive, unless no log has them yet.
    pub max_age: Duration,
    /// The most bytes kept (as the spool stores them), whatever they are: the bound on events
    /// kept because no log has them yet. Past it the oldest give way, and those no log has are
    /// counted as dropped.
    pub max_bytes: u64,
}

impl Default for StandbyLimits {
    /// 60,000 events (about 5 MB), one minute, 64 MiB.
    fn default() -> StandbyLimits {
        StandbyLimits { max_events: 60_000, max_age: Duration::from_secs(60), max_bytes: 64 << 20 }
    }
}

/// The spool's segments: small, so that what gives way leaves the disk soon after.
const SPOOL_SEGMENT_BYTES: u64 = 1 << 20;

/// How often the spool reaches the disk: a crash of the process loses none of it (the bytes are
/// in the OS's page cache); a crash of the machine can lose up to this much.
const SPOOL_FSYNC: Duration = Duration::from_secs(1);

/// A replica's buffer of what its upstream connection delivered. See the module docs.
#[derive(Debug)]
pub(crate) struct Standby {
    limits: StandbyLimits,
    buffer: Mutex<Buffer>,
    /// The buffer's copy on disk, when it has one: the journal format, numbered as the buffer.
    spool: Mutex<Option<Journal>>,
    arrived: Notify,
}

/// The window, numbered on from the first event ever kept (the spool's numbers).
#[derive(Debug, Default)]
struct Buffer {
    entries: VecDeque<Entry>,
    /// When each entry arrived and its size in the spool, in the same order.
    stamps: VecDeque<(Instant, u32)>,
    /// The sum of the sizes.
    bytes: u64,
    /// The number of `entries[0]`.
    first: u64,
    /// While this replica ingests, the number of the next entry to hand on.
    next: Option<u64>,
    /// Entries from this number on may be in no log yet: past the count and age limits they
    /// are kept, with the [`ALIGN_RUN`] before them, and only the size limit lets them go
    /// (counted as dropped). Set while this
    /// replica ingests and after, until another ingester has published; on a restart, for
    /// everything the spool held.
    unstored: Option<u64>,
}

impl Buffer {
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The entries from number `from` on.
    fn from(&self, from: u64) -> impl Iterator<Item = &Entry> {
        let skip = usize::try_from(from.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip)
    }

    fn extend(&mut self, batch: Vec<Entry>, now: Instant) {
        for entry in &batch {
            let size = batch::encoded_len(entry) as u32;
            self.stamps.push_back((now, size));
            self.bytes += u64::from(size);
        }
        self.entries.extend(batch);
    }

    /// Lets the oldest entries go past `limits`; returns how many of them no log had.
    fn let_go(&mut self, limits: &StandbyLimits, now: Instant) -> u64 {
        // The stored events just before the unstored are kept too: the run a takeover aligns on.
        let keep_from = self.unstored.map(|from| from.saturating_sub(ALIGN_RUN as u64));
        let mut dropped = 0;
        while let Some(&(arrived, size)) = self.stamps.front() {
            let unstored = self.unstored.is_some_and(|from| self.first >= from);
            let kept = keep_from.is_some_and(|from| self.first >= from);
            let over = self.entries.len() > limits.max_events || now - arrived > limits.max_age;
            if self.bytes <= limits.max_bytes && (kept || !over) {
                break;
            }
            self.entries.pop_front();
            self.stamps.pop_front();
            self.bytes -= u64::from(size);
            self.first += 1;
            dropped += u64::from(unstored);
        }
        self.next = self.next.map(|next| next.max(self.first));
        self.unstored = self.unstored.map(|from| from.max(self.first));
        dropped
    }
}

impl Standby {
    /// A buffer in memory only.
    #[cfg(test)]
    pub(crate) fn new(limits: StandbyLimits) -> Standby {
        let buffer = Buffer { first: 1, ..Buffer::default() };
        Standby {
            limits,
            buffer: Mutex::new(buffer),
            spool: Mutex::new(None),
            arrived: Notify::new(),
        }
    }

    /// A buffer spooled to `dir`, holding what the spool there held: what this replica heard
    /// before a restart, all of it taken as possibly in no log yet. A spool that cannot be read
    /// is set aside beside it (ERROR) and a new one started: it is a copy of the upstream, not
    /// the log.
    pub(crate) fn open(limits: StandbyLimits, dir: &Path) -> Result<Standby, PipelineError> {
        let (spool, kept) = match read_spool(dir) {
            Ok(found) => found,
            // Another process holds it, or the disk fails: not the spool's own damage.
            Err(error @ (JournalError::Locked { .. } | JournalError::Io { .. })) => {
                return Err(error.into());
            }
            Err(error) => {
                let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                let aside = dir.with_extension(format!("damaged-{}", since_epoch.as_secs()));
                tracing::error!(%error, aside = %aside.display(), "the standby spool cannot be read: it is set aside and the window starts empty");
                std::fs::rename(dir, &aside).map_err(|source| PipelineError::Io {
                    action: "setting a damaged standby spool aside",
                    source,
                })?;
                read_spool(dir)?
            }
        };
        let mut buffer = Buffer { first: spool.first_seq(), ..Buffer::default() };
        if !kept.is_empty() {
            tracing::info!(
                events = kept.len(),
                spool = %dir.display(),
                "the standby window holds what its spool kept from before the restart"
            );
            buffer.unstored = Some(buffer.first);
        }
        buffer.extend(kept, Instant::now());
        Ok(Standby {
            limits,
            buffer: Mutex::new(buffer),
            spool: Mutex::new(Some(spool)),
            arrived: Notify::new(),
        })
    }

    fn buffer(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spool(&self) -> MutexGuard<'_, Option<Journal>> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The upstream id of the last event kept ("" when none has one): where a connection made
    /// after a restart resumes.
    pub(crate) fn last_upstream_id(&self) -> String {
        let buffer = self.buffer();
        buffer.entries.back().map(|entry| entry.upstream_id.to_string()).unwrap_or_default()
    }

    /// Keeps `batch`, spooled first, letting the oldest events give way past the limits (see
    /// [`StandbyLimits`]); those no log had are counted as dropped.
    pub(crate) fn push(&self, batch: Vec<Entry>, counters: &Counters) {
        let now = Instant::now();
        // One pusher (the feed task): the spool and the buffer number the batch alike.
        let mut spool = self.spool();
        if let Some(journal) = spool.as_mut()
            && let Err(error) = journal.append(&batch)
        {
            tracing::error!(%error, "cannot write the standby spool: the window is kept in memory only from now on, and a restart loses it");
            *spool = None;
        }
        let mut buffer = self.buffer();
        buffer.extend(batch, now);
        let dropped = buffer.let_go(&self.limits, now);
        if let Some(journal) = spool.as_mut()
            && let Err(error) = journal.discard_before(buffer.first)
        {
            tracing::warn!(%error, "cannot delete the standby spool's oldest segment");
        }
        counters.standby_buffered.store(buffer.entries.len() as u64, Ordering::Relaxed);
        counters.standby_bytes.store(buffer.bytes, Ordering::Relaxed);
        drop((buffer, spool));
        if dropped > 0 && counters.standby_dropped.fetch_add(dropped, Ordering::Relaxed) == 0 {
            tracing::warn!(
                max_bytes = self.limits.max_bytes,
                "the standby window is full of events no log has yet (the log has been away): the oldest are dropped (scores_standby_dropped_events_total)"
            );
        }
        self.arrived.notify_one();
    }

    /// Starts handing on what follows `run`, the stream's last events, in the buffer; when
    /// they cannot be found there once, only what arrives from now on. Returns the alignment
    /// and how many buffered events will not be handed on: those up to the stream's end
    /// (already stored) or, when refused, all of them.
    pub(crate) fn take_over(&self, run: &[Entry]) -> (Alignment, usize) {
        let mut buffer = self.buffer();
        let alignment = align(run, buffer.entries.make_contiguous());
        let set_aside = match alignment {
            Alignment::From(index) => index,
            Alignment::Refused(_) => buffer.entries.len(),
        };
        let next = buffer.first + set_aside as u64;
        (buffer.next, buffer.unstored) = (Some(next), Some(next));
        (alignment, set_aside)
    }

    /// Records that the log has stored the next `n` events handed on.
    pub(crate) fn stored(&self, n: usize) {
        let mut buffer = self.buffer();
        buffer.unstored = buffer.unstored.map(|from| from + n as u64);
    }

    /// Stops handing on: another replica ingests, or will. What was not stored is still kept
    /// past the count and age limits, for this replica to align on if it takes over again.
    pub(crate) fn step_down(&self) {
        self.buffer().next = None;
    }

    /// Another ingester has published since this replica last ingested (or restarted): what
    /// this one kept unstored is that one's to align on, and goes as the limits say.
    pub(crate) fn release(&self) {
        self.buffer().unstored = None;
    }

    /// Forgets everything buffered, and spooled: the connection starts again elsewhere in the
    /// upstream.
    pub(crate) fn clear(&self, counters: &Counters) {
        let mut spool = self.spool();
        let mut buffer = self.buffer();
        let end = buffer.end();
        if let Some(journal) = spool.as_mut()
            && let Err(error) = journal.discard_before(end)
        {
            tracing::warn!(%error, "cannot empty the standby spool");
        }
        buffer.entries.clear();
        buffer.stamps.clear();
        buffer.bytes = 0;
        buffer.first = end;
        buffer.next = buffer.next.map(|_| end);
        buffer.unstored = buffer.unstored.map(|_| end);
        counters.standby_buffered.store(0, Ordering::Relaxed);
        counters.standby_bytes.store(0, Ordering::Relaxed);
    }

    /// While ingesting, the events not handed on yet, oldest first; they stay buffered.
    pub(crate) fn hand_over(&self) -> Vec<Entry> {
        let mut buffer = self.buffer();
        let Some(next) = buffer.next else { return Vec::new() };
        let batch: Vec<Entry> = buffer.from(next).cloned().collect();
        buffer.next = Some(buffer.end());
        batch
    }

    /// Completes once events arrive (at once, if some arrived since the last wait).
    pub(crate) async fn arrival(&self) {
        self.arrived.notified().await;
    }
}

/// Opens the spool in `dir` and reads all it holds.
fn read_spool(dir: &Path) -> Result<(Journal, Vec<Entry>), JournalError> {
    let options =
        Options { fsync: FsyncPolicy::Interval(SPOOL_FSYNC), segment_bytes: SPOOL_SEGMENT_BYTES };
    let (spool, _) = Journal::open(dir, options)?;
    let kept = spool
        .read_from(spool.first_seq())
        .map(|record| {
            record.map(|record| Entry { event: record.event, upstream_id: record.upstream_id })
        })
        .collect::<Result<_, _>>()?;
    Ok((spool, kept))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use scores_core::ScoreEvent;

    use super::*;
    use crate::align::Refusal;

    fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
        range
            .map(|n| Entry {
                event: ScoreEvent::new("a", n, 0.5).unwrap(),
                upstream_id: Arc::from(""),
            })
            .collect()
    }

    fn limits(max_events: usize) -> StandbyLimits {
        StandbyLimits { max_events, ..StandbyLimits::default() }
    }

    fn dropped(counters: &Counters) -> u64 {
        counters.standby_dropped.load(Ordering::Relaxed)
    }

    #[test]
    fn the_oldest_events_give_way_and_a_take_over_hands_on_what_follows_the_stream() {
        let counters = Counters::default();
        let standby = Standby::new(limits(10));
        standby.push(entries(0..8), &counters);
        standby.push(entries(8..14), &counters);
        assert_eq!(dropped(&counters), 0, "following: another replica's to store");
        assert_eq!(counters.standby_buffered.load(Ordering::Relaxed), 10);
        // The stream ends at exam 9: 10..14 follow.
        let run = entries(7..10);
        assert_eq!(standby.take_over(&run), (Alignment::From(6), 6));
        assert_eq!(standby.hand_over(), entries(10..14));
        assert!(standby.hand_over().is_empty());
        standby.push(entries(14..16), &counters);
        assert_eq!(standby.hand_over(), entries(14..16));
        // The stream ends before what is buffered: nothing buffered is handed on.
        standby.stored(6);
        standby.step_down();
        let refused = standby.take_over(&entries(0..3));
        assert_eq!(refused, (Alignment::Refused(Refusal::NotFound), 12));
        assert!(standby.hand_over().is_empty());
        standby.push(entries(16..17), &counters);
        assert_eq!(standby.hand_over(), entries(16..17));
    }

    #[test]
    fn events_no_log_has_are_kept_past_the_count_limit_until_the_size_limit_drops_them() {
        let counters = Counters::default();
        let size = batch::encoded_len(&entries(0..1)[0]) as u64;
        let standby = Standby::new(StandbyLimits { max_bytes: 60 * size, ..limits(10) });
        let buffered = || counters.standby_buffered.load(Ordering::Relaxed);
        standby.push(entries(0..40), &counters);
        assert_eq!(standby.take_over(&entries(37..40)), (Alignment::From(10), 10));
        // The log is away: nothing handed on is stored, and the window grows past 10.
        standby.push(entries(40..60), &counters);
        assert_eq!(standby.hand_over(), entries(40..60));
        assert_eq!(buffered(), 30);
        // The log stores 40..55: the 16 stored before 55 are kept (the run a takeover aligns
        // on), and the unstored after them.
        standby.stored(15);
        standby.push(entries(60..61), &counters);
        assert_eq!(buffered(), 16 + 6);
        assert_eq!(dropped(&counters), 0);
        // The term ends with 55..61 unstored: kept for this replica to align on again, after
        // the stream's last events.
        standby.step_down();
        standby.push(entries(61..65), &counters);
        assert_eq!(buffered(), 26);
        assert_eq!(standby.take_over(&entries(39..55)), (Alignment::From(16), 16));
        assert_eq!(standby.hand_over(), entries(55..65));
        // Past the size limit the oldest go, and those unstored are counted.
        standby.push(entries(65..130), &counters);
        assert_eq!(buffered(), 60);
        assert_eq!(dropped(&counters), 15);
        assert_eq!(standby.hand_over(), entries(70..130));
        // Another ingester published since: what is kept goes as the count limit says.
        standby.step_down();
        standby.release();
        standby.push(entries(130..131), &counters);
        assert_eq!(buffered(), 10);
        assert_eq!(dropped(&counters), 15);
    }

    #[test]
    fn the_spool_keeps_the_window_through_a_restart_and_a_clearing_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("standby");
        let counters = Counters::default();
        let with_id = |range: std::ops::Range<u64>| {
            let mut batch = entries(range);
            for entry in &mut batch {
                entry.upstream_id = Arc::from(entry.event.exam.to_string());
            }
            batch
        };
        let standby = Standby::open(limits(1000), &spool).unwrap();
        assert_eq!(standby.last_upstream_id(), "");
        for start in (0..100_000).step_by(1000) {
            standby.push(with_id(start..start + 1000), &counters);
        }
        assert_eq!(counters.standby_buffered.load(Ordering::Relaxed), 1000);
        let on_disk = |spool: &Path| -> u64 {
            std::fs::read_dir(spool)
                .unwrap()
                .map(|file| file.unwrap().metadata().unwrap().len())
                .sum()
        };
        assert!(on_disk(&spool) < 3 * SPOOL_SEGMENT_BYTES, "what gave way left the disk");
        drop(standby);
        // After a restart: the same window, all of it kept as unstored, and where to resume.
        let standby = Standby::open(limits(10), &spool).unwrap();
        assert_eq!(standby.last_upstream_id(), "99999");
        standby.push(with_id(100_000..100_001), &counters);
        assert_eq!(dropped(&counters), 0);
        let (alignment, _) = standby.take_over(&with_id(98_984..99_000));
        assert!(matches!(alignment, Alignment::From(_)), "{alignment:?}");
        assert_eq!(standby.hand_over(), with_id(99_000..100_001), "the window came back");
        // A clearing (a connection resumed elsewhere) empties the spool too.
        standby.clear(&counters);
        drop(standby);
        let standby = Standby::open(limits(10), &spool).unwrap();
        assert_eq!(standby.last_upstream_id(), "");
        // Damage in the spool sets it aside and starts an empty one.
        standby.push(with_id(0..100), &counters);
        drop(standby);
        let segment = std::fs::read_dir(&spool)
            .unwrap()
            .map(|file| file.unwrap().path())
            .find(|path| path.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&segment, bytes).unwrap();
        let standby = Standby::open(limits(10), &spool).unwrap();
        assert_eq!(standby.last_upstream_id(), "");
        let aside = std::fs::read_dir(dir.path()).unwrap().map(|file| file.unwrap().file_name());
        assert_eq!(
            aside.filter(|name| name.to_string_lossy().starts_with("standby.damaged-")).count(),
            1
        );
    }

    #[test]
    fn events_older_than_the_age_limit_give_way() {
        let counters = Counters::default();
        let standby = Standby::new(StandbyLimits { max_age: Duration::ZERO, ..limits(100) });
        standby.push(entries(0..5), &counters);
        std::thread::sleep(Duration::from_millis(5));
        standby.push(entries(5..7), &counters);
        assert_eq!(standby.take_over(&[]), (Alignment::From(0), 0));
        assert_eq!(standby.hand_over(), entries(5..7));
        assert_eq!(dropped(&counters), 0);
    }
}
