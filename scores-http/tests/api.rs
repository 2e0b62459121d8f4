//! The router's answers, checked without a socket (`oneshot`) against a known board.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use scores_core::{ScoreEvent, Scoreboard};
use scores_http::{AppState, router};
use scores_pipeline::Pipeline;
use tokio::sync::watch;
use tower::ServiceExt as _;

fn event(student: &str, exam: u64, score: f64) -> ScoreEvent {
    ScoreEvent::new(student, exam, score).unwrap()
}

/// Six events, one a regrade, one a zero: seq 6.
fn state() -> AppState {
    let mut board = Scoreboard::new();
    for e in [
        event("Marvin32", 11295, 0.5),
        event("Susana_Langworth", 11295, 0.25),
        event("Marvin32", 11295, 0.75),
        event("Marvin32", 9, 0.0),
        event("Hannah.Herman76", 20000, 1.0),
        event("a b/c", 9, 0.5),
    ] {
        board.apply(&e);
    }
    AppState::serving(board.snapshot())
}

async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    if_none_match: Option<&str>,
) -> Response {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    router(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
}

async fn body(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `GET /students` on [`state`]'s board.
const ALL_STUDENTS: &str =
    r#"{"students":["Hannah.Herman76","Marvin32","Susana_Langworth","a b/c"],"total":4}"#;

/// GETs `uri` and checks status, JSON content type, the sequence header, and the exact body.
async fn check(uri: &str, status: u16, expected: &str) {
    let response = send(&state(), Method::GET, uri, None).await;
    assert_eq!(response.status().as_u16(), status, "{uri}");
    assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8", "{uri}");
    assert_eq!(response.headers()["x-scores-seq"], "6", "{uri}");
    assert_eq!(body(response).await, expected, "{uri}");
}

#[tokio::test]
async fn lists_are_sorted_and_whole_without_parameters() {
    check("/students", 200, ALL_STUDENTS).await;
    check("/exams", 200, r#"{"exams":[9,11295,20000],"total":3}"#).await;
}

#[tokio::test]
async fn one_student_and_one_exam_with_regrades_and_zero() {
    check(
        "/students/Marvin32",
        200,
        r#"{"studentId":"Marvin32","results":[{"exam":9,"score":0.0},{"exam":11295,"score":0.75}],"average":0.375}"#,
    )
    .await;
    check(
        "/exams/11295",
        200,
        r#"{"exam":11295,"results":[{"studentId":"Marvin32","score":0.75},{"studentId":"Susana_Langworth","score":0.25}],"average":0.5}"#,
    )
    .await;
    check("/exams/00009", 200, r#"{"exam":9,"results":[{"studentId":"Marvin32","score":0.0},{"studentId":"a b/c","score":0.5}],"average":0.25}"#).await;
}

#[tokio::test]
async fn percent_encoded_ids_are_decoded() {
    check(
        "/students/Hannah%2EHerman76",
        200,
        r#"{"studentId":"Hannah.Herman76","results":[{"exam":20000,"score":1.0}],"average":1.0}"#,
    )
    .await;
    check(
        "/students/a%20b%2Fc",
        200,
        r#"{"studentId":"a b/c","results":[{"exam":9,"score":0.5}],"average":0.5}"#,
    )
    .await;
}

#[tokio::test]
async fn paging_walks_to_the_end_with_next_cursors() {
    check(
        "/students?limit=2",
        200,
        r#"{"students":["Hannah.Herman76","Marvin32"],"total":4,"next":"Marvin32"}"#,
    )
    .await;
    check(
        "/students?limit=2&after=Marvin32",
        200,
        r#"{"students":["Susana_Langworth","a b/c"],"total":4}"#,
    )
    .await;
    check("/students?after=a%20b%2Fc", 200, r#"{"students":[],"total":4}"#).await;
    check("/exams?limit=1", 200, r#"{"exams":[9],"total":3,"next":9}"#).await;
    check("/exams?limit=1&after=9", 200, r#"{"exams":[11295],"total":3,"next":11295}"#).await;
    check("/exams?limit=1&after=11295", 200, r#"{"exams":[20000],"total":3}"#).await;
}

#[tokio::test]
async fn bad_input_is_a_json_error_never_a_500() {
    check("/students/nobody", 404, r#"{"error":{"code":"student_not_found","message":"no student \"nobody\" has any results"}}"#).await;
    check(
        "/exams/12345",
        404,
        r#"{"error":{"code":"exam_not_found","message":"exam 12345 has no results"}}"#,
    )
    .await;
    check("/exams/abc", 400, r#"{"error":{"code":"invalid_exam_number","message":"exam number must be an integer from 0 to 18446744073709551615, got \"abc\""}}"#).await;
    check("/exams/18446744073709551616", 400, r#"{"error":{"code":"invalid_exam_number","message":"exam number must be an integer from 0 to 18446744073709551615, got \"18446744073709551616\""}}"#).await;
    check("/exams/-1", 400, r#"{"error":{"code":"invalid_exam_number","message":"exam number must be an integer from 0 to 18446744073709551615, got \"-1\""}}"#).await;
    check("/exams/+5", 400, r#"{"error":{"code":"invalid_exam_number","message":"exam number must be an integer from 0 to 18446744073709551615, got \"+5\""}}"#).await;
    check("/students?limit=0", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `limit`: expected a positive integer, got \"0\""}}"#).await;
    check("/students?limit=x", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `limit`: expected a positive integer, got \"x\""}}"#).await;
    check("/students?limit=%2B5", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `limit`: expected a positive integer, got \"+5\""}}"#).await;
    check("/exams?after=%2B5", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `after`: expected an exam number (an integer from 0 to 18446744073709551615), got \"+5\""}}"#).await;
    check("/exams?after=x", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `after`: expected an exam number (an integer from 0 to 18446744073709551615), got \"x\""}}"#).await;
    check("/students?after=%FF", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `after`: it is not UTF-8 once percent-decoded"}}"#).await;
    check("/exams?limit=%C3", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `limit`: it is not UTF-8 once percent-decoded"}}"#).await;
    // An empty value is no value, on every list; a limit past counting is no limit.
    check("/students?after=&limit=", 200, ALL_STUDENTS).await;
    check("/exams?after=", 200, r#"{"exams":[9,11295,20000],"total":3}"#).await;
    check("/exams?limit=999999999999999999999999", 200, r#"{"exams":[9,11295,20000],"total":3}"#)
        .await;
    // Percent-encoded UTF-8 is fine: "é".
    check("/students?after=%C3%A9", 200, r#"{"students":[],"total":4}"#).await;
    check("/nowhere", 404, r#"{"error":{"code":"not_found","message":"no endpoint /nowhere"}}"#)
        .await;
    check("/students?limit=1&limit=2", 400, r#"{"error":{"code":"invalid_parameter","message":"invalid query parameter `limit`: it is given more than once"}}"#).await;
    check(
        "/students/%FF",
        400,
        r#"{"error":{"code":"invalid_path","message":"invalid path: Invalid UTF-8 in `id`"}}"#,
    )
    .await;
    let response = send(&state(), Method::POST, "/students", None).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body(response).await,
        r#"{"error":{"code":"method_not_allowed","message":"method not allowed; this endpoint answers GET"}}"#
    );
    // The body limit's own answer gets the same JSON shape, and a sequence number.
    let request = Request::post("/students")
        .header("content-length", "20000")
        .body(Body::from(vec![b'x'; 20_000]))
        .unwrap();
    let response = router(state()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
    assert_eq!(response.headers()["x-scores-seq"], "6");
    assert_eq!(
        body(response).await,
        r#"{"error":{"code":"body_too_large","message":"the request body is over the limit of 16384 bytes"}}"#
    );
    // The same without a length (`Transfer-Encoding: chunked`): it was read and answered 405
    // or 200, as if the body were not there.
    for method in [Method::POST, Method::GET] {
        let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1_000]));
        let request = Request::builder()
            .method(method.clone())
            .uri("/students")
            .header("transfer-encoding", "chunked")
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
        let response = router(state()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{method}");
        assert_eq!(
            body(response).await,
            r#"{"error":{"code":"body_too_large","message":"the request body is over the limit of 16384 bytes"}}"#
        );
    }
    // A short one is read and the request answered as usual.
    let chunks = (0..2).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 100]));
    let request = Request::get("/students")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    assert_eq!(router(state()).oneshot(request).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn etags_name_when_the_answer_last_changed_and_match_with_304() {
    let state = state();
    // Exams were added by events 1, 4 and 5; Marvin32 last changed at 4, exam 9 at 6.
    for (uri, etag) in [
        ("/exams", "W/\"5\""),
        ("/exams?limit=1", "W/\"5\""),
        ("/students", "W/\"6\""),
        ("/students/Marvin32", "W/\"4\""),
        ("/exams/9", "W/\"6\""),
        ("/exams/11295", "W/\"3\""),
    ] {
        let response = send(&state, Method::GET, uri, None).await;
        assert_eq!(response.headers()["etag"], etag, "{uri}");
    }
    for tag in ["W/\"5\"", "\"5\"", "\"1\", W/\"5\"", "*"] {
        let response = send(&state, Method::GET, "/exams", Some(tag)).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{tag}");
        assert_eq!(response.headers()["x-scores-seq"], "6");
        assert_eq!(body(response).await, "");
    }
    let response = send(&state, Method::GET, "/exams", Some("W/\"6\"")).await;
    assert_eq!(response.status(), StatusCode::OK);
    // An unknown student has no version to match: its 404 is sent whatever the client has.
    let response = send(&state, Method::GET, "/students/nobody", Some("*")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get("etag").is_none());
}

#[tokio::test]
async fn an_etag_changes_exactly_when_its_answer_does() {
    let mut board = Scoreboard::new();
    board.apply(&event("ada", 1, 0.5));
    board.apply(&event("bob", 2, 0.5));
    let before = AppState::serving(board.snapshot());
    // A regrade of ada's exam 1, a repeat of bob's score, a new exam for bob.
    board.apply(&event("ada", 1, 0.75));
    board.apply(&event("bob", 2, 0.5));
    board.apply(&event("bob", 3, 0.25));
    let after = AppState::serving(board.snapshot());
    for uri in ["/students", "/exams", "/students/ada", "/students/bob", "/exams/1", "/exams/2"] {
        let old = send(&before, Method::GET, uri, None).await;
        let new = send(&after, Method::GET, uri, None).await;
        let (old_tag, new_tag) = (old.headers()["etag"].clone(), new.headers()["etag"].clone());
        let (old_body, new_body) = (body(old).await, body(new).await);
        assert_eq!(old_tag == new_tag, old_body == new_body, "{uri}: {old_tag:?} {new_tag:?}");
        if old_tag == new_tag {
            let response = send(&after, Method::GET, uri, Some(old_tag.to_str().unwrap())).await;
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{uri}");
        }
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (_, shutdown) = watch::channel(false);
    let restoring = AppState::new(Pipeline::restoring(), 0, shutdown);
    let response = send(&restoring, Method::GET, "/healthz", None).await;
    assert_eq!(
        (response.status(), body(response).await.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );
    let response = send(&restoring, Method::GET, "/readyz", None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = send(&restoring, Method::GET, "/students", None).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no answers from a board still restoring"
    );

    let state = state();
    let response = send(&state, Method::GET, "/readyz", None).await;
    assert_eq!(body(response).await, r#"{"status":"ready","seq":6}"#);
    send(&state, Method::GET, "/students", None).await;
    let metrics = body(send(&state, Method::GET, "/metrics", None).await).await;
    assert!(metrics.contains("scores_snapshot_seq 6"), "{metrics}");
    assert!(
        metrics.contains(r#"scores_http_requests_total{route="/students",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"scores_http_request_duration_seconds_count{route="/students"} 1"#),
        "{metrics}"
    );
    if cfg!(target_os = "linux") {
        for name in
            ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"]
        {
            let sample = metrics.lines().find_map(|line| line.strip_prefix(&format!("{name} ")));
            assert!(sample.is_some_and(|value| value.parse::<f64>().is_ok()), "{name}: {metrics}");
        }
    }
    // The text format's rules: every sample belongs to one family declared once by a TYPE line
    // (a histogram's samples by their suffixes), and every value is a number.
    let mut families = std::collections::HashMap::new();
    for line in metrics.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').expect("TYPE name kind");
            assert!(families.insert(name, kind).is_none(), "{name} declared twice");
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("sample and value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap_or(series);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|family| families.get(family) == Some(&"histogram"))
                .unwrap_or(name);
            assert!(families.contains_key(family), "{line} has no TYPE");
        }
    }
}

#[tokio::test]
async fn the_dashboard_is_html_with_its_script_and_stylesheet_embedded() {
    let response = send(&state(), Method::GET, "/", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
    let page = body(response).await;
    assert!(page.contains("<title>scores: live exam results</title>"));
    for (path, content_type) in [
        ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
        ("/assets/dashboard.css", "text/css; charset=utf-8"),
    ] {
        assert!(page.contains(path), "the page links {path}");
        let response = send(&state(), Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], content_type);
        assert!(!body(response).await.is_empty());
    }
}

#[tokio::test]
async fn the_dashboard_and_metrics_are_compressed_for_clients_that_accept_gzip() {
    use std::io::Read as _;

    let state = state();
    for path in ["/", "/assets/dashboard.js", "/assets/dashboard.css", "/metrics"] {
        let identity = body(send(&state, Method::GET, path, None).await).await;
        let request = Request::get(path).header("accept-encoding", "gzip");
        let response = router(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await;
        let response = response.unwrap();
        assert_eq!(response.headers()["content-encoding"], "gzip", "{path}");
        let compressed = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_string(&mut decoded).unwrap();
        if path == "/metrics" {
            // Counts move between the two requests; the exposition's shape does not.
            assert!(decoded.contains("# TYPE scores_events_accepted_total counter"), "{decoded}");
        } else {
            assert_eq!(decoded, identity, "{path}");
        }
    }
}

#[tokio::test]
async fn a_new_snapshot_replaces_every_answer_of_the_one_before() {
    let mut board = Scoreboard::new();
    board.apply(&event("Marvin32", 1, 0.5));
    let state = AppState::serving(board.snapshot());
    let uris = ["/students", "/students/Marvin32", "/exams", "/exams/1"];
    let mut before = Vec::new();
    for uri in uris {
        // Twice: the second answer is the body kept from the first.
        let first = body(send(&state, Method::GET, uri, None).await).await;
        assert_eq!(body(send(&state, Method::GET, uri, None).await).await, first, "{uri}");
        before.push(first);
    }

    board.apply(&event("Marvin32", 1, 1.0));
    board.apply(&event("Ada", 2, 0.25));
    state.pipeline().publish(board.snapshot());
    let expected = [
        r#"{"students":["Ada","Marvin32"],"total":2}"#,
        r#"{"studentId":"Marvin32","results":[{"exam":1,"score":1.0}],"average":1.0}"#,
        r#"{"exams":[1,2],"total":2}"#,
        r#"{"exam":1,"results":[{"studentId":"Marvin32","score":1.0}],"average":1.0}"#,
    ];
    for ((uri, expected), before) in uris.into_iter().zip(expected).zip(before) {
        let response = send(&state, Method::GET, uri, None).await;
        assert_eq!(response.headers()["x-scores-seq"], "3", "{uri}");
        let after = body(response).await;
        assert_eq!(after, expected, "{uri}");
        assert_ne!(after, before, "{uri}");
    }
}

#[tokio::test]
async fn gzip_is_sent_to_clients_that_accept_it_and_only_to_them() {
    use std::io::Read as _;

    let mut board = Scoreboard::new();
    for exam in 0..100 {
        board.apply(&event("Marvin32", exam, 0.25));
    }
    let state = AppState::serving(board.snapshot());
    let get = |accept: Option<&'static str>, uri: &'static str| {
        let state = state.clone();
        async move {
            let mut request = Request::get(uri);
            if let Some(accept) = accept {
                request = request.header("accept-encoding", accept);
            }
            router(state).oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
        }
    };
    let identity = body(get(None, "/students/Marvin32").await).await;
    assert!(identity.len() > 1024, "large enough to be compressed");

    for accept in ["gzip", "deflate, gzip;q=0.5", "x-gzip", "*", "br;q=1, *;q=0.1"] {
        let response = get(Some(accept), "/students/Marvin32").await;
        assert_eq!(response.headers()["content-encoding"], "gzip", "{accept}");
        let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
        assert_eq!(vary, ["accept-encoding"], "{accept}");
        assert_eq!(response.headers()["x-scores-seq"], "100", "{accept}");
        let compressed = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_string(&mut decoded).unwrap();
        assert_eq!(decoded, identity, "{accept}");
    }
    for accept in ["identity", "gzip;q=0", "gzip;q=0, *", "br", "*;q=0"] {
        let response = get(Some(accept), "/students/Marvin32").await;
        assert!(!response.headers().contains_key("content-encoding"), "{accept}");
        let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
        assert_eq!(vary, ["accept-encoding"], "{accept}");
        assert_eq!(body(response).await, identity, "{accept}");
    }
    // A 304 names what the answer varies on, as the answer it stands for does.
    let mut request = Request::get("/students/Marvin32").header("if-none-match", "W/\"100\"");
    request = request.header("accept-encoding", "gzip");
    let response = router(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["vary"], "accept-encoding");
    // A small answer is sent as it is, whatever the client accepts.
    let response = get(Some("gzip"), "/exams?limit=1").await;
    assert!(!response.headers().contains_key("content-encoding"));
    assert_eq!(body(response).await, r#"{"exams":[0],"total":100,"next":0}"#);
}

#[tokio::test]
async fn a_minimum_sequence_number_waits_for_the_snapshot_or_is_refused() {
    let state = state().with_min_seq_wait(std::time::Duration::from_millis(200));
    let with_min = |min: &str| {
        Request::get("/students").header("x-scores-min-seq", min).body(Body::empty()).unwrap()
    };
    let app = router(state.clone());
    let response = app.clone().oneshot(with_min("6")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the snapshot is at 6 already");

    let response = app.clone().oneshot(with_min("7")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let text = body(response).await;
    assert!(text.contains(r#""code":"not_caught_up""#), "{text}");

    // A snapshot published while the request waits answers it.
    let waiting = tokio::spawn(app.clone().oneshot(with_min("7")));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut board = Scoreboard::new();
    for n in 0..7 {
        board.apply(&event("Ada", n, 0.5));
    }
    state.pipeline().publish(board.snapshot());
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-scores-seq"], "7");

    for bad in ["", "x", "-1", "+7", "99999999999999999999999"] {
        let response = app.clone().oneshot(with_min(bad)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let text = body(response).await;
        assert!(text.contains(r#""code":"invalid_header""#), "{bad:?}: {text}");
    }
}

#[tokio::test]
async fn with_api_tokens_every_answer_but_health_and_the_page_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, "r1ght-token\n").unwrap();
    let tokens = std::sync::Arc::new(scores_http::ApiTokens::load(&path).unwrap());
    let state = state().with_api_tokens(tokens);
    let send =
        |uri: &'static str, authorization: Option<&'static str>, cookie: Option<&'static str>| {
            let state = state.clone();
            async move {
                let mut request = Request::builder().uri(uri);
                if let Some(value) = authorization {
                    request = request.header("authorization", value);
                }
                if let Some(value) = cookie {
                    request = request.header("cookie", value);
                }
                router(state).oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
            }
        };
    for uri in ["/students", "/students/Marvin32", "/exams/9", "/scores", "/metrics", "/nowhere"] {
        for authorization in [None, Some("Bearer wrong-token"), Some("Basic cjFnaHQtdG9rZW4=")] {
            let response = send(uri, authorization, None).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri} {authorization:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let text = body(response).await;
            assert!(text.starts_with(r#"{"error":{"code":"unauthorized""#), "{text}");
        }
    }
    let response = send("/students", Some("Bearer r1ght-token"), None).await;
    assert_eq!((response.status(), body(response).await.as_str()), (StatusCode::OK, ALL_STUDENTS));
    let response = send("/exams/9", None, Some("scores_token=r1ght-token")).await;
    assert_eq!(response.status(), StatusCode::OK);
    for open in ["/healthz", "/readyz", "/", "/assets/dashboard.js"] {
        assert_eq!(send(open, None, None).await.status(), StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn a_loopback_service_refuses_other_host_names() {
    let listen = "127.0.0.1:8000".parse().unwrap();
    let state = state().with_allowed_hosts(scores_http::AllowedHosts::default_for(listen));
    let send = |host: &'static str| {
        let request = Request::builder().uri("/students").header("host", host);
        router(state.clone()).oneshot(request.body(Body::empty()).unwrap())
    };
    for host in ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"] {
        assert_eq!(send(host).await.unwrap().status(), StatusCode::OK, "{host}");
    }
    // A page of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding).
    let response = send("attacker.example:8000").await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(body(response).await.contains(r#""code":"host_not_allowed""#));
}
