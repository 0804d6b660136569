//! The read side of Factlog: projections from the log into read models, with their checkpoints
//! committed in the read model's own transaction.
//!
//! A [`Projection`] says which events it wants ([`Interest`]), creates its read model
//! ([`Projection::setup`]) and applies one event to it ([`Projection::handle`]) through its
//! sink's unit of work. A runner ([`Projections::start`]) subscribes to the store from the
//! projection's checkpoint and applies events in batches; each batch and the checkpoint after it
//! commit in one transaction of the sink (one Lua script on Redis), so after a crash the
//! projection resumes exactly where its read model is: no event lost, none applied twice.
//!
//! Events that keep failing are parked as dead letters (or stop the projection, by
//! [`OnError`]) and can be retried or skipped; a projection can be paused, reset like a Kafka
//! consumer group ([`ResetTarget`], with a dry-run [`ResetPlan`]), and rebuilt without downtime
//! (a new generation of the read model is built beside the live one and swapped in when it has
//! caught up).
//!
//! Sinks: [`SqliteSink`] (the embedded default), [`PostgresSink`], [`RedisSink`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use factlog_projection::{
//!     HandleError, Interest, Projection, ProjectionName, ProjectionOptions, Projections,
//!     SqliteSink, SqliteUnit,
//! };
//! use factlog_store::{EventStore, RecordedEvent};
//!
//! /// Counts the events of each stream of the `order` category.
//! struct OrderEvents;
//!
//! impl Projection<SqliteSink> for OrderEvents {
//!     fn interest(&self) -> Interest {
//!         Interest::categories(["order"])
//!     }
//!     fn setup(&self, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
//!         unit.create_table("order_events", "(stream TEXT PRIMARY KEY, events INTEGER NOT NULL)")
//!     }
//!     fn handle(&self, event: &RecordedEvent, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
//!         let sql = format!(
//!             "INSERT INTO {} (stream, events) VALUES (?1, 1) \
//!              ON CONFLICT (stream) DO UPDATE SET events = events + 1",
//!             unit.table("order_events")
//!         );
//!         unit.tx().prepare_cached(&sql)?.execute([event.stream.as_str()])?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn run(store: Arc<dyn EventStore>) -> Result<(), Box<dyn std::error::Error>> {
//! let sink = Arc::new(SqliteSink::open("read-models.sqlite").await?);
//! let projections = Projections::new();
//! let options = ProjectionOptions::new(ProjectionName::new("order_events")?);
//! let handle = projections.start(store, sink, Arc::new(OrderEvents), options)?;
//! println!("{:?}", handle.status());
//! # Ok(())
//! # }
//! ```

mod builtin;
mod handle;
mod manager;
mod metrics;
mod postgres;
mod projection;
mod redis_sink;
mod reset;
mod runner;
mod sink;
mod sql;
mod sqlite;
mod status;

pub use builtin::StreamSummary;
pub use handle::{ControlError, ProjectionHandle};
pub use manager::{DuplicateName, Projections};
pub use metrics::ProjectionsCollector;
pub use postgres::{PostgresSink, PostgresUnit};
pub use projection::{
    HandleError, Interest, InvalidProjectionName, OnError, Projection, ProjectionName,
    ProjectionOptions,
};
pub use redis_sink::{RedisSink, RedisUnit};
pub use reset::{ResetError, ResetPlan, ResetTarget};
pub use runner::spawn;
pub use sink::{
    ApplyError, DeadLetter, DeadLetterStatus, NewDeadLetter, Sink, SinkError, Stored, Target,
};
pub use sqlite::{SqliteSink, SqliteUnit};
pub use status::{LastError, RebuildStatus, State, Status};
