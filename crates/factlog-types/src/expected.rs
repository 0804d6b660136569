//! Optimistic concurrency: what the writer expects the stream to be.

use std::fmt;

use crate::Version;

/// What an append expects of the stream it writes to. A wrong expectation is refused with the
/// stream's current version, and nothing is written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    #[default]
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (hold at least one event).
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `current` (None: no stream) meets this expectation.
    pub fn is_met_by(self, current: Option<Version>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(v) => current == Some(v),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no-stream"),
            ExpectedVersion::StreamExists => f.write_str("exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl std::str::FromStr for ExpectedVersion {
    type Err = String;
    /// Parses the words of the HTTP `Expected-Version` header: `any`, `no-stream`, `exists` or a
    /// version number.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(Self::Any),
            "no-stream" => Ok(Self::NoStream),
            "exists" => Ok(Self::StreamExists),
            n => n.parse().map(Self::Exact).map_err(|_| {
                format!("expected version {s:?} is not one of any, no-stream, exists or a number")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        use ExpectedVersion::*;
        assert!(Any.is_met_by(None) && Any.is_met_by(Some(3)));
        assert!(NoStream.is_met_by(None) && !NoStream.is_met_by(Some(0)));
        assert!(!StreamExists.is_met_by(None) && StreamExists.is_met_by(Some(0)));
        assert!(Exact(3).is_met_by(Some(3)) && !Exact(3).is_met_by(Some(2)));
        assert!(!Exact(0).is_met_by(None));
        for e in [Any, NoStream, StreamExists, Exact(7)] {
            assert_eq!(e.to_string().parse::<ExpectedVersion>(), Ok(e));
        }
        assert!("-1".parse::<ExpectedVersion>().is_err());
    }
}
