//! A given/when/then test kit for aggregates, without storage.
//!
//! ```
//! # use factlog_aggregate::testkit::given;
//! # use factlog_aggregate::doc_example::{Counter, CounterCommand, CounterError, CounterEvent};
//! given::<Counter>([CounterEvent::Added { amount: 2 }])
//!     .when(CounterCommand::Add { amount: 3 })
//!     .then([CounterEvent::Added { amount: 3 }]);
//! given::<Counter>([])
//!     .when(CounterCommand::Add { amount: 0 })
//!     .then_error(CounterError::Zero);
//! ```
//!
//! Every event the kit sees (given, produced or expected) is also encoded and decoded through
//! the aggregate's event schema and must come back equal, so a serialization mistake (a missing
//! `#[serde(untagged)]`, an unregistered type) fails here rather than in production.

use std::fmt;

use crate::event::encode;
use crate::{Aggregate, DomainEvent};

/// Starts a scenario: the aggregate's history.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A>
where
    A::Event: PartialEq,
{
    let events: Vec<A::Event> = events.into_iter().collect();
    let mut state = A::default();
    for event in &events {
        assert_round_trips(event);
        state.apply(event);
    }
    Given { state, events }
}

/// An aggregate with a history.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    state: A,
    events: Vec<A::Event>,
}

impl<A: Aggregate> Given<A>
where
    A::Event: PartialEq,
{
    /// The state the history leads to.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Handles `command` in the given state.
    pub fn when(self, command: A::Command) -> When<A> {
        let result = self.state.handle(&command);
        if let Ok(events) = &result {
            events.iter().for_each(assert_round_trips);
        }
        When {
            given: self,
            command,
            result,
        }
    }
}

/// The outcome of a command, to check.
pub struct When<A: Aggregate> {
    given: Given<A>,
    command: A::Command,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> fmt::Debug for When<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("When")
            .field("given", &self.given.events)
            .field("command", &self.command)
            .field(
                "result",
                &self.result.as_ref().map_err(|e| e.to_string()).map(|_| ()),
            )
            .finish()
    }
}

impl<A: Aggregate> When<A>
where
    A::Event: PartialEq,
{
    /// Asserts the command produced exactly `expected`, in order. Returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        expected.iter().for_each(assert_round_trips);
        match self.result {
            Ok(events) => {
                assert!(
                    events == expected,
                    "given {:?}\nwhen {:?}\nexpected events {expected:?}\nbut got {events:?}",
                    self.given.events,
                    self.command
                );
                let mut state = self.given.state;
                for event in &events {
                    state.apply(event);
                }
                state
            }
            Err(e) => panic!(
                "given {:?}\nwhen {:?}\nexpected events {expected:?}\nbut the command was rejected: {e}",
                self.given.events, self.command
            ),
        }
    }

    /// Asserts the command was rejected with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Err(e) => assert!(
                e == expected,
                "given {:?}\nwhen {:?}\nexpected error {expected:?}\nbut got error {e:?}",
                self.given.events,
                self.command
            ),
            Ok(events) => panic!(
                "given {:?}\nwhen {:?}\nexpected error {expected:?}\nbut got events {events:?}",
                self.given.events, self.command
            ),
        }
    }

    /// Asserts the command was rejected with an error that `check` accepts.
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Err(e) => assert!(
                check(&e),
                "given {:?}\nwhen {:?}\nthe error {e:?} is not the one expected",
                self.given.events,
                self.command
            ),
            Ok(events) => panic!(
                "given {:?}\nwhen {:?}\nexpected an error but got events {events:?}",
                self.given.events, self.command
            ),
        }
    }
}

#[track_caller]
fn assert_round_trips<E: DomainEvent + PartialEq>(event: &E) {
    let encoded = encode(event).unwrap_or_else(|e| panic!("{event:?} does not encode: {e}"));
    let decoded = E::schema()
        .decode(
            encoded.event_type.as_str(),
            encoded.schema_version,
            &encoded.data,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{event:?} encodes as {} but does not decode back: {e}",
                String::from_utf8_lossy(&encoded.data)
            )
        });
    assert!(
        &decoded == event,
        "{event:?} encodes as {} and decodes as {decoded:?}",
        String::from_utf8_lossy(&encoded.data)
    );
}
