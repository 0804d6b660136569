//! `factlog export`: every event of the store (`$all`), or of one stream, as JSON lines in the
//! shape of the HTTP API's events (`factlog_api::EventJson`), for `factlog import`.
//!
//! The export holds the events stored when it starts, read a page at a time. It is written
//! against the store API, so it runs the same against any backend: a data directory, a server
//! (`--server`), or a store on Kafka (`--kafka URL`, a node that does not write and catches up
//! with everything committed before the export starts; `$all` is then ordered per partition,
//! and positions are Kafka positions, see docs/kafka.md).
//!
//! What a line keeps: id, stream, type, schema version, content type, metadata, and the data
//! byte for byte: as `data` (JSON exactly as stored, or UTF-8 text for other content types) or,
//! when it is neither, as `dataBase64`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use factlog_api::EventJson;
use factlog_store::{
    AllFrom, AsOf, Direction, EventFilter, EventStore, Position, ReadAll, ReadStream,
    RecordedEvent, StreamFrom, StreamName,
};
use indicatif::ProgressBar;
use serde_json::json;

use crate::cmd::backup::{Unit, progress_bar};
use crate::cmd::{Location, PAGE_EVENTS, plural};
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Export only this stream (default: every event of the store, '$all').
    #[arg(long, value_name = "STREAM")]
    stream: Option<StreamName>,

    /// Where to start (included): a position, or with --stream a version. Default: the first.
    /// With --kafka, a position of '$all' is exact only on the node that gave it: resume a
    /// stream by version instead.
    #[arg(long, value_name = "N")]
    from: Option<u64>,

    /// Write the JSON lines to this file (created or replaced) instead of stdout.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,

    #[command(flatten)]
    pub kafka: crate::kafka_target::KafkaReadArgs,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct Selection {
    pub stream: Option<StreamName>,
    /// A position for `$all`, a version for a stream.
    pub from: Option<u64>,
}

pub async fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let store = target.open_existing().await?;
    let selection = Selection {
        stream: args.stream.clone(),
        from: args.from,
    };
    let bar = progress_bar(Unit::Events, "export");
    let result = match &args.file {
        Some(path) => export_to_file(&*store, &selection, path, &bar).await,
        None => {
            let mut stdout = BufWriter::new(std::io::stdout().lock());
            let result = export(&*store, &selection, &mut stdout, &bar).await;
            result.and_then(|n| Ok(stdout.flush().map(|()| n)?))
        }
    };
    bar.finish_and_clear();
    store.close().await;
    let events = result?;
    // On stdout the events are the result; a summary would be mixed into them.
    if let Some(path) = &args.file {
        if out.json() {
            out.json_line(&json!({
                "file": path.display().to_string(),
                "events": events,
            }))?;
        } else {
            out.line(format_args!(
                "exported {} to {}",
                plural(events, "event"),
                path.display()
            ))?;
        }
    }
    Ok(())
}

async fn export_to_file(
    store: &dyn EventStore,
    selection: &Selection,
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let file =
        File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    let mut writer = BufWriter::new(file);
    let events = export(store, selection, &mut writer, bar).await?;
    let file = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all().map(|()| file))
        .with_context(|| format!("could not write {}", path.display()))?;
    drop(file);
    Ok(events)
}

/// Writes the selected events, stored when it starts, to `to` as JSON lines; returns how many.
pub async fn export(
    store: &dyn EventStore,
    selection: &Selection,
    to: &mut dyn Write,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let end = store.end_position().await?;
    // Events appended while the export runs are not part of it.
    let as_of = end
        .raw()
        .checked_sub(1)
        .map(|p| AsOf::Position(Position::from_raw(p)));
    let mut write = |event: &RecordedEvent| -> anyhow::Result<()> {
        serde_json::to_writer(&mut *to, &EventJson::from(event))?;
        to.write_all(b"\n")?;
        bar.inc(1);
        Ok(())
    };
    let mut count = 0u64;
    match &selection.stream {
        None => {
            bar.set_length(end.raw().saturating_sub(selection.from.unwrap_or(0).max(1)));
            let mut from = match selection.from {
                Some(position) => AllFrom::Position(Position::from_raw(position)),
                None => AllFrom::Start,
            };
            // Reads include their start, and positions are opaque: the next page starts at the
            // last event written, which is skipped.
            let mut seen: Option<Position> = None;
            loop {
                let page = PAGE_EVENTS + usize::from(seen.is_some());
                let events = store
                    .read_all(ReadAll {
                        from,
                        direction: Direction::Forward,
                        limit: page,
                        filter: EventFilter::default(),
                        as_of,
                    })
                    .await?;
                for event in events.iter().filter(|e| Some(e.position) != seen) {
                    write(event)?;
                    count += 1;
                }
                let Some(last) = events.last().map(|e| e.position) else {
                    break;
                };
                if events.len() < page || seen == Some(last) {
                    break;
                }
                from = AllFrom::Position(last);
                seen = Some(last);
            }
        }
        Some(stream) => {
            let Some(info) = store.stream_info(stream).await? else {
                anyhow::bail!("stream {stream} does not exist");
            };
            bar.set_length(info.event_count);
            let mut next = selection.from.unwrap_or(0);
            loop {
                let options = ReadStream {
                    from: StreamFrom::Version(next),
                    direction: Direction::Forward,
                    limit: PAGE_EVENTS,
                    as_of,
                };
                let events = store.read_stream(stream, options).await?;
                for event in &events {
                    write(event)?;
                    count += 1;
                }
                match events.last() {
                    // Versions are dense, so the next page starts next to the last event.
                    Some(last) if events.len() == PAGE_EVENTS => next = last.version + 1,
                    _ => break,
                }
            }
        }
    }
    Ok(count)
}
