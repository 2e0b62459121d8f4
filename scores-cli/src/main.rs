//! The `scores` command: parses arguments, sets up logging, and calls the library crates.

mod chunks;
mod cli;
mod live;
mod record;
mod replay;
mod serve;
mod simulate;
mod tail;

use std::process::ExitCode;

use clap::Parser as _;

/// The service allocates and frees many small, short-lived buffers per event (copy-on-write
/// rows, batches, response bodies); mimalloc measured faster than glibc's malloc here (see
/// docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(live::LogWriter).init();
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Simulate(args) => simulate::run(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Tail(args) => tail::run(args),
        cli::Command::Record(args) => record::run(args),
        cli::Command::Replay(args) => replay::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::from(2)
        }
    }
}
