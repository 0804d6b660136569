//! How far a reader of `$all` has come, in a form that survives the reader moving to another
//! node: what a projection commits with its read model.

use std::collections::BTreeMap;
use std::fmt;

use factlog_types::Position;

use crate::Ordering;

/// What a reader of `$all` has read.
///
/// On a totally ordered store ([`Ordering::Total`]) that is a prefix of `$all`: one position.
/// On a store ordered per partition ([`Ordering::PerPartition`], Kafka) the order in which
/// partitions are merged differs between nodes, so a position of one node's merge says nothing
/// about another node's; the checkpoint holds the last position read in each partition instead,
/// by partition key ([`crate::EventStore::partition_key`]). A partition it does not name has
/// not been read at all.
///
/// [`crate::EventStore::subscribe_after`] follows `$all` from a checkpoint: it delivers every
/// event the checkpoint does not cover, on any node.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// Every event up to and including this position ([`Position::START`]: none).
    Total(Position),
    /// The last position read in each partition, by partition key.
    PerPartition(BTreeMap<u64, Position>),
}

/// A stored checkpoint that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a per-partition checkpoint: {0:?}")]
pub struct InvalidCheckpoint(pub String);

impl Checkpoint {
    /// Before the first event, for a store ordered as `ordering` says.
    pub fn start(ordering: Ordering) -> Self {
        match ordering {
            Ordering::Total => Self::Total(Position::START),
            Ordering::PerPartition => Self::PerPartition(BTreeMap::new()),
        }
    }

    /// Whether nothing has been read.
    pub fn is_start(&self) -> bool {
        match self {
            Self::Total(p) => *p == Position::START,
            Self::PerPartition(parts) => parts.is_empty(),
        }
    }

    /// Whether the event at `position`, in partition `key`, has been read.
    pub fn covers(&self, key: u64, position: Position) -> bool {
        match self {
            Self::Total(p) => position <= *p,
            Self::PerPartition(parts) => parts.get(&key).is_some_and(|p| position <= *p),
        }
    }

    /// Records that the event at `position`, in partition `key`, has been read (with the
    /// events before it in that partition). A position at or before the checkpoint changes
    /// nothing.
    pub fn advance(&mut self, key: u64, position: Position) {
        match self {
            Self::Total(p) => *p = (*p).max(position),
            Self::PerPartition(parts) => {
                let p = parts.entry(key).or_insert(position);
                *p = (*p).max(position);
            }
        }
    }

    /// Whether `self` has read everything `other` has.
    pub fn reached(&self, other: &Checkpoint) -> bool {
        match (self, other) {
            (Self::Total(a), Self::Total(b)) => a >= b,
            (Self::PerPartition(a), Self::PerPartition(b)) => b
                .iter()
                .all(|(key, p)| a.get(key).is_some_and(|mine| mine >= p)),
            _ => false,
        }
    }

    /// The one position of a totally ordered checkpoint; `None` for a per-partition one.
    pub fn total(&self) -> Option<Position> {
        match self {
            Self::Total(p) => Some(*p),
            Self::PerPartition(_) => None,
        }
    }

    /// The two columns a sink stores: the position of a totally ordered checkpoint (0 for a
    /// per-partition one), and the partitions of a per-partition one as text
    /// (`key:position,...`; `None` for a totally ordered one).
    pub fn to_columns(&self) -> (Position, Option<String>) {
        match self {
            Self::Total(p) => (*p, None),
            Self::PerPartition(parts) => (
                Position::START,
                Some(
                    parts
                        .iter()
                        .map(|(k, p)| format!("{k}:{p}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ),
        }
    }

    /// Reads back what [`Checkpoint::to_columns`] wrote.
    pub fn from_columns(
        position: Position,
        partitions: Option<&str>,
    ) -> Result<Self, InvalidCheckpoint> {
        let Some(text) = partitions else {
            return Ok(Self::Total(position));
        };
        let invalid = || InvalidCheckpoint(text.to_owned());
        let mut parts = BTreeMap::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (key, p) = part.split_once(':').ok_or_else(invalid)?;
            let key: u64 = key.parse().map_err(|_| invalid())?;
            let p: Position = p.parse().map_err(|_| invalid())?;
            if parts.insert(key, p).is_some() {
                return Err(invalid());
            }
        }
        Ok(Self::PerPartition(parts))
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Total(p) => write!(f, "{p}"),
            Self::PerPartition(_) => {
                let (_, text) = self.to_columns();
                write!(f, "{{{}}}", text.unwrap_or_default())
            }
        }
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checkpoint({self})")
    }
}

impl From<Position> for Checkpoint {
    fn from(p: Position) -> Self {
        Self::Total(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: u64) -> Position {
        Position::from_raw(raw)
    }

    #[test]
    fn a_total_checkpoint_covers_its_prefix() {
        let mut c = Checkpoint::start(Ordering::Total);
        assert!(c.is_start());
        c.advance(0, p(5));
        c.advance(0, p(3));
        assert_eq!(c, Checkpoint::Total(p(5)));
        assert!(c.covers(0, p(5)) && c.covers(7, p(1)) && !c.covers(0, p(6)));
        assert!(c.reached(&Checkpoint::Total(p(4))) && !c.reached(&Checkpoint::Total(p(6))));
    }

    #[test]
    fn a_per_partition_checkpoint_covers_each_partition_apart() {
        let mut c = Checkpoint::start(Ordering::PerPartition);
        c.advance(1, p(10));
        c.advance(2, p(4));
        c.advance(1, p(8));
        assert!(c.covers(1, p(10)) && !c.covers(1, p(11)));
        assert!(c.covers(2, p(4)) && !c.covers(2, p(5)));
        assert!(!c.covers(3, p(1)), "a partition not named is unread");
        let mut behind = Checkpoint::start(Ordering::PerPartition);
        behind.advance(1, p(10));
        assert!(c.reached(&behind) && !behind.reached(&c));
        assert!(!c.reached(&Checkpoint::Total(p(1))));
    }

    #[test]
    fn columns_round_trip() {
        let mut c = Checkpoint::start(Ordering::PerPartition);
        for checkpoint in [Checkpoint::Total(p(42)), c.clone()] {
            let (position, text) = checkpoint.to_columns();
            assert_eq!(
                Checkpoint::from_columns(position, text.as_deref()).unwrap(),
                checkpoint
            );
        }
        c.advance(3, p(1 << 40));
        c.advance(0, p(7));
        let (position, text) = c.to_columns();
        assert_eq!(text.as_deref(), Some("0:7,3:1099511627776"));
        assert_eq!(
            Checkpoint::from_columns(position, text.as_deref()).unwrap(),
            c
        );
        for bad in ["x", "1:2:3", "1:a", "1:2,1:3", "-1:2"] {
            assert!(
                Checkpoint::from_columns(Position::START, Some(bad)).is_err(),
                "{bad}"
            );
        }
    }
}
