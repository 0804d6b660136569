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

mod checks;
mod error;
mod options;
mod results;

use async_trait::async_trait;
use futures::stream::BoxStream;

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
}
