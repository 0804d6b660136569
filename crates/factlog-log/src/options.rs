//! How a store is opened: limits, durability, and the parts tests replace (disk, clock).

use std::fmt::Debug;
use std::sync::Arc;

use factlog_store::Timestamp;

use crate::format::{FRAME_BYTES_MAX, UNSYNCED_BYTES_MAX};
use crate::storage::{FsStorage, Storage};

/// Where the store gets the time it records events at.
pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every append is acknowledged only after its data is fsynced (shared by the appends of one
    /// group commit). The default, and the only mode that keeps "acknowledged means durable".
    #[default]
    Durable,
    /// Bulk import: appends are acknowledged once written, and the log is fsynced only every
    /// `write_batch_bytes_max` bytes and on close. A crash may lose the last acknowledged appends
    /// (never more than the unsynced window, and never a partial append). Opt-in, and reported in
    /// [`crate::Stats::sync_mode`].
    BulkImport,
}

/// What a recovery does with corruption below the durable part of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Refuse to open, naming the file and the byte offset.
    #[default]
    Strict,
    /// Truncate the log at the first bad record, dropping everything after it, and say so
    /// loudly. For a store whose damage was inspected with `factlog verify`.
    TruncateCorruption,
}

/// Options of [`crate::EmbeddedStore::open`]. Field names carry their unit last.
#[derive(Debug, Clone)]
pub struct Options {
    /// A segment file is closed and a new one started beyond this size.
    pub segment_bytes_max: u64,
    /// One event's data, metadata and type, in bytes.
    pub event_size_bytes_max: usize,
    /// Events in one append call (all streams of a multi-stream append together).
    pub append_events_max: usize,
    /// Bytes of all events of one append call.
    pub append_size_bytes_max: usize,
    /// Bytes one group commit writes and fsyncs at once.
    pub write_batch_bytes_max: usize,
    /// Appends waiting for the writer; further appends wait for room (back-pressure).
    pub write_queue_appends_max: usize,
    /// Events a subscription reads from storage at a time.
    pub subscription_batch_events_max: usize,
    /// Bytes of log written between index snapshots while the store runs. Opening after a crash
    /// loads the last snapshot and scans the log after it, so this bounds that scan. Each
    /// checkpoint copies the index (briefly holding the writer) and saves it on its own thread.
    pub checkpoint_bytes: u64,
    pub sync_mode: SyncMode,
    pub recovery: Recovery,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            segment_bytes_max: 256 * 1024 * 1024,
            event_size_bytes_max: 1024 * 1024,
            append_events_max: 10_000,
            append_size_bytes_max: 8 * 1024 * 1024,
            write_batch_bytes_max: 4 * 1024 * 1024,
            write_queue_appends_max: 4096,
            subscription_batch_events_max: 1024,
            checkpoint_bytes: 512 * 1024 * 1024,
            sync_mode: SyncMode::Durable,
            recovery: Recovery::Strict,
            storage: Arc::new(FsStorage),
            clock: Arc::new(SystemClock),
        }
    }
}

impl Options {
    /// Checks the options against the format's fixed bounds.
    pub fn validate(&self) -> Result<(), String> {
        let window = UNSYNCED_BYTES_MAX as usize;
        if self.write_batch_bytes_max == 0 || self.write_batch_bytes_max > window {
            return Err(format!("write_batch_bytes_max must be 1..={window}"));
        }
        if self.append_size_bytes_max == 0 || self.append_size_bytes_max > window {
            return Err(format!("append_size_bytes_max must be 1..={window}"));
        }
        if self.event_size_bytes_max == 0 || self.event_size_bytes_max > FRAME_BYTES_MAX / 2 {
            return Err(format!(
                "event_size_bytes_max must be 1..={}",
                FRAME_BYTES_MAX / 2
            ));
        }
        let segment_min = 4096;
        if !(segment_min..=u64::from(u32::MAX)).contains(&self.segment_bytes_max) {
            return Err(format!(
                "segment_bytes_max must be {segment_min}..={}",
                u32::MAX
            ));
        }
        if self.append_events_max == 0 || self.write_queue_appends_max == 0 {
            return Err("append_events_max and write_queue_appends_max must be at least 1".into());
        }
        if self.checkpoint_bytes < 4096 {
            return Err("checkpoint_bytes must be at least 4096".into());
        }
        if self.subscription_batch_events_max == 0 {
            return Err("subscription_batch_events_max must be at least 1".into());
        }
        Ok(())
    }
}
