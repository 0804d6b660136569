//! The in-memory index: stream -> version -> location, event id -> location, and a sparse
//! position/time -> location index.
//!
//! It is derived from the log and can always be rebuilt by scanning it; [`crate::snapshot`]
//! saves it on close so that opening a large store does not have to.

use std::collections::BTreeMap;

use factlog_store::{StreamName, Timestamp};

use crate::format::FIRST_POSITION;
use crate::ids::IdIndex;
use crate::segment::Loc;

/// A sparse entry is added at least every this many bytes of log, and at every segment start.
pub const SPARSE_INTERVAL_BYTES: u64 = 4096;

/// One stream: the location of each version.
#[derive(Debug, Default, Clone)]
pub struct StreamEntry {
    /// `locs[v]` is where version `v` is.
    pub locs: Vec<Loc>,
}

impl StreamEntry {
    pub fn last_version(&self) -> Option<u64> {
        (self.locs.len() as u64).checked_sub(1)
    }
}

/// Where the event at `position`, recorded at `recorded_at`, is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseEntry {
    pub position: u64,
    pub recorded_at: Timestamp,
    pub loc: Loc,
}

/// Everything the store knows about the published (durable) part of the log.
#[derive(Debug, Clone)]
pub struct Index {
    pub streams: BTreeMap<StreamName, StreamEntry>,
    /// Streams per category.
    pub categories: BTreeMap<String, u64>,
    pub ids: IdIndex,
    pub sparse: Vec<SparseEntry>,
    /// The position the next event will get.
    pub end_position: u64,
    /// Just after the last published frame.
    pub end: Loc,
    pub last_recorded_at: Timestamp,
    /// Bytes of log since the last sparse entry.
    pub bytes_since_sparse: u64,
}

impl Index {
    pub fn new(end: Loc) -> Self {
        Self {
            streams: BTreeMap::new(),
            categories: BTreeMap::new(),
            ids: IdIndex::default(),
            sparse: Vec::new(),
            end_position: FIRST_POSITION,
            end,
            last_recorded_at: Timestamp::UNIX_EPOCH,
            bytes_since_sparse: 0,
        }
    }

    /// How many events the index holds.
    pub fn events(&self) -> u64 {
        self.end_position - FIRST_POSITION
    }

    /// The last version of `stream`, or `None` when it does not exist.
    pub fn last_version(&self, stream: &StreamName) -> Option<u64> {
        self.last_version_of(stream.as_str())
    }

    /// [`Index::last_version`] by the name's text.
    pub fn last_version_of(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(StreamEntry::last_version)
    }

    /// Adds a frame that was just made durable. Frames must come in log order, and the stream
    /// name of a new stream must be valid (the writer's are; recovery checks them).
    pub fn add(&mut self, event: &IndexedEvent<'_>) {
        debug_assert_eq!(
            event.position, self.end_position,
            "frames are indexed in order"
        );
        debug_assert!(event.loc >= self.end, "locations only grow");
        let starts_segment = self
            .sparse
            .last()
            .is_none_or(|e| e.loc.segment() != event.loc.segment());
        if starts_segment || self.bytes_since_sparse >= SPARSE_INTERVAL_BYTES {
            self.sparse.push(SparseEntry {
                position: event.position,
                recorded_at: event.recorded_at,
                loc: event.loc,
            });
            self.bytes_since_sparse = 0;
        }
        self.bytes_since_sparse += event.frame_len;
        match self.streams.get_mut(event.stream) {
            Some(entry) => {
                debug_assert_eq!(entry.locs.len() as u64, event.version);
                entry.locs.push(event.loc);
            }
            None => {
                debug_assert_eq!(event.version, 0);
                let name = StreamName::new(event.stream).expect("new stream names are checked");
                *self
                    .categories
                    .entry(name.category().to_owned())
                    .or_default() += 1;
                self.streams.insert(
                    name,
                    StreamEntry {
                        locs: vec![event.loc],
                    },
                );
            }
        }
        self.ids.insert(event.id, event.loc);
        self.end_position = event.position + 1;
        self.end = Loc::new(event.loc.segment(), event.loc.offset() + event.frame_len);
        self.last_recorded_at = self.last_recorded_at.max(event.recorded_at);
    }

    /// The sparse entry at or before `position`.
    pub fn sparse_at_or_before_position(&self, position: u64) -> Option<SparseEntry> {
        // A position before the first entry (such as `Position::START`) starts at the first.
        let i = self.sparse.partition_point(|e| e.position <= position);
        self.sparse.get(i.saturating_sub(1)).copied()
    }

    /// The last sparse entry recorded at or before `t`, and the entry after it.
    pub fn sparse_around_time(&self, t: Timestamp) -> (Option<SparseEntry>, Option<SparseEntry>) {
        let i = self.sparse.partition_point(|e| e.recorded_at <= t);
        (
            i.checked_sub(1).map(|i| self.sparse[i]),
            self.sparse.get(i).copied(),
        )
    }
}

/// What the index needs to know of one frame.
#[derive(Debug)]
pub struct IndexedEvent<'a> {
    pub stream: &'a str,
    pub id: u128,
    pub version: u64,
    pub position: u64,
    pub recorded_at: Timestamp,
    pub loc: Loc,
    pub frame_len: u64,
}
