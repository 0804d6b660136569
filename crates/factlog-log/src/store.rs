//! [`EmbeddedStore`]: the store API on the local log.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use factlog_store::{
    AllFrom, AppendError, AppendResult, AsOf, Direction, EventFilter, EventId, EventStore,
    ListStreams, Ordering as StoreOrdering, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, StreamAppend, StreamFrom, StreamInfo, StreamName, StreamPage, SubscribeError,
    SubscribeFrom, Subscription, Version,
};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::format::{self, FIRST_POSITION, FRAME_FIXED_BYTES};
use crate::index::Index;
use crate::options::{Options, SyncMode};
use crate::recovery::{OpenError, OpenReport, recover};
use crate::segment::{Loc, Scanner, Segment};
use crate::writer::{AppendRequest, Checkpoint, Writer};

/// The name of the lock file that makes one process the owner of a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Counters the writer and readers keep.
#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    pub appends: AtomicU64,
    pub events_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub write_batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_nanos_total: AtomicU64,
    pub fsync_nanos_max: AtomicU64,
    pub idempotent_retries: AtomicU64,
    pub wrong_expected_version: AtomicU64,
    pub disk_full: AtomicU64,
    pub other_errors: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Fsyncs by duration: one counter per bound of [`FSYNC_BUCKETS_SECONDS`], and one above.
    pub fsync_buckets: [AtomicU64; FSYNC_BUCKETS_SECONDS.len() + 1],
}

/// Upper bounds (in seconds) of the fsync latency histogram in [`Stats::fsync_histogram`].
pub const FSYNC_BUCKETS_SECONDS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

impl StatsCounters {
    pub fn record_fsync(&self, took: Duration) {
        let nanos = took.as_nanos() as u64;
        self.fsync_nanos_total.fetch_add(nanos, Ordering::Relaxed);
        self.fsync_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = FSYNC_BUCKETS_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(FSYNC_BUCKETS_SECONDS.len());
        self.fsync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_error(&self, e: &AppendError) {
        let counter = match e {
            AppendError::WrongExpectedVersion { .. } => &self.wrong_expected_version,
            AppendError::DiskFull => &self.disk_full,
            _ => &self.other_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the store has done since it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// [`SyncMode::BulkImport`] here means acknowledged appends may not be durable yet.
    pub sync_mode: SyncMode,
    pub appends: u64,
    pub events_written: u64,
    pub bytes_written: u64,
    /// Group commits: each is one write and (in durable mode) one fsync.
    pub write_batches: u64,
    pub fsyncs: u64,
    pub fsync_total: Duration,
    pub fsync_max: Duration,
    /// Fsyncs per latency bucket: the count of each bound of [`FSYNC_BUCKETS_SECONDS`] (not
    /// cumulative), then the count above the last bound.
    pub fsync_histogram: Vec<u64>,
    pub idempotent_retries: u64,
    pub wrong_expected_version: u64,
    pub disk_full: u64,
    pub other_errors: u64,
    /// Index snapshots saved while running (every `checkpoint_bytes` of log).
    pub checkpoints: u64,
    /// Why the writer stopped, if it did.
    pub writer_failed: Option<String>,
    /// Events in the store.
    pub events: u64,
    pub streams: u64,
    pub segments: u64,
}

/// State shared by the store handle, the writer thread and subscriptions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: Options,
    pub index: RwLock<Index>,
    pub segments: RwLock<Vec<Arc<Segment>>>,
    failed: Mutex<Option<String>>,
    pub stats: StatsCounters,
}

impl Shared {
    pub fn failed(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    pub fn set_failed(&self, reason: String) {
        self.failed.lock().get_or_insert(reason);
    }

    fn segment(&self, id: u32) -> Arc<Segment> {
        self.segments.read()[id as usize].clone()
    }

    /// Reads the published event at `loc`.
    pub fn read_event_at(&self, loc: Loc) -> Result<RecordedEvent, ReadError> {
        let seg = self.segment(loc.segment());
        let (frame, _) = seg.read_frame(loc.offset(), seg.published_len())?;
        Ok(frame.event)
    }

    fn scanner(&self, from: Loc, end: Loc) -> Scanner {
        Scanner::new(Arc::new(self.segments.read().clone()), from, end)
    }

    /// The first position that `as_of` excludes.
    fn position_bound(&self, as_of: AsOf) -> Result<u64, ReadError> {
        match as_of {
            AsOf::Position(p) => Ok(p.raw().saturating_add(1)),
            AsOf::Time(t) => {
                let (before, end_position, end) = {
                    let index = self.index.read();
                    (index.sparse_around_time(t).0, index.end_position, index.end)
                };
                let Some(entry) = before else {
                    return Ok(FIRST_POSITION);
                };
                let mut scanner = self.scanner(entry.loc, end);
                while let Some(event) = scanner.next_event()? {
                    if event.recorded_at > t {
                        return Ok(event.position.raw());
                    }
                }
                Ok(end_position)
            }
        }
    }

    /// Where the event at `position` (which must be below the end) is.
    fn loc_of_position(&self, position: u64) -> Result<Loc, ReadError> {
        let (entry, end) = {
            let index = self.index.read();
            (index.sparse_at_or_before_position(position), index.end)
        };
        let invalid = || ReadError::InvalidPosition(Position::from_raw(position));
        let mut scanner = self.scanner(entry.ok_or_else(invalid)?.loc, end);
        while let Some((frame, loc)) = scanner.next_frame()? {
            if frame.event.position.raw() == position {
                return Ok(loc);
            }
        }
        Err(invalid())
    }

    /// Events at positions `from..bound` that match `filter`, at most `limit`; and the position
    /// to continue from.
    pub fn scan_forward(
        &self,
        from: u64,
        bound: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, u64), ReadError> {
        let (entry, end) = {
            let index = self.index.read();
            (index.sparse_at_or_before_position(from), index.end)
        };
        let mut events = Vec::with_capacity(limit.min(4096));
        let Some(entry) = entry else {
            return Ok((events, from));
        };
        if from >= bound || limit == 0 {
            return Ok((events, from));
        }
        let mut scanner = self.scanner(entry.loc, end);
        while let Some(event) = scanner.next_event()? {
            let position = event.position.raw();
            if position >= bound {
                break;
            }
            if position < from || !filter.matches(&event) {
                continue;
            }
            events.push(event);
            if events.len() == limit {
                return Ok((events, position + 1));
            }
        }
        Ok((events, bound))
    }

    /// Events at positions `..=upto` going backward that match `filter`, at most `limit`.
    fn scan_backward(
        &self,
        upto: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut events = Vec::new();
        let mut upto = upto;
        while events.len() < limit {
            let (entry, end) = {
                let index = self.index.read();
                (index.sparse_at_or_before_position(upto), index.end)
            };
            let Some(entry) = entry.filter(|e| e.position <= upto) else {
                break;
            };
            let mut chunk = Vec::new();
            let mut scanner = self.scanner(entry.loc, end);
            while let Some(event) = scanner.next_event()? {
                if event.position.raw() > upto {
                    break;
                }
                if filter.matches(&event) {
                    chunk.push(event);
                }
            }
            events.extend(chunk.into_iter().rev().take(limit - events.len()));
            match entry.position.checked_sub(1) {
                Some(p) => upto = p,
                None => break,
            }
        }
        Ok(events)
    }

    fn read_stream(
        &self,
        stream: &StreamName,
        options: &ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let bound = match options.as_of {
            Some(as_of) => {
                let position = self.position_bound(as_of)?;
                let end_position = self.index.read().end_position;
                if position >= end_position {
                    Loc::MAX
                } else {
                    self.loc_of_position(position)?
                }
            }
            None => Loc::MAX,
        };
        let locs: Vec<Loc> = {
            let index = self.index.read();
            let entry = index
                .streams
                .get(stream)
                .ok_or_else(|| ReadError::StreamNotFound(stream.clone()))?;
            let visible = entry.locs.partition_point(|l| *l < bound);
            let Some(last) = visible.checked_sub(1) else {
                return Err(ReadError::StreamNotFound(stream.clone()));
            };
            let locs = &entry.locs[..visible];
            match options.direction {
                Direction::Forward => {
                    let start = match options.from {
                        StreamFrom::Start => 0,
                        StreamFrom::End => last,
                        StreamFrom::Version(v) => usize::try_from(v).unwrap_or(usize::MAX),
                    };
                    locs.iter()
                        .skip(start)
                        .take(options.limit)
                        .copied()
                        .collect()
                }
                Direction::Backward => {
                    let start = match options.from {
                        StreamFrom::Start => 0,
                        StreamFrom::End => last,
                        StreamFrom::Version(v) => {
                            usize::try_from(v).unwrap_or(usize::MAX).min(last)
                        }
                    };
                    locs[..=start]
                        .iter()
                        .rev()
                        .take(options.limit)
                        .copied()
                        .collect()
                }
            }
        };
        self.read_events_at(&locs)
    }

    /// Reads the published events at `locs`, in that order. Neighbouring locations of one
    /// segment (a stream written in batches sits in runs) are read with one `pread` per run
    /// instead of one per event.
    fn read_events_at(&self, locs: &[Loc]) -> Result<Vec<RecordedEvent>, ReadError> {
        /// The widest span of log read at once for a run.
        const RUN_BYTES_MAX: u64 = 256 * 1024;
        /// Read past the last location of a run: enough for a typical last frame.
        const TAIL_GUESS_BYTES: u64 = 1024;
        let mut events = Vec::with_capacity(locs.len());
        let mut names = format::DecodeCache::default();
        let mut i = 0;
        while i < locs.len() {
            let segment = locs[i].segment();
            let (mut lo, mut hi) = (locs[i].offset(), locs[i].offset());
            let mut j = i + 1;
            while let Some(next) = locs.get(j) {
                let (l, h) = (lo.min(next.offset()), hi.max(next.offset()));
                if next.segment() != segment || h - l > RUN_BYTES_MAX {
                    break;
                }
                (lo, hi) = (l, h);
                j += 1;
            }
            let seg = self.segment(segment);
            let end = seg.published_len();
            if j - i == 1 {
                events.push(seg.read_frame(lo, end)?.0.event);
                i = j;
                continue;
            }
            let buf = seg.read_bytes(lo, ((hi + TAIL_GUESS_BYTES).min(end) - lo) as usize)?;
            for loc in &locs[i..j] {
                let at = (loc.offset() - lo) as usize;
                let event = match format::frame_len(&buf[at..]) {
                    Ok(len) if at + len <= buf.len() => {
                        format::decode_frame_with(&buf.slice(at..at + len), &mut names)
                            .map_err(|e| seg.corrupt(loc.offset(), e))?
                            .0
                            .event
                    }
                    // A frame longer than the guess past the run's last location (or a bad one,
                    // which the single read reports).
                    _ => seg.read_frame(loc.offset(), end)?.0.event,
                };
                events.push(event);
            }
            i = j;
        }
        Ok(events)
    }

    fn read_all(&self, options: &ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let end_position = self.index.read().end_position;
        let bound = match options.as_of {
            Some(as_of) => self.position_bound(as_of)?.min(end_position),
            None => end_position,
        };
        match options.direction {
            Direction::Forward => {
                let from = match options.from {
                    AllFrom::Start => 0,
                    AllFrom::End => bound,
                    AllFrom::Position(p) => p.raw(),
                };
                Ok(self
                    .scan_forward(from, bound, &options.filter, options.limit)?
                    .0)
            }
            Direction::Backward => {
                let Some(last) = bound.checked_sub(1) else {
                    return Ok(Vec::new());
                };
                let upto = match options.from {
                    AllFrom::Start => 0,
                    AllFrom::End => last,
                    AllFrom::Position(p) => p.raw().min(last),
                };
                self.scan_backward(upto, &options.filter, options.limit)
            }
        }
    }
}

/// The embedded event store: one process owns a data directory and appends to its log.
///
/// ```
/// # tokio_test_block(async {
/// use factlog_log::{EmbeddedStore, Options};
/// use factlog_store::{EventStore, ExpectedVersion, NewEvent, ReadStream, StreamName};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = EmbeddedStore::open(dir.path(), Options::default()).unwrap();
/// let stream = StreamName::new("account-1").unwrap();
/// let event = NewEvent::json("AccountOpened", &serde_json::json!({"owner": "ada"})).unwrap();
/// let result = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
/// assert_eq!(result.first_version, 0);
/// let events = store.read_stream(&stream, ReadStream::forward()).await.unwrap();
/// assert_eq!(events[0].event_type.as_str(), "AccountOpened");
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Runtime::new().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    sender: Mutex<Option<std::sync::mpsc::Sender<AppendRequest>>>,
    /// Places in the bounded write queue.
    queue: Arc<Semaphore>,
    /// The end position, raised by the writer after each publish; closed when it stops.
    committed: watch::Receiver<u64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    report: OpenReport,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, recovering it after a crash.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self, OpenError> {
        options.validate().map_err(OpenError::InvalidOptions)?;
        let dir = dir.as_ref().to_path_buf();
        let storage = options.storage.clone();
        let io = |source| OpenError::Io {
            path: dir.display().to_string(),
            source,
        };
        storage.create_dir_all(&dir).map_err(io)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = storage.lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => OpenError::Locked {
                dir: dir.display().to_string(),
                lock: lock_path.display().to_string(),
            },
            _ => OpenError::Io {
                path: lock_path.display().to_string(),
                source: e,
            },
        })?;
        let recovered = recover(&dir, &options)?;
        let active = recovered
            .segments
            .last()
            .expect("recovery leaves a segment")
            .clone();
        let active_len = active.published_len();
        let end_position = recovered.index.end_position;
        let last_recorded_at = recovered.index.last_recorded_at;
        let (committed_tx, committed) = watch::channel(end_position);
        let (sender, rx) = std::sync::mpsc::channel();
        let queue = Arc::new(Semaphore::new(options.write_queue_appends_max));
        let shared = Arc::new(Shared {
            dir,
            options,
            index: RwLock::new(recovered.index),
            segments: RwLock::new(recovered.segments),
            failed: Mutex::new(None),
            stats: StatsCounters::default(),
        });
        let writer = Writer {
            shared: shared.clone(),
            rx,
            committed: committed_tx,
            active,
            active_len,
            unsynced_bytes: 0,
            last_recorded_at,
            checkpoint: Checkpoint::default(),
            _lock: lock,
        };
        let handle = std::thread::Builder::new()
            .name("factlog-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| OpenError::Io {
                path: "writer thread".into(),
                source: e,
            })?;
        Ok(Self {
            shared,
            sender: Mutex::new(Some(sender)),
            queue,
            committed,
            writer: Mutex::new(Some(handle)),
            report: recovered.report,
        })
    }

    /// What opening found: events, truncated bytes, where the index came from.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Whether [`EmbeddedStore::close`] has been called: appends then fail with `Closed`.
    pub fn is_closed(&self) -> bool {
        self.sender.lock().is_none()
    }

    /// The state shared with the writer, for the online backup (`crate::backup`).
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Finishes queued appends, syncs, saves the index snapshot and releases the directory.
    /// Called by `drop`; later appends fail with [`AppendError::Closed`].
    pub fn close(&self) {
        self.queue.close();
        drop(self.sender.lock().take());
        if let Some(handle) = self.writer.lock().take()
            && handle.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let index = self.shared.index.read();
        Stats {
            sync_mode: self.shared.options.sync_mode,
            appends: get(&s.appends),
            events_written: get(&s.events_written),
            bytes_written: get(&s.bytes_written),
            write_batches: get(&s.write_batches),
            fsyncs: get(&s.fsyncs),
            fsync_total: Duration::from_nanos(get(&s.fsync_nanos_total)),
            fsync_max: Duration::from_nanos(get(&s.fsync_nanos_max)),
            fsync_histogram: s.fsync_buckets.iter().map(get).collect(),
            idempotent_retries: get(&s.idempotent_retries),
            wrong_expected_version: get(&s.wrong_expected_version),
            disk_full: get(&s.disk_full),
            other_errors: get(&s.other_errors),
            checkpoints: get(&s.checkpoints),
            writer_failed: self.shared.failed(),
            events: index.events(),
            streams: index.streams.len() as u64,
            segments: self.shared.segments.read().len() as u64,
        }
    }

    /// Checks an append against the limits and fills in missing event ids.
    fn check(&self, appends: &mut [StreamAppend]) -> Result<usize, AppendError> {
        let o = &self.shared.options;
        factlog_store::check_appends(
            appends,
            &factlog_store::AppendLimits {
                event_size_bytes_max: o.event_size_bytes_max,
                append_events_max: o.append_events_max,
                append_size_bytes_max: o.append_size_bytes_max,
                fixed_bytes_per_event: FRAME_FIXED_BYTES,
            },
        )
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where a subscription is.
struct Follow {
    shared: Arc<Shared>,
    committed: watch::Receiver<u64>,
    buffer: VecDeque<RecordedEvent>,
    /// Where the next read starts: a raw position for `$all`, a version for a stream.
    next: u64,
    done: bool,
}

impl Follow {
    /// Fills the buffer with `read`, or waits for the next commit. `Err` ends the subscription.
    async fn next(
        &mut self,
        mut read: impl FnMut(&Shared, &mut u64, u64) -> Result<Vec<RecordedEvent>, ReadError>,
    ) -> Option<Result<RecordedEvent, SubscribeError>> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            // Marking the current end as seen before reading means a commit that lands during
            // the read wakes the wait below: no event can slip between catch-up and live.
            let end = *self.committed.borrow_and_update();
            match read(&self.shared, &mut self.next, end) {
                Ok(events) if !events.is_empty() => self.buffer.extend(events),
                Ok(_) => {
                    if self.committed.changed().await.is_err() {
                        self.done = true;
                        return Some(Err(SubscribeError::Closed));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    fn ordering(&self) -> StoreOrdering {
        StoreOrdering::Total
    }

    async fn append_multi(
        &self,
        mut appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        let size_bytes = self
            .check(&mut appends)
            .inspect_err(|e| self.shared.stats.count_error(e))?;
        if let Some(reason) = self.shared.failed() {
            return Err(AppendError::WriterFailed { reason });
        }
        let permit = self
            .queue
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppendError::Closed)?;
        let (reply, response) = oneshot::channel();
        {
            let sender = self.sender.lock();
            let sender = sender.as_ref().ok_or(AppendError::Closed)?;
            sender
                .send(AppendRequest {
                    appends,
                    size_bytes,
                    reply,
                    permit,
                })
                .map_err(|_| AppendError::Closed)?;
        }
        response.await.map_err(|_| AppendError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.shared.read_stream(stream, &options)
    }

    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError> {
        let loc = {
            let index = self.shared.index.read();
            index
                .streams
                .get(stream)
                .and_then(|s| s.locs.get(usize::try_from(version).ok()?).copied())
        };
        loc.map(|loc| self.shared.read_event_at(loc)).transpose()
    }

    /// From the id index, like the writer's idempotency check: the location is copied under the
    /// read lock, which is released before the frame is read.
    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError> {
        let loc = self.shared.index.read().ids.get(id.to_u128());
        loc.map(|loc| self.shared.read_event_at(loc)).transpose()
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError> {
        let ends = {
            let index = self.shared.index.read();
            index.streams.get(stream).map(|s| {
                (
                    s.locs[0],
                    *s.locs.last().expect("a stream has an event"),
                    s.locs.len(),
                )
            })
        };
        let Some((first, last, count)) = ends else {
            return Ok(None);
        };
        let first = self.shared.read_event_at(first)?;
        let last = self.shared.read_event_at(last)?;
        Ok(Some(StreamInfo {
            stream: stream.clone(),
            last_version: last.version,
            event_count: count as u64,
            first_recorded_at: first.recorded_at,
            last_recorded_at: last.recorded_at,
        }))
    }

    async fn read_all(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        self.shared.read_all(&options)
    }

    async fn list_streams(&self, options: ListStreams) -> Result<StreamPage, ReadError> {
        let index = self.shared.index.read();
        let start = match &options.after {
            Some(after) if after.as_str() >= options.prefix.as_str() => {
                std::ops::Bound::Excluded(after.as_str())
            }
            _ => std::ops::Bound::Included(options.prefix.as_str()),
        };
        let mut streams = Vec::new();
        let mut more = false;
        for (name, _) in index
            .streams
            .range::<str, _>((start, std::ops::Bound::Unbounded))
        {
            if !name.as_str().starts_with(&options.prefix) {
                break;
            }
            if streams.len() == options.limit {
                more = true;
                break;
            }
            streams.push(name.clone());
        }
        let next_after = if more {
            streams.last().map(|s| s.as_str().to_owned())
        } else {
            None
        };
        Ok(StreamPage {
            streams,
            next_after,
        })
    }

    async fn categories(&self) -> Result<Vec<String>, ReadError> {
        Ok(self
            .shared
            .index
            .read()
            .categories
            .keys()
            .cloned()
            .collect())
    }

    async fn end_position(&self) -> Result<Position, ReadError> {
        Ok(Position::from_raw(self.shared.index.read().end_position))
    }

    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        let next = match from {
            SubscribeFrom::Start => 0,
            SubscribeFrom::End => *self.committed.borrow(),
            SubscribeFrom::After(p) => p.raw().saturating_add(1),
        };
        let batch = self.shared.options.subscription_batch_events_max;
        let follow = Follow {
            shared: self.shared.clone(),
            committed: self.committed.clone(),
            buffer: VecDeque::new(),
            next,
            done: false,
        };
        futures::stream::unfold(follow, move |mut follow| {
            let filter = filter.clone();
            async move {
                let item = follow
                    .next(|shared, next, end| {
                        let (events, resume) = shared.scan_forward(*next, end, &filter, batch)?;
                        *next = (*next).max(resume);
                        Ok(events)
                    })
                    .await?;
                Some((item, follow))
            }
        })
        .boxed()
    }

    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription {
        let next = match from {
            SubscribeFrom::Start => 0,
            SubscribeFrom::End => self
                .shared
                .index
                .read()
                .last_version(&stream)
                .map_or(0, |v| v + 1),
            SubscribeFrom::After(v) => v.saturating_add(1),
        };
        let batch = self.shared.options.subscription_batch_events_max;
        let follow = Follow {
            shared: self.shared.clone(),
            committed: self.committed.clone(),
            buffer: VecDeque::new(),
            next,
            done: false,
        };
        futures::stream::unfold(follow, move |mut follow| {
            let stream = stream.clone();
            async move {
                let item = follow
                    .next(|shared, next, _| {
                        let options = ReadStream::forward().from_version(*next).limit(batch);
                        match shared.read_stream(&stream, &options) {
                            Ok(events) => {
                                *next += events.len() as u64;
                                Ok(events)
                            }
                            Err(ReadError::StreamNotFound(_)) => Ok(Vec::new()),
                            Err(e) => Err(e),
                        }
                    })
                    .await?;
                Some((item, follow))
            }
        })
        .boxed()
    }
}
