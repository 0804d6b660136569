//! The benchmark's results: one row per figure, beside its target, as a table or as JSON.

use std::time::Duration;

use serde_json::{Value, json};

use crate::bench::sys::{millis, size, thousands};

/// What a figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    EventsPerSecond,
    /// A duration, kept in seconds.
    Seconds,
    Bytes,
    /// One figure over another (of the same unit).
    Ratio,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::EventsPerSecond => "events/s",
            Unit::Seconds => "s",
            Unit::Bytes => "bytes",
            Unit::Ratio => "ratio",
        }
    }

    pub fn format(self, value: f64) -> String {
        match self {
            Unit::EventsPerSecond => format!("{} events/s", thousands(value)),
            Unit::Seconds => millis(Duration::from_secs_f64(value.max(0.0))),
            Unit::Bytes => size(value),
            Unit::Ratio => format!("{value:.2}"),
        }
    }
}

/// A target: a throughput to reach or a latency/size to stay under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario's letter, a to f.
    pub scenario: char,
    /// The scenario's name; every row of a scenario repeats it, so that each line stands alone.
    pub name: &'static str,
    /// Which figure of the scenario: "p99 latency", "throughput", ...
    pub metric: String,
    /// `None` when it could not be measured (say, no `/proc` for resident memory).
    pub measured: Option<f64>,
    pub unit: Unit,
    pub goal: Option<Goal>,
    /// How many samples or events the figure is from.
    pub samples: u64,
}

impl Row {
    pub fn new(scenario: char, name: &'static str, metric: impl Into<String>, unit: Unit) -> Self {
        Self {
            scenario,
            name,
            metric: metric.into(),
            measured: None,
            unit,
            goal: None,
            samples: 0,
        }
    }

    pub fn measured(mut self, value: f64, samples: u64) -> Self {
        self.measured = Some(value);
        self.samples = samples;
        self
    }

    pub fn latency(self, value: Duration, samples: u64) -> Self {
        self.measured(value.as_secs_f64(), samples)
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    /// How the figure compares with its target: above 1 is better than the target. Throughput
    /// is measured/target; latency and size are target/measured.
    pub fn ratio(&self) -> Option<f64> {
        let measured = self.measured?;
        Some(match self.goal? {
            Goal::AtLeast(target) => measured / target,
            Goal::AtMost(_) if measured <= 0.0 => f64::INFINITY,
            Goal::AtMost(target) => target / measured,
        })
    }

    pub fn meets(&self) -> Option<bool> {
        self.ratio().map(|r| r >= 1.0)
    }

    fn target_text(&self) -> String {
        match self.goal {
            None => "-".into(),
            Some(Goal::AtLeast(t)) => format!(">= {}", self.unit.format(t)),
            Some(Goal::AtMost(t)) => format!("<= {}", self.unit.format(t)),
        }
    }

    fn json(&self) -> Value {
        let (comparison, target) = match self.goal {
            None => (None, None),
            Some(Goal::AtLeast(t)) => (Some(">="), Some(t)),
            Some(Goal::AtMost(t)) => (Some("<="), Some(t)),
        };
        json!({
            "scenario": self.scenario.to_string(),
            "name": self.name,
            "metric": self.metric,
            "measured": self.measured,
            "unit": self.unit.name(),
            "comparison": comparison,
            "target": target,
            // JSON has no infinity: a zero latency is reported as no ratio.
            "ratio": self.ratio().filter(|r| r.is_finite()),
            "meetsTarget": self.meets(),
            "samples": self.samples,
        })
    }
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Context printed above the table: where, what sizes.
    pub setup: Vec<(String, String)>,
    /// Remarks printed below the table: what each scenario did, anything unusual.
    pub notes: Vec<String>,
    /// Machine-readable details beside the rows (the crash recovery's open report, sizes).
    pub details: serde_json::Map<String, Value>,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn setup(&mut self, key: &str, value: impl Into<String>) {
        self.setup.push((key.to_owned(), value.into()));
    }

    pub fn json(&self) -> Value {
        json!({
            "setup": self.setup.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "results": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "details": Value::Object(self.details.clone()),
            "notes": self.notes,
        })
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let key_width = self.setup.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in &self.setup {
            out.push_str(&format!("{key:key_width$}  {value}\n"));
        }
        out.push('\n');
        let header = ["scenario", "measured", "target", "ratio", "meets target"];
        let lines: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    format!("{}. {}: {}", row.scenario, row.name, row.metric),
                    row.measured
                        .map_or_else(|| "n/a".into(), |m| row.unit.format(m)),
                    row.target_text(),
                    match row.ratio() {
                        None => "-".into(),
                        Some(r) if r.is_infinite() => "inf".into(),
                        Some(r) => format!("{r:.2}"),
                    },
                    match (row.goal, row.meets()) {
                        (None, _) => "-".into(),
                        (Some(_), None) => "n/a".into(),
                        (Some(_), Some(true)) => "yes".into(),
                        (Some(_), Some(false)) => "no".into(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.len());
            }
        }
        let mut push_line = |cells: [&str; 5]| {
            let mut line = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                // Figures are right-aligned so that their digits line up.
                if i == 1 || i == 3 {
                    line.push_str(&format!("{cell:>width$}  "));
                } else {
                    line.push_str(&format!("{cell:width$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        };
        push_line(header);
        let rule = widths.map(|w| "-".repeat(w));
        push_line([&rule[0], &rule[1], &rule[2], &rule[3], &rule[4]]);
        for line in &lines {
            push_line([&line[0], &line[1], &line[2], &line[3], &line[4]]);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out.push_str(&format!("- {note}\n"));
            }
        }
        out
    }
}

/// `doc` with the text between the lines `begin` and `end` replaced by `generated` (the
/// markers and the text appended at the end when they are absent): how a benchmark rewrites
/// its part of `docs/benchmarks.md`.
pub fn splice(doc: &str, begin: &str, end: &str, generated: &str) -> String {
    let block = format!("{begin}\n{}\n{end}", generated.trim_end());
    match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &doc[..b], &doc[e + end.len()..])
        }
        _ => format!("{}\n\n{block}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_favor_more_throughput_and_less_latency() {
        let throughput = Row::new('b', "x", "throughput", Unit::EventsPerSecond)
            .measured(250_000.0, 1)
            .goal(Goal::AtLeast(500_000.0));
        assert_eq!(throughput.ratio(), Some(0.5));
        assert_eq!(throughput.meets(), Some(false));
        let latency = Row::new('c', "x", "p99", Unit::Seconds)
            .latency(Duration::from_millis(5), 1)
            .goal(Goal::AtMost(0.010));
        assert!((latency.ratio().unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(latency.meets(), Some(true));
        let unmeasured = Row::new('f', "x", "rss", Unit::Bytes).goal(Goal::AtMost(1.0));
        assert_eq!(unmeasured.meets(), None);
    }
}
