//! The runtime over the Redis sink: exactly-once application across restarts, fencing, dead
//! letters, a command that fails inside a batch's script, and rebuilds; per-partition
//! checkpoints (with a failing command in a batch of merged partitions) and the layout version
//! before them.
//!
//! Needs a Redis server: `FACTLOG_TEST_REDIS_URL` (`scripts/services.sh run -- cargo test -p
//! factlog-projection --test redis` starts one). Each test writes under a key prefix of its own
//! and deletes its keys when it passes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{
    Row, TestStore, caught_up, dead_letter, eventually, kafka_checkpoints, model,
    names_unreadable_checkpoint, options, per_partition_fences, per_partition_round_trip,
    stored_checkpoints,
};
use factlog_projection::{
    ApplyError, ControlError, DeadLetterStatus, HandleError, Interest, Projection, ProjectionName,
    Projections, RedisSink, RedisUnit, Sink, SinkError, State, StreamSummary, Target,
};
use factlog_store::{Checkpoint, Position, RecordedEvent};
use redis::aio::MultiplexedConnection;

fn url() -> String {
    std::env::var("FACTLOG_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "FACTLOG_TEST_REDIS_URL is not set: run the tests under `scripts/services.sh run -- \
             cargo test -p factlog-projection --test redis`, which starts Redis"
        )
    })
}

/// A key prefix no other test (nor run) uses.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("factlog_test:{test}:{}:{nanos}:", std::process::id())
}

fn summary() -> Arc<StreamSummary> {
    Arc::new(StreamSummary::new("summary", Interest::all()))
}

fn name() -> ProjectionName {
    ProjectionName::new("summary").unwrap()
}

async fn sink(prefix: &str) -> Arc<RedisSink> {
    Arc::new(
        RedisSink::connect(&url(), prefix)
            .await
            .expect("the sink connects"),
    )
}

async fn connection() -> MultiplexedConnection {
    redis::Client::open(url().as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The stream summary as a reader sees it: through the live generation's keys.
async fn rows(sink: &RedisSink, name: &ProjectionName) -> BTreeMap<String, Row> {
    let mut conn = connection().await;
    let streams_key = sink.live_key(name, "summary:streams").await.unwrap();
    let streams: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&streams_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut rows = BTreeMap::new();
    for stream in streams {
        let key = sink
            .live_key(name, &format!("summary:stream:{stream}"))
            .await
            .unwrap();
        let h: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let n = |f: &str| h[f].parse::<i64>().unwrap();
        rows.insert(
            stream,
            Row {
                category: h["category"].clone(),
                events: n("events"),
                last_version: n("last_version"),
                last_event_type: h["last_event_type"].clone(),
                last_position: n("last_position"),
            },
        );
    }
    rows
}

/// Every key matching `pattern`, sorted.
async fn scan(pattern: &str) -> Vec<String> {
    let mut conn = connection().await;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Every key under `prefix` with its serialized value: equal snapshots mean nothing changed.
async fn snapshot(prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut conn = connection().await;
    let mut all = BTreeMap::new();
    for key in scan(&format!("{prefix}*")).await {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        all.insert(key, dump);
    }
    all
}

async fn clean(prefix: &str) {
    let mut conn = connection().await;
    for key in scan(&format!("{prefix}*")).await {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn applies_every_event_once() {
    let prefix = prefix("once");
    let store = TestStore::new();
    store.append("account", 50, 2000, "Deposited").await;
    // A stream whose name is also the suffix of the summary's set of streams.
    store.append_one("streams", "Deposited").await;
    let sink = sink(&prefix).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary(),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    let end = store.end().await;
    assert_eq!(status.state, State::Running);
    assert_eq!(status.generation, 1);
    assert_eq!(status.committed_position, end);
    assert_eq!(status.dead_letters_parked, 0);
    projections.stop().await;

    let expected = model(&store.events().await, |_| true);
    assert_eq!(expected.len(), 51);
    assert_eq!(rows(&sink, &name()).await, expected);
    let stored = sink.load(&name()).await.unwrap().unwrap();
    assert_eq!(stored.live_generation, 1);
    assert!(!stored.paused);
    assert_eq!(
        stored.checkpoints,
        BTreeMap::from([(1, Checkpoint::Total(end))])
    );
    clean(&prefix).await;
}

#[tokio::test]
async fn a_restart_applies_only_the_new_events() {
    let prefix = prefix("restart");
    let store = TestStore::new();
    store.append("account", 20, 500, "Deposited").await;
    let sink = sink(&prefix).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary(),
            options("summary"),
        )
        .unwrap();
    caught_up(&handle, &store).await;
    assert_eq!(
        rows(&sink, &name()).await,
        model(&store.events().await, |_| true)
    );

    // Stop, append more, start again on a new connection: nothing is applied twice.
    projections.stop().await;
    store.append("account", 30, 700, "Withdrawn").await;
    let sink = self::sink(&prefix).await;
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary(),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    assert_eq!(status.committed_position, store.end().await);
    projections.stop().await;
    let found = rows(&sink, &name()).await;
    assert_eq!(found, model(&store.events().await, |_| true));
    assert_eq!(found.len(), 30);
    assert!(found.values().all(|r| r.events == r.last_version + 1));
    clean(&prefix).await;
}

#[tokio::test]
async fn a_stale_checkpoint_is_fenced_and_changes_nothing() {
    let prefix = prefix("fence");
    let store = TestStore::new();
    store.append("account", 2, 20, "Deposited").await;
    let sink = sink(&prefix).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            summary(),
            options("summary"),
        )
        .unwrap();
    let end = Checkpoint::Total(caught_up(&handle, &store).await.committed_position);
    projections.stop().await;

    let stale = Target {
        name: name(),
        generation: 1,
        checkpoint: Checkpoint::Total(Position::START),
    };
    let three = Checkpoint::Total(Position::from_raw(3));
    let before = snapshot(&prefix).await;
    let error = sink
        .set_checkpoint(stale.clone(), three.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApplyError::Fenced { found: Some(p), .. } if *p == end),
        "{error:?}"
    );
    let error = sink
        .apply(summary(), stale, store.events().await, end.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApplyError::Fenced { found: Some(p), .. } if *p == end),
        "{error:?}"
    );
    let missing = Target {
        name: name(),
        generation: 7,
        checkpoint: Checkpoint::Total(Position::START),
    };
    let error = sink.set_checkpoint(missing, end.clone()).await.unwrap_err();
    assert!(
        matches!(error, ApplyError::Fenced { found: None, .. }),
        "{error:?}"
    );
    assert_eq!(
        snapshot(&prefix).await,
        before,
        "a fenced call changed keys"
    );
    assert_eq!(
        sink.load(&name()).await.unwrap().unwrap().checkpoints[&1],
        end
    );

    // The current checkpoint passes the fence.
    let current = Target {
        name: name(),
        generation: 1,
        checkpoint: end,
    };
    sink.set_checkpoint(current, three.clone()).await.unwrap();
    assert_eq!(
        sink.load(&name()).await.unwrap().unwrap().checkpoints[&1],
        three
    );
    clean(&prefix).await;
}

/// The stream summary, except that events of type `Poison` fail until `fixed` is set.
struct Flaky {
    inner: StreamSummary,
    fixed: AtomicBool,
}

impl Projection<RedisSink> for Flaky {
    fn interest(&self) -> Interest {
        Interest::all()
    }
    fn setup(&self, unit: &mut RedisUnit<'_>) -> Result<(), HandleError> {
        Projection::<RedisSink>::setup(&self.inner, unit)
    }
    fn handle(&self, event: &RecordedEvent, unit: &mut RedisUnit<'_>) -> Result<(), HandleError> {
        if event.event_type.as_str() == "Poison" && !self.fixed.load(Ordering::SeqCst) {
            return Err(HandleError::Permanent("cannot read a Poison event".into()));
        }
        Projection::<RedisSink>::handle(&self.inner, event, unit)
    }
}

#[tokio::test]
async fn a_poison_event_is_parked_and_can_be_retried_or_skipped() {
    let prefix = prefix("poison");
    let store = TestStore::new();
    store.append("account", 2, 10, "Deposited").await;
    let poison = store.append_one("account-7", "Poison").await;
    store.append("account", 2, 10, "Deposited").await;
    let second = store.append_one("account-8", "Poison").await;
    store.append("account", 2, 10, "Deposited").await;

    let sink = sink(&prefix).await;
    let projection = Arc::new(Flaky {
        inner: StreamSummary::new("summary", Interest::all()),
        fixed: AtomicBool::new(false),
    });
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
    assert_eq!(status.committed_position, store.end().await);
    assert!(
        status
            .last_error
            .unwrap()
            .message
            .contains("cannot read a Poison event")
    );

    // Everything but the two poison events is applied, once.
    let events = store.events().await;
    let healthy = model(&events, |e| e.event_type.as_str() != "Poison");
    assert_eq!(rows(&sink, &name()).await, healthy);

    let dead = handle.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].event_id, poison.id);
    assert_eq!(dead[0].position, poison.position);
    assert_eq!(dead[0].generation, 1);
    assert_eq!(dead[0].stream, "account-7");
    assert_eq!(dead[0].version, poison.version);
    assert_eq!(dead[0].event_type, "Poison");
    assert_eq!(dead[0].attempts, 1, "a permanent error gets one attempt");
    assert_eq!(dead[0].status, DeadLetterStatus::Parked);
    assert!(dead[0].error.contains("cannot read a Poison event"));
    assert_eq!(dead[0].data.as_deref(), Some(r#"{"n":1}"#));
    assert!(dead[0].first_failed_at <= dead[0].last_failed_at);
    assert_eq!(dead[1].event_id, second.id);
    assert!(dead[0].id < dead[1].id);

    // Still broken: the retry fails, counts an attempt and changes nothing.
    let error = handle.retry_dead_letter(dead[0].id).await.unwrap_err();
    assert!(
        matches!(error, ControlError::RetryFailed { .. }),
        "{error:?}"
    );
    let after = handle.dead_letters().await.unwrap();
    assert_eq!(after[0].attempts, 2);
    assert_eq!(after[0].status, DeadLetterStatus::Parked);
    assert_eq!(rows(&sink, &name()).await, healthy);

    // Fixed: the retry applies it; the other one is skipped.
    projection.fixed.store(true, Ordering::SeqCst);
    handle.retry_dead_letter(dead[0].id).await.unwrap();
    handle.skip_dead_letter(dead[1].id).await.unwrap();
    let dead = handle.dead_letters().await.unwrap();
    assert_eq!(dead[0].status, DeadLetterStatus::Retried);
    assert_eq!(dead[1].status, DeadLetterStatus::Skipped);
    assert_eq!(handle.status().dead_letters_parked, 0);
    assert_eq!(
        rows(&sink, &name()).await,
        model(&events, |e| e.id != second.id)
    );

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
    assert_eq!(
        handle.skip_dead_letter(99).await.unwrap_err(),
        ControlError::DeadLetterNotFound(99)
    );
    assert_eq!(
        sink.skip_dead_letter(&name(), 99, factlog_store::Timestamp::now())
            .await
            .unwrap_err(),
        SinkError::DeadLetterNotFound(99)
    );
    projections.stop().await;
    clean(&prefix).await;
}

/// The stream summary, plus, for events of type `Bad`, a command that Redis refuses (`HINCRBY`
/// on a string key, set up by `setup`) after one that it runs (`INCR` of a counter); for events
/// of type `BadLast`, the summary's commands, an `INCR` and a final command (`cmd_last`) that
/// Redis refuses; every event adds `all` to the set `seen`, once per batch.
struct Refused {
    inner: StreamSummary,
}

impl Projection<RedisSink> for Refused {
    fn interest(&self) -> Interest {
        Interest::all()
    }
    fn setup(&self, unit: &mut RedisUnit<'_>) -> Result<(), HandleError> {
        let trap = unit.key("trap");
        unit.cmd("SET").arg(&trap).arg("a string");
        Ok(())
    }
    fn handle(&self, event: &RecordedEvent, unit: &mut RedisUnit<'_>) -> Result<(), HandleError> {
        // Queued first, but run after the batch's other commands (and never skipped): an
        // event's commands start the same way whether or not an earlier event of its batch
        // queued this one.
        let seen = unit.key("seen");
        unit.cmd_once("SADD").arg(&seen).arg("all");
        if event.event_type.as_str() == "BadLast" {
            let before = unit.key("bad_last_before");
            unit.cmd("INCR").arg(&before);
            let trap = unit.key("trap");
            unit.cmd_last("trap", "HSET").arg(&trap).arg("field").arg(1);
            return Projection::<RedisSink>::handle(&self.inner, event, unit);
        }
        if event.event_type.as_str() == "Bad" {
            let before = unit.key("bad_before");
            unit.command(redis::cmd("INCR").arg(&before));
            let trap = unit.key("trap");
            unit.cmd("HINCRBY").arg(&trap).arg("field").arg(1);
            return Ok(());
        }
        Projection::<RedisSink>::handle(&self.inner, event, unit)
    }
}

#[tokio::test]
async fn a_command_redis_refuses_parks_its_event_and_the_rest_of_the_batch_applies_once() {
    let prefix = prefix("refused");
    let store = TestStore::new();
    // One batch: events before and after the bad one, and a stream with events only before it
    // (its row's values come from final commands of events that the failed run applied).
    store.append("account", 5, 200, "Deposited").await;
    store.append("early", 1, 3, "Deposited").await;
    let bad = store.append_one("account-3", "Bad").await;
    store.append("account", 5, 200, "Deposited").await;
    let sink = sink(&prefix).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            Arc::new(Refused {
                inner: StreamSummary::new("summary", Interest::all()),
            }),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    assert_eq!(status.dead_letters_parked, 1);
    projections.stop().await;

    let events = store.events().await;
    assert_eq!(
        rows(&sink, &name()).await,
        model(&events, |e| e.id != bad.id),
        "the events of the failed batch were applied exactly once"
    );
    let dead = sink.dead_letters(&name()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, bad.id);
    assert!(dead[0].error.contains("WRONGTYPE"), "{}", dead[0].error);
    assert_eq!(dead[0].attempts, 1);

    // The bad event's command before the refused one ran once, though the event was tried
    // again alone (Redis keeps a script's writes before a failing command).
    let mut conn = connection().await;
    let before: i64 = redis::cmd("GET")
        .arg(sink.live_key(&name(), "bad_before").await.unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(before, 1);
    let seen: Vec<String> = redis::cmd("SMEMBERS")
        .arg(sink.live_key(&name(), "seen").await.unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(seen, ["all"]);
    clean(&prefix).await;
}

#[tokio::test]
async fn a_final_command_redis_refuses_parks_its_event_and_the_rest_of_the_batch_applies_once() {
    let prefix = prefix("refused_final");
    let store = TestStore::new();
    // One batch, with no other failure: the refused final command runs after every event's
    // ordinary commands ran.
    store.append("early", 1, 3, "Deposited").await;
    store.append("account", 5, 100, "Deposited").await;
    let bad = store.append_one("account-2", "BadLast").await;
    store.append("account", 5, 100, "Deposited").await;
    let sink = sink(&prefix).await;
    let projections = Projections::new();
    let handle = projections
        .start(
            store.dyn_store(),
            sink.clone(),
            Arc::new(Refused {
                inner: StreamSummary::new("summary", Interest::all()),
            }),
            options("summary"),
        )
        .unwrap();
    let status = caught_up(&handle, &store).await;
    assert_eq!(status.dead_letters_parked, 1);
    projections.stop().await;

    let dead = sink.dead_letters(&name()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, bad.id);
    assert!(dead[0].error.contains("WRONGTYPE"), "{}", dead[0].error);
    // Every event's ordinary commands ran once, the bad one's included (they ran before its
    // final command failed); the other final commands set the rows' latest values.
    let events = store.events().await;
    let mut expected = model(&events, |e| e.id != bad.id);
    let row = expected.get_mut("account-2").unwrap();
    row.events += 1;
    assert_eq!(rows(&sink, &name()).await, expected);
    let mut conn = connection().await;
    let before: i64 = redis::cmd("GET")
        .arg(sink.live_key(&name(), "bad_last_before").await.unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(before, 1);
    clean(&prefix).await;
}

#[tokio::test]
async fn a_rebuild_equals_the_model_and_deletes_the_old_generation() {
    let prefix = prefix("rebuild");
    let store = TestStore::new();
    store.append("account", 50, 3000, "Deposited").await;
    let sink = sink(&prefix).await;
    let projections = Projections::new();
    let mut options = options("summary");
    // Small batches make the rebuild take many scripts.
    options.batch_events_max = 50;
    let handle = projections
        .start(store.dyn_store(), sink.clone(), summary(), options)
        .unwrap();
    caught_up(&handle, &store).await;
    let incremental = rows(&sink, &name()).await;
    assert_eq!(incremental, model(&store.events().await, |_| true));
    let generation_1 = format!("{prefix}rm:summary:g1:*");
    assert_eq!(
        scan(&generation_1).await.len(),
        51,
        "50 streams and their set"
    );

    assert_eq!(handle.rebuild().await.unwrap(), 2);
    eventually(60, "the rebuild to go live", || async {
        handle.status().generation == 2
    })
    .await;
    assert_eq!(handle.status().state, State::Running);
    assert_eq!(rows(&sink, &name()).await, incremental);
    assert_eq!(
        sink.live_key(&name(), "summary:streams").await.unwrap(),
        format!("{prefix}rm:summary:g2:summary:streams")
    );
    assert_eq!(scan(&generation_1).await, Vec::<String>::new());
    assert_eq!(scan(&format!("{prefix}rm:summary:g2:*")).await.len(), 51);
    assert_eq!(
        scan(&format!("{prefix}generations:summary:1:*")).await,
        Vec::<String>::new()
    );
    let stored = sink.load(&name()).await.unwrap().unwrap();
    assert_eq!(stored.live_generation, 2);
    assert_eq!(stored.checkpoints.keys().copied().collect::<Vec<_>>(), [2]);

    // The rebuilt generation goes on incrementally.
    store.append("account", 50, 100, "Withdrawn").await;
    caught_up(&handle, &store).await;
    projections.stop().await;
    assert_eq!(
        rows(&sink, &name()).await,
        model(&store.events().await, |_| true)
    );
    clean(&prefix).await;
}

#[tokio::test]
async fn a_bad_prefix_and_a_newer_schema_are_refused() {
    for bad in ["", "has space:", "tab\t", "é:"] {
        let error = RedisSink::connect(&url(), bad).await.unwrap_err();
        assert!(matches!(error, SinkError::Invalid(_)), "{bad:?}: {error:?}");
    }
    let prefix = prefix("schema");
    drop(sink(&prefix).await);
    let mut conn = connection().await;
    let version: String = redis::cmd("GET")
        .arg(format!("{prefix}schema"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, "2");
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}schema"))
        .arg(99)
        .query_async(&mut conn)
        .await
        .unwrap();
    let error = RedisSink::connect(&url(), &prefix).await.unwrap_err();
    assert!(
        matches!(&error, SinkError::Invalid(m) if m.contains("99")),
        "{error:?}"
    );
    clean(&prefix).await;
}

#[tokio::test]
async fn per_partition_checkpoints_round_trip() {
    let prefix = prefix("partitions");
    let store = TestStore::new();
    store.append("account", 3, 8, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&prefix).await;
    per_partition_round_trip(&*sink, summary(), &name(), &events).await;
    // The batch is applied, the parked event is not.
    assert_eq!(rows(&sink, &name()).await, model(&events[..5], |_| true));
    clean(&prefix).await;
}

#[tokio::test]
async fn a_per_partition_checkpoint_off_in_one_partition_is_fenced_and_changes_nothing() {
    let prefix = prefix("partition_fence");
    let store = TestStore::new();
    store.append("account", 3, 8, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&prefix).await;
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
    assert_eq!(rows(&sink, &name()).await, model(&events[..3], |_| true));
    let before = snapshot(&prefix).await;
    per_partition_fences(&*sink, summary(), &name(), &events[3..], &current).await;
    assert_eq!(
        snapshot(&prefix).await,
        before,
        "a fenced call changed keys"
    );
    clean(&prefix).await;
}

#[tokio::test]
async fn a_version_1_layout_keeps_its_checkpoint_and_goes_on_from_it() {
    let prefix = prefix("version_1");
    let store = TestStore::new();
    store.append("account", 3, 9, "Deposited").await;
    let events = store.events().await;
    let at = events[3].position;
    // What version 1 left of a projection whose generation 1 was created and then reset to
    // `at` (no read-model keys yet; the events after `at` are to be applied): a checkpoint is
    // one field, the generation, holding the position.
    let mut conn = connection().await;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(format!("{prefix}schema"))
        .arg(1)
        .cmd("HSET")
        .arg(format!("{prefix}projection:summary"))
        .arg("live_generation")
        .arg(1)
        .arg("paused")
        .arg(0)
        .cmd("HSET")
        .arg(format!("{prefix}checkpoint:summary"))
        .arg(1)
        .arg(at.raw())
        .cmd("SADD")
        .arg(format!("{prefix}generations:summary"))
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();

    let sink = sink(&prefix).await;
    let version: String = redis::cmd("GET")
        .arg(format!("{prefix}schema"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, "2");
    let stored = sink.load(&name()).await.unwrap().unwrap();
    assert_eq!((stored.live_generation, stored.paused), (1, false));
    assert_eq!(
        stored.checkpoints,
        BTreeMap::from([(1, Checkpoint::Total(at))])
    );

    let end = Checkpoint::Total(events.last().unwrap().position);
    let target = Target {
        name: name(),
        generation: 1,
        checkpoint: Checkpoint::Total(at),
    };
    sink.apply(summary(), target, events[4..].to_vec(), end.clone())
        .await
        .unwrap();
    assert_eq!(rows(&sink, &name()).await, model(&events[4..], |_| true));
    assert_eq!(
        stored_checkpoints(&*sink, &name()).await,
        BTreeMap::from([(1, end)])
    );
    clean(&prefix).await;
}

#[tokio::test]
async fn an_unreadable_checkpoint_is_invalid_not_a_panic() {
    let prefix = prefix("bad_partitions");
    let store = TestStore::new();
    store.append("account", 3, 4, "Deposited").await;
    let events = store.events().await;
    let sink = sink(&prefix).await;
    let target = Target {
        name: name(),
        generation: 1,
        checkpoint: Checkpoint::PerPartition(BTreeMap::new()),
    };
    sink.create_generation(summary(), target.clone(), true)
        .await
        .unwrap();
    let [to, ..] = kafka_checkpoints();
    let mut conn = connection().await;
    let checkpoints = format!("{prefix}checkpoint:summary");
    let bad_fields = [
        ("1:partitions", "5:x"),
        ("1:partitions", "5"),
        ("1:partitions", "5:1,5:2"),
        ("1:partitions", "-1:3"),
        ("1", "x"),
    ];
    for (field, bad) in bad_fields {
        let _: () = redis::cmd("HSET")
            .arg(&checkpoints)
            .arg(field)
            .arg(bad)
            .query_async(&mut conn)
            .await
            .unwrap();
        let error = sink.load(&name()).await.unwrap_err();
        assert!(
            names_unreadable_checkpoint(&error, &name()),
            "{field} {bad}: {error:?}"
        );
        let error = sink
            .apply(summary(), target.clone(), events.clone(), to.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApplyError::Sink(e) if names_unreadable_checkpoint(e, &name())),
            "{field} {bad}: {error:?}"
        );
        let error = sink
            .set_checkpoint(target.clone(), to.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApplyError::Sink(e) if names_unreadable_checkpoint(e, &name())),
            "{field} {bad}: {error:?}"
        );
    }
    assert!(rows(&sink, &name()).await.is_empty());
    clean(&prefix).await;
}

/// The partition key of a position as the Kafka store encodes it: the bits above the offset.
fn key_of(position: Position) -> u64 {
    position.raw() >> 38
}

#[tokio::test]
async fn a_command_redis_refuses_in_merged_partitions_leaves_every_event_applied_once() {
    let prefix = prefix("refused_partitions");
    let store = TestStore::new();
    store.append("account", 4, 12, "Deposited").await;
    let bad = store.append_one("account-8", "Bad").await;
    store.append("account", 4, 12, "Deposited").await;
    // As the Kafka store delivers them: the streams with an even number in partition 7, the
    // others in partition 3, merged. In the batch, the events of partition 3 after the bad one
    // have lower positions than it: a position says nothing about the order of a batch.
    let mut offsets: BTreeMap<u64, u64> = BTreeMap::new();
    let mut events = store.events().await;
    for event in &mut events {
        let number: u64 = event.stream.as_str()["account-".len()..].parse().unwrap();
        let key = if number.is_multiple_of(2) { 7 } else { 3 };
        let offset = offsets.entry(key).or_default();
        event.position = Position::from_raw((key << 38) + *offset);
        *offset += 1;
    }
    let bad = events.iter().find(|e| e.id == bad.id).unwrap().clone();
    let bad_index = events.iter().position(|e| e.id == bad.id).unwrap();

    let sink = sink(&prefix).await;
    let projection = Arc::new(Refused {
        inner: StreamSummary::new("summary", Interest::all()),
    });
    let target = |checkpoint: &Checkpoint| Target {
        name: name(),
        generation: 1,
        checkpoint: checkpoint.clone(),
    };
    let start = Checkpoint::PerPartition(BTreeMap::new());
    sink.create_generation(projection.clone(), target(&start), true)
        .await
        .unwrap();
    let mut end = start.clone();
    for event in &events {
        end.advance(key_of(event.position), event.position);
    }
    let error = sink
        .apply(
            projection.clone(),
            target(&start),
            events.clone(),
            end.clone(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApplyError::Event { index: Some(i), permanent: true, .. } if *i == bad_index),
        "{error:?}"
    );

    // The runner looks for the failing event one event at a time; here on another node, which
    // merges the partitions the other way round (all of partition 3, then all of 7).
    let mut order: Vec<RecordedEvent> = events.clone();
    order.sort_by_key(|e| key_of(e.position));
    let mut at = start;
    for event in order {
        let mut to = at.clone();
        to.advance(key_of(event.position), event.position);
        let applied = sink
            .apply(
                projection.clone(),
                target(&at),
                vec![event.clone()],
                to.clone(),
            )
            .await;
        match applied {
            Ok(()) => {}
            Err(ApplyError::Event { .. }) if event.id == bad.id => sink
                .park(target(&at), dead_letter(&event, "refused"), to.clone())
                .await
                .unwrap(),
            Err(error) => panic!("{}: {error:?}", event.position),
        }
        at = to;
    }
    assert_eq!(at, end);
    assert_eq!(
        stored_checkpoints(&*sink, &name()).await,
        BTreeMap::from([(1, end)])
    );
    assert_eq!(
        rows(&sink, &name()).await,
        model(&events, |e| e.id != bad.id),
        "every event but the bad one was applied exactly once"
    );
    let dead = sink.dead_letters(&name()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].event_id, dead[0].position), (bad.id, bad.position));

    // The bad event's command before the refused one ran once; every marker entry went with its
    // event.
    let mut conn = connection().await;
    let before: i64 = redis::cmd("GET")
        .arg(sink.live_key(&name(), "bad_before").await.unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(before, 1);
    let marker: Option<String> = redis::cmd("HGET")
        .arg(format!("{prefix}progress:summary"))
        .arg("1:partial")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(marker, None);
    clean(&prefix).await;
}
