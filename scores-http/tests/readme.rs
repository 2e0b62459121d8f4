//! The curl examples in README.md's "HTTP API" section, checked against the router: they claim
//! what a freshly started `scores serve` answers after the simulated feed's second burst, and
//! that feed is deterministic, so every example can be replayed exactly.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::Request;
use scores_core::{Decoded, Scoreboard, decode};
use scores_http::simulator::{SimulatorConfig, student_name, write_event};
use scores_http::{AppState, router};
use tower::ServiceExt as _;

const README: &str = include_str!("../../README.md");

/// The board after the default simulated feed's first `n` events.
fn simulated(n: u64) -> Scoreboard {
    let config = SimulatorConfig::default();
    let names: Vec<String> = (0..config.students).map(student_name).collect();
    let mut sse = String::new();
    for index in 0..n {
        write_event(&config, &names, index, &mut sse);
    }
    let mut board = Scoreboard::new();
    for item in scores_sse::Parser::default().feed(sse.as_bytes()) {
        let Ok(scores_sse::Item::Event(event)) = item else { panic!("{item:?}") };
        if let Ok(Decoded::Event(event)) = decode(&event.event_type, &event.data) {
            board.apply(&event);
        }
    }
    assert_eq!(board.seq(), n);
    board
}

/// One `$ curl …` line of the README and the lines it shows after it.
struct Example<'a> {
    command: &'a str,
    output: Vec<&'a str>,
}

/// The examples of the first `console` block after `## HTTP API`.
fn examples() -> Vec<Example<'static>> {
    let section = README.split_once("\n## HTTP API\n").unwrap().1;
    let block = section.split_once("```console\n").unwrap().1.split_once("```").unwrap().0;
    let mut examples: Vec<Example<'_>> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            Some(command) => examples.push(Example { command, output: Vec::new() }),
            None => examples.last_mut().unwrap().output.push(line),
        }
    }
    examples
}

/// Whether `text` matches `pattern`, in which `…` stands for any text.
fn matches(text: &str, pattern: &str) -> bool {
    let mut pieces = pattern.split('…');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let mut pieces = pieces.peekable();
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_none() {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[test]
fn the_pattern_matcher_takes_the_ellipsis_for_any_text() {
    assert!(matches(r#"{"a":1}"#, r#"{"a":1}"#));
    assert!(!matches(r#"{"a":12}"#, r#"{"a":1}"#));
    assert!(matches(r#"{"a":[1,2,3],"b":4}"#, r#"{"a":[1,…],"b":…}"#));
    assert!(!matches(r#"{"a":[1,2,3],"c":4}"#, r#"{"a":[1,…],"b":…}"#));
    assert!(!matches(r#"{"a":[2]}"#, r#"{"a":[1…"#));
}

#[tokio::test]
async fn the_readmes_curl_examples_answer_what_it_shows() {
    let app = router(AppState::serving(simulated(40).snapshot()));
    let examples = examples();
    assert!(examples.len() >= 5, "the README's examples were not found");
    let mut checked = 0;
    for Example { command, output } in examples {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[0], "curl", "{command}");
        // `-N` examples stream `/scores`; the service tests check that endpoint.
        if words.contains(&"-N") {
            continue;
        }
        let url = words.last().unwrap().trim_matches('\'');
        let path = url.strip_prefix("localhost:8000").unwrap();
        let response = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap());
        let response = response.await.unwrap();
        let mut expected = output.iter();
        let status = response.status();
        if words.contains(&"-i") {
            let line =
                format!("HTTP/1.1 {} {}", status.as_str(), status.canonical_reason().unwrap());
            assert_eq!(expected.next(), Some(&line.as_str()), "{command}");
        } else {
            assert!(status.is_success(), "{command}: {status}");
        }
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        let shown = expected.next().unwrap();
        assert!(matches(body, shown), "{command}\n  answers {body}\n  README shows {shown}");
        assert_eq!(expected.next(), None, "{command}: one body per example");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} examples checked");
}
