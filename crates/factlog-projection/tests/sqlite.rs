//! The runtime over the SQLite sink: exactly-once application across restarts, dead letters,
//! every reset target, rebuilds, independence of projections, and fencing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Row, TestStore, caught_up, eventually, model, options};
use factlog_projection::{
    ApplyError, ControlError, DeadLetterStatus, HandleError, Interest, OnError, Projection,
    ProjectionName, Projections, ResetTarget, Sink, SinkError, SqliteSink, SqliteUnit, State,
    StreamSummary, Target,
};
use factlog_store::{Position, RecordedEvent, Timestamp};

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
        checkpoint: Position::START,
    };
    let before = rows(sink.path(), "summary");
    let error = sink
        .apply(summary("summary"), stale.clone(), store.events().await, end)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApplyError::Fenced { found: Some(p), .. } if p == end),
        "{error:?}"
    );
    let error = sink
        .set_checkpoint(stale, Position::START)
        .await
        .unwrap_err();
    assert!(matches!(error, ApplyError::Fenced { .. }));
    assert_eq!(rows(sink.path(), "summary"), before);
    assert_eq!(
        sink.load(&name).await.unwrap().unwrap().checkpoints[&1],
        end
    );
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
