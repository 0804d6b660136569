//! Factlog's side: appends through one in-process `KafkaStore` node, as an application makes
//! them (the `EventStore` trait, each append with the expected version of its stream), and the
//! check that every acknowledged event reads back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use factlog_kafka::KafkaStore;
use factlog_store::{EventStore, ExpectedVersion, ReadError, ReadStream, StreamFrom, StreamName};

use crate::bench::data::Payloads;

/// Events per page when reading streams back.
const READ_PAGE: usize = 4096;

/// What one workload did.
#[derive(Debug)]
pub struct Load {
    pub events: u64,
    pub appends: u64,
    pub elapsed: Duration,
    /// Per append, sorted.
    pub latencies: Vec<Duration>,
    /// Every stream written and the events acknowledged to it.
    pub streams: Vec<(StreamName, u64)>,
}

impl Load {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `count` stream names of `category` in partition `partition` of the store, made from
/// `tag` and a counter.
pub fn streams_in(
    store: &KafkaStore,
    category: &str,
    tag: &str,
    partition: u32,
    count: usize,
) -> Vec<StreamName> {
    let mut out = Vec::with_capacity(count);
    let mut i = 0u64;
    while out.len() < count {
        let name = StreamName::new(format!("{category}-{tag}n{i}")).expect("a valid stream name");
        if store.partition_of(&name) == partition {
            out.push(name);
        }
        i += 1;
    }
    out
}

/// The expected version of a stream holding `count` events.
fn expected(count: u64) -> ExpectedVersion {
    match count {
        0 => ExpectedVersion::NoStream,
        n => ExpectedVersion::Exact(n - 1),
    }
}

/// One append of one event to a stream of `category` in every partition: creates the
/// category's topic and warms every shard's writer, so that neither is measured.
pub async fn warm_up(
    store: &Arc<KafkaStore>,
    payloads: &Payloads,
    category: &str,
    partitions: u32,
) -> anyhow::Result<()> {
    for partition in 0..partitions {
        let stream = streams_in(store, category, "warmup", partition, 1).remove(0);
        store
            .append(&stream, ExpectedVersion::Any, payloads.events(0, 1))
            .await
            .with_context(|| format!("warm-up append to {stream}"))?;
    }
    Ok(())
}

/// `clients` concurrent tasks, each appending `batch` events at a time to its own streams
/// (`streams_per_partition` in each partition, taken in turn so that every client writes to
/// every partition) with the expected version it tracks, until `budget` has passed.
pub async fn appends(
    store: &Arc<KafkaStore>,
    payloads: &Arc<Payloads>,
    category: &str,
    clients: usize,
    batch: u64,
    streams_per_partition: usize,
    budget: Duration,
) -> anyhow::Result<Load> {
    let partitions = store.options().partitions;
    let started = Instant::now();
    let deadline = started + budget;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        // Stream i of the client is in partition i / streams_per_partition.
        let streams: Vec<StreamName> = (0..partitions)
            .flat_map(|p| {
                streams_in(
                    store,
                    category,
                    &format!("c{client}"),
                    p,
                    streams_per_partition,
                )
            })
            .collect();
        let store = store.clone();
        let payloads = payloads.clone();
        tasks.push(tokio::spawn(async move {
            let mut counts = vec![0u64; streams.len()];
            let mut latencies = Vec::new();
            let mut n = client as u64;
            let mut next_event = client as u64 * 7919;
            while Instant::now() < deadline {
                let partition = n % u64::from(partitions);
                let turn = (n / u64::from(partitions)) % streams_per_partition as u64;
                let i = (partition * streams_per_partition as u64 + turn) as usize;
                let events = payloads.events(next_event, batch);
                let t = Instant::now();
                store
                    .append(&streams[i], expected(counts[i]), events)
                    .await
                    .with_context(|| {
                        format!(
                            "append of {batch} events to {} at version {}",
                            streams[i], counts[i]
                        )
                    })?;
                latencies.push(t.elapsed());
                counts[i] += batch;
                n += 1;
                next_event += batch;
            }
            anyhow::Ok((
                latencies,
                streams.into_iter().zip(counts).collect::<Vec<_>>(),
            ))
        }));
    }
    let mut load = Load {
        events: 0,
        appends: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        streams: Vec::new(),
    };
    let mut failure = None;
    for task in tasks {
        match task.await.context("a client task panicked")? {
            Ok((latencies, streams)) => {
                load.latencies.extend(latencies);
                load.streams.extend(streams);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    load.elapsed = started.elapsed();
    if let Some(e) = failure {
        return Err(e);
    }
    load.latencies.sort_unstable();
    load.appends = load.latencies.len() as u64;
    load.events = load.streams.iter().map(|(_, n)| n).sum();
    ensure!(load.appends > 0, "no append finished within {budget:?}");
    Ok(load)
}

/// Reads every stream back through the store and checks that it holds exactly the events
/// acknowledged to it, versions 0, 1, 2, ...; the events read.
pub async fn verify(store: &KafkaStore, streams: &[(StreamName, u64)]) -> anyhow::Result<u64> {
    let mut total = 0;
    for (stream, acknowledged) in streams {
        let mut read = 0u64;
        loop {
            let options = ReadStream {
                from: StreamFrom::Version(read),
                limit: READ_PAGE,
                ..ReadStream::default()
            };
            let page = match store.read_stream(stream, options).await {
                Ok(page) => page,
                // A stream no append reached (the time was up first) must not exist.
                Err(ReadError::StreamNotFound(_)) if read == 0 => Vec::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {stream} back")),
            };
            for (i, event) in page.iter().enumerate() {
                ensure!(
                    event.version == read + i as u64,
                    "{stream}: version {} where {} was expected",
                    event.version,
                    read + i as u64
                );
            }
            read += page.len() as u64;
            if page.len() < READ_PAGE {
                break;
            }
        }
        if read != *acknowledged {
            bail!(
                "{stream}: {acknowledged} events were acknowledged, {read} read back: \
                 acknowledged events are missing or extra events were written"
            );
        }
        total += read;
    }
    Ok(total)
}
