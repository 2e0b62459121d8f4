//! Writing events as `text/event-stream`.
//!
//! SSE has no escapes: a line break inside `data` becomes a new `data:` line, and the parser
//! joins them with LF. So `parse(encode(event))` gives back `event` with every CR, LF or CRLF in
//! its data as LF; the event type and id cannot hold line breaks at all.

use std::fmt::Write as _;
use std::time::Duration;

use crate::parser::Event;

/// Why an event cannot be written as SSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The event type contains CR or LF, which would end its line.
    #[error("the event type contains a line break")]
    LineBreakInEventType,
    /// The id contains CR or LF, which would end its line.
    #[error("the event id contains a line break")]
    LineBreakInId,
    /// The id contains NUL, which makes a conformant client ignore it.
    #[error("the event id contains NUL")]
    NulInId,
}

/// Appends `event` to `out` as SSE text: `event:` unless the type is `message`, `id:` unless the
/// id is empty, one `data:` line per line of data, then the blank line that dispatches it.
pub fn encode(event: &Event, out: &mut String) -> Result<(), EncodeError> {
    if event.event_type.contains(['\r', '\n']) {
        return Err(EncodeError::LineBreakInEventType);
    }
    if event.id.contains(['\r', '\n']) {
        return Err(EncodeError::LineBreakInId);
    }
    if event.id.contains('\0') {
        return Err(EncodeError::NulInId);
    }
    if !event.event_type.is_empty() && &*event.event_type != "message" {
        out.push_str("event: ");
        out.push_str(&event.event_type);
        out.push('\n');
    }
    if !event.id.is_empty() {
        out.push_str("id: ");
        out.push_str(&event.id);
        out.push('\n');
    }
    let mut rest = event.data.as_str();
    loop {
        out.push_str("data: ");
        match rest.find(['\r', '\n']) {
            Some(end) => {
                out.push_str(&rest[..end]);
                out.push('\n');
                let after = if rest[end..].starts_with("\r\n") { end + 2 } else { end + 1 };
                rest = &rest[after..];
            }
            None => {
                out.push_str(rest);
                out.push_str("\n\n");
                return Ok(());
            }
        }
    }
}

/// Appends a comment line (`:` then `text`), as keep-alives use. Line breaks in `text` are
/// replaced with spaces so the comment stays one line.
pub fn encode_comment(text: &str, out: &mut String) {
    out.push(':');
    out.extend(text.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }));
    out.push('\n');
}

/// Appends a `retry:` line asking clients to wait `delay` before reconnecting.
pub fn encode_retry(delay: Duration, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "retry: {}", delay.as_millis());
}
