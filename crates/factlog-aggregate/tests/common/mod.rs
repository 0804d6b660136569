//! A small aggregate for the repository's tests: a stock of one item, which cannot go negative.
//! `Received` is at schema version 2; version 1 called the quantity `qty`.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use factlog_aggregate::{Aggregate, DomainEvent, EventSchema};
use factlog_log::{EmbeddedStore, Options};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    pub on_hand: u64,
    pub moves: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StockCommand {
    Receive(u64),
    Ship(u64),
    /// Changes nothing.
    Count,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub quantity: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipped {
    pub quantity: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StockEvent {
    Received(Received),
    Shipped(Shipped),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error("only {on_hand} on hand, cannot ship {wanted}")]
    NotEnough { on_hand: u64, wanted: u64 },
    #[error("a quantity must be positive")]
    Zero,
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> &'static str {
        match self {
            StockEvent::Received(_) => "Received",
            StockEvent::Shipped(_) => "Shipped",
        }
    }

    fn schema() -> &'static EventSchema<Self> {
        static SCHEMA: OnceLock<EventSchema<StockEvent>> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            EventSchema::new()
                .event("Received", 2, StockEvent::Received)
                .upcast("Received", 1, |mut v| {
                    let qty = v
                        .as_object_mut()
                        .and_then(|o| o.remove("qty"))
                        .ok_or("v1 Received has no qty")?;
                    v["quantity"] = qty;
                    Ok(v)
                })
                .event("Shipped", 1, StockEvent::Shipped)
        })
    }
}

impl Aggregate for Stock {
    const CATEGORY: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;

    fn handle(&self, command: &StockCommand) -> Result<Vec<StockEvent>, StockError> {
        match *command {
            StockCommand::Receive(0) | StockCommand::Ship(0) => Err(StockError::Zero),
            StockCommand::Receive(quantity) => {
                Ok(vec![StockEvent::Received(Received { quantity })])
            }
            StockCommand::Ship(wanted) if wanted > self.on_hand => Err(StockError::NotEnough {
                on_hand: self.on_hand,
                wanted,
            }),
            StockCommand::Ship(quantity) => Ok(vec![StockEvent::Shipped(Shipped { quantity })]),
            StockCommand::Count => Ok(vec![]),
        }
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Received(r) => self.on_hand += r.quantity,
            StockEvent::Shipped(s) => self.on_hand -= s.quantity,
        }
        self.moves += 1;
    }
}

/// The same aggregate with a newer snapshot format: its snapshots and `Stock`'s are not
/// interchangeable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StockV2(pub Stock);

impl Aggregate for StockV2 {
    const CATEGORY: &'static str = "stock";
    const SNAPSHOT_VERSION: u32 = 2;
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;

    fn handle(&self, command: &StockCommand) -> Result<Vec<StockEvent>, StockError> {
        self.0.handle(command)
    }

    fn apply(&mut self, event: &StockEvent) {
        self.0.apply(event)
    }
}

pub fn open_store(dir: &std::path::Path) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir, Options::default()).expect("the store opens"))
}
