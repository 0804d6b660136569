//! `factlog import`: JSON lines written by `factlog export` back into a store, each event into
//! its stream with its original id.
//!
//! Every line is checked before anything is written: a bad line anywhere is an error naming it,
//! and nothing is imported. Then consecutive events of one stream are appended together (expected
//! version `any`), at most [`IMPORT_BATCH_EVENTS_MAX`] at a time. Importing is idempotent by event
//! id: a batch whose ids are all stored already gets the original result back from the store
//! and writes nothing, so importing a file twice, or again after an interruption, stores each
//! event once. A store treats a retry as one only when it holds the same ids in the same order,
//! so a batch that a previous run stored only in part (it stopped in the middle, or was given
//! a file cut short) is appended again one event at a time, where each event is either stored
//! already or new.
//!
//! The embedded store is opened in bulk-import mode: appends are synced every few megabytes and
//! when the import ends, not one by one. An import that is interrupted (even by a crash) is
//! resumed by running it again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Seek};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow};
use factlog_api::EventJson;
use factlog_log::{Options, SyncMode};
use factlog_store::{
    AppendError, EventId, EventStore, ExpectedVersion, NewEvent, StreamName, Version,
};
use indicatif::ProgressBar;
use serde_json::json;

use crate::UsageError;
use crate::cmd::Location;
use crate::cmd::backup::{Unit, progress_bar};
use crate::cmd::plural;
use crate::output::Out;

/// The most events appended in one call.
pub const IMPORT_BATCH_EVENTS_MAX: usize = 1000;
/// The most payload bytes appended in one call (well below the store's append limit).
pub const IMPORT_BATCH_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON lines written by `factlog export` (default: stdin).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Events written by this import.
    pub imported: u64,
    /// Events whose ids were stored already (by an earlier import of the same events).
    pub already_present: u64,
    /// Appends made.
    pub appends: u64,
}

pub async fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let (source, mut input) = open_input(args.file.as_deref())?;
    let started = Instant::now();
    // Everything is checked before the store is opened: bad input must not create a store.
    let events = check_lines(&mut input, &source)?;
    if events == 0 {
        anyhow::bail!("{source} holds no events (only empty lines); nothing was imported");
    }
    input
        .rewind()
        .with_context(|| format!("could not read {source}"))?;
    let options = Options {
        sync_mode: SyncMode::BulkImport,
        ..Options::default()
    };
    let store = target.open_with(options)?;
    let bar = progress_bar(Unit::Events, "import");
    bar.set_length(events);
    let result = import(&*store, &mut BufReader::new(input), &source, &bar).await;
    bar.finish_and_clear();
    // Closing syncs what bulk-import mode has not synced yet.
    store.close().await;
    if let Some(reason) = store.local().and_then(|s| s.stats().writer_failed) {
        anyhow::bail!(
            "the store failed while importing ({reason}); run the import again to finish it"
        );
    }
    let report = result.context(
        "the import stopped; the events before that are stored, and importing the same input \
         again (once the cause is fixed) resumes it",
    )?;
    let took = started.elapsed();
    if out.json() {
        out.json_line(&json!({
            "source": source,
            "imported": report.imported,
            "alreadyPresent": report.already_present,
            "appends": report.appends,
            "durationMillis": took.as_secs_f64() * 1000.0,
        }))?;
    } else {
        out.line(format_args!(
            "imported {} from {} ({} already present) in {:.1} s",
            plural(report.imported, "event"),
            source,
            report.already_present,
            took.as_secs_f64()
        ))?;
    }
    Ok(())
}

/// The input as a file that can be read twice, and a name for it: stdin is spooled to a
/// temporary file first.
fn open_input(path: Option<&Path>) -> anyhow::Result<(String, File)> {
    if let Some(path) = path {
        let file =
            File::open(path).with_context(|| format!("could not open {}", path.display()))?;
        return Ok((path.display().to_string(), file));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(UsageError(
            "no events given: pass a FILE written by `factlog export`, or pipe its lines into stdin"
                .into(),
        )
        .into());
    }
    let mut spool = tempfile::tempfile().context("could not create a temporary file for stdin")?;
    std::io::copy(&mut stdin.lock(), &mut spool).context("could not read stdin")?;
    spool.rewind().context("could not read stdin back")?;
    Ok(("stdin".into(), spool))
}

/// Reads numbered, non-empty lines.
struct Lines<R> {
    reader: R,
    number: usize,
    text: String,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            number: 0,
            text: String::new(),
        }
    }

    /// The next non-empty line and its number (from 1), or `None` at the end.
    fn next(&mut self) -> std::io::Result<Option<(usize, &str)>> {
        loop {
            self.text.clear();
            if self.reader.read_line(&mut self.text)? == 0 {
                return Ok(None);
            }
            self.number += 1;
            if !self.text.trim().is_empty() {
                return Ok(Some((self.number, self.text.trim_end())));
            }
        }
    }
}

/// Checks every line; returns how many events there are.
fn check_lines(input: &mut File, source: &str) -> anyhow::Result<u64> {
    let mut lines = Lines::new(BufReader::new(input));
    let mut events = 0;
    loop {
        let at = lines.number + 1;
        let line = lines
            .next()
            .with_context(|| format!("nothing was imported: could not read {source} line {at}"))?;
        let Some((number, text)) = line else {
            return Ok(events);
        };
        parse_line(text)
            .map_err(|e| anyhow!("{source} line {number}: {e}"))
            .context("nothing was imported: bad line")?;
        events += 1;
    }
}

/// One exported event: its stream and the event to append, with its id.
fn parse_line(text: &str) -> Result<(StreamName, NewEvent), String> {
    let json: EventJson = serde_json::from_str(text)
        .map_err(|e| format!("not an event written by `factlog export` ({e})"))?;
    let event = json.into_recorded()?;
    let new = NewEvent::new(event.event_type, event.content_type, event.data)
        .with_schema_version(event.schema_version)
        .with_metadata(event.metadata)
        .with_id(event.id);
    Ok((event.stream, new))
}

/// Consecutive events of one stream, appended together.
#[derive(Debug)]
struct Batch {
    stream: StreamName,
    events: Vec<NewEvent>,
    /// The line of each event.
    lines: Vec<usize>,
    ids: HashSet<EventId>,
    bytes: usize,
}

impl Batch {
    fn new(stream: StreamName) -> Self {
        Self {
            stream,
            events: Vec::new(),
            lines: Vec::new(),
            ids: HashSet::new(),
            bytes: 0,
        }
    }

    /// Whether `event` of `stream` can join this batch.
    fn takes(&self, stream: &StreamName, event: &NewEvent) -> bool {
        self.stream == *stream
            && self.events.len() < IMPORT_BATCH_EVENTS_MAX
            && self.bytes + event.payload_size_bytes() <= IMPORT_BATCH_BYTES_MAX
            // An id twice in one append is refused; a file may repeat events (two exports
            // concatenated), and the second copy is then a retry of the first.
            && event.id.is_none_or(|id| !self.ids.contains(&id))
    }

    fn push(&mut self, line: usize, event: NewEvent) {
        self.bytes += event.payload_size_bytes();
        self.ids.extend(event.id);
        self.lines.push(line);
        self.events.push(event);
    }
}

/// Appends the events of `input` (JSON lines of `factlog export`, already checked) to `store`.
pub async fn import(
    store: &dyn EventStore,
    input: &mut dyn BufRead,
    source: &str,
    bar: &ProgressBar,
) -> anyhow::Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut versions = LastVersions::default();
    let mut lines = Lines::new(input);
    let mut batch: Option<Batch> = None;
    while let Some((number, text)) = lines
        .next()
        .with_context(|| format!("could not read {source}"))?
    {
        let (stream, event) =
            parse_line(text).map_err(|e| anyhow!("{source} line {number}: {e}"))?;
        if let Some(full) = batch.take_if(|b| !b.takes(&stream, &event)) {
            import_batch(store, full, &mut versions, &mut report, bar).await?;
        }
        batch
            .get_or_insert_with(|| Batch::new(stream))
            .push(number, event);
    }
    if let Some(last) = batch {
        import_batch(store, last, &mut versions, &mut report, bar).await?;
    }
    Ok(report)
}

/// The last version of each stream seen, to tell an append that wrote from a retry that
/// returned the original result: a new append's first version is past the stream's last
/// version before it, a retry's is not.
#[derive(Debug, Default)]
struct LastVersions(HashMap<StreamName, Option<Version>>);

impl LastVersions {
    async fn get(
        &mut self,
        store: &dyn EventStore,
        stream: &StreamName,
    ) -> anyhow::Result<Option<Version>> {
        if let Some(&last) = self.0.get(stream) {
            return Ok(last);
        }
        let last = store.stream_info(stream).await?.map(|i| i.last_version);
        self.0.insert(stream.clone(), last);
        Ok(last)
    }

    /// Records an append's result; returns whether it wrote (rather than returned a retry).
    fn record(
        &mut self,
        stream: &StreamName,
        before: Option<Version>,
        first: Version,
        last: Version,
    ) -> bool {
        let wrote = before.is_none_or(|v| first > v);
        let known = self.0.entry(stream.clone()).or_default();
        *known = Some(known.map_or(last, |v| v.max(last)));
        wrote
    }
}

async fn import_batch(
    store: &dyn EventStore,
    batch: Batch,
    versions: &mut LastVersions,
    report: &mut ImportReport,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let count = batch.events.len() as u64;
    let before = versions.get(store, &batch.stream).await?;
    report.appends += 1;
    match store
        .append(&batch.stream, ExpectedVersion::Any, batch.events.clone())
        .await
    {
        Ok(result) => {
            if versions.record(
                &batch.stream,
                before,
                result.first_version,
                result.last_version,
            ) {
                report.imported += count;
            } else {
                report.already_present += count;
            }
            bar.inc(count);
            Ok(())
        }
        // Some of these ids are stored and some are not: a previous import stored part of
        // this batch. One at a time, each event is either stored already or new.
        Err(AppendError::IdempotencyConflict { .. }) => {
            for (event, line) in batch.events.into_iter().zip(batch.lines) {
                let before = versions.get(store, &batch.stream).await?;
                report.appends += 1;
                let result = store
                    .append(&batch.stream, ExpectedVersion::Any, vec![event])
                    .await
                    .with_context(|| {
                        format!(
                            "line {line}: could not import the event into {}",
                            batch.stream
                        )
                    })?;
                if versions.record(
                    &batch.stream,
                    before,
                    result.first_version,
                    result.last_version,
                ) {
                    report.imported += 1;
                } else {
                    report.already_present += 1;
                }
                bar.inc(1);
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "lines {}..={}: could not import {} into {}",
                batch.lines[0],
                batch.lines[batch.lines.len() - 1],
                plural(count, "event"),
                batch.stream
            )
        }),
    }
}
