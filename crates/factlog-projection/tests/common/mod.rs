//! Shared by the projection tests: an embedded store in a temporary directory, event appends,
//! a model of the stream summary computed from the log, and polling with a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use factlog_log::{EmbeddedStore, Options};
use factlog_projection::{ProjectionHandle, ProjectionName, ProjectionOptions, Status};
use factlog_store::{
    EventStore, ExpectedVersion, NewEvent, Position, ReadAll, RecordedEvent, StreamName,
};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Arc<EmbeddedStore>,
}

impl TestStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            EmbeddedStore::open(dir.path().join("events"), Options::default())
                .expect("the store opens"),
        );
        Self { dir, store }
    }

    pub fn dyn_store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// Appends `count` events of type `event_type`, spread over `streams` streams of `category`.
    pub async fn append(&self, category: &str, streams: usize, count: usize, event_type: &str) {
        for i in 0..count {
            self.append_one(&format!("{category}-{}", i % streams), event_type)
                .await;
        }
    }

    pub async fn append_one(&self, stream: &str, event_type: &str) -> RecordedEvent {
        let stream = StreamName::new(stream).expect("a valid stream name");
        let event = NewEvent::json(event_type, &serde_json::json!({ "n": 1 })).expect("json");
        let result = self
            .store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .expect("append");
        self.store
            .read_event(&stream, result.last_version)
            .await
            .expect("read back")
            .expect("the appended event")
    }

    /// The position of the last event.
    pub async fn end(&self) -> Position {
        let last = self
            .store
            .read_all(ReadAll::backward().limit(1))
            .await
            .expect("read the last event");
        last.first().map_or(Position::START, |e| e.position)
    }

    pub async fn events(&self) -> Vec<RecordedEvent> {
        self.store
            .read_all(ReadAll::forward().limit(usize::MAX))
            .await
            .expect("read all")
    }
}

/// One row of the stream summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub category: String,
    pub events: i64,
    pub last_version: i64,
    pub last_event_type: String,
    pub last_position: i64,
}

/// The stream summary computed from `events`, keeping those `wanted` says.
pub fn model(
    events: &[RecordedEvent],
    wanted: impl Fn(&RecordedEvent) -> bool,
) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for event in events.iter().filter(|e| wanted(e)) {
        let row = rows.entry(event.stream.to_string()).or_insert(Row {
            category: event.stream.category().to_string(),
            events: 0,
            last_version: 0,
            last_event_type: String::new(),
            last_position: 0,
        });
        row.events += 1;
        row.last_version = event.version as i64;
        row.last_event_type = event.event_type.to_string();
        row.last_position = event.position.raw() as i64;
    }
    rows
}

/// Options with short backoffs and 3 attempts per event, so failure paths run fast.
pub fn options(name: &str) -> ProjectionOptions {
    let mut options = ProjectionOptions::new(ProjectionName::new(name).unwrap());
    options.backoff_initial = Duration::from_millis(1);
    options.backoff_max = Duration::from_millis(5);
    options.event_attempts_max = 3;
    options
}

/// Polls `check` every 10 ms until it is true, failing after `secs` seconds with `what`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the projection has processed every event of the store.
pub async fn caught_up(handle: &ProjectionHandle, store: &TestStore) -> Status {
    let end = store.end().await;
    let what = format!("the projection to catch up to {end}");
    eventually(30, &what, || async {
        let status = handle.status();
        if status.last_error.is_some() || std::env::var("DEBUG_STATUS").is_ok() {
            eprintln!("{status:?}");
        }
        status.position >= end
    })
    .await;
    handle.status()
}
