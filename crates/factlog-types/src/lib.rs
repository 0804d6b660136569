//! Value types shared by every part of Factlog.
//!
//! Each type can only hold a valid value: a [`StreamName`] is always 1..=255 bytes of UTF-8
//! without control characters, an [`EventType`] likewise, an [`ExpectedVersion`] is one of four
//! cases. Code that receives these types does not validate them again.
//!
//! Words are never overloaded: a **version** is a place inside one stream (0-based), a
//! **position** is a place in the whole store, ordered and opaque to callers.
//!
//! ```
//! use factlog_types::{NewEvent, StreamName};
//!
//! let stream = StreamName::new("account-42").unwrap();
//! assert_eq!(stream.category(), "account");
//! let event = NewEvent::json("MoneyDeposited", &serde_json::json!({"amount": 10})).unwrap();
//! assert_eq!(event.event_type.as_str(), "MoneyDeposited");
//! ```

mod event;
mod expected;
mod ids;
mod names;
mod position;
mod timestamp;

pub use event::{ContentType, InvalidEvent, Metadata, NewEvent, RecordedEvent, metadata_json};
pub use expected::ExpectedVersion;
pub use ids::EventId;
pub use names::{EventType, InvalidName, NAME_BYTES_MAX, StreamName};
pub use position::Position;
pub use timestamp::{InvalidTimestamp, Timestamp};

/// A place inside one stream: the first event of a stream has version 0.
pub type Version = u64;
