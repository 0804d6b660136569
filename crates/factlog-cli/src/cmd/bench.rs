//! `factlog bench`: the command line of the benchmark suite; the suite itself is in
//! [`crate::bench`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::UsageError;
use crate::bench::{self, Config, child::ChildMode};
use crate::output::Out;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Scenarios: a. fsync latency of the disk, b. batched durable appends, c. concurrent writers,
d. read $all from a warm cache, e. read 100-event streams from a large store, f. open that store
after a clean close and after kill -9. Each row shows the measured figure, its target, the ratio
(above 1 is better than the target) and whether the target is met.

The store goes in a temporary directory, removed afterwards: in --dir if given, else beside the
data directory when it exists (to measure its disk), else in the system's temporary directory.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<BenchCommand>,

    /// Events appended by each write scenario (b and c); each also stops at its time budget.
    /// Default 1,000,000 (10,000 with --quick).
    #[arg(long, value_name = "N")]
    events: Option<u64>,

    /// Events of the large store of scenarios e and f, in streams of 100 events.
    /// Default 1,000,000 (10,000 with --quick); docs/benchmarks.md uses 10,000,000.
    #[arg(long, value_name = "N")]
    store_events: Option<u64>,

    /// Seconds each timed scenario may run before it stops and reports what it measured.
    /// Default 30 (2 with --quick).
    #[arg(long, value_name = "S")]
    scenario_seconds: Option<u64>,

    /// Small sizes everywhere: a smoke test in seconds, not a measurement to compare with
    /// the targets.
    #[arg(long)]
    quick: bool,

    /// Put the temporary bench directory in this directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Factlog (embedded, over HTTP, on Kafka) against PostgreSQL, SQLite, Redis Streams and
    /// NATS JetStream on the same workloads, in one run (scripts/bench-compare.sh starts the
    /// servers).
    Compare(CompareArgs),
    /// Appends through Factlog's Kafka backend against Kafka's own producer benchmark on the
    /// same broker, and the takeover of a killed node's shards (scripts/bench-kafka.sh starts
    /// the broker).
    Kafka(KafkaArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Every store runs the same workloads, one store after the other: read one stream, load an
aggregate, read everything, a catch-up subscription, batched appends, 1/8/64 concurrent
single-event appends (uniform and Zipf choice of stream) and appends with expected-version
conflicts. Each workload prints one table with the ratio of Factlog to each store of the same
durability. PostgreSQL, Redis and NATS are named by URL and Kafka by its brokers;
scripts/bench-compare.sh starts throwaway servers on loopback and passes them. SQLite and
Factlog run in a temporary directory. Factlog on Kafka acknowledges once the in-sync replicas
have a write (acks=all), before fsync: its writes are compared with Factlog's bulk-import mode,
like Redis with everysec and NATS.")]
pub struct CompareArgs {
    /// PostgreSQL to use as an event store (its `events` table is dropped and recreated).
    #[arg(long, value_name = "URL")]
    postgres_url: Option<String>,

    /// Redis running with `appendfsync always` (the database is flushed).
    #[arg(long, value_name = "URL")]
    redis_always_url: Option<String>,

    /// Redis running with `appendfsync everysec` (the database is flushed).
    #[arg(long, value_name = "URL")]
    redis_everysec_url: Option<String>,

    /// NATS with JetStream (a stream FACTLOG_BENCH is deleted and recreated).
    #[arg(long, value_name = "URL")]
    nats_url: Option<String>,

    /// Kafka brokers for Factlog on Kafka (a new store with topics named
    /// factlog.bench.<pid>.<nanos>.*, deleted at the end).
    #[arg(long, value_name = "HOST:PORT,...")]
    kafka_brokers: Option<String>,

    /// Only these stores, comma-separated: factlog, factlog-http, postgres, sqlite,
    /// redis-always, factlog-bulk, redis-everysec, nats, factlog-kafka.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    only: Vec<String>,

    /// Only these workloads, comma-separated: read-stream, aggregate-load, read-all,
    /// catch-up, batched-uniform, batched-zipf, concurrent-{1,8,64}-{uniform,zipf}, conflicts.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    workloads: Vec<String>,

    /// Fail when a store has no URL (or brokers) instead of leaving it out.
    #[arg(long)]
    require_all: bool,

    /// Seconds each write workload runs [default: 5; 0.3 with --quick].
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,

    /// Streams of 100 events the read workloads read [default: 10,000; 40 with --quick].
    #[arg(long, value_name = "N")]
    read_streams: Option<u64>,

    /// Small sizes: a smoke test in seconds (every check still runs), not a measurement.
    #[arg(long)]
    quick: bool,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,

    /// Write the report into this Markdown file (docs/benchmarks.md), between its
    /// `factlog bench compare` markers.
    #[arg(long, value_name = "FILE")]
    write_docs: Option<PathBuf>,

    /// Put the temporary directory (embedded stores, SQLite, the Kafka node's replica) in
    /// this directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Rows: a. Kafka's org.apache.kafka.tools.ProducerPerformance (run with java -cp the classpath) on
its own topic with the same partitions: transactions of about --batch-events records (the
transaction duration comes from a short calibration run), acks=all, --record-size bytes.
b. One Factlog node (KafkaStore, in this process): --clients tasks appending --batch-events
events at a time to streams in every partition, each with its expected version. c. b over a
(goal: at least 0.5). d. Single-event appends from --single-clients tasks. e. A second node
(`factlog serve --backend kafka`, its own process) takes its share of the shards and is killed
with SIGKILL: the time until this node owns every shard again and appends to them succeed.
Every acknowledged event is read back, or the run fails. The topics (named after a prefix no
other run uses) are deleted at the end.

The session timeout needs a broker whose group.min.session.timeout.ms allows it (Kafka's
default minimum is 6 s; scripts/kafka.sh sets 1 s).")]
pub struct KafkaArgs {
    /// The Kafka brokers, host:port,...
    #[arg(long, env = "FACTLOG_TEST_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    brokers: Option<String>,

    /// The Java classpath of Kafka's jars (`scripts/kafka.sh classpath` prints it).
    #[arg(
        long,
        env = "FACTLOG_TEST_KAFKA_CLASSPATH",
        value_name = "CLASSPATH",
        hide_env_values = true
    )]
    kafka_classpath: Option<String>,

    /// Partitions of the topics (Factlog's shards) [default: 4].
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,

    /// Bytes of each record (each event's data) [default: 256].
    #[arg(long, value_name = "BYTES")]
    record_size: Option<usize>,

    /// Events per Factlog append; records per Kafka transaction [default: 1000].
    #[arg(long, value_name = "N")]
    batch_events: Option<u64>,

    /// Concurrent clients of the batched appends [default: 4].
    #[arg(long, value_name = "N")]
    clients: Option<usize>,

    /// Concurrent clients of the single-event appends [default: 64].
    #[arg(long, value_name = "N")]
    single_clients: Option<usize>,

    /// Seconds each workload runs [default: 20; 2 with --quick].
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,

    /// The session timeout of both nodes of the takeover [default: 3].
    #[arg(long, value_name = "S")]
    session_timeout_seconds: Option<f64>,

    /// Small sizes: a smoke test (every step and check runs), not a measurement; writes no
    /// documentation.
    #[arg(long)]
    quick: bool,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,

    /// Write the report into this Markdown file (docs/benchmarks.md), between its
    /// `factlog bench kafka` markers.
    #[arg(long, value_name = "FILE")]
    write_docs: Option<PathBuf>,

    /// Put the temporary directory (the nodes' replicas) in this directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub async fn run(data_dir: &Path, args: Args, out: &mut Out) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCommand::Compare(compare)) => return run_compare(data_dir, compare, out).await,
        Some(BenchCommand::Kafka(kafka)) => return run_kafka(data_dir, kafka, out).await,
        None => {}
    }
    let mut config = if args.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(events) = args.events {
        config.events = events;
    }
    if let Some(store_events) = args.store_events {
        config.store_events = store_events;
    }
    if let Some(seconds) = args.scenario_seconds {
        config.scenario_time = Duration::from_secs(seconds);
    }
    let base = match args.dir {
        Some(dir) => dir,
        None => bench::default_base_dir(data_dir),
    };
    bench::run(config, &base, out).await
}

/// The hidden `bench-child` command: a store in another process, for scenario f.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// The store's directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,

    #[arg(long, value_enum)]
    mode: ChildMode,
}

pub async fn run_child(args: ChildArgs, out: &mut Out) -> anyhow::Result<()> {
    bench::child::run(&args.dir, args.mode, out).await
}

/// The settings of `bench kafka`, checked: a usage error before anything runs.
fn kafka_config(args: &KafkaArgs) -> Result<bench::kafka::Config, UsageError> {
    let brokers = args
        .brokers
        .clone()
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| {
            UsageError(
            "no Kafka brokers: pass --brokers HOST:PORT,... or run under `scripts/kafka.sh run \
             --`, which starts a broker and sets FACTLOG_TEST_KAFKA_BROKERS"
                .into(),
        )
        })?;
    let classpath = args
        .kafka_classpath
        .clone()
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            UsageError(
                "no Kafka classpath (for ProducerPerformance): pass --kafka-classpath \
                 \"$(scripts/kafka.sh classpath)\" or run under `scripts/kafka.sh run --`, which \
                 sets FACTLOG_TEST_KAFKA_CLASSPATH"
                    .into(),
            )
        })?;
    let mut config = bench::kafka::Config::new(brokers, classpath, args.quick);
    if let Some(n) = args.partitions {
        config.partitions = n;
    }
    if let Some(n) = args.record_size {
        config.record_size = n;
    }
    if let Some(n) = args.batch_events {
        config.batch_events = n;
    }
    if let Some(n) = args.clients {
        config.clients = n;
    }
    if let Some(n) = args.single_clients {
        require(
            n > 0 && n <= 10_000,
            "--single-clients must be between 1 and 10000",
        )?;
        config.single_clients = n;
    }
    if let Some(s) = args.seconds {
        require(
            s.is_finite() && s > 0.0 && s <= 3600.0,
            "--seconds must be above 0 and at most 3600",
        )?;
        config.budget = Duration::from_secs_f64(s);
    }
    if let Some(s) = args.session_timeout_seconds {
        require(
            s.is_finite() && (1.0..=300.0).contains(&s),
            "--session-timeout-seconds must be between 1 and 300",
        )?;
        config.session_timeout = Duration::from_secs_f64(s);
    }
    require(
        !(args.quick && args.write_docs.is_some()),
        "--quick runs a smoke test, whose figures do not belong in the documentation: leave out \
         --write-docs or --quick",
    )?;
    config.validate().map_err(UsageError)?;
    // The script that starts the broker names itself; run directly, this command does.
    config.command = std::env::var("FACTLOG_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("factlog {}", args.join(" "))
    });
    Ok(config)
}

fn require(ok: bool, message: &str) -> Result<(), UsageError> {
    if ok {
        Ok(())
    } else {
        Err(UsageError(message.into()))
    }
}

async fn run_kafka(data_dir: &Path, args: KafkaArgs, out: &mut Out) -> anyhow::Result<()> {
    let config = kafka_config(&args)?;
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => bench::default_base_dir(data_dir),
    };
    let outcome = bench::kafka::run(config, &base, out).await?;
    if let Some(path) = &args.json_out {
        let text = serde_json::to_string_pretty(&outcome.json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if let Some(path) = &args.write_docs {
        let doc = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        std::fs::write(path, bench::kafka::splice(&doc, &outcome.markdown()))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if out.json() {
        out.json_line(&outcome.json())?;
    } else {
        out.line(outcome.text())?;
    }
    Ok(())
}

async fn run_compare(data_dir: &Path, args: CompareArgs, out: &mut Out) -> anyhow::Result<()> {
    use crate::bench::compare;
    let mut config = if args.quick {
        compare::Config::quick()
    } else {
        compare::Config::full()
    };
    if let Some(seconds) = args.seconds {
        anyhow::ensure!(
            seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0,
            "--seconds must be above 0 and at most 3600"
        );
        config.budget = Duration::from_secs_f64(seconds);
    }
    config.only_workloads = args.workloads;
    if let Some(streams) = args.read_streams {
        anyhow::ensure!(streams > 0, "--read-streams must be at least 1");
        config.read_streams = streams;
    }
    let peers = compare::Peers {
        postgres_url: args.postgres_url,
        redis_always_url: args.redis_always_url,
        redis_everysec_url: args.redis_everysec_url,
        nats_url: args.nats_url,
        kafka_brokers: args.kafka_brokers.filter(|b| !b.trim().is_empty()),
        factlog_exe: None,
        only: args.only,
        require_all: args.require_all,
    };
    // The script that starts the servers names itself; run directly, this command does.
    let command = std::env::var("FACTLOG_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("factlog {}", args.join(" "))
    });
    let base = match args.dir {
        Some(dir) => dir,
        None => bench::default_base_dir(data_dir),
    };
    let report = compare::run(config, peers, &base, command, out).await?;
    if let Some(path) = &args.json_out {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if let Some(path) = &args.write_docs {
        let doc = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        std::fs::write(path, compare::splice(&doc, &report.markdown()))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if out.json() {
        out.json_line(&report.json())?;
    } else {
        out.line(report.markdown())?;
    }
    Ok(())
}
