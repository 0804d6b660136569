//! What a read or a subscription asks for.

use factlog_types::{Position, RecordedEvent, Timestamp, Version};

/// Which way a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Forward,
    Backward,
}

/// Read only what had been recorded at or before a moment: time travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Events recorded at or before this time.
    Time(Timestamp),
    /// Events at or before this position.
    Position(Position),
}

/// Where a stream read starts. Reads include the event at the starting version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamFrom {
    /// Version 0 (forward) ...
    #[default]
    Start,
    /// ... or the last version (backward).
    End,
    Version(Version),
}

/// Where a `$all` read starts. Reads include the event at the starting position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllFrom {
    #[default]
    Start,
    End,
    Position(Position),
}

/// Where a subscription starts: everything, only what comes next, or after an event already seen
/// (the resume case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeFrom<T> {
    Start,
    End,
    After(T),
}

/// Which events of `$all` a reader wants. Empty fields match everything; set fields must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these event types.
    pub event_types: Vec<String>,
    /// Stream names starting with this prefix.
    pub stream_prefix: Option<String>,
    /// Streams of this category (the part of the name before the first `-`).
    pub category: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        (self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|t| t == event.event_type.as_str()))
            && self
                .stream_prefix
                .as_ref()
                .is_none_or(|p| event.stream.as_str().starts_with(p))
            && self
                .category
                .as_ref()
                .is_none_or(|c| event.stream.category() == c)
    }

    pub fn is_empty(&self) -> bool {
        self.event_types.is_empty() && self.stream_prefix.is_none() && self.category.is_none()
    }
}

/// Options of [`crate::EventStore::read_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStream {
    pub from: StreamFrom,
    pub direction: Direction,
    /// At most this many events.
    pub limit: usize,
    pub as_of: Option<AsOf>,
}

impl Default for ReadStream {
    fn default() -> Self {
        Self {
            from: StreamFrom::Start,
            direction: Direction::Forward,
            limit: 4096,
            as_of: None,
        }
    }
}

impl ReadStream {
    pub fn forward() -> Self {
        Self::default()
    }

    pub fn backward() -> Self {
        Self {
            from: StreamFrom::End,
            direction: Direction::Backward,
            ..Self::default()
        }
    }

    pub fn from_version(mut self, version: Version) -> Self {
        self.from = StreamFrom::Version(version);
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn as_of(mut self, as_of: AsOf) -> Self {
        self.as_of = Some(as_of);
        self
    }
}

/// Options of [`crate::EventStore::read_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAll {
    pub from: AllFrom,
    pub direction: Direction,
    /// At most this many events (after filtering).
    pub limit: usize,
    pub filter: EventFilter,
    pub as_of: Option<AsOf>,
}

impl Default for ReadAll {
    fn default() -> Self {
        Self {
            from: AllFrom::Start,
            direction: Direction::Forward,
            limit: 4096,
            filter: EventFilter::default(),
            as_of: None,
        }
    }
}

impl ReadAll {
    pub fn forward() -> Self {
        Self::default()
    }

    pub fn backward() -> Self {
        Self {
            from: AllFrom::End,
            direction: Direction::Backward,
            ..Self::default()
        }
    }

    pub fn from_position(mut self, position: Position) -> Self {
        self.from = AllFrom::Position(position);
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.filter = filter;
        self
    }

    pub fn as_of(mut self, as_of: AsOf) -> Self {
        self.as_of = Some(as_of);
        self
    }
}

/// Options of [`crate::EventStore::list_streams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStreams {
    /// Only names starting with this.
    pub prefix: String,
    /// Only names after this one (the last name of the previous page).
    pub after: Option<String>,
    pub limit: usize,
}

impl Default for ListStreams {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            after: None,
            limit: 1000,
        }
    }
}
