//! `GET /metrics`: the frontend's counters, the pipeline's and the process's, in the Prometheus
//! text format, through `prometheus-client`.
//!
//! The frontend's counters are `prometheus-client` metrics, updated where things happen. The
//! pipeline keeps its own atomics ([`Counters`](scores_pipeline::Counters)), which
//! [`PipelineCollector`] reads at each scrape, as it reads the published snapshot's sizes; the
//! process's figures come from `/proc` at each scrape ([`process`]).

mod process;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use scores_pipeline::{Pipeline, Role};

/// The `Content-Type` of `GET /metrics`.
pub(crate) use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the request latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

/// The frontend's counters; `/metrics` reports them beside the pipeline's and the process's.
/// Each is a handle: clones count into the same value.
#[derive(Debug)]
pub struct Metrics {
    /// Query answers sent as already rendered: on the same snapshot, or a listing unchanged.
    pub bodies_reused: Counter,
    /// Query answers rendered from the snapshot.
    pub bodies_rendered: Counter,
    /// Query answers gzip-encoded (each body at most once per snapshot).
    pub bodies_compressed: Counter,
    /// HTTP connections open now, within the cap.
    pub connections_open: Gauge,
    /// Connections accepted past the cap: answered `/healthz` and `/readyz` only, then closed.
    pub connections_shed: Counter,
    /// `GET /scores` streams open now.
    pub streams_open: Gauge,
    /// `GET /scores` requests refused because as many streams as allowed were open.
    pub streams_refused: Counter,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            bodies_reused: Counter::default(),
            bodies_rendered: Counter::default(),
            bodies_compressed: Counter::default(),
            connections_open: Gauge::default(),
            connections_shed: Counter::default(),
            streams_open: Gauge::default(),
            streams_refused: Counter::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
        }
    }
}

impl Metrics {
    /// Counts a request to `route` answered with `status` in `elapsed`.
    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        let route = route.to_owned();
        self.latency
            .get_or_create(&RouteLabels { route: route.clone() })
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { route, status }).inc();
    }

    /// What `GET /metrics` reports: these counters, `pipeline`'s, and the process's.
    pub fn registry(&self, pipeline: Pipeline) -> Registry {
        let mut registry = Registry::default();
        let counters = [
            (
                "scores_http_bodies_reused",
                "Query answers sent as already rendered (same snapshot, or a listing unchanged)",
                &self.bodies_reused,
            ),
            (
                "scores_http_bodies_rendered",
                "Query answers rendered from the snapshot",
                &self.bodies_rendered,
            ),
            (
                "scores_http_bodies_compressed",
                "Query answers gzip-encoded (each body at most once per snapshot)",
                &self.bodies_compressed,
            ),
            (
                "scores_http_connections_shed",
                "Connections past the cap: answered /healthz and /readyz only, then closed",
                &self.connections_shed,
            ),
            (
                "scores_streams_refused",
                "GET /scores requests refused: as many streams as allowed were open",
                &self.streams_refused,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "scores_http_connections_open",
            "HTTP connections open, within the cap",
            self.connections_open.clone(),
        );
        registry.register(
            "scores_streams_open",
            "GET /scores streams open",
            self.streams_open.clone(),
        );
        registry.register(
            "scores_http_requests",
            "HTTP requests, by route and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "scores_http_request_duration",
            "HTTP request latency, by route",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register_collector(Box::new(PipelineCollector(pipeline)));
        process::register(&mut registry);
        registry
    }
}

/// Renders `registry` in the Prometheus text format.
pub(crate) fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a `String` fails only if a collector does; ours do not.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// The pipeline's counters, its role and lag, and the published snapshot's sequence number and
/// sizes, read at each scrape.
#[derive(Debug)]
struct PipelineCollector(Pipeline);

impl Collector for PipelineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let snapshot = self.0.snapshot();
        let c = self.0.counters();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (received, accepted) = (load(&c.events_received), load(&c.events_accepted));
        let mut counters = vec![
            ("scores_events_accepted", "Events made durable and folded", accepted),
            ("scores_events_ignored", "Events of types other than score", load(&c.events_ignored)),
            (
                "scores_upstream_reconnects",
                "Upstream connection attempts after the first, whether or not they connected",
                load(&c.reconnects),
            ),
            ("scores_journal_appends", "Journal batches appended", load(&c.log_appends)),
            ("scores_journal_fsyncs", "Journal fdatasync calls", load(&c.log_syncs)),
            (
                "scores_journal_errors",
                "Journal appends that failed and were retried",
                load(&c.log_errors),
            ),
            ("scores_checkpoints", "Projection checkpoints written", load(&c.checkpoints)),
            (
                "scores_log_damage_found",
                "Places the log was found damaged (a segment failing its checks), when verified after start or when read",
                load(&c.log_damage_found),
            ),
            (
                "scores_journal_verified_bytes",
                "Bytes of sealed journal segments verified since start",
                load(&c.log_bytes_verified),
            ),
            (
                "scores_snapshots_published",
                "Snapshots published: each makes the events appended before it visible",
                load(&c.snapshots_published),
            ),
        ];
        let mut gauges = vec![
            (
                "scores_upstream_connected",
                "1 while the upstream connection is up",
                u64::from(c.upstream_connected.load(Ordering::Relaxed)),
            ),
            ("scores_journal_last_seq", "Last durable sequence number", load(&c.log_last_seq)),
            (
                "scores_journal_lag_events",
                "Events received but not yet durable",
                received.saturating_sub(accepted),
            ),
            ("scores_snapshot_seq", "Sequence number of the published snapshot", snapshot.seq()),
            (
                "scores_students",
                "Students with results in the published snapshot",
                snapshot.n_students() as u64,
            ),
            (
                "scores_exams",
                "Exams with results in the published snapshot",
                snapshot.n_exams() as u64,
            ),
            (
                "scores_results",
                "(student, exam) results in the published snapshot",
                snapshot.n_results(),
            ),
        ];
        // A shared log's: who ingests, and how far this replica is behind.
        if let (Some(role), Some(lag)) = (self.0.role(), self.0.lag()) {
            counters.extend([
                (
                    "scores_lease_changes",
                    "Times this replica took or lost the ingester's lease",
                    load(&c.lease_changes),
                ),
                (
                    "scores_fenced_publishes",
                    "Publishes refused because another ingester had taken over",
                    load(&c.fenced_publishes),
                ),
                (
                    "scores_standby_dropped_events",
                    "Events no log had that gave way in this replica's standby buffer, past its size limit",
                    load(&c.standby_dropped),
                ),
                (
                    "scores_takeover_skipped_events",
                    "Buffered events not published at a takeover whose alignment was refused",
                    load(&c.takeover_skipped),
                ),
            ]);
            gauges.extend([
                (
                    "scores_ingester",
                    "1 while this replica holds the ingester's lease, 0 while it follows",
                    u64::from(role == Role::Ingester),
                ),
                (
                    "scores_log_lag_events",
                    "Events the stream holds that the published snapshot does not",
                    lag,
                ),
                (
                    "scores_standby_buffered_events",
                    "Events this replica's standby buffer holds from its own upstream connection",
                    load(&c.standby_buffered),
                ),
                (
                    "scores_standby_buffered_bytes",
                    "Bytes those events take in the standby spool (bounded by --standby-size)",
                    load(&c.standby_bytes),
                ),
            ]);
        }
        for (name, help, value) in counters {
            counter(&mut encoder, name, help, value)?;
        }
        if self.0.role().is_some() {
            let mut family = encoder.encode_descriptor(
                "scores_takeovers",
                "Takeovers of the ingester's lease, by how the standby buffer aligned after the stream's end.",
                None,
                MetricType::Counter,
            )?;
            for (outcome, n) in [
                ("aligned", &c.takeovers_aligned),
                ("not_found", &c.takeovers_not_found),
                ("ambiguous", &c.takeovers_ambiguous),
            ] {
                ConstCounter::new(load(n))
                    .encode(family.encode_family(&[("outcome", outcome)])?)?;
            }
        }
        for (name, help, value) in gauges {
            gauge(&mut encoder, name, help, value)?;
        }
        let mut family = encoder.encode_descriptor(
            "scores_events_rejected",
            "Events rejected, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in c.rejected() {
            ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}

/// Encodes one counter read at scrape time.
pub(crate) fn counter<N>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> fmt::Result
where
    ConstCounter<N>: EncodeMetric,
{
    described(encoder, name, help, ConstCounter::new(value))
}

/// Encodes one gauge read at scrape time.
pub(crate) fn gauge<N>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    described(encoder, name, help, ConstGauge::new(value))
}

/// Encodes `metric` under `name`; its help ends with a full stop, as [`Registry::register`]
/// ends those it is given.
fn described(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> fmt::Result {
    let help = format!("{help}.");
    metric.encode(encoder.encode_descriptor(name, &help, None, metric.metric_type())?)
}
