//! The reference model of the store API: an in-memory [`EventStore`] written to be obviously
//! right rather than fast.
//!
//! It serves two purposes. It runs the conformance suite itself (`tests/model.rs`), which checks
//! that the suite's expectations are consistent and satisfiable. And model-based tests of real
//! backends apply the same operations to a backend and to a [`ModelStore`] and compare the
//! answers, so every choice the API docs leave open is decided here once, in one place, and
//! documented on the method that makes it.
//!
//! Representation: `$all` is a `Vec` and the position of the event at index `i` is `i + 1`, so
//! [`Position::START`] (0) is before the first event and `end_position` is `len + 1`, the
//! position the next event will get. All state sits behind one mutex, which makes every append
//! trivially atomic and serialises concurrent writers; a `watch` channel wakes subscribers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use factlog_store::{
    AllFrom, AppendError, AppendResult, AsOf, Direction, EventFilter, EventId, EventStore,
    LimitKind, ListStreams, Ordering, Position, ReadAll, ReadError, ReadStream, RecordedEvent,
    StreamAppend, StreamFrom, StreamInfo, StreamName, StreamPage, SubscribeError, SubscribeFrom,
    Subscription, Timestamp, Version,
};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{Backend, Limits};

/// Events a subscription copies out per lock, so that a subscriber catching up on a large store
/// does not hold the lock (and stall writers) for the whole catch-up.
const SUBSCRIPTION_BATCH: usize = 256;

/// The in-memory reference store. Cloning the `Arc` it is handed out in shares it; reopening
/// (through [`ModelBackend`]) keeps the data.
pub struct ModelStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped after every append; subscribers wait on it when they have caught up. The value
    /// carries nothing: the state is the truth, the channel only says "look again".
    appended: watch::Sender<()>,
    limits: Limits,
}

struct State {
    /// `$all` in order; the event at index `i` has position `i + 1`.
    events: Vec<RecordedEvent>,
    /// Each stream's events as indices into `events`, by version. A `BTreeMap` so that stream
    /// listing is in byte order for free (`StreamName` orders as its `String`).
    streams: BTreeMap<StreamName, Vec<usize>>,
    /// Every stored event id, as an index into `events`: for idempotency and lookups by id.
    ids: HashMap<EventId, usize>,
    /// The last `recorded_at` handed out: the clock may step back, recorded times may not.
    last_recorded_at: Timestamp,
}

impl fmt::Debug for ModelStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("ModelStore")
            .field("events", &state.events.len())
            .field("streams", &state.streams.len())
            .field("limits", &self.shared.limits)
            .finish()
    }
}

fn position_of(index: usize) -> Position {
    Position::from_raw(index as u64 + 1)
}

/// The index of the first event at or after `position`.
fn index_from(position: Position) -> usize {
    usize::try_from(position.raw().saturating_sub(1)).unwrap_or(usize::MAX)
}

/// How many events are at or before `position`.
fn count_through(position: Position, len: usize) -> usize {
    usize::try_from(position.raw()).map_or(len, |n| n.min(len))
}

impl ModelStore {
    /// The limits of [`ModelBackend::new`]: small, so the limit cases stay fast.
    pub const DEFAULT_LIMITS: Limits = Limits {
        event_size_bytes_max: 16 * 1024,
        append_events_max: 128,
    };

    pub fn new(limits: Limits) -> Self {
        let state = State {
            events: Vec::new(),
            streams: BTreeMap::new(),
            ids: HashMap::new(),
            last_recorded_at: Timestamp::UNIX_EPOCH,
        };
        let (appended, _) = watch::channel(());
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                appended,
                limits,
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// A copy of `$all`, for model-based tests that compare whole stores.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.shared.state.lock().events.clone()
    }

    /// The checks that need no state, in a fixed order so that a call breaking several rules
    /// always gets the same error: no events, a stream twice, limits, an id twice. Public so that
    /// a wrapper can make its own refusals after these, as a backend does (the per-partition
    /// wrapper of the tests refuses appends across partitions only when the call is well formed).
    pub fn check_call(limits: Limits, appends: &[StreamAppend]) -> Result<(), AppendError> {
        if appends.is_empty() || appends.iter().any(|a| a.events.is_empty()) {
            return Err(AppendError::Empty);
        }
        let mut streams = HashSet::new();
        for a in appends {
            if !streams.insert(&a.stream) {
                return Err(AppendError::DuplicateStream {
                    stream: a.stream.clone(),
                });
            }
        }
        for e in appends.iter().flat_map(|a| &a.events) {
            let size = e.payload_size_bytes();
            if size > limits.event_size_bytes_max {
                return Err(AppendError::LimitExceeded {
                    limit: LimitKind::EventSize,
                    actual: size as u64,
                    max: limits.event_size_bytes_max as u64,
                });
            }
        }
        let count: usize = appends.iter().map(|a| a.events.len()).sum();
        if count > limits.append_events_max {
            return Err(AppendError::LimitExceeded {
                limit: LimitKind::EventsPerAppend,
                actual: count as u64,
                max: limits.append_events_max as u64,
            });
        }
        let mut ids = HashSet::new();
        for id in appends.iter().flat_map(|a| &a.events).filter_map(|e| e.id) {
            if !ids.insert(id) {
                return Err(AppendError::DuplicateEventId { event_id: id });
            }
        }
        Ok(())
    }
}

impl State {
    fn visible_len(&self, as_of: Option<AsOf>) -> usize {
        match as_of {
            None => self.events.len(),
            Some(AsOf::Position(p)) => count_through(p, self.events.len()),
            // A prefix, because recorded_at never decreases along $all.
            Some(AsOf::Time(t)) => self.events.partition_point(|e| e.recorded_at <= t),
        }
    }

    fn end_position(&self) -> Position {
        position_of(self.events.len())
    }

    /// Positions a reader may hand back: `START`, an event's, or `end_position`.
    fn check_position(&self, position: Position) -> Result<(), ReadError> {
        if position > self.end_position() {
            return Err(ReadError::InvalidPosition(position));
        }
        Ok(())
    }

    fn last_version(&self, stream: &StreamName) -> Option<Version> {
        self.streams
            .get(stream)
            .map(|indices| indices.len() as u64 - 1)
    }

    /// Decides whether `appends` is a retry of events already stored. `Ok(None)`: no id is
    /// stored, append normally. `Ok(Some(results))`: every event of every part is already stored
    /// in that part's stream, with the same content, at consecutive versions in the same order;
    /// the results describe where. Anything in between is a conflict.
    ///
    /// Choice: a retry of a consecutive run of an earlier append's events (not all of them) is
    /// also accepted, and its result describes just that run; the API docs do not say.
    fn find_retry(
        &self,
        appends: &[StreamAppend],
    ) -> Result<Option<Vec<AppendResult>>, AppendError> {
        let stored = |id: Option<EventId>| id.and_then(|id| self.ids.get(&id).map(|&i| (id, i)));
        let all = appends.iter().flat_map(|a| &a.events);
        let Some((first_id, _)) = all.clone().find_map(|e| stored(e.id)) else {
            return Ok(None);
        };
        let conflict = |event_id: EventId, detail: String| AppendError::IdempotencyConflict {
            event_id,
            detail,
        };
        let mut results = Vec::with_capacity(appends.len());
        for part in appends {
            let mut found: Vec<&RecordedEvent> = Vec::with_capacity(part.events.len());
            for new in &part.events {
                let Some((id, index)) = stored(new.id) else {
                    return Err(conflict(
                        first_id,
                        "and the same append also carries new events, so it is not a retry"
                            .to_owned(),
                    ));
                };
                let old = &self.events[index];
                if old.stream != part.stream {
                    return Err(conflict(
                        id,
                        format!(
                            "in stream {} (this append is to {})",
                            old.stream, part.stream
                        ),
                    ));
                }
                if !old.has_same_content(new) {
                    return Err(conflict(
                        id,
                        format!(
                            "in {} at version {} with other content",
                            old.stream, old.version
                        ),
                    ));
                }
                if let Some(prev) = found.last()
                    && old.version != prev.version + 1
                {
                    return Err(conflict(
                        id,
                        format!(
                            "in {} at version {}, not right after the event before it in this append",
                            old.stream, old.version
                        ),
                    ));
                }
                found.push(old);
            }
            let (first, last) = (found[0], found[found.len() - 1]);
            results.push(AppendResult {
                first_version: first.version,
                last_version: last.version,
                first_position: first.position,
                last_position: last.position,
            });
        }
        Ok(Some(results))
    }
}

#[async_trait]
impl EventStore for ModelStore {
    fn ordering(&self) -> Ordering {
        Ordering::Total
    }

    /// Checks, in order: [`AppendError::Empty`], `DuplicateStream`, `LimitExceeded`
    /// (`EventSize`, then `EventsPerAppend` over the whole call), `DuplicateEventId` (across
    /// parts too), then idempotency (a retry wins over the expected version, since a retried
    /// append's expectation no longer holds by design), then the expectations of the parts in
    /// order (the first failing part is reported). All events of one call share one
    /// `recorded_at`.
    async fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        Self::check_call(self.shared.limits, &appends)?;
        let results = {
            let mut state = self.shared.state.lock();
            if let Some(results) = state.find_retry(&appends)? {
                return Ok(results);
            }
            for part in &appends {
                let current = state.last_version(&part.stream);
                if !part.expected.is_met_by(current) {
                    return Err(AppendError::WrongExpectedVersion {
                        stream: part.stream.clone(),
                        expected: part.expected,
                        current,
                    });
                }
            }
            let recorded_at = Timestamp::now().max(state.last_recorded_at);
            state.last_recorded_at = recorded_at;
            let mut results = Vec::with_capacity(appends.len());
            for part in appends {
                let first_version = state.last_version(&part.stream).map_or(0, |v| v + 1);
                let first_index = state.events.len();
                for (k, new) in part.events.into_iter().enumerate() {
                    let index = state.events.len();
                    let id = new.id.unwrap_or_else(EventId::new_v7);
                    state.events.push(RecordedEvent {
                        id,
                        stream: part.stream.clone(),
                        version: first_version + k as u64,
                        position: position_of(index),
                        event_type: new.event_type,
                        schema_version: new.schema_version,
                        content_type: new.content_type,
                        data: new.data,
                        metadata: new.metadata,
                        recorded_at,
                    });
                    state
                        .streams
                        .entry(part.stream.clone())
                        .or_default()
                        .push(index);
                    state.ids.insert(id, index);
                }
                let last_index = state.events.len() - 1;
                results.push(AppendResult {
                    first_version,
                    last_version: state.events[last_index].version,
                    first_position: position_of(first_index),
                    last_position: position_of(last_index),
                });
            }
            results
        };
        // After the lock is released: a woken subscriber finds the events already in place.
        self.shared.appended.send_replace(());
        Ok(results)
    }

    /// `StreamFrom::Start` is version 0 and `End` the last (visible) version, in either direction,
    /// inclusive. Choice: read `as_of` a moment before the stream's first event, the stream is
    /// `StreamNotFound`, as it was then.
    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let state = self.shared.state.lock();
        let not_found = || ReadError::StreamNotFound(stream.clone());
        let indices = state.streams.get(stream).ok_or_else(not_found)?;
        let visible_len = state.visible_len(options.as_of);
        let visible = &indices[..indices.partition_point(|&i| i < visible_len)];
        if visible.is_empty() {
            return Err(not_found());
        }
        let n = visible.len() as u64;
        let pick = |v: u64| state.events[visible[v as usize]].clone();
        Ok(match options.direction {
            Direction::Forward => {
                let start = match options.from {
                    StreamFrom::Start => 0,
                    StreamFrom::End => n - 1,
                    StreamFrom::Version(v) => v,
                };
                (start.min(n)..n).take(options.limit).map(pick).collect()
            }
            Direction::Backward => {
                let end = match options.from {
                    StreamFrom::Start => 1,
                    StreamFrom::End => n,
                    StreamFrom::Version(v) => v.saturating_add(1).min(n),
                };
                (0..end).rev().take(options.limit).map(pick).collect()
            }
        })
    }

    /// `None` both past the end of a stream and for a stream that does not exist.
    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError> {
        let state = self.shared.state.lock();
        let index = state
            .streams
            .get(stream)
            .and_then(|indices| usize::try_from(version).ok().and_then(|v| indices.get(v)));
        Ok(index.map(|&i| state.events[i].clone()))
    }

    /// From the id map that idempotency keeps; any event of any stream.
    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError> {
        let state = self.shared.state.lock();
        Ok(state.ids.get(&id).map(|&i| state.events[i].clone()))
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError> {
        let state = self.shared.state.lock();
        Ok(state.streams.get(stream).map(|indices| {
            let first = &state.events[indices[0]];
            let last = &state.events[indices[indices.len() - 1]];
            StreamInfo {
                stream: stream.clone(),
                last_version: last.version,
                event_count: indices.len() as u64,
                first_recorded_at: first.recorded_at,
                last_recorded_at: last.recorded_at,
            }
        }))
    }

    /// `AllFrom::Start` is the first and `End` the last (visible) event, in either direction,
    /// inclusive, mirroring [`StreamFrom`]. A `from` position after `end_position` is
    /// [`ReadError::InvalidPosition`]; every position up to it is accepted, because every one
    /// is (or is before) an event's position in this representation.
    async fn read_all(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let state = self.shared.state.lock();
        if let AllFrom::Position(p) = options.from {
            state.check_position(p)?;
        }
        let n = state.visible_len(options.as_of);
        let visible = &state.events[..n];
        let matching = |e: &&RecordedEvent| options.filter.matches(e);
        Ok(match options.direction {
            Direction::Forward => {
                let start = match options.from {
                    AllFrom::Start => 0,
                    AllFrom::End => n.saturating_sub(1),
                    AllFrom::Position(p) => index_from(p).min(n),
                };
                visible[start..]
                    .iter()
                    .filter(matching)
                    .take(options.limit)
                    .cloned()
                    .collect()
            }
            Direction::Backward => {
                let end = match options.from {
                    AllFrom::Start => n.min(1),
                    AllFrom::End => n,
                    AllFrom::Position(p) => count_through(p, n),
                };
                visible[..end]
                    .iter()
                    .rev()
                    .filter(matching)
                    .take(options.limit)
                    .cloned()
                    .collect()
            }
        })
    }

    /// `next_after` is the page's last name when more names follow, else `None`. Choice: with
    /// `limit: 0` the page is empty and `next_after` stays at `after` while names remain.
    async fn list_streams(&self, options: ListStreams) -> Result<StreamPage, ReadError> {
        let state = self.shared.state.lock();
        let mut names = state.streams.keys().filter(|name| {
            name.as_str().starts_with(&options.prefix)
                && options
                    .after
                    .as_deref()
                    .is_none_or(|after| name.as_str() > after)
        });
        let streams: Vec<StreamName> = names.by_ref().take(options.limit).cloned().collect();
        let more = names.next().is_some();
        let next_after = more.then(|| {
            streams.last().map_or_else(
                || options.after.clone().unwrap_or_default(),
                |s| s.as_str().to_owned(),
            )
        });
        Ok(StreamPage {
            streams,
            next_after,
        })
    }

    async fn categories(&self) -> Result<Vec<String>, ReadError> {
        let state = self.shared.state.lock();
        let categories: BTreeSet<&str> = state.streams.keys().map(StreamName::category).collect();
        Ok(categories.into_iter().map(str::to_owned).collect())
    }

    async fn end_position(&self) -> Result<Position, ReadError> {
        Ok(self.shared.state.lock().end_position())
    }

    /// `End` is fixed when this is called, not when the subscription is first polled. `After(p)`
    /// with `p` past `end_position` yields [`ReadError::InvalidPosition`] and ends.
    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        let state = self.shared.state.lock();
        let next = match from {
            SubscribeFrom::Start => 0,
            SubscribeFrom::End => state.events.len(),
            SubscribeFrom::After(p) => {
                if let Err(e) = state.check_position(p) {
                    return futures::stream::once(async move { Err(SubscribeError::Read(e)) })
                        .boxed();
                }
                // Positions are index + 1, so the event after `p` is at index `p`.
                usize::try_from(p.raw()).unwrap_or(usize::MAX)
            }
        };
        drop(state);
        self.follow(Cursor::All { next, filter })
    }

    /// Choice: a subscription to a stream that does not exist yet waits for it.
    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription {
        let next = match from {
            SubscribeFrom::Start => 0,
            SubscribeFrom::End => self
                .shared
                .state
                .lock()
                .last_version(&stream)
                .map_or(0, |v| v + 1),
            SubscribeFrom::After(v) => v.saturating_add(1),
        };
        self.follow(Cursor::Stream { stream, next })
    }
}

/// Where a subscription is: the next index of `$all`, or the next version of a stream.
enum Cursor {
    All { next: usize, filter: EventFilter },
    Stream { stream: StreamName, next: Version },
}

struct Follow {
    shared: Arc<Shared>,
    changed: watch::Receiver<()>,
    cursor: Cursor,
    buffer: VecDeque<RecordedEvent>,
}

impl Follow {
    /// Copies the next batch of events after the cursor into the buffer.
    fn fill(&mut self) {
        let state = self.shared.state.lock();
        match &mut self.cursor {
            Cursor::All { next, filter } => {
                while *next < state.events.len() && self.buffer.len() < SUBSCRIPTION_BATCH {
                    let event = &state.events[*next];
                    *next += 1;
                    if filter.matches(event) {
                        self.buffer.push_back(event.clone());
                    }
                }
            }
            Cursor::Stream { stream, next } => {
                let Some(indices) = state.streams.get(stream) else {
                    return;
                };
                while let Some(&index) = usize::try_from(*next).ok().and_then(|v| indices.get(v)) {
                    if self.buffer.len() >= SUBSCRIPTION_BATCH {
                        break;
                    }
                    self.buffer.push_back(state.events[index].clone());
                    *next += 1;
                }
            }
        }
    }
}

impl ModelStore {
    fn follow(&self, cursor: Cursor) -> Subscription {
        let follow = Follow {
            shared: self.shared.clone(),
            changed: self.shared.appended.subscribe(),
            cursor,
            buffer: VecDeque::new(),
        };
        futures::stream::unfold(follow, |mut f| async move {
            loop {
                if let Some(event) = f.buffer.pop_front() {
                    return Some((Ok(event), f));
                }
                // Mark the current append count seen *before* looking at the state: an append
                // that lands after the look bumps the channel again, so no wake-up is lost.
                f.changed.borrow_and_update();
                f.fill();
                if f.buffer.is_empty() && f.changed.changed().await.is_err() {
                    // Unreachable while `f.shared` keeps the sender alive; end rather than spin.
                    return None;
                }
            }
        })
        .boxed()
    }
}

/// The [`Backend`] of the model: every `open` is a new empty store; `reopen` keeps the data.
#[derive(Debug, Clone)]
pub struct ModelBackend {
    limits: Limits,
}

impl ModelBackend {
    pub fn new() -> Self {
        Self::with_limits(ModelStore::DEFAULT_LIMITS)
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self { limits }
    }
}

impl Default for ModelBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Backend for ModelBackend {
    type Store = ModelStore;

    async fn open(&self) -> Arc<ModelStore> {
        Arc::new(ModelStore::new(self.limits))
    }

    /// Insists on getting the only handle: a real backend waits for every handle to be dropped
    /// before reopening, so a case that kept one would hang there; here it fails at once.
    async fn reopen(&self, store: Arc<ModelStore>) -> Arc<ModelStore> {
        let store = Arc::into_inner(store)
            .expect("reopen must be handed the only handle to the store (a real backend would wait forever)");
        Arc::new(ModelStore {
            shared: store.shared,
        })
    }

    fn limits(&self) -> Limits {
        self.limits
    }
}
