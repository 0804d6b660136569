//! What the store returns.

use factlog_types::{ExpectedVersion, NewEvent, Position, StreamName, Timestamp, Version};

/// Where an append's events landed: versions inside the stream and positions in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub first_version: Version,
    pub last_version: Version,
    pub first_position: Position,
    pub last_position: Position,
}

/// One stream's part of a (multi-stream) append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: StreamName,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// What a stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream: StreamName,
    pub last_version: Version,
    pub event_count: u64,
    pub first_recorded_at: Timestamp,
    pub last_recorded_at: Timestamp,
}

/// A page of stream names; `next_after` is where the next page starts, absent at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage {
    pub streams: Vec<StreamName>,
    pub next_after: Option<String>,
}
