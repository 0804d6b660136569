//! Cases for multi-stream appends (`append_multi`): results in order, all or nothing across
//! streams, the refusals of malformed calls (a stream twice, no events), and appends across the
//! partitions of a per-partition store.
//!
//! A store with [`Ordering::PerPartition`] stores a multi-stream append atomically only when all
//! its streams share a partition, so every case that expects a multi-stream append to reach the
//! expectations (or to be stored) picks its streams with `co_partitioned`; the refusals of
//! malformed calls do so too, so that they do not depend on which check a backend makes first.

use factlog_store::{
    AppendError, EventStore, ExpectedVersion, Ordering, ReadAll, StreamAppend, StreamName,
};

use crate::Backend;
use crate::support::{
    append_err, append_multi_err, append_ok, assert_append_stored, assert_end_moved,
    assert_in_append_order, assert_position_before, assert_store_order, assert_stream_missing,
    assert_unchanged, assert_wrong_version, co_partitioned, events, on_another_partition,
    read_all_events, snapshot, stream,
};

/// One result per part, in the order of the parts, each describing that part's events; new and
/// existing streams mix freely. In `$all` as read, the append's events come after what was
/// appended before it and before what is appended next (with a per-partition order, also
/// relative to a stream of another partition).
pub async fn append_multi_in_order<B: Backend>(b: &B) {
    let store = b.open().await;
    let existing = stream("multi-b");
    let [new_c, new_a] = co_partitioned(&*store, &existing, ["multi-c", "multi-a"]).await;
    // With a per-partition order, a stream of another partition, appended to before and after
    // the multi-stream append: $all must keep one client's appends in append order across
    // partitions too.
    let elsewhere = on_another_partition(&*store, &existing, "multi-z").await;
    let mut appends = vec![(
        elsewhere.clone(),
        append_ok(
            &*store,
            &elsewhere,
            ExpectedVersion::NoStream,
            events("E", 90, 1),
            "setup",
        )
        .await,
    )];
    appends.push((
        existing.clone(),
        append_ok(
            &*store,
            &existing,
            ExpectedVersion::NoStream,
            events("E", 0, 2),
            "setup",
        )
        .await,
    ));
    // The parts are deliberately not in name order, so that a backend sorting them internally
    // still has to return the results in the caller's order.
    let parts = vec![
        StreamAppend {
            stream: new_c.clone(),
            expected: ExpectedVersion::NoStream,
            events: events("E", 10, 3),
        },
        StreamAppend {
            stream: existing.clone(),
            expected: ExpectedVersion::Exact(1),
            events: events("E", 20, 1),
        },
        StreamAppend {
            stream: new_a.clone(),
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
        "new stream {new_c}"
    );
    assert_eq!(
        (results[1].first_version, results[1].last_version),
        (2, 2),
        "existing stream {existing}"
    );
    assert_eq!(
        (results[2].first_version, results[2].last_version),
        (0, 1),
        "new stream {new_a}"
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

    appends.extend(parts.iter().map(|p| p.stream.clone()).zip(results));
    appends.push((
        elsewhere.clone(),
        append_ok(
            &*store,
            &elsewhere,
            ExpectedVersion::Exact(0),
            events("E", 91, 1),
            "after the multi-stream append",
        )
        .await,
    ));
    assert_in_append_order(
        &read_all_events(&*store).await,
        &appends,
        "appends before, of and after a multi-stream append",
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
    let [new_a, new_b] = co_partitioned(&*store, &existing, ["aon-a", "aon-b"]).await;
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

/// A multi-stream append over streams of different partitions of a store with
/// [`Ordering::PerPartition`] is refused with `CrossPartition`, naming the first part's stream
/// and the stream on another partition, even when every expectation holds; nothing is written,
/// and each stream can then be appended to alone. A store with [`Ordering::Total`] has no
/// partitions: the same append is stored, atomically, like any other.
pub async fn append_multi_across_partitions<B: Backend>(b: &B) {
    let store = b.open().await;
    append_ok(
        &*store,
        &stream("setup-1"),
        ExpectedVersion::Any,
        events("E", 0, 1),
        "setup",
    )
    .await;
    let first = stream("across-a");
    let other = on_another_partition(&*store, &first, "across-b").await;
    let part = |s: &StreamName, n| StreamAppend {
        stream: s.clone(),
        expected: ExpectedVersion::NoStream,
        events: events("E", n, 2),
    };
    let parts = vec![part(&first, 10), part(&other, 20)];
    let before = snapshot(&*store).await;
    match store.ordering() {
        Ordering::PerPartition => {
            for (parts, (a, b)) in [
                (parts.clone(), (&first, &other)),
                (parts.iter().rev().cloned().collect(), (&other, &first)),
            ] {
                let what = format!("a multi-stream append over {a} and {b}, on two partitions");
                let err = append_multi_err(&*store, parts, &what).await;
                assert_eq!(
                    err,
                    AppendError::CrossPartition {
                        first: a.clone(),
                        other: b.clone(),
                    },
                    "{what}: must be refused with CrossPartition naming the first part's stream and the one on another partition"
                );
                assert_unchanged(&*store, &before, &what).await;
                assert_stream_missing(&*store, &first, &what).await;
                assert_stream_missing(&*store, &other, &what).await;
            }
            let mut alone = Vec::new();
            for p in &parts {
                let result = append_ok(
                    &*store,
                    &p.stream,
                    p.expected,
                    p.events.clone(),
                    "a stream of a refused cross-partition append, alone",
                )
                .await;
                alone.push((p.stream.clone(), result));
            }
            let all = read_all_events(&*store).await;
            assert_eq!(
                all[..before.events.len()],
                before.events[..],
                "appends after a refused cross-partition append"
            );
            assert_in_append_order(
                &all[before.events.len()..],
                &alone,
                "each stream of a refused cross-partition append, appended alone",
            );
            for (p, (_, result)) in parts.iter().zip(&alone) {
                assert_append_stored(
                    &all,
                    &p.stream,
                    &p.events,
                    result,
                    &format!("{} appended alone", p.stream),
                );
            }
        }
        Ordering::Total => {
            let results = store
                .append_multi(parts.clone())
                .await
                .expect("a store with a total order stores a multi-stream append over any streams");
            assert_eq!(results.len(), parts.len(), "one result per part");
            let all = read_all_events(&*store).await;
            assert_eq!(
                all.len(),
                before.events.len() + 4,
                "every event of both parts is stored"
            );
            for (p, result) in parts.iter().zip(&results) {
                assert_append_stored(&all, &p.stream, &p.events, result, "a multi-stream append");
            }
        }
    }
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
    let [other] = co_partitioned(&*store, &s, ["dupstream-2"]).await;
    let parts = vec![
        StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Any,
            events: events("E", 0, 1),
        },
        StreamAppend {
            stream: other,
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
    let s = stream("empty-1");
    let [other] = co_partitioned(&*store, &s, ["empty-2"]).await;
    let before = snapshot(&*store).await;

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
            stream: other.clone(),
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
    assert_stream_missing(&*store, &other, "the non-empty part of a refused append").await;
}
