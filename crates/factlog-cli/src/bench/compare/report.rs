//! The comparison's report: one table per workload with throughput, latency percentiles and
//! the ratio of Factlog to each peer of the same durability, the disk's fsync latency, every
//! peer's settings, and the goals; as Markdown (printed, and written into
//! `docs/benchmarks.md` between two markers) and as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::Config;
use super::peers::Durability;
use super::workloads::{
    BATCH_EVENTS, CONFLICT_STREAMS, CONFLICT_WRITERS, Choice, STREAM_EVENTS, Sample,
};
use crate::bench::sys::{filesystem, millis, percentile, thousands, total_memory_bytes};

/// The lines around the generated part of `docs/benchmarks.md`.
pub const BEGIN_MARKER: &str = "<!-- factlog bench compare: begin (generated, do not edit) -->";
pub const END_MARKER: &str = "<!-- factlog bench compare: end -->";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    ReadStream,
    AggregateLoad,
    ReadAll,
    CatchUp,
    Batched(Choice),
    Concurrent(usize, Choice),
    Conflicts,
}

impl Workload {
    pub fn id(self) -> String {
        match self {
            Workload::ReadStream => "read-stream".into(),
            Workload::AggregateLoad => "aggregate-load".into(),
            Workload::ReadAll => "read-all".into(),
            Workload::CatchUp => "catch-up".into(),
            Workload::Batched(c) => format!("batched-{}", c.label().to_lowercase()),
            Workload::Concurrent(w, c) => {
                format!("concurrent-{w}-{}", c.label().to_lowercase())
            }
            Workload::Conflicts => "conflicts".into(),
        }
    }

    pub fn title(self) -> String {
        match self {
            Workload::ReadStream => format!("Read one stream ({STREAM_EVENTS} events)"),
            Workload::AggregateLoad => format!(
                "Aggregate load: read a stream of {STREAM_EVENTS} events, decode and fold them"
            ),
            Workload::ReadAll => "Read everything, in order".into(),
            Workload::CatchUp => "Catch-up subscription from the start".into(),
            Workload::Batched(c) => format!(
                "Batched appends: 1 writer x {BATCH_EVENTS} events, expected version, {} streams",
                c.label()
            ),
            Workload::Concurrent(w, c) => format!(
                "Concurrent single-event appends: {w} writer{}, durable acknowledgement each, {} \
                 streams",
                if w == 1 { "" } else { "s" },
                c.label()
            ),
            Workload::Conflicts => format!(
                "Appends with expected-version conflicts: {CONFLICT_WRITERS} writers, \
                 {CONFLICT_STREAMS} hot streams (events/s = appends won)"
            ),
        }
    }

    /// What a latency sample is, or `None` when the workload has none.
    fn latency_of(self) -> Option<&'static str> {
        match self {
            Workload::ReadStream => Some("per stream read"),
            Workload::AggregateLoad => Some("per load"),
            Workload::ReadAll | Workload::CatchUp => None,
            Workload::Batched(_) => Some("per append of 1000"),
            Workload::Concurrent(..) => Some("per append"),
            Workload::Conflicts => Some("per attempt"),
        }
    }

    pub fn writes(self) -> bool {
        matches!(
            self,
            Workload::Batched(_) | Workload::Concurrent(..) | Workload::Conflicts
        )
    }
}

/// The Factlog runs the other stores are compared with.
const REFERENCES: [&str; 3] = ["factlog", "factlog-http", "factlog-bulk"];

#[derive(Debug)]
pub struct Measurement {
    pub workload: Workload,
    pub peer: &'static str,
    pub sample: Sample,
}

#[derive(Debug)]
pub struct PeerInfo {
    pub id: &'static str,
    pub label: &'static str,
    pub durability: Durability,
    pub setting: String,
}

/// A goal of the comparison: Factlog's throughput at least `factor` times the peer's.
struct Goal {
    peer: &'static str,
    workload: Workload,
    factor: f64,
}

const GOALS: [Goal; 9] = [
    Goal {
        peer: "postgres",
        workload: Workload::Batched(Choice::Uniform),
        factor: 10.0,
    },
    Goal {
        peer: "postgres",
        workload: Workload::Concurrent(64, Choice::Uniform),
        factor: 3.0,
    },
    Goal {
        peer: "sqlite",
        workload: Workload::Batched(Choice::Uniform),
        factor: 5.0,
    },
    Goal {
        peer: "sqlite",
        workload: Workload::Concurrent(64, Choice::Uniform),
        factor: 5.0,
    },
    Goal {
        peer: "redis-always",
        workload: Workload::Batched(Choice::Uniform),
        factor: 1.0,
    },
    Goal {
        peer: "redis-always",
        workload: Workload::Concurrent(64, Choice::Uniform),
        factor: 1.0,
    },
    Goal {
        peer: "nats",
        workload: Workload::Batched(Choice::Uniform),
        factor: 1.0,
    },
    Goal {
        peer: "nats",
        workload: Workload::Concurrent(64, Choice::Uniform),
        factor: 1.0,
    },
    Goal {
        peer: "nats",
        workload: Workload::Conflicts,
        factor: 1.0,
    },
];

#[derive(Debug)]
pub struct Report {
    command: String,
    quick: bool,
    setup: Vec<(String, String)>,
    fsync: Vec<Duration>,
    peers: Vec<PeerInfo>,
    left_out: Vec<(&'static str, &'static str)>,
    measurements: Vec<Measurement>,
    verified: Vec<(&'static str, u64)>,
}

impl Report {
    pub fn new(config: &Config, dir: &Path, command: String) -> Self {
        let mut setup = Vec::new();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        setup.push(("cores".into(), cores.to_string()));
        if let Some(bytes) = total_memory_bytes() {
            setup.push((
                "memory".into(),
                format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64),
            ));
        }
        if let Some((fs, mount)) = filesystem(dir) {
            setup.push((
                "disk".into(),
                format!("{fs} at {mount} (the embedded stores and SQLite write here)"),
            ));
        }
        setup.push((
            "build".into(),
            if cfg!(debug_assertions) {
                "debug: a smoke test, not figures to compare".into()
            } else {
                "release".into()
            },
        ));
        setup.push((
            "sizes".into(),
            format!(
                "256-byte JSON events; read data set {} streams x {STREAM_EVENTS} events; write \
                 workloads over {} streams, {:.1} s each{}",
                thousands(config.read_streams as f64),
                thousands(config.write_streams as f64),
                config.budget.as_secs_f64(),
                if config.quick { " (--quick)" } else { "" }
            ),
        ));
        Self {
            command,
            quick: config.quick,
            setup,
            fsync: Vec::new(),
            peers: Vec::new(),
            left_out: Vec::new(),
            measurements: Vec::new(),
            verified: Vec::new(),
        }
    }

    pub fn set_fsync(&mut self, sorted: &[Duration]) {
        self.fsync = sorted.to_vec();
    }

    pub fn peer(&mut self, info: PeerInfo) {
        self.peers.push(info);
    }

    pub fn left_out(&mut self, id: &'static str, label: &'static str) {
        self.left_out.push((id, label));
    }

    pub fn push(&mut self, measurement: Measurement) {
        self.measurements.push(measurement);
    }

    pub fn verified(&mut self, id: &'static str, events: u64) {
        self.verified.push((id, events));
    }

    fn info(&self, id: &str) -> Option<&PeerInfo> {
        self.peers.iter().find(|p| p.id == id)
    }

    fn get(&self, workload: Workload, peer: &str) -> Option<&Sample> {
        self.measurements
            .iter()
            .find(|m| m.workload == workload && m.peer == peer)
            .map(|m| &m.sample)
    }

    /// The workloads measured, in the order first measured.
    fn workloads(&self) -> Vec<Workload> {
        let mut seen = Vec::new();
        for m in &self.measurements {
            if !seen.contains(&m.workload) {
                seen.push(m.workload);
            }
        }
        seen
    }

    /// The Factlog runs a peer is compared with on a workload: the embedded store of the same
    /// durability, and the server (durable) when the peer is durable. Reads compare with the
    /// durable store and the server. Factlog on Kafka is compared like any other store: a
    /// backend of Factlog against its embedded store.
    fn references(
        &self,
        workload: Workload,
        peer: &str,
    ) -> (Option<&'static str>, Option<&'static str>) {
        let Some(info) = self.info(peer) else {
            return (None, None);
        };
        if REFERENCES.contains(&info.id) {
            return (None, None);
        }
        if workload.writes() && !info.durability.fsync_before_ack() {
            (Some("factlog-bulk"), None)
        } else {
            (Some("factlog"), Some("factlog-http"))
        }
    }

    /// Factlog's throughput over the peer's, on one workload.
    fn ratio(&self, workload: Workload, factlog: Option<&str>, peer: &str) -> Option<f64> {
        let ours = self.get(workload, factlog?)?.per_second();
        let theirs = self.get(workload, peer)?.per_second();
        (theirs > 0.0).then(|| ours / theirs)
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        for (key, value) in &self.setup {
            let _ = writeln!(s, "- {key}: {value}");
        }
        if !self.fsync.is_empty() {
            let _ = writeln!(
                s,
                "- fsync latency of that disk (4 KiB append + `sync_data`, {} samples): p50 {}, \
                 p99 {}, max {}",
                self.fsync.len(),
                millis(percentile(&self.fsync, 50.0)),
                millis(percentile(&self.fsync, 99.0)),
                millis(*self.fsync.last().expect("not empty"))
            );
        }
        let _ = writeln!(
            s,
            "\nThe stores and their durability, as each reported its settings:\n"
        );
        let _ = writeln!(s, "| store | acknowledgement | settings |");
        let _ = writeln!(s, "|---|---|---|");
        for p in &self.peers {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                p.label,
                p.durability.label(),
                p.setting
            );
        }
        for (_, label) in &self.left_out {
            let _ = writeln!(s, "| {label} | left out: no URL given | |");
        }
        let _ = writeln!(
            s,
            "\nRatios are Factlog's throughput over the store's, from this run. Writes are \
             compared only within one durability: a store that acknowledges before fsync is \
             compared with Factlog's bulk-import mode, never with its durable mode. Latencies \
             are per operation, measured by the client."
        );
        if self
            .peers
            .iter()
            .any(|p| p.durability == Durability::Replicated)
        {
            let _ = writeln!(
                s,
                "\nFactlog on Kafka is in the group that acknowledges before fsync: with \
                 acks=all the brokers acknowledge once every in-sync replica has the write in \
                 memory, and fsync later (see its settings above), so its writes are compared \
                 with Factlog's bulk-import mode, like Redis with everysec and NATS."
            );
        }
        for workload in self.workloads() {
            let _ = writeln!(s, "\n### {}\n", workload.title());
            let latency = workload.latency_of();
            let _ = writeln!(
                s,
                "| store | acknowledgement | events/s | p50 | p99 | p99.9 | Factlog embedded ÷ store | Factlog HTTP ÷ store |"
            );
            let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|");
            let mut notes = Vec::new();
            for p in &self.peers {
                let Some(sample) = self.get(workload, p.id) else {
                    continue;
                };
                let (embedded, http) = self.references(workload, p.id);
                let ratio = |reference| {
                    self.ratio(workload, reference, p.id)
                        .map_or("-".to_owned(), |r| format!("{r:.2}"))
                };
                let pct = |q| {
                    if latency.is_some() && !sample.latencies.is_empty() {
                        millis(percentile(&sample.latencies, q))
                    } else {
                        "-".to_owned()
                    }
                };
                let durability = if workload.writes() {
                    p.durability.label()
                } else {
                    "-"
                };
                let _ = writeln!(
                    s,
                    "| {} | {durability} | {} | {} | {} | {} | {} | {} |",
                    p.label,
                    thousands(sample.per_second()),
                    pct(50.0),
                    pct(99.0),
                    pct(99.9),
                    ratio(embedded),
                    ratio(http),
                );
                if let Some(note) = &sample.note {
                    notes.push(format!("{}: {note}", p.label));
                }
            }
            if let Some(latency) = latency {
                notes.insert(0, format!("Latency {latency}."));
            }
            if !notes.is_empty() {
                let _ = writeln!(s);
            }
            for note in notes {
                let _ = writeln!(s, "- {note}");
            }
        }
        let goals = self.goals();
        if !goals.is_empty() {
            let _ = writeln!(s, "\n### Goals\n");
            let _ = writeln!(s, "| goal | workload | Factlog ÷ store | met |");
            let _ = writeln!(s, "|---|---|--:|---|");
            for (goal, ratio) in goals {
                let label = self.info(goal.peer).map_or(goal.peer, |p| p.label);
                let compared = if goal.workload.writes()
                    && self
                        .info(goal.peer)
                        .is_some_and(|p| !p.durability.fsync_before_ack())
                {
                    " (bulk-import mode, same durability)"
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "| >= {}x {label}{compared} | {} | {} | {} |",
                    goal.factor,
                    goal.workload.id(),
                    ratio.map_or("-".into(), |r| format!("{r:.2}")),
                    match ratio {
                        Some(r) if r >= goal.factor => "yes",
                        Some(_) => "**no**",
                        None => "-",
                    }
                );
            }
        }
        if !self.verified.is_empty() {
            let counts: Vec<String> = self
                .verified
                .iter()
                .map(|(id, n)| {
                    let label = self.info(id).map_or(*id, |p| p.label);
                    format!("{label} {}", thousands(*n as f64))
                })
                .collect();
            let _ = writeln!(
                s,
                "\nChecked after the workloads: every acknowledged event was read back ({}).",
                counts.join(", ")
            );
        }
        if self.quick {
            let _ = writeln!(s, "\n(--quick: sizes of a smoke test, not a measurement.)");
        }
        s
    }

    /// The goals with the peer measured, and Factlog's ratio to it.
    fn goals(&self) -> Vec<(&'static Goal, Option<f64>)> {
        GOALS
            .iter()
            .filter(|g| self.info(g.peer).is_some())
            .map(|g| {
                let (reference, _) = self.references(g.workload, g.peer);
                (g, self.ratio(g.workload, reference, g.peer))
            })
            .collect()
    }

    pub fn json(&self) -> Value {
        let results: Vec<Value> = self
            .measurements
            .iter()
            .map(|m| {
                let (embedded, http) = self.references(m.workload, m.peer);
                let pct = |q| {
                    (m.workload.latency_of().is_some() && !m.sample.latencies.is_empty())
                        .then(|| percentile(&m.sample.latencies, q).as_secs_f64() * 1000.0)
                };
                json!({
                    "workload": m.workload.id(),
                    "title": m.workload.title(),
                    "store": m.peer,
                    "events": m.sample.events,
                    "seconds": m.sample.elapsed.as_secs_f64(),
                    "eventsPerSecond": m.sample.per_second(),
                    "operations": m.sample.latencies.len(),
                    "p50Ms": pct(50.0),
                    "p99Ms": pct(99.0),
                    "p999Ms": pct(99.9),
                    "factlogEmbeddedRatio": self.ratio(m.workload, embedded, m.peer),
                    "factlogHttpRatio": self.ratio(m.workload, http, m.peer),
                    "note": m.sample.note,
                })
            })
            .collect();
        let goals: Vec<Value> = self
            .goals()
            .into_iter()
            .map(|(g, ratio)| {
                json!({
                    "store": g.peer,
                    "workload": g.workload.id(),
                    "atLeast": g.factor,
                    "ratio": ratio,
                    "met": ratio.map(|r| r >= g.factor),
                })
            })
            .collect();
        json!({
            "command": self.command,
            "quick": self.quick,
            "setup": self.setup.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "fsyncMs": {
                "samples": self.fsync.len(),
                "p50": (!self.fsync.is_empty()).then(|| percentile(&self.fsync, 50.0).as_secs_f64() * 1000.0),
                "p99": (!self.fsync.is_empty()).then(|| percentile(&self.fsync, 99.0).as_secs_f64() * 1000.0),
            },
            "stores": self.peers.iter().map(|p| json!({
                "id": p.id,
                "label": p.label,
                "durability": p.durability,
                "settings": p.setting,
            })).collect::<Vec<_>>(),
            "leftOut": self.left_out.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            "results": results,
            "goals": goals,
            "verifiedEvents": self.verified.iter().map(|(id, n)| (id.to_string(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// `doc` with the text between the markers replaced by `generated` (the markers appended at
/// the end when absent).
pub fn splice(doc: &str, generated: &str) -> String {
    crate::bench::report::splice(doc, BEGIN_MARKER, END_MARKER, generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let doc = format!("# Title\n\nbefore\n{BEGIN_MARKER}\nold\n{END_MARKER}\nafter\n");
        let out = splice(&doc, "new\n");
        assert_eq!(
            out,
            format!("# Title\n\nbefore\n{BEGIN_MARKER}\nnew\n{END_MARKER}\nafter\n")
        );
        assert_eq!(splice(&out, "new\n"), out, "idempotent");
    }

    #[test]
    fn splice_appends_when_the_markers_are_missing() {
        let out = splice("# Title\n", "new");
        assert_eq!(
            out,
            format!("# Title\n\n{BEGIN_MARKER}\nnew\n{END_MARKER}\n")
        );
    }

    fn sample(events: u64, seconds: u64) -> Sample {
        Sample {
            events,
            elapsed: Duration::from_secs(seconds),
            latencies: vec![Duration::from_millis(1)],
            note: None,
        }
    }

    #[test]
    fn writes_compare_within_one_durability() {
        let mut report = Report::new(&Config::quick(), Path::new("/"), "x".into());
        for (id, label, durability) in super::super::PEERS {
            report.peer(PeerInfo {
                id,
                label,
                durability,
                setting: String::new(),
            });
        }
        let w = Workload::Batched(Choice::Uniform);
        for (peer, events) in [
            ("factlog", 400),
            ("factlog-bulk", 900),
            ("postgres", 40),
            ("nats", 300),
            ("factlog-kafka", 450),
        ] {
            report.push(Measurement {
                workload: w,
                peer,
                sample: sample(events, 1),
            });
        }
        // Durable peers against the durable store; the others against bulk-import mode.
        assert_eq!(
            report.references(w, "postgres"),
            (Some("factlog"), Some("factlog-http"))
        );
        assert_eq!(report.references(w, "nats"), (Some("factlog-bulk"), None));
        assert_eq!(report.ratio(w, Some("factlog"), "postgres"), Some(10.0));
        assert_eq!(report.ratio(w, Some("factlog-bulk"), "nats"), Some(3.0));
        // Factlog on Kafka acknowledges before fsync (once replicated): with bulk import too.
        assert_eq!(
            report.references(w, "factlog-kafka"),
            (Some("factlog-bulk"), None)
        );
        assert_eq!(
            report.ratio(w, Some("factlog-bulk"), "factlog-kafka"),
            Some(2.0)
        );
        assert_eq!(report.references(w, "factlog-bulk"), (None, None));
        let goals = report.goals();
        let pg = goals
            .iter()
            .find(|(g, _)| g.peer == "postgres" && g.workload == w)
            .unwrap();
        assert_eq!(pg.1, Some(10.0));
        let text = report.markdown();
        assert!(
            text.contains("| >= 10x PostgreSQL | batched-uniform | 10.00 | yes |"),
            "{text}"
        );
        assert!(text.contains("| >= 1x NATS JetStream (bulk-import mode, same durability) | batched-uniform | 3.00 | yes |"), "{text}");
        assert!(
            text.contains(
                "| Factlog on Kafka | ack before fsync, once on the in-sync replicas | 450 |"
            ),
            "{text}"
        );
        assert!(text.contains("Factlog on Kafka is in the group that acknowledges before fsync"));
        // Reads compare with the durable store whatever the peer's durability.
        for peer in ["nats", "factlog-kafka"] {
            assert_eq!(
                report.references(Workload::ReadAll, peer),
                (Some("factlog"), Some("factlog-http"))
            );
        }
    }
}
