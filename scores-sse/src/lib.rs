//! Server-Sent Events for `scores`: a byte-level parser, an encoder, and the reconnecting client
//! that reads the upstream feed.
//!
//! - [`Parser`]: sans-IO and WHATWG-conformant. Feed it bytes in any chunking; get [`Item`]s:
//!   events, `retry` values and, optionally, comments. Bad input never stalls it: invalid UTF-8
//!   becomes U+FFFD, and a line or event over its [`Limits`] is dropped with a [`ParseError`]
//!   while parsing goes on.
//! - [`encode`]: writes an [`Event`] as SSE text that parses back to the same event.
//! - [`Feed`]: pulls a live feed over HTTP, yields decoded `scores-core` events, rejected events
//!   and connection states, and reconnects with jittered exponential backoff and `Last-Event-ID`
//!   until the server answers 204.
//!
//! # Example
//!
//! ```
//! use scores_sse::{encode, Event, Item, Parser};
//!
//! let mut text = String::new();
//! encode(&Event::new("score", r#"{"studentId":"Marvin32","exam":11295,"score":0.64}"#).with_id("1"), &mut text)?;
//! assert_eq!(text, "event: score\nid: 1\ndata: {\"studentId\":\"Marvin32\",\"exam\":11295,\"score\":0.64}\n\n");
//!
//! let mut parser = Parser::default();
//! let (first, second) = text.as_bytes().split_at(10); // any chunking gives the same events
//! let mut items: Vec<_> = parser.feed(first).collect();
//! items.extend(parser.feed(second));
//! let Ok(Item::Event(event)) = &items[0] else { unreachable!() };
//! assert_eq!((&*event.event_type, &*event.id), ("score", "1"));
//! assert_eq!(parser.last_event_id(), "1");
//! # Ok::<(), scores_sse::EncodeError>(())
//! ```

mod encoder;
mod feed;
mod parser;

pub use crate::encoder::{EncodeError, encode, encode_comment, encode_retry};
pub use crate::feed::{
    BuildError, ConnectionState, Disconnect, Feed, FeedConfig, FeedError, FeedItem, FeedOutput,
    InvalidUrl, check_url,
};
pub use crate::parser::{Event, EventRef, Item, ItemRef, Limits, ParseError, Parser};
