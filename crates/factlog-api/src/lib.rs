//! The JSON shapes of Factlog's HTTP API: what the server sends and accepts, and what the HTTP
//! client parses. One definition for both sides, so that they cannot drift apart; the server's
//! OpenAPI document is generated from these types (`utoipa::ToSchema`).
//!
//! Conventions: field names are camelCase; positions are strings (JSON numbers lose precision
//! above 2^53, and positions are opaque to clients); times are RFC 3339 UTC with milliseconds.
//! Event data travels as `data` (a JSON value, or text for other content types) when that carries
//! the bytes exactly, and as `dataBase64` otherwise, so that every byte string round-trips.

pub mod problem;
pub mod projections;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use factlog_store::{
    AppendResult, ContentType, EventId, EventType, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StreamInfo, StreamName, Timestamp, Version,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

pub use problem::{Problem, ProblemKind};
pub use projections::{
    DeadLetterJson, DeadLetterStatusJson, DeadLettersResponse, InterestJson, LastErrorJson,
    OnErrorJson, ProjectionState, ProjectionStatusJson, ProjectionsResponse, RebuildResponse,
    RebuildStatusJson, ResetPlanJson, ResetRequest, ResetTargetJson, ResetTo,
};

/// The header that carries an append's expected version.
pub const EXPECTED_VERSION_HEADER: &str = "expected-version";

/// Read-your-writes: a request carrying positions (comma-separated, as appends return them)
/// is answered once this server's reads see those events, on a store whose nodes replicate
/// (Kafka); the answer is `unavailable` when they do not arrive in time.
pub const WAIT_FOR_POSITION_HEADER: &str = "wait-for-position";
/// The header of a `409` that carries the stream's current version (absent: no stream).
pub const CURRENT_VERSION_HEADER: &str = "current-version";
/// The media type of every error body (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewEventJson {
    /// The caller's id (a UUID): appending the same ids again is an idempotent retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event type, such as `MoneyDeposited`.
    pub event_type: String,
    /// The event's data: any JSON value (a string of text when `contentType` is not JSON),
    /// stored exactly as written. Give `data` or `dataBase64`, not both.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Value>)]
    pub data: Option<RawJson>,
    /// The event's data as standard base64 (RFC 4648, padded), stored as exactly these bytes
    /// whatever `contentType` says: for data that `data` cannot carry, such as bytes that are not
    /// UTF-8, or JSON-typed data that is not JSON. Give `data` or `dataBase64`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Byte)]
    pub data_base64: Option<String>,
    /// A JSON object; `correlationId` and `causationId` are the conventional keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// The version of the event type's schema; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub schema_version: Option<u32>,
    /// The media type of `data`; `application/json` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// Why a [`NewEventJson`] is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// The field at fault, such as `eventType`.
    pub field: &'static str,
    pub reason: String,
}

impl NewEventJson {
    /// Checks the fields and builds the event.
    pub fn into_new_event(self) -> Result<NewEvent, InvalidField> {
        let invalid = |field, reason: String| InvalidField { field, reason };
        let event_type =
            EventType::new(self.event_type).map_err(|e| invalid("eventType", e.to_string()))?;
        let content_type = match self.content_type {
            Some(text) => {
                ContentType::new(text).map_err(|e| invalid("contentType", e.to_string()))?
            }
            None => ContentType::json(),
        };
        let data = match (self.data, self.data_base64) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "data",
                    "give data or dataBase64, not both".to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "data",
                    "give data (a JSON value) or dataBase64 (the bytes in base64)".to_owned(),
                ));
            }
            (None, Some(base64)) => Bytes::from(
                BASE64
                    .decode(&base64)
                    .map_err(|e| invalid("dataBase64", format!("not standard base64: {e}")))?,
            ),
            (Some(raw), None) if content_type.is_json() => Bytes::from(raw.get().to_owned()),
            (Some(raw), None) if raw.get().starts_with('"') => Bytes::from(
                serde_json::from_str::<String>(raw.get())
                    .map_err(|e| invalid("data", e.to_string()))?,
            ),
            (Some(_), None) => {
                return Err(invalid(
                    "data",
                    format!(
                        "with content type {content_type}, data must be a string \
                         (or give dataBase64)"
                    ),
                ));
            }
        };
        let mut event = NewEvent::new(event_type, content_type, data)
            .with_schema_version(self.schema_version.unwrap_or(1))
            .with_metadata(self.metadata.unwrap_or_default());
        if let Some(id) = self.event_id {
            event = event.with_id(
                id.parse::<EventId>()
                    .map_err(|_| invalid("eventId", format!("{id:?} is not a UUID")))?,
            );
        }
        Ok(event)
    }

    /// The JSON form of `event` (what the HTTP client sends): `data` when it carries the bytes
    /// exactly, otherwise `dataBase64`, so that [`NewEventJson::into_new_event`] gives back the
    /// same bytes.
    pub fn from_new_event(event: &NewEvent) -> Self {
        let (data, data_base64) = data_fields(&event.content_type, &event.data);
        Self {
            event_id: event.id.map(|id| id.to_string()),
            event_type: event.event_type.as_str().to_owned(),
            data,
            data_base64,
            metadata: (!event.metadata.is_empty()).then(|| event.metadata.clone()),
            schema_version: (event.schema_version != 1).then_some(event.schema_version),
            content_type: (!event.content_type.is_json())
                .then(|| event.content_type.as_str().to_owned()),
        }
    }
}

/// JSON text exactly as it was written: event data keeps its bytes (whitespace, key order,
/// number spelling) from the request into the store and back out, and is never parsed into a
/// tree on the way.
#[derive(Debug, Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// `text` if it is one JSON value.
    pub fn new(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self)
    }
}

/// `Option<RawJson>` that tells `"data": null` (the JSON value null) from an absent field.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<RawJson>, D::Error> {
    RawJson::deserialize(deserializer).map(Some)
}

/// How `data` and `dataBase64` carry `data` of `content_type`:
/// - JSON content that is one JSON value: `data`, exactly those bytes;
/// - UTF-8 text of any other content type: `data`, a string;
/// - anything else: `dataBase64`.
fn data_fields(content_type: &ContentType, data: &[u8]) -> (Option<RawJson>, Option<String>) {
    let base64 = || (None, Some(BASE64.encode(data)));
    let Ok(text) = std::str::from_utf8(data) else {
        return base64();
    };
    if content_type.is_json() {
        match RawJson::new(text.to_owned()) {
            // Surrounding whitespace would not come back from a JSON field.
            Ok(raw) if raw.get().len() == data.len() => (Some(raw), None),
            _ => base64(),
        }
    } else {
        let quoted = serde_json::to_string(text).expect("a string always serializes");
        (Some(RawJson::new(quoted).expect("a JSON string")), None)
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventJson {
    pub event_id: String,
    pub stream: String,
    /// Place inside the stream, from 0.
    pub version: Version,
    /// Place in the store: ordered, opaque to clients.
    pub position: String,
    pub event_type: String,
    pub schema_version: u32,
    /// The media type of `data`.
    pub content_type: String,
    /// When the store recorded the event: RFC 3339, UTC, milliseconds.
    pub recorded_at: String,
    /// The data as written: a JSON value (JSON content) or a string (UTF-8 text of other content
    /// types); absent when it is neither.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Value>)]
    pub data: Option<RawJson>,
    /// The exact bytes of the data in standard base64, present (instead of `data`) when the data
    /// is neither JSON nor UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Byte)]
    pub data_base64: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

impl From<&RecordedEvent> for EventJson {
    fn from(event: &RecordedEvent) -> Self {
        let (data, data_base64) = data_fields(&event.content_type, &event.data);
        Self {
            event_id: event.id.to_string(),
            stream: event.stream.as_str().to_owned(),
            version: event.version,
            position: event.position.to_string(),
            event_type: event.event_type.as_str().to_owned(),
            schema_version: event.schema_version,
            content_type: event.content_type.as_str().to_owned(),
            recorded_at: event.recorded_at.to_rfc3339_millis(),
            data,
            data_base64,
            metadata: event.metadata.clone(),
        }
    }
}

impl EventJson {
    /// The event back in the store's types (what the HTTP client returns): the data from
    /// `dataBase64` when present, otherwise from `data`. `recordedAt` keeps the milliseconds the
    /// JSON carries.
    pub fn into_recorded(self) -> Result<RecordedEvent, String> {
        let content_type = ContentType::new(self.content_type).map_err(|e| e.to_string())?;
        let data = match (self.data_base64, self.data) {
            (Some(base64), _) => Bytes::from(
                BASE64
                    .decode(&base64)
                    .map_err(|e| format!("dataBase64 is not standard base64: {e}"))?,
            ),
            (None, Some(raw)) if content_type.is_json() => Bytes::from(raw.get().to_owned()),
            (None, Some(raw)) => match serde_json::from_str::<String>(raw.get()) {
                Ok(text) => Bytes::from(text),
                Err(_) => Bytes::from(raw.get().to_owned()),
            },
            (None, None) => return Err("the event has neither data nor dataBase64".to_owned()),
        };
        Ok(RecordedEvent {
            id: self
                .event_id
                .parse()
                .map_err(|_| "bad eventId".to_owned())?,
            stream: StreamName::new(self.stream).map_err(|e| e.to_string())?,
            version: self.version,
            position: self
                .position
                .parse()
                .map_err(|_| "bad position".to_owned())?,
            event_type: EventType::new(self.event_type).map_err(|e| e.to_string())?,
            schema_version: self.schema_version,
            content_type,
            data,
            metadata: self.metadata,
            recorded_at: Timestamp::parse_rfc3339(&self.recorded_at).map_err(|e| e.to_string())?,
        })
    }
}

/// Where an append's events landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppendResponse {
    pub first_version: Version,
    pub last_version: Version,
    pub first_position: PositionJson,
    pub last_position: PositionJson,
}

impl From<AppendResult> for AppendResponse {
    fn from(r: AppendResult) -> Self {
        Self {
            first_version: r.first_version,
            last_version: r.last_version,
            first_position: PositionJson(r.first_position),
            last_position: PositionJson(r.last_position),
        }
    }
}

impl From<AppendResponse> for AppendResult {
    fn from(r: AppendResponse) -> Self {
        Self {
            first_version: r.first_version,
            last_version: r.last_version,
            first_position: r.first_position.0,
            last_position: r.last_position.0,
        }
    }
}

/// A position as a JSON string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(value_type = String, example = "42")]
pub struct PositionJson(pub Position);

impl Serialize for PositionJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PositionJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map(PositionJson)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a position")))
    }
}

/// An expected version in a JSON body: `"any"`, `"no-stream"`, `"exists"`, or a version (a
/// number or a string of digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(value_type = String, example = "no-stream")]
pub struct ExpectedVersionJson(pub ExpectedVersion);

impl Serialize for ExpectedVersionJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExpectedVersionJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(text) => text.parse().map(Self).map_err(serde::de::Error::custom),
            Value::Number(n) => n
                .as_u64()
                .map(|v| Self(ExpectedVersion::Exact(v)))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("expected version {n} is not a version"))
                }),
            other => Err(serde::de::Error::custom(format!(
                "expected version {other} is not one of any, no-stream, exists or a number"
            ))),
        }
    }
}

/// One stream's part of `POST /append`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamAppendJson {
    pub stream: String,
    /// `any` when absent.
    #[serde(default = "any_version")]
    pub expected_version: ExpectedVersionJson,
    pub events: Vec<NewEventJson>,
}

fn any_version() -> ExpectedVersionJson {
    ExpectedVersionJson(ExpectedVersion::Any)
}

/// One stream's result of `POST /append`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamAppendResponse {
    pub stream: String,
    #[serde(flatten)]
    pub result: AppendResponse,
}

/// The result of `POST /append`: one entry per stream, in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiAppendResponse {
    pub results: Vec<StreamAppendResponse>,
}

/// A page of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamEventsResponse {
    pub events: Vec<EventJson>,
    /// Where the next page starts (`from=`); absent when this page reached the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_version: Option<Version>,
}

/// A page of `$all`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllEventsResponse {
    pub events: Vec<EventJson>,
    /// Where the next page starts (`from=`); absent when this page reached the end (forward) or
    /// the start (backward) of what the read can see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_position: Option<PositionJson>,
}

/// What a stream holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamInfoJson {
    pub stream: String,
    pub last_version: Version,
    pub event_count: u64,
    pub first_recorded_at: String,
    pub last_recorded_at: String,
}

impl From<&StreamInfo> for StreamInfoJson {
    fn from(info: &StreamInfo) -> Self {
        Self {
            stream: info.stream.as_str().to_owned(),
            last_version: info.last_version,
            event_count: info.event_count,
            first_recorded_at: info.first_recorded_at.to_rfc3339_millis(),
            last_recorded_at: info.last_recorded_at.to_rfc3339_millis(),
        }
    }
}

impl StreamInfoJson {
    pub fn into_info(self) -> Result<StreamInfo, String> {
        Ok(StreamInfo {
            stream: StreamName::new(self.stream).map_err(|e| e.to_string())?,
            last_version: self.last_version,
            event_count: self.event_count,
            first_recorded_at: Timestamp::parse_rfc3339(&self.first_recorded_at)
                .map_err(|e| e.to_string())?,
            last_recorded_at: Timestamp::parse_rfc3339(&self.last_recorded_at)
                .map_err(|e| e.to_string())?,
        })
    }
}

/// A page of stream names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamsResponse {
    pub streams: Vec<String>,
    /// Pass as `after=` for the next page; absent at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Every category, in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoriesResponse {
    pub categories: Vec<String>,
}

/// `POST /admin/backup`: the backup's name, a directory created in the server's backup
/// directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupRequest {
    /// 1 to 100 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$"
    )]
    pub name: String,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupResponse {
    pub name: String,
    /// Where the server wrote it.
    pub directory: String,
    /// Every event before this position is in the backup.
    pub end_position: PositionJson,
    pub events: u64,
    pub segments: u32,
    pub bytes: u64,
    pub created_at: String,
}

/// `GET /health` and `GET /ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    /// `ok`, or why not.
    pub status: String,
    /// The position after the last stored event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_position: Option<PositionJson>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_event_round_trip() {
        let json: NewEventJson = serde_json::from_value(serde_json::json!({
            "eventId": "0190a5a0-0000-7000-8000-000000000001",
            "eventType": "Deposited",
            "data": {"amount": 5},
            "metadata": {"correlationId": "c-1"},
            "schemaVersion": 2
        }))
        .unwrap();
        let event = json.clone().into_new_event().unwrap();
        assert_eq!(event.schema_version, 2);
        assert_eq!(&event.data[..], br#"{"amount":5}"#);
        assert_eq!(NewEventJson::from_new_event(&event), json);
    }

    #[test]
    fn bad_fields_name_the_field() {
        let bad = |v: Value| {
            serde_json::from_value::<NewEventJson>(v)
                .map_err(|e| e.to_string())
                .and_then(|e| e.into_new_event().map_err(|e| e.field.to_owned()))
                .unwrap_err()
        };
        assert_eq!(
            bad(serde_json::json!({"eventType": "", "data": 1})),
            "eventType"
        );
        assert_eq!(
            bad(serde_json::json!({"eventType": "A", "data": 1, "eventId": "x"})),
            "eventId"
        );
        assert_eq!(
            bad(serde_json::json!({"eventType": "A", "data": 1, "contentType": "text/plain"})),
            "data"
        );
        assert!(bad(serde_json::json!({"data": 1})).contains("eventType"));
        assert!(bad(serde_json::json!({"eventType": "A", "data": 1, "x": 1})).contains("x"));
    }

    fn new_event(content_type: &str, data: &[u8]) -> NewEvent {
        NewEvent::new(
            EventType::new("E").unwrap(),
            ContentType::new(content_type).unwrap(),
            data.to_vec(),
        )
    }

    /// `event` through the JSON text the client sends, and back as the server reads it.
    fn sent(event: &NewEvent) -> (Value, NewEvent) {
        let text = serde_json::to_string(&NewEventJson::from_new_event(event)).unwrap();
        let json: NewEventJson = serde_json::from_str(&text).unwrap();
        let back = json.into_new_event().unwrap();
        (serde_json::from_str(&text).unwrap(), back)
    }

    /// `event` stored, through the JSON text the server sends, and back as the client reads it.
    fn served(event: &NewEvent) -> (Value, RecordedEvent) {
        let recorded = RecordedEvent {
            id: "0190a5a0-0000-7000-8000-000000000001".parse().unwrap(),
            stream: StreamName::new("s-1").unwrap(),
            version: 3,
            position: "42".parse().unwrap(),
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            content_type: event.content_type.clone(),
            data: event.data.clone(),
            metadata: event.metadata.clone(),
            recorded_at: Timestamp::from_unix_micros(1_767_225_600_123_000),
        };
        let text = serde_json::to_string(&EventJson::from(&recorded)).unwrap();
        let json: EventJson = serde_json::from_str(&text).unwrap();
        let back = json.into_recorded().unwrap();
        assert_eq!(back, recorded, "{text}");
        (serde_json::from_str(&text).unwrap(), back)
    }

    #[test]
    fn data_round_trips_byte_for_byte() {
        let binary: Vec<u8> = (0..=255).collect();
        let cases: [(&str, &[u8], &str); 8] = [
            (
                "application/json",
                r#"{"a":[1,2.5,null],"b":"é\n"}"#.as_bytes(),
                "data",
            ),
            ("application/json", b"null", "data"),
            ("text/plain", "héllo\n\u{0}wörld".as_bytes(), "data"),
            ("text/plain", b"", "data"),
            ("application/octet-stream", &binary, "dataBase64"),
            ("text/plain", &binary, "dataBase64"),
            ("application/json", b"", "dataBase64"),
            ("application/json", b"{", "dataBase64"),
        ];
        for (content_type, data, field) in cases {
            let event = new_event(content_type, data);
            let (json, back) = sent(&event);
            assert_eq!(back, event, "{json}");
            let fields: Vec<&str> = ["data", "dataBase64"]
                .into_iter()
                .filter(|f| json.get(f).is_some())
                .collect();
            assert_eq!(fields, [field], "sent {json}");
            let (json, _) = served(&event);
            let fields: Vec<&str> = ["data", "dataBase64"]
                .into_iter()
                .filter(|f| json.get(f).is_some())
                .collect();
            assert_eq!(fields, [field], "served {json}");
        }
        let (json, _) = served(&new_event("application/octet-stream", &binary));
        assert_eq!(
            json["dataBase64"].as_str().unwrap(),
            BASE64.encode(&binary),
            "standard base64 with padding"
        );
        assert_eq!(
            served(&new_event("text/plain", "té".as_bytes())).0["data"],
            "té"
        );
    }

    /// JSON that compact writing would change (whitespace, key order, number spelling) goes as
    /// `dataBase64` to the server, and comes back as both: the value for readers and the bytes.
    #[test]
    fn json_travels_as_data_exactly_as_written() {
        for data in [
            &br#"{"a": 1}"#[..],
            br#"{"b":1,"a":2}"#,
            br#"{"a":{"d":1,"c":2}}"#,
            br#"[1.0e2, 123456789012345678901234567890]"#,
            br#"["\u00e9"]"#,
        ] {
            let event = new_event("application/json", data);
            let (json, back) = sent(&event);
            assert_eq!(back, event, "{json}");
            assert!(json.get("dataBase64").is_none(), "{json}");
            let text = serde_json::to_string(&NewEventJson::from_new_event(&event)).unwrap();
            assert!(text.contains(std::str::from_utf8(data).unwrap()), "{text}");
            let (json, recorded) = served(&event);
            assert!(json.get("dataBase64").is_none(), "{json}");
            assert_eq!(recorded.data, event.data);
        }
        // What a JSON field cannot carry byte for byte goes as base64.
        for data in [&b" 7"[..], b"", b"{", &[0xff, 0x00]] {
            let event = new_event("application/json", data);
            let (json, back) = sent(&event);
            assert_eq!(back, event, "{json}");
            assert_eq!(json["dataBase64"].as_str().unwrap(), BASE64.encode(data));
            let (json, recorded) = served(&event);
            assert!(json.get("data").is_none(), "{json}");
            assert_eq!(recorded.data, event.data);
        }
    }

    #[test]
    fn data_or_data_base64_exactly_one() {
        let into = |v: Value| {
            serde_json::from_value::<NewEventJson>(v)
                .unwrap()
                .into_new_event()
        };
        let field = |v: Value| into(v).unwrap_err().field;
        assert_eq!(field(serde_json::json!({"eventType": "A"})), "data");
        assert_eq!(
            field(serde_json::json!({"eventType": "A", "data": 1, "dataBase64": "AA=="})),
            "data"
        );
        assert_eq!(
            field(serde_json::json!({"eventType": "A", "dataBase64": "not base64!"})),
            "dataBase64"
        );
        // Base64 without its padding is not standard base64.
        assert_eq!(
            field(serde_json::json!({"eventType": "A", "dataBase64": "AA"})),
            "dataBase64"
        );
        // `null` is a JSON value like any other, not an absent `data`.
        let event = into(serde_json::json!({"eventType": "A", "data": null})).unwrap();
        assert_eq!(&event.data[..], b"null");
        // `dataBase64` is the bytes whatever the content type says.
        let event = into(serde_json::json!({"eventType": "A", "dataBase64": "/wA="})).unwrap();
        assert!(event.content_type.is_json());
        assert_eq!(&event.data[..], b"\xff\x00");
        let event = into(serde_json::json!(
            {"eventType": "A", "dataBase64": "", "contentType": "text/plain"}
        ))
        .unwrap();
        assert!(event.data.is_empty());
    }

    #[test]
    fn data_is_an_optional_json_value_in_the_schema() {
        use utoipa::PartialSchema;
        for schema in [NewEventJson::schema(), EventJson::schema()] {
            let schema = serde_json::to_value(schema).unwrap();
            let required = schema["required"].as_array().unwrap();
            assert!(!required.contains(&"data".into()), "{schema}");
            assert!(!required.contains(&"dataBase64".into()), "{schema}");
            let data = schema["properties"]["data"].as_object().unwrap();
            assert!(
                !data.contains_key("type") && !data.contains_key("$ref"),
                "any JSON value: {schema}"
            );
            assert_eq!(schema["properties"]["dataBase64"]["format"], "byte");
        }
    }

    #[test]
    fn expected_version_accepts_words_and_numbers() {
        let parse = |v: Value| serde_json::from_value::<ExpectedVersionJson>(v).map(|e| e.0);
        assert_eq!(parse("any".into()).unwrap(), ExpectedVersion::Any);
        assert_eq!(parse(3.into()).unwrap(), ExpectedVersion::Exact(3));
        assert_eq!(parse("3".into()).unwrap(), ExpectedVersion::Exact(3));
        assert!(parse((-1).into()).is_err());
        assert!(parse(Value::Null).is_err());
    }
}
