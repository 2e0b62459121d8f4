//! The fold: durable entries, in log order, into the scoreboard; its snapshots published and
//! checkpointed.
//!
//! A [`Folder`] restores the board from the checkpoint (and, for the file journal, the log's
//! records after it), then folds each batch of durable entries on the thread that receives them
//! (the appender, for the file journal, which folds each batch it made durable). A publisher
//! thread merges what was folded into a new snapshot and publishes it while the fold goes on
//! with the next batch: with many students, merging a batch into the persistent maps takes as
//! long as folding it. Under full-speed ingest a snapshot covers the batches of at least
//! [`MIN_PUBLISH_INTERVAL`]; once the fold has caught up, every batch is published as soon as
//! it is durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use scores_core::{Changes, Fold, Publisher, Resolved, Scoreboard, StudentResolver};
use scores_journal::load_checkpoint;

use crate::checkpointer::Checkpointer;
use crate::error::PipelineError;
use crate::handle::Pipeline;
use crate::log::{Cursor, Entry, LogRead};

/// While more batches wait, the folder hands its changes over to be published at most this
/// often; once it has caught up, at once. A hand-over costs the publisher much the same however
/// few events it carries (it copies each chunk of the snapshot's tables that a change touches).
/// With 200 students and wrk on the same cores, a snapshot per append was ~550 a second; at
/// most every 5 ms, ~280, and ingest ~10% faster (docs/PERFORMANCE.md).
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(5);

/// While more batches wait, a hand-over also waits for at least one event folded per this many
/// students. Publishing copies the snapshot's per-student table where a change touches it (16
/// students a chunk): with 100k students and a snapshot every 5 ms (about 4k events at full
/// speed), that was 12 shared pointers copied per event, and a fold of 0.25 M events/s (the
/// memory bench); one event per 4 students bounds it at 4. With the feed's own rate the fold
/// is always caught up, and every batch is published at once.
const STUDENTS_PER_EVENT_PUBLISHED: usize = 4;

/// Records read at a time while restoring.
const RESTORE_CHUNK: usize = 65_536;

/// Events of the tail folded together at restore: each student's results are read once a
/// pass, so a pass is best many times larger than the board's students.
const RESTORE_PASS: usize = 1 << 20;

/// Where the folder restores from before it folds what it is handed.
pub(crate) struct Restore {
    /// The checkpoint file.
    pub(crate) checkpoint: PathBuf,
    /// The log's read side, to fold its records after the checkpoint before the folder is
    /// ready; `None` when the records come through the channel instead.
    pub(crate) tail: Option<Arc<dyn LogRead>>,
    /// The sequence number of the log's last record at start: a checkpoint past it belongs to
    /// another log, and is ignored.
    pub(crate) log_end: u64,
}

pub(crate) struct Folder {
    pipeline: Pipeline,
    checkpointer: Checkpointer,
    checkpoint_every: u64,
}

impl Folder {
    /// A folder publishing to `pipeline`, checkpointing to `checkpoint` every
    /// `checkpoint_every` events, its checkpoint writer started.
    pub(crate) fn start(
        pipeline: &Pipeline,
        checkpoint: PathBuf,
        checkpoint_every: u64,
    ) -> Result<Folder, PipelineError> {
        let checkpointer = Checkpointer::start(checkpoint, pipeline.clone()).map_err(|source| {
            PipelineError::Io { action: "starting the checkpoint writer", source }
        })?;
        Ok(Folder { pipeline: pipeline.clone(), checkpointer, checkpoint_every })
    }

    /// Restores the board, then runs `body` on this thread, which folds through the
    /// [`Folding`] it is given, with the publisher on a thread beside it; then writes a final
    /// checkpoint.
    pub(crate) fn run(
        self,
        restore: Restore,
        body: impl FnOnce(&mut Folding) -> Result<(), PipelineError>,
    ) -> Result<(), PipelineError> {
        let Folder { pipeline, checkpointer, checkpoint_every } = self;
        let started = Instant::now();
        let (mut board, from) = match restore.run() {
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
        pipeline.set_restored(board.seq());
        tracing::info!(seq = board.seq(), folded = board.seq() + 1 - from, elapsed = ?started.elapsed(), "projections restored");

        let (fold, publisher) = board.split();
        let (changes, to_publish) = std::sync::mpsc::sync_channel::<Changes>(1);
        let (last_checkpoint, seq, folded) = std::thread::scope(|scope| {
            let publishing = std::thread::Builder::new()
                .name("publisher".into())
                .spawn_scoped(scope, || {
                    let checkpointing = (&checkpointer, checkpoint_every);
                    publish_all(publisher, to_publish, &pipeline, checkpointing, from - 1)
                })
                .map_err(|source| PipelineError::Io { action: "starting the publisher", source })?;
            let last = (fold.seq(), Instant::now());
            let mut folding = Folding { fold, changes, last };
            let folded = body(&mut folding);
            // The publisher publishes what it was handed, then ends.
            folding.hand_over();
            let seq = folding.seq();
            drop(folding);
            let last_checkpoint =
                publishing.join().map_err(|_| PipelineError::Panicked("publisher"))?;
            Ok::<_, PipelineError>((last_checkpoint, seq, folded))
        })?;
        let last = (seq != last_checkpoint).then(|| pipeline.snapshot());
        checkpointer.finish(last);
        folded?;
        tracing::info!(seq, "projections checkpointed");
        Ok(())
    }
}

/// The fold in progress, and the channel that hands its changes to the publisher thread.
pub(crate) struct Folding {
    fold: Fold,
    changes: SyncSender<Changes>,
    /// The sequence number and time of the last hand-over.
    last: (u64, Instant),
}

impl Folding {
    /// The sequence number of the last entry folded.
    pub(crate) fn seq(&self) -> u64 {
        self.fold.seq()
    }

    /// How many students the board holds.
    pub(crate) fn n_students(&self) -> usize {
        self.fold.n_students()
    }

    /// Folds `entries`, the last numbered `last_seq`: they must follow on from what is folded.
    pub(crate) fn apply(&mut self, last_seq: u64, entries: &[Entry]) -> Result<(), PipelineError> {
        self.check_follows(last_seq, entries.len())?;
        self.fold.apply_all(entries.iter().map(|entry| &entry.event));
        Ok(())
    }

    /// Folds a pass of events resolved by a [`student_resolver`](Self::student_resolver), the
    /// last numbered `last_seq`, in bulk (see [`Fold::apply_resolved`]): for a large part of the
    /// log at once. It must follow on from what is folded.
    pub(crate) fn apply_resolved(
        &mut self,
        last_seq: u64,
        pass: &Resolved,
    ) -> Result<(), PipelineError> {
        self.check_follows(last_seq, pass.events().len())?;
        self.fold.apply_resolved(pass);
        Ok(())
    }

    /// A resolver of passes for [`apply_resolved`](Self::apply_resolved), in step with the fold
    /// as it is now; anything folded another way puts it out of step (a pass out of step is
    /// still folded right, resolved again by the fold).
    pub(crate) fn student_resolver(&mut self) -> StudentResolver {
        self.fold.student_resolver()
    }

    fn check_follows(&self, last_seq: u64, n_events: usize) -> Result<(), PipelineError> {
        let first = (last_seq + 1).saturating_sub(n_events as u64);
        if first != self.fold.seq() + 1 {
            return Err(PipelineError::OutOfOrder { expected: self.fold.seq() + 1, found: first });
        }
        Ok(())
    }

    /// Hands the changes over to be published when `caught_up` (nothing more waits to be
    /// folded), or when [`MIN_PUBLISH_INTERVAL`] has passed since the last hand-over and
    /// enough events were folded since for the board's size; false once the publisher has gone.
    pub(crate) fn publish_if(&mut self, caught_up: bool) -> bool {
        let (last_seq, last_time) = self.last;
        let n_folded = self.fold.seq() - last_seq;
        let due = last_time.elapsed() >= MIN_PUBLISH_INTERVAL
            && n_folded >= (self.fold.n_students() / STUDENTS_PER_EVENT_PUBLISHED) as u64;
        if caught_up || due { self.hand_over() } else { true }
    }

    /// Hands over what was folded since the last hand-over, if anything; false once the
    /// publisher has gone.
    pub(crate) fn hand_over(&mut self) -> bool {
        if self.fold.seq() == self.last.0 {
            return true;
        }
        self.last = (self.fold.seq(), Instant::now());
        self.changes.send(self.fold.take_changes()).is_ok()
    }
}

impl Restore {
    /// The board as of the checkpoint, when it is usable, and the log's tail after it, when
    /// there is one to fold. Also returns the first sequence number folded after the checkpoint.
    fn run(self) -> Result<(Scoreboard, u64), PipelineError> {
        let started = Instant::now();
        let mut board = match load_checkpoint(&self.checkpoint) {
            Ok(Some(board)) => {
                let elapsed = started.elapsed();
                tracing::info!(seq = board.seq(), ?elapsed, "checkpoint loaded");
                board
            }
            Ok(None) => Scoreboard::new(),
            Err(error) => {
                tracing::warn!(%error, "ignoring the checkpoint; folding the whole log");
                Scoreboard::new()
            }
        };
        if board.seq() > self.log_end {
            tracing::warn!(
                checkpoint = board.seq(),
                log = self.log_end,
                "the checkpoint is ahead of the log; folding the whole log"
            );
            board = Scoreboard::new();
        }
        let from = board.seq() + 1;
        if let Some(tail) = self.tail {
            let folded = Instant::now();
            fold_tail(&mut board, tail.cursor(from))?;
            let (n_events, elapsed) = (board.seq() + 1 - from, folded.elapsed());
            tracing::info!(n_events, ?elapsed, "the log's tail after the checkpoint folded");
        }
        Ok((board, from))
    }
}

/// Folds what `cursor` reads into `board`, up to the log's end, in passes of up to
/// [`RESTORE_PASS`] events (see [`Scoreboard::apply_resolved`]): the records are read, checked
/// and resolved on a thread of their own while the last pass is folded.
fn fold_tail(board: &mut Scoreboard, mut cursor: Box<dyn Cursor>) -> Result<(), PipelineError> {
    let mut resolver = board.student_resolver();
    std::thread::scope(|scope| {
        let (sender, passes) = std::sync::mpsc::sync_channel(1);
        let reading = std::thread::Builder::new()
            .name("restore-reader".into())
            .spawn_scoped(scope, move || {
                let mut events = Vec::with_capacity(RESTORE_PASS);
                loop {
                    let records = cursor.read(RESTORE_CHUNK)?;
                    let at_end = records.is_empty();
                    events.extend(records.into_iter().map(|record| record.event));
                    if at_end || events.len() >= RESTORE_PASS {
                        let full = std::mem::replace(&mut events, Vec::with_capacity(RESTORE_PASS));
                        // Stops when the folding side has stopped.
                        if sender.send(resolver.resolve(full)).is_err() || at_end {
                            return Ok::<_, PipelineError>(());
                        }
                    }
                }
            })
            .map_err(|source| PipelineError::Io {
                action: "starting the restore reader",
                source,
            })?;
        for pass in passes {
            board.apply_resolved(&pass);
        }
        reading.join().map_err(|_| PipelineError::Panicked("restore reader"))?
    })
}

/// The publisher thread: turns each batch's changes into the next snapshot, publishes it, and
/// offers checkpoints, the first due after `checkpointed` (the checkpoint restored from, which
/// a tail folded at restore leaves behind). Returns the sequence number of the last checkpoint
/// handed over.
fn publish_all(
    mut publisher: Publisher,
    changes: Receiver<Changes>,
    pipeline: &Pipeline,
    (checkpointer, checkpoint_every): (&Checkpointer, u64),
    checkpointed: u64,
) -> u64 {
    let counters = pipeline.counters();
    let mut seq = pipeline.snapshot().seq();
    let mut last_checkpoint = checkpointed;
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
