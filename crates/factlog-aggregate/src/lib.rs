//! The write side of Factlog: aggregates, commands, snapshots and time travel, on the store API
//! (so on every backend).
//!
//! - [`Aggregate`]: `handle` decides which events a command produces (pure, no I/O), `apply`
//!   folds an event into the state (it cannot fail: events are facts).
//! - [`DomainEvent`] and [`EventSchema`]: events are serde types with a stored type name and a
//!   schema version; every version ever written stays readable through upcasts.
//! - [`Repository`]: loads an aggregate (snapshot + the events after it), handles a command,
//!   appends the events with the loaded version as the expected version, and on a conflict
//!   reloads and retries ([`RetryPolicy`]). Business errors come back unchanged
//!   ([`CommandError::Rejected`]). A [`Command`] with a command id derives its event ids from
//!   it, so a retried command is never applied twice; correlation and causation ids go into the
//!   events' metadata. [`Repository::execute_all`] applies commands to several aggregates in one
//!   atomic multi-stream append.
//! - Snapshots ([`SnapshotStore`], [`SnapshotPolicy`]) are a cache: checked before use, ignored
//!   and rebuilt when their format is older, and deleting them changes nothing but speed.
//! - Time travel: [`Repository::load_at`] a version or a time.
//! - [`testkit`]: `given(events).when(command).then(events)`, without storage.
//!
//! ```
//! use std::sync::Arc;
//! use factlog_aggregate::{Command, Repository};
//! use factlog_aggregate::doc_example::{Counter, CounterCommand};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(factlog_log::EmbeddedStore::open(dir.path(), Default::default())?);
//! let counters = Repository::<Counter>::new(store);
//! counters
//!     .execute("c1", Command::new(CounterCommand::Add { amount: 2 }).with_id("cmd-1"))
//!     .await?;
//! // The same command id again: recognized, not applied twice.
//! counters
//!     .execute("c1", Command::new(CounterCommand::Add { amount: 2 }).with_id("cmd-1"))
//!     .await?;
//! assert_eq!(counters.load("c1").await?.state.total, 2);
//! # Ok(())
//! # }
//! ```

mod aggregate;
mod command;
mod event;
mod repository;
mod snapshot;
pub mod testkit;

pub use aggregate::{Aggregate, fold, stream_name};
pub use command::{COMMAND_ID_BYTES_MAX, Command, CommandMeta, InvalidCommand};
pub use event::{DecodeError, DomainEvent, EncodeError, EventSchema, encode};
pub use repository::{
    At, CommandError, Executed, HistoryEntry, LoadError, Loaded, Outcome, Repository, RetryPolicy,
};
pub use snapshot::{
    FileSnapshots, InMemorySnapshots, Snapshot, SnapshotError, SnapshotPolicy, SnapshotStore,
};

/// A minimal aggregate used by the examples in these docs.
#[doc(hidden)]
pub mod doc_example {
    use std::sync::OnceLock;

    use serde::{Deserialize, Serialize};

    use crate::{Aggregate, DomainEvent, EventSchema};

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Counter {
        pub total: u64,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum CounterCommand {
        Add { amount: u64 },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum CounterEvent {
        Added { amount: u64 },
    }

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum CounterError {
        #[error("adding zero changes nothing")]
        Zero,
    }

    impl DomainEvent for CounterEvent {
        fn event_type(&self) -> &'static str {
            "Added"
        }

        fn schema() -> &'static EventSchema<Self> {
            #[derive(Deserialize)]
            struct Added {
                amount: u64,
            }
            static SCHEMA: OnceLock<EventSchema<CounterEvent>> = OnceLock::new();
            SCHEMA.get_or_init(|| {
                EventSchema::new().event("Added", 1, |a: Added| CounterEvent::Added {
                    amount: a.amount,
                })
            })
        }
    }

    impl Aggregate for Counter {
        const CATEGORY: &'static str = "counter";
        type Command = CounterCommand;
        type Event = CounterEvent;
        type Error = CounterError;

        fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterError> {
            match command {
                CounterCommand::Add { amount: 0 } => Err(CounterError::Zero),
                CounterCommand::Add { amount } => Ok(vec![CounterEvent::Added { amount: *amount }]),
            }
        }

        fn apply(&mut self, event: &CounterEvent) {
            match event {
                CounterEvent::Added { amount } => self.total += amount,
            }
        }
    }
}
