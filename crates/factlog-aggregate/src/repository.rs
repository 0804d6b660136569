//! The repository: loads aggregates (snapshot + the events after it), handles commands, and
//! appends their events with the loaded version as the expected version.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use factlog_store::{
    AppendError, AppendResult, AsOf, EventId, EventStore, ExpectedVersion, InvalidName, NewEvent,
    ReadError, ReadStream, RecordedEvent, StreamAppend, StreamName, Timestamp, Version,
};
use rand::Rng;

use crate::command::{Command, CommandMeta, InvalidCommand};
use crate::event::{DecodeError, EncodeError, encode};
use crate::snapshot::{Snapshot, SnapshotPolicy, SnapshotStore};
use crate::{Aggregate, DomainEvent, stream_name};

/// Events read from the store per request while loading.
const LOAD_PAGE_EVENTS: usize = 4096;
/// The most events of one command the repository looks for when it finds the command applied.
const COMMAND_EVENTS_MAX: usize = 10_000;

/// How often and how patiently a command is retried after losing a race for a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub attempts_max: u32,
    /// The backoff before the second attempt; it doubles for each later attempt, up to
    /// `backoff_max`, and each sleep is a random fraction of it (full jitter) so that the
    /// writers who lost a race do not collide again.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: 10,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// No retry: a conflict is returned at once.
    pub fn none() -> Self {
        Self {
            attempts_max: 1,
            ..Self::default()
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .backoff_initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.backoff_max);
        ceiling.mul_f64(rand::thread_rng().r#gen::<f64>())
    }
}

/// Which state to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The state after the event at this version.
    Version(Version),
    /// The state after every event recorded at or before this time.
    Time(Timestamp),
}

/// An aggregate as loaded.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub id: String,
    pub stream: StreamName,
    pub state: A,
    /// The version of the last event folded into `state`; `None` when there is none (the stream
    /// does not exist, or did not at the time asked for).
    pub version: Option<Version>,
    /// The version of the snapshot loading started from, if one was used.
    pub snapshot_version: Option<Version>,
    /// Events read and applied on top of the snapshot (or from the start).
    pub events_applied: u64,
    /// The id of the last event folded in.
    last_event_id: Option<EventId>,
    /// Events folded in since the last snapshot (saved or loaded).
    events_since_snapshot: u64,
}

/// What a command did to one aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its events were appended here.
    Applied(AppendResult),
    /// The command (same command id) had been applied before; these are where its events are.
    /// Nothing was appended.
    AlreadyApplied(AppendResult),
    /// The aggregate decided the command changes nothing.
    Unchanged,
}

/// The result of a command for one aggregate.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    pub id: String,
    pub stream: StreamName,
    /// The state right after the command's events (or the current state when it changed
    /// nothing).
    pub state: A,
    pub version: Option<Version>,
    /// The command's events for this aggregate.
    pub events: Vec<A::Event>,
    pub outcome: Outcome,
}

/// Why an aggregate could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("invalid aggregate id {id:?}: {source}")]
    InvalidId { id: String, source: InvalidName },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("event {version} of stream {stream} cannot be read: {source}")]
    Decode {
        stream: StreamName,
        version: Version,
        source: DecodeError,
    },
    #[error(
        "stream {stream} has no version {requested}; {}",
        match last { Some(v) => format!("its last version is {v}"), None => "it has no events".to_owned() }
    )]
    VersionNotFound {
        stream: StreamName,
        requested: Version,
        last: Option<Version>,
    },
}

/// Why a command was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command: its business error, unchanged.
    #[error(transparent)]
    Rejected(E),
    #[error(transparent)]
    InvalidCommand(#[from] InvalidCommand),
    #[error("aggregate {id} appears twice in one command; merge its commands")]
    DuplicateAggregate { id: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Append(AppendError),
    #[error(
        "stream {stream} kept changing: the command lost the race for its version {attempts} times; try again"
    )]
    Conflict { stream: StreamName, attempts: u32 },
}

impl<E> CommandError<E> {
    /// The business error, when the aggregate refused the command.
    pub fn rejected(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

/// One event of an aggregate's history: the decoded event and how it was stored.
#[derive(Debug, Clone)]
pub struct HistoryEntry<E> {
    pub event: E,
    pub recorded: RecordedEvent,
}

/// Loads aggregates of type `A` and executes their commands on any [`EventStore`].
pub struct Repository<A: Aggregate> {
    store: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    policy: SnapshotPolicy,
    retry: RetryPolicy,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            policy: self.policy,
            retry: self.retry,
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::CATEGORY)
            .field("snapshots", &self.snapshots.is_some())
            .field("policy", &self.policy)
            .field("retry", &self.retry)
            .finish()
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository without snapshots and with the default retry policy.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            snapshots: None,
            policy: SnapshotPolicy::Never,
            retry: RetryPolicy::default(),
            aggregate: PhantomData,
        }
    }

    /// Keeps snapshots in `snapshots`, taken by `policy`.
    pub fn with_snapshots(
        mut self,
        snapshots: Arc<dyn SnapshotStore>,
        policy: SnapshotPolicy,
    ) -> Self {
        self.snapshots = Some(snapshots);
        self.policy = policy;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The current state of aggregate `id`.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        let mut loaded = self.load_stream(id, None).await?;
        if self.policy.is_due(loaded.events_since_snapshot) {
            self.save_snapshot(&mut loaded).await;
        }
        Ok(loaded)
    }

    /// The state of aggregate `id` as it was at a version or a time: time travel.
    pub async fn load_at(&self, id: &str, at: At) -> Result<Loaded<A>, LoadError> {
        self.load_stream(id, Some(at)).await
    }

    /// The events of aggregate `id` from `from` on, at most `limit`, decoded.
    pub async fn history(
        &self,
        id: &str,
        from: Version,
        limit: usize,
    ) -> Result<Vec<HistoryEntry<A::Event>>, LoadError> {
        let stream = aggregate_stream::<A>(id)?;
        let options = ReadStream::forward().from_version(from).limit(limit);
        let events = match self.store.read_stream(&stream, options).await {
            Ok(events) => events,
            Err(ReadError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        events
            .into_iter()
            .map(|recorded| {
                let event = decode::<A>(&recorded)?;
                Ok(HistoryEntry { event, recorded })
            })
            .collect()
    }

    /// Handles `command` on aggregate `id` and appends its events.
    pub async fn execute(
        &self,
        id: &str,
        command: impl Into<Command<A::Command>>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let command = command.into();
        let mut executed = self
            .execute_all(Command {
                body: vec![(id.to_owned(), command.body)],
                meta: command.meta,
            })
            .await?;
        Ok(executed.pop().expect("one result per aggregate"))
    }

    /// Handles one command per aggregate and appends all their events atomically (a
    /// multi-stream append): every aggregate's decision stands, or none is recorded. A business
    /// error of any aggregate rejects the whole command. Results come in the order given.
    pub async fn execute_all(
        &self,
        command: Command<Vec<(String, A::Command)>>,
    ) -> Result<Vec<Executed<A>>, CommandError<A::Error>> {
        let Command { body, meta } = command;
        meta.validate()?;
        let mut streams = Vec::with_capacity(body.len());
        for (id, _) in &body {
            let stream = aggregate_stream::<A>(id)?;
            if streams.contains(&stream) {
                return Err(CommandError::DuplicateAggregate { id: id.clone() });
            }
            streams.push(stream);
        }
        let metadata = meta.event_metadata();
        let mut last_stream = streams[0].clone();
        for attempt in 1..=self.retry.attempts_max {
            // First, and again after each lost race: the race may have been lost to another
            // execution of this same command.
            if let Some(done) = self.find_applied(&body, &streams, &meta).await? {
                return Ok(done);
            }
            let mut loaded = Vec::with_capacity(body.len());
            for (id, _) in &body {
                loaded.push(self.load(id).await?);
            }
            let mut decided = Vec::with_capacity(body.len());
            for ((_, command), aggregate) in body.iter().zip(&loaded) {
                decided.push(
                    aggregate
                        .state
                        .handle(command)
                        .map_err(CommandError::Rejected)?,
                );
            }
            if decided.iter().all(Vec::is_empty) {
                return Ok(loaded
                    .into_iter()
                    .map(|l| unchanged(l.id, l.stream, l.state, l.version))
                    .collect());
            }

            let mut appends = Vec::new();
            let mut expected_first = Vec::with_capacity(loaded.len());
            let mut last_ids = Vec::with_capacity(loaded.len());
            for (aggregate, events) in loaded.iter().zip(&decided) {
                if events.is_empty() {
                    last_ids.push(None);
                    continue;
                }
                let mut encoded = Vec::with_capacity(events.len());
                for (i, event) in events.iter().enumerate() {
                    let new: NewEvent = encode(event)?
                        .with_id(meta.event_id(&aggregate.stream, i))
                        .with_metadata(metadata.clone());
                    encoded.push(new);
                }
                last_ids.push(encoded.last().and_then(|e| e.id));
                expected_first.push(aggregate.version.map_or(0, |v| v + 1));
                appends.push(StreamAppend {
                    stream: aggregate.stream.clone(),
                    expected: aggregate
                        .version
                        .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                    events: encoded,
                });
            }

            match self.store.append_multi(appends).await {
                // The store recognized the derived ids and answered with an earlier append of
                // this command (one that landed after this attempt loaded): its state is not
                // the one decided here.
                Ok(results)
                    if results
                        .iter()
                        .zip(&expected_first)
                        .any(|(r, first)| r.first_version != *first) =>
                {
                    return match self.find_applied(&body, &streams, &meta).await? {
                        Some(done) => Ok(done),
                        None => Err(CommandError::Append(AppendError::Backend(
                            "the store answered an append of this command that it cannot find"
                                .into(),
                        ))),
                    };
                }
                Ok(results) => {
                    let mut results = results.into_iter();
                    let mut executed = Vec::with_capacity(loaded.len());
                    for ((mut aggregate, events), last_id) in
                        loaded.into_iter().zip(decided).zip(last_ids)
                    {
                        if events.is_empty() {
                            executed.push(unchanged(
                                aggregate.id,
                                aggregate.stream,
                                aggregate.state,
                                aggregate.version,
                            ));
                            continue;
                        }
                        let result = results.next().expect("one result per stream appended");
                        for event in &events {
                            aggregate.state.apply(event);
                        }
                        aggregate.events_applied += events.len() as u64;
                        aggregate.events_since_snapshot += events.len() as u64;
                        aggregate.version = Some(result.last_version);
                        aggregate.last_event_id = last_id;
                        if self.policy.is_due(aggregate.events_since_snapshot) {
                            self.save_snapshot(&mut aggregate).await;
                        }
                        executed.push(Executed {
                            id: aggregate.id,
                            stream: aggregate.stream,
                            state: aggregate.state,
                            version: aggregate.version,
                            events,
                            outcome: Outcome::Applied(result),
                        });
                    }
                    return Ok(executed);
                }
                Err(AppendError::WrongExpectedVersion { stream, .. }) => {
                    tracing::debug!(%stream, attempt, "lost the race for a version; retrying");
                    last_stream = stream;
                    if attempt < self.retry.attempts_max {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                    }
                }
                // The derived ids are stored, with other content: the command was applied
                // while this attempt was deciding, from another state.
                Err(e @ AppendError::IdempotencyConflict { .. }) if meta.command_id.is_some() => {
                    return match self.find_applied(&body, &streams, &meta).await? {
                        Some(done) => Ok(done),
                        None => Err(CommandError::Append(e)),
                    };
                }
                Err(e) => return Err(CommandError::Append(e)),
            }
        }
        Err(CommandError::Conflict {
            stream: last_stream,
            attempts: self.retry.attempts_max,
        })
    }

    /// When the command (by its id) was applied before: its result, read back from the store.
    async fn find_applied(
        &self,
        body: &[(String, A::Command)],
        streams: &[StreamName],
        meta: &CommandMeta,
    ) -> Result<Option<Vec<Executed<A>>>, LoadError> {
        if meta.command_id.is_none() {
            return Ok(None);
        }
        let mut found = Vec::with_capacity(streams.len());
        for stream in streams {
            let first_id = meta.event_id(stream, 0);
            let first = match self.store.read_event_by_id(first_id).await? {
                Some(event) if &event.stream == stream => event,
                _ => {
                    found.push(None);
                    continue;
                }
            };
            let options = ReadStream::forward()
                .from_version(first.version)
                .limit(COMMAND_EVENTS_MAX);
            let mut events = Vec::new();
            for (i, recorded) in self
                .store
                .read_stream(stream, options)
                .await?
                .into_iter()
                .enumerate()
            {
                if recorded.id != meta.event_id(stream, i) {
                    break;
                }
                events.push(recorded);
            }
            found.push(Some(events));
        }
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut executed = Vec::with_capacity(streams.len());
        for ((id, _), events) in body.iter().zip(found) {
            match events {
                Some(events) => {
                    let (first, last) = (&events[0], &events[events.len() - 1]);
                    let result = AppendResult {
                        first_version: first.version,
                        last_version: last.version,
                        first_position: first.position,
                        last_position: last.position,
                    };
                    let loaded = self.load_at(id, At::Version(last.version)).await?;
                    let events = events.iter().map(decode::<A>).collect::<Result<_, _>>()?;
                    executed.push(Executed {
                        id: loaded.id,
                        stream: loaded.stream,
                        state: loaded.state,
                        version: loaded.version,
                        events,
                        outcome: Outcome::AlreadyApplied(result),
                    });
                }
                None => {
                    let loaded = self.load_stream(id, None).await?;
                    executed.push(unchanged(
                        loaded.id,
                        loaded.stream,
                        loaded.state,
                        loaded.version,
                    ));
                }
            }
        }
        Ok(Some(executed))
    }

    async fn load_stream(&self, id: &str, at: Option<At>) -> Result<Loaded<A>, LoadError> {
        let stream = aggregate_stream::<A>(id)?;
        if let Some(snapshot) = self.usable_snapshot(&stream, at).await
            && let Some(loaded) = self.replay(id, &stream, Some(snapshot), at).await?
        {
            return Ok(loaded);
        }
        Ok(self
            .replay(id, &stream, None, at)
            .await?
            .expect("a replay from the start always loads"))
    }

    /// The stream's snapshot, when there is one this code can read and `at` is not before it.
    async fn usable_snapshot(&self, stream: &StreamName, at: Option<At>) -> Option<Snapshot> {
        let snapshots = self.snapshots.as_ref()?;
        let snapshot = match snapshots.load(stream).await {
            Ok(snapshot) => snapshot?,
            Err(e) => {
                tracing::warn!(%stream, error = %e, "loading without a snapshot");
                return None;
            }
        };
        if snapshot.aggregate_type != A::CATEGORY
            || snapshot.snapshot_version != A::SNAPSHOT_VERSION
        {
            tracing::debug!(
                %stream,
                snapshot_version = snapshot.snapshot_version,
                "ignoring a snapshot of another format; it will be rebuilt"
            );
            return None;
        }
        match at {
            Some(At::Version(v)) if v < snapshot.version => None,
            _ => Some(snapshot),
        }
    }

    /// Folds the stream's events into the state, from the snapshot when given. `Ok(None)` when
    /// the snapshot does not fit the stream (its event is not there, or its state does not
    /// deserialize): the caller replays from the start.
    async fn replay(
        &self,
        id: &str,
        stream: &StreamName,
        snapshot: Option<Snapshot>,
        at: Option<At>,
    ) -> Result<Option<Loaded<A>>, LoadError> {
        let (mut state, mut next, snapshot_check) = match snapshot {
            Some(snapshot) => match A::deserialize(&snapshot.state) {
                Ok(state) => (state, snapshot.version, Some(snapshot)),
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "ignoring a snapshot that does not deserialize");
                    return Ok(None);
                }
            },
            None => (A::default(), 0, None),
        };
        let snapshot_version = snapshot_check.as_ref().map(|s| s.version);
        let mut snapshot_check = snapshot_check;
        let mut version = None;
        let mut last_event_id = None;
        let mut events_applied = 0;
        loop {
            let mut limit = LOAD_PAGE_EVENTS;
            let mut options = ReadStream::forward().from_version(next);
            match at {
                Some(At::Version(target)) => {
                    if next > target {
                        break;
                    }
                    limit = limit.min(usize::try_from(target - next + 1).unwrap_or(usize::MAX));
                }
                Some(At::Time(time)) => options = options.as_of(AsOf::Time(time)),
                None => {}
            }
            let page = match self.store.read_stream(stream, options.limit(limit)).await {
                Ok(page) => page,
                Err(ReadError::StreamNotFound(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            for event in &page {
                if let Some(snapshot) = snapshot_check.take() {
                    if event.version != snapshot.version || event.id != snapshot.last_event_id {
                        tracing::warn!(%stream, "ignoring a snapshot whose event is not in the stream");
                        return Ok(None);
                    }
                } else {
                    state.apply(&decode::<A>(event)?);
                    events_applied += 1;
                }
                version = Some(event.version);
                last_event_id = Some(event.id);
            }
            next += page.len() as u64;
            if page.len() < limit {
                break;
            }
        }
        if snapshot_check.is_some() {
            // The snapshot's event was not read: the stream is shorter than the snapshot, or
            // (time travel) the snapshot is younger than the time asked for.
            return Ok(None);
        }
        if let Some(At::Version(requested)) = at
            && version != Some(requested)
        {
            return Err(LoadError::VersionNotFound {
                stream: stream.clone(),
                requested,
                last: version,
            });
        }
        Ok(Some(Loaded {
            id: id.to_owned(),
            stream: stream.clone(),
            state,
            version,
            snapshot_version,
            events_applied,
            last_event_id,
            events_since_snapshot: events_applied,
        }))
    }

    async fn save_snapshot(&self, loaded: &mut Loaded<A>) {
        let (Some(snapshots), Some(version), Some(last_event_id)) =
            (&self.snapshots, loaded.version, loaded.last_event_id)
        else {
            return;
        };
        let state = match serde_json::to_value(&loaded.state) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(stream = %loaded.stream, error = %e, "the state does not serialize; no snapshot");
                return;
            }
        };
        let snapshot = Snapshot {
            aggregate_type: A::CATEGORY.to_owned(),
            stream: loaded.stream.as_str().to_owned(),
            version,
            last_event_id,
            snapshot_version: A::SNAPSHOT_VERSION,
            state,
        };
        match snapshots.save(snapshot).await {
            Ok(()) => loaded.events_since_snapshot = 0,
            Err(e) => {
                tracing::warn!(stream = %loaded.stream, error = %e, "could not save a snapshot")
            }
        }
    }
}

fn aggregate_stream<A: Aggregate>(id: &str) -> Result<StreamName, LoadError> {
    stream_name::<A>(id).map_err(|source| LoadError::InvalidId {
        id: id.to_owned(),
        source,
    })
}

fn decode<A: Aggregate>(event: &RecordedEvent) -> Result<A::Event, LoadError> {
    A::Event::schema()
        .decode_recorded(event)
        .map_err(|source| LoadError::Decode {
            stream: event.stream.clone(),
            version: event.version,
            source,
        })
}

fn unchanged<A: Aggregate>(
    id: String,
    stream: StreamName,
    state: A,
    version: Option<Version>,
) -> Executed<A> {
    Executed {
        id,
        stream,
        state,
        version,
        events: Vec::new(),
        outcome: Outcome::Unchanged,
    }
}
