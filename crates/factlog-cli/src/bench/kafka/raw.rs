//! The raw figure: Kafka's own producer benchmark (`org.apache.kafka.tools.ProducerPerformance`)
//! on the same broker, with transactions of about as many records as one Factlog append holds
//! events, `acks=all` and the same record size, on a topic of its own with the same partitions.
//!
//! `--transaction-duration-ms` is a time, not a record count: ProducerPerformance sends records
//! until that time has passed since the transaction began, then commits (and the commit waits
//! for every record of the transaction). A short calibration run with 100 ms transactions
//! measures how fast the producer queues records while a transaction is open (its records over
//! its run time minus the time spent in `commitTransaction` and `beginTransaction`, from the
//! producer's own metrics); the duration is the Factlog batch size over that rate. The measured
//! run reports the same metrics, from which the records per transaction it really made are
//! estimated; when they are far from one batch (the calibration ran in a colder JVM), it runs
//! again with the duration its own rate gives, twice at most.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

use super::Config;

const PRODUCER_PERFORMANCE: &str = "org.apache.kafka.tools.ProducerPerformance";
const TOPIC_COMMAND: &str = "org.apache.kafka.tools.TopicCommand";
/// Transactions of the calibration run.
const CALIBRATION_TRANSACTION_MS: u64 = 100;
/// Runs again, at most, when the transactions were outside these fractions of one batch.
const ADJUSTMENTS_MAX: usize = 2;
const ADJUSTMENT_TOLERANCE: (f64, f64) = (0.67, 1.5);
/// The producer's `batch.size`: librdkafka's default, which Factlog's writers keep, so that
/// both producers put at most as many bytes in one batch of one partition.
pub const BATCH_SIZE_BYTES: u64 = 1_000_000;

/// The Kafka command-line tools, run with `java -cp <classpath>`.
#[derive(Debug, Clone)]
pub struct Java {
    classpath: String,
}

impl Java {
    pub fn new(classpath: &str) -> Self {
        Self {
            classpath: classpath.to_owned(),
        }
    }

    /// The version of the Kafka client jar on the classpath, if it names one.
    pub fn kafka_version(&self) -> Option<String> {
        self.classpath.split(':').find_map(|jar| {
            let name = jar.rsplit('/').next()?;
            name.strip_prefix("kafka-clients-")?
                .strip_suffix(".jar")
                .map(str::to_owned)
        })
    }

    /// Runs a class of the classpath; its standard output, or an error with the end of what it
    /// printed.
    async fn run(&self, class: &str, args: &[String], timeout: Duration) -> anyhow::Result<String> {
        let short = class.rsplit('.').next().unwrap_or(class);
        let child = tokio::process::Command::new("java")
            .args(["-Xmx1g", "-Djava.awt.headless=true", "-cp"])
            .arg(&self.classpath)
            .arg(class)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("could not run java: is Java 17 or later installed (scripts/setup.sh)?")?;
        // On a timeout the child is dropped, which kills it (by its pid).
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("{short} did not finish within {timeout:?}"))?
            .with_context(|| format!("could not wait for {short}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "{short} failed ({}):\n{}{}",
                output.status,
                tail(&String::from_utf8_lossy(&output.stderr), 15),
                tail(&stdout, 5)
            );
        }
        Ok(stdout)
    }

    /// Creates `topic` with `partitions` partitions and replication factor 1.
    pub async fn create_topic(
        &self,
        brokers: &str,
        topic: &str,
        partitions: u32,
    ) -> anyhow::Result<()> {
        let args = [
            "--bootstrap-server",
            brokers,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ]
        .map(str::to_owned);
        self.run(TOPIC_COMMAND, &args, Duration::from_secs(120))
            .await
            .with_context(|| format!("could not create the topic {topic}"))?;
        Ok(())
    }

    /// Deletes the topics whose names match the regular expression `pattern`.
    pub async fn delete_topics(&self, brokers: &str, pattern: &str) -> anyhow::Result<()> {
        let args = [
            "--bootstrap-server",
            brokers,
            "--delete",
            "--topic",
            pattern,
        ]
        .map(str::to_owned);
        self.run(TOPIC_COMMAND, &args, Duration::from_secs(120))
            .await
            .map(drop)
    }

    /// One ProducerPerformance run with transactions, its summary and metrics.
    async fn producer_performance(
        &self,
        config: &Config,
        run: &PerfArgs<'_>,
    ) -> anyhow::Result<PerfRun> {
        let mut args: Vec<String> = [
            "--bootstrap-server",
            &config.brokers,
            "--topic",
            run.topic,
            "--num-records",
            &run.records.to_string(),
            "--record-size",
            &config.record_size.to_string(),
            "--throughput",
            "-1",
            "--transactional-id",
            run.transactional_id,
            "--transaction-duration-ms",
            &run.transaction_ms.to_string(),
            "--print-metrics",
        ]
        .map(str::to_owned)
        .to_vec();
        if run.warmup > 0 {
            args.extend(["--warmup-records".into(), run.warmup.to_string()]);
        }
        // One --command-property with every property: given twice, the last one wins whole.
        args.push("--command-property".into());
        args.extend(producer_properties());
        // Generous: a slow run is a figure to report, not a reason to give up.
        let timeout = config.budget * 10 + Duration::from_secs(180);
        let stdout = self.run(PRODUCER_PERFORMANCE, &args, timeout).await?;
        parse_output(&stdout)
    }
}

/// The producer settings of both runs, besides what ProducerPerformance's flags set.
pub fn producer_properties() -> Vec<String> {
    vec![
        "acks=all".into(),
        format!("batch.size={BATCH_SIZE_BYTES}"),
        "client.id=factlog-bench-kafka".into(),
    ]
}

struct PerfArgs<'a> {
    topic: &'a str,
    transactional_id: &'a str,
    records: u64,
    warmup: u64,
    transaction_ms: u64,
}

/// A summary line of ProducerPerformance: `N records sent, R records/sec (M MB/sec), A ms avg
/// latency, X ms max latency, P ms 50th, P ms 95th, P ms 99th, P ms 99.9th.`
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub records: u64,
    pub per_second: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// The line as printed.
    pub line: String,
}

impl Summary {
    /// The run's duration: records over records per second.
    pub fn elapsed(&self) -> Duration {
        Duration::from_secs_f64(self.records as f64 / self.per_second.max(1e-9))
    }
}

/// What one run printed.
#[derive(Debug, Clone)]
pub struct PerfRun {
    /// Every record.
    pub total: Summary,
    /// Without the warm-up records, when there were some.
    pub steady: Option<Summary>,
    /// `producer-metrics:<name>` values (the producer's own metrics, `--print-metrics`).
    pub metrics: HashMap<String, f64>,
}

impl PerfRun {
    /// The summary to report: the steady state when there was a warm-up.
    pub fn figures(&self) -> &Summary {
        self.steady.as_ref().unwrap_or(&self.total)
    }

    fn metric_seconds(&self, name: &str) -> f64 {
        self.metrics.get(name).copied().unwrap_or(0.0) / 1e9
    }

    /// Seconds spent in `commitTransaction` and `beginTransaction`, over the whole run.
    pub fn transaction_calls(&self) -> Duration {
        Duration::from_secs_f64(
            self.metric_seconds("txn-commit-time-ns-total")
                + self.metric_seconds("txn-begin-time-ns-total"),
        )
    }

    /// Records queued per second while a transaction was open: every record over the run's
    /// time outside the commits (the send loop only leaves to commit).
    pub fn queue_rate(&self) -> f64 {
        let total = self.total.elapsed().as_secs_f64();
        let sending = total - self.transaction_calls().as_secs_f64();
        if sending > total * 0.01 {
            self.total.records as f64 / sending
        } else {
            self.total.per_second
        }
    }
}

/// Parses ProducerPerformance's output: its summary lines (the periodic progress lines have no
/// percentiles) and its metrics.
pub fn parse_output(stdout: &str) -> anyhow::Result<PerfRun> {
    let mut total = None;
    let mut steady = None;
    let mut metrics = HashMap::new();
    for line in stdout.lines() {
        let line = line.trim();
        if line.contains("records sent,") && line.contains(" 50th") {
            let summary = parse_summary(line).with_context(|| {
                format!("could not parse ProducerPerformance's summary line {line:?}")
            })?;
            if line.contains("steady state records sent") {
                steady = Some(summary);
            } else {
                total = Some(summary);
            }
        } else if let Some(rest) = line.strip_prefix("producer-metrics:")
            && let Some((name, value)) = rest.split_once(":{")
            && let Some((_, value)) = value.rsplit_once(": ")
            && let Ok(value) = value.trim().parse::<f64>()
        {
            metrics.insert(name.to_owned(), value);
        }
    }
    let Some(total) = total else {
        bail!(
            "ProducerPerformance printed no summary line (\"N records sent, R records/sec ..., \
             P ms 50th, ...\"); its output ended with:\n{}",
            tail(stdout, 10)
        );
    };
    Ok(PerfRun {
        total,
        steady,
        metrics,
    })
}

/// Parses one summary line.
pub fn parse_summary(line: &str) -> Option<Summary> {
    let line = line.trim().trim_end_matches('.');
    let mut records = None;
    let mut per_second = None;
    let mut fields: HashMap<&'static str, f64> = HashMap::new();
    for part in line.split(", ") {
        let mut words = part.split_whitespace();
        let number = words.next()?;
        let rest: Vec<&str> = words.collect();
        let rest = rest.join(" ");
        if rest.ends_with("records sent") {
            records = Some(number.parse::<u64>().ok()?);
        } else if rest.starts_with("records/sec") {
            per_second = Some(number.parse::<f64>().ok()?);
        } else if let Some(key) = rest.strip_prefix("ms ") {
            let key = match key {
                "avg latency" => "avg",
                "max latency" => "max",
                "50th" => "50th",
                "95th" => "95th",
                "99th" => "99th",
                "99.9th" => "99.9th",
                _ => continue,
            };
            fields.insert(key, number.parse::<f64>().ok()?);
        }
    }
    Some(Summary {
        records: records?,
        per_second: per_second?,
        avg_ms: *fields.get("avg")?,
        max_ms: *fields.get("max")?,
        p50_ms: *fields.get("50th")?,
        p95_ms: *fields.get("95th")?,
        p99_ms: *fields.get("99th")?,
        p999_ms: *fields.get("99.9th")?,
        line: line.to_owned() + ".",
    })
}

/// The last `n` lines of `text`, each indented, for error messages.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("  {l}\n")).collect()
}

/// The raw run and how it was set up.
#[derive(Debug, Clone)]
pub struct Raw {
    pub calibration: PerfRun,
    /// Records queued per second in an open transaction, in the calibration run.
    pub calibration_rate: f64,
    /// The `--transaction-duration-ms` chosen.
    pub transaction_ms: u64,
    pub warmup: u64,
    pub run: PerfRun,
    /// Records per transaction in the measured run, estimated from its metrics.
    pub records_per_transaction: f64,
    /// Runs not kept because their transactions were too far from one batch: their
    /// transaction duration and records per transaction.
    pub discarded: Vec<(u64, f64)>,
}

/// Creates the topic, calibrates the transaction duration and measures.
pub async fn measure(
    java: &Java,
    config: &Config,
    topic: &str,
    transactional_id: &str,
    progress: impl Fn(&str),
) -> anyhow::Result<Raw> {
    java.create_topic(&config.brokers, topic, config.partitions)
        .await?;
    progress(&format!(
        "a. calibrating: {} records in {CALIBRATION_TRANSACTION_MS} ms transactions",
        config.calibration_records
    ));
    let calibration = java
        .producer_performance(
            config,
            &PerfArgs {
                topic,
                transactional_id,
                records: config.calibration_records,
                warmup: 0,
                transaction_ms: CALIBRATION_TRANSACTION_MS,
            },
        )
        .await
        .context("the calibration run of ProducerPerformance")?;
    let calibration_rate = calibration.queue_rate();
    let mut transaction_ms = transaction_ms(config.batch_events, calibration_rate);
    // About the time budget at the last run's throughput, after a warm-up (not counted, as
    // Factlog's warm-up is not).
    let mut rate = calibration.total.per_second;
    let mut discarded = Vec::new();
    loop {
        let warmup = (rate * config.warmup_seconds()).round().max(1.0) as u64;
        let records = warmup
            + ((rate * config.budget.as_secs_f64()).round() as u64).max(config.batch_events * 10);
        progress(&format!(
            "a. ProducerPerformance: {records} records, --transaction-duration-ms {transaction_ms}"
        ));
        let run = java
            .producer_performance(
                config,
                &PerfArgs {
                    topic,
                    transactional_id,
                    records,
                    warmup,
                    transaction_ms,
                },
            )
            .await
            .context("the measured run of ProducerPerformance")?;
        let records_per_transaction = run.queue_rate() * transaction_ms as f64 / 1000.0;
        // The calibration ran in a colder JVM: when the transactions came out far from one
        // batch, run again with the duration this run's rate gives.
        let off = records_per_transaction / config.batch_events as f64;
        let next = self::transaction_ms(config.batch_events, run.queue_rate());
        if discarded.len() < ADJUSTMENTS_MAX
            && !(ADJUSTMENT_TOLERANCE.0..=ADJUSTMENT_TOLERANCE.1).contains(&off)
            && next != transaction_ms
        {
            progress(&format!(
                "a. about {records_per_transaction:.0} records per transaction: again with \
                 --transaction-duration-ms {next}"
            ));
            discarded.push((transaction_ms, records_per_transaction));
            transaction_ms = next;
            rate = run.figures().per_second;
            continue;
        }
        return Ok(Raw {
            calibration,
            calibration_rate,
            transaction_ms,
            warmup,
            run,
            records_per_transaction,
            discarded,
        });
    }
}

/// The transaction duration that holds `batch` records at `rate` records per second: at
/// least 1 ms, at most a minute.
pub fn transaction_ms(batch: u64, rate: f64) -> u64 {
    let ms = batch as f64 * 1000.0 / rate.max(1e-3);
    (ms.round() as u64).clamp(1, 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
Warmup first 50000 records. Steady state results will print after the complete test summary.
120001 records sent, 24000.2 records/sec (5.86 MB/sec), 30.1 ms avg latency, 250.0 ms max latency.
300000 records sent, 53059.780686 records/sec (12.95 MB/sec), 17.33 ms avg latency, 105.00 ms max latency, 13 ms 50th, 50 ms 95th, 96 ms 99th, 104 ms 99.9th.
250000 steady state records sent, 68700.192361 records/sec (16.77 MB/sec), 17.24 ms avg latency, 105.00 ms max latency, 12 ms 50th, 50 ms 95th, 99 ms 99th, 104 ms 99.9th.

Metric Name                                                                                 Value
producer-metrics:record-send-total:{client-id=perf-producer-client}                         : 300000.000
producer-metrics:txn-begin-time-ns-total:{client-id=perf-producer-client}                   : 2090904.000
producer-metrics:txn-commit-time-ns-total:{client-id=perf-producer-client}                  : 842474379.000
producer-topic-metrics:record-send-total:{client-id=perf-producer-client, topic=pp1}        : 300000.000
";

    #[test]
    fn parses_the_summary_lines_and_metrics() {
        let run = parse_output(OUTPUT).unwrap();
        assert_eq!(run.total.records, 300_000);
        assert!((run.total.per_second - 53_059.780686).abs() < 1e-6);
        assert_eq!(run.total.p50_ms, 13.0);
        assert_eq!(run.total.p99_ms, 96.0);
        assert_eq!(run.total.p999_ms, 104.0);
        assert_eq!(run.total.avg_ms, 17.33);
        assert_eq!(run.total.max_ms, 105.0);
        let steady = run.steady.as_ref().unwrap();
        assert_eq!(steady.records, 250_000);
        assert_eq!(steady.p50_ms, 12.0);
        assert_eq!(steady.p99_ms, 99.0);
        assert_eq!(run.figures(), steady);
        assert_eq!(run.metrics["txn-commit-time-ns-total"], 842_474_379.0);
        assert_eq!(run.metrics["record-send-total"], 300_000.0);
        // 300,000 records in 5.654 s, of which 0.845 s in commit and begin.
        let sending = run.total.elapsed().as_secs_f64() - 0.844_565_283;
        assert!((run.queue_rate() - 300_000.0 / sending).abs() < 1.0);
    }

    #[test]
    fn output_without_a_summary_is_an_error() {
        let e = parse_output("Exception in thread main\n").unwrap_err();
        assert!(e.to_string().contains("no summary line"), "{e}");
        let e = parse_output("10 records sent, x records/sec (1 MB/sec), 1 ms avg latency, 2 ms max latency, 1 ms 50th, 2 ms 95th, 2 ms 99th, 2 ms 99.9th.").unwrap_err();
        assert!(format!("{e:#}").contains("could not parse"), "{e:#}");
    }

    #[test]
    fn transaction_duration_holds_one_batch() {
        assert_eq!(transaction_ms(1000, 125_000.0), 8);
        assert_eq!(transaction_ms(1000, 10_000_000.0), 1);
        assert_eq!(transaction_ms(1_000_000, 1.0), 60_000);
    }

    #[test]
    fn kafka_version_from_the_classpath() {
        let java = Java::new("/m2/a/kafka_2.13-4.3.1.jar:/m2/b/kafka-clients-4.3.1.jar:/x/y.jar");
        assert_eq!(java.kafka_version().as_deref(), Some("4.3.1"));
        assert_eq!(Java::new("/x.jar").kafka_version(), None);
    }
}
