//! A replica of a JetStream log (the pipeline, no HTTP) when its stream goes away: it keeps its
//! snapshot, says why it cannot follow, never fails or panics, and follows again once the
//! stream is back. And one that never reached its log is not ready until it has read it.

#![allow(clippy::unwrap_used)]

#[path = "support/nats.rs"]
mod nats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use scores_core::ScoreEvent;
use scores_pipeline::log::{Entry, Log};
use scores_pipeline::{JetStreamConfig, JetStreamLog, PipelineConfig};
use tokio::sync::watch;

fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
    range
        .map(|n| Entry {
            event: ScoreEvent::new("Marvin32", 100 + n, 0.5).unwrap(),
            upstream_id: Arc::from(n.to_string()),
        })
        .collect()
}

/// How long a condition may take, or a fold may go without progress, before a test fails:
/// generous, since a debug build on a loaded 2-core machine is many times slower than a
/// release build on an idle one. Nothing here measures speed.
const PATIENCE: Duration = Duration::from_secs(60);

async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `seq()` is `target`, failing only when it stops moving for [`PATIENCE`].
async fn progresses_to(what: &str, target: u64, mut seq: impl FnMut() -> u64) {
    let (mut seen, mut moved) = (seq(), Instant::now());
    while seen != target {
        assert!(moved.elapsed() < PATIENCE, "{what}: stuck at {seen} of {target} for {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = seq();
        if now != seen {
            (seen, moved) = (now, Instant::now());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_reported_and_followed_again_once_it_is_back() {
    // The helper's health check blocks: off the runtime.
    let Some(server) = tokio::task::spawn_blocking(nats::start_one).await.unwrap() else { return };
    let config = JetStreamConfig::new(vec![server.url()]);
    let mut writer = JetStreamLog::connect(config.clone(), 1).await.unwrap();
    let written = tokio::task::spawn_blocking(move || {
        writer.append(&entries(1..11)).unwrap();
        writer
    });
    drop(written.await.unwrap());

    let dir = tempfile::tempdir().unwrap();
    let pipeline_config = PipelineConfig {
        upstream: None,
        jetstream: Some(config.clone()),
        ..PipelineConfig::new("", dir.path())
    };
    let (stop, stopped) = watch::channel(false);
    let (pipeline, running) = scores_pipeline::start(pipeline_config, stopped).await.unwrap();
    eventually("the replica folds the stream", || pipeline.snapshot().seq() == 10).await;
    assert_eq!(pipeline.log_refusal(), None);

    let client = async_nats::connect(server.url()).await.unwrap();
    let context = async_nats::jetstream::new(client);
    context.delete_stream(&config.stream).await.unwrap();
    eventually("/readyz would say why", || pipeline.log_refusal().is_some()).await;
    let problem = pipeline.log_refusal().unwrap();
    assert!(problem.contains("stream"), "{problem}");
    assert_eq!(pipeline.snapshot().seq(), 10, "the last snapshot is kept");
    assert!(pipeline.failure().is_none());

    // Made again (by an ingester of a fresh deployment, say) with the same events: followed.
    let mut writer = JetStreamLog::connect(config.clone(), 2).await.unwrap();
    let written = tokio::task::spawn_blocking(move || {
        writer.append(&entries(1..13)).unwrap();
        writer
    });
    drop(written.await.unwrap());
    eventually("the stream is followed again", || pipeline.log_refusal().is_none()).await;
    eventually("and folded on", || pipeline.snapshot().seq() == 12).await;

    stop.send(true).unwrap();
    tokio::time::timeout(PATIENCE, running.wait()).await.unwrap().unwrap();
}

/// `n` events numbered from `first`, of up to `n_students` students, with regrades.
fn many_students(first: u64, n: u64, n_students: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|n| Entry {
            event: ScoreEvent::new(
                &format!("s{}", n * 7 % n_students),
                n * 31 % 2_000,
                (n % 101) as f64 / 100.0,
            )
            .unwrap(),
            upstream_id: Arc::from(n.to_string()),
        })
        .collect()
}

fn checkpoint(snapshot: &scores_core::Snapshot) -> Vec<u8> {
    let mut bytes = Vec::new();
    snapshot.write_checkpoint(&mut bytes).unwrap();
    bytes
}

/// Appends `entries` in appends of `chunk` entries, off the runtime (the writer blocks on it).
async fn append(mut writer: JetStreamLog, entries: Vec<Entry>, chunk: usize) -> JetStreamLog {
    let written = tokio::task::spawn_blocking(move || {
        for entries in entries.chunks(chunk) {
            writer.append(entries).unwrap();
        }
        writer
    });
    written.await.unwrap()
}

/// A replica that folds the stream and ingests nothing, its checkpoint in a data directory.
struct Replica {
    pipeline: scores_pipeline::Pipeline,
    running: scores_pipeline::Running,
    stop: watch::Sender<bool>,
}

impl Replica {
    async fn start(config: &JetStreamConfig, data_dir: &std::path::Path) -> Replica {
        let pipeline_config = PipelineConfig {
            upstream: None,
            jetstream: Some(config.clone()),
            ..PipelineConfig::new("", data_dir)
        };
        let (stop, stopped) = watch::channel(false);
        let (pipeline, running) = scores_pipeline::start(pipeline_config, stopped).await.unwrap();
        Replica { pipeline, running, stop }
    }

    async fn folds(&self, what: &str, seq: u64) {
        progresses_to(what, seq, || self.pipeline.snapshot().seq()).await;
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, self.running.wait()).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_far_behind_catches_up_to_the_board_one_event_at_a_time_makes() {
    let Some(server) = tokio::task::spawn_blocking(nats::start_one).await.unwrap() else { return };
    let config = JetStreamConfig::new(vec![server.url()]);
    // More than a million events behind: the stream reader runs ahead of the fold.
    let backlog = many_students(1, 1_200_000, 5_003);
    let live = many_students(1_200_001, 3_000, 6_007);
    let mut model = scores_core::Scoreboard::new();
    model.apply_all(backlog.iter().chain(&live).map(|entry| &entry.event));
    let writer = JetStreamLog::connect(config.clone(), 1).await.unwrap();
    let writer = append(writer, backlog, usize::MAX).await;

    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(&config, dir.path()).await;
    replica.folds("the replica folds the backlog", 1_200_000).await;
    // Then the stream grows a little at a time, as it does live, with new students.
    append(writer, live, 500).await;
    replica.folds("the replica folds what came live", 1_203_000).await;
    assert_eq!(checkpoint(&replica.pipeline.snapshot()), checkpoint(&model.snapshot()));
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_far_behind_on_a_large_board_folds_in_bulk_to_the_same_board() {
    let Some(server) = tokio::task::spawn_blocking(nats::start_one).await.unwrap() else { return };
    let config = JetStreamConfig::new(vec![server.url()]);
    let first = many_students(1, 100_000, 40_009);
    // Over a million events behind a board of 40k students: the first million are read as one
    // pass, resolved on the reader's thread and folded in bulk; the rest read by read.
    let backlog = many_students(100_001, 1_200_000, 41_011);
    let live = many_students(1_300_001, 3_000, 42_013);
    let mut model = scores_core::Scoreboard::new();
    model.apply_all([&first, &backlog, &live].into_iter().flatten().map(|entry| &entry.event));
    let writer = JetStreamLog::connect(config.clone(), 1).await.unwrap();
    let writer = append(writer, first, usize::MAX).await;

    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(&config, dir.path()).await;
    replica.folds("the replica folds the stream", 100_000).await;
    replica.stop().await;
    assert!(dir.path().join("checkpoint").exists(), "the replica restarts from a checkpoint");

    let writer = append(writer, backlog, usize::MAX).await;
    let replica = Replica::start(&config, dir.path()).await;
    replica.folds("the replica folds the backlog", 1_300_000).await;
    append(writer, live, 500).await;
    replica.folds("the replica folds what came live", 1_303_000).await;
    assert_eq!(checkpoint(&replica.pipeline.snapshot()), checkpoint(&model.snapshot()));
    replica.stop().await;
}

/// Answers every direct get of stream `name` on `client` with the message two after the one
/// asked for, relabelled as the one asked for (a node whose copy disagrees with the leader's),
/// or, past the stream's end, with a reply that is no message at all.
async fn answer_direct_gets_wrongly(
    client: async_nats::Client,
    name: &str,
) -> tokio::task::JoinHandle<()> {
    use async_nats::header::{NATS_SEQUENCE, NATS_STREAM, NATS_SUBJECT, NATS_TIME_STAMP};
    use futures_util::StreamExt;

    let mut requests = client.subscribe(format!("$JS.API.DIRECT.GET.{name}")).await.unwrap();
    let stream = async_nats::jetstream::new(client.clone()).get_stream(name).await.unwrap();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply) = request.reply else { continue };
            // The request is `{"seq":N}`.
            let digits: String =
                request.payload.iter().map(|&b| b as char).filter(char::is_ascii_digit).collect();
            let sequence: u64 = digits.parse().unwrap();
            match stream.get_raw_message(sequence + 2).await {
                Ok(other) => {
                    let mut headers = other.headers.clone();
                    headers.insert(NATS_STREAM, stream.cached_info().config.name.as_str());
                    headers.insert(NATS_SUBJECT, other.subject.as_str());
                    headers.insert(NATS_SEQUENCE, sequence.to_string().as_str());
                    headers.insert(NATS_TIME_STAMP, "2026-12-04T00:00:00Z");
                    client.publish_with_headers(reply, headers, other.payload).await.unwrap();
                }
                Err(_) => client.publish(reply, "no such message".into()).await.unwrap(),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_from_the_leader_when_direct_gets_answer_with_other_messages() {
    let Some(server) = tokio::task::spawn_blocking(nats::start_one).await.unwrap() else { return };
    let config = JetStreamConfig::new(vec![server.url()]);
    // The stream made beforehand without direct gets, so the server answers none of them: the
    // only answers come from the impostor below.
    let client = async_nats::connect(server.url()).await.unwrap();
    let context = async_nats::jetstream::new(client.clone());
    context
        .create_stream(async_nats::jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.events", config.stream)],
            allow_direct: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let impostor = answer_direct_gets_wrongly(client, &config.stream).await;
    // Several messages, each of which the impostor answers for another.
    let appended = many_students(1, 3_000, 101);
    let mut model = scores_core::Scoreboard::new();
    model.apply_all(appended.iter().map(|entry| &entry.event));
    let writer = JetStreamLog::connect(config.clone(), 1).await.unwrap();
    append(writer, appended, 300).await;

    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(&config, dir.path()).await;
    replica.folds("the replica folds the stream", 3_000).await;
    assert_eq!(checkpoint(&replica.pipeline.snapshot()), checkpoint(&model.snapshot()));
    assert!(replica.pipeline.failure().is_none());
    replica.stop().await;
    impostor.abort();
}

/// A replica with no checkpoint that could not reach NATS (a wrong password, a typo in the
/// host, NATS down on its first start) said it was ready and served an empty board.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_reached_its_log_is_not_ready_until_it_has_read_it() {
    let Some(mut server) = nats::not_started() else { return };
    let config = JetStreamConfig::new(vec![server.url()]);
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::start(&config, dir.path()).await;
    let pipeline = &replica.pipeline;
    // Restored (from no checkpoint), and not ready for want of the log.
    let says_why = |reason: Option<String>| {
        reason.is_some_and(|reason| {
            reason.contains("no checkpoint") && reason.contains("cannot reach NATS")
        })
    };
    eventually("the replica says why it is not ready", || says_why(pipeline.not_ready_reason()))
        .await;
    assert!(!pipeline.is_ready());
    assert_eq!(pipeline.staleness(), None);

    let mut server = tokio::task::spawn_blocking(move || {
        server.start();
        server.wait_healthy(Duration::from_secs(30));
        server
    })
    .await
    .unwrap();
    let mut writer = JetStreamLog::connect(config.clone(), 1).await.unwrap();
    let written = tokio::task::spawn_blocking(move || {
        writer.append(&entries(1..6)).unwrap();
        writer
    });
    drop(written.await.unwrap());
    eventually("the replica is ready once it has read the stream", || pipeline.is_ready()).await;
    eventually("and folds it", || pipeline.snapshot().seq() == 5).await;
    assert_eq!(pipeline.not_ready_reason(), None);
    assert!(pipeline.staleness().is_some());

    // Once ready, it stays so while NATS is away, and says how long it has not heard from it.
    tokio::task::spawn_blocking(move || server.kill()).await.unwrap();
    eventually("its answers grow stale", || {
        pipeline.staleness().is_some_and(|staleness| staleness > Duration::from_secs(3))
    })
    .await;
    assert!(pipeline.is_ready());
    replica.stop().await;
}
