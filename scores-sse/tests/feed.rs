//! `Feed` against a real upstream on loopback that misbehaves on cue.
//!
//! The upstream plays a script: one plan per request (a stream, an error status, a wrong content
//! type, a redirect), then 204 once the script is over, which ends the feed. Time is paused, so
//! backoff waits and idle timeouts pass instantly while the sockets are real.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use scores_sse::{
    ConnectionState, Disconnect, Feed, FeedConfig, FeedError, FeedItem, FeedOutput, ParseError,
};

enum Plan {
    Stream(Vec<Vec<u8>>, End),
    Status(StatusCode),
    ContentType(&'static str),
    Redirect(&'static str),
}

/// How a streamed response ends after its chunks.
enum End {
    /// The server finishes the response.
    Close,
    /// The connection breaks mid-body.
    Reset,
    /// The server keeps the connection open and sends nothing more.
    Hang,
}

#[derive(Clone, Default)]
struct Upstream {
    plans: Arc<Mutex<VecDeque<Plan>>>,
    requests: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Upstream {
    fn last_event_ids(&self) -> Vec<Option<String>> {
        let requests = self.requests.lock().unwrap();
        let id = |headers: &HeaderMap| {
            headers.get("last-event-id").map(|v| v.to_str().unwrap().to_owned())
        };
        requests.iter().map(id).collect()
    }
}

async fn serve_plan(State(upstream): State<Upstream>, headers: HeaderMap) -> Response {
    upstream.requests.lock().unwrap().push(headers);
    let plan = upstream.plans.lock().unwrap().pop_front();
    let builder = Response::builder();
    match plan {
        None => builder.status(StatusCode::NO_CONTENT).body(Body::empty()),
        Some(Plan::Status(status)) => builder.status(status).body(Body::from("oops")),
        Some(Plan::ContentType(content_type)) => builder
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from("<html>not a feed</html>")),
        Some(Plan::Redirect(location)) => builder
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, location)
            .body(Body::empty()),
        Some(Plan::Stream(chunks, end)) => {
            let chunks =
                stream::iter(chunks.into_iter().map(|c| Ok::<_, io::Error>(Bytes::from(c))));
            let end: BoxStream<'static, io::Result<Bytes>> = match end {
                End::Close => stream::empty().boxed(),
                // The sleep ends only once the client has read everything sent so far (paused
                // time advances when every task is idle); a reset before that would make the
                // kernel discard unread bytes, which is not what this plan is about.
                End::Reset => stream::once(async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Err(io::Error::other("connection reset"))
                })
                .boxed(),
                End::Hang => stream::pending().boxed(),
            };
            builder
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(chunks.chain(end)))
        }
    }
    .unwrap()
}

/// Starts an upstream on a free loopback port that plays `plans`; returns it and its feed URL.
async fn upstream(plans: Vec<Plan>) -> (Upstream, String) {
    let upstream = Upstream { plans: Arc::new(Mutex::new(plans.into())), ..Upstream::default() };
    let app = Router::new().route("/scores", get(serve_plan)).with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/scores", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (upstream, url)
}

/// Runs the feed to its end (the upstream's 204) and describes each item in one line.
async fn trace(config: FeedConfig) -> Vec<String> {
    let mut feed = Feed::new(config).unwrap();
    let mut lines = Vec::new();
    while let Some(item) = feed.next().await {
        lines.push(describe(&item));
        assert!(lines.len() < 10_000, "the feed did not end: {lines:?}");
    }
    lines
}

fn describe(item: &FeedItem) -> String {
    match item {
        FeedItem::Event { event, id } => {
            format!("event {} {} {} id={id}", event.student_id, event.exam, event.score)
        }
        FeedItem::Ignored { event_type } => format!("ignored {event_type}"),
        FeedItem::Raw(event) => format!("raw {} {} id={}", event.event_type, event.data, event.id),
        FeedItem::Rejected(FeedError::Decode { error, .. }) => format!("rejected: {error}"),
        FeedItem::Rejected(FeedError::Parse(error)) => format!("dropped: {error}"),
        FeedItem::Rejected(FeedError::NotUtf8 { data, .. }) => {
            format!("rejected: not UTF-8: {data}")
        }
        FeedItem::State(ConnectionState::Connecting { attempt }) => format!("connecting {attempt}"),
        FeedItem::State(ConnectionState::Connected) => "connected".into(),
        FeedItem::State(ConnectionState::Disconnected(reason)) => match reason {
            Disconnect::Status(status) => format!("disconnected: status {}", status.as_u16()),
            Disconnect::ContentType(_) => "disconnected: content type".into(),
            Disconnect::Closed => "disconnected: closed".into(),
            Disconnect::Read(_) => "disconnected: read".into(),
            Disconnect::Idle(_) => "disconnected: idle".into(),
            Disconnect::LineTooLong(_) => "disconnected: line too long".into(),
            Disconnect::Request(_) => "disconnected: request".into(),
        },
        FeedItem::State(ConnectionState::Retrying { delay }) => {
            format!("retrying {}ms", delay.as_millis())
        }
        FeedItem::State(ConnectionState::Stopped) => "stopped".into(),
    }
}

fn score_event(id: &str, student: &str, exam: u64, score: f64) -> Vec<u8> {
    let data = format!(r#"{{"studentId":"{student}","exam":{exam},"score":{score}}}"#);
    format!("id: {id}\nevent: score\ndata: {data}\n\n").into_bytes()
}

/// The lines of `trace` that are events, rejections or drops.
fn payload(trace: &[String]) -> Vec<&str> {
    let is_payload = |l: &&String| {
        ["event", "rejected", "dropped", "ignored", "raw"].iter().any(|p| l.starts_with(p))
    };
    trace.iter().filter(is_payload).map(String::as_str).collect()
}

fn no_retry_wait(url: String) -> FeedConfig {
    FeedConfig { retry: Duration::ZERO, ..FeedConfig::new(url) }
}

#[tokio::test(start_paused = true)]
async fn streams_events_sends_the_right_headers_and_stops_on_204() {
    let chunks = vec![
        score_event("1", "Marvin32", 11295, 0.64),
        score_event("2", "Susana_Langworth", 11295, 0.0),
    ];
    let (upstream, url) = upstream(vec![Plan::Stream(chunks, End::Close)]).await;
    let trace = trace(no_retry_wait(url)).await;
    assert_eq!(
        trace,
        [
            "connecting 1",
            "connected",
            "event Marvin32 11295 0.64 id=1",
            "event Susana_Langworth 11295 0 id=2",
            "disconnected: closed",
            "retrying 0ms",
            "connecting 2",
            "stopped",
        ]
    );
    let requests = upstream.requests.lock().unwrap();
    assert_eq!(requests[0]["accept"], "text/event-stream");
    assert_eq!(requests[0]["cache-control"], "no-cache");
    drop(requests);
    assert_eq!(upstream.last_event_ids(), [None, Some("2".into())]);
}

#[tokio::test(start_paused = true)]
async fn upstream_dropped_mid_event_resumes_from_the_last_id_without_loss_or_duplicates() {
    let first = vec![
        score_event("1", "Marvin32", 11295, 0.64),
        br#"id: 2
event: score
data: {"studentId":"Hannah.Her"#
            .to_vec(),
    ];
    let second = vec![score_event("2", "Hannah.Herman76", 11295, 0.5)];
    let (upstream, url) =
        upstream(vec![Plan::Stream(first, End::Reset), Plan::Stream(second, End::Close)]).await;
    let trace = trace(no_retry_wait(url)).await;
    assert_eq!(
        payload(&trace),
        ["event Marvin32 11295 0.64 id=1", "event Hannah.Herman76 11295 0.5 id=2"]
    );
    assert!(trace.contains(&"disconnected: read".to_owned()), "{trace:?}");
    assert_eq!(upstream.last_event_ids(), [None, Some("1".into()), Some("2".into())]);
}

#[tokio::test(start_paused = true)]
async fn error_statuses_are_retried_with_growing_attempts_until_success() {
    let stream = Plan::Stream(vec![score_event("1", "Otto", 10001, 1.0)], End::Close);
    let plans = vec![
        Plan::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Plan::Status(StatusCode::SERVICE_UNAVAILABLE),
        stream,
    ];
    let (_, url) = upstream(plans).await;
    let trace = trace(FeedConfig::new(url)).await;
    let expected_prefix = ["connecting 1", "disconnected: status 500"];
    assert_eq!(&trace[..2], expected_prefix);
    assert_eq!(trace[3], "connecting 2");
    assert_eq!(trace[4], "disconnected: status 503");
    assert_eq!(trace[6..9], ["connecting 3", "connected", "event Otto 10001 1 id=1"]);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_content_type_is_a_failed_attempt() {
    let plans = vec![
        Plan::ContentType("text/html; charset=utf-8"),
        Plan::Stream(vec![score_event("1", "Otto", 10001, 0.5)], End::Close),
    ];
    let (_, url) = upstream(plans).await;
    let trace = trace(no_retry_wait(url)).await;
    assert_eq!(trace[..2], ["connecting 1", "disconnected: content type"]);
    assert_eq!(payload(&trace), ["event Otto 10001 0.5 id=1"]);
}

#[tokio::test(start_paused = true)]
async fn redirects_are_followed_within_one_attempt() {
    let plans = vec![
        Plan::Redirect("/scores?moved"),
        Plan::Stream(vec![score_event("1", "Otto", 10001, 0.5)], End::Close),
    ];
    let (_, url) = upstream(plans).await;
    let trace = trace(no_retry_wait(url)).await;
    assert_eq!(trace[..3], ["connecting 1", "connected", "event Otto 10001 0.5 id=1"]);
}

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_is_taken_as_dead_and_the_backoff_resets_after_a_healthy_connection() {
    let plans = vec![
        Plan::Stream(vec![score_event("7", "Otto", 10001, 0.5)], End::Hang),
        Plan::Status(StatusCode::BAD_GATEWAY),
        Plan::Stream(vec![score_event("8", "Otto", 10002, 0.25)], End::Hang),
    ];
    let (upstream, url) = upstream(plans).await;
    let config = FeedConfig {
        idle_timeout: Some(Duration::from_secs(60)),
        healthy_after: Duration::from_secs(30),
        ..FeedConfig::new(url)
    };
    let trace = trace(config).await;
    let idle_disconnects = trace.iter().filter(|l| *l == "disconnected: idle").count();
    assert_eq!(idle_disconnects, 2, "{trace:?}");
    // The first connection stayed up 60 s, past `healthy_after`: the next attempt is number 1
    // again. The 502 that follows makes the one after it number 2.
    let attempts: Vec<&str> =
        trace.iter().filter(|l| l.starts_with("connecting")).map(String::as_str).collect();
    assert_eq!(attempts, ["connecting 1", "connecting 1", "connecting 2", "connecting 1"]);
    assert_eq!(
        upstream.last_event_ids(),
        [None, Some("7".into()), Some("7".into()), Some("8".into())]
    );
}

/// A line that never ends was read and thrown away for as long as the upstream sent it, at
/// about 9 CPU-s every 15 s, on a connection that was kept.
#[tokio::test(start_paused = true)]
async fn a_line_past_the_limit_ends_the_connection_and_the_feed_reconnects() {
    let endless_line = [b"data: ".as_slice(), &vec![b'x'; 2 << 20]].concat();
    let first = vec![score_event("1", "Otto", 10001, 0.5), endless_line];
    let second = vec![score_event("2", "Otto", 10002, 0.25)];
    let (upstream, url) =
        upstream(vec![Plan::Stream(first, End::Hang), Plan::Stream(second, End::Close)]).await;
    let trace = trace(no_retry_wait(url)).await;
    let limit = ParseError::LineTooLong { limit: 1 << 20, line: 5 };
    assert_eq!(
        payload(&trace),
        [
            "event Otto 10001 0.5 id=1",
            format!("dropped: {limit}").as_str(),
            "event Otto 10002 0.25 id=2"
        ]
    );
    assert!(trace.contains(&"disconnected: line too long".to_owned()), "{trace:?}");
    assert_eq!(upstream.last_event_ids()[..2], [None, Some("1".into())]);
}

#[tokio::test(start_paused = true)]
async fn a_redirect_to_the_url_being_fetched_fails_the_attempt_at_once() {
    let plans = vec![
        Plan::Redirect("/scores"),
        Plan::Stream(vec![score_event("1", "Otto", 10001, 0.5)], End::Close),
    ];
    let (upstream, url) = upstream(plans).await;
    let trace = trace(no_retry_wait(url)).await;
    assert_eq!(
        trace[..4],
        ["connecting 1", "disconnected: request", "retrying 0ms", "connecting 2"]
    );
    assert!(trace.contains(&"event Otto 10001 0.5 id=1".to_owned()), "{trace:?}");
    assert_eq!(
        upstream.last_event_ids().len(),
        3,
        "one redirect, not ten, then the stream and the 204"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_events_are_rejected_with_their_reason_and_the_stream_goes_on() {
    let chunks = vec![
        b"event: score\ndata: {\"studentId\":\"a\",\"exam\":1\n\n".to_vec(),
        b"event: score\ndata: {\"exam\":1,\"score\":0.5}\n\n".to_vec(),
        b"event: heartbeat\ndata: ping\n\n".to_vec(),
        b"event: score\ndata: {\"studentId\":\"Mar\xFFvin\",\"exam\":2,\"score\":0.5}\n\n".to_vec(),
        b"data: {\"exam\": 3, \"studentId\": \"foo\", score: .991}\n\n".to_vec(),
        score_event("9", "Otto", 10001, 0.5),
    ];
    let (_, url) = upstream(vec![Plan::Stream(chunks, End::Close)]).await;
    let trace = trace(no_retry_wait(url)).await;
    assert_eq!(
        payload(&trace),
        [
            "rejected: data is not JSON: EOF while parsing an object at column 25",
            "rejected: field `studentId` is missing",
            "ignored heartbeat",
            "rejected: not UTF-8: {\"studentId\":\"Mar\u{FFFD}vin\",\"exam\":2,\"score\":0.5}",
            "event foo 3 0.991 id=",
            "event Otto 10001 0.5 id=9",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn raw_output_passes_every_event_through_undecoded() {
    let chunks = vec![
        b"event: score\ndata: {\"studentId\":\"a\",\"exam\":1\n\n".to_vec(),
        b"event: heartbeat\ndata: ping\n\n".to_vec(),
        score_event("9", "Otto", 10001, 0.5),
    ];
    let (_, url) = upstream(vec![Plan::Stream(chunks, End::Close)]).await;
    let trace = trace(FeedConfig { output: FeedOutput::Raw, ..no_retry_wait(url) }).await;
    assert_eq!(
        payload(&trace),
        [
            "raw score {\"studentId\":\"a\",\"exam\":1 id=",
            "raw heartbeat ping id=",
            "raw score {\"studentId\":\"Otto\",\"exam\":10001,\"score\":0.5} id=9",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_servers_retry_sets_the_base_delay_within_the_cap() {
    let plans = vec![
        Plan::Stream(vec![b"retry: 0\n\n".to_vec()], End::Close),
        Plan::Stream(vec![b"retry: 3600000\n\n".to_vec()], End::Close),
    ];
    let (_, url) = upstream(plans).await;
    let config = FeedConfig { max_retry: Duration::from_secs(30), ..FeedConfig::new(url) };
    let trace = trace(config).await;
    let delays: Vec<&str> =
        trace.iter().filter(|l| l.starts_with("retrying")).map(String::as_str).collect();
    assert_eq!(delays[0], "retrying 0ms");
    // An hour asked for: the cap, never sooner than it.
    assert_eq!(delays[1], "retrying 30000ms", "{delays:?}");
}

#[tokio::test(start_paused = true)]
async fn a_seeded_last_event_id_is_sent_on_the_first_connection() {
    let (upstream, url) = upstream(vec![]).await;
    let trace = trace(FeedConfig { last_event_id: "41".into(), ..FeedConfig::new(url) }).await;
    assert_eq!(trace, ["connecting 1", "stopped"]);
    assert_eq!(upstream.last_event_ids(), [Some("41".into())]);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_upstream_is_retried() {
    // Bind then drop a listener: nothing listens on that port any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/scores", listener.local_addr().unwrap());
    drop(listener);
    let mut feed = Feed::new(no_retry_wait(url)).unwrap();
    let mut lines = Vec::new();
    while lines.len() < 6 {
        lines.push(describe(&feed.next().await.unwrap()));
    }
    assert_eq!(
        lines,
        [
            "connecting 1",
            "disconnected: request",
            "retrying 0ms",
            "connecting 2",
            "disconnected: request",
            "retrying 0ms"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn ready_hands_out_what_is_already_parsed_without_reading() {
    let chunk = [
        score_event("1", "Ann", 1, 0.1),
        score_event("2", "Bob", 1, 0.2),
        score_event("3", "Cy", 1, 0.3),
    ]
    .concat();
    let (_upstream, url) = upstream(vec![Plan::Stream(vec![chunk], End::Hang)]).await;
    let mut feed = Feed::new(no_retry_wait(url)).unwrap();
    let ready = |feed: &mut Feed| {
        std::iter::from_fn(|| feed.ready()).map(|item| describe(&item)).collect::<Vec<_>>()
    };
    assert!(feed.ready().is_none(), "nothing is parsed before the first connection");
    assert_eq!(describe(&feed.next().await.unwrap()), "connecting 1");
    assert_eq!(ready(&mut feed), ["connected"]);
    assert_eq!(describe(&feed.next().await.unwrap()), "event Ann 1 0.1 id=1");
    assert_eq!(ready(&mut feed), ["event Bob 1 0.2 id=2", "event Cy 1 0.3 id=3"]);
}
