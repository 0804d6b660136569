//! Cases for multi-stream appends (`append_multi`): results in order, all or nothing across
//! streams, and the refusals of malformed calls (a stream twice, no events).

use factlog_store::{AppendError, EventStore, ExpectedVersion, ReadAll, StreamAppend};

use crate::Backend;
use crate::support::{
    append_err, append_multi_err, append_ok, assert_append_stored, assert_end_moved,
    assert_position_before, assert_store_order, assert_stream_missing, assert_unchanged,
    assert_wrong_version, events, read_all_events, snapshot, stream,
};

/// One result per part, in the order of the parts, each describing that part's events; new and
/// existing streams mix freely.
pub async fn append_multi_in_order<B: Backend>(b: &B) {
    let store = b.open().await;
    let existing = stream("multi-b");
    append_ok(
        &*store,
        &existing,
        ExpectedVersion::NoStream,
        events("E", 0, 2),
        "setup",
    )
    .await;
    // The parts are deliberately not in name order, so that a backend sorting them internally
    // still has to return the results in the caller's order.
    let parts = vec![
        StreamAppend {
            stream: stream("multi-c"),
            expected: ExpectedVersion::NoStream,
            events: events("E", 10, 3),
        },
        StreamAppend {
            stream: existing.clone(),
            expected: ExpectedVersion::Exact(1),
            events: events("E", 20, 1),
        },
        StreamAppend {
            stream: stream("multi-a"),
            expected: ExpectedVersion::Any,
            events: events("E", 30, 2),
        },
    ];
    let before = snapshot(&*store).await;
    let results = store
        .append_multi(parts.clone())
        .await
        .expect("a valid multi-stream append");
    assert_eq!(
        results.len(),
        parts.len(),
        "append_multi returns one result per part"
    );
    let all = read_all_events(&*store).await;
    assert_eq!(
        all.len(),
        before.events.len() + 6,
        "every event of every part is stored"
    );
    let ordering = store.ordering();
    assert_store_order(&all, ordering, "$all after a multi-stream append");
    assert_eq!(
        all[..before.events.len()],
        before.events[..],
        "a multi-stream append is stored after what was there: $all must begin with the events stored before it"
    );
    for (part, result) in parts.iter().zip(&results) {
        assert_append_stored(
            &all,
            &part.stream,
            &part.events,
            result,
            &format!("part for {}", part.stream),
        );
        for e in &before.events {
            assert_position_before(
                ordering,
                (&e.stream, e.position),
                (&part.stream, result.first_position),
                &format!("a multi-stream append is stored after what was there: {result:?}"),
            );
        }
    }
    assert_eq!(
        (results[0].first_version, results[0].last_version),
        (0, 2),
        "new stream multi-c"
    );
    assert_eq!(
        (results[1].first_version, results[1].last_version),
        (2, 2),
        "existing stream multi-b"
    );
    assert_eq!(
        (results[2].first_version, results[2].last_version),
        (0, 1),
        "new stream multi-a"
    );
    let end = store.end_position().await.expect("end_position");
    assert_end_moved(ordering, before.end, end, "a multi-stream append");
    let since = store
        .read_all(ReadAll::forward().from_position(before.end))
        .await
        .expect("read_all from the end_position before the append");
    assert_eq!(
        since,
        all[before.events.len()..],
        "read_all from the end_position before a multi-stream append returns exactly its events"
    );
}

/// When one part's expectation fails, no part is written, and the error names that part's
/// stream and current version. Checked for a failing first, middle and last part.
pub async fn append_multi_all_or_nothing<B: Backend>(b: &B) {
    let store = b.open().await;
    let existing = stream("aon-existing");
    append_ok(
        &*store,
        &existing,
        ExpectedVersion::NoStream,
        events("E", 0, 3),
        "setup",
    )
    .await;
    let (new_a, new_b) = (stream("aon-a"), stream("aon-b"));
    let good_a = || StreamAppend {
        stream: new_a.clone(),
        expected: ExpectedVersion::NoStream,
        events: events("E", 10, 2),
    };
    let good_b = || StreamAppend {
        stream: new_b.clone(),
        expected: ExpectedVersion::Any,
        events: events("E", 20, 1),
    };
    let bad = |expected| StreamAppend {
        stream: existing.clone(),
        expected,
        events: events("E", 30, 1),
    };

    let cases = [
        (
            "failing first part",
            vec![bad(ExpectedVersion::NoStream), good_a(), good_b()],
            ExpectedVersion::NoStream,
        ),
        (
            "failing middle part",
            vec![good_a(), bad(ExpectedVersion::Exact(1)), good_b()],
            ExpectedVersion::Exact(1),
        ),
        (
            "failing last part",
            vec![good_a(), good_b(), bad(ExpectedVersion::Exact(3))],
            ExpectedVersion::Exact(3),
        ),
    ];
    for (what, parts, expected) in cases {
        let before = snapshot(&*store).await;
        let err = append_multi_err(&*store, parts, what).await;
        assert_wrong_version(err, &existing, expected, Some(2), what);
        assert_unchanged(&*store, &before, what).await;
        assert_stream_missing(&*store, &new_a, what).await;
        assert_stream_missing(&*store, &new_b, what).await;
    }

    // A part expecting a stream that does not exist names it with `current: None`.
    let before = snapshot(&*store).await;
    let parts = vec![
        StreamAppend {
            stream: existing.clone(),
            expected: ExpectedVersion::Exact(2),
            events: events("E", 40, 1),
        },
        StreamAppend {
            stream: new_a.clone(),
            expected: ExpectedVersion::StreamExists,
            events: events("E", 41, 1),
        },
    ];
    let err = append_multi_err(
        &*store,
        parts,
        "StreamExists on a new stream in a multi-stream append",
    )
    .await;
    assert_wrong_version(
        err,
        &new_a,
        ExpectedVersion::StreamExists,
        None,
        "StreamExists part",
    );
    assert_unchanged(&*store, &before, "StreamExists part").await;
}

/// The same stream in two parts is `DuplicateStream`; nothing is written.
pub async fn append_multi_duplicate_stream<B: Backend>(b: &B) {
    let store = b.open().await;
    append_ok(
        &*store,
        &stream("setup-1"),
        ExpectedVersion::Any,
        events("E", 0, 1),
        "setup",
    )
    .await;
    let s = stream("dupstream-1");
    let parts = vec![
        StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Any,
            events: events("E", 0, 1),
        },
        StreamAppend {
            stream: stream("dupstream-2"),
            expected: ExpectedVersion::Any,
            events: events("E", 1, 1),
        },
        StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Any,
            events: events("E", 2, 1),
        },
    ];
    let before = snapshot(&*store).await;
    let err = append_multi_err(&*store, parts, "a stream twice in one multi-stream append").await;
    assert_eq!(
        err,
        AppendError::DuplicateStream { stream: s.clone() },
        "a stream twice in one append"
    );
    assert_unchanged(&*store, &before, "a stream twice in one append").await;
}

/// An append without events is `Empty`: a single append of nothing, a multi-stream append of no
/// parts, and a multi-stream append with one empty part (the other parts are not written).
pub async fn empty_appends_refused<B: Backend>(b: &B) {
    let store = b.open().await;
    append_ok(
        &*store,
        &stream("setup-1"),
        ExpectedVersion::Any,
        events("E", 0, 1),
        "setup",
    )
    .await;
    let before = snapshot(&*store).await;
    let s = stream("empty-1");

    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Any,
        vec![],
        "append of no events",
    )
    .await;
    assert_eq!(err, AppendError::Empty, "append of no events");
    assert_stream_missing(&*store, &s, "append of no events").await;

    let err = append_multi_err(&*store, vec![], "append_multi of no parts must be refused").await;
    assert_eq!(err, AppendError::Empty, "append_multi of no parts");

    let parts = vec![
        StreamAppend {
            stream: stream("empty-2"),
            expected: ExpectedVersion::Any,
            events: events("E", 1, 2),
        },
        StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Any,
            events: vec![],
        },
    ];
    let err = append_multi_err(
        &*store,
        parts,
        "a multi-stream append with an empty part must be refused",
    )
    .await;
    assert_eq!(
        err,
        AppendError::Empty,
        "a multi-stream append with an empty part"
    );
    assert_unchanged(&*store, &before, "empty appends").await;
    assert_stream_missing(
        &*store,
        &stream("empty-2"),
        "the non-empty part of a refused append",
    )
    .await;
}
