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

use scores_journal::{DataDir, Journal};
use scores_sse::{Feed, FeedConfig};
use tokio::sync::{mpsc, watch};

use crate::config::PipelineConfig;
use crate::error::PipelineError;
use crate::fold::{Folder, Restore};
use crate::handle::Pipeline;
use crate::ingest::{QUEUED_BATCHES, append_and_fold, pull_feed};
use crate::log::{Entry, Log};
use crate::supervise::{Running, halt_on, spawn_thread, supervise};

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
