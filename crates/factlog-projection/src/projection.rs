//! What a projection is: the events it wants, the read model it creates, and how one event
//! changes that read model inside its sink's unit of work.

use std::fmt;
use std::time::Duration;

use factlog_store::RecordedEvent;
use serde::{Deserialize, Serialize};

use crate::sink::Sink;

/// A projection over the log into a sink of type `S`.
///
/// The runner calls [`Projection::handle`] once per wanted event, in log order, inside a unit of
/// work of the sink that also moves the projection's checkpoint; the unit commits or rolls back
/// as a whole, so each event changes the read model exactly once. `handle` must not talk to
/// anything but the unit: whatever it does elsewhere would happen again after a crash.
pub trait Projection<S: Sink>: Send + Sync + 'static {
    /// Which events reach `handle`. The others only advance the checkpoint.
    fn interest(&self) -> Interest;

    /// Creates the read model of one generation (tables or keys), through the unit's names for
    /// that generation. Called in the same unit of work that registers the generation.
    fn setup(&self, unit: &mut S::Unit<'_>) -> Result<(), HandleError>;

    /// Applies one event to the read model.
    fn handle(&self, event: &RecordedEvent, unit: &mut S::Unit<'_>) -> Result<(), HandleError>;
}

/// The events a projection wants: any of `event_types` (all when empty) in any of `categories`
/// (all when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interest {
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

impl Interest {
    /// Every event of the log.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn categories<I: IntoIterator<Item = S>, S: Into<String>>(categories: I) -> Self {
        Self {
            event_types: Vec::new(),
            categories: categories.into_iter().map(Into::into).collect(),
        }
    }

    pub fn with_event_types<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        types: I,
    ) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    pub fn matches(&self, event: &RecordedEvent) -> bool {
        (self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|t| t == event.event_type.as_str()))
            && (self.categories.is_empty()
                || self.categories.iter().any(|c| c == event.stream.category()))
    }
}

/// Why `handle` (or `setup`) failed for one event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Worth retrying: the runner retries the event with backoff, and parks it (or stops) when
    /// its attempts run out.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (an event the handler cannot read, say): the event is parked, or
    /// the projection stops, at once.
    #[error("{0}")]
    Permanent(String),
}

impl HandleError {
    pub fn permanent(error: impl fmt::Display) -> Self {
        Self::Permanent(error.to_string())
    }

    pub fn transient(error: impl fmt::Display) -> Self {
        Self::Transient(error.to_string())
    }
}

/// The name of a projection: 1 to 48 characters of `a-z`, `0-9` and `_`, starting with a letter,
/// and not starting with `sqlite_` (SQLite reserves such table names). It names the projection's
/// rows, tables and keys in its sink, so it is kept that simple.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ProjectionName(String);

/// A string that cannot name a projection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid projection name {0:?}: use 1 to 48 characters of a-z, 0-9 and _, starting with a letter and not with sqlite_"
)]
pub struct InvalidProjectionName(pub String);

/// SQLite refuses tables and views whose names start with this.
pub(crate) const RESERVED_PREFIX: &str = "sqlite_";

impl ProjectionName {
    pub const LENGTH_MAX: usize = 48;

    pub fn new(name: impl Into<String>) -> Result<Self, InvalidProjectionName> {
        let name = name.into();
        let valid = (1..=Self::LENGTH_MAX).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.starts_with(RESERVED_PREFIX)
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self(name))
        } else {
            Err(InvalidProjectionName(name))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectionName({:?})", self.0)
    }
}

impl std::str::FromStr for ProjectionName {
    type Err = InvalidProjectionName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for ProjectionName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// What the runner does with an event whose attempts have run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Park it in the dead letters, with its error, and go on with the next event.
    #[default]
    Park,
    /// Stop the projection at the event (state `stopped`), until it is reset or restarted.
    Stop,
}

/// How one projection runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionOptions {
    pub name: ProjectionName,
    /// At most this many events in one unit of work.
    pub batch_events_max: usize,
    /// How long a batch that is not full waits for more events; zero applies whatever is ready.
    pub batch_linger: Duration,
    /// Attempts of an event that fails before it is parked (or the projection stops).
    pub event_attempts_max: u32,
    /// Backoff between attempts (of an event, and of the sink after a connection error):
    /// doubling from `backoff_initial` to `backoff_max`, with full jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub on_error: OnError,
    /// How often a projection whose batches hold no wanted events still commits its checkpoint.
    pub idle_checkpoint_interval: Duration,
}

impl ProjectionOptions {
    pub fn new(name: ProjectionName) -> Self {
        Self {
            name,
            batch_events_max: 1000,
            batch_linger: Duration::ZERO,
            event_attempts_max: 5,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(10),
            on_error: OnError::Park,
            idle_checkpoint_interval: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_names_are_simple_identifiers() {
        for good in ["a", "balances", "order_totals_v2", &"x".repeat(48)] {
            assert!(ProjectionName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Balances",
            "1st",
            "_x",
            "a-b",
            "a b",
            "sqlite_x",
            &"x".repeat(49),
        ] {
            assert!(ProjectionName::new(bad).is_err(), "{bad:?}");
        }
        let json: Result<ProjectionName, _> = serde_json::from_str(r#""Bad""#);
        assert!(json.is_err());
    }
}
