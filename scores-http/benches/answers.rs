//! What one query costs the service: answered from the body kept for the current snapshot, or
//! rendered (and gzip-encoded) on a snapshot no request has read yet, as the first request
//! after each publish is under ingest. Run with `cargo bench -p scores-http --bench answers`.
//!
//! Requests go through the whole router with `oneshot`, so the middleware is included; the
//! network is not.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use scores_core::{ScoreEvent, Scoreboard};
use scores_http::{AppState, router};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

/// The first exam number, as in the feed.
const FIRST_EXAM: u64 = 10_000;

fn event(student: &str, exam: u64, score: f64) -> ScoreEvent {
    ScoreEvent::new(student, exam, score).unwrap()
}

/// `students` students, each with a full-precision score on each of `exams` exams: the
/// simulator's default shape (200 × 1,000) once ingest has run a few seconds.
fn dense_board(students: usize, exams: u64) -> Scoreboard {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut board = Scoreboard::new();
    for exam in FIRST_EXAM..FIRST_EXAM + exams {
        for student in 0..students {
            board.apply(&event(&format!("Student.Number{student}"), exam, rng.f64()));
        }
    }
    board
}

async fn get(app: &Router, uri: &str, gzip: bool) -> Bytes {
    let mut request = Request::get(uri);
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), 200, "{uri}");
    axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()
}

fn answers(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("answers");

    // 200 students × 1,000 exams: a student's answer is ~42 KB, an exam's ~10 KB.
    let mut board = dense_board(200, 1_000);
    let state = AppState::serving(board.snapshot());
    let app = router(state.clone());
    let student = "/students/Student.Number7";
    let exam = format!("/exams/{FIRST_EXAM}");
    // The floor every answer shares: routing, middleware, headers.
    group.bench_function("GET /healthz", |b| {
        b.iter(|| runtime.block_on(get(&app, black_box("/healthz"), false)))
    });
    for (name, gzip) in [("", false), (", gzip", true)] {
        group.bench_function(format!("GET /students/{{id}} (1,000 results){name}, kept"), |b| {
            b.iter(|| runtime.block_on(get(&app, black_box(student), gzip)))
        });
        group.bench_function(
            format!("GET /students/{{id}} (1,000 results){name}, new snapshot"),
            |b| {
                b.iter(|| {
                    state.pipeline().publish(board.snapshot());
                    runtime.block_on(get(&app, black_box(student), gzip))
                })
            },
        );
        // A regrade makes a new version of the exam, so its id order is computed again too.
        let mut score = 0.0;
        group.bench_function(
            format!("GET /exams/{{number}} (200 results){name}, new version"),
            |b| {
                b.iter(|| {
                    score = 1.0 - score;
                    board.apply(&event("Student.Number7", FIRST_EXAM, score));
                    state.pipeline().publish(board.snapshot());
                    runtime.block_on(get(&app, black_box(&exam), gzip))
                })
            },
        );
    }

    // 100k students, 20 exams, one result each: `/students` lists 100k ids (~2 MB), an exam
    // holds 5,000 results (~270 KB).
    let mut board = Scoreboard::new();
    let mut rng = fastrand::Rng::with_seed(11);
    for student in 0..100_000_u64 {
        let id = format!("Student.Number{student}");
        board.apply(&event(&id, FIRST_EXAM + student % 20, rng.f64()));
    }
    let state = AppState::serving(board.snapshot());
    let app = router(state.clone());
    group.sample_size(20);
    // A listing is kept until a student is added (see `rendered`), then rendered again.
    group.bench_function("GET /students (100k ids), new snapshot, same students", |b| {
        b.iter(|| {
            state.pipeline().publish(board.snapshot());
            runtime.block_on(get(&app, "/students", false))
        })
    });
    let mut added = 0_u64;
    group.bench_function("GET /students (100k ids), new snapshot, a student added", |b| {
        b.iter(|| {
            added += 1;
            board.apply(&event(&format!("Added.Student{added}"), FIRST_EXAM, 0.5));
            state.pipeline().publish(board.snapshot());
            runtime.block_on(get(&app, "/students", false))
        })
    });
    for (name, gzip) in [("", false), (", gzip", true)] {
        let mut score = 0.0;
        group.bench_function(
            format!("GET /exams/{{number}} (5,000 results){name}, new version"),
            |b| {
                b.iter(|| {
                    score = 1.0 - score;
                    board.apply(&event("Student.Number0", FIRST_EXAM, score));
                    state.pipeline().publish(board.snapshot());
                    runtime.block_on(get(&app, black_box(&exam), gzip))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, answers);
criterion_main!(benches);
