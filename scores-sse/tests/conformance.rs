//! The SSE conformance cases in `tests/conformance/` (web-platform-tests,
//! launchdarkly/sse-contract-tests and the spec's examples; their provenance is in its
//! README.md), each run whole, byte by byte, two bytes at a time, and in its own chunkings.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use scores_sse::{Item, Limits, Parser};
use serde_json::Value;

fn cases_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/sse-cases.jsonl")
}

/// Deterministic filler for `{{NAME}}` placeholders: base64 of pseudo-random bytes.
fn placeholder(n_bytes: usize, seed: u64) -> String {
    let mut state = seed;
    let bytes: Vec<u8> = (0..n_bytes)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect();
    BASE64.encode(bytes)
}

fn substitute(text: &str, values: &[(String, String)]) -> String {
    values.iter().fold(text.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{{{name}}}}}"), value)
    })
}

struct Case {
    name: String,
    input: Vec<u8>,
    given_chunks: Option<Vec<Vec<u8>>>,
    chunk_sizes: Vec<usize>,
    expected: Vec<Value>,
    expected_comments: Option<Vec<String>>,
    expected_order: Option<Vec<Value>>,
    absent_data: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().map(|v| v.as_str().expect("a string").to_owned()).collect())
        .unwrap_or_default()
}

fn load_case(index: usize, line: &str) -> Case {
    let case: Value = serde_json::from_str(line).expect("each line is a JSON case");
    let values: Vec<(String, String)> = case["placeholders"]
        .as_object()
        .map(|placeholders| {
            let seed = |i: usize| (index * 10 + i) as u64;
            let fill = |(i, name): (usize, &String)| (name.clone(), placeholder(5 << 20, seed(i)));
            placeholders.keys().enumerate().map(fill).collect()
        })
        .unwrap_or_default();
    let given_chunks: Option<Vec<Vec<u8>>> = if let Some(chunks) = case["chunks_b64"].as_array() {
        let decode = |c: &Value| BASE64.decode(c.as_str().expect("base64")).expect("valid base64");
        Some(chunks.iter().map(decode).collect())
    } else {
        let text = |c: &Value| substitute(c.as_str().expect("a string"), &values).into_bytes();
        case["chunks"].as_array().map(|chunks| chunks.iter().map(text).collect())
    };
    let input = match &given_chunks {
        Some(chunks) if case["chunks_b64"].is_array() => chunks.concat(),
        _ => substitute(case["input"].as_str().expect("input"), &values).into_bytes(),
    };
    let substitute_all = |value: &Value| -> Value {
        serde_json::from_str(&substitute(&value.to_string(), &values)).expect("still JSON")
    };
    Case {
        name: case["name"].as_str().expect("name").to_owned(),
        input,
        given_chunks,
        // `null` means the whole input, which every case runs anyway.
        chunk_sizes: case["chunk_sizes"]
            .as_array()
            .map(|sizes| sizes.iter().filter_map(|s| s.as_u64().map(|n| n as usize)).collect())
            .unwrap_or_default(),
        expected: case["expected"]
            .as_array()
            .expect("expected")
            .iter()
            .map(substitute_all)
            .collect(),
        expected_comments: case["expected_comments"]
            .is_array()
            .then(|| strings(&case["expected_comments"])),
        expected_order: case["expected_order"].as_array().cloned(),
        absent_data: strings(&case["absent_data"]),
    }
}

fn load_cases() -> Vec<Case> {
    let path = cases_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, l)| load_case(i, l))
        .collect()
}

fn run(chunks: &[&[u8]]) -> Vec<Item> {
    let limits = Limits { max_line_len: 32 << 20, max_event_len: 32 << 20, max_id_len: 32 << 20 };
    let mut parser = Parser::new(limits).with_comments();
    let mut items = Vec::new();
    for chunk in chunks {
        for item in parser.feed(chunk) {
            items.push(item.expect("no case exceeds the limits"));
        }
    }
    parser.finish();
    items
}

fn as_json(item: &Item) -> Value {
    match item {
        Item::Event(e) => {
            serde_json::json!({"event": &*e.event_type, "data": e.data, "id": &*e.id})
        }
        Item::Comment(text) => serde_json::json!({ "comment": text }),
        Item::Retry(delay) => serde_json::json!({ "retry": delay.as_millis() as u64 }),
    }
}

/// Whether `actual` has every key of `expected`, with the same value.
fn matches(actual: &Value, expected: &Value) -> bool {
    let expected = expected.as_object().expect("an object");
    expected.iter().all(|(key, value)| actual.get(key) == Some(value))
}

fn all_match(actual: &[Value], expected: &[Value]) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| matches(a, e))
}

fn check(case: &Case, how: &str, chunks: &[&[u8]]) -> Result<(), String> {
    let items = run(chunks);
    let fail = |what: String| Err(format!("{} [{how}]: {what}", case.name));
    let events: Vec<Value> =
        items.iter().filter(|i| matches!(i, Item::Event(_))).map(as_json).collect();
    if !all_match(&events, &case.expected) {
        return fail(format!("expected events {:?}, got {events:?}", case.expected));
    }
    for absent in &case.absent_data {
        if events.iter().any(|e| e["data"] == absent.as_str()) {
            return fail(format!("data {absent:?} must not be dispatched"));
        }
    }
    if let Some(expected_comments) = &case.expected_comments {
        let comments: Vec<&str> = items
            .iter()
            .filter_map(|i| if let Item::Comment(c) = i { Some(c.as_str()) } else { None })
            .collect();
        if comments != *expected_comments {
            return fail(format!("expected comments {expected_comments:?}, got {comments:?}"));
        }
    }
    if let Some(order) = &case.expected_order {
        let sequence: Vec<Value> =
            items.iter().filter(|i| !matches!(i, Item::Retry(_))).map(as_json).collect();
        if !all_match(&sequence, order) {
            return fail(format!("expected order {order:?}, got {sequence:?}"));
        }
    }
    Ok(())
}

#[test]
fn every_case_passes_under_every_chunking() {
    let cases = load_cases();
    assert_eq!(cases.len(), 85, "the corpus has 85 cases");
    let mut failures = Vec::new();
    let mut n_runs = 0;
    for case in &cases {
        let input = case.input.as_slice();
        let mut chunkings: Vec<(String, Vec<&[u8]>)> = vec![
            ("whole".into(), vec![input]),
            ("1-byte chunks".into(), input.chunks(1).collect()),
            ("2-byte chunks".into(), input.chunks(2).collect()),
        ];
        if let Some(chunks) = &case.given_chunks {
            chunkings.push(("given chunks".into(), chunks.iter().map(Vec::as_slice).collect()));
        }
        for &size in &case.chunk_sizes {
            chunkings.push((format!("{size}-byte chunks"), input.chunks(size).collect()));
        }
        for (how, chunks) in &chunkings {
            n_runs += 1;
            if let Err(failure) = check(case, how, chunks) {
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
