//! `scores record`: append a live feed to a file as SSE text, resuming from the file's last id.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use memchr::memmem;
use scores_sse::{Feed, FeedConfig, FeedItem, FeedOutput, ItemRef, Parser, encode};

use crate::chunks::for_each_chunk;
use crate::cli::RecordArgs;
use crate::live::{LiveFeed, runtime};

/// How far back from the end of a file to look for the end of its last complete event.
const TAIL_WINDOW: u64 = 1 << 20;

pub(crate) fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let path = &args.output;
    let (file, existing) = open_for_append(path)?;
    if existing.cut > 0 {
        tracing::warn!(
            "removed {} bytes at the end of {}: an event cut short, to be received again",
            existing.cut,
            path.display()
        );
    }
    if existing.events > 0 {
        tracing::info!(
            "{} holds {} events; resuming after event id {:?}",
            path.display(),
            existing.events,
            existing.last_id
        );
    }
    let config = FeedConfig {
        last_event_id: existing.last_id.clone(),
        idle_timeout: Some(args.idle_timeout),
        output: FeedOutput::Raw,
        ..FeedConfig::new(args.url)
    };
    let feed = Feed::new(config)?;
    let counter = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {human_pos} events recorded in {elapsed} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    counter.enable_steady_tick(Duration::from_millis(200));
    crate::logging::show_progress(&counter);
    let mut out = BufWriter::with_capacity(256 << 10, file);
    let mut last_id = existing.last_id;
    let recorded = runtime()?.block_on(async {
        let mut live = LiveFeed::start(feed);
        let mut text = String::new();
        let mut recorded = 0u64;
        let mut warned_no_id = false;
        while let Some(item) = live.next(|| out.flush()).await.context("writing the file")? {
            match item {
                FeedItem::Raw(event) => {
                    if event.id.is_empty() && !warned_no_id {
                        warned_no_id = true;
                        tracing::warn!(
                            "the feed sends no event ids: after a reconnect or a restart the \
                             upstream decides where the recording goes on"
                        );
                    }
                    text.clear();
                    match encode(&event, &mut text) {
                        Ok(()) => {
                            out.write_all(text.as_bytes()).context("writing the file")?;
                            recorded += 1;
                            counter.inc(1);
                            last_id.clear();
                            last_id.push_str(&event.id);
                        }
                        Err(error) => tracing::warn!("not recorded: {error}"),
                    }
                }
                // The feed logs its connection's life itself; the counter shows the latest.
                FeedItem::State(state) => counter.set_message(state.to_string()),
                FeedItem::Rejected(error) => tracing::warn!("{error}"),
                FeedItem::Event { .. } | FeedItem::Ignored { .. } => {}
            }
        }
        anyhow::Ok(recorded)
    });
    counter.finish_and_clear();
    // Whatever ended the recording, keep what was received.
    let synced = out
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(|file| file.sync_data())
        .with_context(|| format!("writing {}", path.display()));
    let recorded = recorded?;
    synced?;
    tracing::info!("recorded {recorded} events to {} (last event id {last_id:?})", path.display());
    Ok(ExitCode::SUCCESS)
}

/// What an existing file already holds.
#[derive(Debug, Default)]
struct Existing {
    events: u64,
    last_id: String,
    /// Bytes of an unfinished last event, removed.
    cut: u64,
}

/// Opens `path` for appending: cuts off an unfinished last event (a crash mid-write), then reads
/// the file's events for the last event id.
fn open_for_append(path: &Path) -> anyhow::Result<(File, Existing)> {
    let shown = path.display();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {shown}"))?;
    let len = file.metadata().with_context(|| format!("reading {shown}"))?.len();
    let keep = complete_len(&mut file, len).with_context(|| format!("reading {shown}"))?;
    let Some(keep) = keep else {
        bail!(
            "{shown} does not look like an SSE file (no complete event ends in its last MiB); \
             record to another file"
        );
    };
    if keep < len {
        file.set_len(keep).with_context(|| format!("truncating {shown}"))?;
    }
    let mut existing = Existing { cut: len - keep, ..Existing::default() };
    file.seek(SeekFrom::Start(0)).with_context(|| format!("reading {shown}"))?;
    let mut parser = Parser::default();
    let ControlFlow::Continue(()) = for_each_chunk(&mut file, |chunk| {
        parser.feed_with(chunk, |item| {
            if let Ok(ItemRef::Event(_)) = item {
                existing.events += 1;
            }
        });
        ControlFlow::<Infallible>::Continue(())
    })
    .with_context(|| format!("reading {shown}"))?;
    existing.last_id = parser.last_event_id().to_owned();
    file.seek(SeekFrom::End(0)).with_context(|| format!("reading {shown}"))?;
    Ok((file, existing))
}

/// The length of the file's prefix that ends with a complete event (a blank line), or `None`
/// when the file is not empty, has no event boundary in its last MiB and does not start like
/// SSE: then it is probably not an SSE file, and it is left alone.
fn complete_len(file: &mut File, len: u64) -> io::Result<Option<u64>> {
    if len == 0 {
        return Ok(Some(0));
    }
    let window = len.min(TAIL_WINDOW);
    let start = len - window;
    let mut tail = vec![0; usize::try_from(window).unwrap_or(usize::MAX)];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut tail)?;
    if [&b"\n\n"[..], b"\r\r", b"\r\n\r\n"].iter().any(|end| tail.ends_with(end)) {
        return Ok(Some(len));
    }
    let after_lf = memmem::rfind(&tail, b"\n\n").map(|at| at + 2);
    let after_crlf = memmem::rfind(&tail, b"\r\n\r\n").map(|at| at + 4);
    if let Some(end) = after_lf.max(after_crlf) {
        return Ok(Some(start + end as u64));
    }
    // No complete event at all: only an event cut short in the first write looks like this.
    let starts_like_sse = start == 0
        && [&b"event:"[..], b"data:", b"id:", b"retry:", b":"].iter().any(|f| tail.starts_with(f));
    Ok(starts_like_sse.then_some(0))
}
