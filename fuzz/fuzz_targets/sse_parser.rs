//! The SSE parser must accept any bytes in any chunking without panicking, never yield more
//! data or a longer id than its limits allow, and number the lines events begin on consistently: never past
//! the line breaks seen so far, never going backwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scores_sse::{ItemRef, Limits, Parser};

const LIMITS: Limits = Limits { max_line_len: 256, max_event_len: 1024, max_id_len: 64 };

fuzz_target!(|input: (u8, &[u8])| {
    let (chunk_len, bytes) = input;
    let mut parser = Parser::new(LIMITS).with_comments();
    let mut breaks_seen = 0u64;
    let mut last_line = 0u64;
    for chunk in bytes.chunks(usize::from(chunk_len).max(1)) {
        breaks_seen += chunk.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64;
        parser.feed_with(chunk, |item| {
            if let Ok(ItemRef::Event(event)) = item {
                assert!(event.data.len() <= LIMITS.max_event_len);
                assert!(event.id.len() <= LIMITS.max_id_len);
                assert!(event.line >= last_line && event.line <= breaks_seen + 1);
                last_line = event.line;
            }
        });
    }
    parser.finish();
});
