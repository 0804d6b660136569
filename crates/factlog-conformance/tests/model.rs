//! Runs the whole conformance suite against the reference model, which is how the suite itself
//! is checked: every case must pass on a store that follows the API docs.

use factlog_conformance::model::ModelBackend;

factlog_conformance::conformance_tests!(ModelBackend::new());
