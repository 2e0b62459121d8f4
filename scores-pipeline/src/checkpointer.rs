//! Checkpoints: the published snapshot written beside the log, so that a restart folds only
//! what came after it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;

use scores_core::Snapshot;
use scores_journal::save_checkpoint;

use crate::handle::Pipeline;

/// Writes checkpoints on a thread of its own: encoding and writing a board of millions of
/// results takes long enough to stall ingest (17% of the writer's time at 100k students,
/// measured with perf), and the snapshot it writes is immutable anyway.
pub(crate) struct Checkpointer {
    /// A rendezvous channel: a hand-over succeeds only while the thread waits for one.
    snapshots: SyncSender<Arc<Snapshot>>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    pub(crate) fn start(path: PathBuf, pipeline: Pipeline) -> std::io::Result<Checkpointer> {
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
    pub(crate) fn offer(&self, snapshot: Arc<Snapshot>) -> bool {
        self.snapshots.try_send(snapshot).is_ok()
    }

    /// Writes `last`, if any, after a checkpoint in progress, and waits until all are written.
    pub(crate) fn finish(self, last: Option<Arc<Snapshot>>) {
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
