//! [`StreamSummary`] in Redis: a hash per stream (`<table>:stream:<stream>`, with the columns of
//! the SQL table as fields) and a set of the streams (`<table>:streams`), in the generation's
//! keys. The `stream:` part keeps a stream named `streams` from meeting the set.

use factlog_store::RecordedEvent;

use super::StreamSummary;
use crate::projection::{HandleError, Interest, Projection};
use crate::redis_sink::{RedisSink, RedisUnit};

impl Projection<RedisSink> for StreamSummary {
    fn interest(&self) -> Interest {
        self.interest.clone()
    }

    /// Redis keys need no creating.
    fn setup(&self, _unit: &mut RedisUnit<'_>) -> Result<(), HandleError> {
        Ok(())
    }

    fn handle(&self, event: &RecordedEvent, unit: &mut RedisUnit<'_>) -> Result<(), HandleError> {
        let stream = event.stream.as_str();
        let row = unit.key(&format!("{}:stream:{stream}", self.table));
        unit.cmd("HINCRBY").arg(&row).arg("events").arg(1);
        // Of a batch's events of a stream, the last one's values are the row's: set once.
        unit.cmd_last(&row, "HSET")
            .arg(&row)
            .arg("category")
            .arg(event.stream.category())
            .arg("last_version")
            .arg(event.version)
            .arg("last_event_type")
            .arg(event.event_type.as_str())
            .arg("last_position")
            .arg(event.position.raw())
            .arg("last_recorded_at")
            .arg(event.recorded_at.unix_micros());
        // A set that only grows: once per batch is enough.
        let streams = unit.key(&format!("{}:streams", self.table));
        unit.cmd_once("SADD").arg(&streams).arg(stream);
        Ok(())
    }
}
