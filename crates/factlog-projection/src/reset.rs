//! Resetting a projection's checkpoint, as `kafka-consumer-groups --reset-offsets` does for a
//! consumer group: a target, a plan that shows what would change, and `execute` to apply it.

use factlog_store::{
    AllFrom, AsOf, Direction, EventStore, Ordering, Position, ReadAll, ReadError, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::projection::ProjectionName;

/// Where to move a projection's checkpoint. The projection processes the events after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "to", content = "value")]
pub enum ResetTarget {
    /// Before the first event: every event is applied again.
    Earliest,
    /// The end of the log: the events not yet processed are never applied.
    Latest,
    /// Right after the event at this position (or the start, for position 0).
    Position(Position),
    /// Before the first event recorded at or after this time.
    Datetime(Timestamp),
    /// N events later (skipping them) or, negative, N events back (applying them again).
    ShiftBy(i64),
}

/// What a reset would do, or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetPlan {
    pub projection: ProjectionName,
    pub generation: u64,
    pub target: ResetTarget,
    pub current_position: Position,
    pub new_position: Position,
    /// Events after the new position that had already been processed: they are applied again.
    pub events_to_reapply: u64,
    /// Events after the current position up to the new one: they are never applied.
    pub events_to_skip: u64,
    /// Events the projection has to process after the reset.
    pub lag_events: u64,
    /// False for a dry run.
    pub executed: bool,
}

/// Why a reset target cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResetError {
    #[error("position {position} is past the last event of the log (at {end})")]
    PastEnd { position: Position, end: Position },
    #[error("no event at position {0}: a reset position must be an event's position, or 0")]
    NoSuchPosition(Position),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Resolves `target` from `current` against the log.
pub(crate) async fn resolve(
    store: &dyn EventStore,
    current: Position,
    target: ResetTarget,
) -> Result<(Position, Position), ResetError> {
    let end = last_position(store).await?;
    let new = match target {
        ResetTarget::Earliest => Position::START,
        ResetTarget::Latest => end,
        ResetTarget::Position(p) if p == Position::START => p,
        ResetTarget::Position(p) => {
            // Positions of different partitions are not comparable: past the end is only
            // told on a totally ordered store; elsewhere the read below finds no such event.
            if store.ordering() == Ordering::Total && p > end {
                return Err(ResetError::PastEnd { position: p, end });
            }
            let found = store
                .read_all(ReadAll::forward().from_position(p).limit(1))
                .await?;
            if found.first().map(|e| e.position) != Some(p) {
                return Err(ResetError::NoSuchPosition(p));
            }
            p
        }
        ResetTarget::Datetime(t) => {
            // The last event recorded before `t`: its successors are the events at or after it.
            let before = Timestamp::from_unix_micros(t.unix_micros() - 1);
            let read = ReadAll {
                from: AllFrom::End,
                direction: Direction::Backward,
                limit: 1,
                ..ReadAll::default()
            }
            .as_of(AsOf::Time(before));
            let found = store.read_all(read).await?;
            found.first().map_or(Position::START, |e| e.position)
        }
        ResetTarget::ShiftBy(n) if n >= 0 => {
            let n = n.unsigned_abs() as usize;
            if n == 0 {
                current
            } else {
                let from = if current == Position::START {
                    AllFrom::Start
                } else {
                    AllFrom::Position(current)
                };
                let read = ReadAll {
                    from,
                    ..ReadAll::forward()
                }
                .limit(n.saturating_add(1));
                let events = store.read_all(read).await?;
                events
                    .iter()
                    .filter(|e| e.position != current)
                    .take(n)
                    .last()
                    .map_or(current, |e| e.position)
            }
        }
        ResetTarget::ShiftBy(n) => {
            let n = n.unsigned_abs() as usize;
            if current == Position::START {
                Position::START
            } else {
                let read = ReadAll::backward()
                    .from_position(current)
                    .limit(n.saturating_add(1));
                let events = store.read_all(read).await?;
                // events[0..n] are applied again; the one before them is the new checkpoint.
                events.get(n).map_or(Position::START, |e| e.position)
            }
        }
    };
    Ok((new, end))
}

/// The position of the last event of the log, or the start when it is empty: where a
/// projection that has processed everything has its checkpoint.
pub(crate) async fn last_position(store: &dyn EventStore) -> Result<Position, ReadError> {
    let last = store.read_all(ReadAll::backward().limit(1)).await?;
    Ok(last.first().map_or(Position::START, |e| e.position))
}

pub(crate) fn plan(
    store: &dyn EventStore,
    projection: ProjectionName,
    generation: u64,
    target: ResetTarget,
    current: Position,
    new: Position,
    end: Position,
) -> ResetPlan {
    ResetPlan {
        projection,
        generation,
        target,
        current_position: current,
        new_position: new,
        events_to_reapply: store.events_between(new, current),
        events_to_skip: store.events_between(current, new),
        lag_events: store.events_between(new, end),
        executed: false,
    }
}
