//! The Factlog store API.
//!
//! [`EventStore`] is what the write side, the read side, the server and the CLI program
//! against. The embedded log (`factlog-log`) implements it, and so will the Kafka backend; the
//! conformance suite (`factlog-conformance`) checks that a backend keeps every promise here.
//!
//! # Guarantees every backend gives
//! - **Acknowledged means durable**: `append` returns `Ok` only once the events survive a crash.
//! - **Exactly one writer wins a version**: of concurrent appends with the same expected version,
//!   one succeeds and the others get [`AppendError::WrongExpectedVersion`] with the current version.
//! - **All or nothing**: the events of one call (even across streams) are all stored or none is.
//! - **Idempotent by event id**: appending events whose ids are already stored, to the same stream
//!   in the same order with the same content, returns the original result and writes nothing.
//! - **Order within a stream** is always the version order.
//!
//! # Where backends differ
//! [`EventStore::ordering`] says whether `$all` is totally ordered ([`Ordering::Total`], the
//! embedded log) or ordered only within a partition ([`Ordering::PerPartition`], Kafka).

mod checkpoint;
mod checks;
mod error;
mod options;
mod results;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use checkpoint::{Checkpoint, InvalidCheckpoint};
pub use checks::{AppendLimits, check_appends, find_retry, whole_retry};
pub use error::{AppendError, Error, LimitKind, ReadError, SubscribeError};
pub use factlog_types::*;
pub use options::{
    AllFrom, AsOf, Direction, EventFilter, ListStreams, ReadAll, ReadStream, StreamFrom,
    SubscribeFrom,
};
pub use results::{AppendResult, StreamAppend, StreamInfo, StreamPage};

/// How a backend orders `$all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// One total order over every event of the store.
    Total,
    /// Events are ordered within a stream and within a partition, not across partitions.
    PerPartition,
}

/// A live subscription: events in order, first those already stored, then new ones as they
/// are appended. It ends only with an error or when the store closes.
pub type Subscription = BoxStream<'static, Result<RecordedEvent, SubscribeError>>;

/// The store API. See the crate docs for the guarantees.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// How `$all` is ordered on this backend.
    fn ordering(&self) -> Ordering;

    /// Appends `events` to `stream` if the stream meets `expected`; all or nothing.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let mut results = self
            .append_multi(vec![StreamAppend {
                stream: stream.clone(),
                expected,
                events,
            }])
            .await?;
        Ok(results.pop().expect("one result per stream"))
    }

    /// Appends to several streams atomically: every stream's expectation must hold, and then
    /// every event is stored, or none is. Results come back in the order of `appends`.
    async fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError>;

    /// Reads events of one stream. A stream that does not exist is
    /// [`ReadError::StreamNotFound`]; an empty page of an existing stream is `Ok(vec![])`.
    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError>;

    /// One event by stream and version; `None` when there is none.
    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError>;

    /// The event stored with this id, wherever it is; `None` when no event has it. Backends
    /// answer from an index (never a scan of the log).
    ///
    /// The write side uses it to recognize a command that was already applied, when event ids
    /// are derived from the command's id.
    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError>;

    /// What a stream holds; `None` when it does not exist.
    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError>;

    /// Reads `$all`, every event of the store in its order, filtered.
    async fn read_all(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError>;

    /// Stream names in byte order, by prefix, a page at a time.
    async fn list_streams(&self, options: ListStreams) -> Result<StreamPage, ReadError>;

    /// Every category (the part of a stream name before the first `-`), in byte order.
    async fn categories(&self) -> Result<Vec<String>, ReadError>;

    /// The position just after the last stored event: reading `$all` from here returns nothing
    /// until more is appended.
    async fn end_position(&self) -> Result<Position, ReadError>;

    /// Follows `$all`: catch-up from storage, then live, with no gap and no duplicate.
    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription;

    /// Follows one stream from a version: catch-up, then live.
    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription;

    /// The partition key of the event at `position`, for a [`Checkpoint`]: positions with one
    /// key are ordered, positions with different keys are not comparable. 0 for every position
    /// of a totally ordered store.
    fn partition_key(&self, position: Position) -> u64 {
        let _ = position;
        0
    }

    /// Follows `$all` from a checkpoint: every event `checkpoint` does not cover, each
    /// partition in order, then live. What a reader that keeps a [`Checkpoint`] resumes with,
    /// on this node or another.
    fn subscribe_after(&self, checkpoint: &Checkpoint, filter: EventFilter) -> Subscription {
        match checkpoint {
            Checkpoint::Total(p) if *p == Position::START => {
                self.subscribe_all(SubscribeFrom::Start, filter)
            }
            Checkpoint::Total(p) => self.subscribe_all(SubscribeFrom::After(*p), filter),
            Checkpoint::PerPartition(_) => {
                let error = SubscribeError::Read(ReadError::Backend(format!(
                    "the checkpoint {checkpoint} is per partition, and this store is totally ordered"
                )));
                Box::pin(futures::stream::once(async move { Err(error) }))
            }
        }
    }

    /// Read-your-writes across nodes: waits until reads here see the event at `position` (a
    /// position an append returned, perhaps on another node of the same store), for at most
    /// `timeout`; false when it did not come in time. A store whose reads see every
    /// acknowledged append at once answers true at once (the default).
    async fn wait_for_position(
        &self,
        position: Position,
        timeout: std::time::Duration,
    ) -> Result<bool, ReadError> {
        let _ = (position, timeout);
        Ok(true)
    }

    /// How many events of this node's `$all` order come after `from` up to and including `to`
    /// (0 when `to` is not after `from`): a reader's lag. Counts on the positions of a store
    /// that gives each event the next position (the default).
    fn events_between(&self, from: Position, to: Position) -> u64 {
        to.raw().saturating_sub(from.raw())
    }

    /// The checkpoint of a reader that has read `$all` in this node's order up to and
    /// including the event at `position` ([`Position::START`]: nothing): how a reset to a
    /// position or a time becomes a checkpoint.
    async fn checkpoint_at(&self, position: Position) -> Result<Checkpoint, ReadError> {
        Ok(Checkpoint::Total(position))
    }

    /// The place in this node's `$all` order of a reader at `checkpoint`: the position of the
    /// last event such that it and every event before it are covered ([`Position::START`]
    /// when the first is not). For status and lag; the same as the checkpoint's position on a
    /// totally ordered store.
    async fn position_of(&self, checkpoint: &Checkpoint) -> Result<Position, ReadError> {
        Ok(checkpoint.total().unwrap_or(Position::START))
    }
}
