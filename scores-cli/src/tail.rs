//! `scores tail`: a live feed's events as JSON lines on stdout.

use std::io::{self, BufWriter, Write as _};
use std::process::ExitCode;

use scores_sse::{Feed, FeedConfig, FeedItem, FeedOutput};

use crate::cli::TailArgs;
use crate::live::{LiveFeed, RawEvent, runtime, stdout_failed, write_json_line};

pub(crate) fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let output = if args.events { FeedOutput::Raw } else { FeedOutput::Decoded };
    let config = FeedConfig {
        last_event_id: args.last_event_id,
        idle_timeout: Some(args.idle_timeout),
        output,
        ..FeedConfig::new(args.url)
    };
    let feed = Feed::new(config)?;
    runtime()?.block_on(async {
        let mut live = LiveFeed::start(feed);
        let mut out = BufWriter::new(io::stdout().lock());
        loop {
            let item = match live.next(|| out.flush()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(error) => return stdout_failed(error),
            };
            let written = match item {
                FeedItem::Event { event, .. } => write_json_line(&mut out, &event),
                FeedItem::Raw(event) => write_json_line(
                    &mut out,
                    &RawEvent { event: &event.event_type, data: &event.data, id: &event.id },
                ),
                FeedItem::Ignored { event_type } => {
                    tracing::debug!(%event_type, "ignored an event of another type");
                    Ok(())
                }
                FeedItem::Rejected(error) => {
                    tracing::warn!("{error}");
                    Ok(())
                }
                // The feed logs its connection's life itself.
                FeedItem::State(_) => Ok(()),
            };
            if let Err(error) = written {
                return stdout_failed(error);
            }
        }
        match out.flush() {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(error) => stdout_failed(error),
        }
    })
}
