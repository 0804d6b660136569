//! Cases for limits and bad input: the event size and events-per-append limits are enforced at
//! exactly the edge the backend declares in [`crate::Limits`], and stream names that break the
//! naming rules cannot even be built.

use factlog_store::{
    AppendError, EventStore, ExpectedVersion, InvalidName, LimitKind, NAME_BYTES_MAX, ReadAll,
    StreamAppend, StreamName,
};

use crate::Backend;
use crate::support::{
    append_err, append_multi_err, append_ok, assert_append_stored, assert_stream_missing,
    assert_unchanged, co_partitioned, event, event_of_size, events, read_all_events,
    read_stream_events, snapshot, stream,
};

/// An event of exactly `event_size_bytes_max` is stored; one byte more is
/// `LimitExceeded { EventSize }` with the actual size and the limit, and the whole append
/// (single or multi-stream) is refused.
pub async fn event_size_limit<B: Backend>(b: &B) {
    let max = b.limits().event_size_bytes_max;
    let store = b.open().await;
    let s = stream("size-1");
    let at_limit = event_of_size(max)
        .unwrap_or_else(|| panic!("event_size_bytes_max {max} cannot hold an event's type"));
    let r = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        vec![at_limit.clone()],
        "an event of exactly the limit",
    )
    .await;
    assert_append_stored(
        &read_all_events(&*store).await,
        &s,
        &[at_limit],
        &r,
        "an event of exactly the limit",
    );

    let too_big = event_of_size(max + 1).expect("one byte more than a valid size");
    let refused = AppendError::LimitExceeded {
        limit: LimitKind::EventSize,
        actual: max as u64 + 1,
        max: max as u64,
    };
    let before = snapshot(&*store).await;

    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Any,
        vec![too_big.clone()],
        "an event one byte over",
    )
    .await;
    assert_eq!(err, refused, "an event one byte over the limit");
    assert_unchanged(&*store, &before, "an event one byte over").await;

    let [other] = co_partitioned(&*store, &s, ["size-2"]).await;
    let batch = vec![event("E", 0), too_big.clone(), event("E", 1)];
    let err = append_err(
        &*store,
        &other,
        ExpectedVersion::Any,
        batch,
        "an oversized event among small ones",
    )
    .await;
    assert_eq!(err, refused, "an oversized event among small ones");
    assert_unchanged(&*store, &before, "an oversized event among small ones").await;
    assert_stream_missing(&*store, &other, "an oversized event among small ones").await;

    let parts = vec![
        StreamAppend {
            stream: other.clone(),
            expected: ExpectedVersion::Any,
            events: vec![event("E", 2)],
        },
        StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Any,
            events: vec![event("E", 3), too_big],
        },
    ];
    let err = append_multi_err(
        &*store,
        parts,
        "an oversized event in a multi-stream append",
    )
    .await;
    assert_eq!(err, refused, "an oversized event in a multi-stream append");
    assert_unchanged(
        &*store,
        &before,
        "an oversized event in a multi-stream append",
    )
    .await;
}

/// `append_events_max` events in one call are stored; one more is `LimitExceeded
/// { EventsPerAppend }`, also when the events are spread over the parts of a multi-stream append.
pub async fn events_per_append_limit<B: Backend>(b: &B) {
    let max = b.limits().append_events_max;
    assert!(max >= 1, "append_events_max must allow at least one event");
    let store = b.open().await;
    let s = stream("count-1");
    let r = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 0, max as u64),
        "exactly append_events_max events",
    )
    .await;
    assert_eq!(
        (r.first_version, r.last_version),
        (0, max as u64 - 1),
        "exactly append_events_max events"
    );

    let refused = AppendError::LimitExceeded {
        limit: LimitKind::EventsPerAppend,
        actual: max as u64 + 1,
        max: max as u64,
    };
    let before = snapshot(&*store).await;
    let err = append_err(
        &*store,
        &s,
        ExpectedVersion::Any,
        events("E", 0, max as u64 + 1),
        "one event too many",
    )
    .await;
    assert_eq!(err, refused, "one event more than append_events_max");
    assert_unchanged(&*store, &before, "one event too many").await;

    // The limit counts the events of the whole call, not of each part.
    let first = (max as u64 + 1).div_ceil(2);
    let x = stream("count-x");
    let [y] = co_partitioned(&*store, &x, ["count-y"]).await;
    let parts = vec![
        StreamAppend {
            stream: x.clone(),
            expected: ExpectedVersion::Any,
            events: events("E", 0, first),
        },
        StreamAppend {
            stream: y.clone(),
            expected: ExpectedVersion::Any,
            events: events("E", 0, max as u64 + 1 - first),
        },
    ];
    let err = append_multi_err(
        &*store,
        parts,
        "a multi-stream append one event over the limit",
    )
    .await;
    assert_eq!(
        err, refused,
        "a multi-stream append whose parts together have one event too many"
    );
    assert_unchanged(&*store, &before, "a multi-stream append one event too many").await;
    assert_stream_missing(&*store, &x, "a multi-stream append one event too many").await;

    if max >= 2 {
        let first = max as u64 / 2;
        let parts = vec![
            StreamAppend {
                stream: x.clone(),
                expected: ExpectedVersion::Any,
                events: events("E", 0, first),
            },
            StreamAppend {
                stream: y.clone(),
                expected: ExpectedVersion::Any,
                events: events("E", 0, max as u64 - first),
            },
        ];
        store
            .append_multi(parts)
            .await
            .expect("a multi-stream append of exactly append_events_max events");
    }
}

/// `StreamName::new` refuses empty names, names over 255 bytes, control characters and the
/// reserved `$`; the store accepts and returns unchanged every name at the edge of the rules.
pub async fn stream_name_rules<B: Backend>(b: &B) {
    // Each refused name with a test of the reason given for refusing it.
    type Reason = fn(&InvalidName) -> bool;
    let refused: [(String, Reason); 7] = [
        (String::new(), |e| matches!(e, InvalidName::Empty { .. })),
        ("x".repeat(NAME_BYTES_MAX + 1), |e| {
            matches!(
                e,
                InvalidName::TooLong {
                    length_bytes: 256,
                    ..
                }
            )
        }),
        ("é".repeat(128), |e| {
            matches!(
                e,
                InvalidName::TooLong {
                    length_bytes: 256,
                    ..
                }
            )
        }),
        ("a\nb".into(), |e| {
            matches!(e, InvalidName::ControlCharacter { index: 1, .. })
        }),
        ("\0".into(), |e| {
            matches!(e, InvalidName::ControlCharacter { index: 0, .. })
        }),
        ("tab\there".into(), |e| {
            matches!(e, InvalidName::ControlCharacter { index: 3, .. })
        }),
        ("$all".into(), |e| matches!(e, InvalidName::Reserved { .. })),
    ];
    for (name, is_expected) in refused {
        match StreamName::new(name.clone()) {
            Ok(_) => panic!("StreamName::new({name:?}) must be refused"),
            Err(e) => assert!(
                is_expected(&e),
                "StreamName::new({name:?}) refused for the wrong reason: {e}"
            ),
        }
    }

    let store = b.open().await;
    let edge_names = [
        "x".repeat(NAME_BYTES_MAX),
        format!("{}x", "é".repeat(127)),
        "a".into(),
        "with space-1".into(),
        "emoji-😀".into(),
        "a/b:c.d?e=f#g".into(),
        "a$b".into(),
        "\u{7e}".into(),
    ];
    for (i, name) in edge_names.iter().enumerate() {
        let s = StreamName::new(name.clone())
            .unwrap_or_else(|e| panic!("{name:?} is a valid stream name: {e}"));
        append_ok(
            &*store,
            &s,
            ExpectedVersion::NoStream,
            vec![event("E", i as u64)],
            "edge name",
        )
        .await;
        let stored = read_stream_events(&*store, &s).await;
        assert_eq!(stored.len(), 1, "stream {name:?}");
        assert_eq!(
            stored[0].stream.as_str(),
            name.as_str(),
            "the stream name comes back unchanged"
        );
    }
    let all = store.read_all(ReadAll::forward()).await.expect("read_all");
    let mut names: Vec<&str> = all.iter().map(|e| e.stream.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = edge_names.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "every edge name is in $all");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_of_size_is_exact() {
        for size in [13, 100, 4096] {
            assert_eq!(
                event_of_size(size)
                    .expect("large enough")
                    .payload_size_bytes(),
                size
            );
        }
        assert!(event_of_size(3).is_none(), "too small to hold the type");
    }
}
