//! The runtime over the SQLite sink: exactly-once application across restarts, dead letters,
//! every reset target, rebuilds, independence of projections, and fencing; per-partition
//! checkpoints and the migration that made room for them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    Row, TestStore, caught_up, eventually, kafka_checkpoints, model, names_unreadable_checkpoint,
    options, per_partition_fences, per_partition_round_trip, stored_checkpoints,
};
use factlog_projection::{
    ApplyError, ControlError, DeadLetterStatus, HandleError, Interest, OnError, Projection,
    ProjectionName, Projections, ResetTarget, Sink, SinkError, SqliteSink, SqliteUnit, State,
    StreamSummary, Target,
};
use factlog_store::{Checkpoint, Position, RecordedEvent, Timestamp};

async fn sink(store: &TestStore) -> Arc<SqliteSink> {
    Arc::new(
        SqliteSink::open(store.dir.path().join("read-models.sqlite"))
            .await
            .expect("the sink opens"),
    )
}

/// The rows of the view `table`, as a reader sees them.
fn rows(path: &Path, table: &str) -> BTreeMap<String, Row> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(&format!(
            "SELECT stream, category, events, last_version, last_event_type, last_position FROM \"{table}\""
        ))
        .unwrap();
    statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Row {
                    category: r.get(1)?,
                    events: r.get(2)?,
                    last_version: r.get(3)?,
                    last_event_type: r.get(4)?,
                    last_position: r.get(5)?,
                },
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn tables(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%\\_\\_g%' ESCAPE '\\' ORDER BY name")
        .unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn summary(table: &str) -> Arc<StreamSummary> {
    Arc::new(StreamSummary::new(table, Interest::all()))
}

#[tokio::test]
async fn applies_every_event_once_across_restarts() {
    let store = TestStore::new();
    store.append("account", 20, 500, "Deposited").await;
    let sink = sink(&store).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary("summary"),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    assert_eq!(status.state, State::Running);
    assert_eq!(status.generation, 1);
    assert_eq!(status.committed_position, store.end().await);
    assert_eq!(
        rows(sink.path(), "summary"),
        model(&store.events().await, |_| true)
    );

    // Stop, append more, start again on a new connection: nothing is applied twice.
    projections.stop().await;
    store.append("account", 30, 300, "Withdrawn").await;
    let sink = Arc::new(SqliteSink::open(sink.path()).await.unwrap());
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary("summary"),
            options("summary"),
        )
        .unwrap();
    caught_up(&handle, &store).await;
    let expected = model(&store.events().await, |_| true);
    let found = rows(sink.path(), "summary");
    assert_eq!(found, expected);
    assert!(found.values().all(|r| r.events == r.last_version + 1));
    projections.stop().await;
}

#[tokio::test]
async fn interest_selects_categories_and_types_and_the_checkpoint_still_advances() {
    let store = TestStore::new();
    store.append("account", 3, 30, "Deposited").await;
    store.append("order", 3, 30, "Placed").await;
    store.append("account", 3, 30, "Withdrawn").await;
    let sink = sink(&store).await;
    let projections = Projections::new();
    let interest = Interest::categories(["account"]).with_event_types(["Withdrawn"]);
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            Arc::new(StreamSummary::new("withdrawals", interest.clone())),
            options("withdrawals"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    assert_eq!(status.lag_events, 0);
    let expected = model(&store.events().await, |e| interest.matches(e));
    assert_eq!(expected.len(), 3);
    assert_eq!(rows(sink.path(), "withdrawals"), expected);
    projections.stop().await;
}

/// The stream summary, except that events of type `Poison` fail until `fixed` is set.
struct Flaky {
    inner: StreamSummary,
    fixed: AtomicBool,
}

impl Projection<SqliteSink> for Flaky {
    fn interest(&self) -> Interest {
        Interest::all()
    }
    fn setup(&self, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        Projection::<SqliteSink>::setup(&self.inner, unit)
    }
    fn handle(&self, event: &RecordedEvent, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        if event.event_type.as_str() == "Poison" && !self.fixed.load(Ordering::SeqCst) {
            return Err(HandleError::Transient("cannot read a Poison event".into()));
        }
        Projection::<SqliteSink>::handle(&self.inner, event, unit)
    }
}

fn flaky() -> Arc<Flaky> {
    Arc::new(Flaky {
        inner: StreamSummary::new("summary", Interest::all()),
        fixed: AtomicBool::new(false),
    })
}

#[tokio::test]
async fn a_poison_event_is_parked_and_can_be_retried_or_skipped() {
    let store = TestStore::new();
    store.append("account", 2, 10, "Deposited").await;
    let poison = store.append_one("account-7", "Poison").await;
    store.append("account", 2, 10, "Deposited").await;
    let second = store.append_one("account-8", "Poison").await;
    store.append("account", 2, 10, "Deposited").await;

    let sink = sink(&store).await;
    let projection = flaky();
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            projection.clone(),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    assert_eq!(status.dead_letters_parked, 2);
    assert!(
        status
            .last_error
            .unwrap()
            .message
            .contains("cannot read a Poison event")
    );

    // Everything but the two poison events is applied.
    let events = store.events().await;
    let healthy = model(&events, |e| e.event_type.as_str() != "Poison");
    assert_eq!(rows(sink.path(), "summary"), healthy);

    let dead = handle.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].event_id, poison.id);
    assert_eq!(dead[0].position, poison.position);
    assert_eq!(dead[0].stream, "account-7");
    assert_eq!(dead[0].event_type, "Poison");
    assert_eq!(dead[0].attempts, 3, "retried up to event_attempts_max");
    assert_eq!(dead[0].status, DeadLetterStatus::Parked);
    assert!(dead[0].error.contains("cannot read a Poison event"));
    assert_eq!(dead[0].data.as_deref(), Some(r#"{"n":1}"#));

    // Still broken: the retry fails, counts an attempt and changes nothing.
    let error = handle.retry_dead_letter(dead[0].id).await.unwrap_err();
    assert!(
        matches!(error, ControlError::RetryFailed { .. }),
        "{error:?}"
    );
    assert_eq!(handle.dead_letters().await.unwrap()[0].attempts, 4);
    assert_eq!(rows(sink.path(), "summary"), healthy);

    // Fixed: the retry applies it; the other one is skipped.
    projection.fixed.store(true, Ordering::SeqCst);
    handle.retry_dead_letter(dead[0].id).await.unwrap();
    handle.skip_dead_letter(dead[1].id).await.unwrap();
    let dead = handle.dead_letters().await.unwrap();
    assert_eq!(dead[0].status, DeadLetterStatus::Retried);
    assert_eq!(dead[1].status, DeadLetterStatus::Skipped);
    assert_eq!(handle.status().dead_letters_parked, 0);
    let expected = model(&events, |e| e.id != second.id);
    assert_eq!(rows(sink.path(), "summary"), expected);

    // Neither can be retried or skipped again; unknown ids are refused.
    let error = handle.retry_dead_letter(dead[0].id).await.unwrap_err();
    assert!(
        matches!(error, ControlError::DeadLetterNotParked { .. }),
        "{error:?}"
    );
    let error = handle.skip_dead_letter(dead[1].id).await.unwrap_err();
    assert!(
        matches!(error, ControlError::DeadLetterNotParked { .. }),
        "{error:?}"
    );
    for id in [99, u64::MAX] {
        let error = handle.skip_dead_letter(id).await.unwrap_err();
        assert_eq!(error, ControlError::DeadLetterNotFound(id));
        let error = handle.retry_dead_letter(id).await.unwrap_err();
        assert_eq!(error, ControlError::DeadLetterNotFound(id));
    }
    projections.stop().await;
}

#[tokio::test]
async fn the_stop_policy_stops_at_a_poison_event_until_resumed() {
    let store = TestStore::new();
    store.append("account", 2, 10, "Deposited").await;
    let poison = store.append_one("account-1", "Poison").await;
    store.append("account", 2, 10, "Deposited").await;
    let sink = sink(&store).await;
    let projection = flaky();
    let projections = Projections::new();
    let mut options = options("summary");
    options.on_error = OnError::Stop;
    let handle = projections
        .start(store.dyn_store(), sink.clone(), projection.clone(), options)
        .unwrap();
    eventually(10, "the projection to stop", || async {
        handle.status().state == State::Stopped
    })
    .await;
    let status = handle.status();
    assert!(status.position < poison.position);
    assert!(
        status
            .last_error
            .unwrap()
            .message
            .contains(&poison.id.to_string())
    );
    assert!(handle.dead_letters().await.unwrap().is_empty());

    projection.fixed.store(true, Ordering::SeqCst);
    handle.resume().await.unwrap();
    caught_up(&handle, &store).await;
    assert_eq!(handle.status().state, State::Running);
    assert_eq!(
        rows(sink.path(), "summary"),
        model(&store.events().await, |_| true)
    );
    projections.stop().await;
}

#[tokio::test]
async fn every_reset_target_plans_first_and_moves_only_when_executed() {
    let store = TestStore::new();
    store.append("account", 4, 10, "Deposited").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let boundary = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.append("account", 4, 10, "Deposited").await;
    let events = store.events().await;
    let end = store.end().await;
    let at = |i: usize| events[i].position;

    let sink = sink(&store).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary("summary"),
            options("summary"),
        )
        .unwrap();
    caught_up(&handle, &store).await;
    handle.pause().await.unwrap();
    assert_eq!(handle.status().state, State::Paused);

    let cases = [
        (ResetTarget::Earliest, Position::START, 20, 0),
        (ResetTarget::Position(at(9)), at(9), 10, 0),
        (ResetTarget::Datetime(boundary), at(9), 10, 0),
        (ResetTarget::ShiftBy(-5), at(14), 5, 0),
        (ResetTarget::ShiftBy(-100), Position::START, 20, 0),
        (ResetTarget::Latest, end, 0, 0),
    ];
    for (target, new, reapply, skip) in cases {
        let plan = handle.reset(target, false).await.unwrap();
        assert_eq!(plan.current_position, end, "{target:?}");
        assert_eq!(plan.new_position, new, "{target:?}");
        assert_eq!(plan.events_to_reapply, reapply, "{target:?}");
        assert_eq!(plan.events_to_skip, skip, "{target:?}");
        assert_eq!(plan.lag_events, reapply, "{target:?}");
        assert!(!plan.executed);
        assert_eq!(
            handle.status().committed_position,
            end,
            "a dry run changes nothing"
        );
    }

    // Executed: back to position 9 and forward 3 events (skipping them).
    let plan = handle
        .reset(ResetTarget::Position(at(9)), true)
        .await
        .unwrap();
    assert!(plan.executed);
    assert_eq!(handle.status().committed_position, at(9));
    let plan = handle.reset(ResetTarget::ShiftBy(3), true).await.unwrap();
    assert_eq!((plan.new_position, plan.events_to_skip), (at(12), 3));
    let plan = handle
        .reset(ResetTarget::ShiftBy(1000), false)
        .await
        .unwrap();
    assert_eq!(plan.new_position, end, "a shift stops at the end");

    // Bad targets are refused and change nothing.
    let past = Position::from_raw(end.raw() + 10);
    assert!(matches!(
        handle.reset(ResetTarget::Position(past), true).await,
        Err(ControlError::Reset(_))
    ));
    assert_eq!(handle.status().committed_position, at(12));

    // Resumed, the events after the new checkpoint are applied again: the summary counts them
    // twice, which is what a reset to an earlier position means.
    handle.resume().await.unwrap();
    caught_up(&handle, &store).await;
    let found = rows(sink.path(), "summary");
    let total: i64 = found.values().map(|r| r.events).sum();
    assert_eq!(total, 20 + 7);

    // Earliest on a fresh model: a reset to earliest after a rebuild equals the model.
    handle.reset(ResetTarget::Latest, true).await.unwrap();
    assert_eq!(handle.status().lag_events, 0);
    projections.stop().await;
}

#[tokio::test]
async fn a_rebuild_equals_the_incremental_model_and_never_serves_a_half_built_one() {
    let store = TestStore::new();
    store.append("account", 50, 5000, "Deposited").await;
    let sink = sink(&store).await;
    let projections = Projections::new();
    let mut options = options("summary");
    // Small batches make the rebuild take many transactions.
    options.batch_events_max = 10;
    let handle = projections
        .start(store.dyn_store(), sink.clone(), summary("summary"), options)
        .unwrap();
    caught_up(&handle, &store).await;
    let incremental = rows(sink.path(), "summary");
    assert_eq!(incremental, model(&store.events().await, |_| true));
    assert_eq!(tables(sink.path()), vec!["summary__summary__g1"]);

    // A reader polls the view for the whole rebuild: it must always see 5000 events.
    let path = sink.path().to_path_buf();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) {
                let total: i64 = rows(&path, "summary").values().map(|r| r.events).sum();
                assert_eq!(total, 5000, "a reader saw a half-built model");
                reads += 1;
            }
            reads
        })
    };
    assert_eq!(handle.rebuild().await.unwrap(), 2);
    assert!(matches!(
        handle.rebuild().await,
        Err(ControlError::AlreadyRebuilding(2)) | Ok(_)
    ));
    eventually(60, "the rebuild to go live", || async {
        handle.status().generation == 2
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("the reader saw only whole models");
    assert!(reads > 0);
    assert_eq!(rows(sink.path(), "summary"), incremental);
    assert_eq!(tables(sink.path()), vec!["summary__summary__g2"]);
    assert_eq!(handle.status().state, State::Running);

    // The rebuilt generation goes on incrementally.
    store.append("account", 50, 100, "Withdrawn").await;
    caught_up(&handle, &store).await;
    assert_eq!(
        rows(sink.path(), "summary"),
        model(&store.events().await, |_| true)
    );
    projections.stop().await;
}

#[tokio::test]
async fn two_projections_progress_independently() {
    let store = TestStore::new();
    store.append("account", 5, 100, "Deposited").await;
    let sink = sink(&store).await;
    let projections = Projections::new();
    let one = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary("one"),
            options("one"),
        )
        .unwrap();
    let two = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary("two"),
            options("two"),
        )
        .unwrap();
    caught_up(&one, &store).await;
    caught_up(&two, &store).await;
    assert_eq!(
        projections
            .start(
                store.dyn_store(),
                sink.clone(),
                summary("one"),
                options("one")
            )
            .unwrap_err()
            .0
            .as_str(),
        "one"
    );

    one.pause().await.unwrap();
    let paused_at = one.status().position;
    store.append("account", 5, 100, "Withdrawn").await;
    caught_up(&two, &store).await;
    assert_eq!(
        rows(sink.path(), "two"),
        model(&store.events().await, |_| true)
    );
    assert_eq!(one.status().position, paused_at, "the paused one stays put");
    assert_eq!(one.status().state, State::Paused);

    // A pause is kept across a restart.
    projections.stop().await;
    let one = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary("one"),
            options("one"),
        )
        .unwrap();
    eventually(10, "the projection to load", || async {
        one.status().state == State::Paused
    })
    .await;
    assert_eq!(one.status().position, paused_at);
    one.resume().await.unwrap();
    caught_up(&one, &store).await;
    assert_eq!(rows(sink.path(), "one"), rows(sink.path(), "two"));
    projections.stop().await;
}

#[tokio::test]
async fn a_stale_checkpoint_is_fenced_and_changes_nothing() {
    let store = TestStore::new();
    store.append("account", 2, 20, "Deposited").await;
    let sink = sink(&store).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary("summary"),
            options("summary"),
        )
        .unwrap();
    let end = caught_up(&handle, &store).await.committed_position;
    projections.stop().await;

    let name = ProjectionName::new("summary").unwrap();
    let stale = Target {
        name: name.clone(),
        generation: 1,
        checkpoint: Checkpoint::Total(Position::START),
    };
    let end = Checkpoint::Total(end);
    let before = rows(sink.path(), "summary");
    let error = sink
        .apply(
            summary("summary"),
            stale.clone(),
            store.events().await,
            end.clone(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApplyError::Fenced { found: Some(p), .. } if *p == end),
        "{error:?}"
    );
    let error = sink
        .set_checkpoint(stale, Checkpoint::Total(Position::START))
        .await
        .unwrap_err();
    assert!(matches!(error, ApplyError::Fenced { .. }));
    assert_eq!(rows(sink.path(), "summary"), before);
    assert_eq!(stored_checkpoints(&*sink, &name).await[&1], end);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models.sqlite");
    drop(SqliteSink::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE factlog_schema SET version = 99", [])
        .unwrap();
    let error = SqliteSink::open(&path).await.unwrap_err();
    assert!(
        matches!(&error, SinkError::Invalid(m) if m.contains("99")),
        "{error:?}"
    );
}

#[tokio::test]
async fn per_partition_checkpoints_round_trip() {
    let store = TestStore::new();
    store.append("account", 3, 8, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&store).await;
    let name = ProjectionName::new("summary").unwrap();
    per_partition_round_trip(&*sink, summary("summary"), &name, &events).await;
    // The batch is applied, the parked event is not.
    assert_eq!(rows(sink.path(), "summary"), model(&events[..5], |_| true));
}

#[tokio::test]
async fn a_per_partition_checkpoint_off_in_one_partition_is_fenced_and_changes_nothing() {
    let store = TestStore::new();
    store.append("account", 3, 8, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&store).await;
    let name = ProjectionName::new("summary").unwrap();
    let target = |checkpoint: Checkpoint| Target {
        name: name.clone(),
        generation: 1,
        checkpoint,
    };
    let start = Checkpoint::PerPartition(BTreeMap::new());
    let [current, ..] = kafka_checkpoints();
    sink.create_generation(summary("summary"), target(start.clone()), true)
        .await
        .unwrap();
    sink.apply(
        summary("summary"),
        target(start),
        events[..3].to_vec(),
        current.clone(),
    )
    .await
    .unwrap();
    let before = rows(sink.path(), "summary");
    assert_eq!(before, model(&events[..3], |_| true));
    per_partition_fences(&*sink, summary("summary"), &name, &events[3..], &current).await;
    assert_eq!(rows(sink.path(), "summary"), before);
}

/// Version 1 of the runtime's schema, as Factlog created it before per-partition checkpoints:
/// a copy, since a released migration never changes (databases at that version exist).
const SCHEMA_V1: &str = r#"
CREATE TABLE factlog_schema (version INTEGER NOT NULL);
CREATE TABLE factlog_projections (
    name TEXT PRIMARY KEY,
    live_generation INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE TABLE factlog_checkpoints (
    projection TEXT NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (projection, generation)
);
CREATE TABLE factlog_read_tables (
    projection TEXT NOT NULL,
    generation INTEGER NOT NULL,
    logical TEXT NOT NULL,
    physical TEXT NOT NULL,
    PRIMARY KEY (projection, generation, logical)
);
CREATE TABLE factlog_dead_letters (
    projection TEXT NOT NULL,
    id INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (projection, id)
);
INSERT INTO factlog_schema (version) VALUES (1);
"#;

const TALLY_COLUMNS: &str = "(stream TEXT PRIMARY KEY, events INTEGER NOT NULL)";

/// Counts the events of each stream in the table `tally`.
struct Tally;

impl Projection<SqliteSink> for Tally {
    fn interest(&self) -> Interest {
        Interest::all()
    }
    fn setup(&self, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        unit.create_table("tally", TALLY_COLUMNS)
    }
    fn handle(&self, event: &RecordedEvent, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        let sql = format!(
            "INSERT INTO {} (stream, events) VALUES (?1, 1) \
             ON CONFLICT (stream) DO UPDATE SET events = events + 1",
            unit.table("tally")
        );
        unit.tx()
            .prepare_cached(&sql)?
            .execute([event.stream.as_str()])?;
        Ok(())
    }
}

fn tally(path: &Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn.prepare("SELECT stream, events FROM tally").unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn counts(events: &[RecordedEvent]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts.entry(event.stream.to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_version_1_database_keeps_its_checkpoint_and_goes_on_from_it() {
    let store = TestStore::new();
    store.append("account", 3, 9, "Deposited").await;
    let events = store.events().await;
    let at = events[3].position;
    let path = store.dir.path().join("version-1.sqlite");
    // What version 1 left of a projection `tally` whose generation 1 was created and then
    // reset to `at` (its table is empty; the events after `at` are to be applied).
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE \"tally__tally__g1\" {TALLY_COLUMNS};
         INSERT INTO factlog_read_tables VALUES ('tally', 1, 'tally', '\"tally__tally__g1\"');
         CREATE VIEW \"tally\" AS SELECT * FROM \"tally__tally__g1\";
         INSERT INTO factlog_projections VALUES ('tally', 1, 0, 0);
         INSERT INTO factlog_checkpoints VALUES ('tally', 1, {at}, 0);"
    ))
    .unwrap();
    drop(conn);

    let sink = SqliteSink::open(&path).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("SELECT version FROM factlog_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let name = ProjectionName::new("tally").unwrap();
    let stored = sink.load(&name).await.unwrap().unwrap();
    assert_eq!((stored.live_generation, stored.paused), (1, false));
    assert_eq!(
        stored.checkpoints,
        BTreeMap::from([(1, Checkpoint::Total(at))])
    );

    let end = Checkpoint::Total(events.last().unwrap().position);
    let target = Target {
        name: name.clone(),
        generation: 1,
        checkpoint: Checkpoint::Total(at),
    };
    sink.apply(Arc::new(Tally), target, events[4..].to_vec(), end.clone())
        .await
        .unwrap();
    assert_eq!(tally(&path), counts(&events[4..]));
    assert_eq!(
        stored_checkpoints(&sink, &name).await,
        BTreeMap::from([(1, end)])
    );
    // Migrated once: opening again changes nothing.
    drop(SqliteSink::open(&path).await.unwrap());
    assert_eq!(tally(&path), counts(&events[4..]));
}

#[tokio::test]
async fn an_unreadable_partitions_column_is_invalid_not_a_panic() {
    let store = TestStore::new();
    store.append("account", 3, 4, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&store).await;
    let name = ProjectionName::new("summary").unwrap();
    let start = Checkpoint::PerPartition(BTreeMap::new());
    let target = Target {
        name: name.clone(),
        generation: 1,
        checkpoint: start.clone(),
    };
    sink.create_generation(summary("summary"), target.clone(), true)
        .await
        .unwrap();
    let [to, ..] = kafka_checkpoints();
    let conn = rusqlite::Connection::open(sink.path()).unwrap();
    for bad in ["5:x", "5", "5:1,5:2", "-1:3"] {
        conn.execute(
            "UPDATE factlog_checkpoints SET partitions = ?1 WHERE projection = 'summary'",
            [bad],
        )
        .unwrap();
        let error = sink.load(&name).await.unwrap_err();
        assert!(
            names_unreadable_checkpoint(&error, &name),
            "{bad}: {error:?}"
        );
        let error = sink
            .apply(
                summary("summary"),
                target.clone(),
                events.clone(),
                to.clone(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApplyError::Sink(e) if names_unreadable_checkpoint(e, &name)),
            "{bad}: {error:?}"
        );
        let error = sink
            .set_checkpoint(target.clone(), to.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApplyError::Sink(e) if names_unreadable_checkpoint(e, &name)),
            "{bad}: {error:?}"
        );
    }
    assert!(rows(sink.path(), "summary").is_empty());
}
