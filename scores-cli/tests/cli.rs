//! The `scores` binary end to end: replay against committed snapshots, replay against the live
//! service's answers, and tail and record against `scores simulate`, all on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Running, free_address, scores, wait_for_port};

fn replay_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay")
}

/// Runs `scores replay ARGS` in tests/replay, so that file names print as given.
fn replay(args: &[&str]) -> Output {
    scores().arg("replay").args(args).current_dir(replay_dir()).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(replay_dir().join("expected").join(name)).unwrap()
}

#[test]
fn replay_of_the_sample_capture_matches_its_snapshots() {
    let cases: &[(&[&str], &str)] = &[
        (&["sample.sse"], "summary.json"),
        (&["sample.sse", "students"], "students.json"),
        (&["sample.sse", "students", "--limit", "2"], "students-limit-2.json"),
        (&["sample.sse", "student", "Marvin32"], "student-Marvin32.json"),
        (&["sample.sse", "exams"], "exams.json"),
        (&["sample.sse", "exam", "11295"], "exam-11295.json"),
        (&["--events", "sample.sse"], "events.jsonl"),
    ];
    for (args, snapshot) in cases {
        let output = replay(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert_eq!(stdout(&output), expected(snapshot), "scores replay {args:?}");
    }
    // Bad records are reported with file and line, and skipped.
    assert_eq!(stderr(&replay(&["sample.sse"])), expected("stderr.txt"));
}

#[test]
fn failed_queries_print_the_api_error_and_exit_1_and_usage_errors_exit_2() {
    let unknown = replay(&["sample.sse", "student", "Nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        stdout(&unknown),
        "{\"error\":{\"code\":\"student_not_found\",\"message\":\"no student \\\"Nobody\\\" has any results\"}}\n"
    );
    let not_a_number = replay(&["sample.sse", "exam", "abc"]);
    assert_eq!(not_a_number.status.code(), Some(1));
    assert!(stdout(&not_a_number).contains("\"code\":\"invalid_exam_number\""));
    assert_eq!(replay(&["sample.sse", "exam", "99999"]).status.code(), Some(1));

    let strict = replay(&["--strict", "sample.sse", "students"]);
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(stdout(&strict), "");
    assert!(stderr(&strict).starts_with("sample.sse:21: rejected: data is not JSON"));

    for usage in [
        &["students"][..],
        &["missing.sse"],
        &["--events", "sample.sse", "exams"],
        &["sample.sse", "--limit", "2"],
    ] {
        assert_eq!(replay(usage).status.code(), Some(2), "scores replay {usage:?}");
    }
}

/// `scores replay - students` with `input` on its standard input.
fn replay_students_of(input: &[u8]) -> Output {
    let mut child = scores()
        .args(["replay", "-", "students"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn standard_input_replays_like_a_file() {
    let sample = std::fs::read(replay_dir().join("sample.sse")).unwrap();
    let output = replay_students_of(&sample);
    assert!(output.status.success());
    assert_eq!(stdout(&output), expected("students.json"));
    assert!(stderr(&output).starts_with("<stdin>:21: rejected:"), "{}", stderr(&output));
}

/// `scores replay` aborted (a stack overflow) at an event of 100,000 `[`.
#[test]
fn replay_rejects_deep_nesting_and_goes_on() {
    let capture = format!(
        "data: {}\n\ndata: {{\"studentId\":\"a\",\"exam\":1,\"score\":0.5}}\n\n",
        "[".repeat(100_000)
    );
    let output = replay_students_of(capture.as_bytes());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"students\":[\"a\"],\"total\":1}\n");
    assert!(stderr(&output).contains("deeper than 128"), "{}", stderr(&output));
}

/// `scores simulate` with `--ids`, ending after `count` events (then answering 204).
fn simulate(count: u64, extra: &[&str]) -> (Running, String) {
    let address = free_address();
    let child = scores()
        .args(["simulate", "--rate", "max", "--ids", "--seed", "7", "--listen"])
        .arg(address.to_string())
        .arg("--count")
        .arg(count.to_string())
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    wait_for_port(address);
    (running, format!("http://{address}/scores"))
}

#[test]
#[cfg(target_os = "linux")]
fn the_command_runs_without_transparent_huge_pages() {
    let (running, _) = simulate(1_000_000, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.0.id())).unwrap();
    // Kernels before 5.0 do not report the flag.
    if let Some(line) = status.lines().find(|line| line.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}

fn run_to_end(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", stderr(&output));
    output
}

fn ids_of(events_jsonl: &str) -> Vec<u64> {
    events_jsonl
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["id"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn tail_prints_decoded_events_or_raw_ones_and_ends_when_the_feed_does() {
    let (_simulator, url) = simulate(200, &["--bad-every", "20", "--drop-every", "64"]);
    let decoded = run_to_end(scores().args(["tail", &url]));
    let lines: Vec<&str> = std::str::from_utf8(&decoded.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 190, "every event but the 10 malformed ones");
    for line in &lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["exam", "score", "studentId"]);
    }
    assert!(lines[0].starts_with("{\"studentId\":"), "the feed's key order: {}", lines[0]);
    assert_eq!(stderr(&decoded).matches("rejected").count(), 10, "{}", stderr(&decoded));

    let raw = run_to_end(scores().args(["tail", "--events", &url]));
    assert_eq!(ids_of(&stdout(&raw)), (1..=200).collect::<Vec<_>>(), "resumed across the drops");
}

#[test]
fn record_appends_and_resumes_after_a_crash_without_losing_or_repeating_events() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("feed.sse");
    let file_arg = file.to_str().unwrap();

    let (simulator, url) = simulate(120, &["--bad-every", "20"]);
    run_to_end(scores().args(["record", &url, "-o", file_arg]));
    drop(simulator);
    let recorded = run_to_end(scores().args(["replay", "--events", file_arg]));
    assert_eq!(ids_of(&stdout(&recorded)), (1..=120).collect::<Vec<_>>());

    // A crash in the middle of writing event 121: its first lines made it to the file.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"event: score\nid: 121\ndata: {\"studentId\":\"Cut");
    std::fs::write(&file, &bytes).unwrap();

    let (_simulator, url) = simulate(300, &["--bad-every", "20"]);
    run_to_end(scores().args(["record", &url, "-o", file_arg]));
    let recorded = run_to_end(scores().args(["replay", "--events", file_arg]));
    assert_eq!(ids_of(&stdout(&recorded)), (1..=300).collect::<Vec<_>>());
    let summary = run_to_end(scores().args(["replay", file_arg]));
    let summary: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(summary["accepted"], 285);
    assert_eq!(summary["rejectedByReason"]["not_json"], 15);

    // A file that is not SSE is left alone.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "not an event stream").unwrap();
    let refused = scores().args(["record", &url, "-o", other.to_str().unwrap()]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "not an event stream");
}

#[test]
fn replay_answers_byte_for_byte_what_the_service_serves() {
    let (_simulator, url) = simulate(
        2_000,
        &["--bad-every", "50", "--students", "40", "--exams", "30", "--burst", "7"],
    );
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let recording = dir.path().join("feed.sse");
    let listen = free_address();
    let _service = Running(
        scores()
            .args(["serve", "--fsync", "never", "--upstream", &url, "--listen"])
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    run_to_end(scores().args(["record", &url, "-o", recording.to_str().unwrap()]));
    wait_for_port(listen);

    let base = format!("http://{listen}");
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        let response = client.get(format!("{base}{path}")).send().unwrap();
        let seq = response.headers().get("x-scores-seq").map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), seq, response.text().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while get("/students").1.as_deref() != Some("1960") {
        assert!(Instant::now() < deadline, "the service did not ingest the 1960 valid events");
        sleep(Duration::from_millis(50));
    }

    let (_, _, exams) = get("/exams");
    let exams: serde_json::Value = serde_json::from_str(&exams).unwrap();
    let (_, _, students) = get("/students");
    let students: serde_json::Value = serde_json::from_str(&students).unwrap();
    let mut queries: Vec<(String, Vec<String>)> = vec![
        ("/students".into(), vec!["students".into()]),
        ("/exams".into(), vec!["exams".into()]),
        (
            "/students?limit=7&after=Hannah".into(),
            vec!["students".into(), "--limit=7".into(), "--after=Hannah".into()],
        ),
        ("/exams?limit=4".into(), vec!["exams".into(), "--limit=4".into()]),
        ("/students/Nobody".into(), vec!["student".into(), "Nobody".into()]),
        ("/exams/abc".into(), vec!["exam".into(), "abc".into()]),
    ];
    for exam in exams["exams"].as_array().unwrap() {
        queries.push((format!("/exams/{exam}"), vec!["exam".into(), exam.to_string()]));
    }
    for student in students["students"].as_array().unwrap() {
        let id = student.as_str().unwrap();
        queries.push((format!("/students/{id}"), vec!["student".into(), id.into()]));
    }
    assert!(queries.len() > 60);

    let journal = data_dir.to_str().unwrap();
    for input in [recording.to_str().unwrap(), journal] {
        for (path, query) in &queries {
            let (status, _, body) = get(path);
            let output = scores().arg("replay").arg(input).args(query).output().unwrap();
            let expected_code = if status == 200 { 0 } else { 1 };
            assert_eq!(output.status.code(), Some(expected_code), "{path} from {input}");
            assert_eq!(stdout(&output), format!("{body}\n"), "{path} from {input}");
        }
    }
}

#[test]
fn replay_reads_journal_segments_and_reports_damage_with_its_position() {
    use scores_core::ScoreEvent;
    use scores_journal::{Entry, Journal, Options};

    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), Options::default()).unwrap();
    for batch in 0..10u64 {
        let entries: Vec<Entry> = (0..10u64)
            .map(|i| Entry {
                event: ScoreEvent::new(&format!("s{i}"), 10_000 + batch, 0.5).unwrap(),
                upstream_id: (batch * 10 + i + 1).to_string().into(),
            })
            .collect();
        journal.append(&entries).unwrap();
    }
    drop(journal);
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .unwrap();
    let segment_arg = segment.to_str().unwrap();

    let summary = run_to_end(scores().args(["replay", segment_arg]));
    let summary: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!((summary["accepted"].as_u64(), summary["exams"].as_u64()), (Some(100), Some(10)));
    let events = run_to_end(scores().args(["replay", "--events", segment_arg]));
    assert_eq!(ids_of(&stdout(&events)), (1..=100).collect::<Vec<_>>());

    // An append cut short at the end (a writer at work, or a crash) is not damage: the
    // records before it are the log, even under --strict.
    let whole = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &whole[..whole.len() - 7]).unwrap();
    let unfinished = scores().args(["replay", "--strict", segment_arg]).output().unwrap();
    assert_eq!(unfinished.status.code(), Some(0), "{}", stderr(&unfinished));
    assert!(stderr(&unfinished).contains("an append is unfinished"), "{}", stderr(&unfinished));
    let summary: serde_json::Value = serde_json::from_slice(&unfinished.stdout).unwrap();
    assert_eq!(summary["accepted"], 90);
    let data_dir = run_to_end(scores().args(["replay", dir.path().to_str().unwrap()]));
    assert_eq!(data_dir.stdout, unfinished.stdout, "the directory reads as its one segment");
    std::fs::write(&segment, &whole).unwrap();

    // Damage in the middle: the records before it are folded, the damage is reported.
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&segment, &bytes).unwrap();
    let damaged = scores().args(["replay", segment_arg]).output().unwrap();
    assert_eq!(damaged.status.code(), Some(0));
    assert!(stderr(&damaged).contains("is corrupt at byte"), "{}", stderr(&damaged));
    let summary: serde_json::Value = serde_json::from_slice(&damaged.stdout).unwrap();
    assert_eq!(summary["rejectedByReason"]["corrupt_journal"], 1);
    assert!(summary["accepted"].as_u64().unwrap() < 100);
    let strict = scores().args(["replay", "--strict", segment_arg]).output().unwrap();
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn inputs_replay_cannot_read_are_named_and_fail_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.bin");
    // Deterministic bytes with no line that names an SSE field.
    let bytes: Vec<u8> =
        (0u32..4096).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&random, bytes).unwrap();
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&jsonl, "{\"studentId\":\"a\",\"exam\":1,\"score\":0.5}\n").unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    for (input, says) in [
        (&random, "neither SSE text"),
        (&jsonl, "neither SSE text (no event in it, and 1 line names no SSE field)"),
        (&empty_dir, "a directory with no journal segments"),
    ] {
        for strict in [false, true] {
            let mut command = scores();
            command.arg("replay").arg(input);
            if strict {
                command.arg("--strict");
            }
            let output = command.output().unwrap();
            assert_eq!(output.status.code(), Some(1), "{input:?} strict={strict}");
            assert!(stderr(&output).contains(says), "{input:?}: {}", stderr(&output));
        }
    }
    // Beside real events, lines that are no SSE field are ignored, except under --strict.
    let mixed = dir.path().join("mixed.sse");
    std::fs::write(
        &mixed,
        "garbage\nevent: score\ndata: {\"studentId\":\"a\",\"exam\":1,\"score\":0.5}\n\n",
    )
    .unwrap();
    let output = scores().arg("replay").arg(&mixed).arg("students").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"students\":[\"a\"],\"total\":1}\n");
    let output = scores().args(["replay", "--strict"]).arg(&mixed).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("1 line names no SSE field"), "{}", stderr(&output));

    let missing = scores().args(["replay", "student"]).arg(&mixed).arg("student").output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("the query needs its value"), "{}", stderr(&missing));
}

#[test]
fn bad_feed_urls_and_log_filters_are_refused_at_start_with_exit_2() {
    for args in [
        &["serve", "--upstream", "not-a-url"][..],
        &["serve", "--upstream", "ftp://host/scores"],
        &["tail", "http://"],
        &["record", "file:///tmp/feed", "-o", "/dev/null"],
    ] {
        let output = scores().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "scores {args:?}");
        assert!(stderr(&output).contains("invalid value"), "{args:?}: {}", stderr(&output));
    }
    let output = scores().args(["replay", "-"]).env("RUST_LOG", "info,[[").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid RUST_LOG"), "{}", stderr(&output));
}

/// GETs `path`, returning the status, `X-Scores-Seq` and the body.
fn get(base: &str, path: &str) -> (u16, Option<String>, String) {
    let response = reqwest::blocking::get(format!("{base}{path}")).unwrap();
    let seq = response.headers().get("x-scores-seq").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), seq, response.text().unwrap())
}

/// The README's example service: `serve --simulate-count 40 --simulate-rate max` on a data
/// directory of its own, until it has folded the 40 events; then stopped with SIGTERM.
fn readme_example_service(data_dir: &Path, json_logs: bool) -> (Running, String) {
    let listen = free_address();
    let mut command = scores();
    command
        .env("RUST_LOG", "info")
        .args(["serve", "--simulate-count", "40", "--simulate-rate", "max", "--listen"])
        .arg(listen.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if json_logs {
        command.args(["--log-format", "json"]);
    }
    let running = Running(command.spawn().unwrap());
    wait_for_port(listen);
    let base = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&base, "/students").1.as_deref() != Some("40") {
        assert!(Instant::now() < deadline, "the example service did not fold its 40 events");
        sleep(Duration::from_millis(20));
    }
    (running, base)
}

/// The README's first curl example and the body it shows.
fn readme_first_example() -> (String, String) {
    let readme = include_str!("../../README.md");
    let section = readme.split_once("\n## HTTP API\n").unwrap().1;
    let mut lines = section.lines().skip_while(|line| !line.starts_with("$ curl"));
    let command = lines.next().unwrap();
    let path = command.split_whitespace().last().unwrap().trim_matches('\'');
    let path = path.strip_prefix("localhost:8000").unwrap().to_owned();
    (path, lines.next().unwrap().to_owned())
}

#[test]
fn the_readme_example_service_answers_the_same_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("scores-example");
    let (path, shown) = readme_first_example();
    let (first, base) = readme_example_service(&data_dir, true);
    let before: Vec<_> = ["/students", "/exams", path.as_str()].map(|p| get(&base, p)).into();
    assert_eq!(before[2].2, shown, "GET {path}");
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(get(&base, probe).0, 200, "GET {probe}");
    }
    let students: serde_json::Value = serde_json::from_str(&before[0].2).unwrap();
    let student = students["students"][0].as_str().unwrap().to_owned();
    assert_eq!(get(&base, &format!("/students/{student}")).0, 200);
    stop(first, |log| {
        // JSON logs, one object per line; the access log names each request.
        for line in log.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
            assert!(value["level"].is_string(), "{line}");
        }
        assert!(log.contains("\"status\":200") && log.contains("\"route\":\"/students\""), "{log}");
        // Health checks that pass are logged at DEBUG, below the INFO this service logs at.
        assert!(
            !log.contains("\"route\":\"/healthz\"") && !log.contains("\"route\":\"/readyz\""),
            "{log}"
        );
        // Routes, never the paths: a student's id is personal data, and stays out of INFO.
        assert!(log.contains("\"route\":\"/students/{id}\""), "{log}");
        assert!(!log.contains(&student), "{student} is in the log at INFO:\n{log}");
    });

    let (second, base) = readme_example_service(&data_dir, false);
    // The feed, asked for what follows event 40, has nothing: the answers stay put.
    sleep(Duration::from_millis(500));
    let after: Vec<_> = ["/students", "/exams", path.as_str()].map(|p| get(&base, p)).into();
    assert_eq!(after, before);
    stop(second, |log| assert!(!log.contains('\u{1b}'), "no colours off a terminal: {log}"));
}

/// Stops `service` with SIGTERM and checks its stderr.
fn stop(mut service: Running, check_log: impl FnOnce(&str)) {
    let pid = service.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = service.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut log = String::new();
    std::io::Read::read_to_string(service.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    check_log(&log);
}

#[test]
fn a_second_serve_on_the_same_data_directory_exits_2_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (first, _base) = readme_example_service(&data_dir, false);
    let second = scores()
        .args(["serve", "--simulate-count", "40", "--listen"])
        .arg(free_address().to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    let pid = first.0.id();
    assert!(
        stderr(&second).contains(&format!("is in use by another process (pid {pid})")),
        "{}",
        stderr(&second)
    );
    stop(first, |_| {});
}

/// A data directory whose journal has many small segments, 300 events in batches of 10.
fn journal_in_segments(data_dir: &Path) -> Vec<PathBuf> {
    use scores_core::ScoreEvent;
    use scores_journal::{Entry, FsyncPolicy, Journal, Options};

    let journal_dir = data_dir.join("journal");
    let options = Options { fsync: FsyncPolicy::Never, segment_bytes: 2048 };
    let (mut journal, _) = Journal::open(&journal_dir, options).unwrap();
    for batch in 0..30u64 {
        let entries: Vec<Entry> = (0..10u64)
            .map(|i| Entry {
                event: ScoreEvent::new(&format!("s{i}"), 10_000 + batch, 0.5).unwrap(),
                upstream_id: "".into(),
            })
            .collect();
        journal.append(&entries).unwrap();
    }
    drop(journal);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&journal_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    segments
}

#[test]
fn a_damaged_closed_segment_stops_serve_at_once_with_the_segment_and_offset() {
    for damage in ["flipped byte", "truncated"] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let segments = journal_in_segments(&data_dir);
        let closed = &segments[1];
        let mut bytes = std::fs::read(closed).unwrap();
        let middle = bytes.len() / 2;
        match damage {
            "flipped byte" => bytes[middle] ^= 0x10,
            _ => bytes.truncate(bytes.len() - 30),
        }
        std::fs::write(closed, &bytes).unwrap();
        let mut command = scores();
        command
            .args(["serve", "--upstream", "http://127.0.0.1:9/scores", "--listen"])
            .arg(free_address().to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .stderr(Stdio::piped());
        let mut serve = Running(command.spawn().unwrap());
        // Bounded: a service that hangs instead fails here, not by timing out CI.
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = serve.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{damage}: serve did not stop on a damaged journal");
            sleep(Duration::from_millis(20));
        };
        let mut log = String::new();
        std::io::Read::read_to_string(serve.0.stderr.as_mut().unwrap(), &mut log).unwrap();
        assert_eq!(status.code(), Some(2), "{damage}: {log}");
        let segment_name = closed.file_name().unwrap().to_str().unwrap();
        assert!(log.contains("ERROR") && log.contains(segment_name), "{damage}: {log}");
        assert!(
            log.contains("is corrupt at byte") || log.contains("ends inside a batch at byte"),
            "{damage}: {log}"
        );
    }
}

/// `serve` on the simulated feed's first 40 events, with `extra` options, once it has them.
fn service_with(data_dir: &Path, extra: &[&str]) -> (Running, std::net::SocketAddr) {
    let listen = free_address();
    let running = Running(
        scores()
            .args(["serve", "--simulate-count", "40", "--simulate-rate", "max", "--listen"])
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(listen);
    (running, listen)
}

/// Sends `request` on a new connection and reads until the server closes it, within `within`.
/// Returns what was read, or `None` when the connection was still open at the deadline.
fn until_closed(address: std::net::SocketAddr, request: &[u8], within: Duration) -> Option<String> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request).unwrap();
    let deadline = Instant::now() + within;
    let mut read = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&read).into_owned()),
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&read).into_owned());
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn idle_half_sent_and_kept_alive_connections_are_closed_after_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (_serve, address) =
        service_with(&dir.path().join("data"), &["--header-read-timeout", "1s"]);
    let within = Duration::from_secs(10);
    assert!(until_closed(address, b"", within).is_some(), "an idle connection stays open");
    let half = until_closed(address, b"GET /healthz HTTP/1.1\r\nHo", within);
    assert!(half.is_some(), "a half-sent request stays open");
    let kept = until_closed(address, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", within)
        .expect("a kept-alive connection stays open after its answer");
    assert!(kept.starts_with("HTTP/1.1 200 OK"), "{kept}");
}

#[test]
fn past_the_connection_cap_health_checks_are_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ["--max-connections", "9", "--header-read-timeout", "60s"];
    let (_serve, address) = service_with(&dir.path().join("data"), &limits);
    let base = format!("http://{address}");
    // One kept-alive connection that watches how many are open.
    let client = reqwest::blocking::Client::new();
    let open = || {
        let metrics = client.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
        let line = metrics.lines().find(|line| line.starts_with("scores_http_connections_open "));
        line.and_then(|line| line.split(' ').nth(1)?.parse::<u64>().ok()).unwrap()
    };
    // Only the watcher's (the connection that waited for the port may take a moment to go).
    let deadline = Instant::now() + Duration::from_secs(20);
    while open() != 1 {
        assert!(Instant::now() < deadline, "other connections stayed open");
        sleep(Duration::from_millis(20));
    }
    // Eight that say nothing take the other places.
    let idle: Vec<_> = (0..8).map(|_| std::net::TcpStream::connect(address).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while open() < 9 {
        assert!(Instant::now() < deadline, "the eight connections were never all served");
        sleep(Duration::from_millis(20));
    }
    let one_request = |path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        until_closed(address, request.as_bytes(), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("a connection past the cap stayed open"))
    };
    let answer = one_request("/students");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"too_many_connections\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    for path in ["/healthz", "/readyz"] {
        let answer = one_request(path);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{path}: {answer}");
    }
    drop(idle);
    // Once they close, new connections are served again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !one_request("/students").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "the places never came back");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn probe_exits_0_while_the_service_answers_and_1_once_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (service, listen) = service_with(dir.path(), &[]);
    // As a container's health check runs it: the service's own SCORES_LISTEN, on every address.
    let unspecified = format!("0.0.0.0:{}", listen.port());
    let probe = |path: &str| {
        scores()
            .args(["probe", "--path", path])
            .env("SCORES_LISTEN", &unspecified)
            .output()
            .unwrap()
    };
    let healthy = probe("/healthz");
    assert!(healthy.status.success(), "{}", stdout(&healthy));
    assert_eq!(
        stdout(&healthy).trim(),
        format!("GET http://127.0.0.1:{}/healthz: 200 OK", listen.port())
    );
    let missing = probe("/no-such-page");
    assert_eq!(missing.status.code(), Some(1), "{}", stdout(&missing));
    assert!(stdout(&missing).contains("404"), "{}", stdout(&missing));
    drop(service);
    let gone = probe("/healthz");
    assert_eq!(gone.status.code(), Some(1), "{}", stdout(&gone));
}

#[test]
fn metrics_can_have_a_listener_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_address();
    let (_serve, address) =
        service_with(&dir.path().join("data"), &["--metrics-listen", &metrics.to_string()]);
    wait_for_port(metrics);
    let get = |url: String| {
        let response = reqwest::blocking::get(url).unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let (status, body) = get(format!("http://{metrics}/metrics"));
    assert_eq!(status, 200);
    assert!(body.contains("scores_events_accepted_total"), "{body}");
    let (status, body) = get(format!("http://{address}/metrics"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(get(format!("http://{address}/students")).0, 200);
    assert_eq!(get(format!("http://{metrics}/students")).0, 404);
}
