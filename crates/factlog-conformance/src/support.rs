//! Helpers shared by the cases: building events, reading a whole store back, and assertions that
//! say which promise broke.
//!
//! The cases check the store through its own API only (never through a backend's internals), so
//! that the same check runs on every backend. "Nothing was written" is therefore checked as
//! "`$all` and `end_position` are exactly what they were before".
//!
//! The same goes for partitions: a store with [`Ordering::PerPartition`] refuses a multi-stream
//! append over streams of different partitions ([`AppendError::CrossPartition`]), and the API
//! does not say which stream lives where. Cases that append to several streams at once ask the
//! store ([`co_partitioned`]) by probing it with multi-stream appends that cannot succeed.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use factlog_store::{
    AllFrom, AppendError, AppendResult, ContentType, EventStore, EventType, ExpectedVersion,
    NewEvent, Ordering, Position, ReadAll, ReadError, ReadStream, RecordedEvent, StreamAppend,
    StreamName, Subscription, Version,
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

/// How many names [`co_partitioned`] and [`on_another_partition`] try for one stream before they
/// give up.
const PROBES_MAX: u64 = 200;

/// An expectation no stream meets, so that a probe is always refused and never writes.
const NEVER: ExpectedVersion = ExpectedVersion::Exact(u64::MAX - 1);

/// The names tried for `base`: `base`, `base-p1`, `base-p2`, ... A suffix keeps the category
/// (the part of a name before its first `-`), so a case keeps the categories it asked for.
fn candidates(base: &str) -> impl Iterator<Item = StreamName> + '_ {
    (0..PROBES_MAX).map(move |i| {
        if i == 0 {
            stream(base)
        } else {
            stream(&format!("{base}-p{i}"))
        }
    })
}

/// Whether the store keeps `candidate` on the partition of `anchor`, asked by a multi-stream
/// append over both that expects a version neither stream has: a per-partition store refuses
/// it with `WrongExpectedVersion` when the streams share a partition and with `CrossPartition`
/// when they do not (a backend checks the partitions before the expectations, which need the
/// partition's writer). Either way nothing is written.
async fn shares_partition<S: EventStore + ?Sized>(
    store: &S,
    anchor: &StreamName,
    candidate: &StreamName,
) -> bool {
    let probe = [anchor, candidate]
        .map(|s| StreamAppend {
            stream: s.clone(),
            expected: NEVER,
            events: vec![event("PartitionProbe", 0)],
        })
        .to_vec();
    match store.append_multi(probe).await {
        Err(AppendError::WrongExpectedVersion { .. }) => true,
        Err(AppendError::CrossPartition { .. }) => false,
        other => panic!(
            "probing the partitions of {anchor} and {candidate}: a multi-stream append expecting {NEVER} of both must be refused with WrongExpectedVersion (one partition) or CrossPartition (two), but got {other:?}"
        ),
    }
}

/// One name derived from each of `bases` (see [`candidates`]) whose stream is on the partition
/// of `anchor` (`same`) or on another one (`!same`), all distinct and none `anchor`.
async fn probe_partitions<S: EventStore + ?Sized>(
    store: &S,
    anchor: &StreamName,
    bases: &[&str],
    same: bool,
) -> Vec<StreamName> {
    if store.ordering() == Ordering::Total {
        return bases.iter().map(|b| stream(b)).collect();
    }
    let before = snapshot(store).await;
    let mut taken: HashSet<StreamName> = HashSet::from([anchor.clone()]);
    let mut found = Vec::with_capacity(bases.len());
    for base in bases {
        let mut chosen = None;
        for candidate in candidates(base) {
            if !taken.contains(&candidate)
                && shares_partition(store, anchor, &candidate).await == same
            {
                chosen = Some(candidate);
                break;
            }
        }
        let chosen = chosen.unwrap_or_else(|| {
            if same {
                panic!(
                    "none of {PROBES_MAX} names made from {base:?} ({base}, {base}-p1, ...) lives on the partition of {anchor}: every probe was refused with CrossPartition"
                )
            } else {
                panic!(
                    "none of {PROBES_MAX} names made from {base:?} ({base}, {base}-p1, ...) lives on another partition than {anchor}: no probe was refused with CrossPartition, so this per-partition store has a single partition or accepts multi-stream appends across partitions, which it cannot store atomically"
                )
            }
        });
        taken.insert(chosen.clone());
        found.push(chosen);
    }
    assert_unchanged(
        store,
        &before,
        "probing partitions with multi-stream appends that expect a version no stream has",
    )
    .await;
    found
}

/// Names for streams to append to together with `anchor` in one multi-stream append, one for
/// each of `bases`. A store with [`Ordering::Total`] stores any streams together, and gets
/// `bases` as they are. A store with [`Ordering::PerPartition`] refuses a multi-stream append
/// across partitions, so for each base the first of `base`, `base-p1`, `base-p2`, ... that the
/// store keeps on `anchor`'s partition is chosen (same category as `base`), by probing the store
/// with multi-stream appends that cannot succeed: nothing is written (checked), and the case
/// fails with a clear message after [`PROBES_MAX`] names.
pub(crate) async fn co_partitioned<S: EventStore + ?Sized, const N: usize>(
    store: &S,
    anchor: &StreamName,
    bases: [&str; N],
) -> [StreamName; N] {
    probe_partitions(store, anchor, &bases, true)
        .await
        .try_into()
        .expect("one name per base")
}

/// A name made from `base` (as in [`co_partitioned`]) whose stream a store with
/// [`Ordering::PerPartition`] keeps on another partition than `anchor`, so that a multi-stream
/// append over both is refused with `CrossPartition`; `base` itself on a store with
/// [`Ordering::Total`].
pub(crate) async fn on_another_partition<S: EventStore + ?Sized>(
    store: &S,
    anchor: &StreamName,
    base: &str,
) -> StreamName {
    probe_partitions(store, anchor, &[base], false)
        .await
        .pop()
        .expect("one name for one base")
}

/// The order promises of a whole `$all` (as read forward on one node), for the backend's
/// [`Ordering`]:
/// - [`Ordering::Total`]: positions strictly increase along `$all`, and `recorded_at` never
///   decreases along `$all`.
/// - [`Ordering::PerPartition`]: positions of different streams are not comparable, so only each
///   stream's positions must strictly increase (in `$all` order, which is its version order),
///   each stream's `recorded_at` must never decrease, and no two events may share a position
///   (a position names one event).
///
/// With either ordering, each stream's versions are 0, 1, 2, ... in `$all` order, and every event
/// has its own, non-nil id.
pub(crate) fn assert_store_order(events: &[RecordedEvent], ordering: Ordering, what: &str) {
    let mut next_version: HashMap<&StreamName, Version> = HashMap::new();
    let mut last_of_stream: HashMap<&StreamName, &RecordedEvent> = HashMap::new();
    let mut positions: HashSet<Position> = HashSet::new();
    let mut ids = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        match ordering {
            Ordering::Total => {
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
            }
            Ordering::PerPartition => {
                assert!(
                    positions.insert(e.position),
                    "{what}: the position {:?} of {}@{} is also the position of an earlier event of $all",
                    e.position,
                    e.stream,
                    e.version
                );
                if let Some(prev) = last_of_stream.insert(&e.stream, e) {
                    assert!(
                        prev.position < e.position,
                        "{what}: positions must strictly increase within stream {}, but version {} at {:?} is followed by version {} at {:?}",
                        e.stream,
                        prev.version,
                        prev.position,
                        e.version,
                        e.position
                    );
                    assert!(
                        prev.recorded_at <= e.recorded_at,
                        "{what}: recorded_at must never decrease within stream {}, but version {} ({:?}) is followed by version {} ({:?})",
                        e.stream,
                        prev.version,
                        prev.recorded_at,
                        e.version,
                        e.recorded_at
                    );
                }
            }
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

/// Asserts that the event at position `a` of stream `a_stream` is stored before the event at
/// position `b` of stream `b_stream`, as far as positions can tell for the backend's
/// [`Ordering`]: under [`Ordering::Total`], `a < b`. Under [`Ordering::PerPartition`], `a < b`
/// when both are of the same stream; positions of different streams are not comparable, so then
/// only `a != b` (they name two events). Cases whose events were appended one after another by
/// one client check the order across streams on `$all` as read (see
/// [`assert_in_append_order`]), which is where a per-partition backend keeps it.
pub(crate) fn assert_position_before(
    ordering: Ordering,
    (a_stream, a): (&StreamName, Position),
    (b_stream, b): (&StreamName, Position),
    what: &str,
) {
    match ordering {
        Ordering::PerPartition if a_stream != b_stream => assert_ne!(
            a, b,
            "{what}: an event of {a_stream} and an event of {b_stream} have the same position"
        ),
        _ => assert!(
            a < b,
            "{what}: the event of {a_stream} at {a:?} must be before the event of {b_stream} at {b:?}, by position"
        ),
    }
}

/// Asserts that `$all` as read, `all`, holds exactly the events of `appends` (stream and
/// versions of each append's result) in the order they were appended, each append's events in
/// version order. Holds with either [`Ordering`] when one client made the appends one after
/// another: a per-partition backend's node-local order is then the append order.
pub(crate) fn assert_in_append_order(
    all: &[RecordedEvent],
    appends: &[(StreamName, AppendResult)],
    what: &str,
) {
    let expected: Vec<(&StreamName, Version)> = appends
        .iter()
        .flat_map(|(s, r)| (r.first_version..=r.last_version).map(move |v| (s, v)))
        .collect();
    let got: Vec<(&StreamName, Version)> = all.iter().map(|e| (&e.stream, e.version)).collect();
    if let Some(i) = (0..got.len().max(expected.len())).find(|&i| got.get(i) != expected.get(i)) {
        panic!(
            "{what}: $all must hold the appended events in the order they were appended; first difference at index {i}: $all has {:?}, the appends had {:?}",
            got.get(i),
            expected.get(i)
        );
    }
}

/// The events of `events` (a subsequence of `all`, in `all`'s order) that come at or after
/// (`inclusive`) or strictly after the event of `all` at position `p`, in the store's order:
/// under [`Ordering::Total`] by position value; under [`Ordering::PerPartition`], where positions
/// of different streams are not comparable, by `all`, this node's `$all` read forward ("this
/// node's order at that event"), which must hold an event at `p`.
fn from_event(
    ordering: Ordering,
    all: &[RecordedEvent],
    events: &[RecordedEvent],
    p: Position,
    inclusive: bool,
) -> Vec<RecordedEvent> {
    match ordering {
        Ordering::Total => events
            .iter()
            .filter(|e| {
                if inclusive {
                    e.position >= p
                } else {
                    e.position > p
                }
            })
            .cloned()
            .collect(),
        Ordering::PerPartition => {
            let index: HashMap<Position, usize> = all
                .iter()
                .enumerate()
                .map(|(i, e)| (e.position, i))
                .collect();
            let at = *index
                .get(&p)
                .unwrap_or_else(|| panic!("{p:?} is the position of no event of $all as read"));
            events
                .iter()
                .filter(|e| {
                    let i = *index.get(&e.position).unwrap_or_else(|| {
                        panic!(
                            "{}@{} at {:?} is not in $all as read",
                            e.stream, e.version, e.position
                        )
                    });
                    if inclusive { i >= at } else { i > at }
                })
                .cloned()
                .collect()
        }
    }
}

/// The events of `events` at or after the event of `all` at `p`; see [`from_event`].
pub(crate) fn events_at_or_after(
    ordering: Ordering,
    all: &[RecordedEvent],
    events: &[RecordedEvent],
    p: Position,
) -> Vec<RecordedEvent> {
    from_event(ordering, all, events, p, true)
}

/// The events of `events` strictly after the event of `all` at `p`; see [`from_event`].
pub(crate) fn events_after(
    ordering: Ordering,
    all: &[RecordedEvent],
    events: &[RecordedEvent],
    p: Position,
) -> Vec<RecordedEvent> {
    from_event(ordering, all, events, p, false)
}

/// Asserts that `end_position` moved from `old` to `new` over an append. Under
/// [`Ordering::Total`] end positions grow. Under [`Ordering::PerPartition`] an end position is a
/// node-local mark whose value means nothing, so only `new != old`; the cases check what the
/// marks are for (reading `$all` from the old one returns exactly the new events, from the new
/// one nothing) with either ordering.
pub(crate) fn assert_end_moved(ordering: Ordering, old: Position, new: Position, what: &str) {
    match ordering {
        Ordering::Total => assert!(
            new > old,
            "{what}: end_position must move forward on append: {old:?} then {new:?}"
        ),
        Ordering::PerPartition => assert_ne!(
            new, old,
            "{what}: end_position must move on append, but stayed at {old:?}"
        ),
    }
}

/// Asserts that `end` (an `end_position`) is after every event of `events`. Under
/// [`Ordering::Total`] by value. Under [`Ordering::PerPartition`] the end is a node-local mark,
/// not comparable with event positions, so only: it is no event's position (reading `$all` from
/// an event's position would return that event); the cases also check that reading from `end`
/// returns nothing.
pub(crate) fn assert_end_after(
    ordering: Ordering,
    events: &[RecordedEvent],
    end: Position,
    what: &str,
) {
    for e in events {
        match ordering {
            Ordering::Total => assert!(
                e.position < end,
                "{what}: end_position {end:?} must be after the event {}@{} at {:?}",
                e.stream,
                e.version,
                e.position
            ),
            Ordering::PerPartition => assert_ne!(
                e.position, end,
                "{what}: end_position {end:?} is the position of the event {}@{}, but must be past every event",
                e.stream, e.version
            ),
        }
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
    // Named by where the event got turns up in the expected sequence, not by comparing
    // positions: positions of different streams need not be comparable (per-partition order).
    let kind = match (got.get(i), expected.get(i)) {
        (Some(g), Some(e)) if g.position == e.position => "the same position with other content",
        (Some(g), Some(_)) if expected[i + 1..].contains(g) => "a gap (an event was skipped)",
        (Some(g), Some(_)) if expected[..i].contains(g) => "a duplicate or out-of-order event",
        (Some(_), Some(_)) => "an event that was not expected here at all",
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
    appends: Vec<StreamAppend>,
    what: &str,
) -> AppendError {
    match store.append_multi(appends).await {
        Ok(results) => panic!("{what}: append_multi succeeded ({results:?}) but must be refused"),
        Err(e) => e,
    }
}
