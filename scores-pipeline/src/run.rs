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

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use scores_journal::{DataDir, Journal, verify_sealed_segments};
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
    let opened_dir = journal_dir.clone();
    let (journal, recovery) =
        tokio::task::spawn_blocking(move || Journal::open(opened_dir, options))
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
    spawn_verifier(journal_dir, pipeline.clone(), halt.clone());
    let feeding = feed.map(|feed| tokio::spawn(pull_feed(feed, events_tx, pipeline.clone(), halt)));

    // The folder (and the log's appender beside it) ends on a stop, or first when either fails:
    // then the feed stops too.
    let running = supervise(("folder", folding), feeding.map(|task| ("feed task", task)), halt_tx);
    Ok((pipeline, running))
}

/// How fast sealed segments are read to be verified: a small share of a disk's bandwidth, so
/// that verifying a large journal never slows ingest or the queries.
const VERIFY_BYTES_PER_SECOND: u64 = 64 << 20;

/// Verifies the journal's sealed segments once, on a thread of its own, after the projections
/// are restored (so that it does not slow a restart), at most [`VERIFY_BYTES_PER_SECOND`];
/// reports what it finds to `pipeline`. A stop ends it between two segments.
fn spawn_verifier(journal_dir: PathBuf, pipeline: Pipeline, halt: watch::Receiver<bool>) {
    let stopped = move || *halt.borrow();
    let verify = move || {
        while !pipeline.is_ready() {
            if stopped() || pipeline.failure().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let started = Instant::now();
        let mut verified = 0u64;
        let counters = pipeline.counters();
        let paced = verify_sealed_segments(&journal_dir, |bytes| {
            verified += bytes;
            counters.log_bytes_verified.fetch_add(bytes, Ordering::Relaxed);
            let due = Duration::from_secs_f64(verified as f64 / VERIFY_BYTES_PER_SECOND as f64);
            std::thread::sleep(due.saturating_sub(started.elapsed()));
            if stopped() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        match paced {
            Ok(damage) if damage.is_empty() => {
                tracing::info!(bytes = verified, elapsed = ?started.elapsed(), "sealed journal segments verified: no damage");
            }
            Ok(damage) => {
                for error in damage {
                    pipeline.report_damage(error.to_string());
                }
            }
            Err(error) => tracing::warn!(%error, "cannot verify the journal's sealed segments"),
        }
    };
    if let Err(error) = std::thread::Builder::new().name("verifier".into()).spawn(verify) {
        tracing::warn!(%error, "cannot start verifying the journal's sealed segments");
    }
}
