//! Cases for time travel: reads `as_of` a position or a time see exactly the events stored at
//! that point, in both directions, with starts, limits and filters.
//!
//! Expectations come from the events' own positions (with a per-partition order, from their place
//! in `$all` as read, which is what a position means there) and `recorded_at`, never from the
//! wall clock (a backend may run on a fixed test clock). A few short sleeps only make distinct
//! timestamps likely, so that the time case is not degenerate; no assertion depends on them.

use std::collections::BTreeSet;
use std::time::Duration;

use factlog_store::{
    AsOf, EventFilter, EventStore, ExpectedVersion, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, StreamAppend, StreamName, Timestamp,
};

use crate::Backend;
use crate::support::{
    append_ok, assert_store_order, co_partitioned, events, events_at_or_after, read_all_events,
    stream,
};

/// The three streams of the cases: `tt-a`, `tt-b` and `other-1`, except that a store with a
/// per-partition order gets a name of category `tt` on `tt-a`'s partition for `tt-b`, because
/// the two are appended to together.
async fn streams<S: EventStore + ?Sized>(store: &S) -> [StreamName; 3] {
    let a = stream("tt-a");
    let [b] = co_partitioned(store, &a, ["tt-b"]).await;
    [a, b, stream("other-1")]
}

/// Appends in groups to three streams (one group a multi-stream append), with short pauses
/// between groups, and returns the streams and `$all`.
async fn populate<S: EventStore + ?Sized>(store: &S) -> ([StreamName; 3], Vec<RecordedEvent>) {
    let streams = streams(store).await;
    let [a, b, c] = streams.clone();
    let mut n = 0;
    for group in 0..4u64 {
        append_ok(
            store,
            &a,
            ExpectedVersion::Any,
            events("A", n, 2),
            "populate",
        )
        .await;
        append_ok(
            store,
            &c,
            ExpectedVersion::Any,
            events("C", n + 2, 1),
            "populate",
        )
        .await;
        n += 3;
        if group % 2 == 1 {
            let parts = vec![
                StreamAppend {
                    stream: b.clone(),
                    expected: ExpectedVersion::Any,
                    events: events("B", n, 1),
                },
                StreamAppend {
                    stream: a.clone(),
                    expected: ExpectedVersion::Any,
                    events: events("A", n + 1, 1),
                },
            ];
            store
                .append_multi(parts)
                .await
                .expect("populate multi-stream append");
            n += 2;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all = read_all_events(store).await;
    // recorded_at never decreases along $all (with a per-partition order: within each stream);
    // the expectations of time travel by time are computed from it.
    assert_store_order(&all, store.ordering(), "$all of the time travel case");
    (streams, all)
}

fn rev(events: &[RecordedEvent]) -> Vec<RecordedEvent> {
    events.iter().rev().cloned().collect()
}

/// Checks every kind of read against `visible`, the events the store held at `as_of`.
async fn check_as_of<S: EventStore + ?Sized>(
    store: &S,
    streams: &[StreamName],
    as_of: AsOf,
    visible: &[RecordedEvent],
) {
    let what = format!("as of {as_of:?}");
    let read = |options: ReadAll| async move {
        store
            .read_all(options.clone())
            .await
            .unwrap_or_else(|e| panic!("read_all {options:?}: {e}"))
    };
    assert_eq!(
        read(ReadAll::forward().as_of(as_of)).await,
        visible,
        "{what}: read_all forward"
    );
    assert_eq!(
        read(ReadAll::backward().as_of(as_of)).await,
        rev(visible),
        "{what}: read_all backward"
    );
    assert_eq!(
        read(ReadAll::backward().as_of(as_of).limit(2)).await,
        rev(visible).into_iter().take(2).collect::<Vec<_>>(),
        "{what}: read_all backward from End starts at the last visible event"
    );
    assert_eq!(
        read(ReadAll::forward().as_of(as_of).limit(3)).await,
        visible.iter().take(3).cloned().collect::<Vec<_>>(),
        "{what}: read_all forward, limit 3"
    );
    let filter = EventFilter {
        event_types: vec!["A".into()],
        ..Default::default()
    };
    assert_eq!(
        read(ReadAll::forward().as_of(as_of).filter(filter.clone())).await,
        visible
            .iter()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect::<Vec<_>>(),
        "{what}: read_all filtered"
    );
    if let Some(mid) = visible.get(visible.len() / 2) {
        // `visible` is in `$all` order, so it also serves as the order of a per-partition store.
        let from_mid = events_at_or_after(store.ordering(), visible, visible, mid.position);
        assert_eq!(
            read(ReadAll::forward().from_position(mid.position).as_of(as_of)).await,
            from_mid,
            "{what}: read_all from {}",
            mid.position
        );
    }

    for s in streams {
        let of_stream: Vec<RecordedEvent> =
            visible.iter().filter(|e| &e.stream == s).cloned().collect();
        let forward = read_stream_as_of(store, s, ReadStream::forward().as_of(as_of), &what).await;
        assert_eq!(forward, of_stream, "{what}: read_stream {s} forward");
        let backward =
            read_stream_as_of(store, s, ReadStream::backward().as_of(as_of), &what).await;
        assert_eq!(
            backward,
            rev(&of_stream),
            "{what}: read_stream {s} backward"
        );
        let last = read_stream_as_of(
            store,
            s,
            ReadStream::backward().as_of(as_of).limit(1),
            &what,
        )
        .await;
        assert_eq!(
            last,
            of_stream.last().cloned().into_iter().collect::<Vec<_>>(),
            "{what}: read_stream {s} backward from End, limit 1"
        );
        let from_1 = read_stream_as_of(
            store,
            s,
            ReadStream::forward().from_version(1).as_of(as_of),
            &what,
        )
        .await;
        assert_eq!(
            from_1,
            of_stream.iter().skip(1).cloned().collect::<Vec<_>>(),
            "{what}: read_stream {s} from version 1"
        );
    }
}

/// A stream read `as_of` a moment when the stream held nothing visible. The API does not say
/// whether that is `StreamNotFound` (the stream did not exist then) or an empty page (it exists
/// now), so both are accepted here as an empty result; anything else is a failure.
async fn read_stream_as_of<S: EventStore + ?Sized>(
    store: &S,
    s: &StreamName,
    options: ReadStream,
    what: &str,
) -> Vec<RecordedEvent> {
    match store.read_stream(s, options.clone()).await {
        Ok(events) => events,
        Err(ReadError::StreamNotFound(name)) if &name == s => {
            // Only acceptable when nothing of the stream is visible; the caller's comparison
            // with the expected (empty) result checks that.
            vec![]
        }
        Err(e) => panic!("{what}: read_stream {s} with {options:?} failed: {e}"),
    }
}

/// `AsOf::Position(p)` sees exactly the events at or before `p` (with a per-partition order: at or
/// before the event at `p` in this node's `$all`), also after more appends.
pub async fn as_of_position<B: Backend>(b: &B) {
    let store = b.open().await;
    let (streams, all) = populate(&*store).await;
    check_as_of(&*store, &streams, AsOf::Position(Position::START), &[]).await;
    for (i, e) in all.iter().enumerate() {
        check_as_of(&*store, &streams, AsOf::Position(e.position), &all[..=i]).await;
    }
    let end = store.end_position().await.expect("end_position");
    check_as_of(&*store, &streams, AsOf::Position(end), &all).await;

    // History does not change: later appends are invisible to reads as of an earlier position.
    append_ok(
        &*store,
        &streams[0],
        ExpectedVersion::Any,
        events("A", 1000, 2),
        "later",
    )
    .await;
    append_ok(
        &*store,
        &streams[1],
        ExpectedVersion::Any,
        events("B", 1002, 1),
        "later",
    )
    .await;
    let mid = all.len() / 2;
    check_as_of(
        &*store,
        &streams,
        AsOf::Position(all[mid].position),
        &all[..=mid],
    )
    .await;
    check_as_of(
        &*store,
        &streams,
        AsOf::Position(all[all.len() - 1].position),
        &all,
    )
    .await;
}

/// `AsOf::Time(t)` sees exactly the events with `recorded_at <= t`, for every recorded time,
/// between recorded times, before the first and after the last.
pub async fn as_of_time<B: Backend>(b: &B) {
    let store = b.open().await;
    let (streams, all) = populate(&*store).await;
    let times: BTreeSet<Timestamp> = all.iter().map(|e| e.recorded_at).collect();
    let first = *times.first().expect("events exist");
    let last = *times.last().expect("events exist");
    let shifted = |t: Timestamp, micros: i64| Timestamp::from_unix_micros(t.unix_micros() + micros);

    let mut probes: BTreeSet<Timestamp> = times.clone();
    probes.insert(shifted(first, -1));
    probes.insert(Timestamp::UNIX_EPOCH);
    probes.insert(shifted(last, 1));
    probes.insert(shifted(last, 3_600_000_000));
    // Just after each recorded time (often between two recorded times).
    probes.extend(times.iter().map(|t| shifted(*t, 1)));
    for t in probes {
        let visible: Vec<RecordedEvent> =
            all.iter().filter(|e| e.recorded_at <= t).cloned().collect();
        check_as_of(&*store, &streams, AsOf::Time(t), &visible).await;
    }

    // History does not change: events appended later are recorded at or after `last`, and
    // reads as of an earlier time still see only what was there.
    append_ok(
        &*store,
        &streams[0],
        ExpectedVersion::Any,
        events("A", 1000, 2),
        "later",
    )
    .await;
    let now_all = read_all_events(&*store).await;
    assert_store_order(&now_all, store.ordering(), "$all after later appends");
    let before_last = *times.iter().rev().nth(1).unwrap_or(&first);
    let visible: Vec<RecordedEvent> = now_all
        .iter()
        .filter(|e| e.recorded_at <= before_last)
        .cloned()
        .collect();
    check_as_of(&*store, &streams, AsOf::Time(before_last), &visible).await;
}
