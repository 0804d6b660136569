//! Helpers shared by the cases: building events, reading a whole store back, and assertions that
//! say which promise broke.
//!
//! The cases check the store through its own API only (never through a backend's internals), so
//! that the same check runs on every backend. "Nothing was written" is therefore checked as
//! "`$all` and `end_position` are exactly what they were before".

use std::future::Future;
use std::time::Duration;

use factlog_store::{
    AllFrom, AppendError, AppendResult, ContentType, EventStore, EventType, ExpectedVersion,
    NewEvent, Position, ReadAll, ReadError, ReadStream, RecordedEvent, StreamName, Subscription,
    Version,
};
use futures::StreamExt;

/// How long any single wait may take before the case fails. Generous on purpose: a slow CI
/// machine must not turn into a flaky test, while a lost wake-up still fails instead of hanging.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Page size used to read a whole store back; small enough to exercise paging in the bigger
/// cases, large enough to keep them fast.
const PAGE: usize = 500;

pub(crate) fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap_or_else(|e| panic!("test stream name {name:?} is invalid: {e}"))
}

/// A JSON event whose data `{"n": n}` makes every event of a case distinguishable.
pub(crate) fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::json(event_type, &serde_json::json!({ "n": n }))
        .unwrap_or_else(|e| panic!("test event type {event_type:?} is invalid: {e}"))
}

/// `count` events numbered from `first`.
pub(crate) fn events(event_type: &str, first: u64, count: u64) -> Vec<NewEvent> {
    (first..first + count)
        .map(|n| event(event_type, n))
        .collect()
}

/// An event whose payload (as counted by [`NewEvent::payload_size_bytes`]) is exactly `size`
/// bytes, or `None` when `size` is too small to hold the type and the empty metadata.
pub(crate) fn event_of_size(size: usize) -> Option<NewEvent> {
    let event_type = EventType::new("Sized").expect("valid event type");
    let overhead = NewEvent::new(event_type.clone(), ContentType::json(), Vec::<u8>::new())
        .payload_size_bytes();
    let data_len = size.checked_sub(overhead)?;
    let event = NewEvent::new(
        event_type,
        ContentType::new("application/octet-stream").expect("valid content type"),
        vec![b'x'; data_len],
    );
    assert_eq!(
        event.payload_size_bytes(),
        size,
        "the suite built an event of the wrong size"
    );
    Some(event)
}

/// Runs `future`, failing the case when it takes longer than [`DEADLINE`].
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

pub(crate) async fn append_ok<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    what: &str,
) -> AppendResult {
    let count = events.len();
    store
        .append(stream, expected, events)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{what}: appending {count} event(s) to {stream} expecting {expected} failed: {e}"
            )
        })
}

pub(crate) async fn append_err<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    what: &str,
) -> AppendError {
    match store.append(stream, expected, events).await {
        Ok(result) => panic!(
            "{what}: append to {stream} expecting {expected} succeeded ({result:?}) but must fail"
        ),
        Err(e) => e,
    }
}

/// Every event of `$all`, read forward a page at a time. Pages after the first start at the
/// last event already read, because a `from` position is inclusive and positions are opaque (the
/// suite must not compute "the next position").
pub(crate) async fn read_all_events<S: EventStore + ?Sized>(store: &S) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut from = AllFrom::Start;
    loop {
        let page = store
            .read_all(ReadAll {
                from,
                limit: PAGE,
                ..ReadAll::forward()
            })
            .await
            .unwrap_or_else(|e| panic!("read_all from {from:?} failed: {e}"));
        let page_len = page.len();
        let mut page = page.into_iter();
        if let AllFrom::Position(p) = from {
            let first = page.next().unwrap_or_else(|| {
                panic!("read_all from the position {p} of a stored event returned nothing")
            });
            assert_eq!(
                first.position, p,
                "read_all from {p} must start with the event at {p}"
            );
        }
        out.extend(page);
        if page_len < PAGE {
            break;
        }
        from = AllFrom::Position(out.last().expect("a full page is not empty").position);
    }
    out
}

/// Every event of one stream, in version order.
pub(crate) async fn read_stream_events<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = out.last().map_or(0, |e| e.version + 1);
        let page = store
            .read_stream(stream, ReadStream::forward().from_version(from).limit(PAGE))
            .await
            .unwrap_or_else(|e| panic!("read_stream {stream} from version {from} failed: {e}"));
        let page_len = page.len();
        out.extend(page);
        if page_len < PAGE {
            break;
        }
    }
    out
}

/// Whether `stream` is absent: `read_stream` says `StreamNotFound` and `stream_info` says `None`.
pub(crate) async fn assert_stream_missing<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    what: &str,
) {
    match store.read_stream(stream, ReadStream::forward()).await {
        Err(ReadError::StreamNotFound(name)) => {
            assert_eq!(
                &name, stream,
                "{what}: StreamNotFound names the wrong stream"
            )
        }
        other => panic!("{what}: stream {stream} must not exist, but read_stream gave {other:?}"),
    }
    let info = store.stream_info(stream).await.expect("stream_info");
    assert_eq!(
        info, None,
        "{what}: stream_info of the missing stream {stream} must be None"
    );
}

/// What the store holds, to check later that a refused append wrote nothing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub end: Position,
    pub events: Vec<RecordedEvent>,
}

pub(crate) async fn snapshot<S: EventStore + ?Sized>(store: &S) -> Snapshot {
    let end = store.end_position().await.expect("end_position");
    Snapshot {
        end,
        events: read_all_events(store).await,
    }
}

pub(crate) async fn assert_unchanged<S: EventStore + ?Sized>(
    store: &S,
    before: &Snapshot,
    what: &str,
) {
    let after = snapshot(store).await;
    assert_eq!(
        after.events.len(),
        before.events.len(),
        "{what}: nothing may be written, but $all went from {} to {} events",
        before.events.len(),
        after.events.len()
    );
    assert_eq!(
        after.events, before.events,
        "{what}: nothing may be written, but $all changed"
    );
    assert_eq!(
        after.end, before.end,
        "{what}: nothing may be written, but end_position moved"
    );
}

/// The order promises of a whole `$all`: positions strictly increase, `recorded_at` never
/// decreases, and each stream's versions are 0, 1, 2, ... in `$all` order.
pub(crate) fn assert_store_order(events: &[RecordedEvent], what: &str) {
    let mut next_version: std::collections::HashMap<&StreamName, Version> = Default::default();
    let mut ids = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            let prev = &events[i - 1];
            assert!(
                prev.position < e.position,
                "{what}: positions must strictly increase along $all, but {:?} is followed by {:?}",
                prev.position,
                e.position
            );
            assert!(
                prev.recorded_at <= e.recorded_at,
                "{what}: recorded_at must never decrease along $all, but event at {} ({:?}) is followed by event at {} ({:?})",
                prev.position,
                prev.recorded_at,
                e.position,
                e.recorded_at
            );
        }
        let expected = next_version.entry(&e.stream).or_insert(0);
        assert_eq!(
            e.version, *expected,
            "{what}: versions of stream {} must be 0-based and consecutive in $all order",
            e.stream
        );
        *expected += 1;
        assert!(
            ids.insert(e.id),
            "{what}: event id {} is stored twice",
            e.id
        );
        assert!(
            !e.id.as_uuid().is_nil(),
            "{what}: event at {} has the nil id",
            e.position
        );
    }
}

/// Checks that `result` describes exactly `new` as stored in `all` (the whole of `$all`): the
/// events of `stream` with versions `first_version..=last_version` are `new`, in order, with the
/// given ids, at the positions the result names.
pub(crate) fn assert_append_stored(
    all: &[RecordedEvent],
    stream: &StreamName,
    new: &[NewEvent],
    result: &AppendResult,
    what: &str,
) {
    assert!(
        result.first_version <= result.last_version,
        "{what}: first_version > last_version in {result:?}"
    );
    assert_eq!(
        result.last_version - result.first_version + 1,
        new.len() as u64,
        "{what}: {result:?} must span as many versions as events appended ({})",
        new.len()
    );
    let stored: Vec<&RecordedEvent> = all
        .iter()
        .filter(|e| {
            &e.stream == stream && (result.first_version..=result.last_version).contains(&e.version)
        })
        .collect();
    assert_eq!(
        stored.len(),
        new.len(),
        "{what}: events of {result:?} in $all of {stream}"
    );
    assert_eq!(
        stored[0].position, result.first_position,
        "{what}: first_position of {result:?}"
    );
    assert_eq!(
        stored[stored.len() - 1].position,
        result.last_position,
        "{what}: last_position of {result:?}"
    );
    for (i, (s, n)) in stored.iter().zip(new).enumerate() {
        assert_eq!(
            s.version,
            result.first_version + i as u64,
            "{what}: version of event {i}"
        );
        assert!(
            s.has_same_content(n),
            "{what}: event {i} was stored as {s:?} but appended as {n:?}"
        );
        if let Some(id) = n.id {
            assert_eq!(
                s.id, id,
                "{what}: the caller's id of event {i} must be kept"
            );
        }
    }
}

pub(crate) fn assert_wrong_version(
    error: AppendError,
    stream: &StreamName,
    expected: ExpectedVersion,
    current: Option<Version>,
    what: &str,
) {
    assert_eq!(
        error,
        AppendError::WrongExpectedVersion {
            stream: stream.clone(),
            expected,
            current
        },
        "{what}: expected WrongExpectedVersion naming the stream, the expectation and the current version"
    );
}

/// The next event of a subscription; fails on an error, on the end of the subscription, and
/// after [`DEADLINE`].
pub(crate) async fn next_event(sub: &mut Subscription, what: &str) -> RecordedEvent {
    match within(what, sub.next()).await {
        Some(Ok(event)) => event,
        Some(Err(e)) => panic!("{what}: the subscription failed: {e}"),
        None => panic!("{what}: the subscription ended, but subscriptions only end on errors"),
    }
}

/// The next `n` events of a subscription.
pub(crate) async fn next_events(
    sub: &mut Subscription,
    n: usize,
    what: &str,
) -> Vec<RecordedEvent> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_event(sub, what).await);
    }
    out
}

/// Asserts two event sequences are equal, reporting the first difference instead of printing
/// hundreds of events, and naming a gap or a duplicate when that is what it is.
pub(crate) fn assert_same_events(got: &[RecordedEvent], expected: &[RecordedEvent], what: &str) {
    if got == expected {
        return;
    }
    let i = got
        .iter()
        .zip(expected)
        .position(|(g, e)| g != e)
        .unwrap_or(got.len().min(expected.len()));
    let brief = |e: Option<&RecordedEvent>| {
        e.map_or("nothing".to_owned(), |e| {
            format!("{}@{} ({}, id {})", e.stream, e.version, e.position, e.id)
        })
    };
    let kind = match (got.get(i), expected.get(i)) {
        (Some(g), Some(e)) if g.position > e.position => "a gap (an event was skipped)",
        (Some(g), Some(e)) if g.position < e.position => "a duplicate or out-of-order event",
        (Some(_), Some(_)) => "the same position with other content",
        (Some(_), None) => "extra events",
        (None, _) => "missing events",
    };
    panic!(
        "{what}: got {} events, expected {}; first difference at index {i}, {kind}: got {}, expected {}",
        got.len(),
        expected.len(),
        brief(got.get(i)),
        brief(expected.get(i)),
    );
}

pub(crate) async fn append_multi_err<S: EventStore + ?Sized>(
    store: &S,
    appends: Vec<factlog_store::StreamAppend>,
    what: &str,
) -> AppendError {
    match store.append_multi(appends).await {
        Ok(results) => panic!("{what}: append_multi succeeded ({results:?}) but must be refused"),
        Err(e) => e,
    }
}
