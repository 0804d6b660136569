//! Factlog itself, through the store API: the embedded store as a library, the same API over
//! HTTP to a `factlog serve` process ([`factlog_client::HttpStore`]), and a node of a store on
//! Kafka in this process ([`factlog_kafka::KafkaStore`], with the brokers' side in
//! [`super::kafka`]).
//!
//! Versions are Factlog's own (the first event is version 0), so the suite's token "n events"
//! is `NoStream` for 0 and `Exact(n - 1)` otherwise.
//!
//! On Kafka, `$all` is ordered per partition: reading everything and the catch-up subscription
//! return every event of the node's replica in the order it applied them, which the workloads'
//! counts check as for the other peers. An append on a node waits until its replica shows it,
//! so a read after an acknowledged append sees it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::Bytes;
use factlog_client::HttpStore;
use factlog_kafka::{KafkaOptions, KafkaStore};
use factlog_log::{EmbeddedStore, Options, SyncMode};
use factlog_store::{
    AppendError, ContentType, EventFilter, EventStore, EventType, ExpectedVersion, NewEvent,
    ReadAll, ReadError, ReadStream, StreamName, SubscribeFrom,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::{Appended, Counters, EVENT_TYPE, Expect, Peer, kafka};

/// Events per page of `read_all`.
const PAGE: usize = 4096;

/// How long the Kafka node may take to own every shard after it opened.
const KAFKA_OWNERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// Factlog on any backend of the store API.
pub struct FactlogPeer<S> {
    store: Arc<S>,
    event_type: EventType,
    content_type: ContentType,
    /// The server process behind an [`HttpStore`], stopped by [`Peer::shut_down`].
    server: Mutex<Option<Child>>,
    /// Closes the store (an embedded store's final sync; a Kafka node leaving its group), run
    /// by [`Peer::shut_down`].
    close: Option<Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>>,
    /// Whether an embedded store runs in bulk-import mode.
    bulk: bool,
    /// An embedded store's write counters.
    counters: Option<Box<dyn Fn() -> Counters + Send + Sync>>,
    /// Where a Kafka node's store lives on the cluster; set by [`FactlogPeer::kafka`].
    kafka: Option<KafkaPlace>,
}

/// The cluster and the topic prefix of a store on Kafka, and its shards.
#[derive(Debug, Clone)]
struct KafkaPlace {
    brokers: String,
    prefix: String,
    partitions: u32,
}

impl<S> std::fmt::Debug for FactlogPeer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactlogPeer").finish_non_exhaustive()
    }
}

impl<S: EventStore> FactlogPeer<S> {
    fn new(store: Arc<S>, server: Option<Child>) -> Self {
        Self {
            store,
            close: None,
            bulk: false,
            counters: None,
            kafka: None,
            event_type: EventType::new(EVENT_TYPE).expect("a valid event type"),
            content_type: ContentType::json(),
            server: Mutex::new(server),
        }
    }
}

impl FactlogPeer<EmbeddedStore> {
    /// The embedded store in `dir`, acknowledging appends after fsync (`durable`) or once
    /// written (bulk-import mode).
    pub fn embedded(dir: &Path, durable: bool) -> anyhow::Result<Self> {
        let options = Options {
            sync_mode: if durable {
                SyncMode::Durable
            } else {
                SyncMode::BulkImport
            },
            ..Options::default()
        };
        let store = EmbeddedStore::open(dir, options)
            .with_context(|| format!("could not open a store in {}", dir.display()))?;
        let store = Arc::new(store);
        let closing = store.clone();
        let mut peer = Self::new(store, None);
        peer.close = Some(Box::new(move || {
            closing.close();
            Box::pin(std::future::ready(()))
        }));
        peer.bulk = !durable;
        let counted = peer.store.clone();
        peer.counters = Some(Box::new(move || {
            let stats = counted.stats();
            Counters {
                appends: stats.appends,
                fsyncs: stats.fsyncs,
                checkpoints: stats.checkpoints,
            }
        }));
        Ok(peer)
    }
}

impl FactlogPeer<HttpStore> {
    /// Starts `exe serve` on a fresh data directory `dir` on a free loopback port, and talks to
    /// it over HTTP.
    pub async fn server(exe: &PathBuf, dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg("--json")
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("FACTLOG_TOKENS")
            .env_remove("FACTLOG_CONFIG")
            .env_remove("FACTLOG_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("could not start {} serve", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("factlog serve did not say where it listens within 60 s")?
            .context("could not read factlog serve's output")?;
        let Some(first) = first else {
            bail!(
                "factlog serve exited before listening: {:?}",
                child.wait().await
            );
        };
        let url = serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v["listening"].as_str().map(str::to_owned))
            .with_context(|| format!("unexpected first line from factlog serve: {first}"))?;
        // Keep reading its output so that the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let store = HttpStore::new(&url, None).context("could not make the HTTP client")?;
        Ok(Self::new(Arc::new(store), Some(child)))
    }
}

impl FactlogPeer<KafkaStore> {
    /// A node of a new store on the Kafka cluster at `brokers`: topics named after a prefix no
    /// other run uses (`factlog.bench.<pid>.<nanos>.`), its replica in `dir`. The topics get
    /// the replication factor of a production cluster as far as the brokers allow (3, at most
    /// one per broker) and `min.insync.replicas` 2 (at most the replication factor), so that
    /// `acks=all` means what it means there. Ready once the node owns every shard.
    pub async fn kafka(brokers: &str, dir: &Path) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut options = KafkaOptions::new(brokers, dir);
        options.topic_prefix = format!("factlog.bench.{}.{nanos}.", std::process::id());
        options.node_id = "bench-compare".into();
        // The 64 writers of the busiest workload, on a loaded machine, wait for their shard's
        // transactions longer than an interactive client would.
        options.append_timeout = Duration::from_secs(30);
        let broker_count = kafka::broker_count(brokers).await?;
        options.replication_factor = broker_count.clamp(1, 3) as i16;
        options.min_insync_replicas = options.replication_factor.min(2) as u16;
        let place = KafkaPlace {
            brokers: brokers.to_owned(),
            prefix: options.topic_prefix.clone(),
            partitions: options.partitions,
        };
        let store = match KafkaStore::open(options).await {
            Ok(store) => store,
            Err(e) => {
                // A failed open stops what it started, but may have made topics.
                let _ = kafka::delete_topics(brokers, &place.prefix).await;
                return Err(e).with_context(|| {
                    format!("could not open a Factlog node on Kafka at {brokers}")
                });
            }
        };
        let started = Instant::now();
        while store.owned_partitions().len() < place.partitions as usize {
            if started.elapsed() > KAFKA_OWNERSHIP_TIMEOUT {
                let owned = store.owned_partitions();
                store.close().await;
                let _ = kafka::delete_topics(brokers, &place.prefix).await;
                bail!(
                    "the Factlog node on Kafka owns shards {owned:?} of {} after {:?}",
                    place.partitions,
                    started.elapsed()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let closing = store.clone();
        let mut peer = Self::new(store, None);
        peer.close = Some(Box::new(move || {
            let closing = closing.clone();
            Box::pin(async move { closing.close().await })
        }));
        peer.kafka = Some(place);
        Ok(peer)
    }
}

fn stream_name(stream: &str) -> anyhow::Result<StreamName> {
    StreamName::new(stream).with_context(|| format!("bad stream name {stream}"))
}

fn expected(expect: Expect) -> ExpectedVersion {
    match expect {
        Expect::Any => ExpectedVersion::Any,
        Expect::Exact(0) => ExpectedVersion::NoStream,
        Expect::Exact(n) => ExpectedVersion::Exact(n - 1),
    }
}

#[async_trait]
impl<S: EventStore> Peer for FactlogPeer<S> {
    async fn about(&self) -> anyhow::Result<String> {
        if let Some(place) = &self.kafka {
            let settings = kafka::settings(&place.brokers, &place.prefix).await?;
            return Ok(format!(
                "Factlog {} on Kafka: one node in this process owning all {} shards, each \
                 written by an idempotent transactional producer with acks=all; reads from the \
                 node's replica; {}",
                env!("CARGO_PKG_VERSION"),
                place.partitions,
                settings.describe()
            ));
        }
        let mode = if self.server.lock().await.is_some() {
            "`factlog serve` on an embedded store, durable (fsync before the 201); HTTP/1.1 \
             keep-alive, JSON"
        } else if self.close.is_some() && self.bulk {
            "bulk-import mode: acknowledged once written, fsync every `write_batch_bytes_max` \
             bytes and on close"
        } else {
            "durable mode: fsync before the acknowledgement, shared by a group commit"
        };
        Ok(format!("Factlog {}, {mode}", env!("CARGO_PKG_VERSION")))
    }

    async fn reset(&self) -> anyhow::Result<()> {
        // Each run opens a fresh store (a new directory; on Kafka, topics named after a prefix
        // no other run uses): there is nothing to drop, and reset is called once, before
        // anything is written. Checked, so that a second call fails instead of measuring a
        // store that is not empty.
        let first = self.store.read_all(ReadAll::forward().limit(1)).await?;
        if !first.is_empty() {
            bail!("the store is not empty: a Factlog peer is reset only once, when it is new");
        }
        Ok(())
    }

    async fn prepare(&self, streams: &[String]) -> anyhow::Result<()> {
        if self.kafka.is_none() {
            return Ok(());
        }
        // The Kafka backend creates a category's topic on the first append to one of its
        // streams, which would be timed by the first workload to write it. An append that
        // expects a stream nobody writes to exist is refused after its category's topic is
        // made, and stores nothing.
        for stream in streams {
            let name = stream_name(stream)?;
            let unused = stream_name(&format!("{}-prepare", name.category()))?;
            let event = NewEvent::new(
                self.event_type.clone(),
                self.content_type.clone(),
                Bytes::from_static(b"{}"),
            );
            match self
                .store
                .append(&unused, ExpectedVersion::StreamExists, vec![event])
                .await
            {
                Err(AppendError::WrongExpectedVersion { .. }) => {}
                Ok(_) => bail!("preparing {unused}: an append to a missing stream was stored"),
                Err(e) => {
                    return Err(e).with_context(|| format!("preparing the category of {stream}"));
                }
            }
        }
        Ok(())
    }

    async fn append(
        &self,
        _session: usize,
        stream: &str,
        expect: Expect,
        events: &[Bytes],
    ) -> anyhow::Result<Appended> {
        let stream = stream_name(stream)?;
        let events = events
            .iter()
            .map(|data| {
                NewEvent::new(
                    self.event_type.clone(),
                    self.content_type.clone(),
                    data.clone(),
                )
            })
            .collect();
        match self.store.append(&stream, expected(expect), events).await {
            Ok(result) => Ok(Appended::Done {
                next: result.last_version + 1,
            }),
            Err(AppendError::WrongExpectedVersion { .. }) => Ok(Appended::Conflict),
            Err(e) => Err(e).context("append failed"),
        }
    }

    async fn current(&self, _session: usize, stream: &str) -> anyhow::Result<u64> {
        let info = self.store.stream_info(&stream_name(stream)?).await?;
        Ok(info.map_or(0, |info| info.last_version + 1))
    }

    async fn read_stream(&self, _session: usize, stream: &str) -> anyhow::Result<Vec<Bytes>> {
        let stream = stream_name(stream)?;
        let mut data = Vec::new();
        let mut from = 0;
        loop {
            let page = match self
                .store
                .read_stream(
                    &stream,
                    ReadStream::forward().from_version(from).limit(PAGE),
                )
                .await
            {
                Ok(page) => page,
                Err(ReadError::StreamNotFound(_)) => return Ok(data),
                Err(e) => return Err(e).context("read_stream failed"),
            };
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                from = last.version + 1;
            }
            data.extend(page.into_iter().map(|event| event.data));
            if !full {
                return Ok(data);
            }
        }
    }

    async fn read_all(
        &self,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut read = 0;
        let mut after = None;
        loop {
            let mut options = ReadAll::forward().limit(PAGE);
            if let Some(position) = after {
                options = options.from_position(position);
            }
            let page = self.store.read_all(options).await?;
            let full = page.len() == PAGE;
            let mut new = 0;
            for event in &page {
                // A page starts at the last position of the one before it.
                if Some(event.position) == after {
                    continue;
                }
                visit(&event.data);
                new += 1;
            }
            read += new;
            after = page.last().map(|event| event.position).or(after);
            if !full || new == 0 {
                return Ok(read);
            }
        }
    }

    async fn catch_up(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut subscription = self
            .store
            .subscribe_all(SubscribeFrom::Start, EventFilter::default());
        let mut received = 0;
        while received < count {
            match subscription.next().await {
                Some(event) => {
                    visit(&event.context("subscription failed")?.data);
                    received += 1;
                }
                None => break,
            }
        }
        Ok(received)
    }

    fn counters(&self) -> Option<Counters> {
        self.counters.as_ref().map(|counters| counters())
    }

    async fn shut_down(&self) -> anyhow::Result<()> {
        if let Some(close) = &self.close {
            close().await;
        }
        if let Some(place) = &self.kafka {
            // The run's topics are of no use to anyone once it is over; failing to delete them
            // does not make the figures wrong, so it is said and the run goes on.
            if let Err(e) = kafka::delete_topics(&place.brokers, &place.prefix).await {
                tracing::warn!(
                    "the topics {}* are left on {}: {e:#}",
                    place.prefix,
                    place.brokers
                );
            }
        }
        if let Some(mut child) = self.server.lock().await.take() {
            // SIGTERM first: the server closes its store cleanly.
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                child.kill().await.context("could not stop factlog serve")?;
            }
        }
        Ok(())
    }
}
