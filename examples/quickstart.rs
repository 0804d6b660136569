//! A tour of the embedded store: append with optimistic concurrency, retry idempotently, read a
//! stream and `$all`, travel in time, and follow `$all` live.
//!
//! `cargo run --release -p factlog-examples --example quickstart -- [DATA_DIR]`
//! (default `./factlog-data`). Run it twice: the second run finds the first run's events.

use factlog_log::{EmbeddedStore, Options};
use factlog_store::{
    AppendError, AsOf, EventFilter, EventId, EventStore, ExpectedVersion, NewEvent, ReadAll,
    ReadStream, StreamAppend, StreamName, SubscribeFrom,
};
use futures::StreamExt;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./factlog-data".into());
    let store = EmbeddedStore::open(&dir, Options::default())?;
    let report = store.open_report();
    println!(
        "opened {dir}: {} events, index {:?}, {:?}",
        report.events, report.index_source, report.duration
    );

    // Each run opens a new account, so the example can run again and again on the same data.
    let run = store.end_position().await?.raw();
    let account = StreamName::new(format!("account-{run}"))?;

    // Optimistic concurrency: the stream must not exist yet.
    let opened = NewEvent::json("AccountOpened", &json!({"owner": "ada"}))?;
    let r = store
        .append(&account, ExpectedVersion::NoStream, vec![opened])
        .await?;
    println!(
        "{account}: opened at version {} (position {})",
        r.first_version, r.first_position
    );

    // A retry with the same event id returns the original result and writes nothing.
    let id = EventId::new_v7();
    let deposit = NewEvent::json("MoneyDeposited", &json!({"amount": 100}))?.with_id(id);
    let first = store
        .append(&account, ExpectedVersion::Exact(0), vec![deposit.clone()])
        .await?;
    let retry = store
        .append(&account, ExpectedVersion::Exact(0), vec![deposit])
        .await?;
    assert_eq!(first, retry);
    println!(
        "{account}: deposit at version {} (the retry returned the same)",
        first.first_version
    );

    // A writer that lost the race is told the current version.
    let late = NewEvent::json("MoneyWithdrawn", &json!({"amount": 30}))?;
    match store
        .append(&account, ExpectedVersion::Exact(0), vec![late])
        .await
    {
        Err(AppendError::WrongExpectedVersion { current, .. }) => {
            println!("{account}: a stale writer was refused; the stream is at version {current:?}")
        }
        other => anyhow::bail!("expected a conflict, got {other:?}"),
    }

    // A transfer touches two streams atomically.
    let savings = StreamName::new(format!("savings-{run}"))?;
    store
        .append_multi(vec![
            StreamAppend {
                stream: account.clone(),
                expected: ExpectedVersion::Exact(1),
                events: vec![NewEvent::json("MoneyWithdrawn", &json!({"amount": 40}))?],
            },
            StreamAppend {
                stream: savings.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![NewEvent::json("MoneyDeposited", &json!({"amount": 40}))?],
            },
        ])
        .await?;

    // Read the account, then read it as it was after the deposit.
    for e in store.read_stream(&account, ReadStream::forward()).await? {
        println!(
            "  v{} {} {} {}",
            e.version,
            e.recorded_at,
            e.event_type,
            String::from_utf8_lossy(&e.data)
        );
    }
    let then = store
        .read_stream(
            &account,
            ReadStream::forward().as_of(AsOf::Position(first.last_position)),
        )
        .await?;
    println!(
        "{account} as of position {}: {} events",
        first.last_position,
        then.len()
    );

    // $all, filtered by category, newest first.
    let filter = EventFilter {
        category: Some("account".into()),
        ..EventFilter::default()
    };
    let latest = store
        .read_all(ReadAll::backward().limit(3).filter(filter))
        .await?;
    println!(
        "latest account events in $all: {:?}",
        latest.iter().map(|e| e.position).collect::<Vec<_>>()
    );

    // Follow $all from our first event: catch-up, then live.
    let mut sub = store.subscribe_all(
        SubscribeFrom::After(r.first_position),
        EventFilter::default(),
    );
    store
        .append(
            &savings,
            ExpectedVersion::Any,
            vec![NewEvent::json("InterestPaid", &json!({"amount": 1}))?],
        )
        .await?;
    for _ in 0..4 {
        let e = sub.next().await.expect("the store is open")?;
        println!("  followed {} {} v{}", e.position, e.stream, e.version);
    }
    let stats = store.stats();
    println!(
        "{} events in {} streams, {} fsyncs",
        stats.events, stats.streams, stats.fsyncs
    );
    Ok(())
}
