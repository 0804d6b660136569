//! Segment files and reading frames out of them.
//!
//! The log is a sequence of segment files `segment-00000000.seg`, `segment-00000001.seg`, ...
//! Only the last one (the active segment) grows; the writer starts a new one when it is full.
//! A [`Loc`] names a frame by segment and byte offset, and orders like the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use factlog_store::{ReadError, RecordedEvent};

use crate::format::{self, DecodeError, Frame, SEGMENT_HEADER_BYTES};
use crate::storage::StorageFile;

/// Where a frame is: segment id in the high 32 bits, byte offset in the low 32 bits. Locations
/// order the same way as positions, since the log only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc(u64);

impl Loc {
    pub const MAX: Loc = Loc(u64::MAX);

    pub fn new(segment: u32, offset: u64) -> Self {
        let offset = u32::try_from(offset).expect("segments are smaller than 4 GiB");
        Self((u64::from(segment) << 32) | u64::from(offset))
    }

    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn offset(self) -> u64 {
        self.0 & 0xFFFF_FFFF
    }

    pub fn raw(self) -> u64 {
        self.0
    }

    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// The file name of segment `id`.
pub fn segment_file_name(id: u32) -> String {
    format!("segment-{id:08}.seg")
}

/// The id in a segment file name, if it is one.
pub fn parse_segment_file_name(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("segment-")?.strip_suffix(".seg")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment file.
#[derive(Debug)]
pub struct Segment {
    pub id: u32,
    pub first_position: u64,
    pub path: PathBuf,
    pub file: Box<dyn StorageFile>,
    /// Bytes readers may read: set by recovery at open, then raised by the writer after each
    /// durable write is published.
    pub published_len: AtomicU64,
}

impl Segment {
    pub fn published_len(&self) -> u64 {
        self.published_len.load(Ordering::Acquire)
    }

    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }

    pub(crate) fn corrupt(&self, offset: u64, e: impl std::fmt::Display) -> ReadError {
        ReadError::Corrupt {
            file: self.display_path(),
            offset,
            reason: e.to_string(),
        }
    }

    fn io(&self, e: std::io::Error) -> ReadError {
        ReadError::Io {
            file: self.display_path(),
            reason: e.to_string(),
        }
    }

    /// Reads `len` bytes at `offset`.
    pub fn read_bytes(&self, offset: u64, len: usize) -> Result<Bytes, ReadError> {
        let mut buf = BytesMut::zeroed(len);
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| self.io(e))?;
        Ok(buf.freeze())
    }

    /// Reads and checks the frame at `offset`, which must lie below `end`.
    pub fn read_frame(&self, offset: u64, end: u64) -> Result<(Frame, usize), ReadError> {
        // One read is enough for most events; a larger frame takes a second one.
        const GUESS_BYTES: u64 = 1024;
        let first = GUESS_BYTES.min(end.saturating_sub(offset)) as usize;
        if first < 4 {
            return Err(self.corrupt(
                offset,
                DecodeError::Truncated {
                    needed: 4,
                    available: first,
                },
            ));
        }
        let mut bytes = self.read_bytes(offset, first)?;
        let len = format::frame_len(&bytes).map_err(|e| self.corrupt(offset, e))?;
        if len > first {
            if offset + len as u64 > end {
                return Err(self.corrupt(offset, "frame runs past the end of the log"));
            }
            bytes = self.read_bytes(offset, len)?;
        }
        format::decode_frame(&bytes).map_err(|e| self.corrupt(offset, e))
    }
}

/// Reads frames in log order from a location up to an end location, a large chunk at a time.
#[derive(Debug)]
pub struct Scanner {
    segments: Arc<Vec<Arc<Segment>>>,
    end: Loc,
    segment: usize,
    offset: u64,
    buf: Bytes,
    buf_offset: u64,
    names: format::DecodeCache,
}

/// Bytes a scanner reads at once.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

impl Scanner {
    pub fn new(segments: Arc<Vec<Arc<Segment>>>, from: Loc, end: Loc) -> Self {
        Self {
            segments,
            end,
            segment: from.segment() as usize,
            offset: from.offset(),
            buf: Bytes::new(),
            buf_offset: 0,
            names: format::DecodeCache::default(),
        }
    }

    /// Where the next frame starts.
    pub fn loc(&self) -> Loc {
        Loc::new(self.segment as u32, self.offset)
    }

    fn segment_end(&self) -> u64 {
        if self.segment == self.end.segment() as usize {
            self.end.offset()
        } else {
            self.segments[self.segment].published_len()
        }
    }

    /// Makes `buf` hold `[offset, offset + len)` if the segment has that much below `seg_end`.
    fn fill(&mut self, len: usize, seg_end: u64) -> Result<(), ReadError> {
        let have_from = self.offset.wrapping_sub(self.buf_offset);
        if self.offset >= self.buf_offset && have_from as usize + len <= self.buf.len() {
            return Ok(());
        }
        let want = len
            .max(SCAN_CHUNK_BYTES)
            .min((seg_end - self.offset) as usize);
        let seg = &self.segments[self.segment];
        if want < len {
            return Err(seg.corrupt(self.offset, "frame runs past the end of the log"));
        }
        self.buf = seg.read_bytes(self.offset, want)?;
        self.buf_offset = self.offset;
        Ok(())
    }

    /// The next frame and where it is, or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<(Frame, Loc)>, ReadError> {
        loop {
            if self.segment > self.end.segment() as usize || self.segment >= self.segments.len() {
                return Ok(None);
            }
            let seg_end = self.segment_end();
            if self.offset >= seg_end {
                if self.segment >= self.end.segment() as usize {
                    return Ok(None);
                }
                self.segment += 1;
                self.offset = SEGMENT_HEADER_BYTES as u64;
                // The buffer holds the previous segment's bytes: never serve them as this one's.
                self.buf = Bytes::new();
                self.buf_offset = 0;
                continue;
            }
            self.fill(4, seg_end)?;
            let at = (self.offset - self.buf_offset) as usize;
            let seg = &self.segments[self.segment];
            let len =
                format::frame_len(&self.buf[at..]).map_err(|e| seg.corrupt(self.offset, e))?;
            self.fill(len, seg_end)?;
            let at = (self.offset - self.buf_offset) as usize;
            let bytes = self.buf.slice(at..at + len);
            let (frame, _) = format::decode_frame_with(&bytes, &mut self.names)
                .map_err(|e| self.segments[self.segment].corrupt(self.offset, e))?;
            let loc = self.loc();
            self.offset += len as u64;
            return Ok(Some((frame, loc)));
        }
    }

    /// The next event, or `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<RecordedEvent>, ReadError> {
        Ok(self.next_frame()?.map(|(f, _)| f.event))
    }
}
