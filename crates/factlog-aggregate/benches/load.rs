//! Loading an aggregate: 10,000 events without a snapshot, and a snapshot with 100 events after
//! it, on the embedded store. Prints medians and tail latencies with the targets beside them;
//! nothing is asserted.
//!
//! `cargo bench -p factlog-aggregate --bench load`

use std::sync::Arc;
use std::time::{Duration, Instant};

use factlog_aggregate::doc_example::CounterEvent;
use factlog_aggregate::doc_example::{Counter, CounterCommand};
use factlog_aggregate::{
    Command, FileSnapshots, Repository, SnapshotPolicy, SnapshotStore, encode,
};
use factlog_log::{EmbeddedStore, Options};
use factlog_store::{EventStore, ExpectedVersion, StreamName};

const EVENTS: u64 = 10_000;
const TAIL_EVENTS: u64 = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut samples: Vec<Duration>, target: &str) {
    samples.sort_unstable();
    println!(
        "{name:<48} n={:<5} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  (target {target})",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(
        dir.path().join("events"),
        Options::default(),
    )?);
    let stream = StreamName::new("counter-big")?;
    // Written in batches: the point is reading them back.
    let event = encode(&CounterEvent::Added { amount: 1 })?;
    for _ in 0..EVENTS / 1000 {
        store
            .append(&stream, ExpectedVersion::Any, vec![event.clone(); 1000])
            .await?;
    }

    let plain = Repository::<Counter>::new(store.clone());
    for _ in 0..3 {
        plain.load("big").await?; // warm the page cache
    }
    let mut samples = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let loaded = plain.load("big").await?;
        samples.push(started.elapsed());
        assert_eq!(loaded.state.total, EVENTS);
    }
    report("load, 10,000 events, no snapshot", samples, "<= 10 ms");

    let snapshots = Arc::new(FileSnapshots::open(dir.path().join("snapshots"))?);
    let writer = Repository::<Counter>::new(store.clone())
        .with_snapshots(snapshots.clone(), SnapshotPolicy::EveryEvents(EVENTS));
    writer.load("big").await?; // takes the snapshot at the last version
    assert!(snapshots.load(&stream).await?.is_some());
    for i in 0..TAIL_EVENTS {
        plain
            .execute(
                "big",
                Command::new(CounterCommand::Add { amount: 1 }).with_id(format!("tail-{i}")),
            )
            .await?;
    }
    let reader = Repository::<Counter>::new(store.clone())
        .with_snapshots(snapshots.clone(), SnapshotPolicy::Never);
    let mut samples = Vec::new();
    for i in 0..2_000 {
        let started = Instant::now();
        let loaded = reader.load("big").await?;
        let took = started.elapsed();
        if i >= 100 {
            samples.push(took);
        }
        assert_eq!(loaded.events_applied, TAIL_EVENTS);
        assert_eq!(loaded.state.total, EVENTS + TAIL_EVENTS);
    }
    report(
        "load, snapshot + 100 events after it",
        samples,
        "p99 <= 1 ms",
    );
    store.close();
    Ok(())
}
