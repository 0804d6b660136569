//! One module per `factlog` command, and what they share: opening the store and printing events.

pub mod append;
pub mod backup;
pub mod bench;
pub mod export;
pub mod import;
pub mod info;
pub mod migrate;
pub mod projections;
pub mod read;
pub mod restore;
pub mod serve;
pub mod stats;
pub mod streams;
pub mod tail;
pub mod verify;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use factlog_client::HttpStore;
use factlog_kafka::KafkaStore;
use factlog_log::{EmbeddedStore, IndexSource, OpenReport, Options, segment_file_name};
use factlog_store::{EventStore, RecordedEvent};

use crate::UsageError;
use crate::kafka_target::{KafkaTarget, open_reader};
use serde_json::{Value, json};

/// Events asked of the store per call when a command reads more than that: bounds memory.
pub const PAGE_EVENTS: usize = 4096;

/// Whether `dir` holds a store (its first segment file).
pub fn is_store(dir: &Path) -> bool {
    dir.join(segment_file_name(0)).is_file()
}

/// Opens the store in `dir`, which must exist: commands that only read must not leave an empty
/// store behind a mistyped `--data-dir`.
pub fn open_existing(dir: &Path) -> anyhow::Result<EmbeddedStore> {
    if !is_store(dir) {
        bail!(
            "no Factlog store in {} (no {} there); pass --data-dir DIR or set FACTLOG_DATA_DIR \
             to the store's directory, or append an event to create a store there",
            dir.display(),
            segment_file_name(0)
        );
    }
    open(dir)
}

/// Opens the store in `dir`, creating it when it does not exist.
pub fn open(dir: &Path) -> anyhow::Result<EmbeddedStore> {
    EmbeddedStore::open(dir, Options::default())
        .with_context(|| format!("could not open the store in {}", dir.display()))
}

/// Where a command works: a data directory (opened by the command, which then owns it), a
/// running server (`--server URL --token T`) through the HTTP client, or, for the commands that
/// only read, a store on Kafka (`--kafka URL`) through a node that does not write.
#[derive(Debug, Clone)]
pub enum Location {
    Dir(PathBuf),
    Server { url: String, token: Option<String> },
    Kafka(Box<KafkaTarget>),
}

/// An open store: the embedded one in a data directory, a server's, or a store on Kafka.
pub struct Opened {
    store: Arc<dyn EventStore>,
    embedded: Option<Arc<EmbeddedStore>>,
    kafka: Option<KafkaNode>,
}

/// A reading node of a store on Kafka and its temporary replica directory, removed once the
/// node is closed and this is dropped.
struct KafkaNode {
    store: Arc<KafkaStore>,
    _replica: tempfile::TempDir,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("embedded", &self.embedded.is_some())
            .field("kafka", &self.kafka.is_some())
            .finish()
    }
}

impl Deref for Opened {
    type Target = dyn EventStore;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl Opened {
    fn embedded(store: EmbeddedStore) -> Self {
        let store = Arc::new(store);
        Self {
            store: store.clone(),
            embedded: Some(store),
            kafka: None,
        }
    }

    /// The embedded store, when the command opened a data directory.
    pub fn local(&self) -> Option<&EmbeddedStore> {
        self.embedded.as_deref()
    }

    /// Closes an embedded store (sync, index snapshot, lock released) or a Kafka node (its
    /// replica); nothing for a server.
    pub async fn close(&self) {
        if let Some(store) = &self.embedded {
            store.close();
        }
        if let Some(node) = &self.kafka {
            node.store.close().await;
        }
    }
}

impl Location {
    /// Opens the store, which must exist: a data directory that holds one, a server, or a
    /// store on Kafka (read by a node that catches up first, so it holds everything committed
    /// when this is called).
    pub async fn open_existing(&self) -> anyhow::Result<Opened> {
        match self {
            Location::Dir(dir) => open_existing(dir).map(Opened::embedded),
            Location::Server { .. } => self.server(),
            Location::Kafka(target) => {
                let (store, replica) = open_reader(target).await?;
                Ok(Opened {
                    store: store.clone(),
                    embedded: None,
                    kafka: Some(KafkaNode {
                        store,
                        _replica: replica,
                    }),
                })
            }
        }
    }

    /// Opens the store, creating it when it is a data directory that holds none.
    pub fn open(&self) -> anyhow::Result<Opened> {
        self.open_with(Options::default())
    }

    /// Like [`Location::open`], with options for a data directory.
    pub fn open_with(&self, options: Options) -> anyhow::Result<Opened> {
        match self {
            Location::Dir(dir) => EmbeddedStore::open(dir, options)
                .with_context(|| format!("could not open the store in {}", dir.display()))
                .map(Opened::embedded),
            Location::Server { .. } => self.server(),
            Location::Kafka(target) => Err(UsageError(format!(
                "--kafka {} is for the commands that read (export, read, streams, info); to \
                 copy a store into Kafka, use `factlog migrate --from DIR --to URL`",
                target.url
            ))
            .into()),
        }
    }

    fn server(&self) -> anyhow::Result<Opened> {
        let Location::Server { url, token } = self else {
            unreachable!("called for a server target only")
        };
        let store = HttpStore::new(url, token.clone())
            .with_context(|| format!("could not set up the client for {url}"))?;
        Ok(Opened {
            store: Arc::new(store),
            embedded: None,
            kafka: None,
        })
    }

    /// The data directory of a command that only works on one.
    pub fn local_dir(&self, command: &str, why: &str) -> Result<&Path, UsageError> {
        match self {
            Location::Dir(dir) => Ok(dir),
            Location::Server { .. } => Err(UsageError(format!(
                "`factlog {command}` works on a data directory, not with --server: {why}"
            ))),
            Location::Kafka(_) => Err(UsageError(format!(
                "`factlog {command}` works on a data directory, not with --kafka: {why}"
            ))),
        }
    }

    /// The data directory or the server's URL, for messages.
    pub fn describe(&self) -> String {
        match self {
            Location::Dir(dir) => dir.display().to_string(),
            Location::Server { url, .. } => url.clone(),
            Location::Kafka(target) => target.url.to_string(),
        }
    }
}

/// An event as one JSON object: the shape `factlog read --json` prints.
pub fn event_json(event: &RecordedEvent) -> Value {
    json!({
        "eventId": event.id.to_string(),
        "stream": event.stream.as_str(),
        "version": event.version,
        // A string, as everywhere in Factlog: JSON numbers lose precision above 2^53.
        "position": event.position.to_string(),
        "eventType": event.event_type.as_str(),
        "schemaVersion": event.schema_version,
        "contentType": event.content_type.as_str(),
        "recordedAt": event.recorded_at.to_rfc3339_millis(),
        "data": data_json(event),
        "metadata": Value::Object(event.metadata.clone()),
    })
}

/// The data as JSON when it is JSON, otherwise as (lossily decoded) text.
fn data_json(event: &RecordedEvent) -> Value {
    if event.content_type.is_json()
        && let Ok(value) = serde_json::from_slice(&event.data)
    {
        return value;
    }
    Value::String(String::from_utf8_lossy(&event.data).into_owned())
}

/// An event as one line of text: position, stream@version, type, time, data, metadata.
pub fn event_text(event: &RecordedEvent) -> String {
    let data = match data_json(event) {
        Value::String(text) if !event.content_type.is_json() => text,
        value => value.to_string(),
    };
    let mut line = format!(
        "{:>10}  {}@{}  {}  {}  {}",
        event.position.to_string(),
        event.stream,
        event.version,
        event.event_type,
        event.recorded_at.to_rfc3339_millis(),
        data
    );
    if !event.metadata.is_empty() {
        line.push_str("  metadata=");
        line.push_str(&Value::Object(event.metadata.clone()).to_string());
    }
    line
}

/// What opening found and did, as JSON (`factlog stats --json` and the bench's details).
pub fn open_report_json(report: &OpenReport) -> Value {
    json!({
        "durationMillis": report.duration.as_secs_f64() * 1000.0,
        "indexSource": index_source_name(report.index_source),
        "snapshotProblem": report.snapshot_problem,
        "segments": report.segments,
        "events": report.events,
        "checkedBytes": report.checked_bytes,
        "truncatedBytes": report.truncated_bytes,
        "truncatedAt": report.truncated_at.as_ref().map(|(file, offset)| json!({"file": file, "offset": offset})),
        "removedSegments": report.removed_segments,
    })
}

pub fn index_source_name(source: IndexSource) -> &'static str {
    match source {
        IndexSource::Snapshot => "snapshot",
        IndexSource::Rebuilt => "rebuilt",
    }
}

/// `1 event` / `2 events`.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}
