//! `decode` must return a value or a typed error for any event type and data; never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (event_type, data) = input;
    let _ = scores_core::decode(event_type, data);
    let _ = scores_core::decode("score", data);
});
