//! The single writer: group commit, optimistic concurrency and idempotency.
//!
//! One thread owns the active segment. Appends queue up (bounded), and the writer takes as many
//! as fit in one batch, checks each against the index and the appends before it in the batch,
//! frames the accepted ones into one buffer, writes it with one call and fsyncs it once. Only
//! then are the events published to readers and the appends acknowledged.
//!
//! **Architecture invariant:** only the writer thread writes to the log or changes the index,
//! and it publishes an event only after it is durable (in [`SyncMode::Durable`]).
//!
//! A failed write or fsync stops the writer: the error is reported to the appends of that
//! batch and to every later append until the store is reopened. A full disk is the exception:
//! the partial write is cut off, the batch fails with [`AppendError::DiskFull`], and appends
//! work again once space is freed.

use std::fmt::Debug;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use factlog_store::{
    AppendError, AppendResult, EventId, Position, RecordedEvent, StreamAppend, StreamName,
    Timestamp, metadata_json,
};
use hashbrown::HashMap;
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use crate::format::{self, FLAG_COMMIT, FrameInput, SEGMENT_HEADER_BYTES};
use crate::index::{Index, IndexedEvent};
use crate::options::SyncMode;
use crate::recovery::create_segment;
use crate::segment::{Loc, Segment};
use crate::snapshot;
use crate::store::Shared;

/// One append call waiting for the writer.
#[derive(Debug)]
pub struct AppendRequest {
    /// Checked against the limits, with every event id filled in.
    pub appends: Vec<StreamAppend>,
    pub size_bytes: usize,
    pub reply: oneshot::Sender<Result<Vec<AppendResult>, AppendError>>,
    /// A place in the bounded write queue, given back when the writer takes the request.
    pub permit: OwnedSemaphorePermit,
}

type Reply = oneshot::Sender<Result<Vec<AppendResult>, AppendError>>;

/// A frame in the batch buffer, not yet durable.
#[derive(Debug)]
struct PendingFrame {
    stream: StreamName,
    id: u128,
    version: u64,
    position: u64,
    offset_in_batch: usize,
    len: usize,
}

/// What one group commit writes.
#[derive(Debug, Default)]
struct Batch {
    buf: Vec<u8>,
    frames: Vec<PendingFrame>,
    /// Last version of each stream written by this batch.
    versions: HashMap<StreamName, u64>,
    /// Frame (index into `frames`) of each event id written by this batch.
    ids: HashMap<u128, usize>,
    replies: Vec<(Reply, Result<Vec<AppendResult>, AppendError>)>,
    events: u64,
}

/// The writer thread's state.
#[derive(Debug)]
pub struct Writer {
    pub shared: Arc<Shared>,
    pub rx: Receiver<AppendRequest>,
    pub committed: watch::Sender<u64>,
    pub active: Arc<Segment>,
    pub active_len: u64,
    pub unsynced_bytes: u64,
    pub last_recorded_at: Timestamp,
    pub checkpoint: Checkpoint,
    /// The data directory lock, released when the writer ends.
    pub _lock: Box<dyn Debug + Send + Sync>,
}

/// Index snapshots taken while the store runs.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Log bytes published since the last snapshot was started.
    bytes_since: u64,
    /// The thread saving a snapshot, if one was started.
    saving: Option<std::thread::JoinHandle<()>>,
}

impl Checkpoint {
    /// Waits for the snapshot being saved, if any.
    fn finish(&mut self) {
        if let Some(handle) = self.saving.take()
            && handle.join().is_err()
        {
            tracing::error!("the index checkpoint thread panicked");
        }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull
}

impl Writer {
    /// Runs until every sender is gone, then syncs, saves the index snapshot and releases the
    /// directory lock.
    pub fn run(mut self) {
        loop {
            let first = if self.unsynced_bytes > 0 {
                match self.rx.recv_timeout(Duration::from_millis(10)) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = self.sync() {
                            self.fail(format!(
                                "fsync of {} failed: {e}",
                                self.active.display_path()
                            ));
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            let max = self.shared.options.write_batch_bytes_max;
            let mut bytes = first.size_bytes;
            let mut requests = vec![first];
            while bytes < max {
                match self.rx.try_recv() {
                    Ok(r) => {
                        bytes += r.size_bytes;
                        requests.push(r);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit(requests);
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Never two snapshot saves at once: they share the temporary file.
        self.checkpoint.finish();
        if self.shared.failed().is_some() {
            return;
        }
        if self.unsynced_bytes > 0
            && let Err(e) = self.sync()
        {
            self.fail(format!("fsync on close failed: {e}"));
            return;
        }
        let index = self.shared.index.read();
        if let Err(e) = snapshot::save(&*self.shared.options.storage, &self.shared.dir, &index) {
            tracing::warn!(error = %e, "could not save the index snapshot; the next open rebuilds the index");
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.active.file.sync_data()?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.record_fsync(started.elapsed());
        self.unsynced_bytes = 0;
        Ok(())
    }

    /// Stops the writer for good: this and every later append fails.
    fn fail(&mut self, reason: String) {
        tracing::error!(%reason, "the writer stopped; appends fail until the store is reopened");
        self.shared.set_failed(reason);
    }

    fn commit(&mut self, requests: Vec<AppendRequest>) {
        if let Some(reason) = self.shared.failed() {
            for r in requests {
                let _ = r.reply.send(Err(AppendError::WriterFailed {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        let recorded_at = self.shared.options.clock.now().max(self.last_recorded_at);
        let mut batch = Batch::default();
        {
            let index = self.shared.index.read();
            let mut next_position = index.end_position;
            for request in requests {
                let AppendRequest {
                    appends,
                    reply,
                    permit,
                    ..
                } = request;
                drop(permit);
                match self.prepare(
                    &index,
                    &mut batch,
                    &appends,
                    &mut next_position,
                    recorded_at,
                ) {
                    Ok(results) => batch.replies.push((reply, Ok(results))),
                    Err(e) => {
                        self.shared.stats.count_error(&e);
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
        if batch.frames.is_empty() {
            return Self::reply(batch.replies);
        }
        match self.write(&batch) {
            Ok(offset) => {
                self.publish(&batch, offset, recorded_at);
                Self::reply(batch.replies);
            }
            Err(error) => {
                self.shared.stats.count_error(&error);
                for (reply, _) in batch.replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn reply(replies: Vec<(Reply, Result<Vec<AppendResult>, AppendError>)>) {
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
    }

    /// Checks one append against the index and the batch so far; frames it into the batch if
    /// it is accepted. Returns the results to acknowledge once the batch is durable.
    fn prepare(
        &self,
        index: &Index,
        batch: &mut Batch,
        appends: &[StreamAppend],
        next_position: &mut u64,
        recorded_at: Timestamp,
    ) -> Result<Vec<AppendResult>, AppendError> {
        // A retry of appends already stored (or already in this batch) returns their results.
        let mut retried = Vec::new();
        for part in appends {
            if let Some(result) = self.find_retry(index, batch, part)? {
                retried.push(result);
            }
        }
        if let Some(results) = factlog_store::whole_retry(appends, retried)? {
            self.shared
                .stats
                .idempotent_retries
                .fetch_add(1, Ordering::Relaxed);
            return Ok(results);
        }

        let current = |batch: &Batch, stream: &StreamName| {
            batch
                .versions
                .get(stream)
                .copied()
                .or_else(|| index.last_version(stream))
        };
        for part in appends {
            let current = current(batch, &part.stream);
            if !part.expected.is_met_by(current) {
                return Err(AppendError::WrongExpectedVersion {
                    stream: part.stream.clone(),
                    expected: part.expected,
                    current,
                });
            }
        }

        let mut results = Vec::with_capacity(appends.len());
        let event_count: usize = appends.iter().map(|p| p.events.len()).sum();
        let mut written = 0;
        for part in appends {
            let first_version = current(batch, &part.stream).map_or(0, |v| v + 1);
            let first_position = *next_position;
            for (i, event) in part.events.iter().enumerate() {
                written += 1;
                let id = event.id.expect("ids are filled in before the writer");
                let metadata = metadata_json(&event.metadata);
                let input = FrameInput {
                    flags: if written == event_count {
                        FLAG_COMMIT
                    } else {
                        0
                    },
                    position: *next_position,
                    version: first_version + i as u64,
                    recorded_at,
                    id,
                    schema_version: event.schema_version,
                    stream: part.stream.as_str(),
                    event_type: event.event_type.as_str(),
                    content_type: event.content_type.as_str(),
                    metadata_json: &metadata,
                    data: &event.data,
                };
                let offset_in_batch = batch.buf.len();
                format::encode_frame(&input, &mut batch.buf);
                batch.ids.insert(id.to_u128(), batch.frames.len());
                batch.frames.push(PendingFrame {
                    stream: part.stream.clone(),
                    id: id.to_u128(),
                    version: input.version,
                    position: input.position,
                    offset_in_batch,
                    len: batch.buf.len() - offset_in_batch,
                });
                *next_position += 1;
            }
            let last_version = first_version + part.events.len() as u64 - 1;
            batch.versions.insert(part.stream.clone(), last_version);
            results.push(AppendResult {
                first_version,
                last_version,
                first_position: Position::from_raw(first_position),
                last_position: Position::from_raw(*next_position - 1),
            });
        }
        batch.events += event_count as u64;
        Ok(results)
    }

    /// Whether `part` is a retry of events already stored or already in this batch
    /// ([`factlog_store::find_retry`]).
    fn find_retry(
        &self,
        index: &Index,
        batch: &Batch,
        part: &StreamAppend,
    ) -> Result<Option<AppendResult>, AppendError> {
        let stored = |id: EventId| -> Result<Option<RecordedEvent>, AppendError> {
            if let Some(&f) = batch.ids.get(&id.to_u128()) {
                let frame = &batch.frames[f];
                let bytes = Bytes::copy_from_slice(
                    &batch.buf[frame.offset_in_batch..frame.offset_in_batch + frame.len],
                );
                return Ok(Some(
                    format::decode_frame(&bytes)
                        .expect("the writer's own frame decodes")
                        .0
                        .event,
                ));
            }
            match index.ids.get(id.to_u128()) {
                Some(loc) => self
                    .shared
                    .read_event_at(loc)
                    .map(Some)
                    .map_err(|e| AppendError::Backend(e.to_string())),
                None => Ok(None),
            }
        };
        let is_stored =
            |id: EventId| batch.ids.contains_key(&id.to_u128()) || index.ids.contains(id.to_u128());
        factlog_store::find_retry(part, stored, is_stored)
    }

    /// Writes the batch (starting a new segment if this one is full) and makes it durable.
    /// Returns the offset in the active segment where the batch starts.
    fn write(&mut self, batch: &Batch) -> Result<u64, AppendError> {
        let len = batch.buf.len() as u64;
        let shared = self.shared.clone();
        let options = &shared.options;
        if self.active_len > SEGMENT_HEADER_BYTES as u64
            && self.active_len + len > options.segment_bytes_max
        {
            self.roll(batch.frames[0].position)?;
        }
        let offset = self.active_len;
        if let Err(e) = self.active.file.write_all_at(&batch.buf, offset) {
            // Whatever part of the batch reached the file is cut off again, so no partial
            // record stays behind. If even that fails, the writer stops.
            let cut = self.active.file.set_len(offset);
            if is_disk_full(&e) && cut.is_ok() {
                return Err(AppendError::DiskFull);
            }
            let reason = format!("write to {} failed: {e}", self.active.display_path());
            self.fail(reason.clone());
            return Err(AppendError::WriterFailed { reason });
        }
        self.active_len += len;
        self.unsynced_bytes += len;
        if (options.sync_mode == SyncMode::Durable
            || self.unsynced_bytes >= options.write_batch_bytes_max as u64)
            && let Err(e) = self.sync()
        {
            // After a failed fsync nothing about the unsynced data can be trusted
            // (PostgreSQL's "fsyncgate"): never retry, never acknowledge.
            let _ = self.active.file.set_len(offset);
            self.active_len = offset;
            let reason = format!("fsync of {} failed: {e}", self.active.display_path());
            self.fail(reason.clone());
            return Err(AppendError::WriterFailed { reason });
        }
        self.shared
            .stats
            .write_batches
            .fetch_add(1, Ordering::Relaxed);
        Ok(offset)
    }

    /// Seals the active segment and starts the next one, whose first event is `first_position`.
    fn roll(&mut self, first_position: u64) -> Result<(), AppendError> {
        if self.unsynced_bytes > 0
            && let Err(e) = self.sync()
        {
            let reason = format!("fsync of {} failed: {e}", self.active.display_path());
            self.fail(reason.clone());
            return Err(AppendError::WriterFailed { reason });
        }
        let id = self.active.id + 1;
        match create_segment(
            &*self.shared.options.storage,
            &self.shared.dir,
            id,
            first_position,
        ) {
            Ok(segment) => {
                self.shared.segments.write().push(segment.clone());
                self.active = segment;
                self.active_len = SEGMENT_HEADER_BYTES as u64;
                Ok(())
            }
            Err(e) if is_disk_full(&e) => Err(AppendError::DiskFull),
            Err(e) => {
                let reason = format!("creating segment {id} failed: {e}");
                self.fail(reason.clone());
                Err(AppendError::WriterFailed { reason })
            }
        }
    }

    /// Makes the batch visible to readers and subscribers.
    fn publish(&mut self, batch: &Batch, offset: u64, recorded_at: Timestamp) {
        let end_position = {
            let mut index = self.shared.index.write();
            for f in &batch.frames {
                index.add(&IndexedEvent {
                    stream: f.stream.as_str(),
                    id: f.id,
                    version: f.version,
                    position: f.position,
                    recorded_at,
                    loc: Loc::new(self.active.id, offset + f.offset_in_batch as u64),
                    frame_len: f.len as u64,
                });
            }
            self.active
                .published_len
                .store(self.active_len, Ordering::Release);
            index.end_position
        };
        self.last_recorded_at = recorded_at;
        let stats = &self.shared.stats;
        stats
            .appends
            .fetch_add(batch.replies.len() as u64, Ordering::Relaxed);
        stats
            .events_written
            .fetch_add(batch.events, Ordering::Relaxed);
        stats
            .bytes_written
            .fetch_add(batch.buf.len() as u64, Ordering::Relaxed);
        self.committed.send_replace(end_position);
        self.checkpoint.bytes_since += batch.buf.len() as u64;
        if self.checkpoint.bytes_since >= self.shared.options.checkpoint_bytes {
            self.start_checkpoint();
        }
    }

    /// Saves a copy of the index as the snapshot on another thread, unless a save is still
    /// running (then the next publish tries again). The snapshot only ever describes published,
    /// durable frames, so after a crash it is a prefix of the log and the scan after it is
    /// what remains to do.
    fn start_checkpoint(&mut self) {
        if self
            .checkpoint
            .saving
            .as_ref()
            .is_some_and(|h| !h.is_finished())
        {
            return;
        }
        self.checkpoint.finish();
        self.checkpoint.bytes_since = 0;
        let started = Instant::now();
        let index = self.shared.index.read().clone();
        let copied = started.elapsed();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("factlog-checkpoint".into())
            .spawn(
                move || match snapshot::save(&*shared.options.storage, &shared.dir, &index) {
                    Ok(()) => {
                        shared.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            events = index.events(),
                            copy_ms = copied.as_millis() as u64,
                            total_ms = started.elapsed().as_millis() as u64,
                            "index checkpoint saved"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "could not save an index checkpoint"),
                },
            );
        match spawned {
            Ok(handle) => self.checkpoint.saving = Some(handle),
            Err(e) => tracing::warn!(error = %e, "could not start an index checkpoint"),
        }
    }
}
