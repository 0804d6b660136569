//! How Factlog's values map onto Kafka: partitions of a stream, positions, record headers,
//! and the routed-append messages. The record format is specified in `docs/kafka.md`.

use bytes::Bytes;
use factlog_store::{
    AppendError, AppendResult, ContentType, EventId, EventType, ExpectedVersion, LimitKind,
    Metadata, NewEvent, Position, RecordedEvent, StreamAppend, StreamName, Timestamp, Version,
};
use serde::{Deserialize, Serialize};

/// Kafka's `murmur2` (the hash of its default partitioner), so that Factlog puts a stream in
/// the partition every Kafka client would choose for the same key.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ length as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a key among `partitions`, as Kafka's default partitioner computes it.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// Bits of a position: category id (16), partition (10), offset (38).
const PARTITION_BITS: u32 = 10;
const OFFSET_BITS: u32 = 38;
/// The largest partition count a topic may have.
pub const PARTITIONS_MAX: u32 = 1 << PARTITION_BITS;
/// The largest category id (ids start at 1; 0 marks a node-local position).
pub const CATEGORY_ID_MAX: u32 = (1 << (64 - PARTITION_BITS - OFFSET_BITS)) - 1;
const OFFSET_MAX: u64 = (1 << OFFSET_BITS) - 1;

/// One partition of one category topic, by the category's id in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub category: u32,
    pub partition: u32,
}

impl Slot {
    /// The partition key of a checkpoint ([`factlog_store::Checkpoint`]): the bits of a
    /// position above its offset, so every position of one slot has the same key.
    pub fn key(self) -> u64 {
        (u64::from(self.category) << PARTITION_BITS) | u64::from(self.partition)
    }
}

/// The partition key of any position: its bits above the offset (0 for a node-local mark).
pub fn partition_key(position: Position) -> u64 {
    position.raw() >> OFFSET_BITS
}

/// A position on the Kafka backend: an event's place as (category, partition, offset), or a
/// node-local mark (category 0) for places that are not an event, such as the end of `$all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaPosition {
    Event { slot: Slot, offset: u64 },
    Local(u64),
}

impl KafkaPosition {
    pub fn encode(self) -> Position {
        match self {
            KafkaPosition::Event { slot, offset } => {
                debug_assert!(slot.category >= 1 && slot.category <= CATEGORY_ID_MAX);
                debug_assert!(slot.partition < PARTITIONS_MAX && offset <= OFFSET_MAX);
                Position::from_raw(
                    (u64::from(slot.category) << (PARTITION_BITS + OFFSET_BITS))
                        | (u64::from(slot.partition) << OFFSET_BITS)
                        | offset,
                )
            }
            KafkaPosition::Local(local) => {
                Position::from_raw(local.min(1 << (PARTITION_BITS + OFFSET_BITS)))
            }
        }
    }

    pub fn decode(position: Position) -> Self {
        let raw = position.raw();
        let category = (raw >> (PARTITION_BITS + OFFSET_BITS)) as u32;
        if category == 0 {
            return KafkaPosition::Local(raw);
        }
        KafkaPosition::Event {
            slot: Slot {
                category,
                partition: ((raw >> OFFSET_BITS) & u64::from(PARTITIONS_MAX - 1)) as u32,
            },
            offset: raw & OFFSET_MAX,
        }
    }

    /// Whether an offset fits in a position.
    pub fn offset_fits(offset: i64) -> bool {
        (0..=OFFSET_MAX as i64).contains(&offset)
    }
}

/// Record header names. Values are UTF-8 text.
pub mod header {
    pub const ID: &str = "factlog.id";
    pub const TYPE: &str = "factlog.type";
    pub const SCHEMA_VERSION: &str = "factlog.schema-version";
    pub const VERSION: &str = "factlog.version";
    pub const RECORDED_AT: &str = "factlog.recorded-at";
    pub const CONTENT_TYPE: &str = "factlog.content-type";
    pub const METADATA: &str = "factlog.metadata";
    /// On a routed append: the request's id, the node that waits, and until when.
    pub const REQUEST_ID: &str = "factlog.request-id";
    pub const REPLY_TO: &str = "factlog.reply-to";
    pub const DEADLINE: &str = "factlog.deadline";
}

/// The headers of one event record, in the order they are written.
pub fn event_headers(
    id: EventId,
    event: &NewEvent,
    version: Version,
    recorded_at: Timestamp,
) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (header::ID, id.to_string().into_bytes()),
        (header::TYPE, event.event_type.as_str().as_bytes().to_vec()),
        (
            header::SCHEMA_VERSION,
            event.schema_version.to_string().into_bytes(),
        ),
        (header::VERSION, version.to_string().into_bytes()),
        (
            header::RECORDED_AT,
            recorded_at.to_rfc3339_micros().into_bytes(),
        ),
        (
            header::CONTENT_TYPE,
            event.content_type.as_str().as_bytes().to_vec(),
        ),
        (
            header::METADATA,
            factlog_store::metadata_json(&event.metadata),
        ),
    ]
}

/// Decodes an event record from its key, value and headers; `position` is its place.
pub fn decode_event(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
    position: Position,
) -> Result<RecordedEvent, String> {
    let text = |name: &str| -> Result<&str, String> {
        let value = headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("header {name} is missing"))?;
        std::str::from_utf8(value).map_err(|_| format!("header {name} is not UTF-8"))
    };
    let key = key.ok_or("the record has no key (the stream name)")?;
    let stream = std::str::from_utf8(key)
        .map_err(|_| "the key is not UTF-8".to_owned())
        .and_then(|s| StreamName::new(s).map_err(|e| format!("the key: {e}")))?;
    let id: EventId = text(header::ID)?
        .parse()
        .map_err(|_| format!("header {} is not a UUID", header::ID))?;
    let event_type =
        EventType::new(text(header::TYPE)?).map_err(|e| format!("header {}: {e}", header::TYPE))?;
    let schema_version = text(header::SCHEMA_VERSION)?
        .parse()
        .map_err(|_| format!("header {} is not a number", header::SCHEMA_VERSION))?;
    let version = text(header::VERSION)?
        .parse()
        .map_err(|_| format!("header {} is not a number", header::VERSION))?;
    let recorded_at = Timestamp::parse_rfc3339(text(header::RECORDED_AT)?)
        .map_err(|e| format!("header {}: {e}", header::RECORDED_AT))?;
    let content_type = ContentType::new(text(header::CONTENT_TYPE)?)
        .map_err(|e| format!("header {}: {e}", header::CONTENT_TYPE))?;
    let metadata: Metadata = serde_json::from_str(text(header::METADATA)?)
        .map_err(|e| format!("header {} is not a JSON object: {e}", header::METADATA))?;
    Ok(RecordedEvent {
        id,
        stream,
        version,
        position,
        event_type,
        schema_version,
        content_type,
        data: Bytes::copy_from_slice(value.unwrap_or_default()),
        metadata,
        recorded_at,
    })
}

/// A routed append: what a node that does not own a partition sends to the one that does.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub appends: Vec<WireAppend>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireAppend {
    pub stream: String,
    /// `any`, `no-stream`, `stream-exists` or a version.
    pub expected: String,
    pub events: Vec<WireEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireEvent {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub content_type: String,
    pub metadata: Metadata,
    /// Base64 (standard alphabet, padded).
    pub data: String,
}

/// The owner's answer to a routed append, produced in the transaction that holds its events.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Reply {
    Appended { results: Vec<WireResult> },
    Refused { error: WireError },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireResult {
    pub first_version: Version,
    pub last_version: Version,
    pub first_position: u64,
    pub last_position: u64,
}

/// An [`AppendError`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum WireError {
    WrongExpectedVersion {
        stream: String,
        expected: String,
        current: Option<Version>,
    },
    IdempotencyConflict {
        event_id: EventId,
        detail: String,
    },
    LimitExceeded {
        limit: String,
        actual: u64,
        max: u64,
    },
    Other {
        message: String,
    },
}

pub fn expected_to_wire(expected: ExpectedVersion) -> String {
    match expected {
        ExpectedVersion::Any => "any".into(),
        ExpectedVersion::NoStream => "no-stream".into(),
        ExpectedVersion::StreamExists => "stream-exists".into(),
        ExpectedVersion::Exact(v) => v.to_string(),
    }
}

pub fn expected_from_wire(s: &str) -> Result<ExpectedVersion, String> {
    Ok(match s {
        "any" => ExpectedVersion::Any,
        "no-stream" => ExpectedVersion::NoStream,
        "stream-exists" => ExpectedVersion::StreamExists,
        v => ExpectedVersion::Exact(v.parse().map_err(|_| format!("bad expected version {v}"))?),
    })
}

impl Request {
    pub fn from_appends(appends: &[StreamAppend]) -> Self {
        use base64::Engine;
        Request {
            appends: appends
                .iter()
                .map(|a| WireAppend {
                    stream: a.stream.as_str().to_owned(),
                    expected: expected_to_wire(a.expected),
                    events: a
                        .events
                        .iter()
                        .map(|e| WireEvent {
                            id: e.id.expect("ids are filled in before routing"),
                            event_type: e.event_type.as_str().to_owned(),
                            schema_version: e.schema_version,
                            content_type: e.content_type.as_str().to_owned(),
                            metadata: e.metadata.clone(),
                            data: base64::engine::general_purpose::STANDARD.encode(&e.data),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn into_appends(self) -> Result<Vec<StreamAppend>, String> {
        use base64::Engine;
        self.appends
            .into_iter()
            .map(|a| {
                Ok(StreamAppend {
                    stream: StreamName::new(&a.stream).map_err(|e| e.to_string())?,
                    expected: expected_from_wire(&a.expected)?,
                    events: a
                        .events
                        .into_iter()
                        .map(|e| {
                            Ok(NewEvent {
                                id: Some(e.id),
                                event_type: EventType::new(&e.event_type)
                                    .map_err(|e| e.to_string())?,
                                schema_version: e.schema_version,
                                content_type: ContentType::new(&e.content_type)
                                    .map_err(|e| e.to_string())?,
                                data: base64::engine::general_purpose::STANDARD
                                    .decode(&e.data)
                                    .map_err(|e| e.to_string())?
                                    .into(),
                                metadata: e.metadata,
                            })
                        })
                        .collect::<Result<_, String>>()?,
                })
            })
            .collect()
    }
}

impl Reply {
    pub fn from_outcome(outcome: &Result<Vec<AppendResult>, AppendError>) -> Self {
        match outcome {
            Ok(results) => Reply::Appended {
                results: results
                    .iter()
                    .map(|r| WireResult {
                        first_version: r.first_version,
                        last_version: r.last_version,
                        first_position: r.first_position.raw(),
                        last_position: r.last_position.raw(),
                    })
                    .collect(),
            },
            Err(e) => Reply::Refused {
                error: match e {
                    AppendError::WrongExpectedVersion {
                        stream,
                        expected,
                        current,
                    } => WireError::WrongExpectedVersion {
                        stream: stream.as_str().to_owned(),
                        expected: expected_to_wire(*expected),
                        current: *current,
                    },
                    AppendError::IdempotencyConflict { event_id, detail } => {
                        WireError::IdempotencyConflict {
                            event_id: *event_id,
                            detail: detail.clone(),
                        }
                    }
                    AppendError::LimitExceeded { limit, actual, max } => WireError::LimitExceeded {
                        limit: limit.to_string(),
                        actual: *actual,
                        max: *max,
                    },
                    other => WireError::Other {
                        message: other.to_string(),
                    },
                },
            },
        }
    }

    pub fn into_outcome(self) -> Result<Vec<AppendResult>, AppendError> {
        match self {
            Reply::Appended { results } => Ok(results
                .into_iter()
                .map(|r| AppendResult {
                    first_version: r.first_version,
                    last_version: r.last_version,
                    first_position: Position::from_raw(r.first_position),
                    last_position: Position::from_raw(r.last_position),
                })
                .collect()),
            Reply::Refused { error } => Err(match error {
                WireError::WrongExpectedVersion {
                    stream,
                    expected,
                    current,
                } => match (StreamName::new(&stream), expected_from_wire(&expected)) {
                    (Ok(stream), Ok(expected)) => AppendError::WrongExpectedVersion {
                        stream,
                        expected,
                        current,
                    },
                    _ => AppendError::Backend(format!(
                        "the owner refused the append: wrong expected version for {stream}"
                    )),
                },
                WireError::IdempotencyConflict { event_id, detail } => {
                    AppendError::IdempotencyConflict { event_id, detail }
                }
                WireError::LimitExceeded { limit, actual, max } => AppendError::LimitExceeded {
                    limit: match limit.as_str() {
                        "event_size_bytes_max" => LimitKind::EventSize,
                        "append_events_max" => LimitKind::EventsPerAppend,
                        _ => LimitKind::AppendSize,
                    },
                    actual,
                    max,
                },
                WireError::Other { message } => AppendError::Backend(message),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // The values of Kafka's own UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()), expected, "murmur2({key})");
        }
    }

    #[test]
    fn positions_round_trip() {
        for (category, partition, offset) in [
            (1, 0, 0),
            (1, 3, 17),
            (CATEGORY_ID_MAX, PARTITIONS_MAX - 1, OFFSET_MAX),
        ] {
            let p = KafkaPosition::Event {
                slot: Slot {
                    category,
                    partition,
                },
                offset,
            };
            assert_eq!(KafkaPosition::decode(p.encode()), p);
            assert_ne!(p.encode(), Position::START);
        }
        assert_eq!(
            KafkaPosition::decode(Position::START),
            KafkaPosition::Local(0)
        );
        assert_eq!(
            KafkaPosition::decode(KafkaPosition::Local(42).encode()),
            KafkaPosition::Local(42)
        );
    }

    #[test]
    fn routed_appends_round_trip() {
        let mut event = NewEvent::json("Opened", &serde_json::json!({"a": 1})).unwrap();
        event.id = Some(EventId::new_v7());
        event.metadata.insert("k".into(), "v".into());
        let appends = vec![StreamAppend {
            stream: StreamName::new("account-1").unwrap(),
            expected: ExpectedVersion::Exact(4),
            events: vec![event],
        }];
        let wire = serde_json::to_vec(&Request::from_appends(&appends)).unwrap();
        let back = serde_json::from_slice::<Request>(&wire)
            .unwrap()
            .into_appends()
            .unwrap();
        assert_eq!(back, appends);

        let refused = Reply::from_outcome(&Err(AppendError::WrongExpectedVersion {
            stream: StreamName::new("account-1").unwrap(),
            expected: ExpectedVersion::Exact(4),
            current: Some(7),
        }));
        let wire = serde_json::to_vec(&refused).unwrap();
        let back = serde_json::from_slice::<Reply>(&wire)
            .unwrap()
            .into_outcome();
        assert!(matches!(
            back,
            Err(AppendError::WrongExpectedVersion {
                current: Some(7),
                ..
            })
        ));
    }
}
