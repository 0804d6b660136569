//! Shared by the projection tests: an embedded store in a temporary directory, event appends,
//! a model of the stream summary computed from the log, and polling with a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use factlog_log::{EmbeddedStore, Options};
use factlog_projection::{
    ApplyError, NewDeadLetter, Projection, ProjectionHandle, ProjectionName, ProjectionOptions,
    Sink, SinkError, Status, Target,
};
use factlog_store::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, Position, ReadAll, RecordedEvent,
    StreamName, Timestamp,
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

/// A per-partition checkpoint from (partition key, raw position) pairs.
pub fn per_partition(parts: &[(u64, u64)]) -> Checkpoint {
    Checkpoint::PerPartition(
        parts
            .iter()
            .map(|&(key, raw)| (key, Position::from_raw(raw)))
            .collect(),
    )
}

/// Per-partition checkpoints as the Kafka store makes them: keys are a position's bits above
/// its 38-bit offset, so positions lie above 2^40, one partition's past `i64::MAX`. Each one moves the
/// one before it forward (`[1]` also adds a partition).
pub fn kafka_checkpoints() -> [Checkpoint; 3] {
    let at = |key: u64, offset: u64| (key, (key << 38) + offset);
    [
        per_partition(&[at(5, 7), at(1027, 1 << 20), at(40_000_000, 3)]),
        per_partition(&[at(5, 8), at(1027, 1 << 20), at(40_000_000, 3), at(6, 0)]),
        per_partition(&[
            at(5, 9),
            at(1027, (1 << 20) + 2),
            at(40_000_000, 3),
            at(6, 1),
        ]),
    ]
}

/// A dead letter of `event` after one failed attempt.
pub fn dead_letter(event: &RecordedEvent, error: &str) -> NewDeadLetter {
    let now = Timestamp::now();
    NewDeadLetter {
        event: event.clone(),
        error: error.to_owned(),
        attempts: 1,
        first_failed_at: now,
        last_failed_at: now,
    }
}

/// The checkpoints `sink` stores for `name`.
pub async fn stored_checkpoints<S: Sink>(
    sink: &S,
    name: &ProjectionName,
) -> BTreeMap<u64, Checkpoint> {
    sink.load(name)
        .await
        .expect("the sink loads")
        .expect("the projection is registered")
        .checkpoints
}

/// Generation 1 of `name` (live) goes through every operation that moves a checkpoint, with
/// per-partition checkpoints, and reads back exactly what each stored: created at the start of
/// every partition, `events[..5]` applied, `events[5]` parked, then reset twice (to fewer
/// partitions, then to a totally ordered checkpoint, which clears the partitions).
pub async fn per_partition_round_trip<S: Sink, P: Projection<S>>(
    sink: &S,
    projection: Arc<P>,
    name: &ProjectionName,
    events: &[RecordedEvent],
) {
    let target = |checkpoint: &Checkpoint| Target {
        name: name.clone(),
        generation: 1,
        checkpoint: checkpoint.clone(),
    };
    let start = Checkpoint::PerPartition(BTreeMap::new());
    let [a, b, _] = kafka_checkpoints();
    sink.create_generation(projection.clone(), target(&start), true)
        .await
        .unwrap();
    assert_eq!(
        stored_checkpoints(sink, name).await,
        BTreeMap::from([(1, start.clone())])
    );
    sink.apply(projection, target(&start), events[..5].to_vec(), a.clone())
        .await
        .unwrap();
    assert_eq!(
        stored_checkpoints(sink, name).await,
        BTreeMap::from([(1, a.clone())])
    );
    sink.park(target(&a), dead_letter(&events[5], "refused"), b.clone())
        .await
        .unwrap();
    assert_eq!(
        stored_checkpoints(sink, name).await,
        BTreeMap::from([(1, b.clone())])
    );
    let dead = sink.dead_letters(name).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].position, events[5].position);
    assert_eq!(dead[0].event_id, events[5].id);
    let fewer = per_partition(&[(6, 6 << 38)]);
    sink.set_checkpoint(target(&b), fewer.clone())
        .await
        .unwrap();
    assert_eq!(
        stored_checkpoints(sink, name).await,
        BTreeMap::from([(1, fewer.clone())])
    );
    let total = Checkpoint::Total(events[2].position);
    sink.set_checkpoint(target(&fewer), total.clone())
        .await
        .unwrap();
    assert_eq!(
        stored_checkpoints(sink, name).await,
        BTreeMap::from([(1, total)])
    );
}

/// Every operation that moves the checkpoint of generation 1 of `name`, expecting checkpoints
/// that differ from `current` (the stored one, per partition) only slightly, is fenced and
/// changes no checkpoint: one partition's position, a partition missing, and the totally
/// ordered checkpoint with the same position column (0).
pub async fn per_partition_fences<S: Sink, P: Projection<S>>(
    sink: &S,
    projection: Arc<P>,
    name: &ProjectionName,
    events: &[RecordedEvent],
    current: &Checkpoint,
) {
    let Checkpoint::PerPartition(parts) = current else {
        panic!("{current:?} is not per partition")
    };
    let mut one_off = parts.clone();
    let (&key, &position) = one_off.iter().nth(1).expect("two partitions");
    one_off.insert(key, Position::from_raw(position.raw() + 1));
    let mut missing = parts.clone();
    missing.remove(&key);
    let stale = [
        Checkpoint::PerPartition(one_off),
        Checkpoint::PerPartition(missing),
        Checkpoint::Total(Position::START),
    ];
    let [_, _, to] = kafka_checkpoints();
    for expected in stale {
        let target = Target {
            name: name.clone(),
            generation: 1,
            checkpoint: expected.clone(),
        };
        let fenced = ApplyError::Fenced {
            name: name.clone(),
            generation: 1,
            expected: Some(expected.clone()),
            found: Some(current.clone()),
        };
        let error = sink
            .apply(
                projection.clone(),
                target.clone(),
                events.to_vec(),
                to.clone(),
            )
            .await
            .unwrap_err();
        assert_eq!(error, fenced, "apply expecting {expected:?}");
        let error = sink
            .park(
                target.clone(),
                dead_letter(&events[0], "refused"),
                to.clone(),
            )
            .await
            .unwrap_err();
        assert_eq!(error, fenced, "park expecting {expected:?}");
        let error = sink.set_checkpoint(target, to.clone()).await.unwrap_err();
        assert_eq!(error, fenced, "set_checkpoint expecting {expected:?}");
    }
    assert_eq!(
        stored_checkpoints(sink, name).await,
        BTreeMap::from([(1, current.clone())])
    );
    assert!(sink.dead_letters(name).await.unwrap().is_empty());
}

/// Whether `error` is the sink's refusal of an unreadable checkpoint of generation 1 of
/// `name`: invalid, naming both.
pub fn names_unreadable_checkpoint(error: &SinkError, name: &ProjectionName) -> bool {
    matches!(error, SinkError::Invalid(m) if m.contains(&format!("{name} generation 1")))
}
