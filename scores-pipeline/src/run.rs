//! Starting and stopping the pipeline: feed → log → fold → publish → checkpoint.
//!
//! ```text
//! feed task ─Vec<Entry>─► writer thread ─────────────Changes─► publisher thread
//!  (scores-sse)            (Log::append, then Fold)             (Pipeline::publish, checkpoints)
//! ```
//!
//! On start the writer restores the board from the checkpoint and the log's records after it,
//! then takes events; the feed resumes after the last upstream id the log holds. A stop ends the
//! feed; the writer drains, syncs the log, and writes a final checkpoint. When the log is
//! refusing appends at the time, the writer gives up retrying. A failure anywhere (a log that
//! cannot be restored, say) stops everything, with that error.

use std::path::PathBuf;
use std::sync::Arc;

use scores_journal::{DataDir, Journal, JournalError, Options};
use scores_sse::{Feed, FeedConfig};
use tokio::sync::{mpsc, watch};

use crate::fold::{Folder, Restore};
use crate::handle::Pipeline;
use crate::ingest::{QUEUED_BATCHES, append_and_fold, pull_feed};
use crate::jetstream::JetStreamConfig;
use crate::log::{Entry, Log, LogError};

/// How the pipeline runs. [`PipelineConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The upstream SSE feed's URL; `None` to serve the log as it is, ingesting nothing.
    pub upstream: Option<String>,
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
    /// The log on a NATS JetStream stream, shared by replicas, instead of the file journal; the
    /// data directory then holds this replica's checkpoint only.
    pub jetstream: Option<JetStreamConfig>,
}

impl PipelineConfig {
    /// Defaults: the journal's (fsync every batch, 64 MiB segments), a checkpoint every million
    /// events, the feed's defaults.
    pub fn new(upstream: impl Into<String>, data_dir: impl Into<PathBuf>) -> PipelineConfig {
        PipelineConfig {
            upstream: Some(upstream.into()),
            data_dir: data_dir.into(),
            journal: Options::default(),
            checkpoint_every: 1_000_000,
            feed: FeedConfig::new(""),
            jetstream: None,
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
    /// Records reached the fold out of order: a gap or an overlap in what the log handed over.
    #[error("the log handed over record {found} where {expected} was due")]
    OutOfOrder {
        /// The sequence number due.
        expected: u64,
        /// The one that came.
        found: u64,
    },
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

/// Opens the log in `config.data_dir` and starts the pipeline: the folder restores the
/// projections (the handle is not ready until it has), then the feed is read until `stop`
/// turns true. A log that cannot be restored (corruption found while folding it) stops the
/// pipeline with that error: nothing is skipped, and an operator decides.
pub async fn start(
    mut config: PipelineConfig,
    stop: watch::Receiver<bool>,
) -> Result<(Pipeline, Running), PipelineError> {
    if let Some(jetstream) = config.jetstream.take() {
        return crate::replica::start(config, jetstream, stop).await;
    }
    let data_dir = DataDir::new(&config.data_dir);
    let (journal_dir, checkpoint) = (data_dir.journal_dir(), data_dir.checkpoint_path());
    let options = config.journal;
    let (journal, recovery) =
        tokio::task::spawn_blocking(move || Journal::open(journal_dir, options))
            .await
            .map_err(|_| PipelineError::Panicked("journal opener"))??;
    if let Some(torn) = &recovery.torn_tail {
        tracing::warn!(segment = %torn.segment.display(), bytes = torn.bytes_dropped, "journal: cut off a torn tail left by a crash");
    }
    tracing::info!(data_dir = %config.data_dir.display(), journaled = recovery.last_seq, "journal open; restoring projections");
    let reader = journal.reader();
    let pipeline = Pipeline::new(Some(reader.clone()));
    let (halt_tx, halt) = halt_on(stop);

    let feed = match config.upstream {
        Some(url) => {
            let last_event_id = journal.last_upstream_id().to_owned();
            Some(Feed::new(FeedConfig { url, last_event_id, ..config.feed })?)
        }
        None => None,
    };
    let (events_tx, events_rx) = mpsc::channel::<Vec<Entry>>(QUEUED_BATCHES);
    let folder = Folder::start(&pipeline, checkpoint.clone(), config.checkpoint_every)?;
    let restore = Restore { checkpoint, log_end: reader.last_seq(), tail: Some(reader) };
    let (folder_pipeline, folder_stop, folder_halt) =
        (pipeline.clone(), halt.clone(), halt_tx.clone());
    let mut journal = journal;
    let folding = spawn_thread("folder", move || {
        folder.run(restore, |folding| {
            let stop = (&folder_stop, &*folder_halt);
            append_and_fold(&mut journal, folding, events_rx, &folder_pipeline, stop)
        })
    })?;
    let feeding = feed.map(|feed| tokio::spawn(pull_feed(feed, events_tx, pipeline.clone(), halt)));

    // The folder (and the log's appender beside it) ends on a stop, or first when either fails:
    // then the feed stops too.
    let running = supervise(("folder", folding), feeding.map(|task| ("feed task", task)), halt_tx);
    Ok((pipeline, running))
}

/// Waits for `thread`, the pipeline's main part, to end (on a stop, or first when it fails),
/// then stops the other parts and waits for `task`: the first error is the pipeline's.
pub(crate) fn supervise(
    (name, thread): (&'static str, std::thread::JoinHandle<Result<(), PipelineError>>),
    task: Option<(&'static str, tokio::task::JoinHandle<()>)>,
    halt: Arc<watch::Sender<bool>>,
) -> Running {
    Running(tokio::spawn(async move {
        let ended = finish(name, thread, &halt).await;
        let _ = halt.send(true);
        if let Some((task_name, task)) = task {
            task.await.map_err(|_| PipelineError::Panicked(task_name))?;
        }
        ended
    }))
}

/// A stop signal for the pipeline's parts: it turns true when `stop` does, or when a part
/// sends it on failing.
pub(crate) fn halt_on(
    mut stop: watch::Receiver<bool>,
) -> (Arc<watch::Sender<bool>>, watch::Receiver<bool>) {
    let (halt_tx, halt) = watch::channel(false);
    let halt_tx = Arc::new(halt_tx);
    let on_stop = halt_tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => {}
            () = on_stop.closed() => return,
        }
        let _ = on_stop.send(true);
    });
    (halt_tx, halt)
}

pub(crate) fn spawn_thread(
    name: &'static str,
    work: impl FnOnce() -> Result<(), PipelineError> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<(), PipelineError>>, PipelineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map_err(|source| PipelineError::Io { action: "starting a pipeline thread", source })
}

/// Waits for the thread `name` to end; halts the others when it fails.
pub(crate) async fn finish(
    name: &'static str,
    thread: std::thread::JoinHandle<Result<(), PipelineError>>,
    halt: &watch::Sender<bool>,
) -> Result<(), PipelineError> {
    let ended = tokio::task::spawn_blocking(move || thread.join()).await;
    let ended = match ended {
        Ok(Ok(ended)) => ended,
        _ => Err(PipelineError::Panicked(name)),
    };
    if ended.is_err() {
        let _ = halt.send(true);
    }
    ended
}
