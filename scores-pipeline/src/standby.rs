//! [`Standby`]: what a replica hears from the upstream on its own connection, kept while it
//! does not ingest so that it can take over where the stream ends, and handed to the log while
//! it does.
//!
//! Every replica started with an upstream keeps one connection to it for its whole life
//! (`pull_feed` into [`Standby::push`]). While another replica holds the lease the buffer is
//! bounded, by count and by age, and its oldest events give way. On taking the lease,
//! [`Standby::take_over`] aligns the buffer after the stream's last events (see `align`) and
//! keeps only what follows them; from then on the ingester drains the buffer into the log.

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
}

impl Buffer {
    fn pop_front(&mut self) {
        self.entries.pop_front();
        self.arrived.pop_front();
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.arrived.clear();
    }
}

impl Standby {
    pub(crate) fn new(limits: StandbyLimits) -> Standby {
        Standby { limits, buffer: Mutex::default(), arrived: Notify::new() }
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `batch`, letting the oldest events give way past the limits (counted as dropped).
    pub(crate) fn push(&self, batch: Vec<Entry>, counters: &Counters) {
        let now = Instant::now();
        let mut buffer = self.buffer();
        buffer.arrived.extend(std::iter::repeat_n(now, batch.len()));
        buffer.entries.extend(batch);
        let mut dropped = 0;
        while buffer.entries.len() > self.limits.max_events
            || buffer.arrived.front().is_some_and(|at| now - *at > self.limits.max_age)
        {
            buffer.pop_front();
            dropped += 1;
        }
        counters.standby_buffered.store(buffer.entries.len() as u64, Ordering::Relaxed);
        drop(buffer);
        counters.standby_dropped.fetch_add(dropped, Ordering::Relaxed);
        self.arrived.notify_one();
    }

    /// Aligns the buffer after `run`, the stream's last events, and keeps only what follows
    /// them; when they cannot be found once, keeps nothing. Returns the alignment and how many
    /// events were set aside: those before the stream's end (already stored) or, when refused,
    /// all of them.
    pub(crate) fn take_over(&self, run: &[Entry], counters: &Counters) -> (Alignment, usize) {
        let mut buffer = self.buffer();
        let alignment = align(run, buffer.entries.make_contiguous());
        let set_aside = match alignment {
            Alignment::From(index) => index,
            Alignment::Refused(_) => buffer.entries.len(),
        };
        for _ in 0..set_aside {
            buffer.pop_front();
        }
        counters.standby_buffered.store(buffer.entries.len() as u64, Ordering::Relaxed);
        (alignment, set_aside)
    }

    /// Forgets everything buffered: the connection is to start again elsewhere.
    pub(crate) fn clear(&self, counters: &Counters) {
        self.buffer().clear();
        counters.standby_buffered.store(0, Ordering::Relaxed);
    }

    /// Everything buffered, oldest first, leaving the buffer empty.
    pub(crate) fn drain(&self, counters: &Counters) -> Vec<Entry> {
        let mut buffer = self.buffer();
        buffer.arrived.clear();
        let entries = buffer.entries.drain(..).collect();
        counters.standby_buffered.store(0, Ordering::Relaxed);
        entries
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
    fn the_oldest_events_give_way_past_the_count_and_a_take_over_keeps_what_follows() {
        let counters = Counters::default();
        let standby = Standby::new(StandbyLimits { max_events: 10, ..StandbyLimits::default() });
        standby.push(entries(0..8), &counters);
        standby.push(entries(8..14), &counters);
        assert_eq!(counters.standby_dropped.load(Ordering::Relaxed), 4);
        assert_eq!(counters.standby_buffered.load(Ordering::Relaxed), 10);
        // The stream ends at exam 9: 10..14 follow.
        let run = entries(7..10);
        assert_eq!(standby.take_over(&run, &counters), (Alignment::From(6), 6));
        assert_eq!(standby.drain(&counters), entries(10..14));
        // The stream ends before what is buffered: nothing is kept.
        standby.push(entries(20..25), &counters);
        let refused = standby.take_over(&entries(15..18), &counters);
        assert_eq!(refused, (Alignment::Refused(Refusal::NotFound), 5));
        assert!(standby.drain(&counters).is_empty());
    }

    #[test]
    fn events_older_than_the_age_limit_give_way() {
        let counters = Counters::default();
        let standby = Standby::new(StandbyLimits { max_events: 100, max_age: Duration::ZERO });
        standby.push(entries(0..5), &counters);
        std::thread::sleep(Duration::from_millis(5));
        standby.push(entries(5..7), &counters);
        assert_eq!(standby.drain(&counters), entries(5..7));
        assert_eq!(counters.standby_dropped.load(Ordering::Relaxed), 5);
    }
}
