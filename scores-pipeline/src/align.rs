//! Takeover by alignment: where the stream's end falls in what a standby replica heard from the
//! upstream, so that a new ingester publishes, in order, exactly the events that follow it.
//!
//! A standby keeps its own connection to the upstream while another replica ingests, and
//! buffers what arrives. When it takes the lease, the stream's last events (the *run*) are
//! looked for in its buffer. With upstream ids the last id says where; without, the run must
//! appear whole, as consecutive equal events, in exactly one place. When it appears nowhere
//! (the buffer does not reach back to the stream's end, or this connection got other events)
//! or in more than one place (the upstream repeated itself), no buffered event is published:
//! publishing from a wrong place could put an older score after a newer one, or repeat events.

use crate::log::Entry;

/// How many of the stream's last events are matched, at most, when the upstream sends no ids.
pub(crate) const ALIGN_RUN: usize = 16;

/// Where a standby's buffer continues the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alignment {
    /// The buffer's events from this index on follow the stream's end.
    From(usize),
    /// None of the buffer can be published safely.
    Refused(Refusal),
}

/// Why a buffer was not aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The stream's last events are not in the buffer: it starts after them, or holds others.
    NotFound,
    /// They are in the buffer in more than one place.
    Ambiguous,
}

impl Refusal {
    /// A metrics label: `not_found` or `ambiguous`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::Ambiguous => "ambiguous",
        }
    }
}

/// Aligns `buffer` (oldest first) after `run`, the stream's last events from the upstream
/// (oldest first; at most [`ALIGN_RUN`] are used). An empty run (nothing stored yet) aligns
/// the whole buffer.
pub(crate) fn align(run: &[Entry], buffer: &[Entry]) -> Alignment {
    let Some(last) = run.last() else { return Alignment::From(0) };
    let run = &run[run.len().saturating_sub(ALIGN_RUN)..];
    let ends_here = |end: usize| {
        if last.upstream_id.is_empty() {
            end + 1 >= run.len() && buffer[end + 1 - run.len()..=end] == *run
        } else {
            // Ids name events: the last one stored says where, whatever its content.
            buffer[end].upstream_id == last.upstream_id
        }
    };
    let mut found = (0..buffer.len()).filter(|&end| ends_here(end));
    match (found.next(), found.next()) {
        (Some(end), None) => Alignment::From(end + 1),
        (None, _) => Alignment::Refused(Refusal::NotFound),
        (Some(_), Some(_)) => Alignment::Refused(Refusal::Ambiguous),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use scores_core::ScoreEvent;

    use super::*;

    /// An event without an id: student `s`, exam 1, score `score`.
    fn event(s: &str, score: f64) -> Entry {
        Entry { event: ScoreEvent::new(s, 1, score).unwrap(), upstream_id: Arc::from("") }
    }

    fn with_id(id: &str, s: &str, score: f64) -> Entry {
        Entry { upstream_id: Arc::from(id), ..event(s, score) }
    }

    fn check(run: &[Entry], buffer: &[Entry], expected: Alignment) {
        assert_eq!(align(run, buffer), expected, "run {run:?}\nbuffer {buffer:?}");
    }

    #[test]
    fn the_buffer_continues_after_the_streams_last_events() {
        let (a, b, c, d, e) =
            (event("a", 0.1), event("b", 0.2), event("c", 0.3), event("d", 0.4), event("e", 0.5));
        let buffer = [a.clone(), b.clone(), c.clone(), d.clone(), e.clone()];
        check(&[a.clone(), b.clone(), c.clone()], &buffer, Alignment::From(3));
        check(&[b.clone(), c.clone(), d.clone(), e.clone()], &buffer, Alignment::From(5));
        // Nothing stored yet: all of it.
        check(&[], &buffer, Alignment::From(0));
        // Only the run's last ALIGN_RUN events count.
        let mut long_run = vec![event("x", 0.9); 40];
        long_run.extend([a.clone(), b.clone()]);
        check(&long_run, &buffer, Alignment::Refused(Refusal::NotFound));
    }

    #[test]
    fn a_buffer_that_starts_after_the_streams_end_or_holds_other_events_is_refused() {
        let (a, b, c, d) = (event("a", 0.1), event("b", 0.2), event("c", 0.3), event("d", 0.4));
        // It starts with the run's last event but not the run: not enough to know.
        check(
            &[a.clone(), b.clone()],
            &[b.clone(), c.clone()],
            Alignment::Refused(Refusal::NotFound),
        );
        check(
            &[a.clone(), b.clone()],
            &[c.clone(), d.clone()],
            Alignment::Refused(Refusal::NotFound),
        );
        // Another connection's events: the same students, other scores.
        let other = [event("a", 0.15), event("b", 0.25), event("c", 0.3)];
        check(&[a, b], &other, Alignment::Refused(Refusal::NotFound));
        check(&[c], &[], Alignment::Refused(Refusal::NotFound));
    }

    #[test]
    fn a_run_of_repeated_identical_events_is_ambiguous() {
        let (a, b) = (event("a", 0.5), event("b", 0.5));
        let buffer = [a.clone(), a.clone(), a.clone(), b.clone()];
        check(&[a.clone(), a.clone()], &buffer, Alignment::Refused(Refusal::Ambiguous));
        // A longer run tells them apart.
        let (x, y) = (event("x", 0.1), event("y", 0.2));
        let buffer = [x.clone(), a.clone(), b.clone(), y.clone(), a.clone(), b.clone(), x.clone()];
        check(&[a.clone(), b.clone()], &buffer, Alignment::Refused(Refusal::Ambiguous));
        check(&[y, a, b], &buffer, Alignment::From(6));
    }

    #[test]
    fn a_regrade_back_to_an_earlier_score_aligns_on_the_whole_run() {
        // a went 0.5 → 0.7 → 0.5: the last 0.5 is where the stream ends, not the first.
        let (a5, a7, b) = (event("a", 0.5), event("a", 0.7), event("b", 0.2));
        let buffer = [a5.clone(), b.clone(), a7.clone(), a5.clone(), event("c", 0.1)];
        check(&[b.clone(), a7.clone(), a5.clone()], &buffer, Alignment::From(4));
        check(std::slice::from_ref(&a5), &buffer, Alignment::Refused(Refusal::Ambiguous));
        check(&[a7, a5, event("c", 0.1)], &buffer, Alignment::From(5));
    }

    #[test]
    fn with_ids_the_last_stored_id_says_where() {
        let buffer = [with_id("7", "a", 0.1), with_id("8", "b", 0.2), with_id("9", "c", 0.3)];
        check(&[with_id("8", "b", 0.2)], &buffer, Alignment::From(2));
        check(&[with_id("6", "x", 0.9), with_id("7", "a", 0.1)], &buffer, Alignment::From(1));
        check(&[with_id("5", "x", 0.9)], &buffer, Alignment::Refused(Refusal::NotFound));
        let repeated = [with_id("7", "a", 0.1), with_id("7", "a", 0.1)];
        check(&[with_id("7", "a", 0.1)], &repeated, Alignment::Refused(Refusal::Ambiguous));
    }
}
