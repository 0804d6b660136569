//! Commands: what a caller asks an aggregate to do, with the ids that make it traceable and
//! idempotent.

use factlog_store::{EventId, Metadata, StreamName};
use uuid::Uuid;

/// The longest command, correlation or causation id, in bytes.
pub const COMMAND_ID_BYTES_MAX: usize = 255;

/// A command and its envelope.
///
/// With a command id, the ids of the events the command produces are derived from it (and the
/// stream and the event's place in the command), so a retried command is recognized and never
/// applied twice. The correlation and causation ids go into every event's metadata
/// (`correlationId`, `causationId`), along with `commandId`.
#[derive(Debug, Clone)]
pub struct Command<C> {
    pub body: C,
    pub meta: CommandMeta,
}

/// The envelope of a command: its ids and any metadata to record with its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandMeta {
    pub command_id: Option<String>,
    /// The id of the whole conversation; defaults to the command id.
    pub correlation_id: Option<String>,
    /// The id of what caused this command (a request, an event); defaults to the command id.
    pub causation_id: Option<String>,
    /// More metadata for every event (the keys above take precedence).
    pub metadata: Metadata,
}

impl<C> Command<C> {
    pub fn new(body: C) -> Self {
        Self {
            body,
            meta: CommandMeta::default(),
        }
    }

    pub fn with_id(mut self, command_id: impl Into<String>) -> Self {
        self.meta.command_id = Some(command_id.into());
        self
    }

    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.meta.correlation_id = Some(correlation_id.into());
        self
    }

    pub fn with_causation_id(mut self, causation_id: impl Into<String>) -> Self {
        self.meta.causation_id = Some(causation_id.into());
        self
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.meta.metadata = metadata;
        self
    }
}

impl<C> From<C> for Command<C> {
    fn from(body: C) -> Self {
        Self::new(body)
    }
}

/// The namespace of event ids derived from command ids (a UUIDv5 namespace of its own, so
/// derived ids never collide with other v5 ids).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c0f_3a8e_9d1b_4c57_a2e4_5f1d_8b3c_7e90);

impl CommandMeta {
    /// Checks the ids: 1 to [`COMMAND_ID_BYTES_MAX`] bytes each.
    pub fn validate(&self) -> Result<(), InvalidCommand> {
        for (what, id) in [
            ("command id", &self.command_id),
            ("correlation id", &self.correlation_id),
            ("causation id", &self.causation_id),
        ] {
            if let Some(id) = id
                && (id.is_empty() || id.len() > COMMAND_ID_BYTES_MAX)
            {
                return Err(InvalidCommand::Id {
                    what,
                    length_bytes: id.len(),
                });
            }
        }
        Ok(())
    }

    /// The id of the `index`th event this command writes to `stream`: derived from the command id
    /// when there is one (the same on every retry), a fresh UUIDv7 otherwise.
    pub fn event_id(&self, stream: &StreamName, index: usize) -> EventId {
        match &self.command_id {
            Some(command_id) => {
                let mut name = Vec::with_capacity(stream.as_str().len() + command_id.len() + 10);
                name.extend_from_slice(stream.as_str().as_bytes());
                name.push(0);
                name.extend_from_slice(command_id.as_bytes());
                name.push(0);
                name.extend_from_slice(&(index as u64).to_le_bytes());
                EventId::from_uuid(Uuid::new_v5(&EVENT_ID_NAMESPACE, &name))
            }
            None => EventId::new_v7(),
        }
    }

    /// The metadata of every event of this command.
    pub fn event_metadata(&self) -> Metadata {
        let mut metadata = self.metadata.clone();
        if let Some(id) = &self.command_id {
            metadata.insert("commandId".into(), id.clone().into());
        }
        let correlation = self.correlation_id.as_ref().or(self.command_id.as_ref());
        if let Some(id) = correlation {
            metadata.insert("correlationId".into(), id.clone().into());
        }
        let causation = self.causation_id.as_ref().or(self.command_id.as_ref());
        if let Some(id) = causation {
            metadata.insert("causationId".into(), id.clone().into());
        }
        metadata
    }
}

/// A command envelope that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    #[error("the {what} is {length_bytes} bytes; it must be 1 to {COMMAND_ID_BYTES_MAX} bytes")]
    Id {
        what: &'static str,
        length_bytes: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let meta = CommandMeta {
            command_id: Some("c-1".into()),
            ..CommandMeta::default()
        };
        let a = StreamName::new("account-1").unwrap();
        let b = StreamName::new("account-2").unwrap();
        assert_eq!(meta.event_id(&a, 0), meta.event_id(&a, 0));
        assert_ne!(meta.event_id(&a, 0), meta.event_id(&a, 1));
        assert_ne!(meta.event_id(&a, 0), meta.event_id(&b, 0));
        let other = CommandMeta {
            command_id: Some("c-2".into()),
            ..CommandMeta::default()
        };
        assert_ne!(meta.event_id(&a, 0), other.event_id(&a, 0));
        let none = CommandMeta::default();
        assert_ne!(none.event_id(&a, 0), none.event_id(&a, 0));
    }

    #[test]
    fn metadata_carries_the_ids() {
        let meta = CommandMeta {
            command_id: Some("c-1".into()),
            causation_id: Some("req-9".into()),
            ..CommandMeta::default()
        };
        let m = meta.event_metadata();
        assert_eq!(m["commandId"], "c-1");
        assert_eq!(m["correlationId"], "c-1");
        assert_eq!(m["causationId"], "req-9");
        assert!(CommandMeta::default().event_metadata().is_empty());
        let long = CommandMeta {
            command_id: Some("x".repeat(256)),
            ..CommandMeta::default()
        };
        assert!(long.validate().is_err());
    }
}
