//! `factlog verify`: check every record of a closed store, and the saved index against the log.
//!
//! Unlike opening, verify reads every frame of every segment, changes nothing, and reports the
//! first bad record by file and offset, including a torn tail that opening would cut.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::format::{self, SEGMENT_HEADER_BYTES};
use crate::index::Index;
use crate::options::Options;
use crate::recovery::{OpenReport, ScanMode, scan_segment};
use crate::segment::{Loc, Segment, parse_segment_file_name, segment_file_name};
use crate::snapshot;
use crate::storage::OpenMode;
use crate::store::LOCK_FILE;

/// What a successful verify checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u32,
    pub events: u64,
    pub streams: u64,
    pub bytes: u64,
    /// Whether an index snapshot was there and matched the log.
    pub snapshot_checked: bool,
}

/// The first problem verify found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("{dir} is in use by a running store; stop it (or take a backup) and verify that")]
    Locked { dir: String },
    #[error("{dir} holds no Factlog log (no segment files)")]
    NotAStore { dir: String },
    #[error("I/O error on {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("bad record in {file} at byte offset {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("segment file {missing} is missing")]
    MissingSegment { missing: String },
    #[error(
        "the index snapshot does not match the log: {detail}; delete {file} and it is rebuilt on open"
    )]
    IndexMismatch { file: String, detail: String },
}

/// Verifies the store in `dir` (which must not be open elsewhere).
pub fn verify(dir: &Path, options: &Options) -> Result<VerifyReport, VerifyError> {
    let storage = &*options.storage;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| VerifyError::Io {
            path,
            reason: e.to_string(),
        }
    };
    let _lock = storage
        .lock(&dir.join(LOCK_FILE))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => VerifyError::Locked {
                dir: dir.display().to_string(),
            },
            _ => VerifyError::Io {
                path: dir.display().to_string(),
                reason: e.to_string(),
            },
        })?;
    let mut ids: Vec<_> = storage
        .list(dir)
        .map_err(io(dir))?
        .into_iter()
        .filter_map(|p| parse_segment_file_name(&p).map(|id| (id, p)))
        .collect();
    ids.sort();
    if ids.is_empty() {
        return Err(VerifyError::NotAStore {
            dir: dir.display().to_string(),
        });
    }
    let mut index = Index::new(Loc::new(0, SEGMENT_HEADER_BYTES as u64));
    let mut report = OpenReport::default();
    for (i, (id, path)) in ids.into_iter().enumerate() {
        if id as usize != i {
            return Err(VerifyError::MissingSegment {
                missing: segment_file_name(i as u32),
            });
        }
        let file = storage.open(&path, OpenMode::Read).map_err(io(&path))?;
        let mut header = vec![0u8; SEGMENT_HEADER_BYTES];
        let n = file.read_up_to_at(&mut header, 0).map_err(io(&path))?;
        let corrupt = |offset, reason: String| VerifyError::Corrupt {
            file: path.display().to_string(),
            offset,
            reason,
        };
        let header = format::decode_segment_header(&header[..n])
            .map_err(|e| corrupt(0, format!("segment header: {e}")))?;
        if header.segment_id != id {
            return Err(corrupt(
                12,
                format!("header says segment {}", header.segment_id),
            ));
        }
        if header.first_position != index.end_position {
            return Err(corrupt(
                16,
                format!(
                    "segment starts at position {} where {} was due",
                    header.first_position, index.end_position
                ),
            ));
        }
        let seg = Segment {
            id,
            first_position: header.first_position,
            path: path.clone(),
            file,
            published_len: AtomicU64::new(0),
        };
        scan_segment(
            ScanMode::Verify,
            &seg,
            SEGMENT_HEADER_BYTES as u64,
            &mut index,
            &mut report,
            None,
        )
        .map_err(|bad| corrupt(bad.offset, bad.reason))?;
        let _ = Arc::new(seg);
    }
    let snapshot_file = dir.join(snapshot::SNAPSHOT_FILE).display().to_string();
    let mismatch = |detail: String| VerifyError::IndexMismatch {
        file: snapshot_file.clone(),
        detail,
    };
    let saved =
        snapshot::load(storage, dir).map_err(|reason| mismatch(format!("unreadable: {reason}")))?;
    let snapshot_checked = saved.is_some();
    if let Some(saved) = saved {
        compare(&saved, &index).map_err(mismatch)?;
    }
    Ok(VerifyReport {
        segments: index.end.segment() + 1,
        events: index.events(),
        streams: index.streams.len() as u64,
        bytes: report.checked_bytes,
        snapshot_checked,
    })
}

/// Checks that `saved` describes a prefix of the log that `rebuilt` was built from.
fn compare(saved: &Index, rebuilt: &Index) -> Result<(), String> {
    if saved.end_position > rebuilt.end_position || saved.end > rebuilt.end {
        return Err(format!(
            "it ends at position {} but the log at {}",
            saved.end_position, rebuilt.end_position
        ));
    }
    for (name, entry) in &saved.streams {
        let Some(real) = rebuilt.streams.get(name) else {
            return Err(format!("stream {name} is not in the log"));
        };
        if real.locs.len() < entry.locs.len() || real.locs[..entry.locs.len()] != entry.locs[..] {
            return Err(format!("the locations of stream {name} differ"));
        }
    }
    let saved_events: usize = saved.streams.values().map(|s| s.locs.len()).sum();
    if saved_events as u64 != saved.events() || saved.ids.len() as u64 != saved.events() {
        return Err("its stream and id counts do not add up to its event count".into());
    }
    for (id, loc) in saved.ids.iter() {
        if rebuilt.ids.get(id) != Some(loc) {
            return Err(format!("event id {} points elsewhere", uuid_string(id)));
        }
    }
    for e in &saved.sparse {
        if !rebuilt.sparse.iter().any(|r| r.loc == e.loc)
            && rebuilt.streams.values().all(|s| !s.locs.contains(&e.loc))
        {
            return Err(format!(
                "sparse entry for position {} points at no event",
                e.position
            ));
        }
    }
    Ok(())
}

fn uuid_string(id: u128) -> String {
    factlog_store::EventId::from_bytes(id.to_be_bytes()).to_string()
}
