//! Domain events: typed, named, versioned, and readable in every version ever stored.
//!
//! An aggregate's events are one Rust type (usually an enum with one variant per event type).
//! Each stored event carries its type name and the schema version it was written with; an
//! [`EventSchema`] says how to turn every (type, version) pair ever written back into the current
//! Rust type: directly for the current version, through a chain of upcast functions (version
//! n -> n + 1) for older ones. This is the hook a schema registry can later replace.

use std::collections::BTreeMap;
use std::fmt;

use factlog_store::{ContentType, EventType, NewEvent, RecordedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An aggregate's events.
///
/// Serializing an event must produce its payload only, without the variant name: for an enum
/// of one struct per event type, derive `Serialize` with `#[serde(untagged)]`. The test kit
/// checks every event it sees round-trips through [`DomainEvent::schema`], so a mistake here
/// fails the first test.
pub trait DomainEvent: Serialize + Clone + fmt::Debug + Send + Sync + 'static {
    /// The stored type name of this event, for example `MoneyDeposited`.
    fn event_type(&self) -> &'static str;

    /// How to read every type and schema version of these events.
    fn schema() -> &'static EventSchema<Self>;
}

type DecodeFn<E> = Box<dyn Fn(Value) -> Result<E, serde_json::Error> + Send + Sync>;
type DecodeBytesFn<E> = Box<dyn Fn(&[u8]) -> Result<E, serde_json::Error> + Send + Sync>;
type UpcastFn = Box<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

struct TypeSchema<E> {
    current_version: u32,
    decode: DecodeFn<E>,
    decode_bytes: DecodeBytesFn<E>,
    /// Upcasts keyed by the version they read; each produces the next version.
    upcasts: BTreeMap<u32, UpcastFn>,
}

/// Every event type of one aggregate, with its current schema version and the upcasts from the
/// older ones. Built once (for example in a `static OnceLock`) and shared.
///
/// ```
/// use factlog_aggregate::EventSchema;
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// struct OrderCreated { order_id: String, currency: String }
/// #[derive(Debug)]
/// enum OrderEvent { Created(OrderCreated) }
///
/// let schema = EventSchema::new()
///     .event("OrderCreated", 2, OrderEvent::Created)
///     // Version 1 had no currency: orders were in euros.
///     .upcast("OrderCreated", 1, |mut v| {
///         v["currency"] = "EUR".into();
///         Ok(v)
///     });
/// let old = schema.decode("OrderCreated", 1, br#"{"order_id":"o-1"}"#).unwrap();
/// let OrderEvent::Created(created) = old;
/// assert_eq!(created.currency, "EUR");
/// ```
pub struct EventSchema<E> {
    types: BTreeMap<&'static str, TypeSchema<E>>,
}

impl<E> fmt::Debug for EventSchema<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, schema) in &self.types {
            let upcasts: Vec<_> = schema.upcasts.keys().collect();
            map.entry(
                name,
                &format_args!("v{} (upcasts from {upcasts:?})", schema.current_version),
            );
        }
        map.finish()
    }
}

impl<E: 'static> Default for EventSchema<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: 'static> EventSchema<E> {
    pub fn new() -> Self {
        Self {
            types: BTreeMap::new(),
        }
    }

    /// Registers an event type at its current schema version: its payload deserializes into `T`,
    /// which `wrap` turns into the aggregate's event type.
    ///
    /// # Panics
    /// When the type is registered twice, its name is not a valid event type, or the version is
    /// 0: these are programming errors, found when the schema is built.
    pub fn event<T: DeserializeOwned + 'static>(
        mut self,
        event_type: &'static str,
        current_version: u32,
        wrap: fn(T) -> E,
    ) -> Self {
        assert!(current_version >= 1, "schema versions start at 1");
        assert!(
            EventType::new(event_type).is_ok(),
            "{event_type:?} is not a valid event type"
        );
        let previous = self.types.insert(
            event_type,
            TypeSchema {
                current_version,
                decode: Box::new(move |value| serde_json::from_value(value).map(wrap)),
                decode_bytes: Box::new(move |bytes| serde_json::from_slice(bytes).map(wrap)),
                upcasts: BTreeMap::new(),
            },
        );
        assert!(
            previous.is_none(),
            "event type {event_type} registered twice"
        );
        self
    }

    /// Registers how to turn a payload of `event_type` at `from_version` into the payload of
    /// `from_version + 1`. An upcast can fail (the stored payload is not what that version
    /// should be); the failure is a [`DecodeError::Upcast`].
    ///
    /// # Panics
    /// When the type is not registered yet, `from_version` is not below its current version, or
    /// the upcast is registered twice.
    pub fn upcast(
        mut self,
        event_type: &'static str,
        from_version: u32,
        upcast: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        let schema = self
            .types
            .get_mut(event_type)
            .unwrap_or_else(|| panic!("register event type {event_type} before its upcasts"));
        assert!(
            from_version >= 1 && from_version < schema.current_version,
            "an upcast of {event_type} reads a version in 1..{}, not {from_version}",
            schema.current_version
        );
        let previous = schema.upcasts.insert(from_version, Box::new(upcast));
        assert!(
            previous.is_none(),
            "upcast of {event_type} from version {from_version} registered twice"
        );
        self
    }

    /// The version new events of this type are written with; `None` for an unknown type.
    pub fn current_version(&self, event_type: &str) -> Option<u32> {
        self.types.get(event_type).map(|t| t.current_version)
    }

    /// Every registered event type, in byte order.
    pub fn event_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().copied()
    }

    /// Reads a stored payload of `event_type` at `schema_version` as the current type.
    pub fn decode(
        &self,
        event_type: &str,
        schema_version: u32,
        data: &[u8],
    ) -> Result<E, DecodeError> {
        let schema = self
            .types
            .get(event_type)
            .ok_or_else(|| DecodeError::UnknownType {
                event_type: event_type.to_owned(),
            })?;
        if schema_version == 0 || schema_version > schema.current_version {
            return Err(DecodeError::UnknownVersion {
                event_type: event_type.to_owned(),
                schema_version,
                current_version: schema.current_version,
            });
        }
        let payload_error = |e: serde_json::Error| DecodeError::Payload {
            event_type: event_type.to_owned(),
            schema_version,
            reason: e.to_string(),
        };
        if schema_version == schema.current_version {
            return (schema.decode_bytes)(data).map_err(payload_error);
        }
        let mut value: Value = serde_json::from_slice(data).map_err(payload_error)?;
        for version in schema_version..schema.current_version {
            let upcast = schema
                .upcasts
                .get(&version)
                .ok_or_else(|| DecodeError::NoUpcast {
                    event_type: event_type.to_owned(),
                    from_version: version,
                })?;
            value = upcast(value).map_err(|reason| DecodeError::Upcast {
                event_type: event_type.to_owned(),
                from_version: version,
                reason,
            })?;
        }
        (schema.decode)(value).map_err(|e| DecodeError::Payload {
            event_type: event_type.to_owned(),
            schema_version,
            reason: format!("after upcasting to v{}: {e}", schema.current_version),
        })
    }

    /// Reads a stored event.
    pub fn decode_recorded(&self, event: &RecordedEvent) -> Result<E, DecodeError> {
        if !event.content_type.is_json() {
            return Err(DecodeError::NotJson {
                event_type: event.event_type.as_str().to_owned(),
                content_type: event.content_type.as_str().to_owned(),
            });
        }
        self.decode(event.event_type.as_str(), event.schema_version, &event.data)
    }
}

/// Encodes a domain event as a store event: its type name, its type's current schema version,
/// and its payload as JSON.
pub fn encode<E: DomainEvent>(event: &E) -> Result<NewEvent, EncodeError> {
    let event_type = event.event_type();
    let schema_version = E::schema()
        .current_version(event_type)
        .ok_or(EncodeError::Unregistered { event_type })?;
    let data = serde_json::to_vec(event).map_err(|e| EncodeError::Payload {
        event_type,
        reason: e.to_string(),
    })?;
    let event_type_name = EventType::new(event_type).map_err(|e| EncodeError::Payload {
        event_type,
        reason: e.to_string(),
    })?;
    Ok(NewEvent::new(event_type_name, ContentType::json(), data)
        .with_schema_version(schema_version))
}

/// A stored event that cannot be read as the aggregate's event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("event type {event_type} is not one this aggregate knows; register it in the schema")]
    UnknownType { event_type: String },
    #[error(
        "{event_type} v{schema_version} is unknown: this code reads versions 1 to {current_version}"
    )]
    UnknownVersion {
        event_type: String,
        schema_version: u32,
        current_version: u32,
    },
    #[error("no upcast reads {event_type} v{from_version}; register one in the schema")]
    NoUpcast {
        event_type: String,
        from_version: u32,
    },
    #[error("the upcast of {event_type} from v{from_version} failed: {reason}")]
    Upcast {
        event_type: String,
        from_version: u32,
        reason: String,
    },
    #[error("the payload of {event_type} v{schema_version} does not match its type: {reason}")]
    Payload {
        event_type: String,
        schema_version: u32,
        reason: String,
    },
    #[error("{event_type} has content type {content_type}; aggregates read JSON events")]
    NotJson {
        event_type: String,
        content_type: String,
    },
}

/// A domain event that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("event type {event_type} is not registered in the aggregate's event schema")]
    Unregistered { event_type: &'static str },
    #[error("event {event_type} could not be encoded: {reason}")]
    Payload {
        event_type: &'static str,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Created {
        id: String,
        currency: String,
        total: u64,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Ev {
        Created(Created),
    }

    fn schema() -> EventSchema<Ev> {
        EventSchema::new()
            .event("Created", 3, Ev::Created)
            .upcast("Created", 1, |mut v| {
                v["currency"] = "EUR".into();
                Ok(v)
            })
            .upcast("Created", 2, |mut v| {
                let total = v
                    .get("total_cents")
                    .and_then(Value::as_u64)
                    .ok_or("v2 has no total_cents")?;
                v["total"] = total.into();
                Ok(v)
            })
    }

    #[test]
    fn every_version_reads_as_the_current_type() {
        let s = schema();
        let expected = Ev::Created(Created {
            id: "a".into(),
            currency: "EUR".into(),
            total: 5,
        });
        let v1 = s.decode("Created", 1, br#"{"id":"a","total_cents":5}"#);
        let v2 = s.decode(
            "Created",
            2,
            br#"{"id":"a","currency":"EUR","total_cents":5}"#,
        );
        let v3 = s.decode("Created", 3, br#"{"id":"a","currency":"EUR","total":5}"#);
        assert_eq!(v1.unwrap(), expected);
        assert_eq!(v2.unwrap(), expected);
        assert_eq!(v3.unwrap(), expected);
    }

    #[test]
    fn unknown_types_versions_and_bad_payloads_are_errors() {
        let s = schema();
        assert!(matches!(
            s.decode("Deleted", 1, b"{}"),
            Err(DecodeError::UnknownType { .. })
        ));
        for version in [0, 4] {
            assert!(matches!(
                s.decode("Created", version, b"{}"),
                Err(DecodeError::UnknownVersion { .. })
            ));
        }
        assert!(matches!(
            s.decode("Created", 2, br#"{"id":"a"}"#),
            Err(DecodeError::Upcast {
                from_version: 2,
                ..
            })
        ));
        assert!(matches!(
            s.decode("Created", 3, b"not json"),
            Err(DecodeError::Payload { .. })
        ));
        assert!(matches!(
            s.decode("Created", 3, br#"{"id":"a"}"#),
            Err(DecodeError::Payload { .. })
        ));
        let gap = EventSchema::new().event("Created", 3, Ev::Created).upcast(
            "Created",
            2,
            Ok::<Value, String>,
        );
        assert_eq!(
            gap.decode("Created", 1, b"{}"),
            Err(DecodeError::NoUpcast {
                event_type: "Created".into(),
                from_version: 1
            })
        );
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn registering_a_type_twice_is_a_programming_error() {
        let _ =
            EventSchema::new()
                .event("Created", 1, Ev::Created)
                .event("Created", 2, Ev::Created);
    }
}
