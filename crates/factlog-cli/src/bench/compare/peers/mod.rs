//! The stores of the comparison, behind one small interface: append with an optional
//! expected version, read one stream, read everything, and a catch-up subscription.
//! Factlog itself is a peer on each of its backends ([`factlog`]), the Kafka one with the
//! broker-side helpers of [`kafka`].
//!
//! Every peer stores the same events (256 bytes of JSON data, a type, an id) and offers the
//! same promise on append: all events of one call or none, and with an expectation, at most one
//! of several racing writers wins. How each gets there is described in its module.

pub mod factlog;
pub mod kafka;
pub mod nats;
pub mod postgres;
pub mod redis_streams;
pub mod sqlite;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

/// What a peer has acknowledged when it answers an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// The events were on disk (fsync or equal) before the answer.
    Fsynced,
    /// The events were written to the operating system (or the server's memory) before the
    /// answer and reach the disk later: a crash of the machine can lose acknowledged events.
    NotFsynced,
    /// Kafka with `acks=all`: the events were on every in-sync replica before the answer, in
    /// each broker's page cache, and reach the disk later. A crash of one machine loses
    /// nothing when other in-sync replicas hold the events; a crash of all of them (or of the
    /// only one, with one broker) can. Its writes are compared with those of [`Self::NotFsynced`].
    Replicated,
}

impl Durability {
    pub fn label(self) -> &'static str {
        match self {
            Durability::Fsynced => "fsync before ack",
            Durability::NotFsynced => "ack before fsync",
            Durability::Replicated => "ack before fsync, once on the in-sync replicas",
        }
    }

    /// Whether the events were on disk before the acknowledgement: writes are compared only
    /// among peers that agree on this.
    pub fn fsync_before_ack(self) -> bool {
        match self {
            Durability::Fsynced => true,
            Durability::NotFsynced | Durability::Replicated => false,
        }
    }
}

/// The stream state an append expects. Versions here count events: `Exact(0)` is a stream with
/// no events, `Exact(n)` one holding `n` events, except where a peer says its token is
/// something else (NATS: the stream's last sequence on the subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Any,
    Exact(u64),
}

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored; the token to expect next.
    Done { next: u64 },
    /// The expectation did not hold: nothing was stored.
    Conflict,
}

/// One store measured by the suite.
#[async_trait]
pub trait Peer: Send + Sync + 'static {
    /// The peer's version and durability settings, read from it.
    async fn about(&self) -> anyhow::Result<String>;

    /// Drops what earlier runs left (tables, keys, streams) and prepares an empty store.
    async fn reset(&self) -> anyhow::Result<()>;

    /// Makes ready, before anything is measured, what the peer would otherwise make on the
    /// first append to a kind of stream; `streams` holds one stream of each kind the workloads
    /// write. Stores nothing. The default has nothing to make: tables and streams are made by
    /// [`Peer::reset`]. (Factlog on Kafka creates a topic per category on first use.)
    async fn prepare(&self, _streams: &[String]) -> anyhow::Result<()> {
        Ok(())
    }

    /// Appends `events` (their data) to `stream`, all or none. `session` (below the number of
    /// sessions the peer was made with) picks the connection, so concurrent writers each have
    /// their own where the peer's clients work that way.
    async fn append(
        &self,
        session: usize,
        stream: &str,
        expect: Expect,
        events: &[Bytes],
    ) -> anyhow::Result<Appended>;

    /// The token an append to `stream` would have to expect now.
    async fn current(&self, session: usize, stream: &str) -> anyhow::Result<u64>;

    /// Every event of one stream, in order: their data.
    async fn read_stream(&self, session: usize, stream: &str) -> anyhow::Result<Vec<Bytes>>;

    /// Reads every event of the store in order, a page at a time, handing each event's data
    /// to `visit`; the number of events read.
    async fn read_all(
        &self,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64>;

    /// Subscribes from the start with the peer's own subscription mechanism and receives the
    /// first `count` events; the number received (less only if the subscription ended).
    async fn catch_up(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64>;

    /// Write counters of the store, for peers that keep them (Factlog embedded): how many
    /// appends and fsyncs it has done, and index checkpoints.
    fn counters(&self) -> Option<Counters> {
        None
    }

    /// Stops what the peer started (servers of its own); the default has nothing to stop.
    async fn shut_down(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Write counters of a store; see [`Peer::counters`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub appends: u64,
    pub fsyncs: u64,
    pub checkpoints: u64,
}

impl Counters {
    /// What happened between `self` (before) and `after`, as a sentence.
    pub fn describe_until(self, after: Counters) -> String {
        let appends = after.appends - self.appends;
        let fsyncs = after.fsyncs - self.fsyncs;
        format!(
            "{appends} appends in {fsyncs} fsyncs ({:.1} appends per fsync), {} index checkpoints",
            appends as f64 / fsyncs.max(1) as f64,
            after.checkpoints - self.checkpoints
        )
    }
}

/// An id for one event, as the peers that store ids want it.
pub fn event_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// The type every event of the benchmark has.
pub const EVENT_TYPE: &str = "MoneyDeposited";
