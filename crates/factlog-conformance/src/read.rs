//! Cases for reads: stream reads in both directions, single events (by version and by id), stream
//! info, `$all` in both directions with filters, stream listing, categories and the end position.
//!
//! Expectations are computed from the whole of `$all` (read page by page) and from the
//! documented meaning of each option, so a backend that answers one kind of read differently
//! from another fails.

use std::collections::BTreeSet;

use factlog_store::{
    AllFrom, AppendError, Direction, EventFilter, EventId, EventStore, ExpectedVersion,
    ListStreams, NewEvent, ReadAll, ReadError, ReadStream, RecordedEvent, StreamAppend, StreamFrom,
    StreamInfo, StreamName, StreamPage,
};

use crate::Backend;
use crate::support::{
    append_err, append_ok, assert_end_after, assert_end_moved, assert_store_order,
    assert_unchanged, co_partitioned, event, events, events_at_or_after, read_all_events, snapshot,
    stream,
};

/// Fills a store with a main stream of 10 events interleaved with other streams, event types and
/// categories, and returns `$all`.
async fn populate<S: EventStore + ?Sized>(store: &S, main: &StreamName) -> Vec<RecordedEvent> {
    // Names chosen so that prefix and category filters disagree: "order" is the category of
    // "order-1" and "order" but not of "orders-1", which does start with the prefix "order".
    let others = [
        "order-1",
        "orders-1",
        "order",
        "account-1",
        "order-2",
        "ord-1",
    ]
    .map(stream);
    let types = ["A", "B", "C"];
    let mut n = 0;
    for chunk in 0..5u64 {
        append_ok(
            store,
            main,
            ExpectedVersion::Any,
            events(types[chunk as usize % 3], n, 2),
            "populate main",
        )
        .await;
        n += 2;
        for (i, other) in others.iter().enumerate() {
            if (i as u64 + chunk).is_multiple_of(2) {
                let t = types[(i + chunk as usize) % 3];
                append_ok(
                    store,
                    other,
                    ExpectedVersion::Any,
                    vec![event(t, n)],
                    "populate others",
                )
                .await;
                n += 1;
            }
        }
    }
    let all = read_all_events(store).await;
    assert_store_order(&all, store.ordering(), "populated $all");
    all
}

fn of_stream(all: &[RecordedEvent], s: &StreamName) -> Vec<RecordedEvent> {
    all.iter().filter(|e| &e.stream == s).cloned().collect()
}

fn rev(events: &[RecordedEvent]) -> Vec<RecordedEvent> {
    events.iter().rev().cloned().collect()
}

async fn read_stream<S: EventStore + ?Sized>(
    store: &S,
    s: &StreamName,
    options: ReadStream,
) -> Vec<RecordedEvent> {
    store
        .read_stream(s, options.clone())
        .await
        .unwrap_or_else(|e| panic!("read_stream {s} with {options:?} failed: {e}"))
}

async fn read_all<S: EventStore + ?Sized>(store: &S, options: ReadAll) -> Vec<RecordedEvent> {
    store
        .read_all(options.clone())
        .await
        .unwrap_or_else(|e| panic!("read_all with {options:?} failed: {e}"))
}

/// Stream reads forward and backward, from Start, End or a version (inclusive), with limits.
pub async fn read_stream_forward_backward<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("main-1");
    let all = populate(&*store, &s).await;
    let main = of_stream(&all, &s);
    assert_eq!(main.len(), 10, "the main stream holds 10 events");
    for (v, e) in main.iter().enumerate() {
        assert_eq!(
            e.version, v as u64,
            "the main stream's versions in $all order"
        );
    }

    let cases: Vec<(ReadStream, Vec<RecordedEvent>)> = vec![
        (ReadStream::forward(), main.clone()),
        (ReadStream::forward().limit(3), main[0..3].to_vec()),
        (ReadStream::forward().limit(0), vec![]),
        (
            ReadStream::forward().from_version(0).limit(100),
            main.clone(),
        ),
        (
            ReadStream::forward().from_version(4).limit(3),
            main[4..7].to_vec(),
        ),
        (
            ReadStream::forward().from_version(8).limit(5),
            main[8..10].to_vec(),
        ),
        (ReadStream::forward().from_version(9), main[9..].to_vec()),
        // An empty page of an existing stream is Ok(vec![]), not StreamNotFound.
        (ReadStream::forward().from_version(10), vec![]),
        (ReadStream::forward().from_version(1000), vec![]),
        (ReadStream::backward(), rev(&main)),
        (ReadStream::backward().limit(3), rev(&main[7..])),
        (
            ReadStream {
                from: StreamFrom::End,
                direction: Direction::Backward,
                limit: 1,
                as_of: None,
            },
            vec![main[9].clone()],
        ),
        (
            ReadStream::backward().from_version(4).limit(10),
            rev(&main[0..5]),
        ),
        (
            ReadStream::backward().from_version(6).limit(2),
            rev(&main[5..7]),
        ),
        (
            ReadStream::backward().from_version(0),
            vec![main[0].clone()],
        ),
    ];
    for (options, expected) in cases {
        let got = read_stream(&*store, &s, options.clone()).await;
        assert_eq!(
            got.iter().map(|e| e.version).collect::<Vec<_>>(),
            expected.iter().map(|e| e.version).collect::<Vec<_>>(),
            "read_stream with {options:?}: versions"
        );
        assert_eq!(
            got, expected,
            "read_stream with {options:?}: events must equal those in $all"
        );
    }

    // Paging backward with an inclusive start visits every event once.
    let mut paged = Vec::new();
    let mut from = StreamFrom::End;
    loop {
        let page = read_stream(
            &*store,
            &s,
            ReadStream {
                from,
                direction: Direction::Backward,
                limit: 3,
                as_of: None,
            },
        )
        .await;
        let done = page.len() < 3;
        paged.extend(page);
        match paged.last() {
            Some(e) if e.version > 0 && !done => from = StreamFrom::Version(e.version - 1),
            _ => break,
        }
    }
    assert_eq!(paged, rev(&main), "paging backward through the stream");
}

/// A stream that does not exist is `StreamNotFound`, in both directions and from any version.
pub async fn read_stream_missing<B: Backend>(b: &B) {
    let store = b.open().await;
    let missing = stream("missing-1");
    for options in [
        ReadStream::forward(),
        ReadStream::backward(),
        ReadStream::forward().from_version(3),
    ] {
        match store.read_stream(&missing, options.clone()).await {
            Err(ReadError::StreamNotFound(name)) => {
                assert_eq!(name, missing, "StreamNotFound names the stream")
            }
            other => panic!(
                "read_stream of a missing stream on an empty store with {options:?}: expected StreamNotFound, got {other:?}"
            ),
        }
    }
    populate(&*store, &stream("main-1")).await;
    // A stream whose name is a prefix of, or is prefixed by, stored streams is still missing.
    for name in ["main", "main-10", "order-", "account-1x"] {
        let missing = stream(name);
        match store.read_stream(&missing, ReadStream::forward()).await {
            Err(ReadError::StreamNotFound(got)) => {
                assert_eq!(got, missing, "StreamNotFound names the stream")
            }
            other => panic!(
                "read_stream of the missing stream {name}: expected StreamNotFound, got {other:?}"
            ),
        }
    }
}

/// `read_event` returns the event at a version, and `None` past the end or for a missing stream.
pub async fn read_event_some_none<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("main-1");
    let all = populate(&*store, &s).await;
    let main = of_stream(&all, &s);
    for e in &main {
        let got = store.read_event(&s, e.version).await.expect("read_event");
        assert_eq!(
            got.as_ref(),
            Some(e),
            "read_event {s} version {}",
            e.version
        );
    }
    for version in [10, 11, u64::MAX] {
        let got = store
            .read_event(&s, version)
            .await
            .expect("read_event past the end");
        assert_eq!(
            got, None,
            "read_event {s} version {version} is past the end"
        );
    }
    let got = store.read_event(&stream("missing-1"), 0).await;
    assert_eq!(
        got,
        Ok(None),
        "read_event of a missing stream is None ('None when there is none')"
    );
}

/// `stream_info` is `None` for a missing stream and otherwise matches the stream's events.
pub async fn stream_info_matches_events<B: Backend>(b: &B) {
    let store = b.open().await;
    assert_eq!(
        store.stream_info(&stream("main-1")).await,
        Ok(None),
        "stream_info on an empty store"
    );
    let all = populate(&*store, &stream("main-1")).await;
    let names: BTreeSet<StreamName> = all.iter().map(|e| e.stream.clone()).collect();
    for s in &names {
        let events = of_stream(&all, s);
        let expected = StreamInfo {
            stream: s.clone(),
            last_version: events.len() as u64 - 1,
            event_count: events.len() as u64,
            first_recorded_at: events[0].recorded_at,
            last_recorded_at: events[events.len() - 1].recorded_at,
        };
        assert_eq!(
            store.stream_info(s).await,
            Ok(Some(expected)),
            "stream_info of {s}"
        );
    }
    assert_eq!(
        store.stream_info(&stream("missing-1")).await,
        Ok(None),
        "stream_info of a missing stream"
    );
}

/// `$all` forward and backward, from Start, End or a position (inclusive), with limits, and
/// paged in both directions.
pub async fn read_all_forward_backward<B: Backend>(b: &B) {
    let store = b.open().await;
    assert_eq!(
        read_all(&*store, ReadAll::forward()).await,
        vec![],
        "read_all of an empty store"
    );
    assert_eq!(
        read_all(&*store, ReadAll::backward()).await,
        vec![],
        "read_all backward of an empty store"
    );
    let all = populate(&*store, &stream("main-1")).await;
    let n = all.len();
    assert!(n > 12, "populate writes enough events");
    let end = store.end_position().await.expect("end_position");
    let at = |i: usize| AllFrom::Position(all[i].position);

    let cases: Vec<(ReadAll, Vec<RecordedEvent>)> = vec![
        (ReadAll::forward(), all.clone()),
        (ReadAll::forward().limit(5), all[..5].to_vec()),
        (ReadAll::forward().limit(0), vec![]),
        (
            ReadAll {
                from: at(0),
                ..ReadAll::forward()
            },
            all.clone(),
        ),
        (
            ReadAll {
                from: at(7),
                ..ReadAll::forward()
            }
            .limit(4),
            all[7..11].to_vec(),
        ),
        (
            ReadAll {
                from: at(n - 1),
                ..ReadAll::forward()
            },
            vec![all[n - 1].clone()],
        ),
        (ReadAll::forward().from_position(end), vec![]),
        (ReadAll::backward(), rev(&all)),
        (ReadAll::backward().limit(3), rev(&all[n - 3..])),
        (
            ReadAll {
                from: at(7),
                ..ReadAll::backward()
            }
            .limit(3),
            rev(&all[5..8]),
        ),
        (
            ReadAll {
                from: at(7),
                ..ReadAll::backward()
            },
            rev(&all[..8]),
        ),
        (
            ReadAll {
                from: at(0),
                ..ReadAll::backward()
            },
            vec![all[0].clone()],
        ),
    ];
    for (options, expected) in cases {
        let got = read_all(&*store, options.clone()).await;
        assert_eq!(
            got.iter().map(|e| e.position).collect::<Vec<_>>(),
            expected.iter().map(|e| e.position).collect::<Vec<_>>(),
            "read_all with {options:?}: positions"
        );
        assert_eq!(got, expected, "read_all with {options:?}: events");
    }

    // Paging with inclusive starts: each page after the first repeats the previous page's last.
    for direction in [Direction::Forward, Direction::Backward] {
        let mut paged: Vec<RecordedEvent> = Vec::new();
        let mut from = if direction == Direction::Forward {
            AllFrom::Start
        } else {
            AllFrom::End
        };
        for _ in 0..=n {
            let page = read_all(
                &*store,
                ReadAll {
                    from,
                    direction,
                    limit: 4,
                    ..ReadAll::forward()
                },
            )
            .await;
            let skip = usize::from(matches!(from, AllFrom::Position(_)));
            let full = page.len() == 4;
            paged.extend(page.into_iter().skip(skip));
            if !full {
                break;
            }
            from = AllFrom::Position(paged.last().expect("a full page").position);
        }
        let expected = if direction == Direction::Forward {
            all.clone()
        } else {
            rev(&all)
        };
        assert_eq!(paged, expected, "paging $all {direction:?} 4 at a time");
    }
}

/// `$all` filtered by event types, stream prefix, category and all of them together; the limit
/// counts matching events; filters combine with a start position and with either direction.
pub async fn read_all_filters<B: Backend>(b: &B) {
    let store = b.open().await;
    let all = populate(&*store, &stream("main-1")).await;
    let filters = [
        EventFilter {
            event_types: vec!["A".into()],
            ..Default::default()
        },
        EventFilter {
            event_types: vec!["A".into(), "C".into()],
            ..Default::default()
        },
        EventFilter {
            event_types: vec!["Nope".into()],
            ..Default::default()
        },
        EventFilter {
            stream_prefix: Some("order".into()),
            ..Default::default()
        },
        EventFilter {
            stream_prefix: Some("order-".into()),
            ..Default::default()
        },
        EventFilter {
            category: Some("order".into()),
            ..Default::default()
        },
        EventFilter {
            category: Some("ord".into()),
            ..Default::default()
        },
        EventFilter {
            category: Some("order".into()),
            event_types: vec!["B".into()],
            ..Default::default()
        },
        EventFilter {
            category: Some("order".into()),
            stream_prefix: Some("order-".into()),
            event_types: vec!["A".into(), "B".into()],
        },
    ];
    let mid = all[all.len() / 2].position;
    for filter in filters {
        let matching: Vec<RecordedEvent> =
            all.iter().filter(|e| filter.matches(e)).cloned().collect();
        let what = format!("read_all filtered by {filter:?}");
        let got = read_all(&*store, ReadAll::forward().filter(filter.clone())).await;
        assert_eq!(got, matching, "{what}");
        let got = read_all(&*store, ReadAll::backward().filter(filter.clone())).await;
        assert_eq!(got, rev(&matching), "{what}, backward");
        let got = read_all(&*store, ReadAll::forward().filter(filter.clone()).limit(2)).await;
        assert_eq!(
            got,
            matching.iter().take(2).cloned().collect::<Vec<_>>(),
            "{what}, limit 2 counts matching events"
        );
        let got = read_all(&*store, ReadAll::backward().filter(filter.clone()).limit(2)).await;
        assert_eq!(
            got,
            rev(&matching).into_iter().take(2).collect::<Vec<_>>(),
            "{what}, backward, limit 2"
        );
        let got = read_all(
            &*store,
            ReadAll::forward().from_position(mid).filter(filter.clone()),
        )
        .await;
        // At or after `mid` in the store's order (by position value, or with a per-partition
        // order by `$all` as read).
        let after = events_at_or_after(store.ordering(), &all, &matching, mid);
        assert_eq!(
            got, after,
            "{what}, from the position {mid} of an event that may not match"
        );
    }
    // The sanity of the data set: the filters above must not all be trivially empty or full.
    let order_category = all
        .iter()
        .filter(|e| e.stream.category() == "order")
        .count();
    let order_prefix = all
        .iter()
        .filter(|e| e.stream.as_str().starts_with("order"))
        .count();
    assert!(
        0 < order_category && order_category < order_prefix,
        "populate must separate prefix from category"
    );
}

/// `list_streams` by prefix, a page at a time with `after`/`next_after`, until exhausted.
pub async fn list_streams_paged<B: Backend>(b: &B) {
    let store = b.open().await;
    let page = store
        .list_streams(ListStreams::default())
        .await
        .expect("list_streams");
    assert_eq!(
        page,
        StreamPage {
            streams: vec![],
            next_after: None
        },
        "list_streams of an empty store"
    );

    let names = [
        "order-3", "acc-10", "acc", "b-2", "acc-1", "accx-1", "order-1", "ü-1", "acc-2", "B-1",
        "order-2", "b-1", "acc-3", "order-10", "c", "u-1", "order-4",
    ];
    for (i, name) in names.iter().enumerate() {
        append_ok(
            &*store,
            &stream(name),
            ExpectedVersion::Any,
            events("E", i as u64, 1 + i as u64 % 2),
            "setup",
        )
        .await;
    }
    let sorted: BTreeSet<&str> = names.iter().copied().collect();
    for prefix in ["", "acc", "acc-", "order-", "b", "ü", "zzz", "order-1"] {
        let expected: Vec<&str> = sorted
            .iter()
            .copied()
            .filter(|n| n.starts_with(prefix))
            .collect();
        for limit in [1, 3, 4, 100] {
            let what = format!("list_streams prefix {prefix:?} limit {limit}");
            let mut listed: Vec<String> = Vec::new();
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                pages += 1;
                // A last empty page is tolerated; more than that is a paging bug.
                assert!(
                    pages <= expected.len() / limit + 2,
                    "{what}: too many pages, next_after never ends"
                );
                let options = ListStreams {
                    prefix: prefix.to_owned(),
                    after: after.clone(),
                    limit,
                };
                let page = store
                    .list_streams(options)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    page.streams.len() <= limit,
                    "{what}: a page of {} names",
                    page.streams.len()
                );
                listed.extend(page.streams.iter().map(|s| s.as_str().to_owned()));
                match page.next_after {
                    None => break,
                    Some(next) => {
                        assert_eq!(
                            Some(&next),
                            listed.last(),
                            "{what}: next_after is the last name of the page"
                        );
                        after = Some(next);
                    }
                }
            }
            assert_eq!(
                listed, expected,
                "{what}: every stream with the prefix, in byte order, once"
            );
        }
    }
    // `after` on its own skips the names up to and including it, even a name that is not stored.
    for (after, prefix) in [
        ("b-1", ""),
        ("acc-1", "acc"),
        ("acc-15", "acc-"),
        ("order-", "order-"),
    ] {
        let options = ListStreams {
            prefix: prefix.to_owned(),
            after: Some(after.to_owned()),
            limit: 100,
        };
        let page = store.list_streams(options).await.expect("list_streams");
        let expected: Vec<&str> = sorted
            .iter()
            .copied()
            .filter(|n| n.starts_with(prefix) && *n > after)
            .collect();
        let got: Vec<&str> = page.streams.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            got, expected,
            "list_streams prefix {prefix:?} after {after:?}"
        );
        assert_eq!(
            page.next_after, None,
            "list_streams prefix {prefix:?} after {after:?} holds everything"
        );
    }
}

/// `categories` lists each category once, in byte order.
pub async fn categories_sorted_distinct<B: Backend>(b: &B) {
    let store = b.open().await;
    assert_eq!(
        store.categories().await,
        Ok(vec![]),
        "categories of an empty store"
    );
    let names = [
        "order-1",
        "order-2",
        "account-1",
        "single",
        "order",
        "a-b-c",
        "B-1",
        "order-1-2",
        "ü-1",
        "-x",
    ];
    for (i, name) in names.iter().enumerate() {
        append_ok(
            &*store,
            &stream(name),
            ExpectedVersion::Any,
            events("E", i as u64, 1),
            "setup",
        )
        .await;
    }
    let expected: Vec<String> = names
        .iter()
        .map(|n| stream(n).category().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        expected,
        vec!["", "B", "a", "account", "order", "single", "ü"],
        "the suite's own expectation (a name starting with '-' has the empty category)"
    );
    assert_eq!(
        store.categories().await,
        Ok(expected),
        "categories: distinct, in byte order"
    );
}

/// `end_position` is past every event, does not move when nothing is written, and reading `$all`
/// from it returns nothing until more is appended, and then exactly what was appended.
pub async fn end_position_moves_with_appends<B: Backend>(b: &B) {
    let store = b.open().await;
    let end0 = store
        .end_position()
        .await
        .expect("end_position of an empty store");
    assert_eq!(
        read_all(&*store, ReadAll::forward().from_position(end0)).await,
        vec![],
        "read_all from end_position of an empty store"
    );

    let s = stream("end-1");
    let r1 = append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 0, 2),
        "first",
    )
    .await;
    let ordering = store.ordering();
    let end1 = store.end_position().await.expect("end_position");
    assert_end_moved(ordering, end0, end1, "the first append");
    let all1 = read_all_events(&*store).await;
    assert_eq!(
        all1.last().map(|e| e.position),
        Some(r1.last_position),
        "the first append's last event ends $all"
    );
    assert_end_after(ordering, &all1, end1, "after the first append");
    let new = read_all(&*store, ReadAll::forward().from_position(end0)).await;
    assert_eq!(
        new.len(),
        2,
        "read_all from the old end_position returns what was appended since"
    );
    assert_eq!(
        read_all(&*store, ReadAll::forward().from_position(end1)).await,
        vec![],
        "read_all from end_position"
    );

    let before = snapshot(&*store).await;
    append_err(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 2, 1),
        "refused",
    )
    .await;
    assert_unchanged(&*store, &before, "a refused append").await;

    let [other] = co_partitioned(&*store, &s, ["end-2"]).await;
    let parts = vec![
        StreamAppend {
            stream: other,
            expected: ExpectedVersion::Any,
            events: events("E", 3, 2),
        },
        StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::Exact(1),
            events: events("E", 5, 1),
        },
    ];
    store
        .append_multi(parts)
        .await
        .expect("multi-stream append");
    let end2 = store.end_position().await.expect("end_position");
    assert_end_moved(ordering, end1, end2, "a multi-stream append");
    let new = read_all(&*store, ReadAll::forward().from_position(end1)).await;
    let all = read_all_events(&*store).await;
    assert_eq!(
        new,
        all[2..].to_vec(),
        "read_all from the old end_position returns exactly the new events"
    );
    assert_end_after(ordering, &all, end2, "after a multi-stream append");
    assert_eq!(
        read_all(&*store, ReadAll::forward().from_position(end2)).await,
        vec![],
        "read_all from end_position"
    );
}

/// `n` events carrying ids of the caller's, numbered from `first`.
fn events_with_ids(first: u64, n: u64) -> Vec<NewEvent> {
    events("E", first, n)
        .into_iter()
        .map(|e| e.with_id(EventId::new_v7()))
        .collect()
}

/// `read_event_by_id` of `expected.id` must be `expected` itself, not just an event like it.
async fn assert_by_id<S: EventStore + ?Sized>(store: &S, expected: &RecordedEvent, what: &str) {
    let got = store
        .read_event_by_id(expected.id)
        .await
        .unwrap_or_else(|e| panic!("{what}: read_event_by_id {} failed: {e}", expected.id));
    assert_eq!(
        got.as_ref(),
        Some(expected),
        "{what}: read_event_by_id {} must return the event stored with it ({}@{})",
        expected.id,
        expected.stream,
        expected.version
    );
}

/// `read_event_by_id` finds every stored event, of any stream, whether the store or the caller
/// gave its id, and returns exactly what `read_stream` returns at that event's version. In a
/// multi-stream append each id leads to its own part's stream, version and position.
pub async fn read_event_by_id_finds_each_event<B: Backend>(b: &B) {
    let store = b.open().await;
    let main = stream("main-1");
    // Store-assigned ids, in many streams.
    let populated = populate(&*store, &main).await;

    // Caller ids in a multi-stream append: a stream that exists (so versions do not start at 0)
    // and two new ones.
    let [x, y] = co_partitioned(&*store, &main, ["byid-x", "byid-y"]).await;
    let parts = vec![
        StreamAppend {
            stream: x,
            expected: ExpectedVersion::NoStream,
            events: events_with_ids(100, 2),
        },
        StreamAppend {
            stream: main.clone(),
            expected: ExpectedVersion::Exact(9),
            events: events_with_ids(110, 3),
        },
        StreamAppend {
            stream: y,
            expected: ExpectedVersion::NoStream,
            events: events_with_ids(120, 1),
        },
    ];
    let results = store
        .append_multi(parts.clone())
        .await
        .expect("a valid multi-stream append");
    assert_eq!(results.len(), parts.len(), "one result per part");
    for (part, result) in parts.iter().zip(&results) {
        let last = part.events.len() - 1;
        for (k, new) in part.events.iter().enumerate() {
            let id = new.id.expect("the caller gave an id");
            let what = format!("event {k} of the part for {} (id {id})", part.stream);
            let got = store
                .read_event_by_id(id)
                .await
                .unwrap_or_else(|e| panic!("{what}: read_event_by_id failed: {e}"))
                .unwrap_or_else(|| panic!("{what}: read_event_by_id must find a stored id"));
            assert_eq!(got.id, id, "{what}: the event found has another id");
            assert_eq!(got.stream, part.stream, "{what}: stream");
            assert_eq!(
                got.version,
                result.first_version + k as u64,
                "{what}: version, given {result:?}"
            );
            if k == 0 {
                assert_eq!(got.position, result.first_position, "{what}: position");
            }
            if k == last {
                assert_eq!(got.position, result.last_position, "{what}: position");
            }
            assert!(
                got.has_same_content(new),
                "{what}: stored as {got:?} but appended as {new:?}"
            );
        }
    }

    // Every event of the store, found by its id, is what a stream read returns at its version.
    let all = read_all_events(&*store).await;
    assert_eq!(
        all.len(),
        populated.len() + 6,
        "the populated events and the 6 appended"
    );
    for e in &all {
        let what = format!("{}@{}", e.stream, e.version);
        assert_by_id(&*store, e, &what).await;
        let by_stream = read_stream(
            &*store,
            &e.stream,
            ReadStream::forward().from_version(e.version).limit(1),
        )
        .await;
        assert_eq!(
            by_stream.first(),
            Some(e),
            "{what}: read_stream at the version must return the event $all returns"
        );
    }

    // An idempotent retry writes nothing, so the ids still lead to the original events.
    let retry = store
        .append_multi(parts)
        .await
        .expect("a retry of the multi-stream append");
    assert_eq!(retry, results, "a retry returns the original results");
    for e in &all {
        assert_by_id(&*store, e, "after an idempotent retry").await;
    }
}

/// `read_event_by_id` of an id no event has is `Ok(None)`: on an empty store, on a full one, and
/// for the ids of appends that were refused (all or nothing: a refused append stores no id).
pub async fn read_event_by_id_unknown_is_none<B: Backend>(b: &B) {
    let store = b.open().await;
    let unknown = [
        EventId::new_v7(),
        EventId::from_bytes([0; 16]),
        EventId::from_bytes([0xff; 16]),
    ];
    for id in unknown {
        assert_eq!(
            store.read_event_by_id(id).await,
            Ok(None),
            "read_event_by_id {id} on an empty store"
        );
    }
    let main = stream("main-1");
    populate(&*store, &main).await;
    for id in unknown.into_iter().chain([EventId::new_v7()]) {
        assert_eq!(
            store.read_event_by_id(id).await,
            Ok(None),
            "read_event_by_id {id}, an id no stored event has"
        );
    }

    // Refused appends: a wrong expected version, and a multi-stream append whose last part
    // fails after a first part that would have been fine.
    let refused = events_with_ids(200, 2);
    append_err(
        &*store,
        &main,
        ExpectedVersion::NoStream,
        refused.clone(),
        "refused append",
    )
    .await;
    let [new] = co_partitioned(&*store, &main, ["byid-new"]).await;
    let refused_parts = vec![
        StreamAppend {
            stream: new,
            expected: ExpectedVersion::NoStream,
            events: events_with_ids(210, 2),
        },
        StreamAppend {
            stream: main.clone(),
            expected: ExpectedVersion::Exact(3),
            events: events_with_ids(220, 1),
        },
    ];
    let err = store
        .append_multi(refused_parts.clone())
        .await
        .expect_err("a multi-stream append with a wrong expected version must be refused");
    assert!(
        matches!(err, AppendError::WrongExpectedVersion { .. }),
        "a multi-stream append whose last part expects the wrong version must be refused with WrongExpectedVersion, got {err:?}"
    );
    let refused_ids = refused
        .iter()
        .chain(refused_parts.iter().flat_map(|p| &p.events))
        .map(|e| e.id.expect("the caller gave an id"));
    for id in refused_ids {
        assert_eq!(
            store.read_event_by_id(id).await,
            Ok(None),
            "read_event_by_id {id}: the id of a refused append was not stored"
        );
    }
}

/// Ids are found after the store is closed and opened again, both those stored before and those
/// appended since.
pub async fn read_event_by_id_after_reopen<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("byid-reopen-1");
    append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events_with_ids(0, 3),
        "before reopen",
    )
    .await;
    append_ok(
        &*store,
        &stream("other-1"),
        ExpectedVersion::Any,
        events("E", 10, 2),
        "store-assigned ids",
    )
    .await;
    let before = read_all_events(&*store).await;

    let store = b.reopen(store).await;
    append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(2),
        events_with_ids(20, 2),
        "after reopen",
    )
    .await;
    let all = read_all_events(&*store).await;
    assert_eq!(
        all.len(),
        before.len() + 2,
        "the events of both sides of the reopen"
    );
    assert_eq!(
        all[..before.len()],
        before[..],
        "reopening keeps the stored events"
    );
    for e in &all {
        assert_by_id(
            &*store,
            e,
            &format!("{}@{} after reopen", e.stream, e.version),
        )
        .await;
    }
    assert_eq!(
        store.read_event_by_id(EventId::new_v7()).await,
        Ok(None),
        "an unknown id after reopen"
    );
}
