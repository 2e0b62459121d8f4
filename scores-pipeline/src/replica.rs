//! A replica on a JetStream log: it folds the stream, and, when it has an upstream, competes
//! for the lease and ingests while it holds it.
//!
//! ```text
//!                                  ┌─ lease holder only ────────────────────────────────────┐
//! upstream ─► feed task ─► Standby ─► pump ─Vec<Entry>─► writer thread (JetStreamLog, fenced) ─► stream
//!                                                                               │
//!   every replica: stream-reader thread (reads the stream after the checkpoint) ◄┘
//!                  └─Vec<Entry>─► folder thread ─Changes─► publisher thread
//!                                                 (Pipeline::publish, checkpoints)
//! ```
//!
//! The ingesting replica folds what the stream holds, as the others do, never its own
//! batches: so any two replicas at the same sequence number have folded the same events. A
//! replica is ready once its checkpoint is loaded, or, without one, once it has read the
//! stream's end; `Pipeline::lag` says how far behind that end it is while it catches up, and
//! `Pipeline::staleness` how long ago it last heard from the stream. While NATS cannot be reached, every replica
//! serves its last snapshot, the log's status says why, and the ingester's feed waits.
//!
//! Every replica with an upstream keeps its own connection to it (a hot standby), buffering what
//! arrives in its [`Standby`] while another replica ingests. A replica that takes the lease
//! aligns its buffer after the stream's last events and publishes exactly what follows them, so
//! an upstream that cannot resume (no event ids) loses nothing across a takeover; when the
//! buffer cannot be aligned it publishes none of it, says so, and goes on with live events. With
//! ids, a buffer that does not reach back to the stream's end is replaced by a connection that
//! resumes after the stream's last id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use scores_core::{Resolved, ScoreEvent, StudentResolver};
use scores_journal::DataDir;
use scores_sse::{Feed, FeedConfig};
use tokio::sync::{mpsc, watch};

use crate::align::{Alignment, Refusal};
use crate::config::PipelineConfig;
use crate::error::PipelineError;
use crate::fold::{Folder, Folding, Restore};
use crate::handle::{Pipeline, Role};
use crate::ingest::{QUEUED_BATCHES, append_only, pull_feed};
use crate::jetstream::{JetStream, JetStreamConfig, JetStreamLog, JetStreamReader};
use crate::lease::{Lease, LeaseBucket};
use crate::log::{Entry, Log, LogError, LogRead};
use crate::standby::Standby;
use crate::supervise::{Running, halt_on, spawn_thread, supervise};

/// Records folded at a time while following the stream.
const FOLLOW_CHUNK: usize = 65_536;

/// How many reads the stream reader may be ahead of the fold.
const READ_AHEAD: usize = 2;

/// A follower this many events or more behind the stream's end, on a board of at least
/// [`BULK_MIN_STUDENTS`], reads them in passes of this many and folds each in bulk: each
/// student's results are read once a pass rather than once an event.
const BULK_PASS: usize = 1 << 20;

/// The students a board needs before a follower far behind folds in bulk. With 100k students
/// (rows far larger than the cache) a bulk catch-up was 1.33 → 1.77 M events/s on a third less
/// CPU; with 200 (every row in cache) it was half as fast as folding read by read, the reader
/// having become the slower side (docs/PERFORMANCE.md). Between the two, a guess.
const BULK_MIN_STUDENTS: usize = 1 << 15;

/// How often a replica without the lease tries to take it.
const ACQUIRE_EVERY: Duration = Duration::from_millis(250);

/// Starts a replica on the stream `jetstream` names. See the module docs.
pub(crate) async fn start(
    config: PipelineConfig,
    jetstream: JetStreamConfig,
    stop: watch::Receiver<bool>,
) -> Result<(Pipeline, Running), PipelineError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| PipelineError::Io { action: "creating the data directory", source })?;
    let data_dir = DataDir::new(&config.data_dir);
    let checkpoint = data_dir.checkpoint_path();
    let servers = jetstream.servers.join(",");
    let js = JetStream::connect(jetstream).await?;
    let reader = Arc::new(JetStreamReader(js.clone()));
    let pipeline = Pipeline::new(Some(reader.clone()));
    pipeline.set_role(Role::Follower);
    tracing::info!(%servers, stream = %js.config().stream, "following the JetStream log; restoring projections from the checkpoint");
    let (halt_tx, halt) = halt_on(stop);
    tokio::spawn(report_status(js.clone(), pipeline.clone(), servers, halt.clone()));

    let folder = Folder::start(&pipeline, checkpoint.clone(), config.checkpoint_every)?;
    // The stream's records come through the follower, after the checkpoint is loaded.
    let restore = Restore { checkpoint, tail: None, log_end: u64::MAX };
    let (follow_pipeline, follow_halt) = (pipeline.clone(), halt.clone());
    let following = spawn_thread("follower", move || {
        folder.run(restore, |folding| follow(&reader, folding, &follow_halt, &follow_pipeline))
    })?;
    let ingesting = match config.upstream {
        Some(url) => {
            let standby = Arc::new(Standby::open(js.config().standby, &data_dir.standby_dir())?);
            // With ids, a restarted replica resumes where its spool ends.
            let last_event_id = standby.last_upstream_id();
            let feed = FeedConfig { url, last_event_id, ..config.feed };
            let upstream = Upstream::connect(feed, standby, &pipeline, &halt)?;
            Some(tokio::spawn(ingest_while_leased(
                js.clone(),
                upstream,
                pipeline.clone(),
                halt.clone(),
            )))
        }
        None => None,
    };

    let running =
        supervise(("follower", following), ingesting.map(|task| ("ingester", task)), halt_tx);
    Ok((pipeline, running))
}

/// Keeps the pipeline's view of the stream current: its end (for the lag) and whether NATS
/// answers (for readiness).
async fn report_status(
    js: JetStream,
    pipeline: Pipeline,
    servers: String,
    halt: watch::Receiver<bool>,
) {
    let mut tail = js.tail();
    let client = js.context().client();
    loop {
        pipeline.set_log_end(tail.borrow().event);
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let problem = match js.problem() {
            _ if !connected => Some(match js.connect_problem() {
                // `why` names each server with its error.
                Some(why) => format!("cannot reach NATS: {why}"),
                None => format!("cannot reach NATS at {servers}"),
            }),
            problem => problem,
        };
        if problem != pipeline.log_refusal() && pipeline.role() == Some(Role::Follower) {
            pipeline.set_log_refusal(problem);
        }
        if let Some(heard) = js.last_heard() {
            pipeline.heard_from_log(heard);
        }
        tokio::select! {
            changed = tail.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if *halt.borrow() {
            return;
        }
    }
}

/// The follower, on the folder's thread: folds the stream's records after what is folded, as
/// they become durable, until a stop. A `stream-reader` thread reads them ahead of the fold (a
/// read waits on NATS; a fold on memory), at most [`READ_AHEAD`] reads ahead. NATS going away
/// pauses the reader; it resumes where it stopped.
///
/// On a board of at least [`BULK_MIN_STUDENTS`] students, a follower [`BULK_PASS`] events or
/// more behind the stream's end (a new replica, or one that fell behind) folds in bulk: the
/// reader gathers passes of that many events and resolves them on its thread (see
/// [`Fold::apply_resolved`](scores_core::Fold::apply_resolved)), with a resolver the fold makes
/// when it has folded everything read before the reader asked for it.
fn follow(
    reader: &JetStreamReader,
    folding: &mut Folding,
    stop: &watch::Receiver<bool>,
    pipeline: &Pipeline,
) -> Result<(), PipelineError> {
    let (sender, mut reads) = mpsc::channel(READ_AHEAD);
    let (give_resolver, resolvers) = std::sync::mpsc::sync_channel(1);
    let stream_reader = StreamReader { reader, from: folding.seq() + 1, resolvers };
    std::thread::scope(|scope| {
        let reading = std::thread::Builder::new()
            .name("stream-reader".into())
            .spawn_scoped(scope, move || stream_reader.run(stop, &sender))
            .map_err(|source| PipelineError::Io { action: "starting the stream reader", source })?;
        let folded = fold_reads(reader, folding, &mut reads, &give_resolver, pipeline);
        // The reader sees the channel closed, wherever it waits, and ends; the fold sees it
        // closed once the reader has ended (it owns the sender).
        drop((reads, give_resolver));
        let read = reading.join().map_err(|_| PipelineError::Panicked("stream reader"))?;
        folded.and(read)
    })
}

/// What the stream reader hands the fold, in log order. Each read carries the sequence number
/// of its last event.
enum Read {
    /// The records of one read.
    Entries(u64, Vec<Entry>),
    /// A pass of events resolved for a bulk fold.
    Pass(u64, Resolved),
    /// The reader asks for a resolver in step with the fold, which has then folded everything
    /// read before: `None` back when the board is too small to gain from a bulk fold.
    /// Answered through a channel of its own.
    Resolver,
}

/// Folds each read the stream reader hands over, publishing once the fold has caught up with
/// the stream (or as [`Folding::publish_if`] says while more waits), until the reader ends.
fn fold_reads(
    reader: &JetStreamReader,
    folding: &mut Folding,
    reads: &mut mpsc::Receiver<Read>,
    give_resolver: &SyncSender<Option<StudentResolver>>,
    pipeline: &Pipeline,
) -> Result<(), PipelineError> {
    while let Some(read) = reads.blocking_recv() {
        let last_seq = match read {
            Read::Entries(last_seq, entries) => {
                folding.apply(last_seq, &entries)?;
                last_seq
            }
            Read::Pass(last_seq, pass) => {
                folding.apply_resolved(last_seq, &pass)?;
                last_seq
            }
            Read::Resolver => {
                let is_large = folding.n_students() >= BULK_MIN_STUDENTS;
                let resolver = is_large.then(|| folding.student_resolver());
                if give_resolver.send(resolver).is_err() {
                    break;
                }
                continue;
            }
        };
        pipeline.counters().log_last_seq.store(last_seq, Ordering::Relaxed);
        let caught_up = reads.is_empty() && last_seq >= reader.last_seq();
        if !folding.publish_if(caught_up) {
            break;
        }
    }
    Ok(())
}

/// Reads the stream from event `from` on, as it grows.
struct StreamReader<'a> {
    reader: &'a JetStreamReader,
    /// The next event to read.
    from: u64,
    /// The fold's answers to [`Read::Resolver`].
    resolvers: Receiver<Option<StudentResolver>>,
}

impl StreamReader<'_> {
    /// Sends each read to the fold until a stop, or until `reads` is closed.
    fn run(
        mut self,
        stop: &watch::Receiver<bool>,
        reads: &mpsc::Sender<Read>,
    ) -> Result<(), PipelineError> {
        let runtime = self.reader.0.runtime();
        let mut cursor = self.reader.cursor(self.from);
        // A resolver for the passes, and the pass being gathered with it.
        let (mut resolver, mut pass) = (None, Vec::new());
        // Where the reader last asked for a resolver (it asks again a pass later at the
        // soonest), and whether the answer is still due.
        let (mut asked_at, mut answer_due) = (None, false);
        let mut failures = 0u32;
        loop {
            let (mut tail, mut stopped, from) = (self.reader.0.tail(), stop.clone(), self.from);
            let more = runtime.block_on(async {
                tokio::select! {
                    tail = tail.wait_for(|tail| tail.event >= from) => tail.is_ok(),
                    _ = stopped.wait_for(|stopped| *stopped) => false,
                    () = reads.closed() => false,
                }
            });
            if !more {
                return Ok(());
            }
            // The tail may move back meanwhile (a stream deleted and made again).
            let unread = (self.reader.last_seq() + 1).saturating_sub(self.from);
            let far_behind = unread >= BULK_PASS as u64;
            let asked_lately = asked_at.is_some_and(|at| self.from < at + BULK_PASS as u64);
            if far_behind && resolver.is_none() && !answer_due && !asked_lately {
                asked_at = Some(self.from);
                answer_due = true;
                if reads.blocking_send(Read::Resolver).is_err() {
                    return Ok(());
                }
            }
            // The reader reads on meanwhile, so it never waits on the fold: what it sends
            // before the answer comes puts the resolver out of step only if it holds new
            // students, and a pass out of step is resolved again by the fold.
            if answer_due {
                match self.resolvers.try_recv() {
                    Ok(answer) => (resolver, answer_due) = (answer, false),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => return Ok(()),
                }
            }
            let records = match cursor.read(FOLLOW_CHUNK) {
                Ok(records) => records,
                Err(error) if error.is_fatal() => return Err(error.into()),
                Err(error) => {
                    // A moment's hiccup (a leader election) first, then NATS away for longer.
                    failures += 1;
                    let pause = Duration::from_millis(if failures <= 10 { 100 } else { 1000 });
                    if failures > 3 {
                        tracing::warn!(%error, "cannot read the stream; trying again in {pause:?}");
                    }
                    if !self.send_pass(&mut pass, resolver.as_mut(), reads) {
                        return Ok(());
                    }
                    std::thread::sleep(pause);
                    cursor = self.reader.cursor(self.from);
                    continue;
                }
            };
            failures = 0;
            let Some(last_seq) = records.last().map(|record| record.seq) else {
                // The tail says there is more, the cursor finds nothing where it stands: the
                // stream was made again. Look for the next event afresh.
                if !self.send_pass(&mut pass, resolver.as_mut(), reads) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
                cursor = self.reader.cursor(self.from);
                continue;
            };
            self.from = last_seq + 1;
            let sent = match resolver.as_mut() {
                Some(resolver) if far_behind || !pass.is_empty() => {
                    pass.extend(records.into_iter().map(|record| record.event));
                    let full = pass.len() >= BULK_PASS || last_seq >= self.reader.last_seq();
                    !full || self.send_pass(&mut pass, Some(resolver), reads)
                }
                _ => {
                    // Caught up: a resolver held is given up, and asked for afresh next time.
                    resolver = None;
                    let entries = records
                        .into_iter()
                        .map(|record| Entry {
                            event: record.event,
                            upstream_id: record.upstream_id,
                        })
                        .collect();
                    reads.blocking_send(Read::Entries(last_seq, entries)).is_ok()
                }
            };
            if !sent {
                return Ok(());
            }
        }
    }

    /// Resolves and sends the pass gathered so far, if any; false once the fold has gone.
    fn send_pass(
        &self,
        pass: &mut Vec<ScoreEvent>,
        resolver: Option<&mut StudentResolver>,
        reads: &mpsc::Sender<Read>,
    ) -> bool {
        let Some(resolver) = resolver.filter(|_| !pass.is_empty()) else { return true };
        let resolved = resolver.resolve(std::mem::take(pass));
        reads.blocking_send(Read::Pass(self.from - 1, resolved)).is_ok()
    }
}

/// Why an ingester's term ended.
enum TermEnd {
    /// Asked to stop.
    Stopped,
    /// The lease could not be renewed in time, or someone else holds it.
    LeaseLost,
    /// A publish was refused: another ingester had published after this one's last message.
    Fenced,
    /// Something else failed; the replica steps down and competes again.
    Failed(PipelineError),
}

/// A replica's connection to the upstream, kept for its whole life: the feed task that fills
/// the standby buffer, and how to start it again elsewhere in the upstream.
struct Upstream {
    feed: FeedConfig,
    standby: Arc<Standby>,
    pipeline: Pipeline,
    halt: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Connects to the upstream from where it starts a new connection.
    fn connect(
        feed: FeedConfig,
        standby: Arc<Standby>,
        pipeline: &Pipeline,
        halt: &watch::Receiver<bool>,
    ) -> Result<Upstream, PipelineError> {
        let connection = Feed::new(feed.clone())?;
        let task =
            tokio::spawn(pull_feed(connection, standby.clone(), pipeline.clone(), halt.clone()));
        Ok(Upstream { feed, standby, pipeline: pipeline.clone(), halt: halt.clone(), task })
    }

    /// Connects again, resuming after `last_event_id`, and forgets what the old connection
    /// buffered.
    async fn resume_after(&mut self, last_event_id: &str) -> Result<(), PipelineError> {
        let feed = FeedConfig { last_event_id: last_event_id.to_owned(), ..self.feed.clone() };
        let connection = Feed::new(feed)?;
        // Ended before the window is cleared: a task aborted while it runs goes on to its next
        // await, and a batch of the old connection pushed after the clearing would be handed
        // on before the new connection's, out of order.
        self.task.abort();
        let _ = (&mut self.task).await;
        self.standby.clear(self.pipeline.counters());
        let (standby, pipeline) = (self.standby.clone(), self.pipeline.clone());
        self.task = tokio::spawn(pull_feed(connection, standby, pipeline, self.halt.clone()));
        Ok(())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Competes for the lease until a stop; while it holds it, reads the upstream into the stream.
async fn ingest_while_leased(
    js: JetStream,
    mut upstream: Upstream,
    pipeline: Pipeline,
    halt: watch::Receiver<bool>,
) {
    let holder = format!("pid{}-{:08x}", std::process::id(), fastrand::u32(..));
    let mut stopped = halt.clone();
    let mut bucket = loop {
        match LeaseBucket::open(&js).await {
            Ok(bucket) => break bucket,
            Err(error) => {
                tracing::warn!(%error, "cannot open the lease bucket; trying again in 1 s")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopped.wait_for(|stopped| *stopped) => return,
        }
    };
    // The stream's end when this replica first found another holding the lease since it last
    // ingested: once that one has published past it, what this one kept unstored is let go.
    let mut end_under_another = None;
    loop {
        if *halt.borrow() {
            return;
        }
        let lease = match bucket.try_acquire(&holder).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                let end = js.tail().borrow().event;
                match end_under_another {
                    None => end_under_another = Some(end),
                    Some(before) if end > before => upstream.standby.release(),
                    Some(_) => {}
                }
                wait(ACQUIRE_EVERY, &halt).await;
                continue;
            }
            Err(error) => {
                // The bucket may have been deleted: it is made again if so.
                tracing::debug!(%error, "cannot take the lease now");
                wait(ACQUIRE_EVERY, &halt).await;
                if let Ok(reopened) = LeaseBucket::open(&js).await {
                    bucket = reopened;
                }
                continue;
            }
        };
        let term = lease.term();
        pipeline.set_role(Role::Ingester);
        pipeline.set_log_refusal(None);
        pipeline.counters().lease_changes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(term, %holder, "took the ingester's lease: reading the upstream into the stream");
        let ended = ingest_term(&js, lease, &mut upstream, &pipeline, &halt).await;
        upstream.standby.step_down();
        end_under_another = None;
        pipeline.set_role(Role::Follower);
        pipeline.counters().lease_changes.fetch_add(1, Ordering::Relaxed);
        match ended {
            TermEnd::Stopped => {
                tracing::info!(term, "stopped ingesting; the lease is released");
                return;
            }
            TermEnd::LeaseLost => {
                tracing::warn!(
                    term,
                    "lost the ingester's lease (not renewed in time, or taken): stepping down"
                );
            }
            TermEnd::Fenced => {
                pipeline.counters().fenced_publishes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    term,
                    "fenced: another ingester published after this one; stepping down"
                );
            }
            TermEnd::Failed(error) => {
                tracing::warn!(term, %error, "stopped ingesting; stepping down");
                wait(Duration::from_secs(1), &halt).await;
            }
        }
    }
}

/// Waits `pause`, or less if a stop comes first.
async fn wait(pause: Duration, halt: &watch::Receiver<bool>) {
    let mut stopped = halt.clone();
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        _ = stopped.wait_for(|stopped| *stopped) => {}
    }
}

/// One term as the ingester: fences the stream, aligns the standby buffer after the stream's
/// last events, and appends what follows until a stop, the lease is lost, or a publish is
/// fenced.
async fn ingest_term(
    js: &JetStream,
    mut lease: Lease,
    upstream: &mut Upstream,
    pipeline: &Pipeline,
    halt: &watch::Receiver<bool>,
) -> TermEnd {
    let folded = pipeline.snapshot().seq();
    let writer = match JetStreamLog::open(js.clone(), lease.term(), folded).await {
        Ok(writer) => writer,
        Err(LogError::Fenced { .. }) => return TermEnd::Fenced,
        Err(error) => {
            lease.release().await;
            return TermEnd::Failed(error.into());
        }
    };
    if let Err(error) = take_over(&writer, upstream, pipeline).await {
        lease.release().await;
        return TermEnd::Failed(error);
    }
    // The term's own stop: a stop of the pipeline, a lost lease, or the writer ending.
    let (term_stop_tx, term_stop) = watch::channel(false);
    let (events_tx, events_rx) = mpsc::channel::<Vec<Entry>>(QUEUED_BATCHES);
    let standby = upstream.standby.clone();
    let feeding =
        tokio::spawn(pump(standby.clone(), events_tx, pipeline.clone(), term_stop.clone()));
    let (writer_pipeline, writer_stop) = (pipeline.clone(), term_stop.clone());
    let mut writing = tokio::task::spawn_blocking(move || {
        append_only(writer, events_rx, &writer_pipeline, &writer_stop, |n| standby.stored(n))
    });
    let mut stopped = halt.clone();
    let mut written = None;
    let mut lost = false;
    while written.is_none() && !lost {
        let renew = tokio::select! {
            ended = &mut writing => {
                written = Some(ended);
                false
            }
            stop = stopped.wait_for(|stopped| *stopped) => {
                drop(stop);
                break;
            }
            () = tokio::time::sleep(lease.renew_every()) => true,
        };
        if renew {
            match lease.renew().await {
                Ok(true) => {}
                Ok(false) => lost = true,
                Err(error) => tracing::warn!(%error, "cannot renew the lease; trying again"),
            }
        }
    }
    let _ = term_stop_tx.send(true);
    let _ = feeding.await;
    let written = match written {
        Some(written) => written,
        None => writing.await,
    };
    let written = written.unwrap_or(Err(PipelineError::Panicked("stream writer")));
    if !lost {
        lease.release().await;
    }
    match written {
        Err(PipelineError::Log(LogError::Fenced { .. })) => TermEnd::Fenced,
        _ if lost => TermEnd::LeaseLost,
        Ok(()) | Err(PipelineError::StoppedWhileRefused(_)) if *halt.borrow() => TermEnd::Stopped,
        Ok(()) => TermEnd::LeaseLost,
        Err(error) => TermEnd::Failed(error),
    }
}

/// Aligns the standby buffer after the stream's last events, as `writer` found them, and says
/// how it went. With ids, a buffer that does not reach back that far is replaced by a
/// connection that resumes after the stream's last id.
async fn take_over(
    writer: &JetStreamLog,
    upstream: &mut Upstream,
    pipeline: &Pipeline,
) -> Result<(), PipelineError> {
    let counters = pipeline.counters();
    let (alignment, set_aside) = upstream.standby.take_over(writer.run());
    let last_event_id = writer.last_upstream_id();
    match alignment {
        Alignment::From(_) => {
            counters.takeovers_aligned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                next_seq = writer.next_seq(),
                already_stored = set_aside,
                "stream fenced; publishing what the upstream sent after the stream's end"
            );
        }
        Alignment::Refused(Refusal::NotFound) if !last_event_id.is_empty() => {
            counters.takeovers_not_found.fetch_add(1, Ordering::Relaxed);
            tracing::info!(next_seq = writer.next_seq(), %last_event_id, "stream fenced; the standby buffer does not reach the stream's end: resuming the upstream after its last id");
            upstream.resume_after(last_event_id).await?;
        }
        Alignment::Refused(refusal) => {
            let counter = match refusal {
                Refusal::NotFound => &counters.takeovers_not_found,
                Refusal::Ambiguous => &counters.takeovers_ambiguous,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            counters.takeover_skipped.fetch_add(set_aside as u64, Ordering::Relaxed);
            tracing::warn!(
                next_seq = writer.next_seq(),
                reason = refusal.as_str(),
                skipped = set_aside,
                "stream fenced; the standby buffer cannot be aligned after the stream's end: publishing none of it, only what arrives from now on"
            );
        }
    }
    Ok(())
}

/// Hands what the standby buffers to the writer, as it arrives, until `stop`.
async fn pump(
    standby: Arc<Standby>,
    events: mpsc::Sender<Vec<Entry>>,
    pipeline: Pipeline,
    mut stop: watch::Receiver<bool>,
) {
    let counters = pipeline.counters();
    loop {
        let batch = standby.hand_over();
        if batch.is_empty() {
            tokio::select! {
                () = standby.arrival() => continue,
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
        counters.events_received.fetch_add(batch.len() as u64, Ordering::Relaxed);
        // While NATS refuses publishes the channel stays full and this waits, and the standby
        // buffer fills behind it; the writer closing the channel ends the wait.
        if events.send(batch).await.is_err() {
            return;
        }
    }
}
