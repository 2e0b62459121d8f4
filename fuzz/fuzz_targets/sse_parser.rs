//! The SSE parser must accept any bytes in any chunking without panicking, and never yield more
//! data than its limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scores_sse::{Item, Limits, Parser};

const LIMITS: Limits = Limits { max_line_len: 256, max_event_len: 1024 };

fuzz_target!(|input: (u8, &[u8])| {
    let (chunk_len, bytes) = input;
    let mut parser = Parser::new(LIMITS).with_comments();
    for chunk in bytes.chunks(usize::from(chunk_len).max(1)) {
        for item in parser.feed(chunk) {
            if let Ok(Item::Event(event)) = item {
                assert!(event.data.len() <= LIMITS.max_event_len);
            }
        }
    }
    parser.finish();
});
