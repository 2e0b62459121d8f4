//! How the pipeline runs: [`PipelineConfig`].

use std::path::PathBuf;

use scores_journal::Options;
use scores_sse::FeedConfig;

use crate::jetstream::JetStreamConfig;

/// How the pipeline runs. [`PipelineConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The upstream SSE feed's URL; `None` to serve the log as it is, ingesting nothing.
    pub upstream: Option<String>,
    /// The data directory: the journal in `journal/`, the checkpoint in `checkpoint`.
    pub data_dir: PathBuf,
    /// The journal's options: when appends reach stable storage, how large a segment grows.
    pub journal: Options,
    /// Write a checkpoint after this many new events, or after as many new events as the board
    /// holds results when that is more.
    pub checkpoint_every: u64,
    /// Passed to the feed: idle timeout, backoff, limits. Its `url` and `last_event_id` are set
    /// by the pipeline.
    pub feed: FeedConfig,
    /// The log on a NATS JetStream stream, shared by replicas, instead of the file journal; the
    /// data directory then holds this replica's checkpoint only.
    pub jetstream: Option<JetStreamConfig>,
}

impl PipelineConfig {
    /// Defaults: the journal's (fsync every batch, 64 MiB segments), a checkpoint every million
    /// events, the feed's defaults.
    pub fn new(upstream: impl Into<String>, data_dir: impl Into<PathBuf>) -> PipelineConfig {
        PipelineConfig {
            upstream: Some(upstream.into()),
            data_dir: data_dir.into(),
            journal: Options::default(),
            checkpoint_every: 1_000_000,
            feed: FeedConfig::new(""),
            jetstream: None,
        }
    }
}
