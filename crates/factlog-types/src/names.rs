//! Validated names: stream names and event types.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest stream name or event type, in bytes of UTF-8.
pub const NAME_BYTES_MAX: usize = 255;

/// Why a name was refused. The message names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("{what} is empty; it must be 1 to {NAME_BYTES_MAX} bytes")]
    Empty { what: &'static str },
    #[error("{what} is {length_bytes} bytes long; the limit is {NAME_BYTES_MAX} bytes")]
    TooLong {
        what: &'static str,
        length_bytes: usize,
    },
    #[error("{what} contains a control character at byte {index}")]
    ControlCharacter { what: &'static str, index: usize },
    #[error("{what} starts with '$', which is reserved for system streams such as $all")]
    Reserved { what: &'static str },
}

fn validate(what: &'static str, name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty { what });
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(InvalidName::TooLong {
            what,
            length_bytes: name.len(),
        });
    }
    if let Some((index, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InvalidName::ControlCharacter { what, index });
    }
    Ok(())
}

/// The name of a stream: 1..=255 bytes of UTF-8, no control characters, not starting with `$`.
///
/// The category is the part before the first `-`: `account-42` is in category `account`.
/// Cloning is cheap (a shared string), as a reader hands out the same name with every event.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StreamName(Arc<str>);

impl StreamName {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        validate("stream name", &name)?;
        if name.starts_with('$') {
            return Err(InvalidName::Reserved {
                what: "stream name",
            });
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part of the name before the first `-`, or the whole name when it has none.
    pub fn category(&self) -> &str {
        self.0
            .split_once('-')
            .map_or(&*self.0, |(category, _)| category)
    }

    pub fn into_string(self) -> String {
        self.0.to_string()
    }
}

/// The type of an event, such as `MoneyDeposited`: 1..=255 bytes of UTF-8, no control characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EventType(Arc<str>);

impl EventType {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        validate("event type", &name)?;
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! name_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = InvalidName;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}
name_impls!(StreamName);
name_impls!(EventType);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stream_name_rules() {
        assert!(StreamName::new("a").is_ok());
        assert!(StreamName::new("x".repeat(255)).is_ok());
        assert_eq!(
            StreamName::new("x".repeat(256)),
            Err(InvalidName::TooLong {
                what: "stream name",
                length_bytes: 256
            })
        );
        assert_eq!(
            StreamName::new(""),
            Err(InvalidName::Empty {
                what: "stream name"
            })
        );
        assert_eq!(
            StreamName::new("a\nb"),
            Err(InvalidName::ControlCharacter {
                what: "stream name",
                index: 1
            })
        );
        assert!(matches!(
            StreamName::new("$all"),
            Err(InvalidName::Reserved { .. })
        ));
        // 255 bytes, counted in bytes rather than characters.
        assert!(StreamName::new("é".repeat(128)).is_err());
    }

    #[test]
    fn category_is_before_first_dash() {
        assert_eq!(StreamName::new("account-42").unwrap().category(), "account");
        assert_eq!(StreamName::new("order-1-2").unwrap().category(), "order");
        assert_eq!(
            StreamName::new("singleton").unwrap().category(),
            "singleton"
        );
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<StreamName>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<StreamName>("\"\"").is_err());
        assert!(serde_json::from_str::<EventType>("\"a\\u0000\"").is_err());
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(name in "[a-zA-Z0-9_.-]{1,255}") {
            let stream = StreamName::new(name.clone()).unwrap();
            prop_assert_eq!(stream.as_str(), name.as_str());
            prop_assert!(name.starts_with(stream.category()));
        }
    }
}
