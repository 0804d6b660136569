//! A store with a per-partition order, made from a totally ordered one, so that the suite's
//! [`Ordering::PerPartition`] checks run (and are checked) without a broker.
//!
//! [`Partitioned`] wraps any store and changes only what a per-partition backend is free to
//! differ in: it reports [`Ordering::PerPartition`]; every stream lives in one of
//! [`PARTITIONS`] partitions (by a hash of its name); an event's position is
//! `(partition + 1) << 40 | p`, where `p` is the inner position, so positions increase within a
//! stream but their values say nothing about the order of events of different partitions; the
//! end of `$all` is a node-local mark (partition field 0) that is smaller than every event's
//! position; and each partition's clock runs at its own offset, so `recorded_at` never
//! decreases within a stream but does along `$all`. `$all` keeps the inner order, which is what a
//! node-local order is on a single node fed by one client.
//!
//! Like the Kafka backend, it refuses a multi-stream append over streams of different partitions
//! with [`AppendError::CrossPartition`] (naming the first part's stream and the first part on
//! another partition), writing nothing. It does so after the checks that need no state (no
//! events, a stream twice, limits, an id twice) and before idempotency and the expected versions,
//! which is the order the suite's partition probes rely on.
//!
//! The wrapper can also inject faults that only a per-partition check can catch
//! ([`PartitionFault`]).

#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use factlog_conformance::model::ModelStore;
use factlog_conformance::{Backend, Limits};
use factlog_store::{
    AllFrom, AppendError, AppendResult, AsOf, Direction, EventFilter, EventId, EventStore,
    ListStreams, Ordering, Position, ReadAll, ReadError, ReadStream, RecordedEvent, StreamAppend,
    StreamInfo, StreamName, StreamPage, SubscribeFrom, Subscription, Timestamp, Version,
};
use futures::StreamExt;

/// How many partitions the streams are spread over.
pub const PARTITIONS: u64 = 4;
/// Bits of the inner position in a wrapped position.
const INNER_BITS: u32 = 40;
const INNER_MASK: u64 = (1 << INNER_BITS) - 1;
/// How far apart the clocks of two neighbouring partitions are, in microseconds.
const CLOCK_SKEW_MICROS: i64 = 1_500;

/// A way a per-partition store can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionFault {
    None,
    /// Positions decrease within a stream (and a partition).
    PositionsDescend,
    /// `recorded_at` steps back between consecutive events of a stream.
    RecordedAtBackInStream,
    /// `read_all` orders `$all` by position value (partition by partition) instead of the order
    /// the events were stored in: one client's appends to several streams come back out of order.
    AllByPositionValue,
    /// A multi-stream append across partitions is refused with `CrossPartition`, but only after
    /// the parts on the first part's partition were written (a store that writes partition by
    /// partition and stops at the first partition it cannot take).
    CrossPartitionPartial,
    /// A multi-stream append across partitions is stored whole when every expectation holds; only
    /// one that fails an expectation anyway is refused with `CrossPartition` (the partitions are
    /// compared on the failure path only). Probes, which always fail, still see the partitions.
    CrossPartitionWhole,
    /// A multi-stream append across partitions is never refused: stored whole, as if the store
    /// had one partition. Through the API this store looks like one with a single partition.
    CrossPartitionAccepted,
}

/// The partition a stream lives in: FNV-1a of its name.
pub fn partition_of(stream: &StreamName) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % PARTITIONS
}

pub struct Partitioned<S> {
    inner: Arc<S>,
    codec: Codec,
    /// The backend's limits, for the checks made before the partitions are compared.
    limits: Limits,
}

/// How the wrapper translates between the inner store and its readers. Subscriptions take a copy,
/// so that they hold no handle to the store (a reopen needs the only one).
#[derive(Debug, Clone, Copy)]
struct Codec {
    fault: PartitionFault,
}

impl Codec {
    fn event_position(&self, stream: &StreamName, inner: Position) -> Position {
        let p = inner.raw();
        assert!(p <= INNER_MASK, "inner position {p} too large to wrap");
        let p = if self.fault == PartitionFault::PositionsDescend {
            INNER_MASK - p
        } else {
            p
        };
        Position::from_raw(((partition_of(stream) + 1) << INNER_BITS) | p)
    }

    /// The inner position of a wrapped one: an event's or a node-local mark (or `START`).
    fn inner_position(&self, p: Position) -> Position {
        let raw = p.raw();
        let low = raw & INNER_MASK;
        if raw >> INNER_BITS != 0 && self.fault == PartitionFault::PositionsDescend {
            Position::from_raw(INNER_MASK - low)
        } else {
            Position::from_raw(low)
        }
    }

    fn local_mark(inner: Position) -> Position {
        assert!(inner.raw() <= INNER_MASK);
        inner
    }

    fn recorded_at(&self, stream: &StreamName, version: Version, inner: Timestamp) -> Timestamp {
        let skew = (PARTITIONS - partition_of(stream)) as i64 * CLOCK_SKEW_MICROS;
        let back = if self.fault == PartitionFault::RecordedAtBackInStream && version % 2 == 1 {
            10 * CLOCK_SKEW_MICROS * PARTITIONS as i64
        } else {
            0
        };
        Timestamp::from_unix_micros(inner.unix_micros() + skew - back)
    }

    fn event(&self, mut e: RecordedEvent) -> RecordedEvent {
        e.position = self.event_position(&e.stream, e.position);
        e.recorded_at = self.recorded_at(&e.stream, e.version, e.recorded_at);
        e
    }

    fn result(&self, stream: &StreamName, r: AppendResult) -> AppendResult {
        AppendResult {
            first_position: self.event_position(stream, r.first_position),
            last_position: self.event_position(stream, r.last_position),
            ..r
        }
    }

    /// The inner `as_of` for a wrapped one, and the time bound the wrapper applies itself (the
    /// inner store's clock is not the one the reader sees).
    fn as_of(&self, as_of: Option<AsOf>) -> (Option<AsOf>, Option<Timestamp>) {
        match as_of {
            None => (None, None),
            Some(AsOf::Position(p)) => (Some(AsOf::Position(self.inner_position(p))), None),
            Some(AsOf::Time(t)) => (None, Some(t)),
        }
    }

    fn visible(bound: Option<Timestamp>, e: &RecordedEvent) -> bool {
        bound.is_none_or(|t| e.recorded_at <= t)
    }

    fn all_from(&self, from: AllFrom) -> AllFrom {
        match from {
            AllFrom::Position(p) => AllFrom::Position(self.inner_position(p)),
            other => other,
        }
    }
}

impl<S: EventStore> Partitioned<S> {
    /// Whether every part's expectation holds now (for [`PartitionFault::CrossPartitionWhole`]).
    async fn expectations_hold(&self, appends: &[StreamAppend]) -> Result<bool, AppendError> {
        for a in appends {
            let current = self
                .inner
                .stream_info(&a.stream)
                .await
                .map_err(|e| AppendError::Backend(e.to_string()))?
                .map(|i| i.last_version);
            if !a.expected.is_met_by(current) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Refuses a well-formed multi-stream append over streams of different partitions (or does
    /// what the fault says); `Ok(appends)` is what to hand to the inner store.
    async fn check_partitions(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<StreamAppend>, AppendError> {
        if ModelStore::check_call(self.limits, &appends).is_err() {
            // Malformed: the inner store says how, as a backend checks that first.
            return Ok(appends);
        }
        let partition = partition_of(&appends[0].stream);
        let Some(other) = appends
            .iter()
            .find(|a| partition_of(&a.stream) != partition)
        else {
            return Ok(appends);
        };
        let refusal = AppendError::CrossPartition {
            first: appends[0].stream.clone(),
            other: other.stream.clone(),
        };
        match self.codec.fault {
            PartitionFault::CrossPartitionAccepted => Ok(appends),
            PartitionFault::CrossPartitionWhole if self.expectations_hold(&appends).await? => {
                Ok(appends)
            }
            PartitionFault::CrossPartitionPartial => {
                let local: Vec<StreamAppend> = appends
                    .into_iter()
                    .filter(|a| partition_of(&a.stream) == partition)
                    .collect();
                let _ = self.inner.append_multi(local).await;
                Err(refusal)
            }
            _ => Err(refusal),
        }
    }

    /// `read_all` for [`PartitionFault::AllByPositionValue`]: `$all` sorted by wrapped position.
    async fn read_all_by_value(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let (as_of, bound) = self.codec.as_of(options.as_of);
        let mut all: Vec<RecordedEvent> = self
            .inner
            .read_all(ReadAll {
                from: AllFrom::Start,
                direction: Direction::Forward,
                limit: usize::MAX,
                filter: options.filter.clone(),
                as_of,
            })
            .await?
            .into_iter()
            .map(|e| self.codec.event(e))
            .filter(|e| Codec::visible(bound, e))
            .collect();
        all.sort_by_key(|e| e.position);
        let events: Vec<RecordedEvent> = match (options.direction, options.from) {
            (Direction::Forward, AllFrom::Start) => all,
            (Direction::Forward, AllFrom::End) => vec![],
            (Direction::Forward, AllFrom::Position(p)) => {
                all.into_iter().filter(|e| e.position >= p).collect()
            }
            (Direction::Backward, AllFrom::Start) => vec![],
            (Direction::Backward, AllFrom::End) => all.into_iter().rev().collect(),
            (Direction::Backward, AllFrom::Position(p)) => {
                all.into_iter().rev().filter(|e| e.position <= p).collect()
            }
        };
        Ok(events.into_iter().take(options.limit).collect())
    }
}

#[async_trait]
impl<S: EventStore> EventStore for Partitioned<S> {
    fn ordering(&self) -> Ordering {
        Ordering::PerPartition
    }

    async fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        let appends = self.check_partitions(appends).await?;
        let streams: Vec<StreamName> = appends.iter().map(|a| a.stream.clone()).collect();
        let results = self.inner.append_multi(appends).await?;
        Ok(streams
            .iter()
            .zip(results)
            .map(|(s, r)| self.codec.result(s, r))
            .collect())
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let (as_of, bound) = self.codec.as_of(options.as_of);
        let limit = options.limit;
        let inner_options = ReadStream {
            as_of,
            limit: if bound.is_some() { usize::MAX } else { limit },
            ..options
        };
        let events = self.inner.read_stream(stream, inner_options).await?;
        Ok(events
            .into_iter()
            .map(|e| self.codec.event(e))
            .filter(|e| Codec::visible(bound, e))
            .take(limit)
            .collect())
    }

    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError> {
        Ok(self
            .inner
            .read_event(stream, version)
            .await?
            .map(|e| self.codec.event(e)))
    }

    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError> {
        Ok(self
            .inner
            .read_event_by_id(id)
            .await?
            .map(|e| self.codec.event(e)))
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError> {
        Ok(self.inner.stream_info(stream).await?.map(|i| StreamInfo {
            first_recorded_at: self.codec.recorded_at(stream, 0, i.first_recorded_at),
            last_recorded_at: self
                .codec
                .recorded_at(stream, i.last_version, i.last_recorded_at),
            ..i
        }))
    }

    async fn read_all(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        if self.codec.fault == PartitionFault::AllByPositionValue {
            return self.read_all_by_value(options).await;
        }
        let (as_of, bound) = self.codec.as_of(options.as_of);
        let limit = options.limit;
        let inner_options = ReadAll {
            from: self.codec.all_from(options.from),
            as_of,
            limit: if bound.is_some() { usize::MAX } else { limit },
            ..options
        };
        let events = self.inner.read_all(inner_options).await?;
        Ok(events
            .into_iter()
            .map(|e| self.codec.event(e))
            .filter(|e| Codec::visible(bound, e))
            .take(limit)
            .collect())
    }

    async fn list_streams(&self, options: ListStreams) -> Result<StreamPage, ReadError> {
        self.inner.list_streams(options).await
    }

    async fn categories(&self) -> Result<Vec<String>, ReadError> {
        self.inner.categories().await
    }

    async fn end_position(&self) -> Result<Position, ReadError> {
        Ok(Codec::local_mark(self.inner.end_position().await?))
    }

    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        let from = match from {
            SubscribeFrom::After(p) => SubscribeFrom::After(self.codec.inner_position(p)),
            other => other,
        };
        let codec = self.codec;
        self.inner
            .subscribe_all(from, filter)
            .map(move |r| r.map(|e| codec.event(e)))
            .boxed()
    }

    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription {
        let codec = self.codec;
        self.inner
            .subscribe_stream(stream, from)
            .map(move |r| r.map(|e| codec.event(e)))
            .boxed()
    }
}

/// A [`Backend`] whose stores are `B`'s, wrapped in [`Partitioned`].
pub struct PartitionedBackend<B> {
    pub inner: B,
    pub fault: PartitionFault,
}

impl<B> PartitionedBackend<B> {
    pub fn new(inner: B) -> Self {
        Self::with_fault(inner, PartitionFault::None)
    }

    pub fn with_fault(inner: B, fault: PartitionFault) -> Self {
        Self { inner, fault }
    }
}

#[async_trait]
impl<B: Backend> Backend for PartitionedBackend<B> {
    type Store = Partitioned<B::Store>;

    async fn open(&self) -> Arc<Self::Store> {
        Arc::new(Partitioned {
            inner: self.inner.open().await,
            codec: Codec { fault: self.fault },
            limits: self.inner.limits(),
        })
    }

    async fn reopen(&self, store: Arc<Self::Store>) -> Arc<Self::Store> {
        let store = Arc::into_inner(store).expect("reopen must be handed the only handle");
        Arc::new(Partitioned {
            inner: self.inner.reopen(store.inner).await,
            codec: Codec { fault: self.fault },
            limits: self.inner.limits(),
        })
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }
}
