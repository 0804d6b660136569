//! The `Aggregate` trait: a consistency boundary that decides (pure) and applies (infallible).

use std::fmt;

use factlog_store::{InvalidName, StreamName};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::DomainEvent;

/// A consistency boundary of the domain, for example one bank account.
///
/// The state is a fold of the aggregate's events: `Default` is the state before the first event,
/// and [`Aggregate::apply`] moves it forward by one event. Commands are decided by
/// [`Aggregate::handle`] from the state alone. Both are pure: no I/O, no clock, no randomness;
/// whatever a decision needs from the outside world travels in the command.
///
/// The state is serializable so that it can be snapshotted; raise
/// [`Aggregate::SNAPSHOT_VERSION`] whenever its shape or meaning changes, and snapshots of the
/// older shape are ignored and rebuilt from the events.
pub trait Aggregate:
    Default + Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The category of this aggregate's streams: the aggregate with id `42` lives in the stream
    /// `{CATEGORY}-42`. It must not contain `-`.
    const CATEGORY: &'static str;

    /// The version of the snapshot format of this state.
    const SNAPSHOT_VERSION: u32 = 1;

    type Command: fmt::Debug + Send + Sync;
    type Event: DomainEvent;
    /// The business errors of [`Aggregate::handle`]; they reach the caller unchanged.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides what a command means in the current state: the events to record, or why not.
    /// An empty list means the command changes nothing.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Moves the state forward by one event. It cannot fail: the event is a fact.
    fn apply(&mut self, event: &Self::Event);
}

/// The stream of the aggregate with `id`.
pub fn stream_name<A: Aggregate>(id: &str) -> Result<StreamName, InvalidName> {
    debug_assert!(
        !A::CATEGORY.contains('-') && !A::CATEGORY.is_empty(),
        "an aggregate category is a non-empty name without '-'"
    );
    if id.is_empty() {
        return Err(InvalidName::Empty {
            what: "aggregate id",
        });
    }
    StreamName::new(format!("{}-{id}", A::CATEGORY))
}

/// The aggregate's state after `events`, from the default state.
pub fn fold<'a, A: Aggregate>(events: impl IntoIterator<Item = &'a A::Event>) -> A {
    let mut state = A::default();
    for event in events {
        state.apply(event);
    }
    state
}
