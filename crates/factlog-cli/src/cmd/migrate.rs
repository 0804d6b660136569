//! `factlog migrate --from DIR --to kafka://...`: copies an embedded store into a store on
//! Kafka, keeping every stream, version and event id.
//!
//! The source is opened like any data directory (its lock is taken, so a server running on it
//! makes the migration refuse to start). This process joins the store on Kafka as a node that
//! writes (a new cluster has no other node to own its partitions), with its read replica in a
//! temporary directory or in `--replica-dir`.
//!
//! `$all` of the source is read a page at a time; in each page, the events of each stream are
//! cut into chunks (at most [`IMPORT_BATCH_EVENTS_MAX`] events and [`IMPORT_BATCH_BYTES_MAX`]
//! bytes), and each chunk is appended with its events' ids and the exact expected version
//! (`no-stream` for version 0, `exact(v - 1)` otherwise), so every event keeps its version.
//! Chunks go to `--concurrency` lanes by a hash of their stream: a lane appends its chunks one
//! after the other, so one stream's events stay in order, while the lanes run at once and the
//! Kafka writers put their appends into shared transactions. The first chunk of a category that
//! is not on Kafka yet is appended alone (it creates the category's topic), before the others.
//! Multi-stream appends of the source are copied stream by stream (streams of different
//! partitions cannot be appended together on Kafka), so a migration that is interrupted can
//! leave part of one; running it again completes it.
//!
//! Running it again is harmless and resumes an interrupted run: a chunk whose events are all
//! stored comes back as an idempotent retry with the original result and writes nothing; a
//! chunk stored in part (cut differently by an earlier run) is refused as a mix of stored and
//! new events, and is then appended one event at a time. A stream on Kafka that holds other
//! events than the source's (other ids at a version, or the same ids elsewhere) stops the
//! migration with an error naming it; what was written before stays.
//!
//! At the end the node catches up and every stream's last version and event count on Kafka are
//! compared with the source's.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use factlog_kafka::{KafkaStore, STASH_KEY};
use factlog_log::EmbeddedStore;
use factlog_store::{
    AllFrom, AppendError, AppendResult, Direction, EventFilter, EventStore, ExpectedVersion,
    ListStreams, NewEvent, Position, ReadAll, RecordedEvent, StreamName, Version,
};
use indicatif::ProgressBar;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::cmd::backup::{Unit, progress_bar};
use crate::cmd::import::{IMPORT_BATCH_BYTES_MAX, IMPORT_BATCH_EVENTS_MAX};
use crate::cmd::{PAGE_EVENTS, is_store, open_existing, plural};
use crate::config::{FileConfig, parse_property};
use crate::kafka_target::{CATCH_UP_TIMEOUT, KafkaTarget};
use crate::output::Out;

/// How long one append waits for the owner of its partition: long enough for the writers'
/// group to form when this node is the first.
const APPEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the migration waits for this node to own partitions before it routes its appends
/// to other owners.
const OWNERSHIP_WAIT: Duration = Duration::from_secs(20);
/// Attempts of an append that failed for a reason of the backend (such as an aborted
/// transaction), which sending it again with the same ids can fix.
const ATTEMPTS: u32 = 4;
/// Payload bytes of chunks read but not yet appended, at most (in KiB).
const IN_FLIGHT_KIB: usize = 64 * 1024;
/// Stream differences listed in the error of a failed check, at most.
const SHOWN_DIFFERENCES: usize = 10;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The Kafka URL: kafka://HOST:PORT[,HOST:PORT...]/PREFIX?partitions=N&replication-factor=R&min-insync-replicas=M
PREFIX is the store's topic prefix (default factlog.); the query keys are optional (defaults: 8
partitions, replication factor 1, min.insync.replicas 1) and every node of one store must agree
on partitions. librdkafka settings (security, SASL) come from --kafka-property,
FACTLOG_KAFKA_PROPERTIES (k=v,k=v) and [kafka.properties] of the configuration file.

Running the migration again writes nothing that is already there, and resumes one that was
interrupted. Read the store back with `factlog export --kafka URL`.")]
pub struct Args {
    /// The data directory of the embedded store to copy; it must not be open elsewhere.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,

    /// The store on Kafka to copy into (created when missing), as kafka://HOST:PORT/PREFIX.
    #[arg(long, value_name = "URL")]
    to: String,

    /// A librdkafka setting, such as security.protocol=SASL_SSL; repeatable. Passwords belong
    /// in the file or FACTLOG_KAFKA_PROPERTIES (k=v,k=v), not here.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,

    /// Keep this node's read replica (a copy of the whole store) in DIR instead of a temporary
    /// directory removed at the end; a later migration with the same DIR starts faster.
    #[arg(long, value_name = "DIR")]
    replica_dir: Option<PathBuf>,

    /// Appends in flight at once (streams are spread over this many lanes).
    #[arg(long, value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
}

/// What a migration did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Events written by this run.
    pub migrated: u64,
    /// Events that were on Kafka already (written by an earlier run).
    pub already_present: u64,
    /// Streams of the source.
    pub streams: u64,
}

pub async fn run(args: Args, file: &FileConfig, out: &mut Out) -> anyhow::Result<()> {
    // The URL and the settings are checked before anything is opened or connects.
    let target = KafkaTarget::new(&args.to, &args.kafka_properties, &file.kafka)?;
    if !is_store(&args.from) {
        anyhow::bail!(
            "no Factlog store in {} (no {} there): --from names the data directory of the store \
             to migrate",
            args.from.display(),
            factlog_log::segment_file_name(0)
        );
    }
    let started = Instant::now();
    let source = open_existing(&args.from)?;
    let result = migrate_into(&source, &target, &args).await;
    source.close();
    let report = result.context(
        "the migration stopped; the events written before that are on Kafka, and running the \
         same migration again (once the cause is fixed) resumes it",
    )?;
    let took = started.elapsed();
    if out.json() {
        out.json_line(&json!({
            "from": args.from.display().to_string(),
            "to": target.url.to_string(),
            "migrated": report.migrated,
            "alreadyPresent": report.already_present,
            "events": report.migrated + report.already_present,
            "streams": report.streams,
            "durationMillis": took.as_secs_f64() * 1000.0,
        }))?;
    } else {
        out.line(format_args!(
            "migrated {} ({} already present) of {} from {} to {} in {:.1} s",
            plural(report.migrated, "event"),
            report.already_present,
            plural(report.streams, "stream"),
            args.from.display(),
            target.url,
            took.as_secs_f64()
        ))?;
    }
    Ok(())
}

/// Opens the node on Kafka, copies, checks, and closes the node.
async fn migrate_into(
    source: &EmbeddedStore,
    target: &KafkaTarget,
    args: &Args,
) -> anyhow::Result<MigrateReport> {
    let temporary;
    let replica_dir: &Path = match &args.replica_dir {
        Some(dir) => dir,
        None => {
            temporary = tempfile::Builder::new()
                .prefix("factlog-migrate-replica-")
                .tempdir()
                .context("could not create a temporary directory for the Kafka node's replica")?;
            temporary.path()
        }
    };
    let mut options = target.options(replica_dir, true)?;
    options.append_timeout = APPEND_TIMEOUT;
    let opening = Instant::now();
    let kafka = KafkaStore::open(options)
        .await
        .with_context(|| format!("could not open the store at {}", target.url))?;
    tracing::debug!(took = ?opening.elapsed(), "opened the Kafka node");
    let bar = progress_bar(Unit::Events, "migrate");
    let result = copy_and_check(source, &kafka, usize::from(args.concurrency), &bar).await;
    bar.finish_and_clear();
    let closing = Instant::now();
    kafka.close().await;
    tracing::debug!(took = ?closing.elapsed(), "closed the Kafka node");
    result
}

async fn copy_and_check(
    source: &EmbeddedStore,
    kafka: &Arc<KafkaStore>,
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<MigrateReport> {
    // The replica must hold what an earlier run wrote: it tells new events from stored ones.
    let started = Instant::now();
    kafka
        .catch_up(CATCH_UP_TIMEOUT)
        .await
        .context("could not read what the store on Kafka holds")?;
    tracing::debug!(took = ?started.elapsed(), "caught up");
    let deadline = Instant::now() + OWNERSHIP_WAIT;
    while kafka.owned_partitions().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::debug!(took = ?started.elapsed(), owned = ?kafka.owned_partitions(), "owner");
    let (migrated, already_present) = copy(source, kafka, concurrency, bar).await?;
    tracing::debug!(took = ?started.elapsed(), "copied");
    kafka
        .catch_up(CATCH_UP_TIMEOUT)
        .await
        .context("could not read the migrated events back")?;
    tracing::debug!(took = ?started.elapsed(), "caught up after copying");
    let streams = check(source, kafka).await?;
    tracing::debug!(took = ?started.elapsed(), "checked");
    Ok(MigrateReport {
        migrated,
        already_present,
        streams,
    })
}

/// Consecutive events of one stream, appended together.
struct Chunk {
    stream: StreamName,
    first_version: Version,
    events: Vec<NewEvent>,
    bytes: usize,
    /// The stream's last version on Kafka before this run wrote to it.
    before: Option<Version>,
}

impl Chunk {
    fn takes(&self, version: Version, event: &NewEvent) -> bool {
        version == self.first_version + self.events.len() as u64
            && self.events.len() < IMPORT_BATCH_EVENTS_MAX
            && self.bytes + event.payload_size_bytes() <= IMPORT_BATCH_BYTES_MAX
    }

    fn last_version(&self) -> Version {
        self.first_version + self.events.len() as u64 - 1
    }
}

/// The event to append for a source event: the same id, type, schema version, content type,
/// data and metadata.
fn to_new(event: RecordedEvent) -> NewEvent {
    NewEvent::new(event.event_type, event.content_type, event.data)
        .with_schema_version(event.schema_version)
        .with_metadata(event.metadata)
        .with_id(event.id)
}

/// The events of a page, cut into chunks in the order of their first events.
fn chunks(events: Vec<RecordedEvent>) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    let mut last_of: HashMap<StreamName, usize> = HashMap::new();
    for event in events {
        let stream = event.stream.clone();
        let version = event.version;
        let new = to_new(event);
        match last_of.get(&stream) {
            Some(&i) if out[i].takes(version, &new) => {
                out[i].bytes += new.payload_size_bytes();
                out[i].events.push(new);
            }
            _ => {
                last_of.insert(stream.clone(), out.len());
                out.push(Chunk {
                    stream,
                    first_version: version,
                    bytes: new.payload_size_bytes(),
                    events: vec![new],
                    before: None,
                });
            }
        }
    }
    out
}

/// What the lanes share.
struct Shared {
    kafka: Arc<KafkaStore>,
    migrated: AtomicU64,
    already_present: AtomicU64,
    stopped: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
    bar: ProgressBar,
}

impl Shared {
    /// Records the first error; every lane stops.
    fn fail(&self, error: anyhow::Error) {
        self.stopped.store(true, Ordering::SeqCst);
        self.error
            .lock()
            .expect("not poisoned")
            .get_or_insert(error);
    }

    /// Counts `n` events from `first` on as stored: written now, or by an earlier run when
    /// they are at or below the stream's version before this run.
    fn count(&self, before: Option<Version>, first: Version, n: u64) {
        let counter = if before.is_some_and(|last| first <= last) {
            &self.already_present
        } else {
            &self.migrated
        };
        counter.fetch_add(n, Ordering::Relaxed);
        self.bar.inc(n);
    }
}

/// Copies every event of `source`; returns (migrated, already present).
async fn copy(
    source: &EmbeddedStore,
    kafka: &Arc<KafkaStore>,
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<(u64, u64)> {
    let end = source.end_position().await?;
    bar.set_length(end.raw().saturating_sub(1));
    let shared = Arc::new(Shared {
        kafka: kafka.clone(),
        migrated: AtomicU64::new(0),
        already_present: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
        error: Mutex::new(None),
        bar: bar.clone(),
    });
    let budget = Arc::new(Semaphore::new(IN_FLIGHT_KIB));
    let mut lanes = Vec::with_capacity(concurrency);
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (sender, receiver) = mpsc::channel(4);
        lanes.push(sender);
        handles.push(tokio::spawn(lane(shared.clone(), receiver)));
    }
    let read = feed(source, kafka, &lanes, &budget, &shared).await;
    if let Err(e) = read {
        shared.fail(e);
    }
    drop(lanes);
    for handle in handles {
        if let Err(e) = handle.await {
            shared.fail(anyhow!("a migration task failed: {e}"));
        }
    }
    if let Some(e) = shared.error.lock().expect("not poisoned").take() {
        return Err(e);
    }
    Ok((
        shared.migrated.load(Ordering::Relaxed),
        shared.already_present.load(Ordering::Relaxed),
    ))
}

/// Reads the source a page at a time and hands its chunks to the lanes, until the end or until
/// a lane failed.
async fn feed(
    source: &EmbeddedStore,
    kafka: &KafkaStore,
    lanes: &[mpsc::Sender<(Chunk, OwnedSemaphorePermit)>],
    budget: &Arc<Semaphore>,
    shared: &Shared,
) -> anyhow::Result<()> {
    // Each stream's last version on Kafka when the migration first meets it.
    let mut before: HashMap<StreamName, Option<Version>> = HashMap::new();
    // The categories on Kafka. The first append of a new one creates its topic and registers
    // it; it is made alone, since concurrent first appends of one category would each do that
    // work, one after the other.
    let mut categories: HashSet<String> = kafka
        .categories()
        .await
        .context("could not read the categories on Kafka")?
        .into_iter()
        .collect();
    let mut from = AllFrom::Start;
    // Reads include their start: the next page starts at the last event handed on, skipped.
    let mut seen: Option<Position> = None;
    loop {
        let page = PAGE_EVENTS + usize::from(seen.is_some());
        let events = source
            .read_all(ReadAll {
                from,
                direction: Direction::Forward,
                limit: page,
                filter: EventFilter::default(),
                as_of: None,
            })
            .await
            .context("could not read the source")?;
        let fetched = events.len();
        let last = events.last().map(|e| e.position);
        let fresh: Vec<RecordedEvent> = events
            .into_iter()
            .filter(|e| Some(e.position) != seen)
            .collect();
        for mut chunk in chunks(fresh) {
            if shared.stopped.load(Ordering::SeqCst) {
                return Ok(());
            }
            chunk.before = match before.get(&chunk.stream) {
                Some(&last) => last,
                None => {
                    let last = kafka
                        .stream_info(&chunk.stream)
                        .await
                        .with_context(|| format!("could not read {} on Kafka", chunk.stream))?
                        .map(|info| info.last_version);
                    before.insert(chunk.stream.clone(), last);
                    last
                }
            };
            if !categories.contains(chunk.stream.category()) {
                let category = chunk.stream.category().to_owned();
                migrate_chunk(shared, chunk).await?;
                categories.insert(category);
                continue;
            }
            let kib = (chunk.bytes / 1024 + 1).min(IN_FLIGHT_KIB) as u32;
            let permit = budget
                .clone()
                .acquire_many_owned(kib)
                .await
                .expect("the semaphore is never closed");
            let lane = lane_of(&chunk.stream, lanes.len());
            if lanes[lane].send((chunk, permit)).await.is_err() {
                // The lane stopped: it failed, and recorded why.
                return Ok(());
            }
        }
        match last {
            Some(last) if fetched == page && seen != Some(last) => {
                from = AllFrom::Position(last);
                seen = Some(last);
            }
            _ => return Ok(()),
        }
    }
}

/// The lane of a stream: always the same one, so its chunks are appended in order.
fn lane_of(stream: &StreamName, lanes: usize) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    stream.as_str().hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

/// Appends the chunks it is given one after the other; stops at the first error.
async fn lane(shared: Arc<Shared>, mut chunks: mpsc::Receiver<(Chunk, OwnedSemaphorePermit)>) {
    while let Some((chunk, _permit)) = chunks.recv().await {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = migrate_chunk(&shared, chunk).await {
            shared.fail(e);
            return;
        }
    }
}

async fn migrate_chunk(shared: &Shared, chunk: Chunk) -> anyhow::Result<()> {
    let n = chunk.events.len() as u64;
    let (first, last) = (chunk.first_version, chunk.last_version());
    if let Some(version) = (first..)
        .zip(&chunk.events)
        .find_map(|(v, e)| e.metadata.contains_key(STASH_KEY).then_some(v))
    {
        anyhow::bail!(
            "version {version} of stream {} has the metadata key {STASH_KEY:?}, which the Kafka \
             backend reserves; it cannot be migrated as it is",
            chunk.stream
        );
    }
    match append(&shared.kafka, &chunk.stream, first, chunk.events.clone()).await {
        Ok(result) => {
            placed_as_in_source(&chunk.stream, first, last, &result)?;
            shared.count(chunk.before, first, n);
        }
        // Some of these events are stored and some are not: an earlier run stored part of
        // this chunk (cut differently then). One at a time, each is either stored or new.
        Err(AppendError::IdempotencyConflict { .. }) if n > 1 => {
            for (version, event) in (first..).zip(chunk.events) {
                let result = append(&shared.kafka, &chunk.stream, version, vec![event])
                    .await
                    .map_err(|e| refused(&chunk.stream, version, version, e))?;
                placed_as_in_source(&chunk.stream, version, version, &result)?;
                shared.count(chunk.before, version, 1);
            }
        }
        Err(e) => return Err(refused(&chunk.stream, first, last, e)),
    }
    Ok(())
}

/// Appends events that start at `first_version` in the source, expecting the stream right
/// before them; sends again when the backend failed in a way that may pass (the ids make
/// sending again safe).
async fn append(
    kafka: &KafkaStore,
    stream: &StreamName,
    first_version: Version,
    events: Vec<NewEvent>,
) -> Result<AppendResult, AppendError> {
    let expected = match first_version.checked_sub(1) {
        None => ExpectedVersion::NoStream,
        Some(previous) => ExpectedVersion::Exact(previous),
    };
    let mut attempt = 1;
    loop {
        match kafka.append(stream, expected, events.clone()).await {
            Err(AppendError::Backend(reason)) if attempt < ATTEMPTS => {
                tracing::warn!(%stream, attempt, %reason, "an append failed; sending it again");
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Fails unless the events of versions `first..=last` are stored at those versions (an
/// idempotent retry returns where the events are, which could be elsewhere).
fn placed_as_in_source(
    stream: &StreamName,
    first: Version,
    last: Version,
    result: &AppendResult,
) -> anyhow::Result<()> {
    if (result.first_version, result.last_version) != (first, last) {
        anyhow::bail!(
            "stream {stream} on Kafka holds other events than the source: the source's events \
             of versions {first}..={last} are stored there as versions {}..={}",
            result.first_version,
            result.last_version
        );
    }
    Ok(())
}

/// The error of an append of versions `first..=last` of `stream` that was refused.
fn refused(stream: &StreamName, first: Version, last: Version, e: AppendError) -> anyhow::Error {
    let message = match &e {
        AppendError::WrongExpectedVersion { current, .. } => {
            let state = match current {
                Some(v) => format!("is at version {v}"),
                None => "does not exist".into(),
            };
            format!(
                "stream {stream} on Kafka holds other events than the source: the source's \
                 version {first} follows {}, but the stream on Kafka {state}",
                match first.checked_sub(1) {
                    Some(v) => format!("version {v}"),
                    None => "nothing".into(),
                }
            )
        }
        AppendError::IdempotencyConflict { .. } => format!(
            "stream {stream} on Kafka holds other events than the source at version {first}"
        ),
        _ => format!("could not append versions {first}..={last} of stream {stream} to Kafka"),
    };
    anyhow::Error::new(e).context(message)
}

/// Compares every stream's last version and event count on Kafka with the source's; returns
/// how many streams the source has.
async fn check(source: &EmbeddedStore, kafka: &KafkaStore) -> anyhow::Result<u64> {
    let mut streams = 0u64;
    let mut differences = Vec::new();
    let mut different = 0u64;
    let mut after = None;
    loop {
        let page = source
            .list_streams(ListStreams {
                prefix: String::new(),
                after: after.take(),
                limit: 1000,
            })
            .await?;
        for stream in &page.streams {
            streams += 1;
            let Some(want) = source.stream_info(stream).await? else {
                continue;
            };
            let have = kafka.stream_info(stream).await?;
            let difference = match have {
                None => Some("missing on Kafka".to_owned()),
                Some(have)
                    if (have.last_version, have.event_count)
                        != (want.last_version, want.event_count) =>
                {
                    Some(format!(
                        "{} up to version {} on Kafka, {} up to version {} in the source",
                        plural(have.event_count, "event"),
                        have.last_version,
                        plural(want.event_count, "event"),
                        want.last_version
                    ))
                }
                Some(_) => None,
            };
            if let Some(difference) = difference {
                different += 1;
                if differences.len() < SHOWN_DIFFERENCES {
                    differences.push(format!("{stream}: {difference}"));
                }
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if different > 0 {
        anyhow::bail!(
            "the check after copying found {} that differ on Kafka from the source{}: {}",
            plural(different, "stream"),
            if different as usize > differences.len() {
                format!(" (the first {})", differences.len())
            } else {
                String::new()
            },
            differences.join("; ")
        );
    }
    Ok(streams)
}
