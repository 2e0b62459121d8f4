//! Ingest: the upstream feed into the log. A task reads the feed and hands each chunk's valid
//! events to the log's appender, a thread that appends whatever has accumulated as one batch
//! (group commit) and passes it on to be folded once it is durable. While the log refuses
//! appends the appender retries, the channel fills and the feed waits: nothing is read that
//! cannot be stored.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use scores_sse::{ConnectionState, Feed, FeedItem};
use tokio::sync::{mpsc, watch};

use crate::error::PipelineError;
use crate::fold::Folding;
use crate::handle::Pipeline;
use crate::log::{Entry, Log};
use crate::standby::Standby;

/// The writer stops gathering events for one log append once it has this many.
const MAX_BATCH: usize = 65_536;

/// How many batches of events (each what the feed parsed from one chunk of the stream) wait
/// for the writer at most: beyond that, the feed waits, and the upstream behind it.
pub(crate) const QUEUED_BATCHES: usize = 256;

/// The file journal's writer and its fold: a `log-appender` thread appends each batch of
/// events from `events` until the channel closes, then syncs the log; this thread (the
/// folder's) folds each batch once it is durable, while the next is appended. Appending (the
/// encoding, the write, the fsync) and folding each took about half the writer's time when one
/// thread did both, one after the other. Whenever nothing durable waits to be folded, what is
/// folded is handed over to be published: so too while the log refuses a batch.
pub(crate) fn append_and_fold(
    log: &mut impl Log,
    folding: &mut Folding,
    events: mpsc::Receiver<Vec<Entry>>,
    pipeline: &Pipeline,
    (stop, halt): (&watch::Receiver<bool>, &watch::Sender<bool>),
) -> Result<(), PipelineError> {
    if folding.seq() + 1 != log.next_seq() {
        return Err(PipelineError::OutOfOrder {
            expected: log.next_seq(),
            found: folding.seq() + 1,
        });
    }
    // One batch folding, one waiting, one being appended: then the appender waits.
    let (durable_tx, durable) = std::sync::mpsc::sync_channel::<(u64, Vec<Entry>)>(1);
    let (spare_tx, spares) = std::sync::mpsc::sync_channel::<Vec<Entry>>(2);
    std::thread::scope(|scope| {
        let appender = std::thread::Builder::new()
            .name("log-appender".into())
            .spawn_scoped(scope, move || {
                append_each(log, events, durable_tx, spares, pipeline, stop)
            })
            .map_err(|source| PipelineError::Io { action: "starting the log appender", source })?;
        let folded = fold_durable(folding, &durable, &spare_tx);
        // The fold ends when the appender has, or when it fails, or the publisher has gone:
        // then the feed stops, and with it the appender, which finds no one to take its next
        // batch if it has one.
        let _ = halt.send(true);
        drop((durable, spare_tx));
        let appended = appender.join().map_err(|_| PipelineError::Panicked("log appender"))?;
        folded.and(appended)
    })
}

/// Folds each durable batch from `durable` and returns its emptied buffer to `spares`; hands
/// over whenever nothing more waits. Ends when the appender has ended.
fn fold_durable(
    folding: &mut Folding,
    durable: &std::sync::mpsc::Receiver<(u64, Vec<Entry>)>,
    spares: &std::sync::mpsc::SyncSender<Vec<Entry>>,
) -> Result<(), PipelineError> {
    loop {
        let (last_seq, mut batch) = match durable.try_recv() {
            Ok(next) => next,
            Err(_) => {
                if !folding.publish_if(true) {
                    return Ok(());
                }
                match durable.recv() {
                    Ok(next) => next,
                    Err(_) => return Ok(()),
                }
            }
        };
        folding.apply(last_seq, &batch)?;
        batch.clear();
        let _ = spares.try_send(batch);
        if !folding.publish_if(false) {
            return Ok(());
        }
    }
}

/// Appends each batch of events from `events` until the channel closes, the fold has ended,
/// or the log refuses for good, and passes it on to `durable` once it is; then syncs the log.
fn append_each(
    log: &mut impl Log,
    mut events: mpsc::Receiver<Vec<Entry>>,
    durable: std::sync::mpsc::SyncSender<(u64, Vec<Entry>)>,
    spares: std::sync::mpsc::Receiver<Vec<Entry>>,
    pipeline: &Pipeline,
    stop: &watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let mut appended = Ok(());
    loop {
        let mut batch = spares.try_recv().unwrap_or_else(|_| Vec::with_capacity(MAX_BATCH));
        if !next_batch(&mut events, &mut batch) {
            break;
        }
        match append_until_durable(log, &batch, pipeline, stop) {
            Ok(last_seq) => {
                if durable.send((last_seq, batch)).is_err() {
                    break;
                }
            }
            Err(error) => {
                appended = Err(error);
                break;
            }
        }
    }
    // What was stored is synced (and then checkpointed) even when a batch could not be.
    let synced = log.sync();
    appended?;
    Ok(synced?)
}

/// A shared log's writer, for an ingester: appends each batch of events from `events` until
/// the channel closes or the log refuses for good (fenced), telling `stored` how many events
/// each append stored; the replicas fold what the log holds, this one included.
pub(crate) fn append_only(
    mut log: impl Log,
    mut events: mpsc::Receiver<Vec<Entry>>,
    pipeline: &Pipeline,
    stop: &watch::Receiver<bool>,
    mut stored: impl FnMut(usize),
) -> Result<(), PipelineError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut events, &mut batch) {
        append_until_durable(&mut log, &batch, pipeline, stop)?;
        stored(batch.len());
        batch.clear();
    }
    Ok(log.sync()?)
}

/// Waits for events, then takes all that are queued, up to [`MAX_BATCH`], into `batch` (which
/// the caller has emptied): one append's worth. False once the channel has closed.
fn next_batch(events: &mut mpsc::Receiver<Vec<Entry>>, batch: &mut Vec<Entry>) -> bool {
    let Some(first) = events.blocking_recv() else { return false };
    batch.extend(first);
    while batch.len() < MAX_BATCH {
        match events.try_recv() {
            Ok(more) => batch.extend(more),
            Err(_) => break,
        }
    }
    true
}

/// Pulls the feed until shutdown (or a 204), counting and logging what it does not pass on.
/// Events go to the writer a chunk of the stream at a time: the item awaited, then every item
/// already parsed from the same chunk, as one message.
pub(crate) async fn pull_feed(
    mut feed: Feed,
    events: impl Into<Sink>,
    pipeline: Pipeline,
    mut stop: watch::Receiver<bool>,
) {
    let events = events.into();
    let counters = pipeline.counters();
    let mut attempts = 0u64;
    // One future for the whole loop, rather than one registered and dropped per item.
    let mut stopped = std::pin::pin!(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    });
    let mut batch = Vec::new();
    loop {
        let item = tokio::select! {
            item = feed.next() => item,
            () = &mut stopped => return,
        };
        let Some(item) = item else {
            tracing::info!("the upstream asked clients to stop (204); no more events will arrive");
            stopped.await;
            return;
        };
        for item in std::iter::once(item).chain(std::iter::from_fn(|| feed.ready())) {
            match item {
                FeedItem::Event { event, id } => batch.push(Entry { event, upstream_id: id }),
                FeedItem::Ignored { event_type } => {
                    counters.events_ignored.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%event_type, "ignored an event of another type");
                }
                FeedItem::Rejected(error) => {
                    counters.count_rejected(error.reason());
                    tracing::warn!(%error, "rejected an upstream event");
                }
                // Every attempt after the first counts, whether or not it connects.
                FeedItem::State(ConnectionState::Connecting { .. }) => {
                    attempts += 1;
                    if attempts > 1 {
                        counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
                FeedItem::State(ConnectionState::Connected) => {
                    counters.upstream_connected.store(true, Ordering::Relaxed);
                }
                FeedItem::State(ConnectionState::Disconnected(_) | ConnectionState::Stopped) => {
                    counters.upstream_connected.store(false, Ordering::Relaxed);
                }
                FeedItem::Raw(_) | FeedItem::State(_) => {}
            }
        }
        if !batch.is_empty() {
            match &events {
                Sink::Log(events) => {
                    counters.events_received.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    // While the journal refuses appends the channel stays full and this waits;
                    // on a stop the writer gives up and closes the channel, ending the wait.
                    if events.send(std::mem::take(&mut batch)).await.is_err() {
                        return;
                    }
                }
                Sink::Standby(standby) => standby.push(std::mem::take(&mut batch), counters),
            }
        }
    }
}

/// Where [`pull_feed`] hands the events on.
pub(crate) enum Sink {
    /// Straight to the log's appender.
    Log(mpsc::Sender<Vec<Entry>>),
    /// Into a replica's standby buffer, whether or not it ingests.
    Standby(Arc<Standby>),
}

impl From<mpsc::Sender<Vec<Entry>>> for Sink {
    fn from(events: mpsc::Sender<Vec<Entry>>) -> Sink {
        Sink::Log(events)
    }
}

impl From<Arc<Standby>> for Sink {
    fn from(standby: Arc<Standby>) -> Sink {
        Sink::Standby(standby)
    }
}

/// The pause before the first retry of a refused append: short, since a shared log refuses
/// while its stream elects a leader, which takes seconds, and each wait for that adds to the
/// stall. It doubles each retry up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest pause between two retries of a refused append (a full disk, NATS away).
const LAST_RETRY: Duration = Duration::from_secs(1);

/// Appends `batch`, retrying with a pause while the log refuses (a full disk, say): the feed
/// waits behind the channel meanwhile, and nothing is dropped. A log that cannot take appends any more stops the pipeline rather than risk the
/// log; so does a request to stop while appends fail, since retrying would never end.
/// Returns the sequence number of the batch's last entry.
fn append_until_durable(
    log: &mut impl Log,
    batch: &[Entry],
    pipeline: &Pipeline,
    stop: &watch::Receiver<bool>,
) -> Result<u64, PipelineError> {
    let counters = pipeline.counters();
    let mut refused = false;
    let mut pause = FIRST_RETRY;
    loop {
        match log.append(batch) {
            Ok(last_seq) => {
                if refused {
                    pipeline.set_log_refusal(None);
                    tracing::info!("the log takes appends again");
                }
                counters.log_appends.fetch_add(1, Ordering::Relaxed);
                counters.log_syncs.store(log.n_syncs(), Ordering::Relaxed);
                counters.log_last_seq.store(last_seq, Ordering::Relaxed);
                return Ok(last_seq);
            }
            Err(error) if error.is_fatal() => return Err(error.into()),
            Err(error) => {
                counters.log_errors.fetch_add(1, Ordering::Relaxed);
                refused = true;
                pipeline.set_log_refusal(Some(error.to_string()));
                if *stop.borrow() {
                    return Err(PipelineError::StoppedWhileRefused(error));
                }
                tracing::error!(%error, ?pause, "log append failed; retrying");
                // In steps, so that a request to stop is seen within a tenth of a second.
                let until = std::time::Instant::now() + pause;
                while !*stop.borrow() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100).min(pause));
                }
                pause = (pause * 2).min(LAST_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use scores_core::ScoreEvent;
    use std::sync::Arc;

    use scores_journal::{FsyncPolicy, Journal, Options};

    use super::*;

    fn entry(n: u64) -> Entry {
        let event = ScoreEvent::new("Marvin32", 11_000 + n, 0.5).unwrap();
        Entry { event, upstream_id: Arc::from(n.to_string()) }
    }

    /// A journal that numbers each append as if five entries more had been appended.
    struct Skipping(Journal);

    impl Log for Skipping {
        fn next_seq(&self) -> u64 {
            Log::next_seq(&self.0)
        }

        fn last_upstream_id(&self) -> &str {
            Log::last_upstream_id(&self.0)
        }

        fn append(&mut self, entries: &[Entry]) -> Result<u64, crate::log::LogError> {
            Log::append(&mut self.0, entries).map(|last_seq| last_seq + 5)
        }

        fn sync(&mut self) -> Result<(), crate::log::LogError> {
            Log::sync(&mut self.0)
        }

        fn n_syncs(&self) -> u64 {
            Log::n_syncs(&self.0)
        }

        fn read_from(
            &self,
            from: u64,
        ) -> Box<dyn Iterator<Item = Result<scores_journal::Record, crate::log::LogError>> + '_>
        {
            Log::read_from(&self.0, from)
        }

        fn reader(&self) -> Arc<dyn crate::log::LogRead> {
            Log::reader(&self.0)
        }
    }

    #[test]
    fn a_fold_that_fails_stops_the_feed_and_the_appender_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { fsync: FsyncPolicy::Always, segment_bytes: 1 << 20 };
        let (journal, _) = Journal::open(dir.path().join("journal"), options).unwrap();
        let mut log = Skipping(journal);
        let pipeline = Pipeline::new(None);
        let checkpoint = dir.path().join("checkpoint");
        let folder = crate::fold::Folder::start(&pipeline, checkpoint.clone(), u64::MAX).unwrap();
        let restore = crate::fold::Restore { checkpoint, tail: None, log_end: 0 };
        let (events_tx, events) = mpsc::channel(4);
        let (halt, mut halted) = watch::channel(false);
        let stop = halt.subscribe();
        // The feed, as `pull_feed` does: sends, then holds the channel open until halted.
        let feed = std::thread::spawn(move || {
            events_tx.blocking_send(vec![entry(1), entry(2)]).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(halted.wait_for(|halted| *halted)).unwrap();
        });
        let (ended_tx, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let folded = folder.run(restore, |folding| {
                append_and_fold(&mut log, folding, events, &pipeline, (&stop, &halt))
            });
            ended_tx.send(folded).unwrap();
        });

        let folded = ended.recv_timeout(Duration::from_secs(20)).expect("the folder ends");
        assert!(
            matches!(folded, Err(PipelineError::OutOfOrder { expected: 1, found: 6 })),
            "{folded:?}"
        );
        feed.join().unwrap();
    }

    #[test]
    fn a_refused_append_retries_until_asked_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        // One-byte segments: the next append after a record needs a new file.
        let options = Options { fsync: FsyncPolicy::Always, segment_bytes: 1 };
        let (mut journal, _) = Journal::open(&journal_dir, options).unwrap();
        Log::append(&mut journal, &[entry(1)]).unwrap();
        std::fs::remove_dir_all(&journal_dir).unwrap();
        std::fs::write(&journal_dir, "not a directory").unwrap();

        let (stop, stop_rx) = watch::channel(false);
        let pipeline = Pipeline::new(None);
        let stopper = std::thread::spawn(move || {
            // After the first retries (a tenth of a second after the first refusal, then more).
            std::thread::sleep(Duration::from_millis(1_500));
            stop.send(true).unwrap();
        });
        let appended = append_until_durable(&mut journal, &[entry(2)], &pipeline, &stop_rx);
        stopper.join().unwrap();

        assert!(matches!(appended, Err(PipelineError::StoppedWhileRefused(_))), "{appended:?}");
        assert!(pipeline.counters().log_errors.load(Ordering::Relaxed) >= 2, "it retried");
        assert!(pipeline.log_refusal().is_some());
    }
}
