//! Cases for idempotency by event id: a retry of an append that already happened returns the
//! original result and writes nothing (also after a restart); any other reuse of a stored id is a
//! conflict; an id twice in one append is refused.

use factlog_store::{AppendError, EventId, EventStore, ExpectedVersion, NewEvent, StreamAppend};

use crate::Backend;
use crate::support::{
    append_err, append_multi_err, append_ok, assert_append_stored, assert_position_before,
    assert_unchanged, co_partitioned, event, read_all_events, snapshot, stream,
};

fn with_ids(first: u64, count: u64) -> Vec<NewEvent> {
    (first..first + count)
        .map(|n| event("E", n).with_id(EventId::new_v7()))
        .collect()
}

/// The same events (same ids, stream, order and content) appended again return the original
/// `AppendResult` and write nothing, even when the retry's expectation no longer holds (which is
/// exactly the situation of a client retrying after a lost acknowledgement).
pub async fn idempotent_retry_returns_original_result<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("idem-1");
    append_ok(
        &*store,
        &stream("other-1"),
        ExpectedVersion::Any,
        with_ids(0, 2),
        "setup",
    )
    .await;
    let batch = with_ids(10, 3);
    let original = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        batch.clone(),
        "original",
    )
    .await;

    let before = snapshot(&*store).await;
    let retry = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        batch.clone(),
        "retry with NoStream",
    )
    .await;
    assert_eq!(
        retry, original,
        "a retry must return the original AppendResult"
    );
    assert_unchanged(&*store, &before, "retry with NoStream").await;
    let retry = append_ok(
        &*store,
        &s,
        ExpectedVersion::Any,
        batch.clone(),
        "retry with Any",
    )
    .await;
    assert_eq!(
        retry, original,
        "a retry with Any must return the original AppendResult"
    );
    assert_unchanged(&*store, &before, "retry with Any").await;

    // More events arrive on the stream and in the store; the retry is still recognised.
    let later = with_ids(20, 2);
    append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(original.last_version),
        later.clone(),
        "later append",
    )
    .await;
    append_ok(
        &*store,
        &stream("other-1"),
        ExpectedVersion::Any,
        with_ids(30, 1),
        "other append",
    )
    .await;
    let before = snapshot(&*store).await;
    let retry = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        batch.clone(),
        "retry after later appends",
    )
    .await;
    assert_eq!(
        retry, original,
        "a retry after later appends must return the original AppendResult"
    );
    assert_unchanged(&*store, &before, "retry after later appends").await;
    assert_append_stored(&before.events, &s, &batch, &original, "the original append");

    // A multi-stream append is retried the same way: one original result per part.
    let x = stream("idem-x");
    let [y] = co_partitioned(&*store, &x, ["idem-y"]).await;
    let parts = vec![
        StreamAppend {
            stream: x.clone(),
            expected: ExpectedVersion::NoStream,
            events: with_ids(40, 2),
        },
        StreamAppend {
            stream: y.clone(),
            expected: ExpectedVersion::NoStream,
            events: with_ids(50, 1),
        },
    ];
    let original = store
        .append_multi(parts.clone())
        .await
        .expect("multi-stream original");
    let before = snapshot(&*store).await;
    let retry = store.append_multi(parts).await.expect("multi-stream retry");
    assert_eq!(
        retry, original,
        "a multi-stream retry must return the original results"
    );
    assert_unchanged(&*store, &before, "multi-stream retry").await;
}

/// A retry after the store was closed and opened again still returns the original result and
/// writes nothing: the ids were stored durably, not only in memory.
pub async fn idempotent_retry_after_reopen<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("idem-restart-1");
    let batch = with_ids(0, 4);
    let original = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        batch.clone(),
        "original",
    )
    .await;
    append_ok(
        &*store,
        &stream("other-1"),
        ExpectedVersion::Any,
        with_ids(10, 2),
        "other",
    )
    .await;
    let before = snapshot(&*store).await;

    let store = b.reopen(store).await;
    let reopened = snapshot(&*store).await;
    assert_eq!(
        reopened, before,
        "reopening must give back exactly the stored events and end_position"
    );

    let retry = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        batch.clone(),
        "retry after reopen",
    )
    .await;
    assert_eq!(
        retry, original,
        "a retry after reopen must return the original AppendResult"
    );
    assert_unchanged(&*store, &before, "retry after reopen").await;

    // Conflicts are detected after a restart too.
    let mut changed = batch;
    changed[1] = event("E", 99).with_id(changed[1].id.expect("has id"));
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Any,
        changed,
        "changed retry after reopen",
    )
    .await;
    assert!(
        matches!(err, AppendError::IdempotencyConflict { .. }),
        "a changed retry after reopen must be IdempotencyConflict, got {err:?}"
    );
    assert_unchanged(&*store, &before, "changed retry after reopen").await;

    // And the reopened store keeps appending where the old one stopped.
    let next = append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(original.last_version),
        with_ids(20, 1),
        "append after reopen",
    )
    .await;
    assert_eq!(
        next.first_version,
        original.last_version + 1,
        "versions continue after reopen"
    );
    let ordering = store.ordering();
    for e in &before.events {
        assert_position_before(
            ordering,
            (&e.stream, e.position),
            (&s, next.first_position),
            "positions continue after reopen",
        );
    }
    let all = read_all_events(&*store).await;
    assert_eq!(
        all.len(),
        before.events.len() + 1,
        "$all after one append after reopen"
    );
    assert_eq!(
        all[..before.events.len()],
        before.events[..],
        "$all after reopen: the events stored before come first, unchanged"
    );
    let last = &all[before.events.len()];
    assert_eq!(
        (&last.stream, last.version, last.position),
        (&s, next.first_version, next.first_position),
        "$all after reopen ends with the event appended after reopen"
    );
}

/// A stored id with other content is `IdempotencyConflict` naming that id; nothing is written.
pub async fn idempotency_conflict_other_content<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("conflict-1");
    let batch = with_ids(0, 2);
    append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        batch.clone(),
        "original",
    )
    .await;
    let before = snapshot(&*store).await;

    let id = batch[0].id.expect("has id");
    let variants: Vec<(&str, NewEvent)> = vec![
        ("other data", event("E", 1000).with_id(id)),
        ("other type", event("F", 0).with_id(id)),
        (
            "other schema version",
            batch[0].clone().with_schema_version(2),
        ),
        (
            "other metadata",
            batch[0].clone().with_metadata(
                serde_json::json!({"k": "v"})
                    .as_object()
                    .expect("an object")
                    .clone(),
            ),
        ),
    ];
    for (what, changed) in variants {
        let err = append_err(&*store, &s, ExpectedVersion::Any, vec![changed], what).await;
        match err {
            AppendError::IdempotencyConflict { event_id, .. } => {
                assert_eq!(event_id, id, "{what}: the conflict must name the reused id")
            }
            other => panic!(
                "{what}: a stored id with other content must be IdempotencyConflict, got {other:?}"
            ),
        }
        assert_unchanged(&*store, &before, what).await;
    }

    // A stored id next to new events is not a retry either.
    let mixed = vec![batch[0].clone(), event("E", 7).with_id(EventId::new_v7())];
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Any,
        mixed,
        "stored id plus a new event",
    )
    .await;
    assert!(
        matches!(err, AppendError::IdempotencyConflict { event_id, .. } if event_id == id),
        "a stored id next to a new event must be IdempotencyConflict naming {id}, got {err:?}"
    );
    assert_unchanged(&*store, &before, "stored id plus a new event").await;
}

/// A stored id appended (with the same content) to another stream is `IdempotencyConflict`.
pub async fn idempotency_conflict_other_stream<B: Backend>(b: &B) {
    let store = b.open().await;
    let batch = with_ids(0, 1);
    append_ok(
        &*store,
        &stream("conflict-a"),
        ExpectedVersion::NoStream,
        batch.clone(),
        "original",
    )
    .await;
    let before = snapshot(&*store).await;
    let other = stream("conflict-b");
    let err = append_err(
        &*store,
        &other,
        ExpectedVersion::Any,
        batch.clone(),
        "same id in another stream",
    )
    .await;
    match err {
        AppendError::IdempotencyConflict { event_id, .. } => {
            assert_eq!(
                Some(event_id),
                batch[0].id,
                "the conflict must name the reused id"
            )
        }
        other => panic!("the same id in another stream must be IdempotencyConflict, got {other:?}"),
    }
    assert_unchanged(&*store, &before, "same id in another stream").await;
    crate::support::assert_stream_missing(&*store, &other, "same id in another stream").await;
}

/// An id given twice in one append is `DuplicateEventId`, also across the parts of a
/// multi-stream append; nothing is written.
pub async fn duplicate_event_id_in_one_append<B: Backend>(b: &B) {
    let store = b.open().await;
    append_ok(
        &*store,
        &stream("setup-1"),
        ExpectedVersion::Any,
        with_ids(0, 1),
        "setup",
    )
    .await;
    let before = snapshot(&*store).await;
    let s = stream("dup-1");
    let id = EventId::new_v7();
    let new = vec![
        event("E", 0).with_id(id),
        event("E", 1),
        event("E", 2).with_id(id),
    ];
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Any,
        new,
        "an id twice in one append",
    )
    .await;
    assert_eq!(
        err,
        AppendError::DuplicateEventId { event_id: id },
        "an id twice in one append"
    );
    assert_unchanged(&*store, &before, "an id twice in one append").await;

    // Identical events, same id: still a duplicate, not "a retry inside the append".
    let twice = vec![event("E", 0).with_id(id), event("E", 0).with_id(id)];
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Any,
        twice,
        "an identical event twice",
    )
    .await;
    assert_eq!(
        err,
        AppendError::DuplicateEventId { event_id: id },
        "an identical event twice"
    );
    assert_unchanged(&*store, &before, "an identical event twice").await;

    let dup_a = stream("dup-a");
    let [dup_b] = co_partitioned(&*store, &dup_a, ["dup-b"]).await;
    let parts = vec![
        StreamAppend {
            stream: dup_a,
            expected: ExpectedVersion::Any,
            events: vec![event("E", 0).with_id(id)],
        },
        StreamAppend {
            stream: dup_b,
            expected: ExpectedVersion::Any,
            events: vec![event("E", 1).with_id(id)],
        },
    ];
    let err = append_multi_err(
        &*store,
        parts,
        "an id in two parts of one multi-stream append must be refused",
    )
    .await;
    assert_eq!(
        err,
        AppendError::DuplicateEventId { event_id: id },
        "an id in two parts of one append"
    );
    assert_unchanged(&*store, &before, "an id in two parts of one append").await;
    let all = read_all_events(&*store).await;
    assert!(
        all.iter().all(|e| e.id != id),
        "the duplicated id must not be stored"
    );
}
