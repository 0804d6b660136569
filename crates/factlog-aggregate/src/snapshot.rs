//! Snapshots: a cache of an aggregate's state at a version, so loading does not replay every
//! event.
//!
//! A snapshot is derived data. The repository checks every snapshot before trusting it (its
//! aggregate type, its snapshot format version, and that the event it was taken after is still
//! the stream's event at that version) and falls back to replaying the events when any check
//! fails; deleting snapshots therefore changes nothing but speed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use factlog_store::{EventId, StreamName, Version};
use serde::{Deserialize, Serialize};

/// When the repository takes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// Never: every load replays the stream.
    #[default]
    Never,
    /// Whenever at least this many events were replayed on top of the last snapshot.
    EveryEvents(u64),
}

impl SnapshotPolicy {
    /// Whether a state that is `events_since` events past its last snapshot should be saved.
    pub fn is_due(self, events_since: u64) -> bool {
        match self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::EveryEvents(n) => events_since >= n.max(1),
        }
    }
}

/// An aggregate's state after the event at `version` of `stream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The aggregate's category (`Aggregate::CATEGORY`).
    pub aggregate_type: String,
    pub stream: String,
    /// The version of the last event folded into `state`.
    pub version: Version,
    /// The id of that event: a snapshot whose event is not in the stream is ignored.
    pub last_event_id: EventId,
    /// The format of `state` (`Aggregate::SNAPSHOT_VERSION`).
    pub snapshot_version: u32,
    /// The state, as JSON.
    pub state: serde_json::Value,
}

/// Where snapshots are kept. One snapshot per stream: saving replaces the previous one.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    async fn load(&self, stream: &StreamName) -> Result<Option<Snapshot>, SnapshotError>;
    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError>;
    async fn delete(&self, stream: &StreamName) -> Result<(), SnapshotError>;
}

/// A snapshot store that failed. Snapshots are a cache: the repository logs these errors and
/// goes on without the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot store: {0}")]
pub struct SnapshotError(pub String);

/// Snapshots in memory, for tests and short-lived processes.
#[derive(Debug, Default)]
pub struct InMemorySnapshots {
    snapshots: Mutex<HashMap<String, Snapshot>>,
}

impl InMemorySnapshots {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many snapshots are held.
    pub fn len(&self) -> usize {
        self.snapshots.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every snapshot.
    pub fn clear(&self) {
        self.snapshots.lock().expect("not poisoned").clear();
    }
}

#[async_trait]
impl SnapshotStore for InMemorySnapshots {
    async fn load(&self, stream: &StreamName) -> Result<Option<Snapshot>, SnapshotError> {
        let snapshots = self.snapshots.lock().expect("not poisoned");
        Ok(snapshots.get(stream.as_str()).cloned())
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let mut snapshots = self.snapshots.lock().expect("not poisoned");
        snapshots.insert(snapshot.stream.clone(), snapshot);
        Ok(())
    }

    async fn delete(&self, stream: &StreamName) -> Result<(), SnapshotError> {
        self.snapshots
            .lock()
            .expect("not poisoned")
            .remove(stream.as_str());
        Ok(())
    }
}

/// Snapshots as files in a directory, one per stream.
///
/// Format: the 4 bytes `FLSN`, the CRC32C of the body (u32, little-endian), then the body, the
/// snapshot as JSON. A file is written beside its final name and renamed over it, so a reader
/// sees the old snapshot or the new one; a torn or damaged file fails its CRC and is treated as
/// no snapshot. File names are a UUIDv5 of the stream name (stream names can be longer than a
/// file name and hold any character); the body names its stream, so a collision is detected.
#[derive(Debug, Clone)]
pub struct FileSnapshots {
    dir: PathBuf,
}

const FILE_MAGIC: &[u8; 4] = b"FLSN";
const FILE_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x1f5e_77a0_3c4d_4e8b_9a61_0b2c_d3e4_f5a6);

impl FileSnapshots {
    /// Keeps snapshots in `dir`, creating it when missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, SnapshotError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| {
            SnapshotError(format!("cannot create directory {}: {e}", dir.display()))
        })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, stream: &str) -> PathBuf {
        let name = uuid::Uuid::new_v5(&FILE_NAMESPACE, stream.as_bytes());
        self.dir.join(format!("{name}.snap"))
    }

    // Format: magic "FLSN" | crc32c(body) u32 LE | body (JSON)
    fn encode(snapshot: &Snapshot) -> Vec<u8> {
        let body = serde_json::to_vec(snapshot).expect("a snapshot serializes");
        let mut bytes = Vec::with_capacity(8 + body.len());
        bytes.extend_from_slice(FILE_MAGIC);
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    fn decode(bytes: &[u8], stream: &str) -> Option<Snapshot> {
        if bytes.len() < 8 || &bytes[..4] != FILE_MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let body = &bytes[8..];
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let snapshot: Snapshot = serde_json::from_slice(body).ok()?;
        (snapshot.stream == stream).then_some(snapshot)
    }
}

#[async_trait]
impl SnapshotStore for FileSnapshots {
    async fn load(&self, stream: &StreamName) -> Result<Option<Snapshot>, SnapshotError> {
        let path = self.path(stream.as_str());
        let stream = stream.as_str().to_owned();
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => {
                let snapshot = Self::decode(&bytes, &stream);
                if snapshot.is_none() {
                    tracing::warn!(path = %path.display(), "ignoring a damaged snapshot file");
                }
                Ok(snapshot)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SnapshotError(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        })
        .await
        .map_err(|e| SnapshotError(e.to_string()))?
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let path = self.path(&snapshot.stream);
        let bytes = Self::encode(&snapshot);
        tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
            let write = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
            write.map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                SnapshotError(format!("cannot write {}: {e}", path.display()))
            })
        })
        .await
        .map_err(|e| SnapshotError(e.to_string()))?
    }

    async fn delete(&self, stream: &StreamName) -> Result<(), SnapshotError> {
        let path = self.path(stream.as_str());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SnapshotError(format!(
                "cannot delete {}: {e}",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(stream: &str, version: Version) -> Snapshot {
        Snapshot {
            aggregate_type: "account".into(),
            stream: stream.into(),
            version,
            last_event_id: EventId::new_v7(),
            snapshot_version: 1,
            state: serde_json::json!({"balance": version}),
        }
    }

    #[tokio::test]
    async fn files_round_trip_replace_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSnapshots::open(dir.path().join("snapshots")).unwrap();
        let stream = StreamName::new("account-1").unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), None);
        let first = snapshot("account-1", 4);
        store.save(first.clone()).await.unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), Some(first));
        let second = snapshot("account-1", 9);
        store.save(second.clone()).await.unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), Some(second));
        store.delete(&stream).await.unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), None);
        store.delete(&stream).await.unwrap();
    }

    #[tokio::test]
    async fn damaged_files_are_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSnapshots::open(dir.path()).unwrap();
        let stream = StreamName::new("account-1").unwrap();
        store.save(snapshot("account-1", 4)).await.unwrap();
        let path = store.path("account-1");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), None);
        std::fs::write(&path, &bytes[..3]).unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), None);
        // A file holding another stream's snapshot (a name collision) is not this stream's.
        std::fs::write(&path, FileSnapshots::encode(&snapshot("account-2", 1))).unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), None);
    }

    #[test]
    fn policy() {
        assert!(!SnapshotPolicy::Never.is_due(1_000_000));
        assert!(!SnapshotPolicy::EveryEvents(100).is_due(99));
        assert!(SnapshotPolicy::EveryEvents(100).is_due(100));
        assert!(SnapshotPolicy::EveryEvents(0).is_due(1));
    }
}
