//! `factlog read`: print the events of a stream, or of `$all`, forward or backward.
//!
//! Events are read a page at a time and printed as they come, so reading a large store takes
//! little memory and `| head` stops early.

use factlog_store::{
    AllFrom, Direction, EventFilter, EventStore, Position, ReadAll, ReadStream, RecordedEvent,
    StreamFrom, StreamName,
};

use crate::UsageError;
use crate::cmd::{Location, PAGE_EVENTS, event_json, event_text};
use crate::output::Out;

/// What to read: one stream or all of them.
#[derive(Debug, Clone)]
pub enum Target {
    All,
    Stream(StreamName),
}

fn parse_target(text: &str) -> Result<Target, String> {
    if text == "$all" {
        return Ok(Target::All);
    }
    StreamName::new(text).map(Target::Stream).map_err(|e| {
        format!("{e} (to read every event of the store, pass '$all', quoted for the shell)")
    })
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A stream name, or '$all' for every event of the store (quote it for the shell).
    #[arg(value_name = "STREAM", value_parser = parse_target)]
    target: Target,

    /// Where to start (included): a version for a stream, a position for '$all'.
    /// Default: the first event, or the last with --backward.
    #[arg(long, value_name = "N")]
    from: Option<u64>,

    /// Print at most this many events (default: all).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// Read from newest to oldest.
    #[arg(long)]
    backward: bool,

    /// '$all' only: events of these types (comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    types: Vec<String>,

    /// '$all' only: events of streams whose name starts with this.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,

    /// '$all' only: events of streams of this category (the name before the first '-').
    #[arg(long, value_name = "C")]
    category: Option<String>,

    #[command(flatten)]
    pub kafka: crate::kafka_target::KafkaReadArgs,
}

pub async fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let filter = EventFilter {
        event_types: args.types.clone(),
        stream_prefix: args.prefix.clone(),
        category: args.category.clone(),
    };
    if matches!(args.target, Target::Stream(_)) && !filter.is_empty() {
        return Err(UsageError(
            "--types, --prefix and --category filter '$all'; a stream read takes none of them"
                .into(),
        )
        .into());
    }
    let store = target.open_existing().await?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let direction = if args.backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let result = match &args.target {
        Target::Stream(stream) => {
            read_stream(&*store, stream, args.from, direction, limit, out).await
        }
        Target::All => read_all(&*store, args.from, direction, filter, limit, out).await,
    };
    store.close().await;
    result
}

fn print(event: &RecordedEvent, out: &mut Out) -> std::io::Result<()> {
    if out.json() {
        out.json_line(&event_json(event))
    } else {
        out.line(event_text(event))
    }
}

async fn read_stream(
    store: &dyn EventStore,
    stream: &StreamName,
    from: Option<u64>,
    direction: Direction,
    limit: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let mut from = match (from, direction) {
        (Some(version), _) => StreamFrom::Version(version),
        (None, Direction::Forward) => StreamFrom::Start,
        (None, Direction::Backward) => StreamFrom::End,
    };
    let mut remaining = limit;
    while remaining > 0 {
        let page = remaining.min(PAGE_EVENTS);
        let options = ReadStream {
            from,
            direction,
            limit: page,
            as_of: None,
        };
        let events = store.read_stream(stream, options).await?;
        for event in &events {
            print(event, out)?;
        }
        out.flush()?;
        remaining -= events.len();
        let Some(last) = events.last() else { break };
        if events.len() < page {
            break;
        }
        // Versions are dense (0, 1, 2, ...), so the next page starts next to the last event.
        from = match direction {
            Direction::Forward => StreamFrom::Version(last.version + 1),
            Direction::Backward => match last.version.checked_sub(1) {
                Some(version) => StreamFrom::Version(version),
                None => break,
            },
        };
    }
    Ok(())
}

async fn read_all(
    store: &dyn EventStore,
    from: Option<u64>,
    direction: Direction,
    filter: EventFilter,
    limit: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let mut from = match (from, direction) {
        (Some(position), _) => AllFrom::Position(Position::from_raw(position)),
        (None, Direction::Forward) => AllFrom::Start,
        (None, Direction::Backward) => AllFrom::End,
    };
    // Positions are opaque, so the next page cannot be computed from the last position: it
    // starts *at* the last event printed (reads include their start), which is skipped.
    let mut seen: Option<Position> = None;
    let mut remaining = limit;
    while remaining > 0 {
        let page = remaining.min(PAGE_EVENTS) + usize::from(seen.is_some());
        let options = ReadAll {
            from,
            direction,
            limit: page,
            filter: filter.clone(),
            as_of: None,
        };
        let events = store.read_all(options).await?;
        let fetched = events.len();
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        for event in events.iter().filter(|e| Some(e.position) != seen) {
            if remaining == 0 {
                break;
            }
            print(event, out)?;
            remaining -= 1;
        }
        out.flush()?;
        if fetched < page || seen == Some(last) {
            break;
        }
        from = AllFrom::Position(last);
        seen = Some(last);
    }
    Ok(())
}
