//! `decode` must return a value or a typed error for any event type and data; never panic. And
//! a space after the opening brace changes nothing but an error's column: the space sends the
//! feed's own shape to the general parser, so this compares the fast reading with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scores_core::DecodeError;

fuzz_target!(|input: (&str, &str)| {
    let (event_type, data) = input;
    let _ = scores_core::decode(event_type, data);
    let decoded = scores_core::decode("score", data);
    if let Some(fields) = data.strip_prefix('{') {
        if !matches!(decoded, Err(DecodeError::NotJson { .. })) {
            assert_eq!(decoded, scores_core::decode("score", &format!("{{ {fields}")), "{data}");
        }
    }
});
