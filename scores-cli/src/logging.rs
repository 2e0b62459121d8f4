//! Logging: the format and filter chosen at start, log lines routed around a progress bar, and
//! errors reported with their causes once each.

use std::io::{self, IsTerminal as _, Write};
use std::sync::OnceLock;

use anyhow::Context as _;
use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Sets up the global subscriber: `RUST_LOG`'s filter (`info,async_nats=warn` when unset: the
/// NATS client's own connection events are said by the service in its words), in `format`, on
/// stderr, in colour only when stderr is a terminal. An invalid `RUST_LOG` is an error.
pub(crate) fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::builder()
            .parse(&directives)
            .with_context(|| format!("invalid RUST_LOG {directives:?}"))?,
        Err(std::env::VarError::NotPresent) => EnvFilter::new("info,async_nats=warn"),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("RUST_LOG is not UTF-8"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(LogWriter);
    match format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
    Ok(())
}

/// Reports a command's failure: as an ERROR log line once logging is set up, on stderr before.
pub(crate) fn report(error: &anyhow::Error) {
    let message = causes(error);
    if tracing::dispatcher::has_been_set() {
        tracing::error!(target: "scores", "{message}");
    } else {
        // Nothing else can say it: a closed stderr leaves the exit code to tell.
        let _ = writeln!(io::stderr(), "error: {message}");
    }
}

/// `error` and its causes, joined by `: `, leaving out a cause whose text the message already
/// ends with: many errors print their source in their own message too.
fn causes(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// The progress bar or counter on the terminal, if a command shows one.
static PROGRESS: OnceLock<ProgressBar> = OnceLock::new();

/// Routes log lines around `bar` while it shows, so that they do not tear it.
pub(crate) fn show_progress(bar: &ProgressBar) {
    let _ = PROGRESS.set(bar.clone());
}

/// Where log lines go: stderr, around the progress bar if one shows. The fmt layer writes each
/// log line with one call, so a line is never split around a redraw.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match PROGRESS.get() {
            Some(bar) => bar.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let os_error = || io::Error::from_raw_os_error(20);
        // As `JournalError::Io` does: its message ends with its source's.
        let opening =
            anyhow::Error::new(os_error()).context(format!("opening data: {}", os_error()));
        let error = opening.context("running the service");
        assert_eq!(causes(&error), format!("running the service: opening data: {}", os_error()));
        let plain = anyhow::anyhow!("disk full").context("appending");
        assert_eq!(causes(&plain), "appending: disk full");
    }
}
