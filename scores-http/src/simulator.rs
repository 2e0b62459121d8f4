//! A stand-in for the upstream feed: `GET /scores` streams score events that look like the
//! original's (`event: score`, compact JSON in the order studentId, exam, score, faker-style
//! ids, 5-digit exams, full-precision scores), deterministic from a seed.
//!
//! Every connection replays the same sequence from its start, or, with [`SimulatorConfig::ids`],
//! from after the `Last-Event-ID` it sends; a finished stream answers reconnects with 204. With
//! [`SimulatorConfig::broadcast`] there is one sequence instead, sent as time goes whether anyone
//! listens or not, and every connection gets what is sent from the moment it connects, as a live
//! upstream without resumption does (`Last-Event-ID` is not read then).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::broadcast;

/// How fast the simulator sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// About this many events per second, in bursts.
    PerSecond(f64),
    /// As fast as the connection takes them.
    Max,
}

/// What the simulated feed sends. [`Default`] looks like the original: bursts of 20 events
/// every 5 seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatorConfig {
    /// Events per second, or as fast as possible.
    pub rate: Rate,
    /// Events per burst; a burst shares one exam.
    pub burst: u64,
    /// How many distinct students.
    pub students: u64,
    /// How many distinct exams (bursts cycle through them).
    pub exams: u64,
    /// Same seed, same events.
    pub seed: u64,
    /// End each stream after this many events (valid and malformed together).
    pub count: Option<u64>,
    /// Send `id:` lines and resume from `Last-Event-ID`.
    pub ids: bool,
    /// Make every n-th event malformed JSON.
    pub bad_every: Option<u64>,
    /// Close the connection after every n events sent on it.
    pub drop_every: Option<u64>,
    /// One sequence for every connection, each getting what is sent from when it connects.
    pub broadcast: bool,
}

impl Default for SimulatorConfig {
    fn default() -> SimulatorConfig {
        SimulatorConfig {
            rate: Rate::PerSecond(4.0),
            burst: 20,
            students: 200,
            exams: 1_000,
            seed: 1,
            count: None,
            ids: false,
            bad_every: None,
            drop_every: None,
            broadcast: false,
        }
    }
}

/// A router with the simulated feed at `GET /scores`. With [`SimulatorConfig::broadcast`] the
/// sequence starts at once, on a task of the current tokio runtime.
pub fn router(config: SimulatorConfig) -> Router {
    let broadcast = config.broadcast.then(|| {
        let (sender, _) = broadcast::channel(BROADCAST_CHUNKS);
        let ended = Arc::new(AtomicBool::new(false));
        tokio::spawn(broadcast_all(config.clone(), sender.clone(), ended.clone()));
        Broadcast { sender, ended }
    });
    Router::new().route("/scores", get(feed)).with_state(Feed { config, broadcast })
}

/// The router's state: the sequence's description, and the broadcast it is sent on, if any.
#[derive(Clone)]
struct Feed {
    config: SimulatorConfig,
    broadcast: Option<Broadcast>,
}

#[derive(Clone)]
struct Broadcast {
    /// Chunks of SSE text as they are sent; an empty chunk ends the sequence.
    sender: broadcast::Sender<Bytes>,
    /// The sequence has ended: new connections get 204.
    ended: Arc<AtomicBool>,
}

/// How many chunks a broadcast connection may fall behind before it is closed (its client
/// reconnects, having missed what was sent meanwhile, as from a real broadcast upstream).
const BROADCAST_CHUNKS: usize = 1024;

/// Sends the sequence on `sender` as time goes, listened to or not, then an empty chunk.
async fn broadcast_all(
    config: SimulatorConfig,
    sender: broadcast::Sender<Bytes>,
    ended: Arc<AtomicBool>,
) {
    let names: Vec<String> = (0..config.students.max(1)).map(student_name).collect();
    let config = SimulatorConfig { drop_every: None, ..config };
    let mut stream = Stream { config, names, next: 0, sent_here: 0 };
    while let Some((Ok(chunk), next)) = stream.next_chunk().await {
        stream = next;
        // Nobody listening is no error: what is sent then is missed by everyone.
        let _ = sender.send(chunk);
        if stream.config.rate == Rate::Max {
            tokio::task::yield_now().await;
        }
    }
    ended.store(true, Ordering::Release);
    let _ = sender.send(Bytes::new());
}

/// Serves the simulated feed at `GET /scores` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SimulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config)).with_graceful_shutdown(shutdown).await
}

const FIRST: [&str; 24] = [
    "Marvin", "Susana", "Hannah", "Gretchen", "Otto", "Lavina", "Kaden", "Ruthie", "Cleve",
    "Brisa", "Tomas", "Zella", "Amos", "Ilene", "Jaunita", "Ward", "Delphia", "Ewell", "Freida",
    "Gunner", "Hilario", "Isom", "Jazmyne", "Kirstin",
];
const LAST: [&str; 24] = [
    "Langworth",
    "Herman",
    "Mayert",
    "Kuhn",
    "Bartell",
    "Schowalter",
    "Gleason",
    "Hilll",
    "Okuneva",
    "Runolfsdottir",
    "Wiza",
    "Ziemann",
    "Pfannerstill",
    "Kautzer",
    "Rau",
    "Dach",
    "Crooks",
    "Durgan",
    "Ernser",
    "Feeney",
    "Goyette",
    "Heller",
    "Jacobi",
    "Kessler",
];

/// The faker-style user name of student `index`: `Marvin32`, `Susana_Langworth7`,
/// `Hannah.Herman76`. Distinct indices give distinct names.
pub fn student_name(index: u64) -> String {
    let first = FIRST[(index % FIRST.len() as u64) as usize];
    let k = index / FIRST.len() as u64;
    let last = LAST[(k % LAST.len() as u64) as usize];
    match mix(index) % 3 {
        0 => format!("{first}{k}"),
        1 => format!("{first}_{last}{k}"),
        _ => format!("{first}.{last}{k}"),
    }
}

/// SplitMix64's finaliser: a well-mixed function of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Event `index` of the sequence `config` describes, as SSE text appended to `out`.
pub fn write_event(config: &SimulatorConfig, names: &[String], index: u64, out: &mut String) {
    let random = mix(config.seed ^ mix(index));
    let burst = index / config.burst.max(1);
    let exam = 10_000 + mix(config.seed ^ burst) % config.exams.clamp(1, 90_000);
    let student = &names[(random % names.len() as u64) as usize];
    let score = (mix(random) >> 11) as f64 / (1u64 << 53) as f64;
    out.push_str("event: score\n");
    if config.ids {
        let _ = writeln!(out, "id: {}", index + 1);
    }
    if config.bad_every.is_some_and(|n| n > 0 && (index + 1).is_multiple_of(n)) {
        let _ = write!(out, "data: {{\"studentId\":\"{student}\",\"exam\":{exam},\"score\":\n\n");
    } else {
        let _ = write!(
            out,
            "data: {{\"studentId\":\"{student}\",\"exam\":{exam},\"score\":{score}}}\n\n"
        );
    }
}

async fn feed(State(Feed { config, broadcast }): State<Feed>, headers: HeaderMap) -> Response {
    if let Some(broadcast) = broadcast {
        if broadcast.ended.load(Ordering::Acquire) {
            return StatusCode::NO_CONTENT.into_response();
        }
        let receiver = broadcast.sender.subscribe();
        let body =
            Body::from_stream(futures_util::stream::unfold(receiver, |mut receiver| async {
                // A connection that fell behind is closed; the end of the sequence ends it too.
                let chunk = receiver.recv().await.ok().filter(|chunk| !chunk.is_empty())?;
                Some((Ok::<_, std::io::Error>(chunk), receiver))
            }));
        return ([(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")], body)
            .into_response();
    }
    let resume_after = if config.ids {
        let id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
        id.and_then(|id| id.trim().parse::<u64>().ok()).unwrap_or(0)
    } else {
        0
    };
    // Without a count the sequence ends at id `u64::MAX`.
    if resume_after >= config.count.unwrap_or(u64::MAX) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let names: Vec<String> = (0..config.students.max(1)).map(student_name).collect();
    let stream = Stream { config, names, next: resume_after, sent_here: 0 };
    let body = Body::from_stream(futures_util::stream::unfold(stream, Stream::next_chunk));
    ([(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")], body).into_response()
}

struct Stream {
    config: SimulatorConfig,
    names: Vec<String>,
    /// Index of the next event to send.
    next: u64,
    /// Events sent on this connection.
    sent_here: u64,
}

impl Stream {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Stream)> {
        let remaining = self.config.count.unwrap_or(u64::MAX).saturating_sub(self.next);
        // `--drop-every n` ends this connection after n events; the client reconnects.
        let before_drop = match self.config.drop_every {
            Some(n) if n > 0 => n.saturating_sub(self.sent_here),
            _ => u64::MAX,
        };
        if remaining == 0 || before_drop == 0 {
            return None;
        }
        let n = match self.config.rate {
            Rate::Max => 512,
            Rate::PerSecond(rate) => {
                if self.sent_here > 0 || self.next > 0 {
                    let pause = self.config.burst as f64 / rate.max(1e-3);
                    tokio::time::sleep(Duration::from_secs_f64(pause.min(3600.0))).await;
                }
                self.config.burst.max(1)
            }
        };
        let n = n.min(remaining).min(before_drop);
        let mut text = String::with_capacity(n as usize * 96);
        for index in self.next..self.next + n {
            write_event(&self.config, &self.names, index, &mut text);
        }
        self.next += n;
        self.sent_here += n;
        Some((Ok(Bytes::from(text)), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_look_like_faker_user_names_and_are_distinct() {
        let names: Vec<String> = (0..10_000).map(student_name).collect();
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert!(names.iter().all(|n| scores_core::StudentId::new(n).is_ok()));
        assert!(names.iter().any(|n| n.contains('.')) && names.iter().any(|n| n.contains('_')));
    }

    #[tokio::test]
    async fn the_sequence_ends_at_the_last_id_there_is() {
        use tower::ServiceExt as _;

        let config = SimulatorConfig { ids: true, rate: Rate::Max, ..SimulatorConfig::default() };
        let resume = |id: u64| {
            let request = axum::http::Request::get("/scores").header("last-event-id", id);
            router(config.clone()).oneshot(request.body(Body::empty()).expect("a request"))
        };
        let response = resume(u64::MAX - 2).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("a body");
        let text = std::str::from_utf8(&body).expect("UTF-8");
        let ids: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("id: ")).collect();
        assert_eq!(ids, [(u64::MAX - 1).to_string(), u64::MAX.to_string()]);
        let response = resume(u64::MAX).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// Two connections to a broadcast at different times get one sequence: the later one's
    /// events are the earlier one's from some point on, whatever `Last-Event-ID` says.
    #[tokio::test]
    async fn a_broadcast_sends_one_sequence_to_every_connection_from_when_it_connects() {
        use tower::ServiceExt as _;

        let config = SimulatorConfig {
            rate: Rate::PerSecond(2_000.0),
            burst: 10,
            count: Some(600),
            broadcast: true,
            ..SimulatorConfig::default()
        };
        let app = router(config);
        let connect = |id: &str| {
            let request = axum::http::Request::get("/scores").header("last-event-id", id);
            app.clone().oneshot(request.body(Body::empty()).expect("a request"))
        };
        let early = connect("").await.expect("an answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let late = connect("5").await.expect("an answer");
        let read = |response: Response| async move {
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("a body");
            let text = String::from_utf8(body.to_vec()).expect("UTF-8");
            text.lines()
                .filter(|line| line.starts_with("data: "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let (early, late) = (read(early).await, read(late).await);
        assert!(!late.is_empty() && late.len() < early.len(), "{} {}", early.len(), late.len());
        assert_eq!(late[..], early[early.len() - late.len()..]);
        let after = connect("").await.expect("an answer");
        assert_eq!(after.status(), StatusCode::NO_CONTENT, "the sequence has ended");
    }

    #[test]
    fn events_are_deterministic_and_decode() {
        let config = SimulatorConfig { ids: true, ..SimulatorConfig::default() };
        let names: Vec<String> = (0..config.students).map(student_name).collect();
        let (mut a, mut b) = (String::new(), String::new());
        for index in 0..100 {
            write_event(&config, &names, index, &mut a);
            write_event(&config, &names, index, &mut b);
        }
        assert_eq!(a, b);
        let mut parser = scores_sse::Parser::default();
        let events: Vec<_> = parser.feed(a.as_bytes()).collect();
        assert_eq!(events.len(), 100);
        for item in events {
            let Ok(scores_sse::Item::Event(event)) = item else { panic!("an event") };
            let decoded = scores_core::decode(&event.event_type, &event.data);
            assert!(matches!(decoded, Ok(scores_core::Decoded::Event(_))), "{}", event.data);
        }
    }
}
