//! Runs the whole conformance suite against the reference model dressed as a store with a
//! per-partition order (see `common`), which is how the suite's `Ordering::PerPartition`
//! checks are themselves checked: every case must pass on a store that keeps the per-partition
//! promises while its positions say nothing about the order of different streams.

mod common;

use common::PartitionedBackend;
use factlog_conformance::model::ModelBackend;

factlog_conformance::conformance_tests!(PartitionedBackend::new(ModelBackend::new()));
