//! The repository on the embedded store: commands, retries, idempotency by command id,
//! metadata, multi-aggregate commands, snapshots and time travel.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use common::{Received, Shipped, Stock, StockCommand, StockError, StockEvent, StockV2, open_store};
use factlog_aggregate::{
    At, Command, CommandError, FileSnapshots, InMemorySnapshots, LoadError, Outcome, Repository,
    RetryPolicy, Snapshot, SnapshotPolicy, SnapshotStore,
};
use factlog_log::EmbeddedStore;
use factlog_store::{
    AppendError, AppendResult, ContentType, EventFilter, EventId, EventStore, EventType,
    ExpectedVersion, ListStreams, NewEvent, Ordering as StoreOrdering, Position, ReadAll,
    ReadError, ReadStream, RecordedEvent, StreamAppend, StreamInfo, StreamName, StreamPage,
    SubscribeFrom, Subscription, Timestamp, Version,
};

fn stream(id: &str) -> StreamName {
    StreamName::new(format!("stock-{id}")).unwrap()
}

async fn event_count(store: &Arc<EmbeddedStore>, id: &str) -> u64 {
    store
        .stream_info(&stream(id))
        .await
        .unwrap()
        .unwrap()
        .event_count
}

#[tokio::test]
async fn commands_append_events_and_business_errors_come_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let stocks = Repository::<Stock>::new(store.clone());

    let first = stocks.execute("a", StockCommand::Receive(5)).await.unwrap();
    assert_eq!(first.version, Some(0));
    assert_eq!(first.state.on_hand, 5);
    assert!(matches!(first.outcome, Outcome::Applied(r) if r.first_version == 0));
    stocks.execute("a", StockCommand::Ship(2)).await.unwrap();

    let err = stocks
        .execute("a", StockCommand::Ship(4))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(StockError::NotEnough {
            on_hand: 3,
            wanted: 4
        })
    ));
    let unchanged = stocks.execute("a", StockCommand::Count).await.unwrap();
    assert_eq!(unchanged.outcome, Outcome::Unchanged);
    assert_eq!(unchanged.version, Some(1));

    // Nothing but the two accepted commands reached the store.
    let events = store
        .read_stream(&stream("a"), ReadStream::forward())
        .await
        .unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Received", "Shipped"]);
    assert_eq!(events[0].schema_version, 2);
    assert_eq!(events[1].schema_version, 1);
    assert_eq!(
        events[0].json_data::<serde_json::Value>().unwrap(),
        serde_json::json!({"quantity": 5})
    );

    let loaded = stocks.load("a").await.unwrap();
    assert_eq!((loaded.state.on_hand, loaded.version), (3, Some(1)));
    let missing = stocks.load("nobody").await.unwrap();
    assert_eq!((missing.state, missing.version), (Stock::default(), None));
}

#[tokio::test]
async fn a_command_id_is_applied_once_even_when_the_state_has_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let stocks = Repository::<Stock>::new(store.clone());
    stocks.execute("a", StockCommand::Receive(1)).await.unwrap();

    let ship = || Command::new(StockCommand::Ship(1)).with_id("ship-1");
    let applied = stocks.execute("a", ship()).await.unwrap();
    let Outcome::Applied(original) = applied.outcome else {
        panic!("first execution applies: {:?}", applied.outcome)
    };
    // The stock is now empty, so deciding again would be a business error; the retry is
    // recognized by its id instead, and answers with the original result and state.
    let retried = stocks.execute("a", ship()).await.unwrap();
    assert_eq!(retried.outcome, Outcome::AlreadyApplied(original));
    assert_eq!(retried.state.on_hand, 0);
    assert_eq!(retried.version, Some(1));
    assert_eq!(
        retried.events,
        vec![StockEvent::Shipped(Shipped { quantity: 1 })]
    );
    // Later events do not change what the retry answers.
    stocks.execute("a", StockCommand::Receive(7)).await.unwrap();
    let later = stocks.execute("a", ship()).await.unwrap();
    assert_eq!(later.outcome, Outcome::AlreadyApplied(original));
    assert_eq!(later.state.on_hand, 0);

    // The same command id on another aggregate is another command.
    stocks.execute("b", StockCommand::Receive(1)).await.unwrap();
    let other = stocks.execute("b", ship()).await.unwrap();
    assert!(matches!(other.outcome, Outcome::Applied(_)));
    assert_eq!(event_count(&store, "a").await, 3);
}

#[tokio::test]
async fn concurrent_retries_of_one_command_apply_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let stocks = Repository::<Stock>::new(store.clone()).with_retry(RetryPolicy {
        attempts_max: 200,
        ..RetryPolicy::default()
    });
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let stocks = stocks.clone();
            tokio::spawn(async move {
                stocks
                    .execute(
                        "a",
                        Command::new(StockCommand::Receive(3)).with_id("receive-once"),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        let executed = task.await.unwrap();
        assert_eq!(executed.state.on_hand, 3);
        applied += matches!(executed.outcome, Outcome::Applied(_)) as u32;
    }
    // Several tasks may see `Applied` when the store recognized their identical append as a
    // retry of the same ids; the stream holds the command's event once either way.
    assert!(applied >= 1);
    let info = store.stream_info(&stream("a")).await.unwrap().unwrap();
    assert_eq!(info.event_count, 1);
}

#[tokio::test]
async fn concurrent_commands_retry_until_each_wins_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let stocks = Repository::<Stock>::new(store.clone()).with_retry(RetryPolicy {
        attempts_max: 500,
        ..RetryPolicy::default()
    });
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let stocks = stocks.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    stocks
                        .execute("hot", StockCommand::Receive(1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let loaded = stocks.load("hot").await.unwrap();
    assert_eq!((loaded.state.on_hand, loaded.version), (80, Some(79)));
}

/// A store that appends one foreign event to the stream before each of the first `races`
/// appends, as a competing writer would between a load and an append.
struct RacingStore {
    inner: Arc<dyn EventStore>,
    races: AtomicU32,
    /// Before the next append, a rival writes one foreign event and then this very append (as
    /// another execution of the same command would, one version later).
    same_command_races: AtomicU32,
}

#[async_trait]
impl EventStore for RacingStore {
    fn ordering(&self) -> StoreOrdering {
        self.inner.ordering()
    }
    async fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        if self
            .races
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let rival = NewEvent::json("Received", &serde_json::json!({"quantity": 100}))
                .unwrap()
                .with_schema_version(2);
            self.inner
                .append(&appends[0].stream, ExpectedVersion::Any, vec![rival])
                .await?;
        }
        if self
            .same_command_races
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let rival = NewEvent::json("Received", &serde_json::json!({"quantity": 100}))
                .unwrap()
                .with_schema_version(2);
            self.inner
                .append(&appends[0].stream, ExpectedVersion::Any, vec![rival])
                .await?;
            let same: Vec<_> = appends
                .iter()
                .map(|a| StreamAppend {
                    expected: ExpectedVersion::Any,
                    ..a.clone()
                })
                .collect();
            self.inner.append_multi(same).await?;
        }
        self.inner.append_multi(appends).await
    }
    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.inner.read_stream(stream, options).await
    }
    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError> {
        self.inner.read_event(stream, version).await
    }
    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError> {
        self.inner.read_event_by_id(id).await
    }
    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError> {
        self.inner.stream_info(stream).await
    }
    async fn read_all(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        self.inner.read_all(options).await
    }
    async fn list_streams(&self, options: ListStreams) -> Result<StreamPage, ReadError> {
        self.inner.list_streams(options).await
    }
    async fn categories(&self) -> Result<Vec<String>, ReadError> {
        self.inner.categories().await
    }
    async fn end_position(&self) -> Result<Position, ReadError> {
        self.inner.end_position().await
    }
    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        self.inner.subscribe_all(from, filter)
    }
    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription {
        self.inner.subscribe_stream(stream, from)
    }
}

#[tokio::test]
async fn a_lost_race_reloads_and_decides_again() {
    let dir = tempfile::tempdir().unwrap();
    let racing = Arc::new(RacingStore {
        inner: open_store(dir.path()),
        races: AtomicU32::new(0),
        same_command_races: AtomicU32::new(0),
    });
    let stocks = Repository::<Stock>::new(racing.clone()).with_retry(RetryPolicy {
        attempts_max: 3,
        ..RetryPolicy::default()
    });
    stocks.execute("a", StockCommand::Receive(1)).await.unwrap();

    // Two lost races, then a win: the decision is made on the state the rival left.
    racing.races.store(2, Ordering::SeqCst);
    let executed = stocks.execute("a", StockCommand::Ship(1)).await.unwrap();
    assert_eq!(executed.state.on_hand, 1 + 200 - 1);
    assert_eq!(executed.version, Some(3));

    // Three lost races use up the attempts: a conflict error, and nothing of ours written.
    racing.races.store(3, Ordering::SeqCst);
    let err = stocks
        .execute("a", StockCommand::Ship(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CommandError::Conflict { attempts: 3, stream: s } if s == &stream("a")),
        "{err:?}"
    );
    let loaded = stocks.load("a").await.unwrap();
    assert_eq!((loaded.state.on_hand, loaded.version), (500, Some(6)));

    // Another execution of the same command lands one version later than this one expected:
    // the store answers with that append, and the result is that execution's state.
    racing.same_command_races.store(1, Ordering::SeqCst);
    let executed = stocks
        .execute("a", Command::new(StockCommand::Ship(5)).with_id("dup"))
        .await
        .unwrap();
    let Outcome::AlreadyApplied(result) = executed.outcome else {
        panic!("{:?}", executed.outcome)
    };
    assert_eq!((result.first_version, executed.version), (8, Some(8)));
    assert_eq!(executed.state.on_hand, 500 + 100 - 5);
    let loaded = stocks.load("a").await.unwrap();
    assert_eq!((loaded.state.on_hand, loaded.version), (595, Some(8)));

    // Without retries, the first lost race is the answer.
    racing.races.store(1, Ordering::SeqCst);
    let none = Repository::<Stock>::new(racing.clone()).with_retry(RetryPolicy::none());
    assert!(matches!(
        none.execute("a", StockCommand::Ship(1)).await,
        Err(CommandError::Conflict { attempts: 1, .. })
    ));
}

#[tokio::test]
async fn correlation_and_causation_ids_flow_into_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let stocks = Repository::<Stock>::new(store.clone());
    let mut extra = factlog_store::Metadata::new();
    extra.insert("user".into(), "ada".into());
    stocks
        .execute(
            "a",
            Command::new(StockCommand::Receive(1))
                .with_id("cmd-7")
                .with_correlation_id("order-flow-1")
                .with_causation_id("request-3")
                .with_metadata(extra),
        )
        .await
        .unwrap();
    stocks
        .execute("a", Command::new(StockCommand::Receive(1)))
        .await
        .unwrap();
    let events = store
        .read_stream(&stream("a"), ReadStream::forward())
        .await
        .unwrap();
    let m = &events[0].metadata;
    assert_eq!(m["commandId"], "cmd-7");
    assert_eq!(m["correlationId"], "order-flow-1");
    assert_eq!(m["causationId"], "request-3");
    assert_eq!(m["user"], "ada");
    assert!(events[1].metadata.is_empty());

    let err = stocks
        .execute("a", Command::new(StockCommand::Receive(1)).with_id(""))
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::InvalidCommand(_)), "{err:?}");
    let err = stocks
        .execute("", StockCommand::Receive(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Load(LoadError::InvalidId { .. })),
        "{err:?}"
    );
    assert_eq!(event_count(&store, "a").await, 2);
}

#[tokio::test]
async fn commands_on_several_aggregates_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let stocks = Repository::<Stock>::new(store.clone());
    stocks.execute("a", StockCommand::Receive(5)).await.unwrap();

    let moved = stocks
        .execute_all(
            Command::new(vec![
                ("a".to_owned(), StockCommand::Ship(3)),
                ("b".to_owned(), StockCommand::Receive(3)),
            ])
            .with_id("move-1"),
        )
        .await
        .unwrap();
    assert_eq!(moved[0].state.on_hand, 2);
    assert_eq!(moved[1].state.on_hand, 3);
    let (Outcome::Applied(a), Outcome::Applied(b)) = (moved[0].outcome, moved[1].outcome) else {
        panic!("both applied")
    };
    assert_eq!(b.first_position.raw(), a.last_position.raw() + 1);

    // One refusal refuses the whole command: nothing is written anywhere.
    let err = stocks
        .execute_all(Command::new(vec![
            ("a".to_owned(), StockCommand::Ship(3)),
            ("c".to_owned(), StockCommand::Receive(3)),
        ]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(StockError::NotEnough { .. })
    ));
    assert_eq!(store.stream_info(&stream("c")).await.unwrap(), None);

    // A retried multi-aggregate command is recognized on every aggregate.
    let again = stocks
        .execute_all(
            Command::new(vec![
                ("a".to_owned(), StockCommand::Ship(3)),
                ("b".to_owned(), StockCommand::Receive(3)),
            ])
            .with_id("move-1"),
        )
        .await
        .unwrap();
    assert_eq!(again[0].outcome, Outcome::AlreadyApplied(a));
    assert_eq!(again[1].outcome, Outcome::AlreadyApplied(b));

    let err = stocks
        .execute_all(Command::new(vec![
            ("a".to_owned(), StockCommand::Ship(1)),
            ("a".to_owned(), StockCommand::Ship(1)),
        ]))
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::DuplicateAggregate { .. }));
}

#[tokio::test]
async fn old_event_versions_are_upcast_and_unknown_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let v1 = NewEvent::json("Received", &serde_json::json!({"qty": 4})).unwrap();
    store
        .append(&stream("old"), ExpectedVersion::NoStream, vec![v1])
        .await
        .unwrap();
    let stocks = Repository::<Stock>::new(store.clone());
    assert_eq!(stocks.load("old").await.unwrap().state.on_hand, 4);
    let history = stocks.history("old", 0, 10).await.unwrap();
    assert_eq!(
        history[0].event,
        StockEvent::Received(Received { quantity: 4 })
    );

    let future = NewEvent::json("Received", &serde_json::json!({"quantity": 1}))
        .unwrap()
        .with_schema_version(3);
    store
        .append(&stream("old"), ExpectedVersion::Any, vec![future])
        .await
        .unwrap();
    let err = stocks.load("old").await.unwrap_err();
    assert!(
        matches!(&err, LoadError::Decode { version: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Received v3"), "{err}");

    let unknown = NewEvent::json("Stolen", &serde_json::json!({})).unwrap();
    let bytes = NewEvent::new(
        EventType::new("Received").unwrap(),
        ContentType::new("application/octet-stream").unwrap(),
        vec![1, 2, 3],
    );
    store
        .append(&stream("odd"), ExpectedVersion::Any, vec![unknown])
        .await
        .unwrap();
    store
        .append(&stream("bytes"), ExpectedVersion::Any, vec![bytes])
        .await
        .unwrap();
    for id in ["odd", "bytes"] {
        let err = stocks.load(id).await.unwrap_err();
        assert!(
            matches!(err, LoadError::Decode { version: 0, .. }),
            "{err:?}"
        );
        // A command on an unreadable aggregate is refused before deciding anything.
        assert!(matches!(
            stocks.execute(id, StockCommand::Receive(1)).await,
            Err(CommandError::Load(LoadError::Decode { .. }))
        ));
    }
}

#[tokio::test]
async fn snapshots_are_taken_by_policy_and_change_nothing_but_speed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("events"));
    let snapshots = Arc::new(FileSnapshots::open(dir.path().join("snapshots")).unwrap());
    let stocks = Repository::<Stock>::new(store.clone())
        .with_snapshots(snapshots.clone(), SnapshotPolicy::EveryEvents(10));
    for _ in 0..25 {
        stocks.execute("a", StockCommand::Receive(2)).await.unwrap();
    }
    let snapshot = snapshots.load(&stream("a")).await.unwrap().unwrap();
    assert_eq!(snapshot.version, 19);
    assert_eq!(snapshot.aggregate_type, "stock");
    assert_eq!(snapshot.snapshot_version, 1);

    let with = stocks.load("a").await.unwrap();
    assert_eq!(with.snapshot_version, Some(19));
    assert_eq!(with.events_applied, 5);
    let plain = Repository::<Stock>::new(store.clone())
        .load("a")
        .await
        .unwrap();
    assert_eq!(plain.events_applied, 25);
    assert_eq!(
        (with.state.clone(), with.version),
        (plain.state.clone(), plain.version)
    );

    // Deleting the snapshot: the same state, from every event.
    snapshots.delete(&stream("a")).await.unwrap();
    let without = stocks.load("a").await.unwrap();
    assert_eq!(
        (without.state, without.version),
        (plain.state, plain.version)
    );
    assert_eq!(without.snapshot_version, None);
    // ... and the policy took a new one on that load.
    assert_eq!(
        snapshots.load(&stream("a")).await.unwrap().unwrap().version,
        24
    );
}

#[tokio::test]
async fn snapshots_of_another_format_or_another_history_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let snapshots = Arc::new(InMemorySnapshots::new());
    let policy = SnapshotPolicy::EveryEvents(5);
    let v1 = Repository::<Stock>::new(store.clone()).with_snapshots(snapshots.clone(), policy);
    for _ in 0..12 {
        v1.execute("a", StockCommand::Receive(1)).await.unwrap();
    }
    assert_eq!(v1.load("a").await.unwrap().snapshot_version, Some(9));

    // A newer snapshot format ignores the old snapshot, replays, and writes its own.
    let v2 = Repository::<StockV2>::new(store.clone()).with_snapshots(snapshots.clone(), policy);
    let loaded = v2.load("a").await.unwrap();
    assert_eq!(loaded.snapshot_version, None);
    assert_eq!(loaded.state.0.on_hand, 12);
    let rebuilt = snapshots.load(&stream("a")).await.unwrap().unwrap();
    assert_eq!((rebuilt.snapshot_version, rebuilt.version), (2, 11));
    assert_eq!(v2.load("a").await.unwrap().snapshot_version, Some(11));
    // ... and the old code ignores the new format in turn.
    assert_eq!(v1.load("a").await.unwrap().snapshot_version, None);

    // A snapshot that lies (its event is not the stream's) is never trusted.
    let mut lie = snapshots.load(&stream("a")).await.unwrap().unwrap();
    lie = Snapshot {
        last_event_id: EventId::new_v7(),
        state: serde_json::json!({"on_hand": 1_000_000, "moves": 12}),
        ..lie
    };
    snapshots.save(lie.clone()).await.unwrap();
    let loaded = Repository::<Stock>::new(store.clone())
        .with_snapshots(snapshots.clone(), SnapshotPolicy::Never)
        .load("a")
        .await
        .unwrap();
    assert_eq!((loaded.state.on_hand, loaded.snapshot_version), (12, None));
    // Nor a snapshot past the end of the stream, nor one whose state does not deserialize.
    for bad in [
        Snapshot {
            version: 50,
            ..lie.clone()
        },
        Snapshot {
            state: serde_json::json!("garbage"),
            snapshot_version: 1,
            ..snapshots.load(&stream("a")).await.unwrap().unwrap()
        },
    ] {
        snapshots.save(bad).await.unwrap();
        let loaded = Repository::<Stock>::new(store.clone())
            .with_snapshots(snapshots.clone(), SnapshotPolicy::Never)
            .load("a")
            .await
            .unwrap();
        assert_eq!((loaded.state.on_hand, loaded.snapshot_version), (12, None));
    }
}

#[tokio::test]
async fn time_travel_by_version_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let snapshots = Arc::new(InMemorySnapshots::new());
    let stocks = Repository::<Stock>::new(store.clone())
        .with_snapshots(snapshots.clone(), SnapshotPolicy::EveryEvents(3));
    let mut states = Vec::new();
    let mut times: Vec<Timestamp> = Vec::new();
    for i in 1..=10 {
        let executed = stocks.execute("a", StockCommand::Receive(i)).await.unwrap();
        states.push(executed.state);
        let event = store
            .read_event(&stream("a"), executed.version.unwrap())
            .await
            .unwrap()
            .unwrap();
        times.push(event.recorded_at);
    }
    for (version, expected) in states.iter().enumerate() {
        let at = stocks
            .load_at("a", At::Version(version as u64))
            .await
            .unwrap();
        assert_eq!(&at.state, expected, "version {version}");
        assert_eq!(at.version, Some(version as u64));
        let at = stocks.load_at("a", At::Time(times[version])).await.unwrap();
        // Several events can share a microsecond: the state then is the last of them.
        let last_at_that_time = times.iter().rposition(|t| *t == times[version]).unwrap();
        assert_eq!(
            at.state, states[last_at_that_time],
            "time of version {version}"
        );
    }
    let before = Timestamp::from_unix_micros(times[0].unix_micros() - 1);
    let at = stocks.load_at("a", At::Time(before)).await.unwrap();
    assert_eq!((at.state, at.version), (Stock::default(), None));
    let err = stocks.load_at("a", At::Version(10)).await.unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::VersionNotFound {
                requested: 10,
                last: Some(9),
                ..
            }
        ),
        "{err:?}"
    );
    let err = stocks.load_at("nobody", At::Version(0)).await.unwrap_err();
    assert!(matches!(err, LoadError::VersionNotFound { last: None, .. }));
}
