//! The node's read replica: an embedded store fed from the category topics.
//!
//! One thread consumes every partition of every category topic (`read_committed`, assigned,
//! not in a group) and appends what it reads to a local [`EmbeddedStore`], keeping each
//! event's id, stream version and recorded-at. Reads of the Kafka backend are answered from
//! here, so reading a stream never scans a partition.
//!
//! Each replicated event carries its Kafka position and recorded-at under the metadata key
//! [`STASH_KEY`]; reads take them out again. The replica's own positions are node-local: they
//! order `$all` on this node (each partition's events in offset order, partitions interleaved
//! as they arrived). `slots` maps each partition's offsets to those local positions.
//!
//! On open the replica is scanned once to rebuild `slots` and the offset each partition
//! resumes from (the last replicated offset + 1): the replica is its own checkpoint, so it can
//! never be ahead of or behind what it says it holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use factlog_log::{Clock, EmbeddedStore, Options, SyncMode};
use factlog_store::{
    AllFrom, EventStore, ExpectedVersion, Metadata, NewEvent, Position, ReadAll, RecordedEvent,
    StreamAppend, Timestamp,
};
use parking_lot::RwLock;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::KafkaError;
use crate::catalog::Catalog;
use crate::codec::{KafkaPosition, Slot, decode_event};
use crate::options::KafkaOptions;

/// The metadata key under which the replica keeps an event's Kafka position and recorded-at.
pub const STASH_KEY: &str = "$factlog.kafka";

/// Events applied to the replica in one local append, at most.
const APPLY_EVENTS_MAX: usize = 2000;
const APPLY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The clock of the replica: the recorded-at of the events being applied.
#[derive(Debug, Default)]
struct ReplicaClock(AtomicI64);

impl Clock for ReplicaClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct SlotState {
    /// (offset, local position) of every replicated event, in offset order.
    applied: Vec<(u64, u64)>,
    /// The next offset the replica reads (its consumer position), past control records.
    next_offset: i64,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<Slot, SlotState>,
    /// Set when replication stopped on an error; reads still work.
    failed: Option<String>,
}

/// The read replica of one node.
pub(crate) struct Replica {
    pub store: Arc<EmbeddedStore>,
    clock: Arc<ReplicaClock>,
    state: RwLock<State>,
    /// Bumped after every applied batch and every position update.
    progress: watch::Sender<u64>,
    stop: AtomicBool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("dir", &self.store.dir())
            .finish()
    }
}

impl Replica {
    /// Opens (or creates) the replica in `options.data_dir` and rebuilds its partition map.
    pub async fn open(options: &KafkaOptions) -> Result<Arc<Self>, KafkaError> {
        let clock = Arc::new(ReplicaClock::default());
        let limits = options.limits;
        let store_options = Options {
            // Derived data: what a crash loses is read again from Kafka.
            sync_mode: SyncMode::BulkImport,
            // Room for the stash and for applying many appends at once.
            event_size_bytes_max: limits.event_size_bytes_max + 4096,
            append_events_max: APPLY_EVENTS_MAX.max(limits.append_events_max) * 2,
            append_size_bytes_max: APPLY_BYTES_MAX.max(limits.append_size_bytes_max) * 2,
            clock: clock.clone(),
            ..Options::default()
        };
        std::fs::create_dir_all(&options.data_dir).map_err(|e| {
            KafkaError::Replica(format!("creating {}: {e}", options.data_dir.display()))
        })?;
        let dir = options.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(dir, store_options))
            .await
            .expect("the open task does not panic")
            .map_err(|e| KafkaError::Replica(e.to_string()))?;
        let replica = Arc::new(Self {
            store: Arc::new(store),
            clock,
            state: RwLock::new(State::default()),
            progress: watch::channel(0).0,
            stop: AtomicBool::new(false),
        });
        replica.rebuild().await?;
        Ok(replica)
    }

    /// Scans the replica once: each partition's (offset, local position) pairs and where it
    /// resumes.
    async fn rebuild(&self) -> Result<(), KafkaError> {
        let mut from = Position::START;
        let mut state = State::default();
        loop {
            let page = self
                .store
                .read_all(ReadAll::forward().from_position(from).limit(4096))
                .await
                .map_err(|e| KafkaError::Replica(e.to_string()))?;
            let Some(last) = page.last() else { break };
            from = Position::from_raw(last.position.raw() + 1);
            for event in &page {
                let (position, _) = stash(event).ok_or_else(|| {
                    KafkaError::Replica(format!(
                        "event {} of the replica has no Kafka position; the directory {} is not a Kafka replica",
                        event.id,
                        self.store.dir().display()
                    ))
                })?;
                if let KafkaPosition::Event { slot, offset } = KafkaPosition::decode(position) {
                    let s = state.slots.entry(slot).or_default();
                    s.applied.push((offset, event.position.raw()));
                    s.next_offset = offset as i64 + 1;
                }
            }
        }
        *self.state.write() = state;
        Ok(())
    }

    /// The event as the API shows it: its Kafka position and recorded-at, without the stash.
    pub fn to_api(mut event: RecordedEvent) -> RecordedEvent {
        if let Some((position, recorded_at)) = stash(&event) {
            event.position = position;
            event.recorded_at = recorded_at;
        }
        event.metadata.remove(STASH_KEY);
        event
    }

    /// The local position of the first event of `slot` at or after `offset`.
    pub fn local_at_or_after(&self, slot: Slot, offset: u64) -> Option<u64> {
        let state = self.state.read();
        let applied = &state.slots.get(&slot)?.applied;
        let i = applied.partition_point(|&(o, _)| o < offset);
        applied.get(i).map(|&(_, l)| l)
    }

    /// The local position of the last event of `slot` at or before `offset`.
    pub fn local_at_or_before(&self, slot: Slot, offset: u64) -> Option<u64> {
        let state = self.state.read();
        let applied = &state.slots.get(&slot)?.applied;
        let i = applied.partition_point(|&(o, _)| o <= offset);
        i.checked_sub(1).map(|i| applied[i].1)
    }

    /// For a reader that has read up to `last_read(slot)` (an offset; `None`: nothing) in
    /// each partition: the local position of the first replicated event it has not read
    /// (`None` when it has read them all), and the last local position replicated (0: none).
    pub fn first_unread(&self, last_read: impl Fn(Slot) -> Option<u64>) -> (Option<u64>, u64) {
        let state = self.state.read();
        let mut first: Option<u64> = None;
        let mut last = 0;
        for (&slot, s) in &state.slots {
            if let Some(&(_, l)) = s.applied.last() {
                last = last.max(l);
            }
            let i =
                last_read(slot).map_or(0, |read| s.applied.partition_point(|&(o, _)| o <= read));
            if let Some(&(_, l)) = s.applied.get(i) {
                first = Some(first.map_or(l, |f| f.min(l)));
            }
        }
        (first, last)
    }

    /// Each partition's last replicated event at or before the local position `local`, as
    /// (slot, offset).
    pub fn last_at_or_before_local(&self, local: u64) -> Vec<(Slot, u64)> {
        let state = self.state.read();
        state
            .slots
            .iter()
            .filter_map(|(&slot, s)| {
                let i = s.applied.partition_point(|&(_, l)| l <= local);
                i.checked_sub(1).map(|i| (slot, s.applied[i].0))
            })
            .collect()
    }

    /// The local position of an API position: a node-local mark as it is, an event by its
    /// place (the last event of its partition at or before it when it is not replicated).
    pub fn local_of(&self, position: Position) -> u64 {
        match KafkaPosition::decode(position) {
            KafkaPosition::Local(l) => l,
            KafkaPosition::Event { slot, offset } => {
                self.local_at_or_before(slot, offset).unwrap_or(0)
            }
        }
    }

    /// Whether the replica has read `slot` up to (not including) `offset`.
    pub fn reached(&self, slot: Slot, offset: i64) -> bool {
        self.state
            .read()
            .slots
            .get(&slot)
            .is_some_and(|s| s.next_offset >= offset)
    }

    pub fn failed(&self) -> Option<String> {
        self.state.read().failed.clone()
    }

    /// Waits until every `(slot, offset)` is reached, or `timeout` passes.
    pub async fn wait_for(
        &self,
        targets: &[(Slot, i64)],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let mut progress = self.progress.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            progress.borrow_and_update();
            if let Some(reason) = self.failed() {
                return Err(KafkaError::Replica(reason));
            }
            if targets
                .iter()
                .all(|&(slot, offset)| self.reached(slot, offset))
            {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, progress.changed())
                .await
                .is_err()
            {
                return Err(KafkaError::Timeout(format!(
                    "the local replica did not reach {} within {timeout:?}",
                    targets
                        .iter()
                        .map(|(s, o)| format!(
                            "offset {o} of partition {} of category #{}",
                            s.partition, s.category
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Starts the thread that follows the topics.
    pub fn start(
        self: &Arc<Self>,
        options: Arc<KafkaOptions>,
        catalog: Arc<Catalog>,
        runtime: tokio::runtime::Handle,
    ) -> Result<std::thread::JoinHandle<()>, KafkaError> {
        let consumer: BaseConsumer = options
            .client_config()
            .set(
                "group.id",
                format!("{}replica-{}", options.topic_prefix, options.node_id),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", "1")
            .create()
            .map_err(KafkaError::client("the replica consumer"))?;
        let replica = self.clone();
        let catalog_topic = options.catalog_topic();
        std::thread::Builder::new()
            .name("factlog-replica".into())
            .spawn(move || {
                let mut follower = Follower {
                    replica: replica.clone(),
                    options,
                    catalog,
                    consumer,
                    runtime,
                    assigned: HashMap::new(),
                    topics: HashMap::new(),
                    pending: Vec::new(),
                    pending_bytes: 0,
                    last_sync: None,
                    catalog_topic,
                    catalog_changed: false,
                    catalog_followed: false,
                };
                if let Err(e) = follower.run() {
                    tracing::error!(error = %e, "replication stopped");
                    replica.state.write().failed = Some(e.to_string());
                    replica.progress.send_modify(|p| *p += 1);
                }
            })
            .map_err(|e| KafkaError::Replica(format!("starting the replica thread: {e}")))
    }
}

fn stash(event: &RecordedEvent) -> Option<(Position, Timestamp)> {
    let value = event.metadata.get(STASH_KEY)?.as_array()?;
    let position = value.first()?.as_u64()?;
    let recorded_at = value.get(1)?.as_i64()?;
    Some((
        Position::from_raw(position),
        Timestamp::from_unix_micros(recorded_at),
    ))
}

struct Follower {
    replica: Arc<Replica>,
    options: Arc<KafkaOptions>,
    catalog: Arc<Catalog>,
    consumer: BaseConsumer,
    runtime: tokio::runtime::Handle,
    assigned: HashMap<Slot, ()>,
    /// Topic name -> category id.
    topics: HashMap<String, u32>,
    /// Records read and not yet applied, in the order read.
    pending: Vec<(Slot, RecordedEvent)>,
    pending_bytes: usize,
    last_sync: Option<Instant>,
    catalog_topic: String,
    catalog_changed: bool,
    catalog_followed: bool,
}

impl Follower {
    fn run(&mut self) -> Result<(), KafkaError> {
        while !self.replica.stop.load(Ordering::Relaxed) {
            // New categories: when the catalog topic (followed by this consumer too) has a
            // new record, and every few seconds as a safety net.
            if self.catalog_changed
                || self.catalog.take_registered()
                || self
                    .last_sync
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
            {
                // Reading the catalog fails while the cluster changes (a broker lost, a
                // leader moving): the replica goes on and tries again a second later.
                match self.sync_assignment() {
                    Ok(()) => {
                        self.catalog_changed = false;
                        self.last_sync = Some(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "following new categories; retrying in 1 s");
                        self.last_sync = Some(Instant::now() - Duration::from_secs(4));
                    }
                }
            }
            // Drain what is already fetched without waiting; apply as soon as nothing is left.
            let wait = if self.pending.is_empty() {
                Duration::from_millis(20)
            } else {
                Duration::ZERO
            };
            let message = self.consumer.poll(wait);
            match message {
                None => {
                    self.apply()?;
                    self.update_positions();
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "replica consumer");
                    self.apply()?;
                    self.update_positions();
                }
                Some(Ok(m)) => {
                    if m.topic() == self.catalog_topic {
                        self.catalog_changed = true;
                        continue;
                    }
                    let Some(&category) = self.topics.get(m.topic()) else {
                        continue;
                    };
                    let slot = Slot {
                        category,
                        partition: m.partition() as u32,
                    };
                    if !KafkaPosition::offset_fits(m.offset()) {
                        return Err(KafkaError::Replica(format!(
                            "offset {} of {} is beyond what a position holds",
                            m.offset(),
                            m.topic()
                        )));
                    }
                    let position = KafkaPosition::Event {
                        slot,
                        offset: m.offset() as u64,
                    }
                    .encode();
                    let headers: Vec<(&str, &[u8])> = m
                        .headers()
                        .map(|h| h.iter().filter_map(|h| Some((h.key, h.value?))).collect())
                        .unwrap_or_default();
                    let event = decode_event(m.key(), m.payload(), &headers, position).map_err(
                        |reason| {
                            KafkaError::Replica(format!(
                                "record at offset {} of partition {} of {}: {reason}",
                                m.offset(),
                                m.partition(),
                                m.topic()
                            ))
                        },
                    )?;
                    self.pending_bytes += event.data.len() + 256;
                    self.pending.push((slot, event));
                    if self.pending.len() >= APPLY_EVENTS_MAX
                        || self.pending_bytes >= APPLY_BYTES_MAX
                    {
                        self.apply()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Assigns partitions of categories that appeared in the catalog.
    fn sync_assignment(&mut self) -> Result<(), KafkaError> {
        self.runtime.block_on(self.catalog.refresh())?;
        let mut tpl = TopicPartitionList::new();
        for (id, name) in self.catalog.all() {
            let topic = self.options.topic(&name);
            self.topics.insert(topic.clone(), id);
            for partition in 0..self.options.partitions {
                let slot = Slot {
                    category: id,
                    partition,
                };
                if self.assigned.contains_key(&slot) {
                    continue;
                }
                let next = {
                    let mut state = self.replica.state.write();
                    let s = state.slots.entry(slot).or_default();
                    s.next_offset
                };
                let offset = if next > 0 {
                    Offset::Offset(next)
                } else {
                    Offset::Beginning
                };
                tpl.add_partition_offset(&topic, partition as i32, offset)
                    .expect("a valid partition");
                self.assigned.insert(slot, ());
            }
        }
        if !self.catalog_followed {
            // From where the catalog was just read: any later registration wakes a sync.
            tpl.add_partition_offset(
                &self.catalog_topic,
                0,
                Offset::Offset(self.catalog.next_offset()),
            )
            .expect("a valid partition");
            self.catalog_followed = true;
        }
        if tpl.count() > 0 {
            self.consumer
                .incremental_assign(&tpl)
                .map_err(KafkaError::client("the replica consumer"))?;
        }
        Ok(())
    }

    /// Publishes how far each partition has been read (past control records too).
    fn update_positions(&mut self) {
        debug_assert!(self.pending.is_empty());
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut changed = false;
        {
            let mut state = self.replica.state.write();
            for e in positions.elements() {
                let (Some(&category), Offset::Offset(offset)) =
                    (self.topics.get(e.topic()), e.offset())
                else {
                    continue;
                };
                let slot = Slot {
                    category,
                    partition: e.partition() as u32,
                };
                let s = state.slots.entry(slot).or_default();
                if offset > s.next_offset {
                    s.next_offset = offset;
                    changed = true;
                }
            }
        }
        if changed {
            self.replica.progress.send_modify(|p| *p += 1);
        }
    }

    /// Appends the pending records to the replica: consecutive records become one local
    /// multi-stream append, split where a stream would appear twice.
    fn apply(&mut self) -> Result<(), KafkaError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut start = 0;
        while start < pending.len() {
            let mut parts: Vec<StreamAppend> = Vec::new();
            let mut end = start;
            while end < pending.len() {
                let (_, event) = &pending[end];
                let same = parts.last().is_some_and(|l| l.stream == event.stream);
                let seen = parts.iter().any(|p| p.stream == event.stream);
                match parts.last_mut() {
                    Some(last) if same => {
                        if event.version != first_version(last) + last.events.len() as u64 {
                            return Err(KafkaError::Replica(format!(
                                "stream {} jumps to version {} at {}",
                                event.stream,
                                event.version,
                                crate::describe_position(event.position)
                            )));
                        }
                        last.events.push(to_new(event));
                    }
                    _ if seen => break,
                    _ => parts.push(StreamAppend {
                        stream: event.stream.clone(),
                        expected: if event.version == 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Exact(event.version - 1)
                        },
                        events: vec![to_new(event)],
                    }),
                }
                end += 1;
            }
            let batch = &pending[start..end];
            self.replica
                .clock
                .0
                .store(batch[0].1.recorded_at.unix_micros(), Ordering::Relaxed);
            let results = self
                .runtime
                .block_on(self.replica.store.append_multi(parts))
                .map_err(|e| {
                    KafkaError::Replica(format!(
                        "applying {} events from {}: {e}",
                        batch.len(),
                        crate::describe_position(batch[0].1.position)
                    ))
                })?;
            let mut state = self.replica.state.write();
            let mut local = results
                .iter()
                .flat_map(|r| r.first_position.raw()..=r.last_position.raw());
            for (slot, event) in batch {
                let local = local.next().expect("one local position per event");
                let s = state.slots.entry(*slot).or_default();
                if let KafkaPosition::Event { offset, .. } = KafkaPosition::decode(event.position) {
                    s.applied.push((offset, local));
                    s.next_offset = s.next_offset.max(offset as i64 + 1);
                }
            }
            drop(state);
            start = end;
        }
        self.replica.progress.send_modify(|p| *p += 1);
        Ok(())
    }
}

fn first_version(part: &StreamAppend) -> u64 {
    match part.expected {
        ExpectedVersion::Exact(v) => v + 1,
        _ => 0,
    }
}

fn to_new(event: &RecordedEvent) -> NewEvent {
    let mut metadata: Metadata = event.metadata.clone();
    metadata.insert(
        STASH_KEY.into(),
        serde_json::json!([event.position.raw(), event.recorded_at.unix_micros()]),
    );
    NewEvent {
        id: Some(event.id),
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        content_type: event.content_type.clone(),
        data: event.data.clone(),
        metadata,
    }
}

/// Where a local read of `$all` starts for an API position (see the crate docs).
pub(crate) fn local_from(replica: &Replica, from: AllFrom, backward: bool) -> AllFrom {
    match from {
        AllFrom::Start | AllFrom::End => from,
        AllFrom::Position(p) => match KafkaPosition::decode(p) {
            KafkaPosition::Local(l) => AllFrom::Position(Position::from_raw(l)),
            KafkaPosition::Event { slot, offset } => {
                let local = if backward {
                    replica.local_at_or_before(slot, offset)
                } else {
                    replica.local_at_or_after(slot, offset)
                };
                match (local, backward) {
                    (Some(l), _) => AllFrom::Position(Position::from_raw(l)),
                    // Nothing at or before it: a backward read returns nothing.
                    (None, true) => AllFrom::Position(Position::START),
                    // Nothing at or after it yet: from this node's end.
                    (None, false) => AllFrom::End,
                }
            }
        },
    }
}
