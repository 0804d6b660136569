//! Scenarios a to e: the disk's fsync latency, writes, and reads.
//!
//! The store scenarios go through the [`EventStore`] trait only, as an application would. Each
//! returns raw samples; [`crate::bench`] turns them into rows. Every loop stops at its size or at
//! its time budget, whichever comes first, and reports what it actually did.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use factlog_store::{
    AllFrom, EventStore, ExpectedVersion, Position, ReadAll, ReadStream, StreamAppend, StreamName,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::bench::data::Payloads;

/// Events per append in scenario b.
pub const BATCH_EVENTS: u64 = 1000;
/// Concurrent writers in scenario c.
pub const WRITERS: u64 = 64;
/// Events per stream of the large store (scenario e).
pub const STREAM_EVENTS: u64 = 100;
/// Streams per `append_multi` when building the large store: 10 x 100 = 1000 events per append.
const BUILD_STREAMS_PER_APPEND: u64 = 10;
/// Appends in flight while building, so that the writer batches them into large group commits
/// while the next ones are made.
const BUILD_IN_FLIGHT: u64 = 4;
/// Page size of the `$all` read (scenario d).
pub const READ_ALL_PAGE: usize = 4096;

/// Events done in a time.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub events: u64,
    pub elapsed: Duration,
    /// Whether the time budget stopped the scenario before its size was reached.
    pub stopped_early: bool,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// a. Appends 4 KiB to a file and `sync_data`s it, `iterations` times: the floor under every
/// durable append on this disk. Sorted latencies.
pub fn fsync_latency(
    dir: &Path,
    iterations: usize,
    budget: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("could not create {}", path.display()))?;
    let block = vec![0xa5u8; 4096];
    let started = Instant::now();
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        // Appending grows the file, so the sync also writes its new size: what the log pays.
        file.write_all(&block)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("could not write and sync {}", path.display()))?;
        samples.push(t.elapsed());
        if started.elapsed() > budget {
            break;
        }
    }
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("could not remove {}", path.display()))?;
    samples.sort();
    Ok(samples)
}

/// b. One writer appends `events` in appends of [`BATCH_EVENTS`], awaiting each before the
/// next: durable throughput when the application batches.
pub async fn batched_appends(
    store: &dyn EventStore,
    payloads: &Payloads,
    events: u64,
    budget: Duration,
) -> anyhow::Result<Throughput> {
    let started = Instant::now();
    let mut written = 0;
    let mut append = 0u64;
    while written < events {
        if started.elapsed() > budget {
            break;
        }
        let count = BATCH_EVENTS.min(events - written);
        let stream = StreamName::new(format!("batched-{append}"))?;
        // Making the events is part of the loop: a real writer has to make them too.
        let batch = payloads.events(written, count);
        store
            .append(&stream, ExpectedVersion::NoStream, batch)
            .await
            .with_context(|| format!("append {append} of scenario b failed"))?;
        written += count;
        append += 1;
    }
    Ok(Throughput {
        events: written,
        elapsed: started.elapsed(),
        stopped_early: written < events,
    })
}

/// c. [`WRITERS`] tasks each append one event at a time to their own stream, with the exact
/// expected version, awaiting each acknowledgement: many small durable writers. Throughput and
/// sorted per-append latencies.
pub async fn concurrent_writers(
    store: Arc<dyn EventStore>,
    payloads: Arc<Payloads>,
    events: u64,
    budget: Duration,
) -> anyhow::Result<(Throughput, Vec<Duration>)> {
    let per_writer = events.div_ceil(WRITERS).max(1);
    let started = Instant::now();
    let deadline = started + budget;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let payloads = payloads.clone();
        tasks.spawn(async move {
            let stream = StreamName::new(format!("writer-{writer}"))?;
            let mut latencies = Vec::with_capacity(per_writer as usize);
            for version in 0..per_writer {
                if Instant::now() >= deadline {
                    break;
                }
                let expected = match version.checked_sub(1) {
                    None => ExpectedVersion::NoStream,
                    Some(last) => ExpectedVersion::Exact(last),
                };
                let event = payloads.event(writer * per_writer + version);
                let t = Instant::now();
                store
                    .append(&stream, expected, vec![event])
                    .await
                    .with_context(|| format!("writer {writer} failed at version {version}"))?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.context("a writer task panicked")??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let written = latencies.len() as u64;
    Ok((
        Throughput {
            events: written,
            elapsed,
            stopped_early: written < per_writer * WRITERS,
        },
        latencies,
    ))
}

/// d. Reads all of `$all` once to warm the cache, then times a second full pass in pages of
/// [`READ_ALL_PAGE`].
pub async fn read_all_warm(store: &dyn EventStore, budget: Duration) -> anyhow::Result<Throughput> {
    let (warm, _) = read_all_pass(store, budget).await?;
    let started = Instant::now();
    let (events, stopped_early) = read_all_pass(store, budget).await?;
    let elapsed = started.elapsed();
    if !stopped_early && events != warm {
        bail!("the two passes over $all read {warm} and {events} events; the store changed");
    }
    Ok(Throughput {
        events,
        elapsed,
        stopped_early,
    })
}

/// Reads `$all` from the start to the end; the events read, and whether the budget cut it short.
async fn read_all_pass(store: &dyn EventStore, budget: Duration) -> anyhow::Result<(u64, bool)> {
    let started = Instant::now();
    let mut from = AllFrom::Start;
    let mut seen: Option<Position> = None;
    let mut events = 0u64;
    // Touching every event's data keeps the read honest: nothing is skipped unread.
    let mut data_bytes = 0usize;
    loop {
        if started.elapsed() > budget {
            return Ok((events, true));
        }
        // Positions are opaque: each page starts at the last event of the previous one (reads
        // include their start) and skips it.
        let limit = READ_ALL_PAGE + usize::from(seen.is_some());
        let page = store
            .read_all(ReadAll {
                from,
                limit,
                ..ReadAll::forward()
            })
            .await?;
        let fetched = page.len();
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        for event in page.iter().filter(|e| Some(e.position) != seen) {
            data_bytes += event.data.len();
            events += 1;
        }
        if fetched < limit {
            break;
        }
        from = AllFrom::Position(last);
        seen = Some(last);
    }
    std::hint::black_box(data_bytes);
    Ok((events, false))
}

/// The streams of the large store.
pub fn large_store_stream(index: u64) -> anyhow::Result<StreamName> {
    Ok(StreamName::new(format!("account-{index:08}"))?)
}

/// e (setup). Writes `streams` streams of [`STREAM_EVENTS`] events each, ten streams per
/// `append_multi`, with a few appends in flight.
pub async fn build_large_store(
    store: Arc<dyn EventStore>,
    payloads: Arc<Payloads>,
    streams: u64,
) -> anyhow::Result<Throughput> {
    let groups = streams.div_ceil(BUILD_STREAMS_PER_APPEND);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..BUILD_IN_FLIGHT {
        let store = store.clone();
        let payloads = payloads.clone();
        tasks.spawn(async move {
            let mut written = 0u64;
            let mut group = lane;
            while group < groups {
                let first = group * BUILD_STREAMS_PER_APPEND;
                let last = (first + BUILD_STREAMS_PER_APPEND).min(streams);
                let mut parts = Vec::new();
                for index in first..last {
                    parts.push(StreamAppend {
                        stream: large_store_stream(index)?,
                        expected: ExpectedVersion::NoStream,
                        events: payloads.events(index * STREAM_EVENTS, STREAM_EVENTS),
                    });
                }
                store.append_multi(parts).await.with_context(|| {
                    format!("building the large store failed at stream {first}")
                })?;
                written += (last - first) * STREAM_EVENTS;
                group += BUILD_IN_FLIGHT;
            }
            anyhow::Ok(written)
        });
    }
    let mut written = 0;
    while let Some(joined) = tasks.join_next().await {
        written += joined.context("a build task panicked")??;
    }
    Ok(Throughput {
        events: written,
        elapsed: started.elapsed(),
        stopped_early: false,
    })
}

/// e. Reads `reads` random whole streams of the large store; sorted latencies.
pub async fn read_random_streams(
    store: &dyn EventStore,
    streams: u64,
    reads: usize,
    budget: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let started = Instant::now();
    let mut samples = Vec::with_capacity(reads);
    for _ in 0..reads {
        if started.elapsed() > budget {
            break;
        }
        let stream = large_store_stream(rng.gen_range(0..streams))?;
        let t = Instant::now();
        let events = store
            .read_stream(&stream, ReadStream::forward().limit(STREAM_EVENTS as usize))
            .await?;
        samples.push(t.elapsed());
        ensure!(
            events.len() as u64 == STREAM_EVENTS,
            "stream {stream} returned {} events, not {STREAM_EVENTS}",
            events.len()
        );
    }
    samples.sort();
    Ok(samples)
}
