//! [`StreamSummary`] in SQLite.

use factlog_store::RecordedEvent;

use super::StreamSummary;
use crate::projection::{HandleError, Interest, Projection};
use crate::sqlite::{SqliteSink, SqliteUnit};

impl Projection<SqliteSink> for StreamSummary {
    fn interest(&self) -> Interest {
        self.interest.clone()
    }

    fn setup(&self, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        unit.create_table(
            &self.table,
            "(stream TEXT PRIMARY KEY, category TEXT NOT NULL, events INTEGER NOT NULL, \
             last_version INTEGER NOT NULL, last_event_type TEXT NOT NULL, \
             last_position INTEGER NOT NULL, last_recorded_at INTEGER NOT NULL)",
        )
    }

    fn handle(&self, event: &RecordedEvent, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        let sql = format!(
            "INSERT INTO {} (stream, category, events, last_version, last_event_type, \
             last_position, last_recorded_at) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6) \
             ON CONFLICT (stream) DO UPDATE SET events = events + 1, \
             last_version = excluded.last_version, last_event_type = excluded.last_event_type, \
             last_position = excluded.last_position, last_recorded_at = excluded.last_recorded_at",
            unit.table(&self.table)
        );
        unit.tx().prepare_cached(&sql)?.execute(rusqlite::params![
            event.stream.as_str(),
            event.stream.category(),
            event.version as i64,
            event.event_type.as_str(),
            event.position.raw() as i64,
            event.recorded_at.unix_micros(),
        ])?;
        Ok(())
    }
}
