//! Projections that come with Factlog, so that `factlog serve` can run read models from its
//! configuration alone.
//!
//! [`StreamSummary`] keeps one row per stream: how many of its events were applied, and its
//! last version, event type, position and time. It works in every sink (the same columns in
//! SQLite and PostgreSQL; a hash per stream in Redis), and, because `events` is incremented
//! rather than set, a row shows at once whether an event was lost or applied twice:
//! with every event type wanted, `events == last_version + 1`.

mod postgres;
mod redis;
mod sqlite;

use crate::projection::Interest;

/// One row per stream of the wanted events, in a table named `table` (the view readers query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    table: String,
    interest: Interest,
}

impl StreamSummary {
    /// `table` follows the rules of projection names (a-z, 0-9, _).
    pub fn new(table: impl Into<String>, interest: Interest) -> Self {
        Self {
            table: table.into(),
            interest,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}
