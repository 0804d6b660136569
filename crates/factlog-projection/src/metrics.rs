//! Prometheus metrics of the projections, read from their statuses at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::manager::Projections;
use crate::status::State;

/// Register with `registry.register_collector(Box::new(ProjectionsCollector::new(p)))`: gauges
/// and counters per projection, labelled `projection`.
#[derive(Debug)]
pub struct ProjectionsCollector {
    projections: Projections,
}

impl ProjectionsCollector {
    pub fn new(projections: Projections) -> Self {
        Self { projections }
    }
}

/// Reads one gauge's value from a status.
type Value = fn(&crate::Status) -> f64;
/// Reads one counter's value from a status.
type Count = fn(&crate::Status) -> u64;

const STATES: [(State, &str); 5] = [
    (State::Starting, "starting"),
    (State::Running, "running"),
    (State::Paused, "paused"),
    (State::Rebuilding, "rebuilding"),
    (State::Stopped, "stopped"),
];

impl Collector for ProjectionsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let statuses = self.projections.statuses();
        if statuses.is_empty() {
            return Ok(());
        }
        let gauges: [(&str, &str, Value); 6] = [
            (
                "projection_position",
                "The last position a projection has processed",
                |s| s.position.raw() as f64,
            ),
            (
                "projection_lag_events",
                "Events in the log a projection has not processed yet",
                |s| s.lag_events as f64,
            ),
            (
                "projection_lag_seconds",
                "Age of the oldest event a projection has not processed yet",
                |s| s.lag_seconds,
            ),
            (
                "projection_events_per_second",
                "Events a projection processes per second",
                |s| s.events_per_second,
            ),
            (
                "projection_dead_letters_parked",
                "Dead letters waiting to be retried or skipped",
                |s| s.dead_letters_parked as f64,
            ),
            (
                "projection_generation",
                "The live generation of a projection's read model",
                |s| s.generation as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for status in &statuses {
                let labels = [("projection", status.name.as_str())];
                let metric = ConstGauge::new(value(status));
                metric.encode(family.encode_family(&labels)?)?;
            }
        }
        let counters: [(&str, &str, Count); 2] = [
            (
                "projection_events",
                "Events a projection has read since it started",
                |s| s.events_total,
            ),
            (
                "projection_applied",
                "Events a projection has applied since it started",
                |s| s.applied_total,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for status in &statuses {
                let labels = [("projection", status.name.as_str())];
                ConstCounter::new(value(status)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "projection_state",
            "1 for the state a projection is in, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for status in &statuses {
            for (state, label) in STATES {
                let labels = [("projection", status.name.as_str()), ("state", label)];
                ConstGauge::new(i64::from(status.state == state))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
