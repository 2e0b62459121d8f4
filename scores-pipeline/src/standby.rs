//! [`Standby`]: what a replica hears from the upstream on its own connection, kept while it
//! does not ingest so that it can take over where the stream ends, and handed to the log while
//! it does.
//!
//! Every replica started with an upstream keeps one connection to it for its whole life
//! (`pull_feed` into [`Standby::push`]). The buffer is a window on the upstream, bounded by
//! count and by age: its oldest events give way. On taking the lease, [`Standby::take_over`]
//! aligns the buffer after the stream's last events (see `align`); from then on the ingester
//! hands on what follows ([`Standby::hand_over`]). Handed-on events stay in the window, so that
//! the same replica can align again after a term that ended before they were stored (NATS away
//! past the lease, say). An event that gives way before it was handed on, while this replica
//! ingests, is lost, and counted.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::align::{Alignment, align};
use crate::counters::Counters;
use crate::log::Entry;

/// How much a standby keeps. [`Default`] is about a minute of a busy feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyLimits {
    /// The most events kept; past it the oldest give way.
    pub max_events: usize,
    /// Events older than this give way as new ones arrive.
    pub max_age: Duration,
}

impl Default for StandbyLimits {
    /// 60,000 events (about 5 MB), one minute.
    fn default() -> StandbyLimits {
        StandbyLimits { max_events: 60_000, max_age: Duration::from_secs(60) }
    }
}

/// A replica's buffer of what its upstream connection delivered. See the module docs.
#[derive(Debug)]
pub(crate) struct Standby {
    limits: StandbyLimits,
    buffer: Mutex<Buffer>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct Buffer {
    entries: VecDeque<Entry>,
    /// When each entry arrived, in the same order.
    arrived: VecDeque<Instant>,
    /// While this replica ingests, the index of the next entry to hand on.
    next: Option<usize>,
}

impl Buffer {
    /// Lets the oldest entry go; true when it had not been handed on while ingesting.
    fn pop_front(&mut self) -> bool {
        self.entries.pop_front();
        self.arrived.pop_front();
        match &mut self.next {
            Some(0) => true,
            Some(next) => {
                *next -= 1;
                false
            }
            None => false,
        }
    }
}

impl Standby {
    pub(crate) fn new(limits: StandbyLimits) -> Standby {
        Standby { limits, buffer: Mutex::default(), arrived: Notify::new() }
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `batch`, letting the oldest events give way past the limits (counted as dropped
    /// when this replica ingests and had not handed them on).
    pub(crate) fn push(&self, batch: Vec<Entry>, counters: &Counters) {
        let now = Instant::now();
        let mut buffer = self.buffer();
        buffer.arrived.extend(std::iter::repeat_n(now, batch.len()));
        buffer.entries.extend(batch);
        let mut dropped = 0;
        while buffer.entries.len() > self.limits.max_events
            || buffer.arrived.front().is_some_and(|at| now - *at > self.limits.max_age)
        {
            dropped += u64::from(buffer.pop_front());
        }
        counters.standby_buffered.store(buffer.entries.len() as u64, Ordering::Relaxed);
        drop(buffer);
        if dropped > 0 && counters.standby_dropped.fetch_add(dropped, Ordering::Relaxed) == 0 {
            tracing::warn!(
                max_events = self.limits.max_events,
                max_age = ?self.limits.max_age,
                "the ingester's standby window is full while the log cannot take its events: the oldest are dropped (scores_standby_dropped_events_total)"
            );
        }
        self.arrived.notify_one();
    }

    /// Starts handing on what follows `run`, the stream's last events, in the buffer; when
    /// they cannot be found there once, only what arrives from now on. Returns the alignment
    /// and how many buffered events will not be handed on: those up to the stream's end
    /// (already stored) or, when refused, all of them.
    pub(crate) fn take_over(&self, run: &[Entry]) -> (Alignment, usize) {
        let mut buffer = self.buffer();
        let alignment = align(run, buffer.entries.make_contiguous());
        let next = match alignment {
            Alignment::From(index) => index,
            Alignment::Refused(_) => buffer.entries.len(),
        };
        buffer.next = Some(next);
        (alignment, next)
    }

    /// Stops handing on: another replica ingests, or will.
    pub(crate) fn step_down(&self) {
        self.buffer().next = None;
    }

    /// Forgets everything buffered: the connection starts again elsewhere in the upstream.
    pub(crate) fn clear(&self, counters: &Counters) {
        let mut buffer = self.buffer();
        buffer.entries.clear();
        buffer.arrived.clear();
        buffer.next = buffer.next.map(|_| 0);
        counters.standby_buffered.store(0, Ordering::Relaxed);
    }

    /// While ingesting, the events not handed on yet, oldest first; they stay buffered.
    pub(crate) fn hand_over(&self) -> Vec<Entry> {
        let mut buffer = self.buffer();
        let (len, Some(next)) = (buffer.entries.len(), buffer.next) else { return Vec::new() };
        buffer.next = Some(len);
        buffer.entries.range(next..).cloned().collect()
    }

    /// Completes once events arrive (at once, if some arrived since the last wait).
    pub(crate) async fn arrival(&self) {
        self.arrived.notified().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use scores_core::ScoreEvent;

    use super::*;
    use crate::align::Refusal;

    fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
        range
            .map(|n| Entry {
                event: ScoreEvent::new("a", n, 0.5).unwrap(),
                upstream_id: Arc::from(""),
            })
            .collect()
    }

    #[test]
    fn the_oldest_events_give_way_and_a_take_over_hands_on_what_follows_the_stream() {
        let counters = Counters::default();
        let standby = Standby::new(StandbyLimits { max_events: 10, ..StandbyLimits::default() });
        standby.push(entries(0..8), &counters);
        standby.push(entries(8..14), &counters);
        assert_eq!(counters.standby_dropped.load(Ordering::Relaxed), 0, "following: not lost");
        assert_eq!(counters.standby_buffered.load(Ordering::Relaxed), 10);
        // The stream ends at exam 9: 10..14 follow.
        let run = entries(7..10);
        assert_eq!(standby.take_over(&run), (Alignment::From(6), 6));
        assert_eq!(standby.hand_over(), entries(10..14));
        assert!(standby.hand_over().is_empty());
        standby.push(entries(14..16), &counters);
        assert_eq!(standby.hand_over(), entries(14..16));
        // While ingesting, an event that gives way before it was handed on is lost.
        standby.push(entries(16..28), &counters);
        assert_eq!(counters.standby_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(standby.hand_over(), entries(18..28));
        // A term that ended before its events were stored: the next aligns again on them.
        standby.step_down();
        assert_eq!(standby.take_over(&entries(20..23)), (Alignment::From(5), 5));
        assert_eq!(standby.hand_over(), entries(23..28));
        // The stream ends before what is buffered: nothing buffered is handed on.
        standby.step_down();
        let refused = standby.take_over(&entries(5..8));
        assert_eq!(refused, (Alignment::Refused(Refusal::NotFound), 10));
        assert!(standby.hand_over().is_empty());
        standby.push(entries(28..29), &counters);
        assert_eq!(standby.hand_over(), entries(28..29));
    }

    #[test]
    fn events_older_than_the_age_limit_give_way() {
        let counters = Counters::default();
        let standby = Standby::new(StandbyLimits { max_events: 100, max_age: Duration::ZERO });
        standby.push(entries(0..5), &counters);
        std::thread::sleep(Duration::from_millis(5));
        standby.push(entries(5..7), &counters);
        assert_eq!(standby.take_over(&[]), (Alignment::From(0), 0));
        assert_eq!(standby.hand_over(), entries(5..7));
        // Following, events that give way are not lost: they are another replica's to store.
        assert_eq!(counters.standby_dropped.load(Ordering::Relaxed), 0);
    }
}
