//! Prometheus metrics at `GET /metrics` (OpenMetrics text).
//!
//! What the server measures itself (requests, appends and their latency, errors by kind,
//! subscribers and their lag) lives in `prometheus-client` metrics; what the embedded engine
//! counts (events and bytes written, fsyncs and their latency) is read from its `Stats` at each
//! scrape by [`EngineCollector`], so the two can never disagree. The projections' gauges and
//! counters (`factlog_projection_*`, labelled `projection`) are read from their statuses at each
//! scrape too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use factlog_api::ProblemKind;
use factlog_log::{EmbeddedStore, FSYNC_BUCKETS_SECONDS};
use factlog_projection::{Projections, ProjectionsCollector};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The latency buckets of the server's histograms, in seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriberLabel {
    subscriber: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    appends: Counter,
    appended_events: Counter,
    append_seconds: Histogram,
    errors: Family<KindLabel, Counter>,
    subscribers: Gauge,
    subscriber_lag: Family<SubscriberLabel, Gauge>,
    lag_trackers: Mutex<BTreeMap<u64, Arc<AtomicU64>>>,
    next_subscriber: AtomicU64,
    /// The store's end position as of the last scrape, for the lag gauges.
    end_position: AtomicU64,
}

impl Metrics {
    pub fn new(embedded: Option<Arc<EmbeddedStore>>, projections: Option<Projections>) -> Self {
        let mut registry = Registry::with_prefix("factlog");
        let appends = Counter::default();
        registry.register(
            "appends",
            "Successful appends (HTTP requests that stored or idempotently re-acknowledged events)",
            appends.clone(),
        );
        let appended_events = Counter::default();
        registry.register(
            "appended_events",
            "Events acknowledged to HTTP clients",
            appended_events.clone(),
        );
        let append_seconds = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "append_duration",
            "Latency of successful appends, from request to durable acknowledgement",
            Unit::Seconds,
            append_seconds.clone(),
        );
        let errors = Family::<KindLabel, Counter>::default();
        registry.register("errors", "Error responses by problem kind", errors.clone());
        let subscribers = Gauge::default();
        registry.register(
            "subscribers",
            "Connected Server-Sent Events subscribers",
            subscribers.clone(),
        );
        let subscriber_lag = Family::<SubscriberLabel, Gauge>::default();
        registry.register(
            "subscriber_lag_positions",
            "How far each subscriber is behind the end of the log, in positions (events on the \
             embedded store), as of the scrape",
            subscriber_lag.clone(),
        );
        if let Some(store) = embedded {
            registry.register_collector(Box::new(EngineCollector { store }));
        }
        if let Some(projections) = projections {
            registry.register_collector(Box::new(ProjectionsCollector::new(projections)));
        }
        Self {
            registry,
            appends,
            appended_events,
            append_seconds,
            errors,
            subscribers,
            subscriber_lag,
            lag_trackers: Mutex::new(BTreeMap::new()),
            next_subscriber: AtomicU64::new(1),
            end_position: AtomicU64::new(0),
        }
    }

    pub fn append_succeeded(&self, events: usize, took: Duration) {
        self.appends.inc();
        self.appended_events.inc_by(events as u64);
        self.append_seconds.observe(took.as_secs_f64());
    }

    pub fn error(&self, kind: ProblemKind) {
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.slug().to_owned(),
            })
            .inc();
    }

    /// Registers a subscriber; the guard unregisters it when the stream ends or is dropped.
    pub fn subscriber(self: &Arc<Self>) -> SubscriberGuard {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let delivered = Arc::new(AtomicU64::new(0));
        self.lag_trackers.lock().insert(id, delivered.clone());
        self.subscribers.inc();
        SubscriberGuard {
            metrics: self.clone(),
            id,
            delivered,
        }
    }

    /// The metrics as OpenMetrics text; `end_position` is the store's current end.
    pub fn encode(&self, end_position: u64) -> String {
        self.end_position.store(end_position, Ordering::Relaxed);
        for (id, delivered) in self.lag_trackers.lock().iter() {
            let lag = end_position.saturating_sub(delivered.load(Ordering::Relaxed) + 1);
            self.subscriber_lag
                .get_or_create(&SubscriberLabel {
                    subscriber: id.to_string(),
                })
                .set(lag as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// A connected subscriber, for the subscriber gauges.
#[derive(Debug)]
pub struct SubscriberGuard {
    metrics: Arc<Metrics>,
    id: u64,
    delivered: Arc<AtomicU64>,
}

impl SubscriberGuard {
    /// The position of the last event sent to this subscriber.
    pub fn delivered(&self, position: u64) {
        self.delivered.store(position, Ordering::Relaxed);
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.metrics.lag_trackers.lock().remove(&self.id);
        self.metrics.subscriber_lag.remove(&SubscriberLabel {
            subscriber: self.id.to_string(),
        });
        self.metrics.subscribers.dec();
    }
}

/// The embedded engine's own counters, read at each scrape.
#[derive(Debug)]
struct EngineCollector {
    store: Arc<EmbeddedStore>,
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.store.stats();
        let mut counter = |name: &str, help: &str, value: u64| {
            let metric = ConstCounter::new(value);
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)
        };
        counter(
            "events_written",
            "Events the embedded engine has written",
            stats.events_written,
        )?;
        counter(
            "bytes_written",
            "Bytes the embedded engine has written to segment files",
            stats.bytes_written,
        )?;
        counter(
            "write_batches",
            "Group commits: one write and one fsync each",
            stats.write_batches,
        )?;
        counter(
            "wrong_expected_version",
            "Appends refused for a wrong expected version",
            stats.wrong_expected_version,
        )?;
        counter(
            "idempotent_retries",
            "Appends answered from stored event ids without writing",
            stats.idempotent_retries,
        )?;
        let mut gauge = |name: &str, help: &str, value: u64| {
            let metric = ConstGauge::new(value as i64);
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)
        };
        gauge("events", "Events in the store", stats.events)?;
        gauge("streams", "Streams in the store", stats.streams)?;
        gauge("segments", "Segment files of the log", stats.segments)?;
        gauge(
            "writer_failed",
            "1 when the writer stopped after a storage failure",
            u64::from(stats.writer_failed.is_some()),
        )?;
        let buckets: Vec<(f64, u64)> = FSYNC_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(stats.fsync_histogram.iter().copied())
            .collect();
        let mut e = encoder.encode_descriptor(
            "fsync_duration",
            "Latency of the engine's fsyncs",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let count = stats.fsync_histogram.iter().sum();
        e.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            stats.fsync_total.as_secs_f64(),
            count,
            &buckets,
            None,
        )
    }
}
