//! What `tail` and `record` share: a feed read on its own task, Ctrl-C, and JSON-line output;
//! and the single-threaded runtime that they and `probe` run on.

use std::io::{self, Write};

use scores_sse::{Feed, FeedItem};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// A [`Feed`] running on its own task, so that waiting for it can be combined with Ctrl-C and
/// with flushing output whenever the feed has nothing ready.
pub(crate) struct LiveFeed {
    items: mpsc::Receiver<FeedItem>,
    interrupted: oneshot::Receiver<()>,
}

impl LiveFeed {
    /// Starts reading `feed`. Must be called within a Tokio runtime.
    pub(crate) fn start(mut feed: Feed) -> LiveFeed {
        let (sender, items) = mpsc::channel(4096);
        tokio::spawn(async move {
            while let Some(item) = feed.next().await {
                if sender.send(item).await.is_err() {
                    return;
                }
            }
        });
        let (interrupt, interrupted) = oneshot::channel();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = interrupt.send(());
            }
        });
        LiveFeed { items, interrupted }
    }

    /// The next item. When none is ready, calls `idle` (to flush output) before waiting.
    /// `None` when the feed has ended (the server answered 204) or on Ctrl-C.
    pub(crate) async fn next(
        &mut self,
        idle: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<Option<FeedItem>> {
        match self.items.try_recv() {
            Ok(item) => return Ok(Some(item)),
            Err(mpsc::error::TryRecvError::Disconnected) => return Ok(None),
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        idle()?;
        tokio::select! {
            item = self.items.recv() => Ok(item),
            _ = &mut self.interrupted => Ok(None),
        }
    }
}

/// An SSE event as `--events` prints it: `{"event":…,"data":…,"id":…}`.
#[derive(Serialize)]
pub(crate) struct RawEvent<'a> {
    pub(crate) event: &'a str,
    pub(crate) data: &'a str,
    pub(crate) id: &'a str,
}

/// Writes `value` as one line of compact JSON.
pub(crate) fn write_json_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// A failed write to stdout: a closed pipe (`scores tail URL | head`) is a normal way to stop.
pub(crate) fn stdout_failed(error: io::Error) -> anyhow::Result<std::process::ExitCode> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Err(anyhow::Error::new(error).context("writing to standard output"))
    }
}

/// A single-threaded runtime: these commands do one thing at a time.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
