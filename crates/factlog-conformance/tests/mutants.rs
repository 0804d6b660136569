//! Checks that the suite catches bugs: a wrapper around the model injects one known fault at a
//! time, and the case that guards the broken promise must fail on it. A case that passes on a
//! broken store is a case that asserts nothing.
//!
//! The wrapper without a fault runs the whole suite too, so a failure below is the fault's doing
//! and not the wrapper's.
//!
//! The same faults behind the per-partition wrapper of `common` (which `tests/per_partition.rs`
//! runs the whole suite on) check that the checks of a per-partition order still catch them, and
//! the wrapper's own faults check the promises only a per-partition store can break.

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use factlog_conformance::model::{ModelBackend, ModelStore};
use factlog_conformance::{Backend, Limits};
use factlog_store::{
    AppendError, AppendResult, AsOf, Direction, EventFilter, EventId, EventStore, ExpectedVersion,
    ListStreams, Ordering, Position, ReadAll, ReadError, ReadStream, RecordedEvent, StreamAppend,
    StreamInfo, StreamName, StreamPage, SubscribeFrom, Subscription, Timestamp, Version,
};
use futures::{FutureExt, StreamExt};

use common::{PartitionFault, PartitionedBackend};

/// One way a backend can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Appends as if every expectation were `Any`.
    IgnoreExpected,
    /// Reports `current: None` in `WrongExpectedVersion`.
    NoCurrentInError,
    /// Checks expectations, then appends with `Any` after a pause: the classic lost race.
    CheckThenAppend,
    /// Writes the parts of a multi-stream append one by one.
    NonAtomicMulti,
    /// Drops caller ids, so retries are stored again.
    StripIds,
    /// Gives events without an id the nil id.
    NilIds,
    /// `reopen` opens an empty store.
    ForgetOnReopen,
    /// Declares smaller limits than it enforces.
    LaxLimits,
    /// Backward stream reads come back in forward order.
    BackwardStreamForward,
    /// `read_all` ignores its filter.
    IgnoreFilter,
    /// `read_all` treats a `from` position as exclusive.
    ExclusiveFrom,
    /// Reads ignore `as_of`.
    IgnoreAsOf,
    /// `AsOf::Time(t)` is treated as "recorded before t".
    AsOfTimeExclusive,
    /// `stream_info` counts one event too many.
    StreamInfoCount,
    /// `end_position` is the last event's position.
    EndAtLastEvent,
    /// `list_streams` ignores `after`.
    ListIgnoresAfter,
    /// `categories` in reverse order.
    CategoriesReversed,
    /// `read_event` of a missing stream is `StreamNotFound`.
    ReadEventMissingErrs,
    /// `read_event_by_id` finds nothing.
    ByIdAlwaysNone,
    /// `read_event_by_id` returns the last event of the found event's stream.
    ByIdLastOfStream,
    /// `read_event_by_id` of an unknown id is an error rather than `None`.
    ByIdUnknownErrs,
    /// `read_event_by_id` forgets the ids stored before a reopen.
    ByIdForgetsOnReopen,
    /// Subscriptions deliver their fourth event twice.
    DuplicateInSubscription,
    /// Subscriptions skip their eighth event.
    SkipInSubscription,
    /// `SubscribeFrom::End` behaves as `Start`.
    EndIsStart,
}

struct FaultyStore {
    inner: Arc<ModelStore>,
    fault: Fault,
    /// Events stored before the last reopen (for [`Fault::ByIdForgetsOnReopen`]).
    reopened_at: usize,
}

#[derive(Debug)]
struct FaultyBackend {
    fault: Fault,
    model: ModelBackend,
}

impl FaultyBackend {
    fn new(fault: Fault) -> Self {
        let limits = ModelStore::DEFAULT_LIMITS;
        let enforced = if fault == Fault::LaxLimits {
            Limits {
                event_size_bytes_max: limits.event_size_bytes_max * 2,
                append_events_max: limits.append_events_max * 2,
            }
        } else {
            limits
        };
        Self {
            fault,
            model: ModelBackend::with_limits(enforced),
        }
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    type Store = FaultyStore;

    async fn open(&self) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner: self.model.open().await,
            fault: self.fault,
            reopened_at: 0,
        })
    }

    async fn reopen(&self, store: Arc<FaultyStore>) -> Arc<FaultyStore> {
        let store = Arc::into_inner(store).expect("the only handle");
        let inner = if self.fault == Fault::ForgetOnReopen {
            self.model.open().await
        } else {
            self.model.reopen(store.inner).await
        };
        let reopened_at = inner.events().len();
        Arc::new(FaultyStore {
            inner,
            fault: self.fault,
            reopened_at,
        })
    }

    fn limits(&self) -> Limits {
        ModelStore::DEFAULT_LIMITS
    }
}

impl FaultyStore {
    fn mangle(&self, sub: Subscription) -> Subscription {
        match self.fault {
            Fault::DuplicateInSubscription => sub
                .enumerate()
                .flat_map(|(i, e)| {
                    futures::stream::iter(if i == 3 { vec![e.clone(), e] } else { vec![e] })
                })
                .boxed(),
            Fault::SkipInSubscription => sub
                .enumerate()
                .filter(|(i, _)| futures::future::ready(*i != 7))
                .map(|(_, e)| e)
                .boxed(),
            _ => sub,
        }
    }

    fn as_of(&self, as_of: Option<AsOf>) -> Option<AsOf> {
        match (self.fault, as_of) {
            (Fault::IgnoreAsOf, _) => None,
            (Fault::AsOfTimeExclusive, Some(AsOf::Time(t))) => {
                Some(AsOf::Time(Timestamp::from_unix_micros(t.unix_micros() - 1)))
            }
            (_, as_of) => as_of,
        }
    }
}

#[async_trait]
impl EventStore for FaultyStore {
    fn ordering(&self) -> Ordering {
        self.inner.ordering()
    }

    async fn append_multi(
        &self,
        mut appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        for part in &mut appends {
            for e in &mut part.events {
                match self.fault {
                    Fault::StripIds => e.id = None,
                    Fault::NilIds if e.id.is_none() => e.id = Some(EventId::from_bytes([0; 16])),
                    _ => {}
                }
            }
        }
        match self.fault {
            Fault::IgnoreExpected => {
                appends
                    .iter_mut()
                    .for_each(|a| a.expected = ExpectedVersion::Any);
                self.inner.append_multi(appends).await
            }
            Fault::NoCurrentInError => {
                self.inner.append_multi(appends).await.map_err(|e| match e {
                    AppendError::WrongExpectedVersion {
                        stream, expected, ..
                    } => AppendError::WrongExpectedVersion {
                        stream,
                        expected,
                        current: None,
                    },
                    e => e,
                })
            }
            Fault::CheckThenAppend => {
                for a in &mut appends {
                    let current = self
                        .inner
                        .stream_info(&a.stream)
                        .await
                        .expect("stream_info")
                        .map(|i| i.last_version);
                    if !a.expected.is_met_by(current) {
                        return Err(AppendError::WrongExpectedVersion {
                            stream: a.stream.clone(),
                            expected: a.expected,
                            current,
                        });
                    }
                    a.expected = ExpectedVersion::Any;
                }
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                self.inner.append_multi(appends).await
            }
            Fault::NonAtomicMulti => {
                let mut results = Vec::new();
                for a in appends {
                    results.push(self.inner.append(&a.stream, a.expected, a.events).await?);
                }
                Ok(results)
            }
            _ => self.inner.append_multi(appends).await,
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        mut options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        options.as_of = self.as_of(options.as_of);
        let backward = options.direction == Direction::Backward;
        let mut events = self.inner.read_stream(stream, options).await?;
        if self.fault == Fault::BackwardStreamForward && backward {
            events.reverse();
        }
        Ok(events)
    }

    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError> {
        if self.fault == Fault::ReadEventMissingErrs
            && self.inner.stream_info(stream).await?.is_none()
        {
            return Err(ReadError::StreamNotFound(stream.clone()));
        }
        self.inner.read_event(stream, version).await
    }

    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError> {
        let found = self.inner.read_event_by_id(id).await?;
        match (self.fault, found) {
            (Fault::ByIdAlwaysNone, _) => Ok(None),
            (Fault::ByIdLastOfStream, Some(e)) => {
                let last = self
                    .inner
                    .stream_info(&e.stream)
                    .await?
                    .map(|i| i.last_version);
                self.inner
                    .read_event(&e.stream, last.unwrap_or(e.version))
                    .await
            }
            (Fault::ByIdUnknownErrs, None) => {
                Err(ReadError::Backend(format!("no event has the id {id}")))
            }
            (Fault::ByIdForgetsOnReopen, Some(e))
                if (e.position.raw() as usize) <= self.reopened_at =>
            {
                Ok(None)
            }
            (_, found) => Ok(found),
        }
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError> {
        let info = self.inner.stream_info(stream).await?;
        Ok(match self.fault {
            Fault::StreamInfoCount => info.map(|i| StreamInfo {
                event_count: i.event_count + 1,
                ..i
            }),
            _ => info,
        })
    }

    async fn read_all(&self, mut options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        options.as_of = self.as_of(options.as_of);
        if self.fault == Fault::IgnoreFilter {
            options.filter = EventFilter::default();
        }
        let exclusive_from = matches!(options.from, factlog_store::AllFrom::Position(_));
        let events = self.inner.read_all(options).await?;
        if self.fault == Fault::ExclusiveFrom && exclusive_from {
            return Ok(events.into_iter().skip(1).collect());
        }
        Ok(events)
    }

    async fn list_streams(&self, mut options: ListStreams) -> Result<StreamPage, ReadError> {
        if self.fault == Fault::ListIgnoresAfter {
            options.after = None;
        }
        self.inner.list_streams(options).await
    }

    async fn categories(&self) -> Result<Vec<String>, ReadError> {
        let mut categories = self.inner.categories().await?;
        if self.fault == Fault::CategoriesReversed {
            categories.reverse();
        }
        Ok(categories)
    }

    async fn end_position(&self) -> Result<Position, ReadError> {
        let end = self.inner.end_position().await?;
        if self.fault == Fault::EndAtLastEvent {
            let last = self.inner.read_all(ReadAll::backward().limit(1)).await?;
            return Ok(last.first().map_or(end, |e| e.position));
        }
        Ok(end)
    }

    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        let from = if self.fault == Fault::EndIsStart && from == SubscribeFrom::End {
            SubscribeFrom::Start
        } else {
            from
        };
        self.mangle(self.inner.subscribe_all(from, filter))
    }

    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription {
        let from = if self.fault == Fault::EndIsStart && from == SubscribeFrom::End {
            SubscribeFrom::Start
        } else {
            from
        };
        self.mangle(self.inner.subscribe_stream(stream, from))
    }
}

/// The wrapper itself must be a correct store when it injects nothing.
mod unfaulted {
    use super::*;

    factlog_conformance::conformance_tests!(FaultyBackend::new(Fault::None));
}

/// `$name`: the case `$case` must fail on a store with `$fault`.
macro_rules! must_fail {
    ($($name:ident: $fault:ident => $case:ident $(($arg:expr))?;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let backend = FaultyBackend::new(Fault::$fault);
                let outcome = AssertUnwindSafe(factlog_conformance::$case(&backend $(, $arg)?))
                    .catch_unwind()
                    .await;
                assert!(
                    outcome.is_err(),
                    "the case {} passed on a store with the fault {:?}",
                    stringify!($case),
                    Fault::$fault
                );
            }
        )+
    };
}

must_fail! {
    ignore_expected_no_stream: IgnoreExpected => expected_version_no_stream;
    ignore_expected_stream_exists: IgnoreExpected => expected_version_stream_exists;
    ignore_expected_exact: IgnoreExpected => expected_version_exact;
    ignore_expected_races: IgnoreExpected => concurrent_writers_one_winner(5);
    ignore_expected_multi: IgnoreExpected => append_multi_all_or_nothing;
    no_current_no_stream: NoCurrentInError => expected_version_no_stream;
    no_current_exact: NoCurrentInError => expected_version_exact;
    no_current_races: NoCurrentInError => concurrent_writers_one_winner(5);
    check_then_append_races: CheckThenAppend => concurrent_writers_one_winner(50);
    check_then_append_multi_races: CheckThenAppend => concurrent_multi_stream_writers_one_winner(50);
    non_atomic_multi: NonAtomicMulti => append_multi_all_or_nothing;
    non_atomic_multi_limits: NonAtomicMulti => events_per_append_limit;
    strip_ids_retry: StripIds => idempotent_retry_returns_original_result;
    strip_ids_conflict: StripIds => idempotency_conflict_other_content;
    strip_ids_other_stream: StripIds => idempotency_conflict_other_stream;
    strip_ids_caller_ids: StripIds => store_assigned_event_ids;
    nil_ids: NilIds => store_assigned_event_ids;
    forget_on_reopen: ForgetOnReopen => idempotent_retry_after_reopen;
    lax_event_size: LaxLimits => event_size_limit;
    lax_events_per_append: LaxLimits => events_per_append_limit;
    backward_stream: BackwardStreamForward => read_stream_forward_backward;
    backward_stream_as_of: BackwardStreamForward => as_of_position;
    ignore_filter: IgnoreFilter => read_all_filters;
    exclusive_from: ExclusiveFrom => read_all_forward_backward;
    exclusive_from_filters: ExclusiveFrom => read_all_filters;
    ignore_as_of_position: IgnoreAsOf => as_of_position;
    ignore_as_of_time: IgnoreAsOf => as_of_time;
    as_of_time_exclusive: AsOfTimeExclusive => as_of_time;
    stream_info_count: StreamInfoCount => stream_info_matches_events;
    end_at_last_event: EndAtLastEvent => end_position_moves_with_appends;
    list_ignores_after: ListIgnoresAfter => list_streams_paged;
    categories_reversed: CategoriesReversed => categories_sorted_distinct;
    read_event_missing_errs: ReadEventMissingErrs => read_event_some_none;
    by_id_always_none: ByIdAlwaysNone => read_event_by_id_finds_each_event;
    by_id_always_none_reopen: ByIdAlwaysNone => read_event_by_id_after_reopen;
    by_id_last_of_stream: ByIdLastOfStream => read_event_by_id_finds_each_event;
    by_id_unknown_errs: ByIdUnknownErrs => read_event_by_id_unknown_is_none;
    by_id_forgets_on_reopen: ByIdForgetsOnReopen => read_event_by_id_after_reopen;
    duplicate_from_start: DuplicateInSubscription => subscribe_all_from_start;
    duplicate_after: DuplicateInSubscription => subscribe_all_after_position;
    duplicate_filtered: DuplicateInSubscription => subscribe_all_filtered;
    duplicate_stream: DuplicateInSubscription => subscribe_stream_from_start_after_end;
    duplicate_concurrent: DuplicateInSubscription => subscribe_all_concurrent_writers;
    skip_concurrent: SkipInSubscription => subscribe_all_concurrent_writers;
    end_is_start_all: EndIsStart => subscribe_all_from_end;
    end_is_start_stream: EndIsStart => subscribe_stream_from_start_after_end;
}

/// `$name`: the case `$case` must fail on the stores of `$backend`, which have a fault.
macro_rules! must_fail_on {
    ($($name:ident: $backend:expr => $case:ident $(($arg:expr))?;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let backend = $backend;
                let outcome = AssertUnwindSafe(factlog_conformance::$case(&backend $(, $arg)?))
                    .catch_unwind()
                    .await;
                assert!(
                    outcome.is_err(),
                    "the case {} passed on the faulty per-partition store {}",
                    stringify!($case),
                    stringify!($backend)
                );
            }
        )+
    };
}

/// A fault of the model behind the per-partition wrapper.
fn partitioned(fault: Fault) -> PartitionedBackend<FaultyBackend> {
    PartitionedBackend::new(FaultyBackend::new(fault))
}

/// A fault of the per-partition wrapper itself, around a correct model.
fn per_partition(fault: PartitionFault) -> PartitionedBackend<ModelBackend> {
    PartitionedBackend::with_fault(ModelBackend::new(), fault)
}

// Faults the cases must still catch with the checks of a per-partition order. (Time travel by
// time is the wrapper's own, so the model's `AsOf::Time` faults never reach a reader.)
must_fail_on! {
    partitioned_exclusive_from: partitioned(Fault::ExclusiveFrom) => read_all_forward_backward;
    partitioned_exclusive_from_filters: partitioned(Fault::ExclusiveFrom) => read_all_filters;
    partitioned_ignore_filter: partitioned(Fault::IgnoreFilter) => read_all_filters;
    partitioned_ignore_as_of_position: partitioned(Fault::IgnoreAsOf) => as_of_position;
    partitioned_backward_stream_as_of: partitioned(Fault::BackwardStreamForward) => as_of_position;
    partitioned_end_at_last_event: partitioned(Fault::EndAtLastEvent) => end_position_moves_with_appends;
    partitioned_forget_on_reopen: partitioned(Fault::ForgetOnReopen) => idempotent_retry_after_reopen;
    partitioned_stream_info_count: partitioned(Fault::StreamInfoCount) => stream_info_matches_events;
    partitioned_duplicate_after: partitioned(Fault::DuplicateInSubscription) => subscribe_all_after_position;
    partitioned_duplicate_filtered: partitioned(Fault::DuplicateInSubscription) => subscribe_all_filtered;
    partitioned_duplicate_concurrent: partitioned(Fault::DuplicateInSubscription) => subscribe_all_concurrent_writers;
    partitioned_skip_concurrent: partitioned(Fault::SkipInSubscription) => subscribe_all_concurrent_writers;
}

// Faults only a per-partition store can have.
must_fail_on! {
    positions_descend: per_partition(PartitionFault::PositionsDescend) => append_result_versions_and_positions;
    positions_descend_populated: per_partition(PartitionFault::PositionsDescend) => read_stream_forward_backward;
    positions_descend_reopen: per_partition(PartitionFault::PositionsDescend) => idempotent_retry_after_reopen;
    recorded_at_back: per_partition(PartitionFault::RecordedAtBackInStream) => stream_info_matches_events;
    recorded_at_back_as_of_time: per_partition(PartitionFault::RecordedAtBackInStream) => as_of_time;
    all_by_value: per_partition(PartitionFault::AllByPositionValue) => append_result_versions_and_positions;
    all_by_value_multi: per_partition(PartitionFault::AllByPositionValue) => append_multi_in_order;
    all_by_value_reopen: per_partition(PartitionFault::AllByPositionValue) => idempotent_retry_after_reopen;
    all_by_value_subscribed: per_partition(PartitionFault::AllByPositionValue) => subscribe_all_filtered;
    cross_partition_partial: per_partition(PartitionFault::CrossPartitionPartial) => append_multi_across_partitions;
    cross_partition_whole: per_partition(PartitionFault::CrossPartitionWhole) => append_multi_across_partitions;
    cross_partition_accepted: per_partition(PartitionFault::CrossPartitionAccepted) => append_multi_across_partitions;
}
