//! Positions in the whole store.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A place in the whole store. Positions are ordered (a later event has a greater position) and
/// opaque: callers keep the positions the store gives them and hand them back; they must not do
/// arithmetic on them. Serialized as a decimal string so that JSON clients never lose precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(u64);

impl Position {
    /// Before the first event of the store.
    pub const START: Position = Position(0);

    /// Built by a backend from its own representation.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The backend's own representation.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl std::str::FromStr for Position {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
