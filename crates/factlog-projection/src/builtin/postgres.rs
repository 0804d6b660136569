//! [`StreamSummary`] in PostgreSQL: the same columns as in SQLite, with PostgreSQL's types.

use factlog_store::RecordedEvent;

use super::StreamSummary;
use crate::postgres::{PostgresSink, PostgresUnit};
use crate::projection::{HandleError, Interest, Projection};

impl Projection<PostgresSink> for StreamSummary {
    fn interest(&self) -> Interest {
        self.interest.clone()
    }

    fn setup(&self, unit: &mut PostgresUnit<'_>) -> Result<(), HandleError> {
        unit.create_table(
            &self.table,
            "(stream TEXT PRIMARY KEY, category TEXT NOT NULL, events BIGINT NOT NULL, \
             last_version BIGINT NOT NULL, last_event_type TEXT NOT NULL, \
             last_position BIGINT NOT NULL, last_recorded_at BIGINT NOT NULL)",
        )
    }

    fn handle(
        &self,
        event: &RecordedEvent,
        unit: &mut PostgresUnit<'_>,
    ) -> Result<(), HandleError> {
        let table = unit.table(&self.table);
        // PostgreSQL wants the table's name on the old value in `DO UPDATE SET`.
        let sql = format!(
            "INSERT INTO {table} (stream, category, events, last_version, last_event_type, \
             last_position, last_recorded_at) VALUES ($1, $2, 1, $3, $4, $5, $6) \
             ON CONFLICT (stream) DO UPDATE SET events = {table}.events + 1, \
             last_version = EXCLUDED.last_version, last_event_type = EXCLUDED.last_event_type, \
             last_position = EXCLUDED.last_position, last_recorded_at = EXCLUDED.last_recorded_at"
        );
        let version = i64::try_from(event.version).map_err(HandleError::permanent)?;
        let position = i64::try_from(event.position.raw()).map_err(HandleError::permanent)?;
        unit.statement(sql)
            .bind(event.stream.as_str().to_owned())
            .bind(event.stream.category().to_owned())
            .bind(version)
            .bind(event.event_type.as_str().to_owned())
            .bind(position)
            .bind(event.recorded_at.unix_micros());
        Ok(())
    }
}
