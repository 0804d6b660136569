//! The conformance suite of the Factlog store API.
//!
//! Every backend (the embedded log now, Kafka later) must keep the promises documented on
//! [`factlog_store::EventStore`]. This crate states those promises as executable cases, each a
//! public `async fn` that takes a [`Backend`] and panics with a message naming the broken promise.
//! A backend runs them all with one line in a test file:
//!
//! ```ignore
//! // crates/factlog-log/tests/conformance.rs
//! // (the test crate needs `tokio` as a dev-dependency: the macro emits `#[tokio::test]`)
//! factlog_conformance::conformance_tests!(my_backend::TestBackend::new());
//! ```
//!
//! [`model::ModelStore`] is an in-memory reference implementation. It runs this suite itself
//! (`tests/model.rs`), which is how the suite is checked, and model-based tests of real backends
//! compare their results against it.
//!
//! Each case opens its own fresh store, so the cases are independent and may run in parallel.
//!
//! Every case runs on every backend, whatever its [`factlog_store::EventStore::ordering`]. The
//! cases that depend on the order of `$all` ask the store and check the promise of its ordering:
//! - [`Ordering::Total`](factlog_store::Ordering::Total): positions are comparable everywhere;
//!   they strictly increase along `$all` and across appends, `recorded_at` never decreases along
//!   `$all`, and `end_position` is past every event's position.
//! - [`Ordering::PerPartition`](factlog_store::Ordering::PerPartition): positions are comparable
//!   only within a stream, where they strictly increase with the version (and `recorded_at`
//!   never decreases); positions of different streams are only distinct. Order across streams is
//!   checked on `$all` as read on the node instead: one client's one-after-another appends appear
//!   in append order, and "from", "after" and "as of" an event's position mean "at that event in
//!   this order". `end_position` is a node-local mark: it is no event's position, it changes when
//!   events are appended, and reading `$all` from it gives exactly what was appended since.
//!
//! A per-partition store also keeps a multi-stream append atomic only within one partition: one
//! over streams of different partitions is refused with
//! [`AppendError::CrossPartition`](factlog_store::AppendError::CrossPartition) and writes nothing
//! ([`append_multi_across_partitions`] checks that, and that a totally ordered store stores the
//! same append). Which partition a stream lives on is the backend's business, so every case that
//! appends to several streams at once asks the store: it probes candidate names (`name`,
//! `name-p1`, `name-p2`, ..., same category) with multi-stream appends that expect a version no
//! stream has, which a per-partition store refuses with `WrongExpectedVersion` when the streams
//! share a partition and with `CrossPartition` when they do not, and keeps the names on the
//! partition it needs. Probes write nothing (checked); on a totally ordered store the cases use
//! their names as written.
//!
//! The branches live in shared helpers (`support.rs`: `assert_store_order`,
//! `assert_position_before`, `assert_in_append_order`, `events_at_or_after`, `events_after`,
//! `assert_end_moved`, `assert_end_after`, `co_partitioned`, `on_another_partition`), so a case
//! states each promise once. `tests/per_partition.rs` runs the suite on the model dressed as a
//! per-partition store (which refuses cross-partition multi-stream appends as Kafka does), and
//! `tests/mutants.rs` checks that the per-partition checks still catch faults.

mod append;
mod idempotency;
mod limits;
pub mod model;
mod multi;
mod races;
mod read;
mod subscribe;
mod support;
mod time_travel;

use std::sync::Arc;

use async_trait::async_trait;
use factlog_store::EventStore;

pub use append::{
    append_preserves_event_content, append_result_versions_and_positions, expected_version_any,
    expected_version_exact, expected_version_no_stream, expected_version_stream_exists,
    store_assigned_event_ids,
};
pub use idempotency::{
    duplicate_event_id_in_one_append, idempotency_conflict_other_content,
    idempotency_conflict_other_stream, idempotent_retry_after_reopen,
    idempotent_retry_returns_original_result,
};
pub use limits::{event_size_limit, events_per_append_limit, stream_name_rules};
pub use multi::{
    append_multi_across_partitions, append_multi_all_or_nothing, append_multi_duplicate_stream,
    append_multi_in_order, empty_appends_refused,
};
pub use races::{concurrent_multi_stream_writers_one_winner, concurrent_writers_one_winner};
pub use read::{
    categories_sorted_distinct, end_position_moves_with_appends, list_streams_paged,
    read_all_filters, read_all_forward_backward, read_event_by_id_after_reopen,
    read_event_by_id_finds_each_event, read_event_by_id_unknown_is_none, read_event_some_none,
    read_stream_forward_backward, read_stream_missing, stream_info_matches_events,
};
pub use subscribe::{
    subscribe_all_after_position, subscribe_all_concurrent_writers, subscribe_all_filtered,
    subscribe_all_from_end, subscribe_all_from_start, subscribe_stream_from_start_after_end,
};
pub use time_travel::{as_of_position, as_of_time};

/// A store implementation under test: how the suite opens stores and restarts them.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Store: EventStore;

    /// A fresh, empty store. Each case opens its own, so stores must not share data.
    async fn open(&self) -> Arc<Self::Store>;

    /// Closes `store` (the suite hands over its only handle; the backend waits until the store is
    /// closed) and opens the same data again: the "after a restart" of the idempotency promise.
    async fn reopen(&self, store: Arc<Self::Store>) -> Arc<Self::Store>;

    /// The limits the stores of this backend enforce, so the limit cases know where the edge is.
    fn limits(&self) -> Limits;
}

/// The append limits of a backend's stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest event, as counted by [`factlog_store::NewEvent::payload_size_bytes`].
    pub event_size_bytes_max: usize,
    /// The most events one append (or one multi-stream append, all parts together) may carry.
    pub append_events_max: usize,
}

/// Expands to one `#[tokio::test]` per conformance case, inside a module `conformance`.
///
/// `$backend` is an expression building a [`Backend`]; it is evaluated anew in every test so that
/// tests share nothing. The expression is resolved inside the generated module, which imports
/// everything of the calling module (`use super::*`). The race cases run 1000 rounds.
///
/// To run the suite twice in one file (say, with two configurations of a backend), invoke the
/// macro inside two modules of your own.
///
/// The calling crate must depend on `tokio` (features `macros` and `rt-multi-thread`), because
/// `#[tokio::test]` refers to it by name.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            $crate::__conformance_cases!(
                $backend;
                expected_version_any,
                expected_version_no_stream,
                expected_version_stream_exists,
                expected_version_exact,
                append_result_versions_and_positions,
                store_assigned_event_ids,
                append_preserves_event_content,
                idempotent_retry_returns_original_result,
                idempotent_retry_after_reopen,
                idempotency_conflict_other_content,
                idempotency_conflict_other_stream,
                duplicate_event_id_in_one_append,
                append_multi_in_order,
                append_multi_all_or_nothing,
                append_multi_duplicate_stream,
                append_multi_across_partitions,
                empty_appends_refused,
                read_stream_forward_backward,
                read_stream_missing,
                read_event_some_none,
                read_event_by_id_finds_each_event,
                read_event_by_id_unknown_is_none,
                read_event_by_id_after_reopen,
                stream_info_matches_events,
                read_all_forward_backward,
                read_all_filters,
                list_streams_paged,
                categories_sorted_distinct,
                end_position_moves_with_appends,
                as_of_position,
                as_of_time,
                subscribe_all_from_start,
                subscribe_all_after_position,
                subscribe_all_from_end,
                subscribe_all_filtered,
                subscribe_stream_from_start_after_end,
                subscribe_all_concurrent_writers,
                event_size_limit,
                events_per_append_limit,
                stream_name_rules,
            );

            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_writers_one_winner() {
                let backend = $backend;
                $crate::concurrent_writers_one_winner(&backend, 1000).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_multi_stream_writers_one_winner() {
                let backend = $backend;
                $crate::concurrent_multi_stream_writers_one_winner(&backend, 1000).await;
            }
        }
    };
}

/// One test per case name; an implementation detail of [`conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($backend:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend = $backend;
                $crate::$case(&backend).await;
            }
        )+
    };
}
