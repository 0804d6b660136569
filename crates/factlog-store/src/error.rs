//! Errors of the store API: one enum per operation family, and [`Error`] over them.
//!
//! Every message says what happened, to what, and what the caller can do.

use factlog_types::{EventId, ExpectedVersion, Position, StreamName, Version};

/// Which named limit an append broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `event_size_bytes_max`: one event's data, metadata and type.
    EventSize,
    /// `append_events_max`: events in one call.
    EventsPerAppend,
    /// `append_size_bytes_max`: all events of one call.
    AppendSize,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::EventSize => "event_size_bytes_max",
            LimitKind::EventsPerAppend => "append_events_max",
            LimitKind::AppendSize => "append_size_bytes_max",
        })
    }
}

/// Why an append was refused. Nothing was written in any of these cases.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error(
        "wrong expected version for stream {stream}: expected {expected}, but the stream {}",
        match current { Some(v) => format!("is at version {v}"), None => "does not exist".to_owned() }
    )]
    WrongExpectedVersion {
        stream: StreamName,
        expected: ExpectedVersion,
        /// The stream's last version, or `None` when it does not exist.
        current: Option<Version>,
    },
    #[error("event id {event_id} is already stored {detail}; use a new id for a new event")]
    IdempotencyConflict { event_id: EventId, detail: String },
    #[error("event id {event_id} appears twice in one append; each event needs its own id")]
    DuplicateEventId { event_id: EventId },
    #[error(
        "stream {stream} appears twice in one multi-stream append; merge its events into one part"
    )]
    DuplicateStream { stream: StreamName },
    #[error("an append needs at least one event")]
    Empty,
    /// A multi-stream append over streams that live on different partitions of a partitioned
    /// backend (Kafka), which cannot store them atomically.
    #[error(
        "streams {first} and {other} live on different partitions of this store, and a multi-stream append is atomic only within one partition; append to them separately"
    )]
    CrossPartition {
        first: StreamName,
        other: StreamName,
    },
    #[error("{limit} is {max}, and this append has {actual}; split it or raise the limit")]
    LimitExceeded {
        limit: LimitKind,
        actual: u64,
        max: u64,
    },
    #[error("the disk is full: the append was not written; free space and append again")]
    DiskFull,
    #[error(
        "the store stopped accepting appends after a storage failure ({reason}); reopen the store"
    )]
    WriterFailed { reason: String },
    #[error("the store is closed")]
    Closed,
    #[error("backend error: {0}")]
    Backend(String),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("stream {0} does not exist")]
    StreamNotFound(StreamName),
    #[error("position {0} is not the position of an event in this store")]
    InvalidPosition(Position),
    #[error("corrupt record in {file} at byte offset {offset}: {reason}; run `factlog verify`")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("I/O error while reading {file}: {reason}")]
    Io { file: String, reason: String },
    #[error("the store is closed")]
    Closed,
    #[error("backend error: {0}")]
    Backend(String),
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the store is closed")]
    Closed,
}

/// Any error of the store API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
}
