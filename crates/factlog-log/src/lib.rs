//! Factlog's embedded event store: the store API on a local, durable, append-only log.
//!
//! The log is a directory of segment files of checksummed frames (see `docs/log-format.md`).
//! One writer thread group-commits appends: many concurrent appends share one write and one
//! fsync, and each is acknowledged only once durable. An in-memory index (stream -> version ->
//! frame, event id -> frame, a sparse position/time index) is saved on close and rebuilt from
//! the log whenever it is missing or stale. On open, a torn tail is cut and corruption below it
//! is refused, naming the file and offset.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use factlog_log::{EmbeddedStore, Options};
//! use factlog_store::{EventStore, ExpectedVersion, NewEvent, StreamName};
//!
//! let store = EmbeddedStore::open("./factlog-data", Options::default())?;
//! let stream = StreamName::new("order-7")?;
//! let created = NewEvent::json("OrderCreated", &serde_json::json!({"total": 42}))?;
//! store.append(&stream, ExpectedVersion::NoStream, vec![created]).await?;
//! # Ok(()) }
//! ```

mod backup;
pub mod fault;
mod format;
mod ids;
mod index;
mod options;
mod recovery;
mod segment;
mod snapshot;
pub mod storage;
mod store;
mod verify;
mod writer;

pub use backup::{
    BACKUP_FORMAT_VERSION, BACKUP_MANIFEST_FILE, BackupError, BackupFile, BackupReport,
    CopyProgress, RestoreReport, restore, restore_with_progress,
};
pub use format::{
    FORMAT_VERSION, FRAME_BYTES_MAX, FRAME_FIXED_BYTES, SEGMENT_HEADER_BYTES, UNSYNCED_BYTES_MAX,
};
pub use options::{Clock, Options, Recovery, SyncMode, SystemClock};
pub use recovery::{IndexSource, OpenError, OpenReport};
pub use segment::segment_file_name;
pub use snapshot::SNAPSHOT_FILE;
pub use store::{EmbeddedStore, FSYNC_BUCKETS_SECONDS, LOCK_FILE, Stats};
pub use verify::{VerifyError, VerifyReport, verify};

/// Decoding of raw frame bytes, for the fuzz target.
pub mod codec {
    pub use crate::format::{DecodeError, Frame, decode_frame, decode_segment_header};
}
