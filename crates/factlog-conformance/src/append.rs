//! Cases for single-stream appends: every [`ExpectedVersion`] on new and existing streams, what an
//! append returns, event ids, and that events come back exactly as written.

use std::collections::HashSet;

use factlog_store::{
    AppendResult, ContentType, EventId, EventStore, EventType, ExpectedVersion, Metadata, NewEvent,
    StreamName,
};

use crate::Backend;
use crate::support::{
    append_err, append_ok, assert_append_stored, assert_in_append_order, assert_position_before,
    assert_store_order, assert_stream_missing, assert_unchanged, assert_wrong_version, event,
    events, read_all_events, read_stream_events, snapshot, stream,
};

/// `Any` creates a new stream and appends to an existing one.
pub async fn expected_version_any<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("any-1");
    let first = append_ok(
        &*store,
        &s,
        ExpectedVersion::Any,
        events("E", 0, 2),
        "Any on a new stream",
    )
    .await;
    assert_eq!(
        (first.first_version, first.last_version),
        (0, 1),
        "Any on a new stream starts at version 0"
    );
    let second = append_ok(
        &*store,
        &s,
        ExpectedVersion::Any,
        events("E", 2, 3),
        "Any on an existing stream",
    )
    .await;
    assert_eq!(
        (second.first_version, second.last_version),
        (2, 4),
        "Any appends after the last version"
    );
    let stored = read_stream_events(&*store, &s).await;
    assert_eq!(stored.len(), 5, "Any: the stream must hold both appends");
}

/// `NoStream` creates a stream and is refused on an existing one with `current: Some(last)`.
pub async fn expected_version_no_stream<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("nostream-1");
    let r = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 0, 3),
        "NoStream on a new stream",
    )
    .await;
    assert_eq!(
        (r.first_version, r.last_version),
        (0, 2),
        "NoStream on a new stream"
    );

    let before = snapshot(&*store).await;
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 3, 1),
        "NoStream on an existing stream",
    )
    .await;
    assert_wrong_version(
        err,
        &s,
        ExpectedVersion::NoStream,
        Some(2),
        "NoStream on an existing stream",
    );
    assert_unchanged(&*store, &before, "NoStream refused").await;
}

/// `StreamExists` is refused on a new stream with `current: None` (creating nothing) and appends
/// to an existing one.
pub async fn expected_version_stream_exists<B: Backend>(b: &B) {
    let store = b.open().await;
    // Another stream exists so that "nothing written" is checked against a non-empty store.
    append_ok(
        &*store,
        &stream("other-1"),
        ExpectedVersion::Any,
        events("E", 0, 1),
        "setup",
    )
    .await;
    let s = stream("exists-1");

    let before = snapshot(&*store).await;
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::StreamExists,
        events("E", 0, 2),
        "StreamExists on a new stream",
    )
    .await;
    assert_wrong_version(
        err,
        &s,
        ExpectedVersion::StreamExists,
        None,
        "StreamExists on a new stream",
    );
    assert_unchanged(&*store, &before, "StreamExists refused").await;
    assert_stream_missing(&*store, &s, "StreamExists refused").await;

    append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 0, 1),
        "create",
    )
    .await;
    let r = append_ok(
        &*store,
        &s,
        ExpectedVersion::StreamExists,
        events("E", 1, 2),
        "StreamExists on an existing stream",
    )
    .await;
    assert_eq!(
        (r.first_version, r.last_version),
        (1, 2),
        "StreamExists appends after the last version"
    );
}

/// `Exact(n)` succeeds only when the last version is `n`; on a new stream even `Exact(0)` fails
/// with `current: None`.
pub async fn expected_version_exact<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("exact-1");

    let before = snapshot(&*store).await;
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Exact(0),
        events("E", 0, 1),
        "Exact(0) on a new stream",
    )
    .await;
    assert_wrong_version(
        err,
        &s,
        ExpectedVersion::Exact(0),
        None,
        "Exact(0) on a new stream",
    );
    assert_unchanged(&*store, &before, "Exact(0) on a new stream refused").await;
    assert_stream_missing(&*store, &s, "Exact(0) on a new stream refused").await;

    append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 0, 3),
        "create",
    )
    .await;
    for wrong in [0, 1, 3, 100] {
        let before = snapshot(&*store).await;
        let what = format!("Exact({wrong}) on a stream at version 2");
        let err = append_err(
            &*store,
            &s,
            ExpectedVersion::Exact(wrong),
            events("E", 9, 1),
            &what,
        )
        .await;
        assert_wrong_version(err, &s, ExpectedVersion::Exact(wrong), Some(2), &what);
        assert_unchanged(&*store, &before, &what).await;
    }
    let r = append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(2),
        events("E", 3, 2),
        "Exact(2) on a stream at version 2",
    )
    .await;
    assert_eq!(
        (r.first_version, r.last_version),
        (3, 4),
        "Exact(2) appends versions 3 and 4"
    );
    let r = append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(4),
        events("E", 5, 1),
        "Exact(4) after it",
    )
    .await;
    assert_eq!(
        (r.first_version, r.last_version),
        (5, 5),
        "Exact(4) appends version 5"
    );
}

/// An append returns its first/last version and position; versions are 0-based and consecutive
/// per stream; positions strictly increase across appends, whatever the stream (with a total
/// order) or within each stream (with a per-partition order, where `$all` as read keeps the
/// order of these one-after-another appends instead).
pub async fn append_result_versions_and_positions<B: Backend>(b: &B) {
    let store = b.open().await;
    let ordering = store.ordering();
    let streams = [stream("pos-a"), stream("pos-b"), stream("pos-c")];
    let mut appended: Vec<(StreamName, Vec<NewEvent>, AppendResult)> = Vec::new();
    let mut n = 0;
    for round in 0..6u64 {
        for (i, s) in streams.iter().enumerate() {
            let count = 1 + (round + i as u64) % 3;
            let new = events("E", n, count);
            n += count;
            let r = append_ok(&*store, s, ExpectedVersion::Any, new.clone(), "append").await;
            // Against every earlier append: with a total order that is "after the previous
            // append"; with a per-partition order it reaches the previous append of this stream.
            for (prev_stream, _, prev) in &appended {
                assert_position_before(
                    ordering,
                    (prev_stream, prev.last_position),
                    (s, r.first_position),
                    &format!(
                        "positions across appends: {prev:?} to {prev_stream} then {r:?} to {s}"
                    ),
                );
            }
            assert!(
                r.first_position <= r.last_position,
                "first_position > last_position in {r:?}"
            );
            if count > 1 {
                assert!(
                    r.first_position < r.last_position,
                    "an append of {count} events spans one position: {r:?}"
                );
            }
            appended.push((s.clone(), new, r));
        }
    }
    let all = read_all_events(&*store).await;
    assert_eq!(all.len() as u64, n, "$all must hold every appended event");
    assert_store_order(&all, ordering, "$all after appends to three streams");
    for (s, new, r) in &appended {
        assert_append_stored(&all, s, new, r, "an append's result against $all");
    }
    let order: Vec<(StreamName, AppendResult)> =
        appended.iter().map(|(s, _, r)| (s.clone(), *r)).collect();
    assert_in_append_order(&all, &order, "$all after one-after-another appends");
    // Per stream: the versions of successive appends continue where the previous one ended.
    for s in &streams {
        let mut next = 0;
        for (_, _, r) in appended.iter().filter(|(t, _, _)| t == s) {
            assert_eq!(
                r.first_version, next,
                "stream {s}: versions must be consecutive across appends"
            );
            next = r.last_version + 1;
        }
        let info = store
            .stream_info(s)
            .await
            .expect("stream_info")
            .expect("the stream exists");
        assert_eq!(
            info.last_version + 1,
            next,
            "stream {s}: stream_info last_version"
        );
    }
}

/// Events appended without an id get distinct, non-nil ids from the store; ids given by the
/// caller are kept.
pub async fn store_assigned_event_ids<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("ids-1");
    let given = [EventId::new_v7(), EventId::new_v7()];
    let new = vec![
        event("E", 0),
        event("E", 1).with_id(given[0]),
        event("E", 2),
        event("E", 3),
        event("E", 4).with_id(given[1]),
    ];
    append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        new.clone(),
        "mixed ids",
    )
    .await;
    append_ok(
        &*store,
        &s,
        ExpectedVersion::Any,
        events("E", 5, 3),
        "no ids",
    )
    .await;
    let stored = read_stream_events(&*store, &s).await;
    assert_eq!(stored.len(), 8);
    assert_eq!(stored[1].id, given[0], "the caller's id must be kept");
    assert_eq!(stored[4].id, given[1], "the caller's id must be kept");
    let ids: HashSet<EventId> = stored.iter().map(|e| e.id).collect();
    assert_eq!(
        ids.len(),
        stored.len(),
        "every stored event needs its own id: {stored:?}"
    );
    for e in &stored {
        assert!(
            !e.id.as_uuid().is_nil(),
            "the store assigned the nil id to version {}",
            e.version
        );
    }
    // The ids read through $all and read_event are the same ids.
    let all = read_all_events(&*store).await;
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        stored.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let e = store
        .read_event(&s, 2)
        .await
        .expect("read_event")
        .expect("version 2 exists");
    assert_eq!(
        e.id, stored[2].id,
        "read_event must return the same store-assigned id"
    );
}

/// Every field a writer gives comes back unchanged: type, schema version, content type, binary
/// data, metadata; and the stream, version and position are the ones the append reported.
pub async fn append_preserves_event_content<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("content-ü-1");
    let mut metadata = Metadata::new();
    metadata.insert("correlationId".into(), serde_json::json!("c-1"));
    metadata.insert(
        "nested".into(),
        serde_json::json!({"a": [1, 2, {"b": null}], "ü": 1.5}),
    );
    let binary: Vec<u8> = (0..=255).collect();
    let new = vec![
        NewEvent::new(
            EventType::new("Bin ärY").expect("valid type"),
            ContentType::new("application/octet-stream").expect("valid content type"),
            binary,
        )
        .with_schema_version(7)
        .with_metadata(metadata.clone()),
        NewEvent::new(
            EventType::new("Empty").expect("valid type"),
            ContentType::json(),
            Vec::<u8>::new(),
        ),
        event("Json", 1).with_metadata(metadata),
    ];
    let r = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        new.clone(),
        "content",
    )
    .await;
    let stored = read_stream_events(&*store, &s).await;
    assert_eq!(stored.len(), new.len());
    for (i, (got, sent)) in stored.iter().zip(&new).enumerate() {
        assert!(
            got.has_same_content(sent),
            "event {i} came back as {got:?}, but {sent:?} was appended"
        );
        assert_eq!(got.stream, s, "event {i}: stream");
    }
    let all = read_all_events(&*store).await;
    assert_eq!(
        all, stored,
        "$all and the stream must return identical events"
    );
    assert_append_stored(&all, &s, &new, &r, "content");
}
