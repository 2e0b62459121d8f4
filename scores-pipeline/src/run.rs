//! The running pipeline: feed → log → fold → publish → checkpoint.
//!
//! One task pulls the upstream [`Feed`] and hands valid events to the log writer, a dedicated
//! thread that appends whatever has accumulated as one batch (group commit) and folds it; a
//! publisher thread merges what was folded into a new snapshot and publishes it while the
//! writer goes on with the next batch, so an event becomes visible only once it is durable.
//! Under full-speed ingest a snapshot covers the batches of at least [`MIN_PUBLISH_INTERVAL`];
//! once the writer has caught up with the feed, every batch is published as soon as it is
//! durable. On start the writer restores the board from the last checkpoint and the log's
//! tail, and the feed resumes with the last upstream id stored. A stop ends the feed, lets the
//! writer drain and sync, and writes a final checkpoint; when the log is refusing appends at
//! the time, it also gives up retrying them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use scores_core::{Changes, Fold, Publisher, Scoreboard, Snapshot};
use scores_journal::{DataDir, Journal, JournalError, Options, load_checkpoint, save_checkpoint};
use scores_sse::{ConnectionState, Feed, FeedConfig, FeedItem};
use tokio::sync::{mpsc, watch};

use crate::handle::Pipeline;
use crate::log::{Entry, Log, LogError};

/// How the pipeline runs. [`PipelineConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The upstream SSE feed's URL.
    pub upstream: String,
    /// The data directory: the journal in `journal/`, the checkpoint in `checkpoint`.
    pub data_dir: PathBuf,
    /// The journal's options: when appends reach stable storage, how large a segment grows.
    pub journal: Options,
    /// Write a checkpoint after this many new events, or after as many new events as the board
    /// holds results when that is more.
    pub checkpoint_every: u64,
    /// Passed to the feed: idle timeout, backoff, limits. Its `url` and `last_event_id` are set
    /// by the pipeline.
    pub feed: FeedConfig,
}

impl PipelineConfig {
    /// Defaults: the journal's (fsync every batch, 64 MiB segments), a checkpoint every million
    /// events, the feed's defaults.
    pub fn new(upstream: impl Into<String>, data_dir: impl Into<PathBuf>) -> PipelineConfig {
        PipelineConfig {
            upstream: upstream.into(),
            data_dir: data_dir.into(),
            journal: Options::default(),
            checkpoint_every: 1_000_000,
            feed: FeedConfig::new(""),
        }
    }
}

/// Why the pipeline could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The log could not be opened, read or appended to.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The feed's HTTP client could not be built.
    #[error(transparent)]
    Feed(#[from] scores_sse::BuildError),
    /// A thread could not be started.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A task or thread of the pipeline panicked: a bug, reported rather than hidden.
    #[error("the {0} panicked")]
    Panicked(&'static str),
    /// Asked to stop while the log refused appends. Nothing visible was lost: the events not
    /// yet stored were never acknowledged, and the next start asks the upstream for them
    /// again, after the last event id the log holds.
    #[error(
        "stopped while the log refused appends ({0}); the events received since the last \
         stored one were not kept, and the next start asks the upstream for them again"
    )]
    StoppedWhileRefused(LogError),
}

impl From<JournalError> for PipelineError {
    fn from(error: JournalError) -> PipelineError {
        PipelineError::Log(error.into())
    }
}

/// The writer stops gathering events for one log append once it has this many.
const MAX_BATCH: usize = 65_536;

/// How many batches of events (each what the feed parsed from one chunk of the stream) wait
/// for the writer at most: beyond that, the feed waits, and the upstream behind it.
const QUEUED_BATCHES: usize = 256;

/// While more events wait, the writer hands its changes over to be published at most this
/// often; once it has caught up with the feed, at once. Each hand-over shares every changed
/// student's results with the new snapshot, so the next change to a student copies them. With
/// 200 students and wrk on the same cores, a snapshot per append was ~550 a second; at most
/// every 5 ms, ~280, and ingest ~10% faster (docs/PERFORMANCE.md).
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(5);

/// A started pipeline: completes when it has stopped.
#[derive(Debug)]
pub struct Running(tokio::task::JoinHandle<Result<(), PipelineError>>);

impl Running {
    /// Waits until the pipeline has stopped: after `stop` turned true (the log drained, synced
    /// and checkpointed), or at once on a failure, such as a log that cannot be restored.
    pub async fn wait(self) -> Result<(), PipelineError> {
        self.0.await.map_err(|_| PipelineError::Panicked("pipeline"))?
    }
}

/// Opens the log in `config.data_dir` and starts the pipeline: the writer restores the
/// projections (the handle is not ready until it has), then the feed is read until `stop`
/// turns true. A log that cannot be restored (corruption found while folding it) stops the
/// pipeline with that error: nothing is skipped, and an operator decides.
pub async fn start(
    config: PipelineConfig,
    stop: watch::Receiver<bool>,
) -> Result<(Pipeline, Running), PipelineError> {
    let data_dir = DataDir::new(&config.data_dir);
    let (journal_dir, checkpoint_path) = (data_dir.journal_dir(), data_dir.checkpoint_path());
    let options = config.journal;
    let (journal, recovery) =
        tokio::task::spawn_blocking(move || Journal::open(journal_dir, options))
            .await
            .map_err(|_| PipelineError::Panicked("journal opener"))??;
    if let Some(torn) = &recovery.torn_tail {
        tracing::warn!(segment = %torn.segment.display(), bytes = torn.bytes_dropped, "journal: cut off a torn tail left by a crash");
    }
    tracing::info!(data_dir = %config.data_dir.display(), journaled = recovery.last_seq, "journal open; restoring projections");
    let pipeline = Pipeline::new(Some(journal.reader()));

    // The pipeline stops when asked to, or when its writer fails.
    let (halt_tx, halt) = watch::channel(false);
    let halt_tx = Arc::new(halt_tx);
    let on_stop = halt_tx.clone();
    let mut stop = stop;
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => {}
            () = on_stop.closed() => return,
        }
        let _ = on_stop.send(true);
    });

    let feed_config = FeedConfig {
        url: config.upstream,
        last_event_id: journal.last_upstream_id().to_owned(),
        ..config.feed
    };
    let feed = Feed::new(feed_config)?;
    let (events_tx, events_rx) = mpsc::channel::<Vec<Entry>>(QUEUED_BATCHES);
    let checkpointer = Checkpointer::start(checkpoint_path.clone(), pipeline.clone())
        .map_err(|source| PipelineError::Io { action: "starting the checkpoint writer", source })?;
    let writer = Writer {
        pipeline: pipeline.clone(),
        checkpoint_path,
        checkpointer,
        checkpoint_every: config.checkpoint_every,
        stop: halt.clone(),
    };
    let writer = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer.run(journal, events_rx))
        .map_err(|source| PipelineError::Io { action: "starting the log writer", source })?;
    let mut written = tokio::task::spawn_blocking(move || writer.join());
    let mut feed_task = tokio::spawn(pull_feed(feed, events_tx, pipeline.clone(), halt));

    let running = tokio::spawn(async move {
        // The writer ends first only when it fails (restoring, say): then the feed stops too.
        let (fed, written) = tokio::select! {
            fed = &mut feed_task => (fed, written.await),
            written = &mut written => {
                let _ = halt_tx.send(true);
                (feed_task.await, written)
            }
        };
        let written = match written {
            Ok(Ok(written)) => written,
            _ => Err(PipelineError::Panicked("log writer")),
        };
        fed.map_err(|_| PipelineError::Panicked("feed task"))?;
        written
    });
    Ok((pipeline, Running(running)))
}

/// Pulls the feed until shutdown (or a 204), counting and logging what it does not pass on.
/// Events go to the writer a chunk of the stream at a time: the item awaited, then every item
/// already parsed from the same chunk, as one message.
async fn pull_feed(
    mut feed: Feed,
    events: mpsc::Sender<Vec<Entry>>,
    pipeline: Pipeline,
    mut stop: watch::Receiver<bool>,
) {
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
            counters.events_received.fetch_add(batch.len() as u64, Ordering::Relaxed);
            // While the journal refuses appends the channel stays full and this waits; on a
            // stop the writer gives up and closes the channel, which ends the wait.
            if events.send(std::mem::take(&mut batch)).await.is_err() {
                return;
            }
        }
    }
}

/// The log writer's thread: restores the board, then appends, folds and publishes until the
/// channel closes; then syncs and writes a final checkpoint.
struct Writer {
    pipeline: Pipeline,
    checkpoint_path: PathBuf,
    checkpointer: Checkpointer,
    checkpoint_every: u64,
    stop: watch::Receiver<bool>,
}

impl Writer {
    fn run(
        self,
        mut log: impl Log,
        mut events: mpsc::Receiver<Vec<Entry>>,
    ) -> Result<(), PipelineError> {
        let Writer { pipeline, checkpoint_path, checkpointer, checkpoint_every, stop } = self;
        let started = Instant::now();
        let (mut board, from) = match restore(&log, &checkpoint_path) {
            Ok(restored) => restored,
            Err(error) => {
                pipeline.set_failure(format!("cannot restore the projections: {error}"));
                return Err(error);
            }
        };
        let counters = pipeline.counters();
        counters.events_accepted.store(board.seq(), Ordering::Relaxed);
        counters.events_received.store(board.seq(), Ordering::Relaxed);
        counters.log_last_seq.store(board.seq(), Ordering::Relaxed);
        pipeline.publish(board.snapshot());
        pipeline.set_ready();
        tracing::info!(seq = board.seq(), folded = board.seq() + 1 - from, elapsed = ?started.elapsed(), "projections restored; ready");

        // Folding a batch and publishing the one before run on two threads: with many students,
        // merging a batch into the persistent maps takes as long as folding it.
        let (mut fold, publisher) = board.split();
        let (changes, to_publish) = std::sync::mpsc::sync_channel::<Changes>(1);
        let (last_checkpoint, refused) = std::thread::scope(|scope| {
            let publishing = std::thread::Builder::new()
                .name("publisher".into())
                .spawn_scoped(scope, || {
                    publish_all(publisher, to_publish, &pipeline, (&checkpointer, checkpoint_every))
                })
                .map_err(|source| PipelineError::Io { action: "starting the publisher", source })?;
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut refused = None;
            let mut to_publisher = ToPublisher { changes, last: (fold.seq(), Instant::now()) };
            while let Some(first) = events.blocking_recv() {
                batch.extend(first);
                while batch.len() < MAX_BATCH {
                    match events.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                // Durable first; then folded and handed over to be published. While the log
                // refuses this batch, what earlier ones made durable is published meanwhile.
                let publish_what_is_durable = || {
                    to_publisher.hand_over(&mut fold);
                };
                if let Err(error) = append_until_durable(
                    &mut log,
                    &batch,
                    &pipeline,
                    &stop,
                    publish_what_is_durable,
                ) {
                    refused = Some(error);
                    break;
                }
                fold.apply_all(batch.iter().map(|entry| &entry.event));
                batch.clear();
                if (events.is_empty() || to_publisher.is_due())
                    && !to_publisher.hand_over(&mut fold)
                {
                    break;
                }
            }
            // The publisher publishes what it was handed (and what is durable but was not
            // handed over yet), then ends.
            to_publisher.hand_over(&mut fold);
            drop(to_publisher);
            let last_checkpoint =
                publishing.join().map_err(|_| PipelineError::Panicked("publisher"))?;
            Ok::<_, PipelineError>((last_checkpoint, refused))
        })?;
        // What was stored is synced and checkpointed even when a batch could not be.
        let synced = log.sync();
        let last = (fold.seq() != last_checkpoint).then(|| pipeline.snapshot());
        checkpointer.finish(last);
        if let Some(error) = refused {
            return Err(error);
        }
        synced?;
        tracing::info!(seq = fold.seq(), "log synced and checkpointed");
        Ok(())
    }
}

/// The board as of the log's end: from the checkpoint, when it is usable, and the log's
/// records after it. Also returns the first sequence number folded from the log.
fn restore(log: &impl Log, checkpoint_path: &Path) -> Result<(Scoreboard, u64), PipelineError> {
    let mut board = match load_checkpoint(checkpoint_path) {
        Ok(Some(snapshot)) => Scoreboard::from(snapshot),
        Ok(None) => Scoreboard::new(),
        Err(error) => {
            tracing::warn!(%error, "ignoring the checkpoint; folding the whole log");
            Scoreboard::new()
        }
    };
    if board.seq() >= log.next_seq() {
        tracing::warn!(
            checkpoint = board.seq(),
            log = log.next_seq() - 1,
            "the checkpoint is ahead of the log; folding the whole log"
        );
        board = Scoreboard::new();
    }
    let from = board.seq() + 1;
    for record in log.read_from(from) {
        board.apply(&record?.event);
    }
    Ok((board, from))
}

/// The writer's end of the channel to the publisher thread.
struct ToPublisher {
    changes: SyncSender<Changes>,
    /// The sequence number and time of the last hand-over.
    last: (u64, Instant),
}

impl ToPublisher {
    /// Hands over what `fold` changed since the last hand-over, if anything; false once the
    /// publisher has gone.
    fn hand_over(&mut self, fold: &mut Fold) -> bool {
        if fold.seq() == self.last.0 {
            return true;
        }
        self.last = (fold.seq(), Instant::now());
        self.changes.send(fold.take_changes()).is_ok()
    }

    /// Whether [`MIN_PUBLISH_INTERVAL`] has passed since the last hand-over.
    fn is_due(&self) -> bool {
        self.last.1.elapsed() >= MIN_PUBLISH_INTERVAL
    }
}

/// The publisher thread: turns each batch's changes into the next snapshot, publishes it, and
/// offers checkpoints. Returns the sequence number of the last checkpoint handed over.
fn publish_all(
    mut publisher: Publisher,
    changes: Receiver<Changes>,
    pipeline: &Pipeline,
    (checkpointer, checkpoint_every): (&Checkpointer, u64),
) -> u64 {
    let counters = pipeline.counters();
    let mut seq = pipeline.snapshot().seq();
    let mut last_checkpoint = seq;
    for changes in changes {
        let accepted = changes.seq() - seq;
        seq = changes.seq();
        pipeline.publish(publisher.publish(changes));
        counters.events_accepted.fetch_add(accepted, Ordering::Relaxed);
        // A checkpoint writes the whole board, so one is due only after at least as many
        // events as the board holds results: checkpoints then cost a bounded share of ingest
        // however large the board grows, and restoring folds no more events than the
        // checkpoint holds results. Handed over only when the checkpoint thread is idle;
        // otherwise tried again after the next batch.
        let snapshot = pipeline.snapshot();
        let due = checkpoint_every.max(snapshot.n_results());
        if seq - last_checkpoint >= due && checkpointer.offer(snapshot) {
            last_checkpoint = seq;
        }
    }
    last_checkpoint
}

/// Writes checkpoints on a thread of its own: encoding and writing a board of millions of
/// results takes long enough to stall ingest (17% of the writer's time at 100k students,
/// measured with perf), and the snapshot it writes is immutable anyway.
struct Checkpointer {
    /// A rendezvous channel: a hand-over succeeds only while the thread waits for one.
    snapshots: SyncSender<Arc<Snapshot>>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: PathBuf, pipeline: Pipeline) -> std::io::Result<Checkpointer> {
        let (snapshots, received) = std::sync::mpsc::sync_channel::<Arc<Snapshot>>(0);
        let thread = std::thread::Builder::new().name("checkpointer".into()).spawn(move || {
            for snapshot in received {
                checkpoint(&path, &snapshot, &pipeline);
            }
        })?;
        Ok(Checkpointer { snapshots, thread })
    }

    /// Hands `snapshot` over to be written; `false` (and nothing done) while a checkpoint is
    /// still being written.
    fn offer(&self, snapshot: Arc<Snapshot>) -> bool {
        self.snapshots.try_send(snapshot).is_ok()
    }

    /// Writes `last`, if any, after a checkpoint in progress, and waits until all are written.
    fn finish(self, last: Option<Arc<Snapshot>>) {
        if let Some(snapshot) = last {
            let _ = self.snapshots.send(snapshot);
        }
        drop(self.snapshots);
        if self.thread.join().is_err() {
            tracing::error!("the checkpoint writer panicked; the log still holds everything");
        }
    }
}

fn checkpoint(path: &Path, snapshot: &Snapshot, pipeline: &Pipeline) {
    match save_checkpoint(path, snapshot) {
        Ok(()) => {
            pipeline.counters().checkpoints.fetch_add(1, Ordering::Relaxed);
            tracing::info!(seq = snapshot.seq(), "checkpoint written");
        }
        Err(error) => {
            tracing::error!(%error, "checkpoint failed; the log still holds everything")
        }
    }
}

/// Appends `batch`, retrying with a pause while the log refuses (a full disk, say): the feed
/// waits behind the channel meanwhile, and nothing is dropped; `on_refusal` runs at the first
/// refusal. A log that cannot take appends any more stops the pipeline rather than risk the
/// log; so does a request to stop while appends fail, since retrying would never end.
fn append_until_durable(
    log: &mut impl Log,
    batch: &[Entry],
    pipeline: &Pipeline,
    stop: &watch::Receiver<bool>,
    on_refusal: impl FnOnce(),
) -> Result<(), PipelineError> {
    let counters = pipeline.counters();
    let mut refused = false;
    let mut on_refusal = Some(on_refusal);
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
                return Ok(());
            }
            Err(error) if error.is_fatal() => return Err(error.into()),
            Err(error) => {
                counters.log_errors.fetch_add(1, Ordering::Relaxed);
                refused = true;
                if let Some(on_refusal) = on_refusal.take() {
                    on_refusal();
                }
                pipeline.set_log_refusal(Some(error.to_string()));
                if *stop.borrow() {
                    return Err(PipelineError::StoppedWhileRefused(error));
                }
                tracing::error!(%error, "log append failed; retrying in 1 s");
                // In steps, so that a request to stop is seen within a tenth of a second.
                for _ in 0..10 {
                    if *stop.borrow() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use scores_core::ScoreEvent;
    use scores_journal::FsyncPolicy;

    use super::*;

    fn entry(n: u64) -> Entry {
        let event = ScoreEvent::new("Marvin32", 11_000 + n, 0.5).unwrap();
        Entry { event, upstream_id: Arc::from(n.to_string()) }
    }

    #[test]
    fn a_refused_append_calls_on_refusal_once_and_retries_until_asked_to_stop() {
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
            // After the first retry (one second after the first refusal).
            std::thread::sleep(Duration::from_millis(1_500));
            stop.send(true).unwrap();
        });
        let mut calls = 0;
        let appended =
            append_until_durable(&mut journal, &[entry(2)], &pipeline, &stop_rx, || calls += 1);
        stopper.join().unwrap();

        assert!(matches!(appended, Err(PipelineError::StoppedWhileRefused(_))), "{appended:?}");
        assert_eq!(calls, 1);
        assert!(pipeline.counters().log_errors.load(Ordering::Relaxed) >= 2, "it retried");
        assert!(pipeline.log_refusal().is_some());
    }
}
