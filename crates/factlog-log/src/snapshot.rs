//! The index snapshot: the in-memory index saved to `index.snap` on close, so that opening a
//! large store reads one file instead of scanning the whole log.
//!
//! The snapshot is derived data. A missing, corrupt or stale snapshot is ignored and the index
//! is rebuilt from the log; after a crash the snapshot of the last clean close is loaded and
//! only the log after it is scanned.

use std::io;
use std::path::Path;

use factlog_store::{StreamName, Timestamp};

use crate::ids::IdIndex;
use crate::index::{Index, SparseEntry, StreamEntry};
use crate::segment::Loc;
use crate::storage::{OpenMode, Storage, StorageFile};

pub const SNAPSHOT_FILE: &str = "index.snap";
const SNAPSHOT_MAGIC: [u8; 8] = *b"FLOGIDX\0";
const SNAPSHOT_VERSION: u32 = 2;
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Writes bytes to a file in large chunks, keeping a running CRC32C.
struct ChunkWriter<'a> {
    file: &'a dyn StorageFile,
    buf: Vec<u8>,
    offset: u64,
    crc: u32,
}

impl ChunkWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }
    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    /// Writes what is buffered; the CRC covers everything flushed.
    fn flush(&mut self) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.file.write_all_at(&self.buf, self.offset)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

// Format: index snapshot (little-endian)
//   [u8; 8] magic "FLOGIDX\0", u32 version (1)
//   u64 end position, u64 end location, i64 last recorded at (µs)
//   u64 stream count, then per stream: u16 name length, name, u64 event count, u64 location each
//   u64 id count, then every u128 event id in increasing order, then the u64 location of each
//   u64 sparse count, then per entry: u64 position, i64 recorded at, u64 location
//   u32 CRC32C of everything before it
/// Saves `index` to `dir/index.snap` atomically (temporary file, fsync, rename, fsync dir).
pub fn save(storage: &dyn Storage, dir: &Path, index: &Index) -> io::Result<()> {
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let file = storage.open(&tmp, OpenMode::Truncate)?;
    let mut w = ChunkWriter {
        file: &*file,
        buf: Vec::with_capacity(CHUNK_BYTES),
        offset: 0,
        crc: 0,
    };
    w.put(&SNAPSHOT_MAGIC)?;
    w.u32(SNAPSHOT_VERSION)?;
    w.u64(index.end_position)?;
    w.u64(index.end.raw())?;
    w.u64(index.last_recorded_at.unix_micros() as u64)?;
    w.u64(index.streams.len() as u64)?;
    for (name, entry) in &index.streams {
        w.put(&(name.as_str().len() as u16).to_le_bytes())?;
        w.put(name.as_str().as_bytes())?;
        w.u64(entry.locs.len() as u64)?;
        for loc in &entry.locs {
            w.u64(loc.raw())?;
        }
    }
    w.u64(index.ids.len() as u64)?;
    for (id, _) in index.ids.sorted() {
        w.put(&id.to_le_bytes())?;
    }
    for (_, loc) in index.ids.sorted() {
        w.u64(loc.raw())?;
    }
    w.u64(index.sparse.len() as u64)?;
    for e in &index.sparse {
        w.u64(e.position)?;
        w.u64(e.recorded_at.unix_micros() as u64)?;
        w.u64(e.loc.raw())?;
    }
    w.flush()?;
    let crc = w.crc;
    w.put(&crc.to_le_bytes())?;
    w.flush()?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, &dir.join(SNAPSHOT_FILE))?;
    storage.sync_dir(dir)
}

/// Reads a file sequentially in large chunks, keeping a running CRC32C of what it read.
struct ChunkReader<'a> {
    file: &'a dyn StorageFile,
    /// Where the checksummed content ends.
    len: u64,
    buf: Vec<u8>,
    at: usize,
    offset: u64,
    crc: u32,
}

impl ChunkReader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.at + n > self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
            let want = (CHUNK_BYTES.max(n) as u64).min(self.len - self.offset) as usize;
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            self.file
                .read_exact_at(&mut self.buf[old..], self.offset)
                .map_err(|e| e.to_string())?;
            self.crc = crc32c::crc32c_append(self.crc, &self.buf[old..]);
            self.offset += want as u64;
            if n > self.buf.len() {
                return Err("snapshot ends early".into());
            }
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// Reads `count` fixed-size little-endian values of `N` bytes, a chunk at a time.
    fn array<const N: usize, T>(
        &mut self,
        count: u64,
        parse: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, String> {
        if count > self.len / N as u64 {
            return Err("impossible array length".into());
        }
        let mut out = Vec::with_capacity(count as usize);
        let per_chunk = CHUNK_BYTES / N;
        while out.len() < count as usize {
            let n = per_chunk.min(count as usize - out.len());
            let bytes = self.take(n * N)?;
            out.extend(
                bytes
                    .chunks_exact(N)
                    .map(|c| parse(c.try_into().expect("N bytes"))),
            );
        }
        Ok(out)
    }
}

/// Loads the snapshot in `dir`. `Ok(None)` when there is none; `Err` with a reason when it
/// cannot be used (the caller then rebuilds the index from the log).
pub fn load(storage: &dyn Storage, dir: &Path) -> Result<Option<Index>, String> {
    let path = dir.join(SNAPSHOT_FILE);
    let file = match storage.open(&path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let len = file.size().map_err(|e| e.to_string())?;
    if len < 8 + 4 + 4 {
        return Err("snapshot is too short".into());
    }
    let mut r = ChunkReader {
        file: &*file,
        len: len - 4,
        buf: Vec::new(),
        at: 0,
        offset: 0,
        crc: 0,
    };
    if r.take(8)? != SNAPSHOT_MAGIC {
        return Err("bad snapshot magic".into());
    }
    let version = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(format!("unsupported snapshot version {version}"));
    }
    let mut index = Index::new(Loc::new(0, 0));
    index.end_position = r.u64()?;
    index.end = Loc::from_raw(r.u64()?);
    index.last_recorded_at = Timestamp::from_unix_micros(r.u64()? as i64);
    let streams = r.u64()?;
    for _ in 0..streams {
        let name_len = usize::from(u16::from_le_bytes(r.take(2)?.try_into().expect("2 bytes")));
        let name = std::str::from_utf8(r.take(name_len)?).map_err(|e| e.to_string())?;
        let name = StreamName::new(name).map_err(|e| e.to_string())?;
        let count = r.u64()?;
        if count > len / 8 {
            return Err("impossible stream length".into());
        }
        let locs = r.array(count, |b| Loc::from_raw(u64::from_le_bytes(b)))?;
        *index
            .categories
            .entry(name.category().to_owned())
            .or_default() += 1;
        index.streams.insert(name, StreamEntry { locs });
    }
    let ids = r.u64()?;
    let id_values = r.array(ids, u128::from_le_bytes)?;
    let id_locs = r.array(ids, |b| Loc::from_raw(u64::from_le_bytes(b)))?;
    index.ids = IdIndex::from_sorted(id_values, id_locs).ok_or("snapshot ids are not sorted")?;
    let sparse = r.u64()?;
    for _ in 0..sparse {
        let position = r.u64()?;
        let recorded_at = Timestamp::from_unix_micros(r.u64()? as i64);
        index.sparse.push(SparseEntry {
            position,
            recorded_at,
            loc: Loc::from_raw(r.u64()?),
        });
    }
    if r.offset != r.len || r.at != r.buf.len() {
        return Err("snapshot has trailing bytes".into());
    }
    let computed = r.crc;
    let mut stored = [0u8; 4];
    file.read_exact_at(&mut stored, len - 4)
        .map_err(|e| e.to_string())?;
    if u32::from_le_bytes(stored) != computed {
        return Err("snapshot checksum mismatch".into());
    }
    // The sparse entry bookkeeping restarts at the next entry: harmless, entries only get denser.
    index.bytes_since_sparse = crate::index::SPARSE_INTERVAL_BYTES;
    Ok(Some(index))
}
