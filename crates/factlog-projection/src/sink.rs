//! The sink contract: where a projection's read model, checkpoints and dead letters live, and the
//! units of work that change them together.
//!
//! Every sink keeps, beside the read models, the runtime's own tables (or keys): one row per
//! projection (its live generation and whether it is paused), one checkpoint per generation, and
//! the dead letters. A *generation* is one build of a read model: the live one serves readers; a
//! rebuild creates the next one beside it and swaps when it has caught up.
//!
//! A checkpoint is a [`Checkpoint`]: one position on a totally ordered store, the last position
//! read in each partition on Kafka. Sinks store both forms in two columns (fields): the position,
//! and the partitions as text, empty (NULL) for a totally ordered checkpoint
//! ([`Checkpoint::to_columns`]); a checkpoint stored before partitions existed reads back as the
//! totally ordered checkpoint it was.
//!
//! **Contract:** every operation that moves a checkpoint first checks that the checkpoint is
//! still the one the runner expects, and fails with [`ApplyError::Fenced`] otherwise, in the
//! same transaction as the change; so a second runner of the same projection can never apply an
//! event twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use factlog_store::{Checkpoint, EventId, Position, RecordedEvent, Timestamp, Version};
use serde::Serialize;

use crate::projection::{Projection, ProjectionName};

/// A sink: SQLite, PostgreSQL or Redis.
pub trait Sink: Sized + Send + Sync + 'static {
    /// What a projection's `setup` and `handle` write to: a transaction, or a buffer of commands
    /// that commit together.
    type Unit<'u>;

    /// `sqlite`, `postgres` or `redis`.
    fn kind(&self) -> &'static str;

    /// Creates or upgrades the runtime's own tables (or keys) to the current schema version.
    fn migrate(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The projection's stored state, or `None` when it was never registered.
    fn load(
        &self,
        name: &ProjectionName,
    ) -> impl Future<Output = Result<Option<Stored>, SinkError>> + Send;

    /// Creates generation `generation` of the read model (dropping any leftover of a generation
    /// of that number first), with its checkpoint at the start, in one unit of work. With
    /// `live`, it also registers the projection with this generation live (the first start).
    fn create_generation<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        live: bool,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// In one unit of work: checks that the checkpoint of `target` is `target.checkpoint`,
    /// applies `events` (the wanted ones, in order) and moves the checkpoint to `to`.
    fn apply<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        events: Vec<RecordedEvent>,
        to: Checkpoint,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// In one unit of work: checks the checkpoint, stores the dead letter and moves the
    /// checkpoint past the event.
    fn park(
        &self,
        target: Target,
        dead_letter: NewDeadLetter,
        to: Checkpoint,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// Moves a checkpoint (a reset), after checking that it is `target.checkpoint`.
    fn set_checkpoint(
        &self,
        target: Target,
        to: Checkpoint,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// Makes `to` the live generation (readers see it from this commit on) and drops the read
    /// model, checkpoint and dead letters of `from`.
    fn swap(
        &self,
        name: &ProjectionName,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Drops a generation that will not become live (an abandoned rebuild).
    fn drop_generation(
        &self,
        name: &ProjectionName,
        generation: u64,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    fn set_paused(
        &self,
        name: &ProjectionName,
        paused: bool,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The projection's dead letters, oldest first.
    fn dead_letters(
        &self,
        name: &ProjectionName,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, SinkError>> + Send;

    /// In one unit of work: applies `event` (the dead letter's event, read again from the log)
    /// to the live generation and marks the dead letter retried. The checkpoint does not move.
    fn retry_dead_letter<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        name: ProjectionName,
        generation: u64,
        id: u64,
        event: RecordedEvent,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;

    /// Records another failed attempt of a parked event.
    fn fail_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        error: String,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Marks a parked event skipped: it will not be applied.
    fn skip_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A generation of a projection and the checkpoint the caller expects it to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: ProjectionName,
    pub generation: u64,
    pub checkpoint: Checkpoint,
}

/// What a sink keeps about one projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub live_generation: u64,
    pub paused: bool,
    /// Every generation's checkpoint: the live one, and a rebuild's when one is under way.
    pub checkpoints: BTreeMap<u64, Checkpoint>,
}

/// An event parked after its attempts ran out.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    pub event: RecordedEvent,
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Unique within the projection.
    pub id: u64,
    pub generation: u64,
    pub position: Position,
    pub event_id: EventId,
    pub stream: String,
    pub version: Version,
    pub event_type: String,
    /// The event's data as the log holds it, when it is UTF-8 text.
    pub data: Option<String>,
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
    pub status: DeadLetterStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStatus {
    Parked,
    Retried,
    Skipped,
}

impl DeadLetterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parked => "parked",
            Self::Retried => "retried",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parked" => Some(Self::Parked),
            "retried" => Some(Self::Retried),
            "skipped" => Some(Self::Skipped),
            _ => None,
        }
    }
}

impl NewDeadLetter {
    /// The event's data as text, when it is UTF-8.
    pub fn data_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.event.data).ok()
    }
}

/// A failure of the sink itself, not of one event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink could not be reached or was busy: worth retrying with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// The sink answered with something the runtime cannot work with (a schema from a newer
    /// Factlog, say).
    #[error("{0}")]
    Invalid(String),
    #[error("dead letter {0} not found")]
    DeadLetterNotFound(u64),
    #[error("dead letter {id} is {status}, not parked")]
    DeadLetterNotParked { id: u64, status: &'static str },
}

/// Why a unit of work that moves a checkpoint failed. It changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// An event could not be applied: the handler failed or the sink refused its writes.
    /// `index` is the event's place in the batch when the sink can tell which it was.
    #[error("{message}")]
    Event {
        index: Option<usize>,
        message: String,
        permanent: bool,
    },
    /// The checkpoint was not where the runner expected: another runner moved it.
    #[error(
        "the checkpoint of {name} generation {generation} is at {found:?}, not {expected:?}: another runner is applying this projection"
    )]
    Fenced {
        name: ProjectionName,
        generation: u64,
        expected: Option<Checkpoint>,
        found: Option<Checkpoint>,
    },
}

impl ApplyError {
    /// An event's failure from its handler's error.
    pub fn event(index: Option<usize>, error: crate::projection::HandleError) -> Self {
        use crate::projection::HandleError;
        let (message, permanent) = match error {
            HandleError::Transient(m) => (m, false),
            HandleError::Permanent(m) => (m, true),
        };
        Self::Event {
            index,
            message,
            permanent,
        }
    }

    /// For operations that move no checkpoint and apply no event: only the sink's own errors
    /// can come out of them.
    pub fn into_sink(self) -> SinkError {
        match self {
            Self::Sink(e) => e,
            other => SinkError::Invalid(other.to_string()),
        }
    }
}
