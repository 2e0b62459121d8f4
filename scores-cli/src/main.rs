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

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` is set (then
/// mimalloc follows it). With huge pages a page fault zeroes 2 MiB at once, and a page the
/// allocator frees in part stays resident: in alternated runs of 10M events, ingest took up to
/// 10% more CPU-seconds with them at 100k students × 10k exams and up to 15% with the
/// simulator's defaults, and 1–4 bytes an event (20–30 MB) more memory; a restart at 10M events
/// took 0.1–0.8 s longer (docs/PERFORMANCE.md). The flag is the process's, and passes to its
/// children.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none()
        && let Err(error) = rustix::thread::disable_transparent_huge_pages(true)
    {
        tracing::debug!(%error, "transparent huge pages left as they are");
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(error) = logging::init(cli.log_format) {
        logging::report(&error);
        return ExitCode::from(2);
    }
    without_huge_pages();
    #[cfg(feature = "heap-count")]
    heap::report_every(std::time::Duration::from_secs(1));
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(*args).map(|()| ExitCode::SUCCESS),
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
