//! The runtime over the PostgreSQL sink: exactly-once application across restarts, fencing,
//! dead letters from a statement the server refuses, rebuilds, migrations and reconnection;
//! per-partition checkpoints and the migration that made room for them.
//!
//! Needs a PostgreSQL server: `FACTLOG_TEST_POSTGRES_URL` (`scripts/services.sh run -- cargo
//! test -p factlog-projection --test postgres` starts one). Each test works in a schema of its
//! own, dropped first when a previous run left it, and dropped again when the test passes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{
    Row, TestStore, caught_up, eventually, kafka_checkpoints, model, names_unreadable_checkpoint,
    options, per_partition_fences, per_partition_round_trip, stored_checkpoints,
};
use factlog_projection::{
    ApplyError, ControlError, DeadLetterStatus, HandleError, Interest, PostgresSink, PostgresUnit,
    Projection, ProjectionName, Projections, Sink, SinkError, State, StreamSummary, Target,
};
use factlog_store::{Checkpoint, Position, RecordedEvent};
use tokio_postgres::{Client, NoTls};

fn url() -> String {
    std::env::var("FACTLOG_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "FACTLOG_TEST_POSTGRES_URL is not set: run the tests under `scripts/services.sh run \
             -- cargo test -p factlog-projection --test postgres`, which starts PostgreSQL"
        )
    })
}

/// A schema of the test's own (the test's name and the process id), dropped first when a
/// previous run left it.
async fn fresh_schema(test: &str) -> String {
    let schema = format!("t_{test}_{}", std::process::id());
    client(None)
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
    schema
}

async fn drop_schema(schema: &str) {
    client(None)
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// A reader's connection, with `schema` (when given) on its search path.
async fn client(schema: Option<&str>) -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    if let Some(schema) = schema {
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .await
            .unwrap();
    }
    client
}

async fn sink(schema: &str) -> Arc<PostgresSink> {
    Arc::new(
        PostgresSink::connect(&url(), schema)
            .await
            .expect("the sink connects"),
    )
}

fn name() -> ProjectionName {
    ProjectionName::new("summary").unwrap()
}

fn summary() -> Arc<StreamSummary> {
    Arc::new(StreamSummary::new("summary", Interest::all()))
}

/// The rows of the view `table`, as a reader sees them.
async fn rows(client: &Client, table: &str) -> BTreeMap<String, Row> {
    client
        .query(
            &format!(
                "SELECT stream, category, events, last_version, last_event_type, last_position \
                 FROM \"{table}\""
            ),
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                Row {
                    category: r.get(1),
                    events: r.get(2),
                    last_version: r.get(3),
                    last_event_type: r.get(4),
                    last_position: r.get(5),
                },
            )
        })
        .collect()
}

/// The checkpoint rows of projection `summary`: generation -> position.
async fn checkpoints(client: &Client) -> BTreeMap<i64, i64> {
    client
        .query(
            "SELECT generation, position FROM factlog_checkpoints WHERE projection = 'summary'",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The base tables of the generations of read models in `schema`.
async fn physical_tables(client: &Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
             AND table_type = 'BASE TABLE' AND table_name LIKE '%\\_\\_g%' ORDER BY table_name",
            &[&schema],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .collect()
}

/// The identity of the view `view`: the same after `CREATE OR REPLACE VIEW`.
async fn view_oid(client: &Client, view: &str) -> u32 {
    client
        .query_one("SELECT $1::text::regclass::oid", &[&view])
        .await
        .unwrap()
        .get(0)
}

fn raw(position: Position) -> i64 {
    i64::try_from(position.raw()).unwrap()
}

#[tokio::test]
async fn applies_every_event_once() {
    let schema = fresh_schema("applies").await;
    let store = TestStore::new();
    store.append("account", 50, 2000, "Deposited").await;
    let sink = sink(&schema).await;
    let projections = Projections::new();
    let handle = projections
        .start(store.dyn_store(), sink, summary(), options("summary"))
        .unwrap();
    let status = caught_up(&handle, &store).await;
    let end = store.end().await;
    assert_eq!(status.state, State::Running);
    assert_eq!(status.generation, 1);
    assert_eq!(status.committed_position, end);
    assert!(status.last_error.is_none(), "{:?}", status.last_error);

    let reader = client(Some(&schema)).await;
    let found = rows(&reader, "summary").await;
    assert_eq!(found.len(), 50);
    assert_eq!(found, model(&store.events().await, |_| true));
    assert!(found.values().all(|r| r.events == r.last_version + 1));
    assert_eq!(checkpoints(&reader).await, BTreeMap::from([(1, raw(end))]));
    projections.stop().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn restarting_on_a_new_connection_applies_nothing_twice() {
    let schema = fresh_schema("restart").await;
    let store = TestStore::new();
    store.append("account", 20, 500, "Deposited").await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink(&schema).await,
            summary(),
            options("summary"),
        )
        .unwrap();
    caught_up(&handle, &store).await;
    projections.stop().await;

    store.append("account", 30, 300, "Withdrawn").await;
    let handle = projections
        .start(
            store.dyn_store(),
            sink(&schema).await,
            summary(),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    let end = store.end().await;
    assert_eq!(status.committed_position, end);

    let reader = client(Some(&schema)).await;
    let found = rows(&reader, "summary").await;
    assert_eq!(found, model(&store.events().await, |_| true));
    assert!(found.values().all(|r| r.events == r.last_version + 1));
    assert_eq!(found.values().map(|r| r.events).sum::<i64>(), 800);
    assert_eq!(checkpoints(&reader).await, BTreeMap::from([(1, raw(end))]));
    projections.stop().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_stale_checkpoint_is_fenced_and_changes_nothing() {
    let schema = fresh_schema("fencing").await;
    let store = TestStore::new();
    store.append("account", 3, 12, "Deposited").await;
    let events = store.events().await;
    let first = sink(&schema).await;
    let second = sink(&schema).await;
    let target = |position| Target {
        name: name(),
        generation: 1,
        checkpoint: Checkpoint::Total(position),
    };
    first
        .create_generation(summary(), target(Position::START), true)
        .await
        .unwrap();
    let at = |i: usize| events[i].position;
    let total = |i: usize| Checkpoint::Total(at(i));
    first
        .apply(
            summary(),
            target(Position::START),
            events[..5].to_vec(),
            total(4),
        )
        .await
        .unwrap();

    // The second sink still expects the start: fenced, for a batch and for a reset alike.
    let error = second
        .apply(
            summary(),
            target(Position::START),
            events[..5].to_vec(),
            total(4),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ApplyError::Fenced {
            name: name(),
            generation: 1,
            expected: Some(Checkpoint::Total(Position::START)),
            found: Some(total(4)),
        }
    );
    let error = second
        .set_checkpoint(target(Position::START), total(9))
        .await
        .unwrap_err();
    assert!(matches!(error, ApplyError::Fenced { found, .. } if found == Some(total(4))));
    // A generation without a checkpoint is fenced too.
    let error = second
        .set_checkpoint(
            Target {
                generation: 7,
                ..target(at(4))
            },
            total(9),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ApplyError::Fenced { found: None, .. }));

    let reader = client(Some(&schema)).await;
    let applied = model(&events[..5], |_| true);
    assert_eq!(rows(&reader, "summary").await, applied);
    assert_eq!(
        checkpoints(&reader).await,
        BTreeMap::from([(1, raw(at(4)))])
    );
    let stored = second.load(&name()).await.unwrap().unwrap();
    assert_eq!(stored.checkpoints, BTreeMap::from([(1, total(4))]));

    // With the right checkpoint the second one moves it; now the first one is stale.
    second
        .set_checkpoint(target(at(4)), total(9))
        .await
        .unwrap();
    let error = first
        .apply(summary(), target(at(4)), events[5..].to_vec(), total(11))
        .await
        .unwrap_err();
    assert!(matches!(error, ApplyError::Fenced { found, .. } if found == Some(total(9))));
    assert_eq!(rows(&reader, "summary").await, applied);
    assert_eq!(
        checkpoints(&reader).await,
        BTreeMap::from([(1, raw(at(9)))])
    );
    drop_schema(&schema).await;
}

#[tokio::test]
async fn two_runners_on_one_schema_never_apply_an_event_twice() {
    let schema = fresh_schema("two_runners").await;
    let store = TestStore::new();
    store.append("account", 10, 1000, "Deposited").await;
    let mut options = options("summary");
    options.batch_events_max = 20;
    let (one, two) = (Projections::new(), Projections::new());
    let a = one
        .start(
            store.dyn_store(),
            sink(&schema).await,
            summary(),
            options.clone(),
        )
        .unwrap();
    let b = two
        .start(store.dyn_store(), sink(&schema).await, summary(), options)
        .unwrap();
    let end = store.end().await;
    eventually(30, "both runners to finish or be fenced", || async {
        [&a, &b]
            .iter()
            .all(|h| h.status().state == State::Stopped || h.status().position >= end)
    })
    .await;
    for handle in [&a, &b] {
        let status = handle.status();
        eprintln!("runner: {:?} at {}", status.state, status.position);
        if status.state == State::Stopped {
            let message = status.last_error.unwrap().message;
            assert!(message.contains("another runner"), "{message}");
        }
    }
    let reader = client(Some(&schema)).await;
    assert_eq!(
        rows(&reader, "summary").await,
        model(&store.events().await, |_| true)
    );
    assert_eq!(checkpoints(&reader).await, BTreeMap::from([(1, raw(end))]));
    one.stop().await;
    two.stop().await;
    drop_schema(&schema).await;
}

/// The stream summary, plus a row per event in a table whose CHECK refuses the rows of
/// `Poison` events until `fixed` is set.
struct Strict {
    inner: StreamSummary,
    fixed: AtomicBool,
}

impl Projection<PostgresSink> for Strict {
    fn interest(&self) -> Interest {
        Interest::all()
    }

    fn setup(&self, unit: &mut PostgresUnit<'_>) -> Result<(), HandleError> {
        Projection::<PostgresSink>::setup(&self.inner, unit)?;
        unit.create_table(
            "checks",
            "(event_id TEXT PRIMARY KEY, amount BIGINT NOT NULL CHECK (amount > 0))",
        )
    }

    fn handle(
        &self,
        event: &RecordedEvent,
        unit: &mut PostgresUnit<'_>,
    ) -> Result<(), HandleError> {
        Projection::<PostgresSink>::handle(&self.inner, event, unit)?;
        let poisoned = event.event_type.as_str() == "Poison" && !self.fixed.load(Ordering::SeqCst);
        let amount: i64 = if poisoned { -1 } else { 1 };
        let sql = format!(
            "INSERT INTO {} (event_id, amount) VALUES ($1, $2)",
            unit.table("checks")
        );
        unit.execute(sql, vec![Box::new(event.id.to_string()), Box::new(amount)]);
        Ok(())
    }
}

fn strict() -> Arc<Strict> {
    Arc::new(Strict {
        inner: StreamSummary::new("summary", Interest::all()),
        fixed: AtomicBool::new(false),
    })
}

async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT COUNT(*) FROM \"{table}\""), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_refused_statement_fails_its_own_event_and_the_whole_batch() {
    let schema = fresh_schema("refused").await;
    let store = TestStore::new();
    store.append("account", 2, 2, "Deposited").await;
    store.append_one("account-0", "Poison").await;
    store.append("account", 2, 3, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&schema).await;
    let projection = strict();
    let target = Target {
        name: name(),
        generation: 1,
        checkpoint: Checkpoint::Total(Position::START),
    };
    sink.create_generation(projection.clone(), target.clone(), true)
        .await
        .unwrap();
    let end = Checkpoint::Total(events.last().unwrap().position);
    let error = sink
        .apply(projection.clone(), target.clone(), events.clone(), end)
        .await
        .unwrap_err();
    let ApplyError::Event {
        index,
        message,
        permanent,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(index, Some(2), "{message}");
    assert!(permanent, "a CHECK violation (class 23) will fail again");
    assert!(message.contains("check constraint"), "{message}");
    assert!(message.contains("23514"), "{message}");

    // Nothing of the batch is left: not the events before the poison, not the checkpoint.
    let reader = client(Some(&schema)).await;
    assert!(rows(&reader, "summary").await.is_empty());
    assert_eq!(count(&reader, "checks").await, 0);
    assert_eq!(checkpoints(&reader).await, BTreeMap::from([(1, 0)]));

    // The same sink (and connection) goes on: the events before the poison apply.
    sink.apply(
        projection,
        target,
        events[..2].to_vec(),
        Checkpoint::Total(events[1].position),
    )
    .await
    .unwrap();
    assert_eq!(
        rows(&reader, "summary").await,
        model(&events[..2], |_| true)
    );
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_poison_event_is_parked_and_can_be_retried_or_skipped() {
    let schema = fresh_schema("poison").await;
    let store = TestStore::new();
    store.append("account", 2, 10, "Deposited").await;
    let poison = store.append_one("account-7", "Poison").await;
    store.append("account", 2, 10, "Deposited").await;
    let second = store.append_one("account-8", "Poison").await;
    store.append("account", 2, 10, "Deposited").await;

    let projection = strict();
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink(&schema).await,
            projection.clone(),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    assert_eq!(status.state, State::Running);
    assert_eq!(status.dead_letters_parked, 2);
    assert!(
        status
            .last_error
            .unwrap()
            .message
            .contains("check constraint")
    );

    // Everything but the two poison events is applied, in both tables.
    let events = store.events().await;
    let reader = client(Some(&schema)).await;
    let healthy = model(&events, |e| e.event_type.as_str() != "Poison");
    assert_eq!(rows(&reader, "summary").await, healthy);
    assert_eq!(count(&reader, "checks").await, 30);

    let dead = handle.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].event_id, poison.id);
    assert_eq!(dead[0].position, poison.position);
    assert_eq!(dead[0].generation, 1);
    assert_eq!(dead[0].stream, "account-7");
    assert_eq!(dead[0].version, poison.version);
    assert_eq!(dead[0].event_type, "Poison");
    assert_eq!(dead[0].attempts, 1, "a CHECK violation is parked at once");
    assert_eq!(dead[0].status, DeadLetterStatus::Parked);
    assert!(
        dead[0].error.contains("check constraint"),
        "{}",
        dead[0].error
    );
    assert_eq!(dead[0].data.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(dead[1].event_id, second.id);
    assert!(dead[1].id > dead[0].id);

    // Still broken: the retry fails, counts an attempt and changes nothing.
    let error = handle.retry_dead_letter(dead[0].id).await.unwrap_err();
    assert!(
        matches!(&error, ControlError::RetryFailed { message, .. } if message.contains("check constraint")),
        "{error:?}"
    );
    let after = handle.dead_letters().await.unwrap();
    assert_eq!(after[0].attempts, 2);
    assert_eq!(after[0].status, DeadLetterStatus::Parked);
    assert_eq!(rows(&reader, "summary").await, healthy);
    assert_eq!(count(&reader, "checks").await, 30);

    // Fixed: the retry applies it (to both tables); the other one is skipped.
    projection.fixed.store(true, Ordering::SeqCst);
    handle.retry_dead_letter(dead[0].id).await.unwrap();
    handle.skip_dead_letter(dead[1].id).await.unwrap();
    let dead = handle.dead_letters().await.unwrap();
    assert_eq!(dead[0].status, DeadLetterStatus::Retried);
    assert_eq!(dead[1].status, DeadLetterStatus::Skipped);
    assert_eq!(handle.status().dead_letters_parked, 0);
    assert_eq!(
        rows(&reader, "summary").await,
        model(&events, |e| e.id != second.id)
    );
    assert_eq!(count(&reader, "checks").await, 31);

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
    let error = handle.skip_dead_letter(99).await.unwrap_err();
    assert_eq!(error, ControlError::DeadLetterNotFound(99));
    projections.stop().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_rebuild_equals_the_model_and_drops_the_old_generation() {
    let schema = fresh_schema("rebuild").await;
    let store = TestStore::new();
    store.append("account", 50, 2000, "Deposited").await;
    let mut options = options("summary");
    // Small batches make the rebuild take many transactions.
    options.batch_events_max = 50;
    let projections = Projections::new();
    let handle = projections
        .start(store.dyn_store(), sink(&schema).await, summary(), options)
        .unwrap();
    caught_up(&handle, &store).await;
    let reader = client(Some(&schema)).await;
    assert_eq!(
        rows(&reader, "summary").await,
        model(&store.events().await, |_| true)
    );
    assert_eq!(
        physical_tables(&reader, &schema).await,
        vec!["summary__summary__g1"]
    );
    let view_before = view_oid(&reader, "summary").await;

    // A reader polls the view for the whole rebuild: it must always see all 2000 events.
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let polling = {
        let (done, reads, schema) = (done.clone(), reads.clone(), schema.clone());
        tokio::spawn(async move {
            let client = client(Some(&schema)).await;
            while !done.load(Ordering::SeqCst) {
                let total: i64 = client
                    .query_one("SELECT COALESCE(SUM(events), 0)::BIGINT FROM summary", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(total, 2000, "a reader saw a half-built read model");
                reads.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    assert_eq!(handle.rebuild().await.unwrap(), 2);
    let end = store.end().await;
    eventually(30, "generation 2 to be live and caught up", || async {
        let status = handle.status();
        status.generation == 2 && status.rebuild.is_none() && status.position >= end
    })
    .await;
    done.store(true, Ordering::SeqCst);
    polling.await.expect("the reader saw every event all along");
    assert!(reads.load(Ordering::SeqCst) > 0);

    let status = handle.status();
    assert_eq!(status.state, State::Running);
    assert!(status.last_error.is_none(), "{:?}", status.last_error);
    assert_eq!(
        rows(&reader, "summary").await,
        model(&store.events().await, |_| true)
    );
    assert_eq!(
        physical_tables(&reader, &schema).await,
        vec!["summary__summary__g2"]
    );
    assert_eq!(checkpoints(&reader).await, BTreeMap::from([(2, raw(end))]));
    let generations: Vec<i64> = reader
        .query("SELECT DISTINCT generation FROM factlog_read_tables", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(generations, vec![2]);
    assert_eq!(
        view_oid(&reader, "summary").await,
        view_before,
        "the view was replaced, not dropped (its grants stay)"
    );

    // The new generation goes on with new events.
    store.append("order", 5, 25, "Placed").await;
    caught_up(&handle, &store).await;
    assert_eq!(
        rows(&reader, "summary").await,
        model(&store.events().await, |_| true)
    );
    projections.stop().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn migrations_are_serialized_and_a_newer_schema_is_refused() {
    let schema = fresh_schema("migrate").await;
    // Four processes creating the same schema at once.
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move { PostgresSink::connect(&url(), &schema).await })
        })
        .collect();
    for connect in connects {
        connect
            .await
            .unwrap()
            .expect("every concurrent migration succeeds");
    }
    let reader = client(Some(&schema)).await;
    let versions: Vec<i64> = reader
        .query("SELECT version FROM factlog_schema", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![2]);

    reader
        .batch_execute("UPDATE factlog_schema SET version = 99")
        .await
        .unwrap();
    let error = PostgresSink::connect(&url(), &schema).await.unwrap_err();
    assert!(
        matches!(&error, SinkError::Invalid(m) if m.contains("newer")),
        "{error:?}"
    );

    let error = PostgresSink::connect(&url(), "Not-A-Schema")
        .await
        .unwrap_err();
    assert!(matches!(error, SinkError::Invalid(_)), "{error:?}");
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_killed_connection_is_unavailable_then_reopened() {
    let schema = fresh_schema("reconnect").await;
    let application = format!("factlog_test_{schema}");
    let url = url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let sink = PostgresSink::connect(
        &format!("{url}{separator}application_name={application}"),
        &schema,
    )
    .await
    .unwrap();
    sink.create_generation(
        summary(),
        Target {
            name: name(),
            generation: 1,
            checkpoint: Checkpoint::Total(Position::START),
        },
        true,
    )
    .await
    .unwrap();

    let admin = client(None).await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1);

    // The first operation may find the connection dead (unavailable: worth retrying); an
    // operation soon after reconnects.
    let failures = Arc::new(AtomicU64::new(0));
    eventually(10, "the sink to reconnect", || {
        let (sink, failures) = (&sink, failures.clone());
        async move {
            match sink.load(&name()).await {
                Ok(stored) => {
                    assert_eq!(
                        stored.unwrap().checkpoints,
                        BTreeMap::from([(1, Checkpoint::Total(Position::START))])
                    );
                    true
                }
                Err(SinkError::Unavailable(_)) => {
                    failures.fetch_add(1, Ordering::SeqCst);
                    false
                }
                Err(e) => panic!("a killed connection is not invalid: {e:?}"),
            }
        }
    })
    .await;
    assert!(failures.load(Ordering::SeqCst) <= 1);
    drop_schema(&schema).await;
}

/// Counts events per stream in a table `shape` whose columns depend on `wide`, with a seed row
/// inserted by `setup` right after creating the table.
struct Reshaped {
    wide: AtomicBool,
}

impl Projection<PostgresSink> for Reshaped {
    fn interest(&self) -> Interest {
        Interest::all()
    }

    fn setup(&self, unit: &mut PostgresUnit<'_>) -> Result<(), HandleError> {
        let columns = if self.wide.load(Ordering::SeqCst) {
            "(stream TEXT PRIMARY KEY, events BIGINT NOT NULL, note TEXT)"
        } else {
            "(stream TEXT PRIMARY KEY, events BIGINT NOT NULL)"
        };
        unit.create_table("shape", columns)?;
        let seed = format!(
            "INSERT INTO {} (stream, events) VALUES ($1, 0)",
            unit.table("shape")
        );
        unit.statement(seed).bind("seed");
        Ok(())
    }

    fn handle(
        &self,
        event: &RecordedEvent,
        unit: &mut PostgresUnit<'_>,
    ) -> Result<(), HandleError> {
        let table = unit.table("shape");
        let sql = format!(
            "INSERT INTO {table} (stream, events) VALUES ($1, 1) \
             ON CONFLICT (stream) DO UPDATE SET events = {table}.events + 1"
        );
        unit.statement(sql).bind(event.stream.as_str().to_owned());
        Ok(())
    }
}

async fn shape(client: &Client, schema: &str) -> (Vec<String>, BTreeMap<String, i64>) {
    let columns = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'shape' ORDER BY ordinal_position",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rows = client
        .query("SELECT stream, events FROM shape", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    (columns, rows)
}

#[tokio::test]
async fn a_rebuild_with_other_columns_recreates_the_view() {
    let schema = fresh_schema("reshape").await;
    let store = TestStore::new();
    store.append("account", 3, 30, "Deposited").await;
    let projection = Arc::new(Reshaped {
        wide: AtomicBool::new(true),
    });
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink(&schema).await,
            projection.clone(),
            options("shaped"),
        )
        .unwrap();
    caught_up(&handle, &store).await;
    let reader = client(Some(&schema)).await;
    let expected = BTreeMap::from([
        ("account-0".to_owned(), 10),
        ("account-1".to_owned(), 10),
        ("account-2".to_owned(), 10),
        ("seed".to_owned(), 0),
    ]);
    let (columns, rows) = shape(&reader, &schema).await;
    assert_eq!(columns, vec!["stream", "events", "note"]);
    assert_eq!(rows, expected);
    let before = view_oid(&reader, "shape").await;

    // The next generation has one column less: the view cannot be replaced, only recreated.
    projection.wide.store(false, Ordering::SeqCst);
    assert_eq!(handle.rebuild().await.unwrap(), 2);
    let end = store.end().await;
    eventually(30, "generation 2 to be live", || async {
        let status = handle.status();
        status.generation == 2 && status.rebuild.is_none() && status.position >= end
    })
    .await;
    let status = handle.status();
    assert_eq!(status.state, State::Running, "{:?}", status.last_error);
    let (columns, rows) = shape(&reader, &schema).await;
    assert_eq!(columns, vec!["stream", "events"]);
    assert_eq!(rows, expected);
    assert_ne!(view_oid(&reader, "shape").await, before);
    assert_eq!(
        physical_tables(&reader, &schema).await,
        vec!["shaped__shape__g2"]
    );
    projections.stop().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn per_partition_checkpoints_round_trip() {
    let schema = fresh_schema("partitions").await;
    let store = TestStore::new();
    store.append("account", 3, 8, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&schema).await;
    per_partition_round_trip(&*sink, summary(), &name(), &events).await;
    // The batch is applied, the parked event is not.
    let reader = client(Some(&schema)).await;
    assert_eq!(
        rows(&reader, "summary").await,
        model(&events[..5], |_| true)
    );
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_per_partition_checkpoint_off_in_one_partition_is_fenced_and_changes_nothing() {
    let schema = fresh_schema("partition_fence").await;
    let store = TestStore::new();
    store.append("account", 3, 8, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&schema).await;
    let target = |checkpoint: Checkpoint| Target {
        name: name(),
        generation: 1,
        checkpoint,
    };
    let start = Checkpoint::PerPartition(BTreeMap::new());
    let [current, ..] = kafka_checkpoints();
    sink.create_generation(summary(), target(start.clone()), true)
        .await
        .unwrap();
    sink.apply(
        summary(),
        target(start),
        events[..3].to_vec(),
        current.clone(),
    )
    .await
    .unwrap();
    let reader = client(Some(&schema)).await;
    let before = rows(&reader, "summary").await;
    assert_eq!(before, model(&events[..3], |_| true));
    per_partition_fences(&*sink, summary(), &name(), &events[3..], &current).await;
    assert_eq!(rows(&reader, "summary").await, before);
    drop_schema(&schema).await;
}

/// Version 1 of the runtime's schema, as Factlog created it before per-partition checkpoints:
/// a copy, since a released migration never changes (schemas at that version exist).
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS factlog_schema (version BIGINT NOT NULL);
CREATE TABLE factlog_projections (
    name TEXT PRIMARY KEY,
    live_generation BIGINT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL
);
CREATE TABLE factlog_checkpoints (
    projection TEXT NOT NULL,
    generation BIGINT NOT NULL,
    position BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (projection, generation)
);
CREATE TABLE factlog_read_tables (
    projection TEXT NOT NULL,
    generation BIGINT NOT NULL,
    logical TEXT NOT NULL,
    physical TEXT NOT NULL,
    PRIMARY KEY (projection, generation, logical)
);
CREATE TABLE factlog_dead_letters (
    projection TEXT NOT NULL,
    id BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    position BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    first_failed_at BIGINT NOT NULL,
    last_failed_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (projection, id)
);
DELETE FROM factlog_schema;
INSERT INTO factlog_schema (version) VALUES (1);
"#;

const TALLY_COLUMNS: &str = "(stream TEXT PRIMARY KEY, events BIGINT NOT NULL)";

/// Counts the events of each stream in the table `tally`.
struct Tally;

impl Projection<PostgresSink> for Tally {
    fn interest(&self) -> Interest {
        Interest::all()
    }

    fn setup(&self, unit: &mut PostgresUnit<'_>) -> Result<(), HandleError> {
        unit.create_table("tally", TALLY_COLUMNS)
    }

    fn handle(
        &self,
        event: &RecordedEvent,
        unit: &mut PostgresUnit<'_>,
    ) -> Result<(), HandleError> {
        let table = unit.table("tally");
        let sql = format!(
            "INSERT INTO {table} (stream, events) VALUES ($1, 1) \
             ON CONFLICT (stream) DO UPDATE SET events = {table}.events + 1"
        );
        unit.statement(sql).bind(event.stream.as_str().to_owned());
        Ok(())
    }
}

async fn tally(client: &Client) -> BTreeMap<String, i64> {
    client
        .query("SELECT stream, events FROM tally", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn counts(events: &[RecordedEvent]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts.entry(event.stream.to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_version_1_schema_keeps_its_checkpoint_and_goes_on_from_it() {
    let schema = fresh_schema("version_1").await;
    let store = TestStore::new();
    store.append("account", 3, 9, "Deposited").await;
    let events = store.events().await;
    let at = events[3].position;
    // What version 1 left of a projection `tally` whose generation 1 was created and then
    // reset to `at` (its table is empty; the events after `at` are to be applied).
    let admin = client(None).await;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; {SCHEMA_V1}
             CREATE TABLE \"tally__tally__g1\" {TALLY_COLUMNS};
             INSERT INTO factlog_read_tables VALUES ('tally', 1, 'tally', '\"tally__tally__g1\"');
             CREATE VIEW \"tally\" AS SELECT * FROM \"tally__tally__g1\";
             INSERT INTO factlog_projections VALUES ('tally', 1, FALSE, 0);
             INSERT INTO factlog_checkpoints VALUES ('tally', 1, {at}, 0);"
        ))
        .await
        .unwrap();

    let sink = sink(&schema).await;
    let reader = client(Some(&schema)).await;
    let version: i64 = reader
        .query_one("SELECT version FROM factlog_schema", &[])
        .await
        .unwrap()
        .get(0);
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
    assert_eq!(tally(&reader).await, counts(&events[4..]));
    assert_eq!(
        stored_checkpoints(&*sink, &name).await,
        BTreeMap::from([(1, end)])
    );
    // Migrated once: connecting again changes nothing.
    drop(self::sink(&schema).await);
    assert_eq!(tally(&reader).await, counts(&events[4..]));
    drop_schema(&schema).await;
}

#[tokio::test]
async fn an_unreadable_partitions_column_is_invalid_not_a_panic() {
    let schema = fresh_schema("bad_partitions").await;
    let store = TestStore::new();
    store.append("account", 3, 4, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&schema).await;
    let target = Target {
        name: name(),
        generation: 1,
        checkpoint: Checkpoint::PerPartition(BTreeMap::new()),
    };
    sink.create_generation(summary(), target.clone(), true)
        .await
        .unwrap();
    let [to, ..] = kafka_checkpoints();
    let reader = client(Some(&schema)).await;
    for bad in ["5:x", "5", "5:1,5:2", "-1:3"] {
        reader
            .execute(
                "UPDATE factlog_checkpoints SET partitions = $1 WHERE projection = 'summary'",
                &[&bad],
            )
            .await
            .unwrap();
        let error = sink.load(&name()).await.unwrap_err();
        assert!(
            names_unreadable_checkpoint(&error, &name()),
            "{bad}: {error:?}"
        );
        let error = sink
            .apply(summary(), target.clone(), events.clone(), to.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApplyError::Sink(e) if names_unreadable_checkpoint(e, &name())),
            "{bad}: {error:?}"
        );
        let error = sink
            .set_checkpoint(target.clone(), to.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApplyError::Sink(e) if names_unreadable_checkpoint(e, &name())),
            "{bad}: {error:?}"
        );
    }
    assert!(rows(&reader, "summary").await.is_empty());
    drop_schema(&schema).await;
}
