//! [`KafkaStore`]: the store API on Kafka.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use factlog_store::{
    AllFrom, AppendError, AppendResult, AsOf, Checkpoint, Direction, EventFilter, EventId,
    EventStore, ListStreams, Ordering as StoreOrdering, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, StreamAppend, StreamFrom, StreamInfo, StreamName, StreamPage, SubscribeError,
    SubscribeFrom, Subscription, Timestamp, Version, check_appends,
};
use futures::StreamExt;
use parking_lot::Mutex;
use rdkafka::producer::FutureProducer;

use crate::KafkaError;
use crate::catalog::Catalog;
use crate::codec::{KafkaPosition, Slot, partition_key, partition_of};
use crate::node::Node;
use crate::options::KafkaOptions;
use crate::replica::{Replica, STASH_KEY, local_from};

/// A step slower than this is logged, so a slow append says where its time went.
pub(crate) const SLOW: Duration = Duration::from_secs(5);

/// The store API on a Kafka cluster, as one node of it.
pub struct KafkaStore {
    options: Arc<KafkaOptions>,
    catalog: Arc<Catalog>,
    replica: Arc<Replica>,
    node: Arc<Node>,
    replica_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStore")
            .field("brokers", &self.options.brokers)
            .field("prefix", &self.options.topic_prefix)
            .field("node", &self.node)
            .finish()
    }
}

impl KafkaStore {
    /// Joins the store on the cluster as a node: creates the store's topics when missing,
    /// opens the local replica and catches it up in the background, and joins the writers'
    /// group. Appends wait (up to `append_timeout`) until their shard has an owner.
    pub async fn open(options: KafkaOptions) -> Result<Arc<Self>, KafkaError> {
        options.validate().map_err(KafkaError::Config)?;
        let options = Arc::new(options);
        let producer: FutureProducer = options
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.max.bytes", "20971520")
            .create()
            .map_err(KafkaError::client("the producer"))?;
        let catalog = Arc::new(Catalog::open(options.clone(), producer.clone()).await?);
        let replica = Replica::open(&options).await?;
        let replica_thread = replica.start(
            options.clone(),
            catalog.clone(),
            tokio::runtime::Handle::current(),
        )?;
        let node =
            match Node::start(options.clone(), producer, catalog.clone(), replica.clone()).await {
                Ok(node) => node,
                Err(e) => {
                    // Nothing may keep running after a failed open.
                    replica.stop();
                    let replica = replica.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let _ = replica_thread.join();
                        replica.store.close();
                    })
                    .await;
                    return Err(e);
                }
            };
        Ok(Arc::new(Self {
            options,
            catalog,
            replica,
            node,
            replica_thread: Mutex::new(Some(replica_thread)),
            closed: AtomicBool::new(false),
        }))
    }

    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// The shards (partition numbers) this node writes, once restored.
    pub fn owned_partitions(&self) -> Vec<u32> {
        self.node.owned_partitions()
    }

    /// The partition of a stream: the one Kafka's default partitioner picks for its name.
    pub fn partition_of(&self, stream: &StreamName) -> u32 {
        partition_of(stream.as_str().as_bytes(), self.options.partitions)
    }

    /// Waits until this node's replica holds everything committed to the store's topics when
    /// it is called: what a backup, an export or a check after a migration reads from.
    pub async fn catch_up(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.catalog.refresh().await?;
        let mut targets = Vec::new();
        for (id, name) in self.catalog.all() {
            let topic = self.options.topic(&name);
            for partition in 0..self.options.partitions {
                let high = self.catalog.high_watermark(&topic, partition as i32)?;
                targets.push((
                    Slot {
                        category: id,
                        partition,
                    },
                    high,
                ));
            }
        }
        self.replica.wait_for(&targets, timeout).await
    }

    /// Read-your-writes for a position returned by another node: waits until this node's
    /// replica holds the event at `position`.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<(), KafkaError> {
        match KafkaPosition::decode(position) {
            KafkaPosition::Event { slot, offset } => {
                self.replica
                    .wait_for(&[(slot, offset as i64 + 1)], timeout)
                    .await
            }
            KafkaPosition::Local(_) => Ok(()),
        }
    }

    /// Leaves the writers' group (its shards move to other nodes at once), stops following
    /// the topics and closes the replica.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let node = self.node.clone();
        let replica = self.replica.clone();
        let thread = self.replica_thread.lock().take();
        tokio::task::spawn_blocking(move || {
            node.shutdown();
            replica.stop();
            if let Some(t) = thread {
                let _ = t.join();
            }
            replica.store.close();
        })
        .await
        .expect("closing does not panic");
    }

    fn check_open(&self) -> Result<(), AppendError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(AppendError::Closed)
        } else {
            Ok(())
        }
    }

    /// The replica's `as_of` for an API `as_of`, and the time bound to filter by (recorded-at
    /// times are per partition, so a time bound is applied to each event's own time).
    fn local_as_of(&self, as_of: Option<AsOf>) -> (Option<AsOf>, Option<Timestamp>) {
        match as_of {
            None => (None, None),
            Some(AsOf::Time(t)) => (None, Some(t)),
            Some(AsOf::Position(p)) => {
                let local = match KafkaPosition::decode(p) {
                    KafkaPosition::Local(l) => l,
                    KafkaPosition::Event { slot, offset } => {
                        self.replica.local_at_or_before(slot, offset).unwrap_or(0)
                    }
                };
                (Some(AsOf::Position(Position::from_raw(local))), None)
            }
        }
    }
}

fn before(event: &RecordedEvent, bound: Option<Timestamp>) -> bool {
    bound.is_none_or(|t| event.recorded_at <= t)
}

#[async_trait]
impl EventStore for KafkaStore {
    fn ordering(&self) -> StoreOrdering {
        StoreOrdering::PerPartition
    }

    async fn append_multi(
        &self,
        mut appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        self.check_open()?;
        check_appends(&mut appends, &self.options.limits)?;
        if let Some(event) = appends
            .iter()
            .flat_map(|a| &a.events)
            .find(|e| e.metadata.contains_key(STASH_KEY))
        {
            return Err(AppendError::IdempotencyConflict {
                event_id: event.id.expect("filled in"),
                detail: format!(
                    "with the metadata key {STASH_KEY:?}, which the Kafka backend reserves; rename the key"
                ),
            });
        }
        let partition = self.partition_of(&appends[0].stream);
        if let Some(other) = appends
            .iter()
            .find(|a| self.partition_of(&a.stream) != partition)
        {
            return Err(AppendError::CrossPartition {
                first: appends[0].stream.clone(),
                other: other.stream.clone(),
            });
        }
        if let Some(reason) = self.replica.failed() {
            return Err(AppendError::Backend(format!(
                "this node's replica stopped ({reason}); restart the node"
            )));
        }
        let mut categories = Vec::with_capacity(appends.len());
        let ensured = std::time::Instant::now();
        for part in &appends {
            let id = self
                .catalog
                .ensure(part.stream.category())
                .await
                .map_err(|e| AppendError::Backend(e.to_string()))?;
            categories.push(id);
        }
        if ensured.elapsed() > SLOW {
            tracing::warn!(
                took_ms = ensured.elapsed().as_millis() as u64,
                "slow append: creating or finding its category topics took long"
            );
        }
        let submitted = std::time::Instant::now();
        let results = self.node.submit(partition, appends, categories).await?;
        if submitted.elapsed() > SLOW {
            tracing::warn!(
                partition,
                took_ms = submitted.elapsed().as_millis() as u64,
                owned = ?self.node.owned_partitions(),
                "slow append: its partition's writer took long to answer"
            );
        }
        // Read-your-writes on this node.
        let targets: Vec<(Slot, i64)> = results
            .iter()
            .filter_map(|r| match KafkaPosition::decode(r.last_position) {
                KafkaPosition::Event { slot, offset } => Some((slot, offset as i64 + 1)),
                KafkaPosition::Local(_) => None,
            })
            .collect();
        let waited = std::time::Instant::now();
        let shown = self
            .replica
            .wait_for(&targets, self.options.append_timeout)
            .await;
        tracing::debug!(
            partition,
            submit_us = (waited - submitted).as_micros() as u64,
            shown_us = waited.elapsed().as_micros() as u64,
            "append acknowledged"
        );
        if waited.elapsed() > SLOW {
            tracing::warn!(
                took_ms = waited.elapsed().as_millis() as u64,
                "slow read-your-writes: the replica took long to show an append"
            );
        }
        shown.map_err(|e| {
            AppendError::Backend(format!(
                "the append was written, but this node's replica did not show it in time: {e}"
            ))
        })?;
        Ok(results)
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let (as_of, bound) = self.local_as_of(options.as_of);
        let limit = options.limit;
        let mut local = ReadStream { as_of, ..options };
        let mut out = Vec::new();
        loop {
            let page = self
                .replica
                .store
                .read_stream(stream, local.clone())
                .await?;
            let exhausted = page.len() < local.limit;
            let Some(last) = page.last().map(|e| e.version) else {
                break;
            };
            out.extend(
                page.into_iter()
                    .map(Replica::to_api)
                    .filter(|e| before(e, bound))
                    .take(limit - out.len()),
            );
            if out.len() >= limit || exhausted || bound.is_none() {
                break;
            }
            local.from = match local.direction {
                Direction::Forward => StreamFrom::Version(last + 1),
                Direction::Backward if last == 0 => break,
                Direction::Backward => StreamFrom::Version(last - 1),
            };
        }
        Ok(out)
    }

    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError> {
        Ok(self
            .replica
            .store
            .read_event(stream, version)
            .await?
            .map(Replica::to_api))
    }

    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError> {
        Ok(self
            .replica
            .store
            .read_event_by_id(id)
            .await?
            .map(Replica::to_api))
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError> {
        let Some(mut info) = self.replica.store.stream_info(stream).await? else {
            return Ok(None);
        };
        // The times as the writer recorded them.
        if let Some(first) = self.read_event(stream, 0).await? {
            info.first_recorded_at = first.recorded_at;
        }
        if let Some(last) = self.read_event(stream, info.last_version).await? {
            info.last_recorded_at = last.recorded_at;
        }
        Ok(Some(info))
    }

    async fn read_all(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let (as_of, bound) = self.local_as_of(options.as_of);
        let backward = options.direction == Direction::Backward;
        let limit = options.limit;
        let mut local = ReadAll {
            from: local_from(&self.replica, options.from, backward),
            as_of,
            ..options
        };
        let mut out = Vec::new();
        loop {
            let page = self.replica.store.read_all(local.clone()).await?;
            let exhausted = page.len() < local.limit;
            let Some(last) = page.last().map(|e| e.position.raw()) else {
                break;
            };
            out.extend(
                page.into_iter()
                    .map(Replica::to_api)
                    .filter(|e| before(e, bound))
                    .take(limit - out.len()),
            );
            if out.len() >= limit || exhausted || bound.is_none() {
                break;
            }
            local.from = if backward {
                if last <= 1 {
                    break;
                }
                AllFrom::Position(Position::from_raw(last - 1))
            } else {
                AllFrom::Position(Position::from_raw(last + 1))
            };
        }
        Ok(out)
    }

    async fn list_streams(&self, options: ListStreams) -> Result<StreamPage, ReadError> {
        self.replica.store.list_streams(options).await
    }

    async fn categories(&self) -> Result<Vec<String>, ReadError> {
        self.replica.store.categories().await
    }

    async fn end_position(&self) -> Result<Position, ReadError> {
        let local = self.replica.store.end_position().await?;
        Ok(KafkaPosition::Local(local.raw()).encode())
    }

    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        let from = match from {
            SubscribeFrom::Start => SubscribeFrom::Start,
            SubscribeFrom::End => SubscribeFrom::End,
            SubscribeFrom::After(p) => match KafkaPosition::decode(p) {
                KafkaPosition::Local(l) => SubscribeFrom::After(Position::from_raw(l)),
                KafkaPosition::Event { slot, offset } => {
                    match self.replica.local_at_or_before(slot, offset) {
                        Some(l) => SubscribeFrom::After(Position::from_raw(l)),
                        None => match self.replica.local_at_or_after(slot, offset) {
                            Some(l) => SubscribeFrom::After(Position::from_raw(l - 1)),
                            None => SubscribeFrom::End,
                        },
                    }
                }
            },
        };
        self.replica
            .store
            .subscribe_all(from, filter)
            .map(|r| r.map(Replica::to_api))
            .boxed()
    }

    fn partition_key(&self, position: Position) -> u64 {
        partition_key(position)
    }

    /// Starts this node's `$all` at the first replicated event the checkpoint does not cover
    /// and leaves out the events after it that it does cover: each partition resumes after
    /// its own offset, whatever order another node merged them in.
    fn subscribe_after(&self, checkpoint: &Checkpoint, filter: EventFilter) -> Subscription {
        let from = match self.first_unread(checkpoint) {
            Err(e) => {
                let error = SubscribeError::Read(e);
                return futures::stream::once(async move { Err(error) }).boxed();
            }
            Ok((Some(first), _)) if first <= 1 => SubscribeFrom::Start,
            Ok((Some(first), _)) => SubscribeFrom::After(Position::from_raw(first - 1)),
            Ok((None, 0)) => SubscribeFrom::Start,
            Ok((None, last)) => SubscribeFrom::After(Position::from_raw(last)),
        };
        let checkpoint = checkpoint.clone();
        self.replica
            .store
            .subscribe_all(from, filter)
            .map(|r| r.map(Replica::to_api))
            .filter(move |r| {
                let keep = match r {
                    Ok(e) => !checkpoint.covers(partition_key(e.position), e.position),
                    Err(_) => true,
                };
                std::future::ready(keep)
            })
            .boxed()
    }

    async fn checkpoint_at(&self, position: Position) -> Result<Checkpoint, ReadError> {
        let mut checkpoint = Checkpoint::start(StoreOrdering::PerPartition);
        if position == Position::START {
            return Ok(checkpoint);
        }
        let local = self.replica.local_of(position);
        for (slot, offset) in self.replica.last_at_or_before_local(local) {
            checkpoint.advance(slot.key(), KafkaPosition::Event { slot, offset }.encode());
        }
        Ok(checkpoint)
    }

    async fn position_of(&self, checkpoint: &Checkpoint) -> Result<Position, ReadError> {
        let local = match self.first_unread(checkpoint)? {
            (Some(first), _) => first.saturating_sub(1),
            (None, last) => last,
        };
        Ok(KafkaPosition::Local(local).encode())
    }

    async fn wait_for_position(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<bool, ReadError> {
        match self.wait_for(position, timeout).await {
            Ok(()) => Ok(true),
            Err(KafkaError::Timeout(_)) => Ok(false),
            Err(e) => Err(ReadError::Backend(e.to_string())),
        }
    }

    fn events_between(&self, from: Position, to: Position) -> u64 {
        self.replica
            .local_of(to)
            .saturating_sub(self.replica.local_of(from))
    }

    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription {
        self.replica
            .store
            .subscribe_stream(stream, from)
            .map(|r| r.map(Replica::to_api))
            .boxed()
    }
}

impl KafkaStore {
    /// For a reader at `checkpoint`: the local position of the first replicated event it has
    /// not read, and the last local position replicated ([`Replica::first_unread`]).
    fn first_unread(&self, checkpoint: &Checkpoint) -> Result<(Option<u64>, u64), ReadError> {
        let Checkpoint::PerPartition(parts) = checkpoint else {
            return Err(ReadError::Backend(format!(
                "the checkpoint {checkpoint} is a single position; on Kafka a checkpoint is per partition"
            )));
        };
        Ok(self.replica.first_unread(|slot| {
            parts
                .get(&slot.key())
                .map(|p| match KafkaPosition::decode(*p) {
                    KafkaPosition::Event { offset, .. } => offset,
                    KafkaPosition::Local(_) => 0,
                })
        }))
    }
}
