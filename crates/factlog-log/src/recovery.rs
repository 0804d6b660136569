//! Opening the log: find the segments, load or rebuild the index, check what may be torn, and
//! cut a torn tail.
//!
//! What is checked on open: every frame of the active (last) segment, and every frame after the
//! index snapshot. Sealed segments below the snapshot are checked by every read (each frame's
//! CRC) and by `factlog verify`.
//!
//! A bad frame is a **torn tail** when it lies within the last [`UNSYNCED_BYTES_MAX`] bytes of
//! the last segment: the writer never has more than that written and not fsynced, so a crash can
//! only damage that much. The tail is cut at the end of the last complete append and the bytes
//! dropped are reported. A bad frame anywhere else is **corruption**: the store refuses to open
//! and names the file and offset, unless [`Recovery::TruncateCorruption`] is chosen.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use factlog_store::{StreamName, Timestamp};
use hashbrown::HashMap;

use crate::format::{
    self, FIRST_POSITION, FLAG_COMMIT, SEGMENT_HEADER_BYTES, SegmentHeader, UNSYNCED_BYTES_MAX,
};
use crate::index::{Index, IndexedEvent};
use crate::options::{Options, Recovery};
use crate::segment::{Loc, Segment, parse_segment_file_name, segment_file_name};
use crate::snapshot::{self, SNAPSHOT_FILE};
use crate::storage::{OpenMode, Storage};

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(
        "data directory {dir} is in use by another process (lock file {lock}); stop that process or open another directory"
    )]
    Locked { dir: String, lock: String },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "corrupt log: {file} at byte offset {offset}: {reason}; run `factlog verify`, or open with repair to cut the log there"
    )]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "segment file {missing} is missing from {dir}; the log has a hole and cannot be opened"
    )]
    MissingSegment { dir: String, missing: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the index came from on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexSource {
    /// Loaded from the snapshot of the last clean close (plus what was scanned after it).
    Snapshot,
    /// Rebuilt by scanning the whole log.
    #[default]
    Rebuilt,
}

/// What opening the store found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub segments: u32,
    pub events: u64,
    pub index_source: IndexSource,
    /// Why the snapshot was not used, when there was one.
    pub snapshot_problem: Option<String>,
    /// Bytes of log read and checked.
    pub checked_bytes: u64,
    /// Bytes cut from the end of the log (a torn tail, or corruption with repair).
    pub truncated_bytes: u64,
    /// Where the log was cut: file and offset.
    pub truncated_at: Option<(String, u64)>,
    /// Segment files removed: a new segment whose header never became durable, or (with repair)
    /// segments after corruption.
    pub removed_segments: Vec<String>,
    pub duration: Duration,
}

/// The opened log.
#[derive(Debug)]
pub struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub index: Index,
    pub report: OpenReport,
}

/// Opens and recovers the log in `dir`. The caller holds the directory lock.
pub fn recover(dir: &Path, options: &Options) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    let mut report = OpenReport::default();
    let storage = &*options.storage;
    let mut segments = open_segments(storage, dir, &mut report)?;
    if segments.is_empty() {
        segments.push(create_segment(storage, dir, 0, FIRST_POSITION).map_err(io_err(dir))?);
    }
    let mut index = match snapshot::load(storage, dir) {
        Ok(Some(index)) if snapshot_fits(&index, &segments) => {
            report.index_source = IndexSource::Snapshot;
            index
        }
        Ok(Some(_)) => {
            report.snapshot_problem = Some("the snapshot does not match the log".into());
            Index::new(Loc::new(0, SEGMENT_HEADER_BYTES as u64))
        }
        Ok(None) => Index::new(Loc::new(0, SEGMENT_HEADER_BYTES as u64)),
        Err(reason) => {
            report.snapshot_problem = Some(reason);
            Index::new(Loc::new(0, SEGMENT_HEADER_BYTES as u64))
        }
    };
    if let Some(problem) = &report.snapshot_problem {
        tracing::warn!(%problem, "index snapshot not used; rebuilding the index from the log");
    }

    // The active segment is always checked in full, also below the snapshot.
    let last = segments.len() - 1;
    if index.end.segment() as usize == last {
        let mut check = Index::new(Loc::new(last as u32, SEGMENT_HEADER_BYTES as u64));
        check.end_position = segments[last].first_position;
        let end = index.end.offset();
        if let Err(bad) = scan_segment(
            ScanMode::ChecksumsOnly,
            &segments[last],
            SEGMENT_HEADER_BYTES as u64,
            &mut check,
            &mut report,
            Some(end),
        ) {
            if options.recovery == Recovery::TruncateCorruption {
                // Cut the log, drop the snapshot, and start again from a clean rebuild.
                cut(storage, dir, &mut segments, last, bad.cut_at, &mut report)?;
                let _ = storage.remove_file(&dir.join(SNAPSHOT_FILE));
                drop(segments);
                let mut again = recover(dir, options)?;
                again.report.truncated_bytes += report.truncated_bytes;
                again.report.truncated_at = again.report.truncated_at.or(report.truncated_at);
                return Ok(again);
            }
            return Err(bad.into_error(&segments[last]));
        }
    }

    let from_segment = index.end.segment() as usize;
    for seg_idx in from_segment..segments.len() {
        let seg = segments[seg_idx].clone();
        let start = if seg_idx == from_segment {
            index.end.offset()
        } else {
            SEGMENT_HEADER_BYTES as u64
        };
        if start == SEGMENT_HEADER_BYTES as u64 && seg.first_position != index.end_position {
            return Err(OpenError::Corrupt {
                file: seg.display_path(),
                offset: 12,
                reason: format!(
                    "segment starts at position {} but the log before it ends at {}",
                    seg.first_position, index.end_position
                ),
            });
        }
        let file_len = seg.file.size().map_err(io_err(&seg.path))?;
        if let Err(bad) = scan_segment(ScanMode::Index, &seg, start, &mut index, &mut report, None)
        {
            let is_last = seg_idx == segments.len() - 1;
            if is_last && file_len.saturating_sub(bad.offset) <= UNSYNCED_BYTES_MAX {
                tracing::warn!(
                    file = %seg.display_path(), offset = bad.cut_at, reason = %bad.reason,
                    dropped_bytes = file_len - bad.cut_at, "cutting a torn tail"
                );
                cut(
                    storage,
                    dir,
                    &mut segments,
                    seg_idx,
                    bad.cut_at,
                    &mut report,
                )?;
            } else if options.recovery == Recovery::TruncateCorruption {
                tracing::error!(
                    file = %seg.display_path(), offset = bad.offset, reason = %bad.reason,
                    "REPAIR: cutting the log at corruption; everything after it is dropped"
                );
                cut(
                    storage,
                    dir,
                    &mut segments,
                    seg_idx,
                    bad.cut_at,
                    &mut report,
                )?;
                let _ = storage.remove_file(&dir.join(SNAPSHOT_FILE));
                break;
            } else {
                return Err(bad.into_error(&seg));
            }
        }
        let len = seg.file.size().map_err(io_err(&seg.path))?;
        seg.published_len
            .store(len, std::sync::atomic::Ordering::Release);
        if seg_idx >= segments.len() - 1 {
            break;
        }
    }
    let last = segments.last().expect("at least one segment");
    let last_len = last.published_len();
    if index.end.segment() != last.id || index.end.offset() < last_len {
        // The last segment holds no event yet (or only its header): the log ends at its end.
        index.end = Loc::new(last.id, last_len);
    }
    for seg in &segments[..segments.len() - 1] {
        let len = seg.file.size().map_err(io_err(&seg.path))?;
        seg.published_len
            .store(len, std::sync::atomic::Ordering::Release);
    }
    report.segments = segments.len() as u32;
    report.events = index.events();
    report.duration = started.elapsed();
    Ok(Recovered {
        segments,
        index,
        report,
    })
}

/// Whether a loaded snapshot describes a prefix of this log: its end lies within the log, and
/// the last event it indexes is in the log where the snapshot says, with the position it says.
fn snapshot_fits(index: &Index, segments: &[Arc<Segment>]) -> bool {
    let Some(seg) = segments.get(index.end.segment() as usize) else {
        return false;
    };
    let len = seg.file.size().unwrap_or(0);
    let end_fits = index.end.offset() >= SEGMENT_HEADER_BYTES as u64
        && index.end.offset() <= len
        && seg.first_position <= index.end_position;
    if !end_fits {
        return false;
    }
    let Some(last) = index.sparse.last() else {
        return index.end_position == FIRST_POSITION;
    };
    let Some(seg) = segments.get(last.loc.segment() as usize) else {
        return false;
    };
    let Ok(seg_len) = seg.file.size() else {
        return false;
    };
    matches!(
        seg.read_frame(last.loc.offset(), seg_len),
        Ok((frame, _)) if frame.event.position.raw() == last.position && frame.event.recorded_at == last.recorded_at
    )
}

/// Cuts segment `seg_idx` at `at` and removes every segment after it.
fn cut(
    storage: &dyn Storage,
    dir: &Path,
    segments: &mut Vec<Arc<Segment>>,
    seg_idx: usize,
    at: u64,
    report: &mut OpenReport,
) -> Result<(), OpenError> {
    let seg = &segments[seg_idx];
    let len = seg.file.size().map_err(io_err(&seg.path))?;
    seg.file.set_len(at).map_err(io_err(&seg.path))?;
    seg.file.sync_data().map_err(io_err(&seg.path))?;
    report.truncated_bytes += len - at;
    report.truncated_at.get_or_insert((seg.display_path(), at));
    for later in segments.drain(seg_idx + 1..) {
        report.truncated_bytes += later.file.size().unwrap_or(0);
        storage
            .remove_file(&later.path)
            .map_err(io_err(&later.path))?;
        report.removed_segments.push(later.display_path());
    }
    storage.sync_dir(dir).map_err(io_err(dir))
}

/// Finds and opens the segment files, checking their headers and that none is missing.
fn open_segments(
    storage: &dyn Storage,
    dir: &Path,
    report: &mut OpenReport,
) -> Result<Vec<Arc<Segment>>, OpenError> {
    let mut ids: Vec<(u32, PathBuf)> = storage
        .list(dir)
        .map_err(io_err(dir))?
        .into_iter()
        .filter_map(|p| parse_segment_file_name(&p).map(|id| (id, p)))
        .collect();
    ids.sort();
    let mut segments = Vec::with_capacity(ids.len());
    let count = ids.len();
    for (i, (id, path)) in ids.into_iter().enumerate() {
        if id as usize != i {
            return Err(OpenError::MissingSegment {
                dir: dir.display().to_string(),
                missing: segment_file_name(i as u32),
            });
        }
        let file = storage
            .open(&path, OpenMode::ReadWrite)
            .map_err(io_err(&path))?;
        let len = file.size().map_err(io_err(&path))?;
        let mut header = vec![0u8; SEGMENT_HEADER_BYTES.min(len as usize)];
        file.read_exact_at(&mut header, 0).map_err(io_err(&path))?;
        let header = match format::decode_segment_header(&header) {
            Ok(h) if h.segment_id == id => h,
            Ok(h) => {
                return Err(OpenError::Corrupt {
                    file: path.display().to_string(),
                    offset: 12,
                    reason: format!(
                        "header says segment {} but the file is segment {id}",
                        h.segment_id
                    ),
                });
            }
            Err(e) if i == count - 1 && i > 0 && len <= SEGMENT_HEADER_BYTES as u64 => {
                // A crash while a new segment was created: nothing was ever written to it.
                tracing::warn!(file = %path.display(), reason = %e, "removing a segment whose header never became durable");
                drop(file);
                storage.remove_file(&path).map_err(io_err(&path))?;
                storage.sync_dir(dir).map_err(io_err(dir))?;
                report.removed_segments.push(path.display().to_string());
                report.truncated_bytes += len;
                continue;
            }
            Err(e) if i == 0 && count == 1 && len <= SEGMENT_HEADER_BYTES as u64 => {
                // The very first segment of a new store was never completed: start it again.
                tracing::warn!(file = %path.display(), reason = %e, "rewriting an incomplete first segment");
                drop(file);
                storage.remove_file(&path).map_err(io_err(&path))?;
                report.truncated_bytes += len;
                continue;
            }
            Err(e) => {
                return Err(OpenError::Corrupt {
                    file: path.display().to_string(),
                    offset: 0,
                    reason: format!("segment header: {e}"),
                });
            }
        };
        segments.push(Arc::new(Segment {
            id,
            first_position: header.first_position,
            path,
            file,
            published_len: AtomicU64::new(0),
        }));
    }
    Ok(segments)
}

/// Creates segment `id`, whose first event will have `first_position`, durably: header written
/// and fsynced, then the directory fsynced.
pub fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    id: u32,
    first_position: u64,
) -> io::Result<Arc<Segment>> {
    let path = dir.join(segment_file_name(id));
    let file = storage.open(&path, OpenMode::CreateNew)?;
    let header = format::encode_segment_header(&SegmentHeader {
        segment_id: id,
        first_position,
    });
    let written = file
        .write_all_at(&header, 0)
        .and_then(|()| file.sync_data());
    if let Err(e) = written {
        drop(file);
        let _ = storage.remove_file(&path);
        return Err(e);
    }
    storage.sync_dir(dir)?;
    Ok(Arc::new(Segment {
        id,
        first_position,
        path,
        file,
        published_len: AtomicU64::new(SEGMENT_HEADER_BYTES as u64),
    }))
}

/// A bad frame found by a scan.
#[derive(Debug)]
pub struct BadFrame {
    /// Where the bad bytes start.
    pub offset: u64,
    /// Where the log would be cut: the end of the last complete append before the bad bytes.
    pub cut_at: u64,
    pub reason: String,
}

impl BadFrame {
    fn into_error(self, seg: &Segment) -> OpenError {
        OpenError::Corrupt {
            file: seg.display_path(),
            offset: self.offset,
            reason: self.reason,
        }
    }
}

/// What a scan does with the frames it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    /// Check each frame's checksum and header and the log's invariants, and add the events to
    /// the index: what opening the store does.
    Index,
    /// As `Index`, and also decode every field of every frame (event type, content type,
    /// metadata JSON): what `factlog verify` does.
    Verify,
    /// Check checksums, positions and times, but not stream versions, and index nothing: for a
    /// scan that starts in the middle of the log without the index of what came before.
    ChecksumsOnly,
}

/// An event of an append whose commit frame has not been read yet.
struct PendingEvent {
    /// The stream name's bytes, a slice of the read buffer (checked UTF-8).
    stream: Bytes,
    id: u128,
    version: u64,
    position: u64,
    recorded_at: Timestamp,
    loc: Loc,
    frame_len: u64,
}

fn stream_str(stream: &Bytes) -> &str {
    std::str::from_utf8(stream).expect("checked by check_frame")
}

/// Reads every frame of `seg` from `start` (up to `stop`, or the end of the file), checks it
/// and the log's invariants, and adds complete appends to `index`. Stops at the first bad frame.
pub fn scan_segment(
    mode: ScanMode,
    seg: &Segment,
    start: u64,
    index: &mut Index,
    report: &mut OpenReport,
    stop: Option<u64>,
) -> Result<(), BadFrame> {
    let check_versions = mode != ScanMode::ChecksumsOnly;
    const CHUNK_BYTES: u64 = 4 * 1024 * 1024;
    let file_len = seg.file.size().map_err(|e| BadFrame {
        offset: start,
        cut_at: start,
        reason: e.to_string(),
    })?;
    let end = stop.unwrap_or(file_len).min(file_len);
    let mut offset = start;
    let mut committed_end = start;
    let mut pending: Vec<PendingEvent> = Vec::new();
    // Versions handed out to pending events, per stream (keyed by the name's bytes).
    let mut pending_versions: HashMap<Bytes, u64> = HashMap::new();
    let mut buf = Bytes::new();
    let mut buf_offset = start;
    let bad = |offset: u64, committed_end: u64, reason: String| BadFrame {
        offset,
        cut_at: committed_end,
        reason,
    };
    while offset < end {
        let read = |from: u64, want: u64| -> Result<Bytes, BadFrame> {
            let n = want.min(end - from) as usize;
            let mut b = BytesMut::zeroed(n);
            seg.file.read_exact_at(&mut b, from).map_err(|e| BadFrame {
                offset: from,
                cut_at: from,
                reason: e.to_string(),
            })?;
            Ok(b.freeze())
        };
        if offset + 4 > buf_offset + buf.len() as u64 {
            buf = read(offset, CHUNK_BYTES)?;
            buf_offset = offset;
        }
        let at = (offset - buf_offset) as usize;
        if buf.len() - at < 4 {
            return Err(bad(offset, committed_end, "truncated frame length".into()));
        }
        let len = match format::frame_len(&buf[at..]) {
            Ok(len) => len as u64,
            Err(e) => return Err(bad(offset, committed_end, e.to_string())),
        };
        if offset + len > end {
            return Err(bad(
                offset,
                committed_end,
                format!("frame of {len} bytes runs past the end of the file"),
            ));
        }
        if offset + len > buf_offset + buf.len() as u64 {
            buf = read(offset, CHUNK_BYTES.max(len))?;
            buf_offset = offset;
        }
        let at = (offset - buf_offset) as usize;
        let frame_bytes = buf.slice(at..at + len as usize);
        let e = match format::check_frame(&frame_bytes) {
            Ok(header) => header,
            Err(e) => return Err(bad(offset, committed_end, e.to_string())),
        };
        if mode == ScanMode::Verify
            && let Err(e) = format::decode_frame(&frame_bytes)
        {
            return Err(bad(offset, committed_end, e.to_string()));
        }
        report.checked_bytes += len;
        let expected_position = index.end_position + pending.len() as u64;
        if e.position != expected_position {
            return Err(bad(
                offset,
                committed_end,
                format!("position {} where {expected_position} was due", e.position),
            ));
        }
        let stream = frame_bytes.slice_ref(e.stream.as_bytes());
        if check_versions {
            let next_version = match pending_versions.get(&stream) {
                Some(&v) => v,
                None => match index.last_version_of(e.stream) {
                    Some(v) => v + 1,
                    None => {
                        // A stream the index does not know: its name must be valid.
                        if let Err(invalid) = StreamName::new(e.stream) {
                            return Err(bad(offset, committed_end, invalid.to_string()));
                        }
                        0
                    }
                },
            };
            if e.version != next_version {
                return Err(bad(
                    offset,
                    committed_end,
                    format!(
                        "stream {} version {} where {next_version} was due",
                        e.stream, e.version
                    ),
                ));
            }
        }
        let last_time = pending
            .last()
            .map_or(index.last_recorded_at, |p| p.recorded_at);
        if e.recorded_at < last_time {
            return Err(bad(
                offset,
                committed_end,
                "recorded time goes backwards".into(),
            ));
        }
        let is_commit = e.flags & FLAG_COMMIT != 0;
        let pending_event = PendingEvent {
            stream: stream.clone(),
            id: e.id,
            version: e.version,
            position: e.position,
            recorded_at: e.recorded_at,
            loc: Loc::new(seg.id, offset),
            frame_len: len,
        };
        if check_versions {
            pending_versions.insert(stream, pending_event.version + 1);
        }
        pending.push(pending_event);
        offset += len;
        if is_commit {
            for p in pending.drain(..) {
                if mode == ScanMode::ChecksumsOnly {
                    index.end_position = p.position + 1;
                    index.last_recorded_at = p.recorded_at;
                    continue;
                }
                index.add(&IndexedEvent {
                    stream: stream_str(&p.stream),
                    id: p.id,
                    version: p.version,
                    position: p.position,
                    recorded_at: p.recorded_at,
                    loc: p.loc,
                    frame_len: p.frame_len,
                });
            }
            pending_versions.clear();
            committed_end = offset;
        }
    }
    if let Some(first) = pending.first() {
        return Err(bad(
            first.loc.offset(),
            committed_end,
            "the segment ends inside an append (no commit frame)".into(),
        ));
    }
    Ok(())
}
