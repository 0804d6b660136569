//! The Kafka backend of the Factlog store API.
//!
//! Kafka has no conditional append, so Factlog brings its own: every category is a topic, a
//! stream is a record key (so it stays in one partition, in order), and partition `k` of every
//! topic (shard `k`) has exactly one writer, the node of the store's consumer group that owns
//! partition `k` of the request topic. That writer checks expected versions and event ids
//! against a complete local replica of the shard and writes with a transactional producer
//! bound to the shard, so a new owner fences the old one. Other nodes route appends to it.
//!
//! Reads come from the node's local replica, an embedded store fed from the topics
//! (`read_committed`). Positions are per-partition offsets; `$all` is ordered per partition.
//! See `docs/kafka.md` for the design, the record format and what differs from the embedded
//! store.

mod catalog;
pub mod codec;
mod node;
mod options;
mod replica;
mod store;
// Three librdkafka calls and a pipe: see the module docs.
#[allow(unsafe_code)]
mod wakeup;
mod writer;

pub use codec::{KafkaPosition, Slot};
pub use options::{KafkaOptions, topic_safe};
pub use replica::STASH_KEY;
pub use store::KafkaStore;

/// Why the Kafka backend could not start or go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka backend configuration: {0}")]
    Config(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("the local replica: {0}")]
    Replica(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

impl KafkaError {
    fn client(what: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> KafkaError {
        move |e| KafkaError::Kafka(format!("{what}: {e}"))
    }
}

/// A position in words, for messages.
pub(crate) fn describe_position(position: factlog_store::Position) -> String {
    match KafkaPosition::decode(position) {
        KafkaPosition::Event { slot, offset } => format!(
            "offset {offset} of partition {} of category #{}",
            slot.partition, slot.category
        ),
        KafkaPosition::Local(l) => format!("local position {l}"),
    }
}
