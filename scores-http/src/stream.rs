//! `GET /scores`: the accepted events as SSE, read from the log, so any instance can serve
//! as another's upstream. `id:` is the sequence number; a client resumes with `Last-Event-ID`
//! (or `?after=SEQ`) and gets every event after it, then live ones as they become durable.
//! Where the log cannot be read, the client is told: a stream that meets damage sends an
//! `event: error` whose data is the API's error body, then closes; a resume point inside
//! damage is a 500 `log_damaged`.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use scores_pipeline::LogError;
use scores_pipeline::log::{Cursor, LogRead, Record};
use tokio::sync::{Semaphore, watch};

use crate::error::ApiError;
use crate::query::RawParams;
use crate::state::{AppState, StreamSlot};

/// How often an idle stream sends a comment, so proxies and clients know it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Records read from the log per chunk sent.
const CHUNK_RECORDS: usize = 4096;
/// The stream's first line: clients wait a second before they reconnect.
const RETRY: &str = "retry: 1000\n";
/// What an idle stream sends every [`KEEP_ALIVE`].
const KEEP_ALIVE_COMMENT: &str = ":keep-alive\n";

pub(crate) async fn scores(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(log) = state.log() else {
        return state.not_ready().into_response();
    };
    let after_param = match RawParams::parse(query.as_deref()).and_then(RawParams::stream_after) {
        Ok(after) => after,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let last_event_id = match headers.get("last-event-id").map(|value| value.to_str()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return ApiError::InvalidHeader {
                name: "Last-Event-ID",
                reason: "expected a sequence number, got bytes that are not ASCII text".to_owned(),
            }
            .into_response();
        }
    };
    let after = match last_event_id.map(str::trim) {
        Some("") | None => after_param.unwrap_or(0),
        Some(id) => match id.parse::<u64>() {
            Ok(seq) => seq,
            Err(_) => {
                return ApiError::InvalidHeader {
                    name: "Last-Event-ID",
                    reason: format!("expected a sequence number, got {id:?}"),
                }
                .into_response();
            }
        },
    };
    let slot = match state.stream_slot() {
        Ok(slot) => slot,
        Err(error) => return error.into_response(),
    };
    let next_seq = after.saturating_add(1);
    let mut ready = VecDeque::from([Bytes::from_static(RETRY.as_bytes())]);
    let mut cursor = log.cursor(next_seq);
    let mut after_first = next_seq;
    // The first chunk is read before answering, so that a resume point inside damage is an
    // error the client sees as one (a browser's EventSource stops on it), not an empty stream
    // it would reconnect to forever.
    if log.last_seq() >= next_seq {
        let Some((returned, read)) = read_chunk(state.stream_reads(), cursor).await else {
            return ApiError::Internal.into_response();
        };
        cursor = returned;
        match read {
            Ok(Some((last_seq, text))) => {
                ready.push_back(Bytes::from(text));
                after_first = last_seq + 1;
            }
            Ok(None) => {}
            Err(error) => return read_failed(&state, &error).into_response(),
        }
    }
    let stream = Follow {
        cursor: Some(cursor),
        log,
        state: state.clone(),
        // After `u64::MAX` no event can come: the stream only keeps alive.
        next_seq: after_first,
        shutdown: state.shutdown(),
        ready,
        ending: false,
        _slot: slot,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, Follow::next_chunk));
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// What a read of the log that failed is, for the client: damage is reported to the pipeline
/// (so `/readyz` and `/metrics` name it) and is a 500; anything else passes, and is a 503.
fn read_failed(state: &AppState, error: &LogError) -> ApiError {
    if error.is_damage() {
        state.pipeline().report_damage(error.to_string());
        ApiError::LogDamaged(error.to_string())
    } else {
        tracing::warn!(%error, "cannot read the log for /scores");
        ApiError::LogUnavailable(error.to_string())
    }
}

/// What the records after a cursor read to, encoded: the last one's sequence number and the
/// text; `None` at the log's durable end.
type Chunk = Option<(u64, Vec<u8>)>;

/// Reads and encodes the next chunk on the blocking pool (a millisecond or two: a client
/// catching up must not hold a worker the queries need), a few at a time across every stream
/// (so that many streams catching up neither starve the writer of the cores nor spread their
/// buffers over a thread and its allocator cache each). `None` when the reading task failed.
async fn read_chunk(
    reads: Arc<Semaphore>,
    mut cursor: Box<dyn Cursor>,
) -> Option<(Box<dyn Cursor>, Result<Chunk, LogError>)> {
    let permit = reads.acquire_owned().await.ok()?;
    let read = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let chunk = cursor
            .read(CHUNK_RECORDS)
            .map(|records| records.last().map(|last| (last.seq, encode_records(&records))));
        (cursor, chunk)
    });
    match read.await {
        Ok(read) => Some(read),
        Err(error) => {
            tracing::error!(%error, "log reader task failed; ending the stream");
            None
        }
    }
}

struct Follow {
    log: Arc<dyn LogRead>,
    state: AppState,
    /// Reads on from where the last chunk ended; away on the blocking pool while it reads.
    cursor: Option<Box<dyn Cursor>>,
    next_seq: u64,
    shutdown: watch::Receiver<bool>,
    ready: VecDeque<Bytes>,
    /// The stream ends once `ready` is sent: the log could not be read on.
    ending: bool,
    /// Freed, and the stream no longer counted, when the client goes and the body is dropped.
    _slot: StreamSlot,
}

impl Follow {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Follow)> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Some((Ok(chunk), self));
            }
            if self.ending || *self.shutdown.borrow() {
                return None;
            }
            if self.log.last_seq() >= self.next_seq {
                let cursor = self.cursor.take()?;
                let (cursor, read) = read_chunk(self.state.stream_reads(), cursor).await?;
                self.cursor = Some(cursor);
                match read {
                    Ok(Some((last_seq, text))) => {
                        self.next_seq = last_seq + 1;
                        return Some((Ok(Bytes::from(text)), self));
                    }
                    Ok(None) => {}
                    // Never a silent end: the client is told why, then the stream closes.
                    Err(error) => {
                        let failed = read_failed(&self.state, &error);
                        self.ready.push_back(Bytes::from(error_event(&failed)));
                        self.ending = true;
                        continue;
                    }
                }
            }
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                waited = self.log.wait_beyond(self.next_seq - 1) => {
                    if waited.is_err() {
                        return None;
                    }
                }
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    return Some((Ok(Bytes::from_static(KEEP_ALIVE_COMMENT.as_bytes())), self));
                }
                _ = shutdown.changed() => return None,
            }
        }
    }
}

/// An SSE event of type `error` whose data is the API's error body for `error`.
fn error_event(error: &ApiError) -> Vec<u8> {
    let mut text = b"event: error\ndata: ".to_vec();
    text.extend_from_slice(&error.to_json());
    text.extend_from_slice(b"\n\n");
    text
}

/// The records as SSE, byte for byte what [`scores_sse::encode`] writes for an event of type
/// `score` with the record's sequence number as its id and its event's JSON as its data. Written
/// here directly, without an `Event` and a `String` per record: neither a decimal id nor compact
/// JSON holds a line break, so nothing needs splitting or checking.
fn encode_records(records: &[Record]) -> Vec<u8> {
    let mut text = Vec::with_capacity(records.len() * 112);
    for record in records {
        // Writes to a `Vec` cannot fail, and a `ScoreEvent` always serializes.
        let _ = write!(text, "event: score\nid: {}\ndata: ", record.seq);
        let _ = serde_json::to_writer(&mut text, &record.event);
        text.extend_from_slice(b"\n\n");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use scores_core::ScoreEvent;
    use scores_sse::{Event, encode, encode_comment, encode_retry};

    use super::*;

    #[test]
    fn records_are_encoded_as_the_sse_encoder_encodes_their_events() {
        let ids = ["Marvin32", "a b/c", "quote\"back\\slash", "Ünïcödé", "smile\u{1F600}"];
        let records: Vec<Record> = ids
            .iter()
            .zip(1..)
            .map(|(id, seq)| Record {
                seq: seq * 1_000_003,
                event: ScoreEvent::new(id, seq * 7, 1.0 / seq as f64).unwrap(),
                upstream_id: Arc::from(""),
            })
            .collect();
        let mut expected = String::new();
        for record in &records {
            let data = serde_json::to_string(&record.event).unwrap();
            let event = Event::new("score", data).with_id(&record.seq.to_string());
            encode(&event, &mut expected).unwrap();
        }
        assert_eq!(String::from_utf8(encode_records(&records)).unwrap(), expected);
    }

    #[test]
    fn the_retry_line_and_the_keep_alive_are_as_the_sse_encoder_writes_them() {
        let mut retry = String::new();
        encode_retry(Duration::from_secs(1), &mut retry);
        assert_eq!(RETRY, retry);
        let mut comment = String::new();
        encode_comment("keep-alive", &mut comment);
        assert_eq!(KEEP_ALIVE_COMMENT, comment);
    }
}
