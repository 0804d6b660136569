//! `factlog bench kafka`: appends through Factlog's Kafka backend against Kafka's own producer
//! benchmark on the same broker, and the time a node takes to take over the shards of a node
//! that died.
//!
//! Rows, in the order they run:
//! - a. Kafka's `ProducerPerformance` (see [`raw`]): transactions of about one Factlog batch,
//!   `acks=all`, the same record size, on a topic of its own with the same partition count;
//! - b. Factlog: one in-process `KafkaStore` node, `clients` tasks appending batches of
//!   `batch_events` with expected versions to streams in every partition (see [`load`]);
//! - c. b over a, with the goal of at least 0.5;
//! - d. Factlog: single-event appends from 64 concurrent clients;
//! - e. takeover: a second node in its own process takes its share of the shards and is killed
//!   with SIGKILL; the time until the first node owns them again and appends to them are
//!   acknowledged (see [`takeover`]).
//!
//! Every acknowledged event of b and d is read back before e, and the run fails otherwise.
//! Everything happens in a temporary directory (the nodes' replicas) and in topics named after
//! a prefix no other run uses, deleted at the end.

mod load;
mod raw;
mod takeover;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use factlog_kafka::{KafkaOptions, KafkaStore};
use serde_json::{Value, json};

use crate::bench::data::Payloads;
use crate::bench::report::{Goal, Report, Row, Unit};
use crate::bench::sys::{
    filesystem, load_average, millis, percentile, thousands, total_memory_bytes,
};
use crate::output::Out;
use load::Load;
use raw::{Java, Raw, Summary};
use takeover::Takeover;

/// The lines around the generated part of `docs/benchmarks.md`.
pub const BEGIN_MARKER: &str = "<!-- factlog bench kafka: begin (generated, do not edit) -->";
pub const END_MARKER: &str = "<!-- factlog bench kafka: end -->";

/// The goal: Factlog's batched appends at least this fraction of the raw producer's records/s.
const GOAL_RATIO: f64 = 0.5;
/// Category of the batched appends and of the single-event appends.
const BATCH_CATEGORY: &str = "bench";
const SINGLE_CATEGORY: &str = "single";
/// Streams of each client in each partition.
const BATCH_STREAMS_PER_PARTITION: usize = 4;
const SINGLE_STREAMS_PER_PARTITION: usize = 1;

/// Sizes and settings of a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub brokers: String,
    /// The Kafka jars (for `java -cp`).
    pub classpath: String,
    pub partitions: u32,
    /// Bytes of each record's value (each event's data).
    pub record_size: usize,
    /// Events per Factlog append; records per Kafka transaction.
    pub batch_events: u64,
    /// Concurrent clients of the batched appends.
    pub clients: usize,
    /// Concurrent clients of the single-event appends.
    pub single_clients: usize,
    /// Time each workload runs.
    pub budget: Duration,
    /// Session timeout of both nodes of the takeover.
    pub session_timeout: Duration,
    /// Records of ProducerPerformance's calibration run.
    pub calibration_records: u64,
    pub quick: bool,
    /// How the run was started, for the report.
    pub command: String,
}

impl Config {
    /// The defaults, for `brokers` and `classpath`.
    pub fn new(brokers: String, classpath: String, quick: bool) -> Self {
        Self {
            brokers,
            classpath,
            partitions: 4,
            record_size: 256,
            batch_events: 1000,
            clients: 4,
            single_clients: 64,
            budget: Duration::from_secs(if quick { 2 } else { 20 }),
            session_timeout: Duration::from_secs(3),
            calibration_records: if quick { 20_000 } else { 200_000 },
            quick,
            command: String::new(),
        }
    }

    /// Refuses settings that cannot run, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        let limits = KafkaOptions::new("-", "-").limits;
        if self.brokers.trim().is_empty() {
            return Err("--brokers is empty".into());
        }
        if self.classpath.trim().is_empty() {
            return Err("--kafka-classpath is empty".into());
        }
        if self.partitions == 0 || self.partitions > 1024 {
            return Err(format!(
                "--partitions must be between 1 and 1024, not {}",
                self.partitions
            ));
        }
        if self.clients == 0 || self.clients > 10_000 {
            return Err(format!(
                "--clients must be between 1 and 10000, not {}",
                self.clients
            ));
        }
        if self.batch_events == 0 || self.batch_events > limits.append_events_max as u64 {
            return Err(format!(
                "--batch-events must be between 1 and {} (the store's append_events_max), not {}",
                limits.append_events_max, self.batch_events
            ));
        }
        // The data plus what an event costs besides (type, stream name, frame): a generous
        // estimate, so that the store never refuses an append of the run.
        let per_event = self.record_size + limits.fixed_bytes_per_event + 128;
        if self.record_size < 2 || self.record_size + 128 > limits.event_size_bytes_max {
            return Err(format!(
                "--record-size must be between 2 and {} bytes, not {}",
                limits.event_size_bytes_max - 128,
                self.record_size
            ));
        }
        if self.batch_events as usize * per_event > limits.append_size_bytes_max {
            return Err(format!(
                "--batch-events {} of --record-size {} is more than one append may hold ({} bytes \
                 with the events' overhead); make one of them smaller",
                self.batch_events, self.record_size, limits.append_size_bytes_max
            ));
        }
        let seconds = self.budget.as_secs_f64();
        if !(seconds > 0.0 && seconds <= 3600.0) {
            return Err("--seconds must be above 0 and at most 3600".into());
        }
        let session = self.session_timeout.as_secs_f64();
        if !(1.0..=300.0).contains(&session) {
            return Err("--session-timeout-seconds must be between 1 and 300".into());
        }
        Ok(())
    }

    /// Warm-up of the raw producer, not counted (as Factlog's warm-up appends are not).
    fn warmup_seconds(&self) -> f64 {
        if self.quick { 0.5 } else { 1.0 }
    }
}

/// Names no other run uses: the Factlog topic prefix and the raw topic share `base`.
struct Names {
    base: String,
}

impl Names {
    fn new() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        Self {
            base: format!("factlog-bench-{}-{micros}", std::process::id()),
        }
    }

    fn prefix(&self) -> String {
        format!("{}.", self.base)
    }

    fn raw_topic(&self) -> String {
        format!("{}-raw", self.base)
    }

    fn raw_transactional_id(&self) -> String {
        format!("{}-raw-producer", self.base)
    }

    /// A regular expression of every topic of the run (topic names hold no other character
    /// special to a regular expression than '.').
    fn topics_pattern(&self) -> String {
        format!("{}[.-].*", self.base.replace('.', "\\."))
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    report: Report,
    command: String,
    quick: bool,
    raw: Summary,
    raw_label: String,
    batched: Load,
    single: Load,
    ratio: f64,
    takeover: Takeover,
    partitions: u32,
    session_timeout: Duration,
    verified_events: u64,
    verified_streams: usize,
    batch_events: u64,
    clients: usize,
    single_clients: usize,
}

/// Runs the benchmark in a temporary directory under `base`.
pub async fn run(config: Config, base: &Path, out: &Out) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(base)
        .with_context(|| format!("could not create {}", base.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("factlog-bench-kafka-")
        .tempdir_in(base)
        .with_context(|| {
            format!(
                "could not create a temporary directory in {}; pass --dir DIR",
                base.display()
            )
        })?;
    let show = !out.json();
    let result = tokio::select! {
        result = run_in(&config, dir.path(), show) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted by Ctrl-C; no results")),
    };
    let path = dir.path().display().to_string();
    dir.close()
        .with_context(|| format!("could not remove {path}; remove it by hand"))?;
    result
}

fn progress(show: bool, message: &str) {
    if show {
        eprintln!("bench kafka: {message}");
    }
}

/// What the Factlog node measured.
struct FactlogSide {
    batched: Load,
    single: Load,
    verified_events: u64,
    verified_streams: usize,
    takeover: Takeover,
}

async fn run_in(config: &Config, dir: &Path, show: bool) -> anyhow::Result<Outcome> {
    let java = Java::new(&config.classpath);
    let names = Names::new();
    let mut report = Report::default();
    describe_setup(config, &java, dir, &mut report);

    progress(show, "a. Kafka's ProducerPerformance: creating its topic");
    let raw = raw::measure(
        &java,
        config,
        &names.raw_topic(),
        &names.raw_transactional_id(),
        |m| progress(show, m),
    )
    .await;
    let factlog = match raw {
        Ok(_) => factlog_side(config, &names, dir, show).await,
        Err(_) => Err(anyhow!("not run")),
    };
    progress(show, "deleting the run's topics");
    let deleted = java
        .delete_topics(&config.brokers, &names.topics_pattern())
        .await;
    let (raw, factlog) = (raw?, factlog?);
    if let Err(e) = deleted {
        report.note(format!(
            "the run's topics ({}*) could not be deleted: {e:#}",
            names.base
        ));
    }
    Ok(outcome(config, report, &raw, factlog))
}

/// b, d and e: the in-process node, closed whatever happens.
async fn factlog_side(
    config: &Config,
    names: &Names,
    dir: &Path,
    show: bool,
) -> anyhow::Result<FactlogSide> {
    let mut options = KafkaOptions::new(config.brokers.clone(), dir.join("node"));
    options.topic_prefix = names.prefix();
    options.partitions = config.partitions;
    options.node_id = "bench-node".into();
    options.session_timeout = config.session_timeout;
    options.append_timeout = Duration::from_secs(30);
    // KafkaStore::open creates the store's topics and at once reads the end of its reply
    // partition, which on a busy broker may have no leader yet: the open fails, and leaves its
    // replica thread running. A first node in its own process creates the topics and is
    // stopped again; a failed attempt leaves nothing behind in this process.
    progress(
        show,
        "b. creating the store's topics: a first node in its own process",
    );
    for attempt in 1.. {
        let node_id = format!("bench-first-node-{attempt}");
        match takeover::start_node(&options, config, &node_id, dir).await {
            Ok(node) => {
                node.terminate().await.context("stopping the first node")?;
                break;
            }
            Err(e) if attempt < 3 => {
                progress(show, &format!("b. the first node failed, again: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.context("the first node, which creates the store's topics")),
        }
    }
    progress(show, "b. opening a Factlog node on Kafka in this process");
    let store = KafkaStore::open(options)
        .await
        .context("could not open the Factlog node (KafkaStore)")?;
    let result = measure_factlog(config, &store, dir, show).await;
    store.close().await;
    result
}

async fn measure_factlog(
    config: &Config,
    store: &Arc<KafkaStore>,
    dir: &Path,
    show: bool,
) -> anyhow::Result<FactlogSide> {
    let payloads = Arc::new(Payloads::sized(config.record_size));
    let started = Instant::now();
    while store.owned_partitions().len() < config.partitions as usize {
        if started.elapsed() > Duration::from_secs(120) + config.session_timeout * 2 {
            bail!(
                "the node owns shards {:?} of {} after {:?}",
                store.owned_partitions(),
                config.partitions,
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress(
        show,
        "b. warm-up: one append per category and partition (creates the topics)",
    );
    for category in [BATCH_CATEGORY, SINGLE_CATEGORY] {
        load::warm_up(store, &payloads, category, config.partitions).await?;
    }

    progress(
        show,
        &format!(
            "b. batched appends: {} clients x {} events, {:.1} s",
            config.clients,
            config.batch_events,
            config.budget.as_secs_f64()
        ),
    );
    let batched = load::appends(
        store,
        &payloads,
        BATCH_CATEGORY,
        config.clients,
        config.batch_events,
        BATCH_STREAMS_PER_PARTITION,
        config.budget,
    )
    .await
    .context("batched appends")?;

    progress(
        show,
        &format!(
            "d. single-event appends: {} clients, {:.1} s",
            config.single_clients,
            config.budget.as_secs_f64()
        ),
    );
    let single = load::appends(
        store,
        &payloads,
        SINGLE_CATEGORY,
        config.single_clients,
        1,
        SINGLE_STREAMS_PER_PARTITION,
        config.budget,
    )
    .await
    .context("single-event appends")?;

    let streams: Vec<_> = batched
        .streams
        .iter()
        .chain(&single.streams)
        .cloned()
        .collect();
    let acknowledged: u64 = streams.iter().map(|(_, n)| n).sum();
    progress(
        show,
        &format!(
            "reading back the {} acknowledged events of {} streams",
            thousands(acknowledged as f64),
            streams.len()
        ),
    );
    let verified_events = load::verify(store, &streams).await?;
    if verified_events != acknowledged {
        bail!("{acknowledged} events were acknowledged, {verified_events} read back");
    }

    progress(
        show,
        "e. takeover: starting a second node (factlog serve --backend kafka); its replica reads \
         the whole store first",
    );
    let takeover = takeover::measure(store, &payloads, config, dir, |m| progress(show, m))
        .await
        .context("the takeover")?;
    Ok(FactlogSide {
        batched,
        single,
        verified_events,
        verified_streams: streams.len(),
        takeover,
    })
}

fn describe_setup(config: &Config, java: &Java, dir: &Path, report: &mut Report) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    report.setup("cores", cores.to_string());
    if let Some(bytes) = total_memory_bytes() {
        report.setup(
            "memory",
            format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64),
        );
    }
    report.setup(
        "build",
        if cfg!(debug_assertions) {
            "debug: a smoke test, not figures to compare"
        } else {
            "release"
        },
    );
    let brokers = config
        .brokers
        .split(',')
        .filter(|b| !b.trim().is_empty())
        .count();
    report.setup(
        "Kafka",
        format!(
            "{} (the jars of --kafka-classpath), {brokers} broker{} in the bootstrap list, on this \
             machine",
            java.kafka_version()
                .unwrap_or_else(|| "version unknown".into()),
            if brokers == 1 { "" } else { "s" }
        ),
    );
    report.setup(
        "topics",
        format!(
            "{} partitions, replication factor 1, on both sides",
            config.partitions
        ),
    );
    report.setup(
        "sizes",
        format!(
            "{}-byte records (event data); {} events per Factlog append, about as many records \
             per Kafka transaction; {} clients; {:.1} s per workload{}",
            config.record_size,
            thousands(config.batch_events as f64),
            config.clients,
            config.budget.as_secs_f64(),
            if config.quick { " (--quick)" } else { "" }
        ),
    );
    if let Some((fs, mount)) = filesystem(dir) {
        report.setup(
            "replica disk",
            format!("{fs} at {mount} (the Factlog node's read replica)"),
        );
    }
    if let Some(load) = load_average() {
        report.setup(
            "load average",
            format!(
                "{load:.2} at the start (1 minute; the broker, the producer and the nodes share \
                 {cores} cores with whatever else runs)"
            ),
        );
    }
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "records": s.records,
        "recordsPerSecond": s.per_second,
        "avgMs": s.avg_ms,
        "maxMs": s.max_ms,
        "p50Ms": s.p50_ms,
        "p95Ms": s.p95_ms,
        "p99Ms": s.p99_ms,
        "p999Ms": s.p999_ms,
        "line": s.line,
    })
}

fn load_json(load: &Load) -> Value {
    let ms = |p| percentile(&load.latencies, p).as_secs_f64() * 1000.0;
    json!({
        "events": load.events,
        "appends": load.appends,
        "seconds": load.elapsed.as_secs_f64(),
        "eventsPerSecond": load.per_second(),
        "p50Ms": ms(50.0),
        "p99Ms": ms(99.0),
        "p999Ms": ms(99.9),
        "streams": load.streams.len(),
    })
}

fn ms(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0) / 1000.0)
}

fn outcome(config: &Config, mut report: Report, raw: &Raw, factlog: FactlogSide) -> Outcome {
    let FactlogSide {
        batched,
        single,
        verified_events,
        verified_streams,
        takeover,
    } = factlog;
    let figures = raw.run.figures().clone();
    let raw_label = format!(
        "transactions of ~{} records (--transaction-duration-ms {}), acks=all",
        thousands(raw.records_per_transaction),
        raw.transaction_ms
    );

    let name = "Kafka ProducerPerformance";
    report.push(
        Row::new('a', name, raw_label.clone(), Unit::EventsPerSecond)
            .measured(figures.per_second, figures.records),
    );
    report.push(
        Row::new('a', name, "p50 record latency (send to ack)", Unit::Seconds)
            .latency(ms(figures.p50_ms), figures.records),
    );
    report.push(
        Row::new('a', name, "p99 record latency (send to ack)", Unit::Seconds)
            .latency(ms(figures.p99_ms), figures.records),
    );

    let name = "Factlog batched appends";
    report.push(
        Row::new(
            'b',
            name,
            format!(
                "{} clients x {} events/append, expected version",
                config.clients, config.batch_events
            ),
            Unit::EventsPerSecond,
        )
        .measured(batched.per_second(), batched.events),
    );
    report.push(
        Row::new('b', name, "p50 append latency", Unit::Seconds)
            .latency(percentile(&batched.latencies, 50.0), batched.appends),
    );
    report.push(
        Row::new('b', name, "p99 append latency", Unit::Seconds)
            .latency(percentile(&batched.latencies, 99.0), batched.appends),
    );

    let ratio = batched.per_second() / figures.per_second.max(1e-9);
    report.push(
        Row::new(
            'c',
            "Factlog / Kafka",
            "batched events/s over ProducerPerformance's records/s",
            Unit::Ratio,
        )
        .measured(ratio, batched.events)
        .goal(Goal::AtLeast(GOAL_RATIO)),
    );

    let name = "Factlog single-event appends";
    report.push(
        Row::new(
            'd',
            name,
            format!(
                "{} clients x 1 event/append, expected version",
                config.single_clients
            ),
            Unit::EventsPerSecond,
        )
        .measured(single.per_second(), single.events),
    );
    report.push(
        Row::new('d', name, "p50 append latency", Unit::Seconds)
            .latency(percentile(&single.latencies, 50.0), single.appends),
    );
    report.push(
        Row::new('d', name, "p99 append latency", Unit::Seconds)
            .latency(percentile(&single.latencies, 99.0), single.appends),
    );

    let name = "takeover after SIGKILL";
    report.push(
        Row::new(
            'e',
            name,
            format!(
                "until every shard is owned and appended to (session timeout {} s)",
                config.session_timeout.as_secs_f64()
            ),
            Unit::Seconds,
        )
        .latency(takeover.total, 1),
    );
    report.push(
        Row::new('e', name, "until every shard is owned again", Unit::Seconds)
            .latency(takeover.owned_again, 1),
    );

    report.note(format!(
        "a: Kafka's ProducerPerformance, {} records of {} bytes ({} of warm-up not counted) to \
         a topic of its own, acks=all, batch.size={} (librdkafka's default, which Factlog's \
         writers keep); --transaction-duration-ms {}: a calibration run of {} \
         records in 100 ms transactions queued {} records/s while a transaction was open, so \
         {} ms hold about {} records, as one Factlog append holds {} events; the producer's \
         metrics of the measured run (time spent committing) give about {} records per \
         transaction{}. Latency is per record, from send() to its acknowledgement, before the \
         commit that ends its transaction",
        thousands(raw.run.total.records as f64),
        config.record_size,
        thousands(raw.warmup as f64),
        raw::BATCH_SIZE_BYTES,
        raw.transaction_ms,
        thousands(raw.calibration.total.records as f64),
        thousands(raw.calibration_rate),
        raw.transaction_ms,
        thousands(config.batch_events as f64),
        thousands(config.batch_events as f64),
        thousands(raw.records_per_transaction),
        if raw.discarded.is_empty() {
            String::new()
        } else {
            format!(
                " (runs not kept, too far from one batch: {})",
                raw.discarded
                    .iter()
                    .map(|(ms, n)| format!("{ms} ms gave ~{} records", thousands(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    ));
    report.note(format!(
        "b: {} appends of {} events by {} clients in {:.2} s to {} streams in every partition, \
         each append with the expected version of its stream (no stream, then exact); after \
         one warm-up append per category and partition. Latency is per append: the shard \
         writer's transaction, committed with acks=all, and this node's replica holding the \
         events. Factlog's records carry the same data plus the stream name as key and 7 \
         headers",
        thousands(batched.appends as f64),
        thousands(config.batch_events as f64),
        config.clients,
        batched.elapsed.as_secs_f64(),
        batched.streams.len(),
    ));
    report.note(format!(
        "d: {} appends of 1 event by {} clients in {:.2} s to {} streams, each with its \
         expected version; each shard's writer commits the appends waiting for it in one \
         transaction",
        thousands(single.appends as f64),
        config.single_clients,
        single.elapsed.as_secs_f64(),
        single.streams.len(),
    ));
    report.note(format!(
        "every acknowledged event was read back ({} events in {} streams, in version order)",
        thousands(verified_events as f64),
        verified_streams
    ));
    report.note(format!(
        "e: a second node (`factlog serve --backend kafka`, its own process) took shard(s) {:?} \
         of {} ({} after it started: its replica reads the whole store first) and was killed \
         with SIGKILL; this node owned every shard again {} later, and an append to each of \
         those shards (expected version: the event the killed node had written) was \
         acknowledged {} after the kill. A killed node says nothing: the group notices when \
         its session timeout ({} s, both nodes) expires",
        takeover.moved,
        config.partitions,
        millis(takeover.joined),
        millis(takeover.owned_again),
        millis(takeover.total),
        config.session_timeout.as_secs_f64(),
    ));
    report.note(
        "acks=all with replication factor 1 on both sides: a record is acknowledged once the \
         broker has it; Kafka does not fsync before acknowledging (its durability is \
         replication)",
    );
    if let Some(load) = load_average() {
        report.note(format!(
            "load average (1 minute) at the end of the run: {load:.2}"
        ));
    }
    if config.quick {
        report.note("--quick: sizes of a smoke test, not a measurement");
    }

    report.details.insert(
        "raw".into(),
        json!({
            "producerProperties": raw::producer_properties(),
            "calibration": {
                "transactionDurationMs": 100,
                "summary": summary_json(&raw.calibration.total),
                "queuedRecordsPerSecond": raw.calibration_rate,
            },
            "transactionDurationMs": raw.transaction_ms,
            "warmupRecords": raw.warmup,
            "recordsPerTransaction": raw.records_per_transaction,
            "discardedRuns": raw.discarded.iter().map(|(ms, n)| json!({
                "transactionDurationMs": ms,
                "recordsPerTransaction": n,
            })).collect::<Vec<_>>(),
            "total": summary_json(&raw.run.total),
            "steady": raw.run.steady.as_ref().map(summary_json),
        }),
    );
    report.details.insert(
        "factlog".into(),
        json!({
            "batched": load_json(&batched),
            "single": load_json(&single),
        }),
    );
    report.details.insert("ratio".into(), json!(ratio));
    report.details.insert(
        "verification".into(),
        json!({
            "streams": verified_streams,
            "acknowledgedEvents": batched.events + single.events,
            "readBackEvents": verified_events,
        }),
    );
    report.details.insert(
        "takeover".into(),
        json!({
            "sessionTimeoutSeconds": config.session_timeout.as_secs_f64(),
            "movedShards": takeover.moved,
            "joinedSeconds": takeover.joined.as_secs_f64(),
            "ownedAgainSeconds": takeover.owned_again.as_secs_f64(),
            "seconds": takeover.total.as_secs_f64(),
        }),
    );
    Outcome {
        report,
        command: config.command.clone(),
        quick: config.quick,
        raw: figures,
        raw_label,
        batched,
        single,
        ratio,
        takeover,
        partitions: config.partitions,
        session_timeout: config.session_timeout,
        verified_events,
        verified_streams,
        batch_events: config.batch_events,
        clients: config.clients,
        single_clients: config.single_clients,
    }
}

impl Outcome {
    pub fn json(&self) -> Value {
        let mut value = self.report.json();
        if let Some(object) = value.as_object_mut() {
            object.insert("command".into(), json!(self.command));
            object.insert("quick".into(), json!(self.quick));
        }
        value
    }

    pub fn text(&self) -> String {
        self.report.text()
    }

    /// The report as Markdown, for `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        for (key, value) in &self.report.setup {
            let _ = writeln!(s, "- {key}: {value}");
        }
        let _ = writeln!(
            s,
            "\n| writer | writes | events/s | p50 | p99 | latency of |"
        );
        let _ = writeln!(s, "|---|---|--:|--:|--:|---|");
        let _ = writeln!(
            s,
            "| Kafka ProducerPerformance | {} | {} | {} | {} | one record, send to ack |",
            self.raw_label,
            thousands(self.raw.per_second),
            millis(ms(self.raw.p50_ms)),
            millis(ms(self.raw.p99_ms)),
        );
        for (label, load, clients, events) in [
            ("batched", &self.batched, self.clients, self.batch_events),
            ("single events", &self.single, self.single_clients, 1),
        ] {
            let _ = writeln!(
                s,
                "| Factlog, {label} | appends of {} event{} by {clients} clients, expected \
                 version; acknowledged after the transaction commit (acks=all) and the node's \
                 replica | {} | {} | {} | one append |",
                thousands(events as f64),
                if events == 1 { "" } else { "s" },
                thousands(load.per_second()),
                millis(percentile(&load.latencies, 50.0)),
                millis(percentile(&load.latencies, 99.0)),
            );
        }
        let _ = writeln!(s, "\n| goal | measured | met |");
        let _ = writeln!(s, "|---|--:|---|");
        let _ = writeln!(
            s,
            "| Factlog batched events/s >= {GOAL_RATIO} x ProducerPerformance's records/s | {:.2} | {} |",
            self.ratio,
            if self.ratio >= GOAL_RATIO {
                "yes"
            } else {
                "**no**"
            }
        );
        let _ = writeln!(
            s,
            "\nTakeover: a second node owning shard(s) {:?} of {} killed with SIGKILL; this node \
             owned every shard again after {}, and appends to those shards were acknowledged \
             {} after the kill (session timeout {} s).",
            self.takeover.moved,
            self.partitions,
            millis(self.takeover.owned_again),
            millis(self.takeover.total),
            self.session_timeout.as_secs_f64(),
        );
        let _ = writeln!(
            s,
            "\nChecked after the appends: every acknowledged event was read back ({} events in {} \
             streams).\n",
            thousands(self.verified_events as f64),
            self.verified_streams
        );
        // (The read-back is said above.)
        for note in self
            .report
            .notes
            .iter()
            .filter(|n| !n.starts_with("every acknowledged"))
        {
            let _ = writeln!(s, "- {note}");
        }
        s
    }
}

/// `doc` with the text between the markers replaced by `generated`.
pub fn splice(doc: &str, generated: &str) -> String {
    crate::bench::report::splice(doc, BEGIN_MARKER, END_MARKER, generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new("127.0.0.1:9092".into(), "/x.jar".into(), false)
    }

    #[test]
    fn the_defaults_are_valid_and_bad_sizes_are_refused() {
        assert_eq!(config().validate(), Ok(()));
        for (bad, wanted) in [
            (
                Config {
                    batch_events: 0,
                    ..config()
                },
                "--batch-events",
            ),
            (
                Config {
                    batch_events: 20_000,
                    ..config()
                },
                "--batch-events",
            ),
            (
                Config {
                    clients: 0,
                    ..config()
                },
                "--clients",
            ),
            (
                Config {
                    partitions: 0,
                    ..config()
                },
                "--partitions",
            ),
            (
                Config {
                    record_size: 1,
                    ..config()
                },
                "--record-size",
            ),
            (
                Config {
                    record_size: 100_000,
                    ..config()
                },
                "--batch-events 1000 of --record-size 100000",
            ),
            (
                Config {
                    budget: Duration::ZERO,
                    ..config()
                },
                "--seconds",
            ),
            (
                Config {
                    session_timeout: Duration::from_millis(10),
                    ..config()
                },
                "--session-timeout-seconds",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(wanted), "{e}");
        }
    }

    #[test]
    fn the_topics_pattern_matches_only_this_run() {
        let names = Names {
            base: "factlog-bench-1-2".into(),
        };
        assert_eq!(names.prefix(), "factlog-bench-1-2.");
        assert_eq!(names.raw_topic(), "factlog-bench-1-2-raw");
        assert_eq!(names.topics_pattern(), "factlog-bench-1-2[.-].*");
    }
}
