//! The `scores` command: parses arguments, sets up logging, and calls the library crates.

mod chunks;
mod cli;
#[cfg(feature = "heap-count")]
mod heap;
mod live;
mod logging;
mod probe;
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
#[cfg(not(feature = "heap-count"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same, counting the heap (`--features heap-count`; see `heap.rs`).
#[cfg(feature = "heap-count")]
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(error) = logging::init(cli.log_format) {
        logging::report(&error);
        return ExitCode::from(2);
    }
    #[cfg(feature = "heap-count")]
    heap::report_every(std::time::Duration::from_secs(1));
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Simulate(args) => simulate::run(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Tail(args) => tail::run(args),
        cli::Command::Record(args) => record::run(args),
        cli::Command::Replay(args) => replay::run(args),
        cli::Command::Probe(args) => probe::run(args),
    };
    result.unwrap_or_else(|error| {
        logging::report(&error);
        ExitCode::from(2)
    })
}
