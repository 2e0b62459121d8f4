//! The log on NATS JetStream: one stream, replicated by JetStream's own Raft, that every replica
//! folds.
//!
//! Each message of the stream is one of two kinds, told apart by its headers:
//!
//! - a **batch**: a journal batch (`scores_journal::batch`, checksummed) of one or more events,
//!   with `Scores-Seq` the first event's sequence number and `Scores-Count` how many. Events are
//!   numbered 1, 2, 3 … across the whole stream, as the file journal numbers them.
//! - a **fence**: what an ingester publishes when it takes the lease, with `Scores-Fence` its
//!   lease revision, `Scores-Seq` the next event's number, and the last upstream event id stored
//!   as its payload. It holds no event.
//!
//! Every publish names the stream sequence it expects to follow (`Nats-Expected-Last-Sequence`)
//! and carries a `Nats-Msg-Id` (`b` and the first event's number, or `f` and the lease
//! revision). A new ingester's fence moves the stream on, so a deposed ingester's next publish
//! expects a sequence that is no longer the last and is refused: it can never append out of
//! order or twice. A publish retried after a lost acknowledgement is recognised by its id and
//! stored once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{Context, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, Stream};
use async_nats::jetstream::{self, consumer};
use async_nats::{HeaderMap, HeaderValue};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use scores_journal::batch;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::align::ALIGN_RUN;
use crate::log::{Closed, Cursor, Entry, Log, LogError, LogRead, Record};
use crate::nats::{self, ConnectProblem, NatsAuth, NatsTls};
use crate::standby::StandbyLimits;

/// Where the stream is and how it is made. [`JetStreamConfig::new`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The NATS servers, `nats://HOST:PORT` (or `HOST:PORT`), any of the cluster's.
    pub servers: Vec<String>,
    /// The stream's name; its subject is `NAME.events`, its lease bucket `NAME-lease`.
    pub stream: String,
    /// The replication factor the stream and the lease bucket are created with.
    pub replicas: usize,
    /// How long the ingester's lease lasts unless renewed (it is renewed every third of it):
    /// after an ingester is lost, another takes over within about this long.
    pub lease_ttl: Duration,
    /// What a replica with an upstream keeps of it while another ingests (see
    /// [`StandbyLimits`]).
    pub standby: StandbyLimits,
    /// How this replica proves who it is to NATS.
    pub auth: NatsAuth,
    /// TLS to NATS.
    pub tls: NatsTls,
}

impl JetStreamConfig {
    /// A stream named `scores`, one replica, a 3-second lease, [`StandbyLimits::default`], no
    /// credentials and no TLS.
    pub fn new(servers: Vec<String>) -> JetStreamConfig {
        JetStreamConfig {
            servers,
            stream: "scores".to_owned(),
            replicas: 1,
            lease_ttl: Duration::from_secs(3),
            standby: StandbyLimits::default(),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }

    fn subject(&self) -> String {
        format!("{}.events", self.stream)
    }

    /// The lease's key-value bucket.
    pub(crate) fn lease_bucket(&self) -> String {
        format!("{}-lease", self.stream)
    }
}

/// How long a JetStream request or a publish's acknowledgement may take before it is retried
/// (async-nats waits 5 s). A stream's replicas acknowledge in milliseconds; while the stream has
/// no leader (one is being elected after a node was lost) a request goes unanswered, and a
/// shorter wait retries sooner once a leader is there. A retried publish is stored once: its
/// message id is deduplicated.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the tail watcher waits for a new message before it asks the stream how it is.
const QUIET_CHECK: Duration = Duration::from_secs(2);

const SEQ: &str = "Scores-Seq";
const COUNT: &str = "Scores-Count";
const FENCE: &str = "Scores-Fence";

/// How far the stream goes: its last message, and the last event's number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    /// The stream sequence of the last message (0 for an empty stream).
    pub(crate) message: u64,
    /// The number of the last event (0 before any).
    pub(crate) event: u64,
}

/// A connection to the stream, shared by the writer and every reader.
#[derive(Clone, Debug)]
pub(crate) struct JetStream {
    context: Context,
    config: JetStreamConfig,
    subject: String,
    /// The stream's tail as last seen, kept by [`watch_tail`].
    tail: watch::Receiver<Tail>,
    /// Why the tail cannot be followed now (the stream is missing, say), while it cannot.
    problem: Arc<std::sync::Mutex<Option<String>>>,
    /// Why the client cannot connect, while it cannot.
    connect_problem: ConnectProblem,
    /// When the stream last answered: its state read, or a message of it seen.
    last_heard: Arc<std::sync::Mutex<Option<Instant>>>,
    runtime: Handle,
}

impl JetStream {
    /// Connects (in the background: a server that is down at start is retried until it is up)
    /// and starts following the stream's tail. Call on the runtime.
    pub(crate) async fn connect(config: JetStreamConfig) -> Result<JetStream, LogError> {
        let (client, connect_problem) = nats::connect(&config.servers, &config.auth, &config.tls)
            .await
            .map_err(LogError::Nats)?;
        let mut context = jetstream::new(client);
        context.set_timeout(REQUEST_TIMEOUT);
        let (tail_tx, tail) = watch::channel(Tail::default());
        let subject = config.subject();
        let (problem, last_heard) = (Arc::default(), Arc::default());
        let runtime = Handle::current();
        let js = JetStream {
            context,
            config,
            subject,
            tail,
            problem,
            connect_problem,
            last_heard,
            runtime,
        };
        tokio::spawn(watch_tail(js.clone(), tail_tx));
        Ok(js)
    }

    /// The runtime the connection runs on: blocking callers `block_on` it.
    pub(crate) fn runtime(&self) -> Handle {
        self.runtime.clone()
    }

    pub(crate) fn context(&self) -> &Context {
        &self.context
    }

    pub(crate) fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    /// Why the stream's end cannot be followed now, while it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem.lock().map(|problem| problem.clone()).unwrap_or_default()
    }

    /// Why the client cannot connect to NATS (a refused credential, an untrusted certificate, a
    /// server down), while it cannot.
    pub(crate) fn connect_problem(&self) -> Option<String> {
        self.connect_problem.get()
    }

    /// When the stream last answered; `None` before it first does.
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        self.last_heard.lock().map(|heard| *heard).unwrap_or_default()
    }

    fn heard(&self) {
        if let Ok(mut heard) = self.last_heard.lock() {
            *heard = Some(Instant::now());
        }
    }

    fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut slot) = self.problem.lock() {
            *slot = problem;
        }
    }

    /// The stream as it was last seen to end.
    pub(crate) fn tail(&self) -> watch::Receiver<Tail> {
        self.tail.clone()
    }

    /// The stream, created (with the configured replicas) when it does not exist.
    pub(crate) async fn stream(&self) -> Result<Stream, LogError> {
        let config = stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![self.subject.clone()],
            num_replicas: self.config.replicas,
            storage: stream::StorageType::File,
            allow_direct: true,
            duplicate_window: Duration::from_secs(120),
            ..stream::Config::default()
        };
        self.context.get_or_create_stream(config).await.map_err(|error| {
            LogError::Nats(format!("opening stream {}: {error}", self.config.stream))
        })
    }

    /// The stream, without asking the server anything: for reading one known to exist.
    async fn existing_stream(&self) -> Result<Stream<()>, LogError> {
        self.context.get_stream_no_info(&self.config.stream).await.map_err(|error| {
            LogError::Nats(format!("opening stream {}: {error}", self.config.stream))
        })
    }

    /// The message at stream sequence `sequence`; `None` when there is none (past the end).
    async fn message<I>(
        &self,
        stream: &Stream<I>,
        sequence: u64,
    ) -> Result<Option<Message>, LogError> {
        // A direct get answers with the message as it is stored, from any of the stream's
        // replicas; the API's get, from the leader only, wraps it in JSON with the payload in
        // base64, which cost more CPU than the fold. A replica that has not stored the message
        // yet answers "not found": then the leader is asked.
        match stream.direct_get(sequence).await {
            Ok(message) if message.sequence == sequence => {
                Message::decode(&message.headers, &message.payload, sequence).map(Some)
            }
            Ok(message) => {
                tracing::warn!(
                    sequence,
                    answered = message.sequence,
                    "a direct get answered with another message; asking the leader"
                );
                self.message_from_leader(stream, sequence).await
            }
            Err(_) => self.message_from_leader(stream, sequence).await,
        }
    }

    /// The message at stream sequence `sequence` as the stream's leader has it; `None` when there
    /// is none (past the end).
    async fn message_from_leader<I>(
        &self,
        stream: &Stream<I>,
        sequence: u64,
    ) -> Result<Option<Message>, LogError> {
        match stream.get_raw_message(sequence).await {
            Ok(message) => Message::decode(&message.headers, &message.payload, sequence).map(Some),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(error) => Err(LogError::Nats(format!("reading message {sequence}: {error}"))),
        }
    }

    /// The stream's last events from the upstream, oldest first, at most [`ALIGN_RUN`]: read
    /// back from `last` (message `last_seq`) to the last fence after which the stream holds
    /// any, so that they are one ingester's, consecutive as the upstream sent them.
    async fn read_run<I>(
        &self,
        stream: &Stream<I>,
        mut last: Option<Message>,
        mut last_seq: u64,
    ) -> Result<Vec<Entry>, LogError> {
        let mut run = Vec::new();
        while let Some(message) = last {
            match message {
                Message::Batch(records) => {
                    for record in records.into_iter().rev().take(ALIGN_RUN - run.len()) {
                        run.push(Entry { event: record.event, upstream_id: record.upstream_id });
                    }
                }
                Message::Fence { .. } if !run.is_empty() => break,
                Message::Fence { .. } => {}
            }
            if run.len() >= ALIGN_RUN || last_seq <= 1 {
                break;
            }
            last_seq -= 1;
            last = self.message_from_leader(stream, last_seq).await?;
        }
        run.reverse();
        Ok(run)
    }

    /// Where the stream ends, the upstream id stored last, and the run of events before it
    /// (see [`read_run`](Self::read_run)).
    async fn read_end<I>(
        &self,
        stream: &Stream<I>,
    ) -> Result<(Tail, String, Vec<Entry>), LogError> {
        let (tail, last) = self.read_tail(stream).await?;
        let last_upstream_id = last.as_ref().map_or("", Message::last_upstream_id).to_owned();
        let run = self.read_run(stream, last, tail.message).await?;
        Ok((tail, last_upstream_id, run))
    }

    /// The tail as the stream reports it now.
    async fn read_tail<I>(&self, stream: &Stream<I>) -> Result<(Tail, Option<Message>), LogError> {
        let info = stream
            .get_info()
            .await
            .map_err(|error| LogError::Nats(format!("reading the stream's state: {error}")))?;
        let last = info.state.last_sequence;
        if last == 0 {
            self.heard();
            return Ok((Tail::default(), None));
        }
        // From the leader: a writer numbers its events from what this says.
        let message = self.message_from_leader(stream, last).await?.ok_or_else(|| {
            LogError::Nats(format!("the stream's last message ({last}) cannot be read"))
        })?;
        self.heard();
        Ok((Tail { message: last, event: message.last_event() }, Some(message)))
    }
}

/// One message of the stream, decoded.
#[derive(Debug)]
enum Message {
    Batch(Vec<Record>),
    Fence { next_seq: u64, last_upstream_id: String },
}

impl Message {
    /// Whether this message can come next when event `from` is due: a fence, or a batch that
    /// starts at or before it.
    fn follows(&self, from: u64) -> bool {
        match self {
            Message::Batch(records) => records.first().is_some_and(|first| first.seq <= from),
            Message::Fence { .. } => true,
        }
    }

    fn decode(headers: &HeaderMap, payload: &[u8], sequence: u64) -> Result<Message, LogError> {
        let corrupt = |reason: String| LogError::Corrupt { message: sequence, reason };
        let seq = header_u64(headers, SEQ).ok_or_else(|| corrupt(format!("no {SEQ} header")))?;
        if headers.get(FENCE).is_some() {
            let last_upstream_id = std::str::from_utf8(payload)
                .map_err(|_| corrupt("a fence whose upstream id is not UTF-8".to_owned()))?;
            return Ok(Message::Fence {
                next_seq: seq,
                last_upstream_id: last_upstream_id.to_owned(),
            });
        }
        let records = batch::decode(payload).map_err(|error| corrupt(error.to_string()))?;
        match records.first() {
            Some(first) if first.seq == seq => Ok(Message::Batch(records)),
            Some(first) => Err(corrupt(format!("{SEQ} is {seq}, its first event {}", first.seq))),
            None => Err(corrupt("a batch without events".to_owned())),
        }
    }

    /// The number of the last event the stream holds once it holds this message.
    fn last_event(&self) -> u64 {
        match self {
            Message::Batch(records) => records.last().map_or(0, |record| record.seq),
            Message::Fence { next_seq, .. } => next_seq - 1,
        }
    }

    fn last_upstream_id(&self) -> &str {
        match self {
            Message::Batch(records) => records.last().map_or("", |record| &record.upstream_id),
            Message::Fence { last_upstream_id, .. } => last_upstream_id,
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.as_str().parse().ok()
}

/// Keeps `tail` at the stream's end: the tail as read at start, then each new message's
/// headers from an ordered consumer (no payloads). A consumer that fails is made again.
async fn watch_tail(js: JetStream, tail: watch::Sender<Tail>) {
    loop {
        match follow_tail(&js, &tail).await {
            Ok(()) => return,
            Err(error) => {
                // Before the stream has ever answered, this is a cluster starting (the ingester
                // has not made the stream yet): said, not warned of; `/readyz` names it.
                if js.problem().is_none() && js.last_heard().is_none() {
                    tracing::info!(%error, "the stream cannot be read yet; looking again every second");
                } else if js.problem().is_none() {
                    tracing::warn!(%error, "cannot follow the stream; looking again every second");
                }
                js.set_problem(Some(error.to_string()));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = tail.closed() => return,
        }
    }
}

async fn follow_tail(js: &JetStream, tail: &watch::Sender<Tail>) -> Result<(), LogError> {
    let nats = |error: &dyn std::fmt::Display| LogError::Nats(error.to_string());
    // Followed, never created: the ingester creates the stream (see `JetStreamLog::open`).
    let stream = js.existing_stream().await?;
    let (now, _) = js.read_tail(&stream).await?;
    if js.problem().is_some() {
        tracing::info!("following the stream again");
        js.set_problem(None);
    }
    // As the stream is now, even if that is not after what was seen: it may have been made
    // again since.
    tail.send_if_modified(|seen| {
        let changed = *seen != now;
        *seen = now;
        changed
    });
    let config = consumer::pull::OrderedConfig {
        headers_only: true,
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: now.message + 1,
        },
        ..consumer::pull::OrderedConfig::default()
    };
    let consumer = stream.create_consumer(config).await.map_err(|e| nats(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| nats(&e))?;
    loop {
        // The consumer makes itself again when the stream is lost, and says nothing while it
        // cannot (a lost NATS node held it, say, until its missed heartbeats are noticed): a
        // quiet stream is asked whether it still exists, and how far it goes, so that the
        // followers move on meanwhile.
        let message = tokio::select! {
            message = messages.next() => message,
            () = tokio::time::sleep(QUIET_CHECK) => {
                let (now, _) = js.read_tail(&stream).await?;
                if now.message < tail.borrow().message {
                    return Err(LogError::Nats("the stream was replaced".into()));
                }
                tail.send_if_modified(|seen| advance(seen, now));
                continue;
            }
            () = tail.closed() => return Ok(()),
        };
        let Some(message) = message else {
            return Err(LogError::Nats("the consumer ended".into()));
        };
        let message = message.map_err(|e| nats(&e))?;
        js.heard();
        let info = message.info().map_err(|e| nats(&e))?;
        let headers = message.headers.clone().unwrap_or_default();
        let seq = header_u64(&headers, SEQ).unwrap_or(0);
        let event = if headers.get(FENCE).is_some() {
            seq.saturating_sub(1)
        } else {
            seq + header_u64(&headers, COUNT).unwrap_or(1) - 1
        };
        let now = Tail { message: info.stream_sequence, event };
        tail.send_if_modified(|seen| advance(seen, now));
    }
}

fn advance(seen: &mut Tail, now: Tail) -> bool {
    if now.message > seen.message {
        *seen = now;
        true
    } else {
        false
    }
}

/// Connects to the stream `config` names and returns its read side, with the number of the
/// last event the stream holds now: for reading a stream whole, as `scores replay` does. Call
/// on a multi-threaded tokio runtime; read the cursors off it.
pub async fn open_reader(config: JetStreamConfig) -> Result<(Arc<dyn LogRead>, u64), LogError> {
    let js = JetStream::connect(config).await?;
    let opened = async {
        let stream = js.existing_stream().await?;
        let (now, _) = js.read_tail(&stream).await?;
        let mut tail = js.tail();
        let seen = tail.wait_for(|seen| *seen == now);
        if !matches!(tokio::time::timeout(Duration::from_secs(10), seen).await, Ok(Ok(_))) {
            return Err(LogError::Nats("the stream's end could not be followed".to_owned()));
        }
        Ok(now.event)
    };
    match opened.await {
        Ok(last) => Ok((Arc::new(JetStreamReader(js)), last)),
        // Not connected: why (a refused credential, say), rather than that a request timed out.
        Err(error) => Err(js
            .connect_problem()
            .map_or(error, |why| LogError::Nats(format!("cannot connect: {why}")))),
    }
}

/// The read side of the stream.
#[derive(Clone, Debug)]
pub(crate) struct JetStreamReader(pub(crate) JetStream);

impl LogRead for JetStreamReader {
    fn last_seq(&self) -> u64 {
        self.0.tail.borrow().event
    }

    fn wait_beyond(&self, seq: u64) -> BoxFuture<'static, Result<u64, Closed>> {
        let mut tail = self.0.tail();
        Box::pin(async move {
            let tail = tail.wait_for(|tail| tail.event > seq).await.map_err(|_| Closed)?;
            Ok(tail.event)
        })
    }

    fn cursor(&self, from: u64) -> Box<dyn Cursor> {
        Box::new(JetStreamCursor {
            js: self.0.clone(),
            from: from.max(1),
            next_message: None,
            pending: VecDeque::new(),
        })
    }
}

/// Reads the stream from an event number: finds the message that holds it (a binary search
/// over the stream's sequence numbers), then reads message after message.
struct JetStreamCursor {
    js: JetStream,
    /// The next event to read from the stream.
    from: u64,
    /// The stream sequence of the next message to read, once found.
    next_message: Option<u64>,
    /// Records read from the stream and not yet returned: a message may hold more than a read
    /// asks for.
    pending: VecDeque<Record>,
}

impl JetStreamCursor {
    async fn read_async(&mut self, max: usize) -> Result<Vec<Record>, LogError> {
        let tail = *self.js.tail.borrow();
        if self.pending.len() < max && tail.event >= self.from {
            let stream = self.js.existing_stream().await?;
            let mut next = match self.next_message {
                Some(next) => next,
                None => locate(&self.js, &stream, self.from, tail.message).await?,
            };
            while self.pending.len() < max && next <= tail.message {
                // The tail said it is there; a server that has not applied it yet (a stream
                // leader just elected, say) may not know it for a moment.
                let not_yet = || LogError::Nats(format!("message {next} is not readable yet"));
                let mut message = self.js.message(&stream, next).await?.ok_or_else(not_yet)?;
                // Events are numbered without gaps across messages: one that starts after the
                // next event due is not the one that follows. A node that answered a direct get
                // may disagree with the stream's leader (seen when a node joined a cluster
                // with another stream of the same name in its store): the leader's word is taken.
                if !message.follows(self.from) {
                    message =
                        self.js.message_from_leader(&stream, next).await?.ok_or_else(not_yet)?;
                    if !message.follows(self.from) {
                        return Err(LogError::Nats(format!(
                            "message {next} does not hold event {}, the next due",
                            self.from
                        )));
                    }
                }
                next += 1;
                self.next_message = Some(next);
                if let Message::Batch(batch) = message {
                    let from = self.from;
                    self.pending.extend(batch.into_iter().filter(|record| record.seq >= from));
                }
                if let Some(last) = self.pending.back() {
                    self.from = last.seq + 1;
                }
            }
        }
        let n = max.min(self.pending.len());
        Ok(self.pending.drain(..n).collect())
    }
}

impl Cursor for JetStreamCursor {
    fn read(&mut self, max: usize) -> Result<Vec<Record>, LogError> {
        let runtime = self.js.runtime.clone();
        runtime.block_on(self.read_async(max))
    }
}

/// The stream sequence of the message to read first for events from `from`: the last message
/// whose `Scores-Seq` is at most `from` (1 when there is none).
async fn locate<I>(
    js: &JetStream,
    stream: &Stream<I>,
    from: u64,
    last: u64,
) -> Result<u64, LogError> {
    let info = stream
        .get_info()
        .await
        .map_err(|error| LogError::Nats(format!("reading the stream's state: {error}")))?;
    let (mut low, mut high) = (info.state.first_sequence.max(1), last);
    // Invariant: every message before `low` starts at or before `from`; every message after
    // `high` starts after it.
    let mut found = low;
    while low <= high {
        let middle = low + (high - low) / 2;
        let first = match js.message(stream, middle).await? {
            Some(Message::Batch(records)) => records.first().map_or(0, |record| record.seq),
            Some(Message::Fence { next_seq, .. }) => next_seq,
            None => return Err(LogError::Nats(format!("message {middle} is not readable yet"))),
        };
        if first <= from {
            found = middle;
            low = middle + 1;
        } else {
            high = middle - 1;
        }
    }
    Ok(found)
}

/// The writer's side of the stream, for an ingester: [`Log`] on JetStream. Appends are fenced by
/// the stream sequence of the last message this writer saw; a writer opened later (with another
/// term) moves the stream on, and from then on this one's appends fail with
/// [`LogError::Fenced`].
#[derive(Debug)]
pub struct JetStreamLog {
    js: JetStream,
    /// The number the next event gets.
    next_seq: u64,
    /// The stream sequence of the last message: the one the next publish expects to follow.
    last_message: u64,
    last_upstream_id: String,
    /// The batch an append stored part of before it failed: its length, first entry and how
    /// many of its entries are stored. A retry with the same batch stores only the rest.
    in_flight: Option<(usize, Entry, usize)>,
    n_appends: u64,
    /// The stream's last events from the upstream when this writer opened it: where a standby
    /// aligns.
    run: Vec<Entry>,
}

impl JetStreamLog {
    /// The stream's last events from the upstream (at most [`ALIGN_RUN`], oldest first) as
    /// they were when this writer opened it, before its fence.
    pub(crate) fn run(&self) -> &[Entry] {
        &self.run
    }

    /// Connects to the stream `config` names (creating it if it is missing) and opens it for
    /// appends under `term`, which must be unique to this writer (the ingester's lease
    /// revision): the writer publishes a fence under it first, after which no writer opened
    /// before it can append. Call on a multi-threaded tokio runtime; the [`Log`] methods then
    /// block on it, so call those off it.
    pub async fn connect(config: JetStreamConfig, term: u64) -> Result<JetStreamLog, LogError> {
        let js = JetStream::connect(config).await?;
        JetStreamLog::open(js, term, 0).await
    }

    /// Reads where the stream ends and publishes this ingester's fence after it. Fails with
    /// [`LogError::Fenced`] when another publish came in between. `folded` is how far this
    /// replica has folded: a stream that ends before it was deleted or replaced since, and is
    /// not appended to ([`LogError::Diverged`]); with `folded` 0 a missing stream is created.
    pub(crate) async fn open(
        js: JetStream,
        term: u64,
        folded: u64,
    ) -> Result<JetStreamLog, LogError> {
        // The stream's end, its last message's upstream id, and the run of events before it.
        let (tail, last_upstream_id, run) = if folded == 0 {
            js.read_end(&js.stream().await?).await?
        } else {
            js.read_end(&js.existing_stream().await?).await?
        };
        if tail.event < folded {
            return Err(LogError::Diverged { stream_end: tail.event, folded });
        }
        let mut writer = JetStreamLog {
            js,
            next_seq: tail.event + 1,
            last_message: tail.message,
            last_upstream_id,
            in_flight: None,
            n_appends: 0,
            run,
        };
        let mut headers = HeaderMap::new();
        headers.insert(SEQ, HeaderValue::from(writer.next_seq));
        headers.insert(FENCE, HeaderValue::from(term));
        let payload = bytes::Bytes::from(writer.last_upstream_id.clone().into_bytes());
        // The term alone would repeat when the lease's bucket is made again (its revisions
        // start over), and within the duplicate window the stream would answer a new fence
        // with an old one's acknowledgement. With the position too, only a retry of this very
        // fence is a duplicate.
        writer.publish(headers, payload, format!("f{term}-{}", writer.next_seq)).await?;
        Ok(writer)
    }

    /// Publishes one message after the last, fenced; on success it is the last.
    async fn publish(
        &mut self,
        headers: HeaderMap,
        payload: bytes::Bytes,
        id: String,
    ) -> Result<(), LogError> {
        let message = PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(id)
            .expected_last_sequence(self.last_message);
        let published =
            async { self.js.context.send_publish(self.js.subject.clone(), message).await?.await };
        match published.await {
            Ok(ack) => {
                self.last_message = ack.sequence;
                Ok(())
            }
            Err(error) => Err(self.publish_error(error)),
        }
    }

    async fn append_async(&mut self, entries: &[Entry]) -> Result<u64, LogError> {
        let resumed = match (&self.in_flight, entries.first()) {
            (Some((len, first, done)), Some(entry)) if *len == entries.len() && first == entry => {
                *done
            }
            _ => 0,
        };
        let max_payload = match self.js.context.client().server_info().max_payload {
            0 => 1 << 20,
            max => max,
        };
        // Room for the headers, generously.
        let limit = max_payload.saturating_sub(4096).max(batch::HEADER_LEN + 1);
        // The batch as messages, each within the server's limit, all published before the
        // first acknowledgement is awaited: each names the stream sequence it follows, the
        // last acknowledged plus the messages sent before it, since this writer is the only one.
        let mut sent = Vec::new();
        let mut failed = None;
        let (mut start, mut first_seq) = (resumed, self.next_seq);
        while start < entries.len() {
            let mut end = start;
            let mut bytes = batch::HEADER_LEN;
            while end < entries.len()
                && (end == start || bytes + batch::encoded_len(&entries[end]) <= limit)
            {
                bytes += batch::encoded_len(&entries[end]);
                end += 1;
            }
            let chunk = &entries[start..end];
            let mut payload = Vec::with_capacity(bytes);
            batch::encode(chunk, first_seq, &mut payload);
            let mut headers = HeaderMap::new();
            headers.insert(SEQ, HeaderValue::from(first_seq));
            headers.insert(COUNT, HeaderValue::from(chunk.len() as u64));
            let message = PublishMessage::build()
                .payload(payload.into())
                .headers(headers)
                .message_id(format!("b{first_seq}"))
                .expected_last_sequence(self.last_message + sent.len() as u64);
            match self.js.context.send_publish(self.js.subject.clone(), message).await {
                Ok(ack) => sent.push((ack, end)),
                Err(error) => {
                    failed = Some(self.publish_error(error));
                    break;
                }
            }
            first_seq += chunk.len() as u64;
            start = end;
        }
        // Counted in order, up to the first that failed.
        let mut done = resumed;
        let mut ack_failed = None;
        for (ack, end) in sent {
            match ack.await {
                Ok(ack) if ack_failed.is_none() => {
                    self.last_message = ack.sequence;
                    self.next_seq += (end - done) as u64;
                    if let Some(last) = entries.get(end - 1) {
                        self.last_upstream_id = last.upstream_id.to_string();
                    }
                    done = end;
                }
                Ok(_) => {}
                Err(error) => ack_failed = ack_failed.or(Some(self.publish_error(error))),
            }
        }
        if let Some(error) = ack_failed.or(failed) {
            if let Some(entry) = entries.first() {
                self.in_flight = Some((entries.len(), entry.clone(), done));
            }
            return Err(error);
        }
        self.in_flight = None;
        self.n_appends += 1;
        Ok(self.next_seq - 1)
    }

    fn publish_error(&self, error: PublishError) -> LogError {
        match error.kind() {
            PublishErrorKind::WrongLastSequence => LogError::Fenced { expected: self.last_message },
            PublishErrorKind::StreamNotFound => {
                LogError::StreamMissing(self.js.config.stream.clone())
            }
            _ => LogError::Nats(format!("publishing: {error}")),
        }
    }
}

impl Log for JetStreamLog {
    fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn last_upstream_id(&self) -> &str {
        &self.last_upstream_id
    }

    fn append(&mut self, entries: &[Entry]) -> Result<u64, LogError> {
        let runtime = self.js.runtime.clone();
        runtime.block_on(self.append_async(entries))
    }

    fn sync(&mut self) -> Result<(), LogError> {
        // A publish is acknowledged once the stream's replicas hold it.
        Ok(())
    }

    fn n_syncs(&self) -> u64 {
        self.n_appends
    }

    fn read_from(&self, from: u64) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_> {
        let mut cursor = self.reader().cursor(from);
        let mut chunk = std::collections::VecDeque::new();
        let mut failed = false;
        Box::new(std::iter::from_fn(move || {
            if chunk.is_empty() && !failed {
                match cursor.read(4096) {
                    Ok(records) => chunk.extend(records),
                    Err(error) => {
                        failed = true;
                        return Some(Err(error));
                    }
                }
            }
            chunk.pop_front().map(Ok)
        }))
    }

    fn reader(&self) -> Arc<dyn LogRead> {
        Arc::new(JetStreamReader(self.js.clone()))
    }
}
