//! A byte-level, sans-IO parser for `text/event-stream`, following the WHATWG rules.
//!
//! Feed it bytes in any chunking with [`Parser::feed`]; it yields the same [`Item`]s whatever the
//! chunk boundaries. Work is linear in the input: each byte is scanned once, and only the
//! unfinished line at the end of a chunk is copied. Memory is bounded by [`Limits`].

use std::sync::Arc;
use std::time::Duration;

use memchr::{memchr, memchr2};

/// One event as dispatched by the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event type; `message` when the stream names none.
    pub event_type: Arc<str>,
    /// The data lines, joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched; empty when none.
    pub id: Arc<str>,
}

impl Event {
    /// A `message`-typed event with no id.
    pub fn message(data: impl Into<String>) -> Event {
        Event { event_type: Arc::from("message"), data: data.into(), id: Arc::from("") }
    }

    /// An event of type `event_type` with no id.
    pub fn new(event_type: &str, data: impl Into<String>) -> Event {
        Event { event_type: Arc::from(event_type), data: data.into(), id: Arc::from("") }
    }

    /// The same event with id `id`.
    pub fn with_id(self, id: &str) -> Event {
        Event { id: Arc::from(id), ..self }
    }
}

/// What the stream carries besides events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(Event),
    /// The server asked for this reconnection delay (`retry:` with only ASCII digits).
    Retry(Duration),
    /// A comment line's text after the colon; only with [`Parser::with_comments`].
    Comment(String),
}

/// An [`Item`] borrowed from the parser's buffers, as [`Parser::feed_with`] hands it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemRef<'a> {
    /// A dispatched event.
    Event(EventRef<'a>),
    /// The server asked for this reconnection delay.
    Retry(Duration),
    /// A comment line's text after the colon; only with [`Parser::with_comments`].
    Comment(&'a str),
}

/// An [`Event`] borrowed from the parser's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The event type; `message` when the stream names none.
    pub event_type: &'a str,
    /// The data lines, joined with LF.
    pub data: &'a str,
    /// The last event id in force when the event was dispatched; empty when none.
    pub id: &'a str,
    /// The 1-based line of the stream on which the event's block began (its first line after
    /// the previous blank line), counting every line the parser has seen since it was created.
    pub line: u64,
    /// Whether the data lines were UTF-8 as sent. When not, each invalid sequence was replaced
    /// by U+FFFD, as WHATWG requires, and `data` is not what the server meant: a caller for
    /// whom the bytes matter (two different ids must not become one) can refuse the event.
    pub data_is_utf8: bool,
}

/// Why part of the stream was dropped. Parsing always goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line grew beyond the limit; it and the event it belongs to are dropped.
    #[error("a line exceeded {limit} bytes; the event beginning on line {line} was dropped")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
        /// The line on which the dropped event began, as in [`EventRef::line`].
        line: u64,
    },
    /// An `id` field longer than the limit; the event it belongs to is dropped and the last
    /// event id stays as it was, so the id is never stored or sent back as `Last-Event-ID`.
    #[error("an event id exceeded {limit} bytes; the event beginning on line {line} was dropped")]
    IdTooLong {
        /// The limit in force.
        limit: usize,
        /// The line on which the dropped event began, as in [`EventRef::line`].
        line: u64,
    },
    /// An event's data grew beyond the limit; the event is dropped.
    #[error(
        "an event's data exceeded {limit} bytes; the event beginning on line {line} was dropped"
    )]
    EventTooLarge {
        /// The limit in force.
        limit: usize,
        /// The line on which the dropped event began, as in [`EventRef::line`].
        line: u64,
    },
}

impl ParseError {
    /// A short, stable name for the reason, for metrics labels: `line_too_long`,
    /// `id_too_long` or `event_too_large`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::LineTooLong { .. } => "line_too_long",
            ParseError::IdTooLong { .. } => "id_too_long",
            ParseError::EventTooLarge { .. } => "event_too_large",
        }
    }

    /// The line on which the dropped event began, as in [`EventRef::line`].
    pub fn line(&self) -> u64 {
        match *self {
            ParseError::LineTooLong { line, .. }
            | ParseError::IdTooLong { line, .. }
            | ParseError::EventTooLarge { line, .. } => line,
        }
    }
}

/// Bounds on what the parser buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest line kept, in bytes, line ending excluded.
    pub max_line_len: usize,
    /// The most data one event may carry, in bytes.
    pub max_event_len: usize,
    /// The longest event id kept, in bytes. An id is stored with its event and sent back as a
    /// header on reconnect, where servers refuse long ones.
    pub max_id_len: usize,
}

impl Default for Limits {
    /// 1 MiB lines, 4 MiB events and 1 KiB ids: far beyond any score event, small enough for
    /// any host.
    fn default() -> Limits {
        Limits { max_line_len: 1 << 20, max_event_len: 4 << 20, max_id_len: 1 << 10 }
    }
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// The parser's state between chunks. See the module docs.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    emit_comments: bool,
    /// How many bytes of a leading BOM have been seen; `None` once the stream start is past.
    bom_matched: Option<usize>,
    /// The previous chunk ended with CR: a leading LF in the next chunk completes that line ending.
    after_cr: bool,
    /// The unfinished line carried over from earlier chunks.
    line: Vec<u8>,
    /// The current line is over the limit and is being skipped to its end.
    skipping_line: bool,
    /// The current event is over a limit and will not be dispatched.
    dropping_event: bool,
    data: String,
    /// A data line of the current event was not UTF-8.
    data_replaced: bool,
    event_type: String,
    /// WHATWG's "last event ID buffer": set by an `id` field.
    id_buffer: String,
    /// WHATWG's "last event ID string": committed at each blank line, kept across reconnects.
    last_event_id: String,
    /// Lines ended so far.
    lines: u64,
    /// Lines whose field name is none of `event`, `data`, `id`, `retry`.
    unknown_fields: u64,
    /// The line on which the current event's block began.
    event_line: u64,
    /// Owned items for [`Parser::feed`], and the last type and id they shared, so that a stream
    /// that repeats them allocates them once.
    owned: OwnedItems,
}

#[derive(Debug, Default)]
struct OwnedItems {
    items: Vec<Result<Item, ParseError>>,
    event_type: Option<Arc<str>>,
    id: Option<Arc<str>>,
}

impl OwnedItems {
    fn push(&mut self, item: Result<ItemRef<'_>, ParseError>) {
        let owned = item.map(|item| match item {
            ItemRef::Event(event) => Item::Event(Event {
                event_type: shared(&mut self.event_type, event.event_type),
                data: event.data.to_owned(),
                id: shared(&mut self.id, event.id),
            }),
            ItemRef::Retry(delay) => Item::Retry(delay),
            ItemRef::Comment(text) => Item::Comment(text.to_owned()),
        });
        self.items.push(owned);
    }
}

/// `text` as an `Arc`, reusing `cache` when it already holds the same text.
fn shared(cache: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match cache {
        Some(cached) if **cached == *text => cached.clone(),
        _ => cache.insert(Arc::from(text)).clone(),
    }
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new(Limits::default())
    }
}

impl Parser {
    /// A parser at the start of a stream, with no last event id.
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            emit_comments: false,
            bom_matched: Some(0),
            after_cr: false,
            line: Vec::new(),
            skipping_line: false,
            dropping_event: false,
            data: String::new(),
            data_replaced: false,
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            lines: 0,
            unknown_fields: 0,
            event_line: 1,
            owned: OwnedItems::default(),
        }
    }

    /// The same parser, also yielding comment lines as [`Item::Comment`].
    pub fn with_comments(mut self) -> Parser {
        self.emit_comments = true;
        self
    }

    /// The same parser, starting with `last_event_id` as if a previous connection had set it.
    pub fn with_last_event_id(mut self, last_event_id: &str) -> Parser {
        self.last_event_id = last_event_id.to_owned();
        self.id_buffer = last_event_id.to_owned();
        self
    }

    /// The last event id committed by the stream (at a blank line), to send as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// How many lines so far named a field other than `event`, `data`, `id` and `retry`. The
    /// stream ignores them, as WHATWG requires; a caller can tell from this count that what it
    /// reads is not SSE text at all (a JSON-lines file, random bytes).
    pub fn n_unknown_fields(&self) -> u64 {
        self.unknown_fields
    }

    /// Parses the next bytes of the stream and returns the items they complete, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> std::vec::Drain<'_, Result<Item, ParseError>> {
        let mut owned = std::mem::take(&mut self.owned);
        owned.items.clear();
        self.feed_with(chunk, |item| owned.push(item));
        self.owned = owned;
        self.owned.items.drain(..)
    }

    /// Parses the next bytes of the stream and hands each item they complete to `on_item`,
    /// borrowed from the parser's buffers: no allocation per event. [`feed`](Self::feed) is
    /// this plus a copy of each item.
    pub fn feed_with(
        &mut self,
        chunk: &[u8],
        mut on_item: impl FnMut(Result<ItemRef<'_>, ParseError>),
    ) {
        let mut input = chunk;
        if let Some(mut matched) = self.bom_matched {
            while matched < BOM.len() {
                match input.first() {
                    None => {
                        self.bom_matched = Some(matched);
                        return;
                    }
                    Some(&byte) if byte == BOM[matched] => {
                        matched += 1;
                        input = &input[1..];
                    }
                    Some(_) => {
                        // Not a BOM after all: the bytes held back are ordinary stream bytes.
                        self.bom_matched = None;
                        self.parse(&BOM[..matched], &mut on_item);
                        break;
                    }
                }
            }
            self.bom_matched = None;
        }
        self.parse(input, &mut on_item);
    }

    /// Ends the stream (the connection closed): an unfinished event is discarded, as WHATWG
    /// requires, and the parser is ready for the next connection's stream. The last event id
    /// committed so far is kept.
    pub fn finish(&mut self) {
        self.bom_matched = Some(0);
        self.after_cr = false;
        self.line.clear();
        self.skipping_line = false;
        self.reset_event();
        self.id_buffer.clone_from(&self.last_event_id);
    }

    fn parse(&mut self, input: &[u8], on_item: &mut impl FnMut(Result<ItemRef<'_>, ParseError>)) {
        let mut rest = input;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = memchr2(b'\n', b'\r', rest) {
            let is_cr = rest[end] == b'\r';
            self.lines += 1;
            if self.line.is_empty() && !self.skipping_line {
                if end > self.limits.max_line_len {
                    self.line_too_long(on_item);
                } else {
                    self.process_line(&rest[..end], on_item);
                }
            } else {
                self.append_partial_line(&rest[..end], on_item);
                if !self.skipping_line {
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, on_item);
                    self.line = line;
                    self.line.clear();
                }
                self.skipping_line = false;
            }
            rest = &rest[end + 1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.append_partial_line(rest, on_item);
    }

    fn append_partial_line(
        &mut self,
        bytes: &[u8],
        on_item: &mut impl FnMut(Result<ItemRef<'_>, ParseError>),
    ) {
        if self.skipping_line || bytes.is_empty() {
            return;
        }
        if self.line.len() + bytes.len() > self.limits.max_line_len {
            self.line.clear();
            self.skipping_line = true;
            self.line_too_long(on_item);
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn line_too_long(&mut self, on_item: &mut impl FnMut(Result<ItemRef<'_>, ParseError>)) {
        on_item(Err(ParseError::LineTooLong {
            limit: self.limits.max_line_len,
            line: self.event_line,
        }));
        self.dropping_event = true;
        self.data.clear();
    }

    fn process_line(
        &mut self,
        line: &[u8],
        on_item: &mut impl FnMut(Result<ItemRef<'_>, ParseError>),
    ) {
        if line.is_empty() {
            self.dispatch(on_item);
            return;
        }
        if line[0] == b':' {
            if self.emit_comments {
                on_item(Ok(ItemRef::Comment(&String::from_utf8_lossy(&line[1..]))));
            }
            return;
        }
        let (name, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" if !self.dropping_event => {
                self.data_replaced |= !push_utf8_lossy(&mut self.data, value);
                self.data.push('\n');
                // Checked after decoding: replacement characters can make the text longer than
                // the bytes it came from. The trailing LF is removed at dispatch.
                if self.data.len() - 1 > self.limits.max_event_len {
                    on_item(Err(ParseError::EventTooLarge {
                        limit: self.limits.max_event_len,
                        line: self.event_line,
                    }));
                    self.dropping_event = true;
                    self.data.clear();
                }
            }
            b"event" => {
                self.event_type.clear();
                push_utf8_lossy(&mut self.event_type, value);
            }
            b"id" if value.len() > self.limits.max_id_len => self.id_too_long(on_item),
            // An id containing NUL is ignored entirely, as WHATWG requires.
            b"id" if memchr(0, value).is_none() => {
                // Measured once decoded: each byte that is not UTF-8 becomes three.
                let id = String::from_utf8_lossy(value);
                if id.len() > self.limits.max_id_len {
                    self.id_too_long(on_item);
                } else {
                    self.id_buffer.clear();
                    self.id_buffer.push_str(&id);
                }
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let millis = value.iter().fold(0u64, |n, digit| {
                    n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
                });
                on_item(Ok(ItemRef::Retry(Duration::from_millis(millis))));
            }
            b"data" | b"id" | b"retry" => {}
            _ => self.unknown_fields += 1,
        }
    }

    /// Drops the current event for an id over the limit, keeping the last id as it was.
    fn id_too_long(&mut self, on_item: &mut impl FnMut(Result<ItemRef<'_>, ParseError>)) {
        if !self.dropping_event {
            on_item(Err(ParseError::IdTooLong {
                limit: self.limits.max_id_len,
                line: self.event_line,
            }));
            self.dropping_event = true;
            self.data.clear();
        }
    }

    fn dispatch(&mut self, on_item: &mut impl FnMut(Result<ItemRef<'_>, ParseError>)) {
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        if !self.dropping_event && !self.data.is_empty() {
            self.data.pop();
            let event_type = match self.event_type.as_str() {
                "" => "message",
                named => named,
            };
            let event = EventRef {
                event_type,
                data: &self.data,
                id: &self.last_event_id,
                line: self.event_line,
                data_is_utf8: !self.data_replaced,
            };
            on_item(Ok(ItemRef::Event(event)));
        }
        self.reset_event();
    }

    fn reset_event(&mut self) {
        self.event_line = self.lines + 1;
        self.data.clear();
        self.data_replaced = false;
        self.event_type.clear();
        self.dropping_event = false;
    }
}

/// Appends `bytes` as UTF-8, each invalid sequence replaced by U+FFFD; false when one was.
fn push_utf8_lossy(out: &mut String, bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            out.push_str(text);
            true
        }
        Err(_) => {
            out.push_str(&String::from_utf8_lossy(bytes));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(parser: &mut Parser, chunks: &[&[u8]]) -> Vec<Result<Item, ParseError>> {
        chunks.iter().flat_map(|chunk| parser.feed(chunk).collect::<Vec<_>>()).collect()
    }

    fn events(items: &[Result<Item, ParseError>]) -> Vec<(String, String, String)> {
        items
            .iter()
            .filter_map(|item| match item {
                Ok(Item::Event(e)) => {
                    Some((e.event_type.to_string(), e.data.clone(), e.id.to_string()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn events_whose_data_was_not_utf8_say_so() {
        let mut parser = Parser::default();
        let mut seen = Vec::new();
        parser.feed_with(b"data: a\xFFb\n\ndata: ok\n\nevent: \xFF\ndata: fine\n\n", |item| {
            if let Ok(ItemRef::Event(event)) = item {
                seen.push((event.data.to_owned(), event.data_is_utf8));
            }
        });
        assert_eq!(
            seen,
            [("a\u{FFFD}b".to_owned(), false), ("ok".to_owned(), true), ("fine".to_owned(), true)]
        );
    }

    #[test]
    fn lines_that_name_no_known_field_are_counted() {
        let mut parser = Parser::default();
        let items: Vec<_> = parser
            .feed(b"{\"studentId\":\"a\"}\ndata: 1\nid: 2\nretry: x\n: hi\nfoo\n\n")
            .collect();
        assert_eq!(items.len(), 1);
        assert_eq!(parser.n_unknown_fields(), 2);
    }

    #[test]
    fn trailing_cr_dispatches_without_waiting_for_the_next_byte() {
        let mut parser = Parser::default();
        let items = parse_all(&mut parser, &[b"data: a\r\r"]);
        assert_eq!(events(&items), [("message".into(), "a".into(), "".into())]);
        // The LF that may follow a CR is swallowed, not taken as a blank line.
        assert!(parse_all(&mut parser, &[b"\ndata: b\r\n\r\n"]).len() == 1);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_stalled() {
        let mut parser = Parser::default();
        let items = parse_all(&mut parser, &[b"data: a\xff\xfeb\n\n"]);
        assert_eq!(events(&items), [("message".into(), "a\u{fffd}\u{fffd}b".into(), "".into())]);
    }

    #[test]
    fn an_overlong_line_drops_its_event_and_parsing_resynchronises() {
        let mut parser =
            Parser::new(Limits { max_line_len: 16, max_event_len: 64, ..Limits::default() });
        let long = [b'x'; 40];
        let items = parse_all(
            &mut parser,
            &[b"data: ", &long[..20], &long[20..], b"\ndata: tail\n\ndata: ok\n\n"],
        );
        assert_eq!(items[0], Err(ParseError::LineTooLong { limit: 16, line: 1 }));
        assert_eq!(events(&items), [("message".into(), "ok".into(), "".into())]);
    }

    /// A 500 KB id was stored with its event and sent back as `Last-Event-ID` until the
    /// upstream refused the header, and ingest stopped for good.
    #[test]
    fn an_overlong_id_drops_its_event_and_keeps_the_last_id() {
        let mut parser = Parser::default();
        let long_id = "7".repeat(Limits::default().max_id_len + 1);
        let stream = format!("id: 1\ndata: a\n\nid: {long_id}\ndata: b\n\ndata: c\n\n");
        let items = parse_all(&mut parser, &[stream.as_bytes()]);
        assert_eq!(items[1], Err(ParseError::IdTooLong { limit: 1024, line: 4 }));
        assert_eq!(
            events(&items),
            [
                ("message".into(), "a".into(), "1".into()),
                ("message".into(), "c".into(), "1".into())
            ]
        );
        assert_eq!(parser.last_event_id(), "1");
        let at_the_limit = format!("id: {}\ndata: d\n\n", &long_id[1..]);
        assert_eq!(events(&parse_all(&mut parser, &[at_the_limit.as_bytes()]))[0].2, long_id[1..]);
    }

    /// Found by the fuzzer: an id of bytes that are not UTF-8, within the limit as bytes, grew
    /// past it once each byte became U+FFFD (three bytes).
    #[test]
    fn an_id_over_the_limit_once_decoded_drops_its_event() {
        let limits = Limits { max_id_len: 8, ..Limits::default() };
        let mut parser = Parser::new(limits);
        let items = parse_all(&mut parser, &[b"id: \xff\xff\xff\ndata: a\n\nid: ok\ndata: b\n\n"]);
        assert_eq!(items[0], Err(ParseError::IdTooLong { limit: 8, line: 1 }));
        assert_eq!(events(&items), [("message".into(), "b".into(), "ok".into())]);
        let items = parse_all(&mut parser, &[b"id: \xff\xff\ndata: c\n\n"]);
        assert_eq!(events(&items), [("message".into(), "c".into(), "\u{FFFD}\u{FFFD}".into())]);
    }

    #[test]
    fn an_oversized_event_is_dropped_with_an_error() {
        let mut parser =
            Parser::new(Limits { max_line_len: 16, max_event_len: 20, ..Limits::default() });
        let items =
            parse_all(&mut parser, &[b"data: 0123456789\ndata: 0123456789\n\ndata: ok\n\n"]);
        assert_eq!(items[0], Err(ParseError::EventTooLarge { limit: 20, line: 1 }));
        assert_eq!(events(&items), [("message".into(), "ok".into(), "".into())]);
    }

    #[test]
    fn events_know_the_line_their_block_began_on_whatever_the_line_endings() {
        let mut parser = Parser::default();
        let mut lines = Vec::new();
        let stream = b": hello\r\n\r\nevent: score\rdata: a\r\n\n\n\nid: 3\ndata: b\n\ndata: c\n\n";
        for chunk in stream.chunks(3) {
            parser.feed_with(chunk, |item| {
                if let Ok(ItemRef::Event(event)) = item {
                    lines.push((event.data.to_owned(), event.line));
                }
            });
        }
        assert_eq!(lines, [("a".into(), 3), ("b".into(), 8), ("c".into(), 11)]);
    }

    #[test]
    fn an_unfinished_events_id_does_not_leak_past_the_end_of_the_stream() {
        let mut parser = Parser::default();
        parse_all(&mut parser, &[b"id: 1\ndata: a\n\nid: 2\ndata: b\n"]);
        parser.finish();
        assert_eq!(parser.last_event_id(), "1");
        let items = parse_all(&mut parser, &[b"data: c\n\n"]);
        assert_eq!(events(&items), [("message".into(), "c".into(), "1".into())]);
    }

    #[test]
    fn a_blank_line_commits_the_id_even_without_data() {
        let mut parser = Parser::default();
        assert!(parse_all(&mut parser, &[b"id: 7\n\n"]).is_empty());
        assert_eq!(parser.last_event_id(), "7");
    }

    #[test]
    fn retry_needs_only_digits() {
        let mut parser = Parser::default();
        let items = parse_all(
            &mut parser,
            &[b"retry: 1500\nretry: 15x\nretry:\nretry: 99999999999999999999999\n"],
        );
        assert_eq!(
            items,
            [
                Ok(Item::Retry(Duration::from_millis(1500))),
                Ok(Item::Retry(Duration::from_millis(u64::MAX)))
            ]
        );
    }
}
