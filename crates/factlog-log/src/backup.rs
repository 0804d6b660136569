//! Online backup of a running store, and restoring a backup into a new data directory.
//!
//! A backup is a copy of the log as it was at one moment, the *cut*, taken while appends go on.
//! The cut is read under the index's read lock, during which the writer cannot publish: the
//! committed end position, the end location and every segment's published length then describe
//! the same commit. Sealed segments never change again and the active segment only grows past
//! its published length, so the bytes below the cut can be copied afterwards without any lock,
//! while the writer keeps appending. Appends published after the cut are not in the backup; an
//! append is in it whole or not at all, since the writer publishes whole group commits.
//!
//! The index snapshot (`index.snap`) is copied only when it provably describes no more than the
//! cut: it is opened *before* the cut is taken (a snapshot only ever describes frames published
//! before it was saved), and its header is checked against the cut as well. Otherwise it is left
//! out, and opening the restored store rebuilds the index from the log (only slower).
//!
//! Every copied file is fsynced, then the directory, and the manifest [`BACKUP_MANIFEST_FILE`]
//! is written last (temporary file, fsync, rename, directory fsync): a directory without it is a
//! backup that did not finish, and [`restore`] refuses it.
//!
//! ```text
//! // Format: BACKUP.json, one JSON object (UTF-8)
//! {
//!   "format": "factlog-backup",        // what the file is
//!   "version": 1,                      // BACKUP_FORMAT_VERSION
//!   "logFormatVersion": 1,             // FORMAT_VERSION of the segment files
//!   "endPosition": "1235",             // the position the next event would get (a string)
//!   "events": 1234,                    // events in the backup: endPosition - 1
//!   "createdAt": "2026-11-23T10:15:00.123Z",
//!   "files": [                         // segments dense from 0 in order, then index.snap if copied
//!     {"name": "segment-00000000.seg", "bytes": 268435520, "crc32c": 3141592653},
//!     {"name": "index.snap", "bytes": 1048576, "crc32c": 2718281828}
//!   ]
//! }
//! ```

use std::io;
use std::path::Path;
use std::sync::Arc;

use factlog_store::{Position, Timestamp};
use serde_json::{Map, Value, json};

use crate::format::{FIRST_POSITION, FORMAT_VERSION, SEGMENT_HEADER_BYTES};
use crate::options::Options;
use crate::recovery::{OpenError, OpenReport};
use crate::segment::{Loc, Segment, parse_segment_file_name, segment_file_name};
use crate::snapshot::SNAPSHOT_FILE;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::store::{EmbeddedStore, LOCK_FILE, Shared};

/// The manifest of a backup, written last.
pub const BACKUP_MANIFEST_FILE: &str = "BACKUP.json";

/// The version of the manifest's format.
pub const BACKUP_FORMAT_VERSION: u64 = 1;

/// What the manifest's `format` field says.
const BACKUP_FORMAT_NAME: &str = "factlog-backup";

/// Bytes copied per read and write.
const COPY_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// The largest manifest read: about 100 bytes per segment, so far more than any store has.
const MANIFEST_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Restored files are written under this suffix and renamed into place once all are complete.
const RESTORING_SUFFIX: &str = ".restoring";

/// The index snapshot's header as far as the backup reads it (see `docs/log-format.md`): magic,
/// version, end position, end location. A snapshot of another version is left out of the
/// backup, which is always safe; `snapshot_header_matches_the_saved_snapshot` notices a change.
const SNAPSHOT_HEADER_MAGIC: [u8; 8] = *b"FLOGIDX\0";
const SNAPSHOT_HEADER_VERSION: u32 = 2;
const SNAPSHOT_HEADER_BYTES: usize = 8 + 4 + 8 + 8;

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("backup destination {dir} is not empty; a backup goes into a new or empty directory")]
    DestinationNotEmpty { dir: String },
    #[error(
        "data directory {dir} is not empty; restore into a new or empty directory (move the old store away first)"
    )]
    DataDirNotEmpty { dir: String },
    #[error(
        "{dir} holds no {BACKUP_MANIFEST_FILE}: it is not a backup, or a backup that did not finish; take the backup again"
    )]
    ManifestMissing { dir: String },
    #[error("backup manifest {path} is corrupt: {reason}")]
    ManifestCorrupt { path: String, reason: String },
    #[error(
        "backup file {file} is damaged: its CRC32C is {actual:#010x} where {BACKUP_MANIFEST_FILE} says {expected:#010x}; this backup cannot be restored"
    )]
    ChecksumMismatch {
        file: String,
        expected: u32,
        actual: u32,
    },
    #[error(
        "backup file {file} is damaged: it holds {actual} bytes where {BACKUP_MANIFEST_FILE} says {expected}; this backup cannot be restored"
    )]
    LengthMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("the restored store in {dir} does not open: {source}")]
    Open { dir: String, source: OpenError },
    #[error("the restored store in {dir} holds {found} events where the backup holds {expected}")]
    EventCountMismatch {
        dir: String,
        expected: u64,
        found: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// How far a copy is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// One file of a backup, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub name: String,
    pub bytes: u64,
    pub crc32c: u32,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The position the next event would get: every event before it is in the backup.
    pub end_position: Position,
    pub events: u64,
    pub segments: u32,
    /// Bytes copied, segments and snapshot together.
    pub bytes: u64,
    /// Whether the index snapshot was copied (otherwise a restore rebuilds the index).
    pub index_snapshot: bool,
    pub created_at: Timestamp,
    pub files: Vec<BackupFile>,
}

/// What a restore copied and what opening the restored store found.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub end_position: Position,
    pub events: u64,
    pub segments: u32,
    pub bytes: u64,
    /// When the backup was taken.
    pub created_at: Timestamp,
    pub open: OpenReport,
}

/// The log at one moment: what a backup copies.
#[derive(Debug)]
struct Cut {
    end_position: u64,
    end: Loc,
    /// Every segment up to the one the cut ends in, with the bytes of it to copy.
    segments: Vec<(Arc<Segment>, u64)>,
}

impl Cut {
    /// Takes the cut. The writer publishes (index, then the active segment's published length)
    /// under the index's write lock, so under its read lock they agree. The lock is held only
    /// while the segment list is copied.
    fn take(shared: &Shared) -> Self {
        // The lock order of `EmbeddedStore::stats`: index, then segments.
        let index = shared.index.read();
        let segments = shared.segments.read();
        let end = index.end;
        let last = end.segment() as usize;
        // After a roll the segment list may already hold a new, empty segment that no published
        // event is in yet: it is not part of the cut.
        assert!(last < segments.len(), "the end lies in a known segment");
        assert_eq!(
            segments[last].published_len(),
            end.offset(),
            "the index and the active segment are published together"
        );
        let segments = segments[..=last]
            .iter()
            .map(|seg| {
                let len = if seg.id as usize == last {
                    end.offset()
                } else {
                    seg.published_len()
                };
                (seg.clone(), len)
            })
            .collect();
        Self {
            end_position: index.end_position,
            end,
            segments,
        }
    }
}

impl EmbeddedStore {
    /// Takes an online, consistent backup of the store into `dest` (which must not exist or be
    /// empty) while appends continue. See [`EmbeddedStore::backup_with_progress`].
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, BackupError> {
        self.backup_with_progress(dest, &mut |_| {})
    }

    /// Takes an online, consistent backup: every event committed when it starts, none that is
    /// committed later, and never part of an append. The writer is held up only while the
    /// segment list is read; the copy runs without locks. `progress` is called once the cut is
    /// taken and after every chunk copied. This is blocking file I/O: from async code, run it
    /// on a blocking thread.
    pub fn backup_with_progress(
        &self,
        dest: &Path,
        progress: &mut dyn FnMut(CopyProgress),
    ) -> Result<BackupReport, BackupError> {
        let shared = self.shared();
        let storage = &*shared.options.storage;
        if !dir_is_empty(storage, dest)? {
            return Err(BackupError::DestinationNotEmpty {
                dir: dest.display().to_string(),
            });
        }
        storage.create_dir_all(dest).map_err(io_err(dest))?;

        // Opened before the cut, the snapshot describes no more than the cut: it only ever
        // describes frames published before it was saved.
        let snapshot_path = shared.dir.join(SNAPSHOT_FILE);
        let snapshot = match storage.open(&snapshot_path, OpenMode::Read) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&snapshot_path)(e)),
        };
        let cut = Cut::take(shared);
        let snapshot = match snapshot {
            Some(file) => {
                let len = file.size().map_err(io_err(&snapshot_path))?;
                snapshot_within(&*file, len, &cut)
                    .map_err(io_err(&snapshot_path))?
                    .then_some((file, len))
            }
            None => None,
        };

        let mut done = 0;
        let total = cut.segments.iter().map(|(_, len)| len).sum::<u64>()
            + snapshot.as_ref().map_or(0, |(_, len)| *len);
        progress(CopyProgress {
            bytes_done: 0,
            bytes_total: total,
        });
        let mut on_chunk = |n: u64| {
            done += n;
            progress(CopyProgress {
                bytes_done: done,
                bytes_total: total,
            });
        };
        let mut files = Vec::with_capacity(cut.segments.len() + 1);
        for (seg, len) in &cut.segments {
            let name = segment_file_name(seg.id);
            let to = dest.join(&name);
            let crc = copy_file(storage, &*seg.file, &seg.path, *len, &to, &mut on_chunk)?;
            files.push(BackupFile {
                name,
                bytes: *len,
                crc32c: crc,
            });
        }
        if let Some((file, len)) = &snapshot {
            let to = dest.join(SNAPSHOT_FILE);
            let crc = copy_file(storage, &**file, &snapshot_path, *len, &to, &mut on_chunk)?;
            files.push(BackupFile {
                name: SNAPSHOT_FILE.into(),
                bytes: *len,
                crc32c: crc,
            });
        }
        storage.sync_dir(dest).map_err(io_err(dest))?;

        let report = BackupReport {
            end_position: Position::from_raw(cut.end_position),
            events: cut.end_position - FIRST_POSITION,
            segments: cut.segments.len() as u32,
            bytes: total,
            index_snapshot: snapshot.is_some(),
            created_at: shared.options.clock.now(),
            files,
        };
        write_manifest(storage, dest, &report)?;
        Ok(report)
    }
}

/// Whether the snapshot in `file` describes no more of the log than `cut`, judging by its
/// header. `false` for a file that is not a snapshot of the known version.
fn snapshot_within(file: &dyn StorageFile, len: u64, cut: &Cut) -> io::Result<bool> {
    if len < SNAPSHOT_HEADER_BYTES as u64 {
        return Ok(false);
    }
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    file.read_exact_at(&mut header, 0)?;
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    Ok(header[..8] == SNAPSHOT_HEADER_MAGIC
        && version == SNAPSHOT_HEADER_VERSION
        && u64_at(12) <= cut.end_position
        && Loc::from_raw(u64_at(20)) <= cut.end)
}

/// Whether `dir` is empty or does not exist.
fn dir_is_empty(storage: &dyn Storage, dir: &Path) -> Result<bool, BackupError> {
    match storage.list(dir) {
        Ok(entries) => Ok(entries.is_empty()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Copies the first `len` bytes of `from` into the new file `to`, fsyncs it, and returns the
/// CRC32C of what it copied.
fn copy_file(
    storage: &dyn Storage,
    from: &dyn StorageFile,
    from_path: &Path,
    len: u64,
    to: &Path,
    on_chunk: &mut dyn FnMut(u64),
) -> Result<u32, BackupError> {
    let out = storage.open(to, OpenMode::CreateNew).map_err(io_err(to))?;
    let mut buf = vec![0u8; COPY_CHUNK_BYTES.min(len) as usize];
    let (mut offset, mut crc) = (0u64, 0u32);
    while offset < len {
        let n = COPY_CHUNK_BYTES.min(len - offset);
        let chunk = &mut buf[..n as usize];
        from.read_exact_at(chunk, offset)
            .map_err(io_err(from_path))?;
        crc = crc32c::crc32c_append(crc, chunk);
        out.write_all_at(chunk, offset).map_err(io_err(to))?;
        offset += n;
        on_chunk(n);
    }
    out.sync_data().map_err(io_err(to))?;
    Ok(crc)
}

// Format: the manifest, BACKUP.json (see the module docs).
fn manifest_json(report: &BackupReport) -> Value {
    let files: Vec<Value> = report
        .files
        .iter()
        .map(|f| json!({"name": f.name, "bytes": f.bytes, "crc32c": f.crc32c}))
        .collect();
    json!({
        "format": BACKUP_FORMAT_NAME,
        "version": BACKUP_FORMAT_VERSION,
        "logFormatVersion": FORMAT_VERSION,
        "endPosition": report.end_position.to_string(),
        "events": report.events,
        "createdAt": report.created_at.to_rfc3339_millis(),
        "files": files,
    })
}

/// Writes the manifest atomically: temporary file, fsync, rename, directory fsync.
fn write_manifest(
    storage: &dyn Storage,
    dest: &Path,
    report: &BackupReport,
) -> Result<(), BackupError> {
    let tmp = dest.join(format!("{BACKUP_MANIFEST_FILE}.tmp"));
    let path = dest.join(BACKUP_MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(&manifest_json(report))
        .expect("a JSON value always serializes");
    text.push('\n');
    let file = storage
        .open(&tmp, OpenMode::CreateNew)
        .map_err(io_err(&tmp))?;
    file.write_all_at(text.as_bytes(), 0)
        .and_then(|()| file.sync_data())
        .map_err(io_err(&tmp))?;
    drop(file);
    storage.rename(&tmp, &path).map_err(io_err(&path))?;
    storage.sync_dir(dest).map_err(io_err(dest))
}

/// A manifest read back and checked.
#[derive(Debug)]
struct Manifest {
    end_position: u64,
    events: u64,
    created_at: Timestamp,
    /// Segments dense from 0, then the snapshot if there is one.
    files: Vec<BackupFile>,
}

fn read_manifest(storage: &dyn Storage, backup_dir: &Path) -> Result<Manifest, BackupError> {
    let path = backup_dir.join(BACKUP_MANIFEST_FILE);
    let file = match storage.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackupError::ManifestMissing {
                dir: backup_dir.display().to_string(),
            });
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let corrupt = |reason: String| BackupError::ManifestCorrupt {
        path: path.display().to_string(),
        reason,
    };
    let len = file.size().map_err(io_err(&path))?;
    if len > MANIFEST_BYTES_MAX {
        return Err(corrupt(format!(
            "it is {len} bytes long, more than any manifest ({MANIFEST_BYTES_MAX})"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(io_err(&path))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not JSON ({e})")))?;
    parse_manifest(&value).map_err(corrupt)
}

fn parse_manifest(value: &Value) -> Result<Manifest, String> {
    let object = value.as_object().ok_or("not a JSON object")?;
    let field = |name: &str| object.get(name).ok_or(format!("no \"{name}\""));
    let number = |name: &str| {
        field(name)?
            .as_u64()
            .ok_or(format!("\"{name}\" is not a whole number"))
    };
    let text = |name: &str| {
        field(name)?
            .as_str()
            .ok_or(format!("\"{name}\" is not a string"))
    };
    if text("format")? != BACKUP_FORMAT_NAME {
        return Err(format!("\"format\" is not \"{BACKUP_FORMAT_NAME}\""));
    }
    let version = number("version")?;
    if version != BACKUP_FORMAT_VERSION {
        return Err(format!(
            "backup format version {version}; this version of Factlog reads version {BACKUP_FORMAT_VERSION}"
        ));
    }
    let log_version = number("logFormatVersion")?;
    if log_version != u64::from(FORMAT_VERSION) {
        return Err(format!(
            "log format version {log_version}; this version of Factlog reads version {FORMAT_VERSION}"
        ));
    }
    let end_position: u64 = text("endPosition")?
        .parse()
        .map_err(|_| "\"endPosition\" is not a position")?;
    let events = number("events")?;
    if end_position.checked_sub(FIRST_POSITION) != Some(events) {
        return Err(format!(
            "{events} events do not end at position {end_position}"
        ));
    }
    let created_at = Timestamp::parse_rfc3339(text("createdAt")?).map_err(|e| e.to_string())?;
    let files = field("files")?
        .as_array()
        .ok_or("\"files\" is not an array")?
        .iter()
        .map(parse_file)
        .collect::<Result<Vec<_>, _>>()?;
    // Segments dense from 0, then at most the snapshot: nothing else may be written into a
    // data directory, and no name may lead out of it.
    let segments = files.iter().take_while(|f| f.name != SNAPSHOT_FILE).count();
    if segments == 0 {
        return Err("it lists no segment file".into());
    }
    for (i, f) in files.iter().enumerate() {
        let expected = if i < segments {
            segment_file_name(i as u32)
        } else if i == segments {
            SNAPSHOT_FILE.to_owned()
        } else {
            return Err(format!("{} is listed after {SNAPSHOT_FILE}", f.name));
        };
        if f.name != expected {
            return Err(format!("{:?} is listed where {expected} was due", f.name));
        }
        if i < segments && f.bytes < SEGMENT_HEADER_BYTES as u64 {
            return Err(format!("{} is shorter than a segment header", f.name));
        }
    }
    debug_assert!(
        files[..segments]
            .iter()
            .all(|f| parse_segment_file_name(Path::new(&f.name)).is_some())
    );
    Ok(Manifest {
        end_position,
        events,
        created_at,
        files,
    })
}

fn parse_file(value: &Value) -> Result<BackupFile, String> {
    let object: &Map<String, Value> = value.as_object().ok_or("a file is not a JSON object")?;
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a file has no \"name\"")?;
    let number = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_u64)
            .ok_or(format!("file {name} has no whole number \"{field}\""))
    };
    Ok(BackupFile {
        name: name.to_owned(),
        bytes: number("bytes")?,
        crc32c: u32::try_from(number("crc32c")?)
            .map_err(|_| format!("file {name} has a \"crc32c\" above 32 bits"))?,
    })
}

/// Restores the backup in `backup_dir` into `data_dir` (which must not exist or be empty) with
/// the default options. See [`restore_with_progress`].
pub fn restore(backup_dir: &Path, data_dir: &Path) -> Result<RestoreReport, BackupError> {
    restore_with_progress(backup_dir, data_dir, Options::default(), &mut |_| {})
}

/// Restores the backup in `backup_dir` into `data_dir`, which must not exist or be empty.
///
/// The manifest is checked first, then every file is copied and checked against the manifest's
/// length and CRC32C as it is copied (a damaged backup is refused, naming the file, and the
/// files copied so far are removed). Files are copied under temporary names and fsynced, then
/// renamed into place with the first segment last: until then the directory does not open as a
/// store with fewer events. Finally the store is opened (with `options`), to prove it works,
/// and closed again. The data directory's lock is held throughout.
pub fn restore_with_progress(
    backup_dir: &Path,
    data_dir: &Path,
    options: Options,
    progress: &mut dyn FnMut(CopyProgress),
) -> Result<RestoreReport, BackupError> {
    let storage = options.storage.clone();
    let storage = &*storage;
    let manifest = read_manifest(storage, backup_dir)?;
    if !dir_is_empty(storage, data_dir)? {
        return Err(BackupError::DataDirNotEmpty {
            dir: data_dir.display().to_string(),
        });
    }
    storage.create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let lock_path = data_dir.join(LOCK_FILE);
    let lock = storage.lock(&lock_path).map_err(io_err(&lock_path))?;

    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    progress(CopyProgress {
        bytes_done: 0,
        bytes_total: total,
    });
    let mut done = 0;
    let mut copied = Vec::with_capacity(manifest.files.len());
    let copy = (|| {
        for f in &manifest.files {
            let from = backup_dir.join(&f.name);
            let to = data_dir.join(format!("{}{RESTORING_SUFFIX}", f.name));
            let file = storage.open(&from, OpenMode::Read).map_err(io_err(&from))?;
            let actual = file.size().map_err(io_err(&from))?;
            if actual != f.bytes {
                return Err(BackupError::LengthMismatch {
                    file: from.display().to_string(),
                    expected: f.bytes,
                    actual,
                });
            }
            copied.push(to.clone());
            let crc = copy_file(storage, &*file, &from, f.bytes, &to, &mut |n| {
                done += n;
                progress(CopyProgress {
                    bytes_done: done,
                    bytes_total: total,
                });
            })?;
            if crc != f.crc32c {
                return Err(BackupError::ChecksumMismatch {
                    file: from.display().to_string(),
                    expected: f.crc32c,
                    actual: crc,
                });
            }
        }
        storage.sync_dir(data_dir).map_err(io_err(data_dir))
    })();
    if let Err(e) = copy {
        // The directory was empty: what is in it now is ours, and of no use.
        for path in copied.iter().chain([&lock_path]) {
            let _ = storage.remove_file(path);
        }
        let _ = storage.sync_dir(data_dir);
        return Err(e);
    }

    // The first segment last: a directory without it does not open (a hole in the log), so a
    // crash during the renames cannot leave a store that opens with part of the log.
    let renames = manifest.files.iter().skip(1).chain(manifest.files.first());
    for f in renames {
        let from = data_dir.join(format!("{}{RESTORING_SUFFIX}", f.name));
        let to = data_dir.join(&f.name);
        storage.rename(&from, &to).map_err(io_err(&to))?;
    }
    storage.sync_dir(data_dir).map_err(io_err(data_dir))?;
    drop(lock);

    let store = EmbeddedStore::open(data_dir, options).map_err(|source| BackupError::Open {
        dir: data_dir.display().to_string(),
        source,
    })?;
    let open = store.open_report().clone();
    store.close();
    if open.events != manifest.events {
        return Err(BackupError::EventCountMismatch {
            dir: data_dir.display().to_string(),
            expected: manifest.events,
            found: open.events,
        });
    }
    Ok(RestoreReport {
        end_position: Position::from_raw(manifest.end_position),
        events: manifest.events,
        segments: open.segments,
        bytes: total,
        created_at: manifest.created_at,
        open,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::storage::FsStorage;

    /// The backup reads the snapshot's header itself; this fails when the snapshot format
    /// changes, so that the backup is changed with it.
    #[test]
    fn snapshot_header_matches_the_saved_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::new(Loc::new(0, SEGMENT_HEADER_BYTES as u64));
        index.end_position = 42;
        index.end = Loc::new(3, 4096);
        crate::snapshot::save(&FsStorage, dir.path(), &index).unwrap();
        let file = FsStorage
            .open(&dir.path().join(SNAPSHOT_FILE), OpenMode::Read)
            .unwrap();
        let len = file.size().unwrap();
        let cut = |end_position, end| Cut {
            end_position,
            end,
            segments: Vec::new(),
        };
        assert!(snapshot_within(&*file, len, &cut(42, Loc::new(3, 4096))).unwrap());
        assert!(snapshot_within(&*file, len, &cut(50, Loc::new(4, 64))).unwrap());
        assert!(!snapshot_within(&*file, len, &cut(41, Loc::new(3, 4096))).unwrap());
        assert!(!snapshot_within(&*file, len, &cut(42, Loc::new(3, 4000))).unwrap());
    }

    #[test]
    fn manifest_round_trips_and_rejects_foreign_names() {
        let report = BackupReport {
            end_position: Position::from_raw(11),
            events: 10,
            segments: 2,
            bytes: 300,
            index_snapshot: true,
            created_at: Timestamp::from_unix_micros(1_700_000_000_123_000),
            files: vec![
                BackupFile {
                    name: segment_file_name(0),
                    bytes: 100,
                    crc32c: 1,
                },
                BackupFile {
                    name: segment_file_name(1),
                    bytes: 100,
                    crc32c: u32::MAX,
                },
                BackupFile {
                    name: SNAPSHOT_FILE.into(),
                    bytes: 100,
                    crc32c: 3,
                },
            ],
        };
        let mut value = manifest_json(&report);
        let manifest = parse_manifest(&value).unwrap();
        assert_eq!(manifest.files, report.files);
        assert_eq!(manifest.end_position, 11);
        assert_eq!(manifest.events, 10);
        assert_eq!(manifest.created_at, report.created_at);

        value["files"][1]["name"] = json!("../segment-00000001.seg");
        let error = parse_manifest(&value).unwrap_err();
        assert!(error.contains("../segment-00000001.seg"), "{error}");
        value["files"][1]["name"] = json!(segment_file_name(2));
        assert!(parse_manifest(&value).is_err(), "a hole in the segments");
        value["files"] = json!([]);
        assert!(parse_manifest(&value).is_err(), "no segment");
    }
}
