//! The service's counters, and their Prometheus text exposition for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scores_pipeline::{Pipeline, Role};

/// Upper bounds of the request latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

/// The frontend's counters; `/metrics` reports them beside the pipeline's
/// [`Counters`](scores_pipeline::Counters). Lock-free, except the per-route map, which takes a
/// short lock.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Query answers sent as already rendered: on the same snapshot, or a listing unchanged.
    pub bodies_reused: AtomicU64,
    /// Query answers rendered from the snapshot.
    pub bodies_rendered: AtomicU64,
    /// Query answers gzip-encoded (each body at most once per snapshot).
    pub bodies_compressed: AtomicU64,
    /// HTTP connections open now, within the cap.
    pub connections_open: AtomicU64,
    /// Connections accepted past the cap: answered `/healthz` and `/readyz` only, then closed.
    pub connections_shed: AtomicU64,
    /// `GET /scores` streams open now.
    pub streams_open: AtomicU64,
    /// `GET /scores` requests refused because as many streams as allowed were open.
    pub streams_refused: AtomicU64,
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

/// Requests to one route: counts by status and a latency histogram.
#[derive(Debug, Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts a request to `route` answered with `status` in `elapsed`. One short lock; no
    /// allocation once the route has been seen.
    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        let Ok(mut routes) = self.routes.lock() else { return };
        let stats = match routes.get_mut(route) {
            Some(stats) => stats,
            None => routes.entry(route.to_owned()).or_default(),
        };
        *stats.by_status.entry(status).or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        stats.count += 1;
        stats.sum += seconds;
        for (bucket, bound) in stats.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// The Prometheus text exposition of these counters and the pipeline's, with the published
    /// snapshot's sequence number and sizes.
    pub fn render(&self, pipeline: &Pipeline) -> String {
        let snapshot = pipeline.snapshot();
        let (role, lag) = (pipeline.role(), pipeline.lag());
        let pipeline = pipeline.counters();
        let mut out = String::new();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let received = load(&pipeline.events_received);
        let accepted = load(&pipeline.events_accepted);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric(
            "scores_events_accepted_total",
            "counter",
            "Events made durable and folded.",
            accepted,
        );
        metric(
            "scores_events_ignored_total",
            "counter",
            "Events of types other than score.",
            load(&pipeline.events_ignored),
        );
        metric(
            "scores_upstream_reconnects_total",
            "counter",
            "Upstream connection attempts after the first, whether or not they connected.",
            load(&pipeline.reconnects),
        );
        let connected = u64::from(pipeline.upstream_connected.load(Ordering::Relaxed));
        metric(
            "scores_upstream_connected",
            "gauge",
            "1 while the upstream connection is up.",
            connected,
        );
        metric(
            "scores_journal_appends_total",
            "counter",
            "Journal batches appended.",
            load(&pipeline.log_appends),
        );
        metric(
            "scores_journal_fsyncs_total",
            "counter",
            "Journal fdatasync calls.",
            load(&pipeline.log_syncs),
        );
        metric(
            "scores_journal_errors_total",
            "counter",
            "Journal appends that failed and were retried.",
            load(&pipeline.log_errors),
        );
        metric(
            "scores_journal_last_seq",
            "gauge",
            "Last durable sequence number.",
            load(&pipeline.log_last_seq),
        );
        metric(
            "scores_journal_lag_events",
            "gauge",
            "Events received but not yet durable.",
            received.saturating_sub(accepted),
        );
        metric(
            "scores_http_bodies_reused_total",
            "counter",
            "Query answers sent as already rendered (same snapshot, or a listing unchanged).",
            load(&self.bodies_reused),
        );
        metric(
            "scores_http_bodies_rendered_total",
            "counter",
            "Query answers rendered from the snapshot.",
            load(&self.bodies_rendered),
        );
        metric(
            "scores_http_bodies_compressed_total",
            "counter",
            "Query answers gzip-encoded (each body at most once per snapshot).",
            load(&self.bodies_compressed),
        );
        metric(
            "scores_http_connections_open",
            "gauge",
            "HTTP connections open, within the cap.",
            load(&self.connections_open),
        );
        metric(
            "scores_http_connections_shed_total",
            "counter",
            "Connections past the cap: answered /healthz and /readyz only, then closed.",
            load(&self.connections_shed),
        );
        metric(
            "scores_streams_open",
            "gauge",
            "GET /scores streams open.",
            load(&self.streams_open),
        );
        metric(
            "scores_streams_refused_total",
            "counter",
            "GET /scores requests refused: as many streams as allowed were open.",
            load(&self.streams_refused),
        );
        metric(
            "scores_checkpoints_total",
            "counter",
            "Projection checkpoints written.",
            load(&pipeline.checkpoints),
        );
        if let (Some(role), Some(lag)) = (role, lag) {
            metric(
                "scores_ingester",
                "gauge",
                "1 while this replica holds the ingester's lease, 0 while it follows.",
                u64::from(role == Role::Ingester),
            );
            metric(
                "scores_lease_changes_total",
                "counter",
                "Times this replica took or lost the ingester's lease.",
                load(&pipeline.lease_changes),
            );
            metric(
                "scores_fenced_publishes_total",
                "counter",
                "Publishes refused because another ingester had taken over.",
                load(&pipeline.fenced_publishes),
            );
            metric(
                "scores_log_lag_events",
                "gauge",
                "Events the stream holds that the published snapshot does not.",
                lag,
            );
        }
        metric(
            "scores_snapshots_published_total",
            "counter",
            "Snapshots published: each makes the events appended before it visible.",
            load(&pipeline.snapshots_published),
        );
        metric(
            "scores_snapshot_seq",
            "gauge",
            "Sequence number of the published snapshot.",
            snapshot.seq(),
        );
        metric(
            "scores_students",
            "gauge",
            "Students with results in the published snapshot.",
            snapshot.n_students() as u64,
        );
        metric(
            "scores_exams",
            "gauge",
            "Exams with results in the published snapshot.",
            snapshot.n_exams() as u64,
        );
        metric(
            "scores_results",
            "gauge",
            "(student, exam) results in the published snapshot.",
            snapshot.n_results(),
        );

        let _ = writeln!(
            out,
            "# HELP scores_events_rejected_total Events rejected, by reason.\n# TYPE scores_events_rejected_total counter"
        );
        for (reason, n) in pipeline.rejected() {
            let _ = writeln!(out, "scores_events_rejected_total{{reason=\"{reason}\"}} {n}");
        }
        let name = "scores_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP requests, by route and status.\n# TYPE {name} counter"
        );
        let Ok(routes) = self.routes.lock() else { return out };
        for (route, stats) in routes.iter() {
            for (status, n) in &stats.by_status {
                let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let name = "scores_http_request_duration_seconds";
        let _ =
            writeln!(out, "# HELP {name} HTTP request latency, by route.\n# TYPE {name} histogram");
        for (route, stats) in routes.iter() {
            for (bound, n) in LATENCY_BUCKETS.iter().zip(stats.buckets) {
                let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let (count, sum) = (stats.count, stats.sum);
            let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {count}");
        }
        drop(routes);
        out
    }
}
