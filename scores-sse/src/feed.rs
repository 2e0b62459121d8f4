//! [`Feed`]: a client for an upstream score feed that never gives up.
//!
//! The feed is pulled: each [`Feed::next`] returns the next [`FeedItem`], which is a decoded
//! event, an ignored event, a rejected one, or a change of connection state. Nothing but an HTTP
//! 204 from the server ends it: bad events become [`FeedItem::Rejected`], and every failure to
//! connect or to keep reading becomes [`ConnectionState::Disconnected`] followed by a jittered,
//! exponentially growing wait and a new attempt that sends `Last-Event-ID`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, redirect};
use scores_core::{DecodeError, Decoded, ScoreEvent, decode};
use tokio::time::Instant;

use crate::parser::{Event, ItemRef, Limits, ParseError, Parser};

/// How a [`Feed`] connects and reconnects. Build one with [`FeedConfig::new`] and change fields
/// with struct update syntax.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// The upstream SSE endpoint.
    pub url: String,
    /// Sent as `Last-Event-ID` on the first connection when not empty (resuming a stored feed).
    pub last_event_id: String,
    /// The base reconnection delay until the server sends `retry:`.
    pub retry: Duration,
    /// The longest wait between two attempts, whatever the server or the backoff says.
    pub max_retry: Duration,
    /// A connection that lasted this long resets the backoff; shorter ones keep growing it.
    pub healthy_after: Duration,
    /// A connection silent for this long is taken as dead. `None` waits forever.
    pub idle_timeout: Option<Duration>,
    /// How long establishing a TCP (and TLS) connection may take.
    pub connect_timeout: Duration,
    /// How many redirects one attempt follows.
    pub max_redirects: usize,
    /// Parser limits on line and event size.
    pub limits: Limits,
    /// Decoded score events, or every SSE event as it came.
    pub output: FeedOutput,
}

/// What [`Feed`] yields for each event the stream dispatches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FeedOutput {
    /// Decode events into [`FeedItem::Event`], [`FeedItem::Ignored`] or [`FeedItem::Rejected`].
    #[default]
    Decoded,
    /// Pass every event through as [`FeedItem::Raw`], undecoded (for recording and tailing).
    Raw,
}

impl FeedConfig {
    /// Defaults for `url`: 1 s base delay, 30 s cap, backoff reset after 30 s of health, 30 s
    /// idle timeout (the feed sends a burst every 5 s), 10 s to connect, 10 redirects.
    pub fn new(url: impl Into<String>) -> FeedConfig {
        FeedConfig {
            url: url.into(),
            last_event_id: String::new(),
            retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 10,
            limits: Limits::default(),
            output: FeedOutput::Decoded,
        }
    }
}

/// What the feed yields.
#[derive(Debug)]
pub enum FeedItem {
    /// A valid score event, with the SSE last event id in force when it was dispatched.
    Event {
        /// The decoded event.
        event: ScoreEvent,
        /// The stream's last event id (empty when the upstream sends none).
        id: Arc<str>,
    },
    /// An event as the stream sent it, with [`FeedOutput::Raw`].
    Raw(Event),
    /// An event of a type that carries no score. Count it; it is not an error.
    Ignored {
        /// Its event type.
        event_type: Arc<str>,
    },
    /// An event or part of the stream that had to be dropped. The feed goes on.
    Rejected(FeedError),
    /// The connection changed state.
    State(ConnectionState),
}

/// Why part of the upstream stream was dropped.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// An event whose data is not a valid score event.
    #[error("rejected event (id {id:?}): {error}")]
    Decode {
        /// Why.
        error: DecodeError,
        /// The stream's last event id at that event.
        id: Arc<str>,
        /// The event's data, for the log.
        data: String,
    },
    /// An event whose data held bytes that are not UTF-8: decoded, they would name another
    /// student (every invalid sequence becomes U+FFFD, so different ids could merge).
    #[error("rejected event (id {id:?}): its data is not UTF-8: {data:?}")]
    NotUtf8 {
        /// The stream's last event id at that event.
        id: Arc<str>,
        /// The event's data as decoded, for the log.
        data: String,
    },
    /// A line or event over the parser's limits.
    #[error("{0}")]
    Parse(ParseError),
}

impl FeedError {
    /// A short, stable name for the reason, for metrics labels and summaries: a
    /// [`DecodeError::reason`] or a [`ParseError::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            FeedError::Decode { error, .. } => error.reason(),
            FeedError::NotUtf8 { .. } => "not_utf8",
            FeedError::Parse(error) => error.reason(),
        }
    }
}

/// The connection's life cycle, as reported through [`FeedItem::State`].
#[derive(Clone, Debug)]
pub enum ConnectionState {
    /// Attempt number `attempt` (1 for the first after a healthy period) is starting.
    Connecting {
        /// Consecutive attempts without a healthy connection, this one included.
        attempt: u32,
    },
    /// The server answered 200 with `text/event-stream`; events follow.
    Connected,
    /// The attempt or the connection ended, for `reason`.
    Disconnected(Disconnect),
    /// The next attempt starts after `delay`.
    Retrying {
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// The server answered 204 No Content: it asks clients to stop. The feed ends.
    Stopped,
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionState::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            ConnectionState::Connected => f.write_str("connected"),
            ConnectionState::Disconnected(reason) => write!(f, "disconnected: {reason}"),
            ConnectionState::Retrying { delay } => write!(f, "retrying in {delay:.1?}"),
            ConnectionState::Stopped => f.write_str("the server answered 204: the feed has ended"),
        }
    }
}

/// Why a connection attempt failed or a connection ended.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Disconnect {
    /// The request could not be sent or its response not received.
    #[error("request failed: {0}")]
    Request(Arc<reqwest::Error>),
    /// The server answered with a status other than 200 or 204.
    #[error("server answered {0}")]
    Status(StatusCode),
    /// The server answered 200 with a content type other than `text/event-stream`.
    #[error("server answered with content type {0:?}, not text/event-stream")]
    ContentType(Option<String>),
    /// Reading the stream failed (the connection was reset or broke mid-body).
    #[error("reading the stream failed: {0}")]
    Read(Arc<reqwest::Error>),
    /// The server ended the response.
    #[error("the server closed the stream")]
    Closed,
    /// A line grew past the parser's limit: the server is not sending SSE this client can
    /// use, and reading the rest of the line would cost time for nothing.
    #[error("a line exceeded {0} bytes")]
    LineTooLong(usize),
    /// Nothing arrived for the idle timeout.
    #[error("no bytes for {0:?}; the connection is taken as dead")]
    Idle(Duration),
}

/// Why a [`Feed`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configured URL is not one a feed can be read from.
    #[error(transparent)]
    Url(#[from] InvalidUrl),
    /// The HTTP client could not be built (for example, no TLS backend could be initialised).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A feed URL that cannot be fetched: checked before the first connection, so that a typo is
/// an error at start rather than a retry loop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    /// The text is not a URL at all.
    #[error("{url:?} is not a URL: {error}")]
    Syntax {
        /// The text given.
        url: String,
        /// What the URL parser objected to.
        error: url::ParseError,
    },
    /// A URL whose scheme is not `http` or `https`.
    #[error("{url:?} is not an http:// or https:// URL (its scheme is {scheme:?})")]
    Scheme {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host, as a [`Feed`]
/// needs; [`Feed::new`] calls it, and a command line can call it to refuse a bad URL at once.
pub fn check_url(url: &str) -> Result<(), InvalidUrl> {
    let parsed =
        url::Url::parse(url).map_err(|error| InvalidUrl::Syntax { url: url.to_owned(), error })?;
    match parsed.scheme() {
        // The URL parser refuses an http(s) URL without a host (`EmptyHost`).
        "http" | "https" => Ok(()),
        scheme => Err(InvalidUrl::Scheme { url: url.to_owned(), scheme: scheme.to_owned() }),
    }
}

/// A reconnecting SSE client that yields decoded score events. See the module docs.
#[derive(Debug)]
pub struct Feed {
    config: FeedConfig,
    client: reqwest::Client,
    parser: Parser,
    /// The base delay: `config.retry` until the server sends `retry:`.
    retry: Duration,
    /// Consecutive attempts without a healthy connection.
    attempt: u32,
    phase: Phase,
    pending: VecDeque<FeedItem>,
}

#[derive(Debug)]
enum Phase {
    Connect,
    Streaming { response: reqwest::Response, connected_at: Instant },
    Waiting { until: Instant },
    Stopped,
}

impl Feed {
    /// A feed that connects on the first call to [`next`](Self::next).
    pub fn new(config: FeedConfig) -> Result<Feed, BuildError> {
        check_url(&config.url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(redirect_policy(config.max_redirects))
            .tcp_keepalive(Duration::from_secs(15))
            .build()?;
        let parser = Parser::new(config.limits).with_last_event_id(&config.last_event_id);
        Ok(Feed {
            retry: config.retry,
            config,
            client,
            parser,
            attempt: 0,
            phase: Phase::Connect,
            pending: VecDeque::new(),
        })
    }

    /// The last event id the upstream committed, sent as `Last-Event-ID` on reconnect.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// The next item; `None` only after the server answered 204.
    ///
    /// Cancel-safe: dropping the future loses no event (an unread chunk stays in the socket),
    /// so `next` can be raced against a shutdown signal.
    pub async fn next(&mut self) -> Option<FeedItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            match &mut self.phase {
                Phase::Stopped => return None,
                Phase::Waiting { until } => {
                    tokio::time::sleep_until(*until).await;
                    self.phase = Phase::Connect;
                }
                Phase::Connect => self.connect().await,
                Phase::Streaming { response, connected_at } => {
                    let connected_at = *connected_at;
                    let chunk = match self.config.idle_timeout {
                        Some(idle) => match tokio::time::timeout(idle, response.chunk()).await {
                            Ok(chunk) => chunk,
                            Err(_) => {
                                self.disconnect(Disconnect::Idle(idle), Some(connected_at));
                                continue;
                            }
                        },
                        None => response.chunk().await,
                    };
                    match chunk {
                        Ok(Some(bytes)) => {
                            if let Some(limit) = self.parse(&bytes) {
                                self.disconnect(Disconnect::LineTooLong(limit), Some(connected_at));
                            }
                        }
                        Ok(None) => self.disconnect(Disconnect::Closed, Some(connected_at)),
                        Err(error) => {
                            self.disconnect(Disconnect::Read(Arc::new(error)), Some(connected_at));
                        }
                    }
                }
            }
        }
    }

    /// The next item already parsed from what the upstream sent, without waiting for more:
    /// what [`next`](Self::next) would return at once. `None` when `next` would have to read,
    /// connect or wait. A consumer that hands items on in batches takes one with `next`, then
    /// the rest of its chunk with `ready`.
    pub fn ready(&mut self) -> Option<FeedItem> {
        self.pending.pop_front()
    }

    async fn connect(&mut self) {
        self.attempt += 1;
        self.pending
            .push_back(FeedItem::State(ConnectionState::Connecting { attempt: self.attempt }));
        let mut request = self
            .client
            .get(&self.config.url)
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        let last_event_id = self.parser.last_event_id();
        if !last_event_id.is_empty() {
            match HeaderValue::from_bytes(last_event_id.as_bytes()) {
                Ok(value) => request = request.header("Last-Event-ID", value),
                Err(_) => tracing::warn!(
                    last_event_id,
                    "last event id cannot be sent as a header (it has control characters); \
                     connecting without it"
                ),
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return self.disconnect(Disconnect::Request(Arc::new(error)), None),
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT => {
                tracing::info!(url = %self.config.url, "upstream answered 204 No Content: stopping");
                self.phase = Phase::Stopped;
                self.pending.push_back(FeedItem::State(ConnectionState::Stopped));
                return;
            }
            status => return self.disconnect(Disconnect::Status(status), None),
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        if !content_type.as_deref().is_some_and(is_event_stream) {
            return self.disconnect(Disconnect::ContentType(content_type), None);
        }
        tracing::info!(url = %self.config.url, "connected to upstream");
        self.phase = Phase::Streaming { response, connected_at: Instant::now() };
        self.pending.push_back(FeedItem::State(ConnectionState::Connected));
    }

    /// Parses a chunk into pending items; `Some(limit)` when a line went past the limit, after
    /// which the rest of the chunk is not read.
    fn parse(&mut self, bytes: &[u8]) -> Option<usize> {
        let (pending, retry, output) = (&mut self.pending, &mut self.retry, self.config.output);
        let mut line_too_long = None;
        self.parser.feed_with(bytes, |item| {
            if line_too_long.is_some() {
                return;
            }
            let fed = match item {
                Ok(ItemRef::Event(event)) if output == FeedOutput::Raw => FeedItem::Raw(Event {
                    event_type: Arc::from(event.event_type),
                    data: event.data.to_owned(),
                    id: Arc::from(event.id),
                }),
                Ok(ItemRef::Event(event)) if !event.data_is_utf8 => {
                    FeedItem::Rejected(FeedError::NotUtf8 {
                        id: Arc::from(event.id),
                        data: event.data.to_owned(),
                    })
                }
                Ok(ItemRef::Event(event)) => match decode(event.event_type, event.data) {
                    Ok(Decoded::Event(score_event)) => {
                        FeedItem::Event { event: score_event, id: Arc::from(event.id) }
                    }
                    Ok(Decoded::Ignored) => {
                        FeedItem::Ignored { event_type: Arc::from(event.event_type) }
                    }
                    Err(error) => FeedItem::Rejected(FeedError::Decode {
                        error,
                        id: Arc::from(event.id),
                        data: event.data.to_owned(),
                    }),
                },
                Ok(ItemRef::Retry(delay)) => {
                    *retry = delay;
                    return;
                }
                Ok(ItemRef::Comment(_)) => return,
                Err(error) => {
                    if let ParseError::LineTooLong { limit, .. } = error {
                        line_too_long = Some(limit);
                    }
                    FeedItem::Rejected(FeedError::Parse(error))
                }
            };
            pending.push_back(fed);
        });
        line_too_long
    }

    fn disconnect(&mut self, reason: Disconnect, connected_at: Option<Instant>) {
        self.parser.finish();
        if connected_at.is_some_and(|at| at.elapsed() >= self.config.healthy_after) {
            self.attempt = 0;
        }
        let delay = backoff(self.retry, self.config.max_retry, self.attempt, fastrand::f64());
        tracing::warn!(url = %self.config.url, %reason, ?delay, attempt = self.attempt, "upstream disconnected; retrying");
        self.pending.push_back(FeedItem::State(ConnectionState::Disconnected(reason)));
        self.pending.push_back(FeedItem::State(ConnectionState::Retrying { delay }));
        self.phase = Phase::Waiting { until: Instant::now() + delay };
    }
}

/// Exponential backoff with jitter above it: with `floor = min(cap, base × 2^(attempt−1))`, a
/// uniform wait in `[floor, min(cap, 1.5 × floor)]`, where `unit` is a uniform sample in
/// `[0, 1)`. So a client never reconnects sooner than the server's `retry:` asked (the base),
/// as WHATWG's "optionally wait some more" allows, and never waits longer than `cap`, which also
/// bounds what a server can ask. Attempt 0 or 1 waits from `base`.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let floor = base.saturating_mul(1 << doublings).min(cap);
    let ceiling = floor.saturating_add(floor / 2).min(cap);
    floor + (ceiling - floor).mul_f64(unit.clamp(0.0, 1.0))
}

/// Follows at most `max` redirects in one attempt, and none to the URL being fetched (an empty
/// or self-naming `Location`), which would only loop: that fails the attempt at once.
fn redirect_policy(max: usize) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().last().is_some_and(|previous| previous == attempt.url()) {
            let error = format!("redirected to the URL being fetched, {}", attempt.url());
            attempt.error(error)
        } else if attempt.previous().len() > max {
            attempt.error(format!("more than {max} redirects"))
        } else {
            attempt.follow()
        }
    })
}

fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_above_the_servers_delay() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(30));
        let shortest = |attempt| backoff(base, cap, attempt, 0.0);
        let longest = |attempt| backoff(base, cap, attempt, 1.0);
        assert_eq!((shortest(1), longest(1)), (base, Duration::from_millis(1500)));
        assert_eq!((shortest(2), longest(2)), (Duration::from_secs(2), Duration::from_secs(3)));
        assert_eq!((shortest(5), longest(5)), (Duration::from_secs(16), Duration::from_secs(24)));
        assert_eq!((shortest(6), longest(6)), (cap, cap));
        assert_eq!(longest(u32::MAX), cap);
        assert_eq!(backoff(base, cap, 3, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(Duration::ZERO, cap, 9, 1.0), Duration::ZERO);
        // A server asking for more than the cap gets the cap.
        assert_eq!(backoff(Duration::from_secs(3600), cap, 1, 0.0), cap);
        proptest::proptest!(|(base_ms in 0u64..100_000, attempt in 0u32..40, unit in 0.0f64..1.0)| {
            let base = Duration::from_millis(base_ms);
            let delay = backoff(base, cap, attempt, unit);
            proptest::prop_assert!(delay >= base.min(cap) && delay <= cap, "{delay:?}");
        });
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(!is_event_stream("text/plain"));
        assert!(!is_event_stream(""));
    }
}
