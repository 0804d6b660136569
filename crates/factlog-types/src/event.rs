//! Events: what a writer gives the store, and what a reader gets back.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;

use crate::{EventId, EventType, InvalidName, Position, StreamName, Timestamp, Version};

/// Metadata of an event: a JSON object. `correlationId` and `causationId` are the conventional
/// keys for tracing which command caused which event; any other key is the user's.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// The media type of an event's data: `application/json` unless the writer says otherwise.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ContentType(std::sync::Arc<str>);

impl ContentType {
    pub const JSON: &'static str = "application/json";
    /// The longest content type, in bytes.
    pub const BYTES_MAX: usize = 255;

    pub fn json() -> Self {
        Self(Self::JSON.into())
    }

    pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
        let value = value.into();
        if value.is_empty() {
            return Err(InvalidName::Empty {
                what: "content type",
            });
        }
        if value.len() > Self::BYTES_MAX {
            return Err(InvalidName::TooLong {
                what: "content type",
                length_bytes: value.len(),
            });
        }
        if let Some(index) = value.bytes().position(|b| !(0x20..0x7f).contains(&b)) {
            return Err(InvalidName::ControlCharacter {
                what: "content type",
                index,
            });
        }
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_json(&self) -> bool {
        &*self.0 == Self::JSON
    }
}

impl Default for ContentType {
    fn default() -> Self {
        Self::json()
    }
}

impl fmt::Debug for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event to append. The store fills in the rest (version, position, recorded time, and the
/// id when none is given).
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// The caller's id for this event; appending the same ids again is idempotent.
    pub id: Option<EventId>,
    pub event_type: EventType,
    /// The version of the event type's schema, 1 unless the writer says otherwise.
    pub schema_version: u32,
    pub content_type: ContentType,
    pub data: Bytes,
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event whose data is already encoded.
    pub fn new(event_type: EventType, content_type: ContentType, data: impl Into<Bytes>) -> Self {
        Self {
            id: None,
            event_type,
            schema_version: 1,
            content_type,
            data: data.into(),
            metadata: Metadata::new(),
        }
    }

    /// An event whose data is the JSON encoding of `data`.
    pub fn json(event_type: &str, data: &impl Serialize) -> Result<Self, InvalidEvent> {
        let event_type = EventType::new(event_type).map_err(InvalidEvent::Name)?;
        let data = serde_json::to_vec(data).map_err(|e| InvalidEvent::Data(e.to_string()))?;
        Ok(Self::new(event_type, ContentType::json(), data))
    }

    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = Some(id);
        self
    }

    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Bytes this event's payload takes: data, metadata (encoded as JSON) and type. This is what
    /// the store's event size limit counts.
    pub fn payload_size_bytes(&self) -> usize {
        self.data.len() + metadata_json(&self.metadata).len() + self.event_type.as_str().len()
    }
}

/// The compact JSON encoding of metadata (an empty object when there is none).
pub fn metadata_json(metadata: &Metadata) -> Vec<u8> {
    serde_json::to_vec(metadata).expect("a JSON map always serializes")
}

/// An event that could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    #[error(transparent)]
    Name(InvalidName),
    #[error("event data could not be encoded as JSON: {0}")]
    Data(String),
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub id: EventId,
    pub stream: StreamName,
    /// Place inside the stream, from 0.
    pub version: Version,
    /// Place in the whole store.
    pub position: Position,
    pub event_type: EventType,
    pub schema_version: u32,
    pub content_type: ContentType,
    pub data: Bytes,
    pub metadata: Metadata,
    /// When the store recorded the event; never decreases along the store's order.
    pub recorded_at: Timestamp,
}

impl RecordedEvent {
    /// The data parsed as JSON, when the content type says it is JSON.
    pub fn json_data<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// Whether `new` carries the same content as this stored event: the test that decides
    /// whether a retried append with the same event id is a true retry.
    pub fn has_same_content(&self, new: &NewEvent) -> bool {
        self.event_type == new.event_type
            && self.schema_version == new.schema_version
            && self.content_type == new.content_type
            && self.data == new.data
            && self.metadata == new.metadata
    }
}
