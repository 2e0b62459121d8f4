//! The floor under `scripts/load.sh`'s request rates: a bare axum server that answers
//! `GET /0`, `GET /1`, … with the bytes of the files named on its command line, read once at
//! start. It does no work per request beyond what axum, hyper and the kernel do, so what wrk
//! measures against it, with the same bodies and on the same cores, is the best any service
//! answering those bytes could do there.
//!
//!     cargo run --release -p scores-http --example constant_bodies -- 127.0.0.1:18299 a.json b.json

use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

#[tokio::main]
#[expect(clippy::print_stderr, reason = "a command-line tool's usage and errors")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(listen), files) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: constant_bodies ADDR FILE...");
        return ExitCode::from(2);
    };
    match serve(&listen, &files).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("constant_bodies: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str, files: &[String]) -> std::io::Result<()> {
    let mut app = Router::new();
    for (index, file) in files.iter().enumerate() {
        let body = Bytes::from(std::fs::read(file)?);
        app = app.route(
            &format!("/{index}"),
            get(move || async move { ([(CONTENT_TYPE, "application/json; charset=utf-8")], body) }),
        );
    }
    axum::serve(tokio::net::TcpListener::bind(listen).await?, app).await
}
