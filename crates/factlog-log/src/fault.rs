//! A [`Storage`] that fails on command: failed writes, failed fsyncs and a full disk.
//!
//! The crash, fault and recovery tests use it to check that the store never acknowledges what
//! is not durable, never shows a partial record, and stops writing after an fsync error.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::storage::{FsStorage, OpenMode, Storage, StorageFile};

/// The switches of a [`FaultyStorage`], shared with the test that flips them.
#[derive(Debug)]
pub struct Faults {
    /// Every write fails with EIO.
    pub fail_writes: AtomicBool,
    /// Every fsync fails with EIO.
    pub fail_syncs: AtomicBool,
    /// Bytes that writes may still add before the disk is full; negative means no limit. A write
    /// that does not fit writes what fits and then fails with ENOSPC, as a real disk does.
    pub space_left_bytes: AtomicI64,
    /// Successful fsyncs so far.
    pub syncs: AtomicU64,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            fail_writes: AtomicBool::new(false),
            fail_syncs: AtomicBool::new(false),
            space_left_bytes: AtomicI64::new(-1),
            syncs: AtomicU64::new(0),
        })
    }

    /// The disk is full from now on.
    pub fn set_space_left_bytes(&self, bytes: i64) {
        self.space_left_bytes.store(bytes, Ordering::SeqCst);
    }

    /// Space is freed: no limit from now on.
    pub fn free_space(&self) {
        self.space_left_bytes.store(-1, Ordering::SeqCst);
    }
}

/// The real file system, with [`Faults`] in front of writes and fsyncs.
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    inner: FsStorage,
    faults: Arc<Faults>,
}

impl FaultyStorage {
    pub fn new(faults: Arc<Faults>) -> Self {
        Self {
            inner: FsStorage,
            faults,
        }
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn StorageFile>,
    faults: Arc<Faults>,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected I/O error on {what}"))
}

impl StorageFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(eio("write"));
        }
        let end = offset + buf.len() as u64;
        let grows = end.saturating_sub(self.inner.size()?) as i64;
        let left = self.faults.space_left_bytes.load(Ordering::SeqCst);
        if left >= 0 && grows > left {
            // Write the part that fits, then fail: the store must hide the partial record.
            let fits = buf.len() - (grows - left) as usize;
            self.inner.write_all_at(&buf[..fits], offset)?;
            self.faults.space_left_bytes.store(0, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if left >= 0 {
            self.faults
                .space_left_bytes
                .fetch_sub(grows, Ordering::SeqCst);
        }
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(eio("fsync"));
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Box::new(FaultyFile {
            inner,
            faults: self.faults.clone(),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(eio("directory fsync"));
        }
        self.inner.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        self.inner.lock(path)
    }
}
