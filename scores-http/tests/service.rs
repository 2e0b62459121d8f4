//! The whole service over real loopback TCP: a scripted upstream feeds it, and every endpoint's
//! JSON is compared with a model computed here from the valid events sent, through upstream
//! faults and a restart.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use futures_util::stream::{self, BoxStream, StreamExt};
use scores_http::service::{self, ServiceConfig};
use scores_pipeline::{
    FeedConfig, FsyncPolicy, JournalOptions as Options, PipelineConfig, PipelineError,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// ---- the scripted upstream ----

enum Plan {
    /// Stream these chunks, then end as `End` says.
    Stream(Vec<String>, End),
    Status(StatusCode),
}

enum End {
    Close,
    Hang,
}

#[derive(Clone, Default)]
struct Script {
    plans: Arc<Mutex<VecDeque<Plan>>>,
    last_event_ids: Arc<Mutex<Vec<Option<String>>>>,
}

impl Script {
    fn push(&self, plan: Plan) {
        self.plans.lock().unwrap().push_back(plan);
    }

    fn last_event_ids(&self) -> Vec<Option<String>> {
        self.last_event_ids.lock().unwrap().clone()
    }
}

async fn serve_plan(State(script): State<Script>, headers: HeaderMap) -> Response {
    let id = headers.get("last-event-id").map(|v| v.to_str().unwrap().to_owned());
    script.last_event_ids.lock().unwrap().push(id);
    let plan = script.plans.lock().unwrap().pop_front();
    let response = Response::builder();
    match plan {
        // Out of script: an idle but healthy feed.
        None => response
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream::pending::<Result<String, std::io::Error>>())),
        Some(Plan::Status(status)) => response.status(status).body(Body::from("unavailable")),
        Some(Plan::Stream(chunks, end)) => {
            let chunks = stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
            let end: BoxStream<'static, Result<String, std::io::Error>> = match end {
                End::Close => stream::empty().boxed(),
                End::Hang => stream::pending().boxed(),
            };
            response
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(chunks.chain(end)))
        }
    }
    .unwrap()
}

/// What every test starts from: a data directory, and a scripted upstream on a free port that
/// serves `first` to its first connection.
struct Harness {
    data: tempfile::TempDir,
    script: Script,
    upstream: SocketAddr,
    server: JoinHandle<()>,
}

impl Harness {
    async fn new(first: Plan) -> Harness {
        let script = Script::default();
        script.push(first);
        let (upstream, server) =
            start_upstream(script.clone(), "127.0.0.1:0".parse().unwrap()).await;
        Harness { data: tempfile::tempdir().unwrap(), script, upstream, server }
    }

    /// A service on the data directory, fed by the upstream.
    async fn service(&self) -> Running {
        self.service_with(Options { fsync: FsyncPolicy::Always, ..Options::default() }).await
    }

    async fn service_with(&self, journal: Options) -> Running {
        start_service(self.upstream, self.data.path(), journal).await
    }

    /// Stops the upstream, and after `down` starts it again on the same port and script.
    async fn restart_upstream(&mut self, down: Duration) {
        self.server.abort();
        let _ = (&mut self.server).await;
        tokio::time::sleep(down).await;
        (_, self.server) = start_upstream(self.script.clone(), self.upstream).await;
    }
}

/// Serves `script` on `address` (a free port when it ends in `:0`).
async fn start_upstream(script: Script, address: SocketAddr) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(address).await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/scores", get(serve_plan)).with_state(script);
    (address, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

// ---- the service under test ----

struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), service::ServiceError>>,
}

async fn start_service(upstream: SocketAddr, data_dir: &Path, journal: Options) -> Running {
    start_service_with(upstream, data_dir, journal, Duration::ZERO).await
}

async fn start_service_with(
    upstream: SocketAddr,
    data_dir: &Path,
    journal: Options,
    shutdown_delay: Duration,
) -> Running {
    let feed = FeedConfig {
        retry: Duration::from_millis(10),
        max_retry: Duration::from_millis(100),
        idle_timeout: Some(Duration::from_millis(400)),
        ..FeedConfig::new("")
    };
    let pipeline = PipelineConfig {
        journal,
        feed,
        ..PipelineConfig::new(format!("http://{upstream}/scores"), data_dir)
    };
    let config = ServiceConfig { shutdown_delay, ..ServiceConfig::new(pipeline) };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    Running { base, stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }

    /// Stops the service, which must end with an error, in bounded time.
    async fn stop_with_error(self) -> service::ServiceError {
        self.stop.send(()).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        ended.expect("the service stopped in time").unwrap().unwrap_err()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Waits until the service has made `seq` events durable and visible.
    async fn wait_for_seq(&self, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = reqwest::get(format!("{}/readyz", self.base)).await;
            let body = match response {
                Ok(response) => response.json::<Value>().await.ok(),
                Err(_) => None,
            };
            let reached = body.as_ref().and_then(|body| body["seq"].as_u64()).unwrap_or(0);
            assert!(reached <= seq, "went past {seq}: {body:?}");
            if reached == seq && body.is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "the service never reached seq {seq}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, line_start: &str) -> Option<u64> {
        let text =
            reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|line| line.starts_with(line_start))?;
        line.rsplit(' ').next()?.parse().ok()
    }
}

// ---- events and the model ----

fn score_event(id: u64, student: &str, exam: u64, score: f64) -> String {
    let data = json!({"studentId": student, "exam": exam, "score": score});
    format!("event: score\nid: {id}\ndata: {data}\n\n")
}

#[derive(Default)]
struct Model(BTreeMap<(String, u64), f64>);

impl Model {
    fn apply(&mut self, student: &str, exam: u64, score: f64) {
        self.0.insert((student.to_owned(), exam), score);
    }

    fn students(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.0.keys().map(|(s, _)| s.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn exams(&self) -> Vec<u64> {
        let mut exams: Vec<u64> = self.0.keys().map(|(_, e)| *e).collect();
        exams.sort_unstable();
        exams.dedup();
        exams
    }

    fn student(&self, id: &str) -> Value {
        let results: Vec<(u64, f64)> =
            self.0.iter().filter(|((s, _), _)| s == id).map(|((_, e), v)| (*e, *v)).collect();
        let average = results.iter().map(|r| r.1).sum::<f64>() / results.len() as f64;
        let results: Vec<Value> =
            results.iter().map(|(e, v)| json!({"exam": e, "score": v})).collect();
        json!({"studentId": id, "results": results, "average": average})
    }

    fn exam(&self, exam: u64) -> Value {
        let results: Vec<(&String, f64)> =
            self.0.iter().filter(|((_, e), _)| *e == exam).map(|((s, _), v)| (s, *v)).collect();
        let average = results.iter().map(|r| r.1).sum::<f64>() / results.len() as f64;
        let results: Vec<Value> =
            results.iter().map(|(s, v)| json!({"studentId": s, "score": v})).collect();
        json!({"exam": exam, "results": results, "average": average})
    }
}

/// Equal JSON, except that numbers under "average" may differ by 1e-12 relative.
fn assert_matches(actual: &Value, expected: &Value, context: &str) {
    fn matches(actual: &Value, expected: &Value, key: &str) -> bool {
        match (actual, expected) {
            (Value::Object(a), Value::Object(e)) => {
                a.len() == e.len()
                    && e.iter().all(|(k, v)| a.get(k).is_some_and(|av| matches(av, v, k)))
            }
            (Value::Array(a), Value::Array(e)) => {
                a.len() == e.len() && a.iter().zip(e).all(|(a, e)| matches(a, e, key))
            }
            (Value::Number(a), Value::Number(e)) if key == "average" => {
                let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
                a == e || (a - e).abs() <= 1e-12 * a.abs().max(e.abs())
            }
            _ => actual == expected,
        }
    }
    assert!(
        matches(actual, expected, ""),
        "{context}:\n  actual   {actual}\n  expected {expected}"
    );
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(
            |b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            },
        )
        .collect()
}

/// Checks every endpoint against `model`, including paging to the end and the error cases.
async fn check_against_model(service: &Running, model: &Model) {
    let students = model.students();
    let (status, body) = service.get("/students").await;
    assert_eq!(status, 200);
    assert_matches(&body, &json!({"students": students, "total": students.len()}), "/students");
    for id in &students {
        let path = format!("/students/{}", percent_encode(id));
        let (status, body) = service.get(&path).await;
        assert_eq!(status, 200, "{path}");
        assert_matches(&body, &model.student(id), &path);
    }
    let exams = model.exams();
    let (_, body) = service.get("/exams").await;
    assert_matches(&body, &json!({"exams": exams, "total": exams.len()}), "/exams");
    for exam in &exams {
        let (status, body) = service.get(&format!("/exams/{exam}")).await;
        assert_eq!(status, 200);
        assert_matches(&body, &model.exam(*exam), &format!("/exams/{exam}"));
    }

    let mut paged = Vec::new();
    let mut path = "/students?limit=3".to_owned();
    loop {
        let (_, body) = service.get(&path).await;
        paged.extend(
            body["students"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()),
        );
        match body["next"].as_str() {
            Some(next) => path = format!("/students?limit=3&after={}", percent_encode(next)),
            None => break,
        }
    }
    assert_eq!(paged, students, "paging /students to the end");
    let mut paged = Vec::new();
    let mut path = "/exams?limit=2".to_owned();
    loop {
        let (_, body) = service.get(&path).await;
        paged.extend(body["exams"].as_array().unwrap().iter().map(|e| e.as_u64().unwrap()));
        match body["next"].as_u64() {
            Some(next) => path = format!("/exams?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, exams, "paging /exams to the end");

    assert_eq!(service.get("/students/Nobody.Here").await.0, 404);
    assert_eq!(service.get("/exams/99999").await.0, 404);
    assert_eq!(service.get("/exams/abc").await.0, 400);
    assert_eq!(service.get("/exams/18446744073709551616").await.0, 400);
}

const STUDENTS: [&str; 6] =
    ["Marvin32", "Susana_Langworth", "Hannah.Herman76", "Zoë Ürsel", "a/b", "Otto"];

/// Events 1..=n: a few exams, students cycling, with regrades and zero scores among them.
/// Scores are printed at full precision, as the feed prints them: k/101 takes 17 significant
/// digits for many k, and the answers must give back the very same text.
fn events(ids: std::ops::RangeInclusive<u64>, model: &mut Model) -> Vec<String> {
    ids.map(|id| {
        let student = STUDENTS[(id * 7 % STUDENTS.len() as u64) as usize];
        let exam = 11_000 + id % 4;
        let score = if id % 9 == 0 { 0.0 } else { (id * 37 % 101) as f64 / 101.0 };
        model.apply(student, exam, score);
        score_event(id, student, exam, score)
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_matches_the_model_of_the_events_sent() {
    let mut model = Model::default();
    let harness = Harness::new(Plan::Stream(events(1..=60, &mut model), End::Hang)).await;
    let service = harness.service().await;
    service.wait_for_seq(60).await;
    check_against_model(&service, &model).await;
    service.stop().await;
}

/// One event of 50,000 `[` overflowed the JSON5 fallback's stack and took the service down
/// (and every replica after it); a 500 KB id was stored and sent back until the upstream
/// refused it. Now each is a counted rejection and the next good event is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_are_rejected_and_the_next_good_one_is_visible() {
    let mut model = Model::default();
    let mut chunks = events(1..=5, &mut model);
    chunks.push(format!("event: score\ndata: {}\n\n", "[".repeat(50_000)));
    chunks.push(format!("event: score\ndata: {}\n\n", "{a:".repeat(50_000)));
    let valid = r#"{"studentId":"Long.Id","exam":1,"score":0.5}"#;
    chunks.push(format!("id: {}\nevent: score\ndata: {valid}\n\n", "7".repeat(500_000)));
    chunks.extend(events(6..=10, &mut model));
    let harness = Harness::new(Plan::Stream(chunks, End::Hang)).await;
    let service = harness.service().await;
    service.wait_for_seq(10).await;
    check_against_model(&service, &model).await;
    let rejected = |reason: &str| format!(r#"scores_events_rejected_total{{reason="{reason}"}}"#);
    assert_eq!(service.metric(&rejected("too_deep")).await, Some(2));
    assert_eq!(service.metric(&rejected("id_too_long")).await, Some(1));
    service.stop().await;
    // The id the service resumes from is the last good event's, never the long one.
    let connections = harness.script.last_event_ids().len();
    let service = harness.service().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness.script.last_event_ids().len() == connections {
        assert!(Instant::now() < deadline, "the restarted service never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids = harness.script.last_event_ids();
    assert_eq!(ids.last().unwrap().as_deref(), Some("10"), "{:?}", ids.len());
    service.stop().await;
}

/// On SIGTERM the listener closed at once: a load balancer still sending requests for a
/// moment had them refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_delay_fails_readiness_first_and_serves_the_rest_until_it_ends() {
    let mut model = Model::default();
    let harness = Harness::new(Plan::Stream(events(1..=10, &mut model), End::Hang)).await;
    let delay = Duration::from_secs(8);
    let journal = Options { fsync: FsyncPolicy::Always, ..Options::default() };
    let service = start_service_with(harness.upstream, harness.data.path(), journal, delay).await;
    service.wait_for_seq(10).await;
    let stopped_at = Instant::now();
    let Running { base, stop, task } = service;
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    stop.send(()).unwrap();
    let (status, body) = loop {
        let (status, body) = get("/readyz").await;
        if status != 200 {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((status, &body["error"]["code"]), (503, &Value::from("draining")), "{body}");
    let (status, students) = get("/students").await;
    assert_eq!(status, 200, "queries are still answered while draining");
    assert_eq!(students["total"], model.students().len());
    tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap().unwrap();
    assert!(stopped_at.elapsed() >= delay, "the listener stayed open for the delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_upstream_faults_the_answers_match_the_model_of_the_valid_events() {
    let mut model = Model::default();
    let mut first = events(1..=10, &mut model);
    first.insert(3, "event: score\nid: 3\ndata: {\"studentId\":\"x\",\"exam\":\n\n".into());
    first.insert(5, "event: score\ndata: {\"exam\":1,\"score\":0.5}\n\n".into());
    first.insert(7, "event: heartbeat\ndata: ping\n\n".into());
    first.push("event: score\nid: 11\ndata: {\"studentId\":\"cut".into()); // dropped mid-event
    let mut harness = Harness::new(Plan::Stream(first, End::Close)).await;
    harness.script.push(Plan::Status(StatusCode::SERVICE_UNAVAILABLE));
    harness.script.push(Plan::Stream(events(11..=20, &mut model), End::Hang)); // then goes silent
    let service = harness.service().await;
    service.wait_for_seq(20).await;

    // The upstream restarts: gone for a while, then back on the same port.
    harness.restart_upstream(Duration::from_millis(300)).await;
    harness.script.push(Plan::Stream(events(21..=30, &mut model), End::Hang));
    service.wait_for_seq(30).await;

    check_against_model(&service, &model).await;
    assert_eq!(service.metric("scores_events_rejected_total{reason=\"not_json\"}").await, Some(1));
    assert_eq!(
        service.metric("scores_events_rejected_total{reason=\"missing_field\"}").await,
        Some(1)
    );
    assert_eq!(service.metric("scores_events_ignored_total").await, Some(1));
    // Every attempt after the first is a reconnect, the refused (503) and unanswered ones too.
    let reconnects = service.metric("scores_upstream_reconnects_total").await.unwrap();
    let requests = harness.script.last_event_ids().len() as u64;
    assert!(
        requests >= 4 && reconnects >= requests - 1,
        "{reconnects} reconnects, {requests} requests"
    );
    // One snapshot on start, then at most one per append.
    let published = service.metric("scores_snapshots_published_total").await.unwrap();
    let appends = service.metric("scores_journal_appends_total").await.unwrap();
    assert!((2..=appends + 1).contains(&published), "{published} snapshots, {appends} appends");
    let ids = harness.script.last_event_ids();
    assert_eq!(ids[0], None);
    assert_eq!(ids[1].as_deref(), Some("10"), "resumed after the last whole event: {ids:?}");
    assert!(ids.contains(&Some("20".to_owned())), "resumed after the silent connection: {ids:?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_gives_the_same_answers_and_resumes_the_feed() {
    let mut model = Model::default();
    let harness = Harness::new(Plan::Stream(events(1..=40, &mut model), End::Hang)).await;
    let service = harness.service().await;
    service.wait_for_seq(40).await;
    let (_, before) = service.get("/exams").await;
    service.stop().await;
    assert!(harness.data.path().join("checkpoint").exists(), "shutdown writes a checkpoint");

    harness.script.push(Plan::Stream(events(41..=50, &mut model), End::Hang));
    let connections_before = harness.script.last_event_ids().len();
    let service = harness.service().await;
    service.wait_for_seq(50).await;
    let (_, after) = service.get("/exams").await;
    assert_eq!(before["exams"], after["exams"]);
    check_against_model(&service, &model).await;
    // The restarted service's first connection resumes after the last journaled event (later
    // ones may follow: the test upstream goes silent, and the idle timeout is short).
    let ids = harness.script.last_event_ids();
    assert_eq!(
        ids[connections_before].as_deref(),
        Some("40"),
        "resumed with Last-Event-ID: {ids:?}"
    );
    service.stop().await;
}

/// A byte flipped in a segment the checkpoint covers went unnoticed: the service was ready,
/// `/readyz` said nothing, `/scores` from the start ended cleanly at the damage, and a client
/// resuming there got 200 and an empty stream, so a browser reconnected forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_a_sealed_segment_is_found_named_and_told_to_stream_clients() {
    let mut model = Model::default();
    // Four connections of 100 events each (about 4 KiB): at least one batch each, however
    // slow the machine, so at least four segments.
    let harness = Harness::new(Plan::Stream(events(1..=100, &mut model), End::Close)).await;
    for wave in 1..4 {
        let end = if wave == 3 { End::Hang } else { End::Close };
        harness
            .script
            .push(Plan::Stream(events(wave * 100 + 1..=wave * 100 + 100, &mut model), end));
    }
    let journal = Options { fsync: FsyncPolicy::Always, segment_bytes: 4096 };
    let service = harness.service_with(journal).await;
    service.wait_for_seq(400).await;
    service.stop().await;

    let journal_dir = harness.data.path().join("journal");
    let segments = scores_journal::segment_files(&journal_dir).unwrap();
    assert!(segments.len() >= 4, "{segments:?}");
    let damaged = &segments[1];
    let mut bytes = std::fs::read(&damaged.path).unwrap();
    // Inside the segment's first batch (it starts at byte 16, after the segment's header; its
    // own header is 16 bytes, and one event's record is longer than 8).
    bytes[40] ^= 0x01;
    std::fs::write(&damaged.path, &bytes).unwrap();

    // Restored from its checkpoint without reading the segment, then verified in the background.
    let service = harness.service_with(journal).await;
    service.wait_for_seq(400).await;
    let name = damaged.path.file_name().unwrap().to_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let damage = loop {
        let (status, ready) = service.get("/readyz").await;
        assert_eq!(status, 200, "still ready: every answer is right as of its seq");
        if let Some(damage) = ready["damage"].as_array() {
            break damage[0].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the damage was never found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(damage.contains(&name) && damage.contains("at byte 16"), "{damage}");
    assert_eq!(service.metric("scores_log_damage_found_total").await, Some(1));

    // From the start: every event before the damage, then an error event, then the end.
    let body = tokio::time::timeout(Duration::from_secs(60), async {
        reqwest::get(format!("{}/scores", service.base)).await.unwrap().text().await.unwrap()
    })
    .await
    .expect("the stream ends at the damage");
    let ids: Vec<u64> =
        body.lines().filter_map(|line| line.strip_prefix("id: ")?.parse().ok()).collect();
    assert_eq!(ids, (1..damaged.first_seq).collect::<Vec<_>>());
    let error = body.split("event: error\ndata: ").nth(1).expect("an error event");
    assert!(error.starts_with(r#"{"error":{"code":"log_damaged""#), "{error}");

    // Resuming inside the damage is an error, not an empty stream.
    let resumed = reqwest::Client::new()
        .get(format!("{}/scores", service.base))
        .header("last-event-id", (damaged.first_seq - 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status().as_u16(), 500);
    let body: Value = resumed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "log_damaged");
    service.stop().await;
}

/// The sequence number of the checkpoint in `data_dir`: the journal's file holds a 20-byte
/// header (magic, length, checksum) before the snapshot's checkpoint bytes.
fn checkpoint_seq(data_dir: &Path) -> u64 {
    let bytes = std::fs::read(data_dir.join("checkpoint")).unwrap();
    scores_core::Snapshot::decode_checkpoint(&bytes[20..]).unwrap().seq()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_folded_the_logs_tail_at_restart_checkpoints_it_when_it_stops() {
    let mut model = Model::default();
    let harness = Harness::new(Plan::Stream(events(1..=40, &mut model), End::Hang)).await;
    let service = harness.service().await;
    service.wait_for_seq(40).await;
    service.stop().await;
    let at_40 = std::fs::read(harness.data.path().join("checkpoint")).unwrap();
    harness.script.push(Plan::Stream(events(41..=50, &mut model), End::Hang));
    let service = harness.service().await;
    service.wait_for_seq(50).await;
    service.stop().await;
    // As a crash would leave it: the journal holds 50 events, the checkpoint the first 40.
    std::fs::write(harness.data.path().join("checkpoint"), at_40).unwrap();
    assert_eq!(checkpoint_seq(harness.data.path()), 40);

    let service = harness.service().await;
    service.wait_for_seq(50).await;
    check_against_model(&service, &model).await;
    service.stop().await;
    assert_eq!(checkpoint_seq(harness.data.path()), 50, "the next restart folds nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_fed_by_the_first_ones_scores_answers_the_same_and_resumes() {
    let mut model = Model::default();
    let harness = Harness::new(Plan::Stream(events(1..=40, &mut model), End::Hang)).await;
    let first = harness.service().await;
    first.wait_for_seq(40).await;
    let first_address = first.base.trim_start_matches("http://").parse().unwrap();
    let second_data = tempfile::tempdir().unwrap();
    let options = Options { fsync: FsyncPolicy::Always, ..Options::default() };
    let second = start_service(first_address, second_data.path(), options).await;
    second.wait_for_seq(40).await;
    check_against_model(&second, &model).await;
    second.stop().await;

    // While the second is down, the first gets ten more events (on its next connection: the
    // test upstream goes silent, and the idle timeout is short).
    harness.script.push(Plan::Stream(events(41..=50, &mut model), End::Hang));
    first.wait_for_seq(50).await;
    // Started again, the second asks for what follows its last event: exactly ten more, or it
    // would go past 50.
    let second = start_service(first_address, second_data.path(), options).await;
    second.wait_for_seq(50).await;
    check_against_model(&second, &model).await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebroadcast_resumes_from_last_event_id() {
    let mut model = Model::default();
    let harness = Harness::new(Plan::Stream(events(1..=12, &mut model), End::Hang)).await;
    let service = harness.service().await;
    service.wait_for_seq(12).await;

    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/scores", service.base))
        .header("last-event-id", "9")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert!(!response.headers().contains_key("content-encoding"), "the stream is never compressed");
    let mut parser = scores_sse::Parser::default();
    let mut ids = Vec::new();
    let mut body = response.bytes_stream();
    while ids.len() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for item in parser.feed(&chunk) {
            if let Ok(scores_sse::Item::Event(event)) = item {
                assert_eq!(&*event.event_type, "score");
                ids.push(event.id.to_string());
            }
        }
    }
    assert_eq!(ids, ["10", "11", "12"]);

    // An id that is not a sequence number is refused; one past every event waits for more.
    let resume = |id: &str| {
        client.get(format!("{}/scores", service.base)).header("last-event-id", id).send()
    };
    let response = resume("ten").await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_header", "{error}");
    let not_text = HeaderValue::from_bytes(b"\xff9").unwrap();
    let response = client
        .get(format!("{}/scores", service.base))
        .header("last-event-id", not_text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "a Last-Event-ID that is not text is not ignored");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_header", "{error}");
    let response = client.get(format!("{}/scores?after=junk", service.base)).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "invalid query parameter `after`: expected a sequence number (an integer from 0 to \
         18446744073709551615), got \"junk\"",
        "{error}"
    );
    let mut body = resume(&u64::MAX.to_string()).await.unwrap().bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"retry: 1000\n");
    let next = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(next.is_err(), "nothing follows event {}: {next:?}", u64::MAX);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_refuses_appends_hides_what_it_refused_and_still_lets_the_service_stop() {
    let mut model = Model::default();
    let harness = Harness::new(Plan::Stream(events(1..=20, &mut model), End::Close)).await;
    // One-byte segments: every append to a segment that holds records starts a new file.
    let journal = Options { fsync: FsyncPolicy::Always, segment_bytes: 1 };
    let service = harness.service_with(journal).await;
    service.wait_for_seq(20).await;

    // No new segment can be made once the journal's directory is a file.
    let dir = harness.data.path().join("journal");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    // More events than the service queues, so that the feed ends up waiting for room.
    let sent = 350_000;
    harness.script.push(Plan::Stream(events(21..=20 + sent, &mut Model::default()), End::Hang));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lag = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = service.metric("scores_journal_lag_events").await.unwrap();
        if now > 0 && now == lag {
            break;
        }
        lag = now;
        assert!(Instant::now() < deadline, "the feed never came to a stop");
    }
    assert!(lag < sent, "the feed took all {sent} events: it did not wait for room");
    assert!(service.metric("scores_journal_errors_total").await.unwrap() > 0);
    let (_, ready) = service.get("/readyz").await;
    assert_eq!(ready["seq"], 20, "events the journal refused are not visible");
    let refusal = ready["journal"].as_str().unwrap_or_default();
    assert!(refusal.starts_with("refusing appends: "), "/readyz says why: {ready}");
    check_against_model(&service, &model).await;

    // Retrying would never end, nor would waiting for room; stopping ends both, and says why.
    let error = service.stop_with_error().await;
    assert!(
        matches!(error, service::ServiceError::Pipeline(PipelineError::StoppedWhileRefused(_))),
        "stopped with {error:?}"
    );
}
