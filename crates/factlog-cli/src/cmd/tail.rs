//! `factlog tail`: follow `$all`, or one stream, printing each event as it arrives (like
//! `kcat -C`), until `--count` events were printed or Ctrl-C.
//!
//! It is a subscription of the store API (catch-up from storage, then live, with no gap and no
//! duplicate), so it runs the same against any backend. Each event is flushed as it is printed.

use anyhow::Context;
use factlog_store::{
    AllFrom, AsOf, Direction, EventFilter, EventStore, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, StreamFrom, StreamName, SubscribeFrom, Subscription, Timestamp,
};
use futures::StreamExt;

use crate::UsageError;
use crate::cmd::{Location, event_json, event_text};
use crate::output::Out;

/// What to follow.
#[derive(Debug, Clone)]
pub enum Target {
    All,
    Stream(StreamName),
}

fn parse_target(text: &str) -> Result<Target, String> {
    if text == "$all" {
        return Ok(Target::All);
    }
    StreamName::new(text)
        .map(Target::Stream)
        .map_err(|e| format!("{e} (to follow every event of the store, leave it out or pass '$all', quoted for the shell)"))
}

/// Where following starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFrom {
    /// The first event.
    Beginning,
    /// The next event appended.
    End,
    /// This position of `$all`, or this version of a stream (included).
    At(u64),
    /// The first event recorded at or after this time.
    Time(Timestamp),
}

fn parse_from(text: &str) -> Result<TailFrom, String> {
    match text {
        "beginning" => Ok(TailFrom::Beginning),
        "end" => Ok(TailFrom::End),
        _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse()
            .map(TailFrom::At)
            .map_err(|e| format!("{text}: {e}")),
        _ => Timestamp::parse_rfc3339(text).map(TailFrom::Time).map_err(|_| {
            format!(
                "{text:?} is not 'beginning', 'end', a position or an RFC 3339 time such as 2026-11-23T10:15:00Z"
            )
        }),
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A stream to follow (default: '$all', every event of the store).
    #[arg(value_name = "STREAM", value_parser = parse_target)]
    target: Option<Target>,

    /// Where to start: 'beginning', 'end' (only new events), a position of '$all' or a version
    /// of the stream (included), or an RFC 3339 time (the first event recorded at or after it).
    #[arg(long, value_name = "WHERE", value_parser = parse_from, default_value = "end")]
    from: TailFrom,

    /// '$all' only: events of these types (comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    types: Vec<String>,

    /// '$all' only: events of streams whose name starts with this.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,

    /// Exit after printing this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

pub async fn run(location: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let target = args.target.clone().unwrap_or(Target::All);
    let filter = EventFilter {
        event_types: args.types.clone(),
        stream_prefix: args.prefix.clone(),
        category: None,
    };
    if matches!(target, Target::Stream(_)) && !filter.is_empty() {
        return Err(UsageError(
            "--types and --prefix filter '$all'; following a stream takes neither".into(),
        )
        .into());
    }
    let store = location.open_existing().await?;
    let result = tail(&*store, &target, args.from, filter, args.count, out).await;
    store.close().await;
    result
}

/// Follows `target` from `from`, printing each event, until `count` events were printed, the
/// store closes, or Ctrl-C.
pub async fn tail(
    store: &dyn EventStore,
    target: &Target,
    from: TailFrom,
    filter: EventFilter,
    count: Option<u64>,
    out: &mut Out,
) -> anyhow::Result<()> {
    if count == Some(0) {
        return Ok(());
    }
    // Listening before anything is printed: once the first event is out, Ctrl-C ends the
    // command cleanly (`tokio::signal::ctrl_c` would only listen from its first poll).
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("could not listen for Ctrl-C")?;
    let mut subscription = subscribe(store, target, from, filter).await?;
    let mut printed = 0;
    loop {
        tokio::select! {
            item = subscription.next() => match item {
                Some(Ok(event)) => {
                    print(&event, out)?;
                    out.flush()?;
                    printed += 1;
                    if Some(printed) == count {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e).context("following the store stopped"),
                None => return Ok(()),
            },
            // Ctrl-C is how following is meant to end: not an error.
            _ = ctrl_c.recv() => return Ok(()),
        }
    }
}

fn print(event: &RecordedEvent, out: &mut Out) -> std::io::Result<()> {
    if out.json() {
        out.json_line(&event_json(event))
    } else {
        out.line(event_text(event))
    }
}

/// Just before `t`: the events recorded before `t` are those "as of" this time.
fn before(t: Timestamp) -> AsOf {
    AsOf::Time(Timestamp::from_unix_micros(
        t.unix_micros().saturating_sub(1),
    ))
}

async fn subscribe(
    store: &dyn EventStore,
    target: &Target,
    from: TailFrom,
    filter: EventFilter,
) -> anyhow::Result<Subscription> {
    Ok(match target {
        Target::All => {
            let from = match from {
                TailFrom::Beginning | TailFrom::At(0) => SubscribeFrom::Start,
                TailFrom::End => SubscribeFrom::End,
                TailFrom::At(p) => SubscribeFrom::After(Position::from_raw(p - 1)),
                TailFrom::Time(t) => {
                    // The last event recorded before `t`, found by the store's time travel
                    // (recorded-at never decreases along `$all`): following starts after it.
                    let last = store
                        .read_all(ReadAll {
                            from: AllFrom::End,
                            direction: Direction::Backward,
                            limit: 1,
                            filter: EventFilter::default(),
                            as_of: Some(before(t)),
                        })
                        .await?;
                    match last.first() {
                        Some(event) => SubscribeFrom::After(event.position),
                        None => SubscribeFrom::Start,
                    }
                }
            };
            store.subscribe_all(from, filter)
        }
        Target::Stream(stream) => {
            let from = match from {
                TailFrom::Beginning | TailFrom::At(0) => SubscribeFrom::Start,
                TailFrom::End => SubscribeFrom::End,
                TailFrom::At(v) => SubscribeFrom::After(v - 1),
                TailFrom::Time(t) => {
                    let options = ReadStream {
                        from: StreamFrom::End,
                        direction: Direction::Backward,
                        limit: 1,
                        as_of: Some(before(t)),
                    };
                    match store.read_stream(stream, options).await {
                        Ok(last) => match last.first() {
                            Some(event) => SubscribeFrom::After(event.version),
                            None => SubscribeFrom::Start,
                        },
                        // No event of the stream was recorded before `t` (or it has none yet).
                        Err(ReadError::StreamNotFound(_)) => SubscribeFrom::Start,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            store.subscribe_stream(stream.clone(), from)
        }
    })
}
