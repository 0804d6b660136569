//! The workloads, the same for every peer, each through [`Peer`] only.
//!
//! Every workload checks what it can while it measures, so that a peer (or Factlog) that loses
//! or doubles events, or lets two writers win one version, fails the run instead of posting a
//! figure: a stream read must return every event written to it, reading everything must return
//! every event stored, and the conflict workload counts the winners against the streams.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use rand::distributions::Distribution;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Zipf;
use serde::Serialize;
use tokio::task::JoinSet;

use super::peers::{Appended, Expect, Peer};

/// Events per stream of the data set the read workloads read.
pub const STREAM_EVENTS: u64 = 100;
/// Events per append of the batched workload.
pub const BATCH_EVENTS: usize = 1000;
/// Writers, and the hot streams they fight over, in the conflict workload.
pub const CONFLICT_WRITERS: usize = 8;
pub const CONFLICT_STREAMS: u64 = 4;
/// Appends in flight while the read data set is written (not measured).
const POPULATE_IN_FLIGHT: usize = 8;

/// How a workload picks the stream of each append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    Uniform,
    /// Zipf with exponent 1 over the streams: a few hot streams, a long tail.
    Zipf,
}

impl Choice {
    pub fn label(self) -> &'static str {
        match self {
            Choice::Uniform => "uniform",
            Choice::Zipf => "Zipf",
        }
    }
}

/// Picks stream numbers in `0..streams` as a [`Choice`] says.
#[derive(Debug)]
pub struct Picker {
    rng: StdRng,
    zipf: Option<Zipf<f64>>,
    streams: u64,
}

impl Picker {
    pub fn new(choice: Choice, streams: u64, seed: u64) -> Self {
        let zipf = match choice {
            Choice::Uniform => None,
            Choice::Zipf => Some(Zipf::new(streams, 1.0).expect("a valid Zipf distribution")),
        };
        Self {
            rng: StdRng::seed_from_u64(seed),
            zipf,
            streams,
        }
    }

    pub fn next(&mut self) -> u64 {
        match &self.zipf {
            // Zipf samples ranks 1..=n, rank 1 the most frequent.
            Some(zipf) => (zipf.sample(&mut self.rng) as u64).clamp(1, self.streams) - 1,
            None => self.rng.gen_range(0..self.streams),
        }
    }
}

/// What one workload measured on one peer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Events written or read.
    pub events: u64,
    /// Operations (appends, reads) timed one by one; their latencies, sorted.
    #[serde(skip)]
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    /// Something to say about the run (conflicts seen, ...).
    pub note: Option<String>,
}

impl Sample {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Ready-made event data (256 bytes of JSON each): a pool the workloads cycle through.
#[derive(Debug)]
pub struct Data {
    pool: Vec<Bytes>,
}

impl Data {
    pub fn new(pool: Vec<Bytes>) -> Self {
        assert!(!pool.is_empty());
        Self { pool }
    }

    pub fn events(&self, first: usize, count: usize) -> Vec<Bytes> {
        (first..first + count)
            .map(|i| self.pool[i % self.pool.len()].clone())
            .collect()
    }
}

// The names of the streams the workloads write: a category (the part before the `-`) per
// workload, and a number.

pub fn read_stream_name(i: u64) -> String {
    format!("read-{i}")
}

fn batch_stream_name(choice: Choice, n: u64) -> String {
    format!("batch{}-{n}", choice.label().to_lowercase())
}

fn single_stream_name(writers: usize, choice: Choice, n: u64) -> String {
    format!("single{writers}{}-{n}", choice.label().to_lowercase())
}

fn hot_stream_name(n: u64) -> String {
    format!("hot-{n}")
}

/// One stream of each category the workloads write, for [`Peer::prepare`].
pub fn stream_kinds(writers: &[usize]) -> Vec<String> {
    let choices = [Choice::Uniform, Choice::Zipf];
    let mut streams = vec![read_stream_name(0)];
    streams.extend(choices.map(|c| batch_stream_name(c, 0)));
    for &w in writers {
        streams.extend(choices.map(|c| single_stream_name(w, c, 0)));
    }
    streams.push(hot_stream_name(0));
    streams
}

/// Writes the read data set: `streams` streams of [`STREAM_EVENTS`] events, each one append
/// expecting an empty stream. Not measured.
pub async fn populate(peer: &Arc<dyn Peer>, data: &Arc<Data>, streams: u64) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for worker in 0..POPULATE_IN_FLIGHT {
        let peer = peer.clone();
        let data = data.clone();
        tasks.spawn(async move {
            let mut i = worker as u64;
            while i < streams {
                let events = data.events(i as usize, STREAM_EVENTS as usize);
                let done = peer
                    .append(worker, &read_stream_name(i), Expect::Exact(0), &events)
                    .await?;
                ensure!(
                    matches!(done, Appended::Done { .. }),
                    "writing the read data set: stream {} was not empty",
                    read_stream_name(i)
                );
                i += POPULATE_IN_FLIGHT as u64;
            }
            anyhow::Ok(())
        });
    }
    join(tasks).await?;
    Ok(())
}

/// Waits for every task; the first error wins.
async fn join<T: 'static>(mut tasks: JoinSet<anyhow::Result<T>>) -> anyhow::Result<Vec<T>> {
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.context("a workload task panicked")??);
    }
    Ok(results)
}

/// Reads `reads` random whole streams of the data set, one after the other; with `fold`, each
/// read also decodes every event's JSON and folds it into a state (loading an aggregate).
pub async fn read_streams(
    peer: &Arc<dyn Peer>,
    streams: u64,
    reads: usize,
    fold: bool,
    budget: Duration,
) -> anyhow::Result<Sample> {
    #[derive(serde::Deserialize)]
    struct Deposited {
        amount: u64,
    }
    let mut picker = Picker::new(Choice::Uniform, streams, 7);
    let mut sample = Sample::default();
    let started = Instant::now();
    for _ in 0..reads {
        if started.elapsed() >= budget && !sample.latencies.is_empty() {
            break;
        }
        let stream = read_stream_name(picker.next());
        let t = Instant::now();
        let events = peer.read_stream(0, &stream).await?;
        if fold {
            let mut balance = 0u64;
            for data in &events {
                let event: Deposited = serde_json::from_slice(data)
                    .with_context(|| format!("an event of {stream} is not the JSON written"))?;
                balance += event.amount;
            }
            std::hint::black_box(balance);
        }
        sample.latencies.push(t.elapsed());
        ensure!(
            events.len() as u64 == STREAM_EVENTS,
            "{stream} returned {} events, {STREAM_EVENTS} were written",
            events.len()
        );
        sample.events += events.len() as u64;
    }
    sample.elapsed = started.elapsed();
    sample.latencies.sort_unstable();
    Ok(sample)
}

/// Reads every event once; checks the count.
pub async fn read_all(peer: &Arc<dyn Peer>, expected: u64) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut bytes = 0usize;
    let events = peer.read_all(&mut |data| bytes += data.len()).await?;
    let elapsed = started.elapsed();
    ensure!(
        events == expected,
        "reading everything returned {events} events, {expected} are stored"
    );
    std::hint::black_box(bytes);
    Ok(Sample {
        events,
        elapsed,
        ..Sample::default()
    })
}

/// Subscribes from the start and receives the `expected` stored events.
pub async fn catch_up(peer: &Arc<dyn Peer>, expected: u64) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut first = None;
    let events = peer
        .catch_up(expected, &mut |_| {
            first.get_or_insert_with(|| started.elapsed());
        })
        .await?;
    let elapsed = started.elapsed();
    ensure!(
        events == expected,
        "the catch-up subscription delivered {events} events, {expected} are stored"
    );
    Ok(Sample {
        events,
        elapsed,
        note: first.map(|d| format!("first event after {}", crate::bench::sys::millis(d))),
        ..Sample::default()
    })
}

/// One writer appends [`BATCH_EVENTS`] events at a time to streams chosen by `choice`, each
/// append expecting the stream's version, until the budget is spent.
pub async fn batched(
    peer: &Arc<dyn Peer>,
    data: &Data,
    choice: Choice,
    streams: u64,
    budget: Duration,
) -> anyhow::Result<Sample> {
    let mut picker = Picker::new(choice, streams, 11);
    let mut tokens = std::collections::HashMap::new();
    let mut sample = Sample::default();
    let started = Instant::now();
    while sample.latencies.is_empty() || started.elapsed() < budget {
        let n = picker.next();
        let token = tokens.entry(n).or_insert(0);
        let events = data.events(sample.events as usize, BATCH_EVENTS);
        let t = Instant::now();
        let done = peer
            .append(
                0,
                &batch_stream_name(choice, n),
                Expect::Exact(*token),
                &events,
            )
            .await?;
        sample.latencies.push(t.elapsed());
        match done {
            Appended::Done { next } => *token = next,
            Appended::Conflict => bail!("a conflict with one writer: the peer lost track"),
        }
        sample.events += BATCH_EVENTS as u64;
    }
    sample.elapsed = started.elapsed();
    sample.latencies.sort_unstable();
    Ok(sample)
}

/// `writers` concurrent writers each append one event at a time (no expectation) to streams
/// chosen by `choice`, each awaiting its acknowledgement, until the budget is spent.
pub async fn concurrent(
    peer: &Arc<dyn Peer>,
    data: &Arc<Data>,
    writers: usize,
    choice: Choice,
    streams: u64,
    budget: Duration,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let peer = peer.clone();
        let data = data.clone();
        tasks.spawn(async move {
            let mut picker = Picker::new(choice, streams, 100 + w as u64);
            let mut latencies = Vec::new();
            while latencies.is_empty() || started.elapsed() < budget {
                let stream = single_stream_name(writers, choice, picker.next());
                let event = data.events(w + latencies.len() * writers, 1);
                let t = Instant::now();
                let done = peer.append(w, &stream, Expect::Any, &event).await?;
                latencies.push(t.elapsed());
                ensure!(
                    matches!(done, Appended::Done { .. }),
                    "an append without expectation was refused"
                );
            }
            anyhow::Ok(latencies)
        });
    }
    let mut sample = Sample::default();
    for latencies in join(tasks).await? {
        sample.events += latencies.len() as u64;
        sample.latencies.extend(latencies);
    }
    sample.elapsed = started.elapsed();
    sample.latencies.sort_unstable();
    Ok(sample)
}

/// [`CONFLICT_WRITERS`] writers append one event at a time to [`CONFLICT_STREAMS`] hot streams,
/// each expecting the version it last saw; a loser re-reads the stream's version and tries
/// again. Throughput counts the winners. Afterwards the streams must hold exactly as many
/// events as appends won: two winners of one version, or a lost winner, fail the run.
pub async fn conflicts(
    peer: &Arc<dyn Peer>,
    data: &Arc<Data>,
    budget: Duration,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for w in 0..CONFLICT_WRITERS {
        let peer = peer.clone();
        let data = data.clone();
        tasks.spawn(async move {
            let mut picker = Picker::new(Choice::Uniform, CONFLICT_STREAMS, 200 + w as u64);
            let mut tokens = vec![None; CONFLICT_STREAMS as usize];
            let (mut won, mut lost) = (0u64, 0u64);
            let mut latencies = Vec::new();
            while latencies.is_empty() || started.elapsed() < budget {
                let n = picker.next();
                let stream = hot_stream_name(n);
                let token = match tokens[n as usize] {
                    Some(token) => token,
                    None => peer.current(w, &stream).await?,
                };
                let t = Instant::now();
                let done = peer
                    .append(w, &stream, Expect::Exact(token), &data.events(w, 1))
                    .await?;
                latencies.push(t.elapsed());
                match done {
                    Appended::Done { next } => {
                        won += 1;
                        tokens[n as usize] = Some(next);
                    }
                    Appended::Conflict => {
                        lost += 1;
                        tokens[n as usize] = None;
                    }
                }
            }
            anyhow::Ok((won, lost, latencies))
        });
    }
    let mut sample = Sample::default();
    let mut lost = 0;
    for (w, l, latencies) in join(tasks).await? {
        sample.events += w;
        lost += l;
        sample.latencies.extend(latencies);
    }
    sample.elapsed = started.elapsed();
    sample.latencies.sort_unstable();
    let mut stored = 0;
    for n in 0..CONFLICT_STREAMS {
        stored += peer.read_stream(0, &hot_stream_name(n)).await?.len() as u64;
    }
    ensure!(
        stored == sample.events,
        "the hot streams hold {stored} events but {} appends won: more than one writer won a \
         version, or a won append is missing",
        sample.events
    );
    let attempts = sample.events + lost;
    sample.note = Some(format!(
        "{} of {} attempts lost to a conflict ({:.0}%); the hot streams hold exactly the {} won",
        lost,
        attempts,
        100.0 * lost as f64 / attempts.max(1) as f64,
        sample.events
    ));
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_the_first_streams_and_stays_in_range() {
        let mut picker = Picker::new(Choice::Zipf, 1000, 1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[picker.next() as usize] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        // Exponent 1 over 1000 ranks: rank 1 has 1/H(1000) of the mass, about 13%.
        assert!((11_000..16_000).contains(&counts[0]), "{}", counts[0]);
    }

    #[test]
    fn stream_kinds_name_every_category_the_workloads_write() {
        let kinds = stream_kinds(&[1, 8]);
        assert_eq!(
            kinds,
            [
                "read-0",
                "batchuniform-0",
                "batchzipf-0",
                "single1uniform-0",
                "single1zipf-0",
                "single8uniform-0",
                "single8zipf-0",
                "hot-0"
            ]
        );
    }

    #[test]
    fn uniform_covers_every_stream() {
        let mut picker = Picker::new(Choice::Uniform, 10, 1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[picker.next() as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
