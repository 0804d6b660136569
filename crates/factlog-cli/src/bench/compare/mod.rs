//! `factlog bench compare`: Factlog against the stores users would choose instead, on the same
//! workload, in the same run.
//!
//! The peers (see [`peers`]) are PostgreSQL and SQLite as event stores, Redis Streams with
//! `appendfsync always` and `everysec`, and NATS JetStream; Factlog runs embedded (durable and
//! in bulk-import mode), over HTTP (`factlog serve` in its own process) and as a node of a
//! store on Kafka (in this process). PostgreSQL, Redis, NATS and Kafka are servers the caller
//! starts and names by URL or broker list (`scripts/bench-compare.sh` starts and stops them on
//! loopback); a peer without one is left out, and said so.
//!
//! Peers run one after the other, each on a fresh store, through the same workloads (see
//! [`workloads`]): reads of one stream, aggregate loads, reading everything, a catch-up
//! subscription, batched appends, concurrent single-event appends (1, 8 and 64 writers), and
//! appends with expected-version conflicts. The report (see [`report`]) puts each workload in
//! one table with the ratio of Factlog to each peer of the same durability.

mod peers;
mod report;
mod workloads;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::data::Payloads;
use crate::bench::scenarios;
use crate::output::Out;
use peers::factlog::FactlogPeer;
use peers::nats::NatsPeer;
use peers::postgres::PostgresPeer;
use peers::redis_streams::RedisStreamsPeer;
use peers::sqlite::SqlitePeer;
use peers::{Durability, Peer};
use report::Workload;
use report::{Measurement, PeerInfo};
pub use report::{Report, splice};
use workloads::{Choice, Data};

/// Sizes and budgets of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Streams of 100 events in the data set the read workloads read.
    pub read_streams: u64,
    /// Reads of the read-one-stream and aggregate-load workloads (each also stops at the budget).
    pub stream_reads: usize,
    /// Streams the write workloads choose from.
    pub write_streams: u64,
    /// Time each write workload runs.
    pub budget: Duration,
    /// Concurrent writers of the single-event workload, one run each.
    pub writers: Vec<usize>,
    /// Only the workloads with these ids, when given.
    pub only_workloads: Vec<String>,
    pub quick: bool,
}

impl Config {
    pub fn full() -> Self {
        Self {
            read_streams: 10_000,
            stream_reads: 10_000,
            write_streams: 10_000,
            budget: Duration::from_secs(5),
            writers: vec![1, 8, 64],
            only_workloads: Vec::new(),
            quick: false,
        }
    }

    pub fn quick() -> Self {
        Self {
            read_streams: 40,
            stream_reads: 40,
            write_streams: 1_000,
            budget: Duration::from_millis(300),
            writers: vec![1, 8, 64],
            only_workloads: Vec::new(),
            quick: true,
        }
    }

    /// Events of the read data set.
    pub fn read_events(&self) -> u64 {
        self.read_streams * workloads::STREAM_EVENTS
    }

    /// Every workload, in the order they run.
    pub fn all_workloads(&self) -> Vec<Workload> {
        let mut all = vec![
            Workload::ReadStream,
            Workload::AggregateLoad,
            Workload::ReadAll,
            Workload::CatchUp,
        ];
        for choice in [Choice::Uniform, Choice::Zipf] {
            all.push(Workload::Batched(choice));
        }
        for &writers in &self.writers {
            for choice in [Choice::Uniform, Choice::Zipf] {
                all.push(Workload::Concurrent(writers, choice));
            }
        }
        all.push(Workload::Conflicts);
        all
    }

    /// The workloads this run measures.
    fn workloads(&self) -> Vec<Workload> {
        self.all_workloads()
            .into_iter()
            .filter(|w| self.only_workloads.is_empty() || self.only_workloads.contains(&w.id()))
            .collect()
    }

    fn sessions(&self) -> usize {
        self.writers
            .iter()
            .copied()
            .chain([workloads::CONFLICT_WRITERS, 8])
            .max()
            .unwrap_or(1)
    }
}

/// Where the peers are.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub postgres_url: Option<String>,
    pub redis_always_url: Option<String>,
    pub redis_everysec_url: Option<String>,
    pub nats_url: Option<String>,
    /// Kafka brokers (`host:port,...`) for Factlog on Kafka.
    pub kafka_brokers: Option<String>,
    /// The `factlog` executable to run `serve` with (this one by default).
    pub factlog_exe: Option<PathBuf>,
    /// Only these peers (ids), when given.
    pub only: Vec<String>,
    /// Fail instead of leaving out a peer without URL.
    pub require_all: bool,
}

/// The peers, in the order they run: id, label, durability. Factlog on Kafka acknowledges once
/// the in-sync replicas have an append, before any fsync: its writes are compared with the
/// other stores that acknowledge before fsync, against Factlog's bulk-import mode.
const PEERS: [(&str, &str, Durability); 9] = [
    ("factlog", "Factlog embedded", Durability::Fsynced),
    ("factlog-http", "Factlog over HTTP", Durability::Fsynced),
    ("postgres", "PostgreSQL", Durability::Fsynced),
    ("sqlite", "SQLite", Durability::Fsynced),
    (
        "redis-always",
        "Redis Streams (always)",
        Durability::Fsynced,
    ),
    (
        "factlog-bulk",
        "Factlog embedded, bulk",
        Durability::NotFsynced,
    ),
    (
        "redis-everysec",
        "Redis Streams (everysec)",
        Durability::NotFsynced,
    ),
    ("nats", "NATS JetStream", Durability::NotFsynced),
    ("factlog-kafka", "Factlog on Kafka", Durability::Replicated),
];

pub fn peer_ids() -> impl Iterator<Item = &'static str> {
    PEERS.iter().map(|(id, _, _)| *id)
}

/// Runs the comparison in a temporary directory under `base`; the report.
pub async fn run(
    config: Config,
    peers: Peers,
    base: &Path,
    command: String,
    out: &mut Out,
) -> anyhow::Result<Report> {
    let known: Vec<String> = config.all_workloads().iter().map(|w| w.id()).collect();
    for id in &config.only_workloads {
        if !known.contains(id) {
            bail!(
                "unknown workload '{id}'; the workloads are {}",
                known.join(", ")
            );
        }
    }
    for id in &peers.only {
        if !peer_ids().any(|known| known == id) {
            bail!(
                "unknown peer '{id}'; the peers are {}",
                peer_ids().collect::<Vec<_>>().join(", ")
            );
        }
    }
    std::fs::create_dir_all(base)
        .with_context(|| format!("could not create {}", base.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("factlog-compare-")
        .tempdir_in(base)
        .with_context(|| {
            format!(
                "could not create a temporary directory in {}",
                base.display()
            )
        })?;
    let show = !out.json();
    let result = tokio::select! {
        result = run_in(&config, &peers, dir.path(), command, show) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted by Ctrl-C; no results")),
    };
    let path = dir.path().display().to_string();
    dir.close()
        .with_context(|| format!("could not remove {path}; remove it by hand"))?;
    result
}

fn progress(show: bool, message: &str) {
    if show {
        eprintln!("compare: {message}");
    }
}

async fn run_in(
    config: &Config,
    peers: &Peers,
    dir: &Path,
    command: String,
    show: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::new(config, dir, command);
    progress(show, "fsync latency of the disk");
    let fsync = {
        let dir = dir.to_path_buf();
        let iterations = if config.quick { 20 } else { 200 };
        let budget = Duration::from_secs(10);
        tokio::task::spawn_blocking(move || scenarios::fsync_latency(&dir, iterations, budget))
            .await
            .context("the fsync probe panicked")??
    };
    report.set_fsync(&fsync);

    let data = Arc::new(Data::new(Payloads::new().data().to_vec()));
    for (id, label, durability) in PEERS {
        if !peers.only.is_empty() && !peers.only.iter().any(|o| o == id) {
            continue;
        }
        let peer = match open(id, config, peers, dir).await? {
            Some(peer) => peer,
            None if peers.require_all => {
                bail!("no URL for the peer {id}: pass it (see --help), or leave it out with --only")
            }
            None => {
                progress(show, &format!("{label}: left out (no URL given)"));
                report.left_out(id, label);
                continue;
            }
        };
        let about = peer
            .about()
            .await
            .with_context(|| format!("{label}: about"))?;
        check_durability(id, durability, &about)?;
        progress(show, &format!("{label}: {about}"));
        report.peer(PeerInfo {
            id,
            label,
            durability,
            setting: about,
        });
        let result = measure(id, label, &peer, config, &data, &mut report, show).await;
        let stopped = peer.shut_down().await;
        result.context(label)?;
        stopped.with_context(|| format!("{label}: shutting down"))?;
    }
    Ok(report)
}

/// Refuses a server whose settings are not those its place in the comparison says.
fn check_durability(id: &str, durability: Durability, about: &str) -> anyhow::Result<()> {
    let expected = match id {
        "redis-always" => "appendfsync=always",
        "redis-everysec" => "appendfsync=everysec",
        "postgres" => "synchronous_commit=on",
        "factlog-kafka" => "no fsync before the acknowledgement",
        _ => return Ok(()),
    };
    if !about.contains(expected) {
        bail!(
            "the {id} server's settings do not say \"{expected}\" ({about}); it would be \
             compared as '{}' without being so",
            durability.label()
        );
    }
    Ok(())
}

/// Opens (connects to) one peer; `None` when it has no URL.
async fn open(
    id: &str,
    config: &Config,
    peers: &Peers,
    dir: &Path,
) -> anyhow::Result<Option<Arc<dyn Peer>>> {
    let sessions = config.sessions();
    let peer: Arc<dyn Peer> = match id {
        "factlog" => Arc::new(FactlogPeer::embedded(&dir.join("factlog"), true)?),
        "factlog-bulk" => Arc::new(FactlogPeer::embedded(&dir.join("factlog-bulk"), false)?),
        "factlog-http" => {
            let exe = match &peers.factlog_exe {
                Some(exe) => exe.clone(),
                None => std::env::current_exe().context("where is this factlog executable?")?,
            };
            Arc::new(FactlogPeer::server(&exe, &dir.join("factlog-http")).await?)
        }
        "sqlite" => Arc::new(SqlitePeer::open(&dir.join("sqlite.db"), sessions)?),
        "postgres" => match &peers.postgres_url {
            Some(url) => Arc::new(PostgresPeer::connect(url, sessions).await?),
            None => return Ok(None),
        },
        "redis-always" => match &peers.redis_always_url {
            Some(url) => Arc::new(RedisStreamsPeer::connect(url).await?),
            None => return Ok(None),
        },
        "redis-everysec" => match &peers.redis_everysec_url {
            Some(url) => Arc::new(RedisStreamsPeer::connect(url).await?),
            None => return Ok(None),
        },
        "nats" => match &peers.nats_url {
            Some(url) => Arc::new(NatsPeer::connect(url).await?),
            None => return Ok(None),
        },
        "factlog-kafka" => match &peers.kafka_brokers {
            Some(brokers) => {
                Arc::new(FactlogPeer::kafka(brokers, &dir.join("factlog-kafka")).await?)
            }
            None => return Ok(None),
        },
        other => bail!("unknown peer {other}"),
    };
    Ok(Some(peer))
}

/// Runs every workload on one peer, then checks that everything written is there.
async fn measure(
    id: &'static str,
    label: &str,
    peer: &Arc<dyn Peer>,
    config: &Config,
    data: &Arc<Data>,
    report: &mut Report,
    show: bool,
) -> anyhow::Result<()> {
    peer.reset().await.context("reset")?;
    peer.prepare(&workloads::stream_kinds(&config.writers))
        .await
        .context("preparing the store")?;
    let step = |what: &str| progress(show, &format!("{label}: {what}"));
    let mut record = |workload: report::Workload, sample: workloads::Sample| {
        report.push(Measurement {
            workload,
            peer: id,
            sample,
        });
    };
    let read_budget = if config.quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };

    step(&format!(
        "writing the read data set ({} streams of {} events)",
        config.read_streams,
        workloads::STREAM_EVENTS
    ));
    let started = Instant::now();
    workloads::populate(peer, data, config.read_streams).await?;
    step(&format!(
        "written in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let mut stored = config.read_events();

    for workload in config.workloads() {
        step(&workload.title());
        let before = peer.counters();
        let mut sample = match workload {
            Workload::ReadStream | Workload::AggregateLoad => {
                let fold = workload == Workload::AggregateLoad;
                let (streams, reads) = (config.read_streams, config.stream_reads);
                workloads::read_streams(peer, streams, reads, fold, read_budget).await?
            }
            Workload::ReadAll => workloads::read_all(peer, stored).await?,
            Workload::CatchUp => workloads::catch_up(peer, stored).await?,
            Workload::Batched(choice) => {
                let streams = config.write_streams;
                workloads::batched(peer, data, choice, streams, config.budget).await?
            }
            Workload::Concurrent(writers, choice) => {
                let streams = config.write_streams;
                workloads::concurrent(peer, data, writers, choice, streams, config.budget).await?
            }
            Workload::Conflicts => workloads::conflicts(peer, data, config.budget).await?,
        };
        if workload.writes() {
            stored += sample.events;
            if let (Some(before), Some(after)) = (before, peer.counters()) {
                let counted = before.describe_until(after);
                sample.note = Some(match sample.note.take() {
                    Some(note) => format!("{note}; {counted}"),
                    None => counted,
                });
            }
        }
        record(workload, sample);
    }

    step("checking that every acknowledged event is stored");
    let mut count = 0u64;
    let read = peer.read_all(&mut |_| count += 1).await?;
    if read != stored {
        bail!("{read} events are stored, {stored} appends were acknowledged");
    }
    report.verified(id, stored);
    Ok(())
}
