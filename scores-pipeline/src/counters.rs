//! What the pipeline counts, for `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// The pipeline's counters. Lock-free, except rejections by reason, which take a short lock.
#[derive(Debug, Default)]
pub struct Counters {
    /// Valid events handed to the log's appender.
    pub events_received: AtomicU64,
    /// Events appended durably and folded.
    pub events_accepted: AtomicU64,
    /// Events of other types.
    pub events_ignored: AtomicU64,
    /// Attempts to connect to the upstream after the first, whether or not they connected.
    pub reconnects: AtomicU64,
    /// Whether the upstream connection is up.
    pub upstream_connected: AtomicBool,
    /// Log appends (batches).
    pub log_appends: AtomicU64,
    /// Syncs of the log to stable storage (fdatasync calls, for the journal).
    pub log_syncs: AtomicU64,
    /// Log appends that failed and were retried.
    pub log_errors: AtomicU64,
    /// The last sequence number made durable.
    pub log_last_seq: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Snapshots published.
    pub snapshots_published: AtomicU64,
    /// Times this replica took or lost the ingester's lease (a shared log).
    pub lease_changes: AtomicU64,
    /// Places where the log was found damaged: a segment failing its checks when verified after
    /// start, or a read that met damage.
    pub log_damage_found: AtomicU64,
    /// Bytes of the log verified after start.
    pub log_bytes_verified: AtomicU64,
    /// Publishes refused because another ingester had taken over (a shared log).
    pub fenced_publishes: AtomicU64,
    /// Events a standby replica's buffer holds (a shared log, with an upstream).
    pub standby_buffered: AtomicU64,
    /// The bytes those events take in the spool.
    pub standby_bytes: AtomicU64,
    /// Events no log had that gave way in a standby's buffer, past its size limit.
    pub standby_dropped: AtomicU64,
    /// Takeovers whose buffer was aligned after the stream's end.
    pub takeovers_aligned: AtomicU64,
    /// Takeovers whose buffer could not be aligned: the stream's end was not found in it.
    pub takeovers_not_found: AtomicU64,
    /// Takeovers whose buffer could not be aligned: the stream's end was found more than once.
    pub takeovers_ambiguous: AtomicU64,
    /// Buffered events not published at a takeover because the alignment was refused.
    pub takeover_skipped: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    /// Counts an event rejected for `reason` (a `DecodeError::reason` or a parse error's).
    pub fn count_rejected(&self, reason: &'static str) {
        if let Ok(mut rejected) = self.rejected.lock() {
            *rejected.entry(reason).or_default() += 1;
        }
    }

    /// Rejected events, by reason, in the order of the reasons.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        self.rejected.lock().map(|r| r.iter().map(|(&k, &v)| (k, v)).collect()).unwrap_or_default()
    }
}
