//! Errors as RFC 9457 problem details: a stable `type` per case, a `title` per type, a `detail`
//! about this occurrence, and the fields of the case (such as `currentVersion`).
//!
//! The types are listed, with their fields, in `docs/http-api.md#problems`; a client tells cases
//! apart by `type`, never by `detail`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Where the problem types are documented; each type is this plus `#` and its slug.
pub const PROBLEM_BASE: &str = "https://github.com/factlog/factlog/blob/main/docs/http-api.md#";

macro_rules! problem_kinds {
    ($($kind:ident = ($slug:literal, $status:literal, $title:literal),)*) => {
        /// Every kind of problem the server reports.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemKind { $($kind,)* }

        impl ProblemKind {
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$kind,)*];

            /// The last part of the `type` URI, such as `wrong-expected-version`.
            pub fn slug(self) -> &'static str {
                match self { $(ProblemKind::$kind => $slug,)* }
            }

            /// The HTTP status this kind is answered with.
            pub fn status(self) -> u16 {
                match self { $(ProblemKind::$kind => $status,)* }
            }

            /// The same for every occurrence of the kind.
            pub fn title(self) -> &'static str {
                match self { $(ProblemKind::$kind => $title,)* }
            }
        }
    };
}

problem_kinds! {
    MalformedBody = ("malformed-body", 400, "The request body is not valid JSON of the expected shape"),
    InvalidEvent = ("invalid-event", 422, "An event in the request is invalid"),
    InvalidStreamName = ("invalid-stream-name", 400, "The stream name is invalid"),
    InvalidExpectedVersion = ("invalid-expected-version", 400, "The expected version is invalid"),
    InvalidParameter = ("invalid-parameter", 400, "A query parameter is invalid"),
    InvalidHeader = ("invalid-header", 400, "A request header is invalid"),
    UnsupportedMediaType = ("unsupported-media-type", 415, "The request body must be application/json"),
    EmptyAppend = ("empty-append", 422, "An append needs at least one event"),
    DuplicateEventId = ("duplicate-event-id", 422, "An event id appears twice in one append"),
    DuplicateStream = ("duplicate-stream", 422, "A stream appears twice in one multi-stream append"),
    BodyTooLarge = ("body-too-large", 413, "The request body is over the size limit"),
    LimitExceeded = ("limit-exceeded", 413, "The append is over a limit of the store"),
    WrongExpectedVersion = ("wrong-expected-version", 409, "The stream is not at the expected version"),
    IdempotencyConflict = ("idempotency-conflict", 409, "The event id is already stored with other content"),
    StreamNotFound = ("stream-not-found", 404, "The stream does not exist"),
    EventNotFound = ("event-not-found", 404, "The event does not exist"),
    NotFound = ("not-found", 404, "There is nothing at this path"),
    MethodNotAllowed = ("method-not-allowed", 405, "The path does not take this method"),
    Unauthorized = ("unauthorized", 401, "A valid bearer token is required"),
    Forbidden = ("forbidden", 403, "The token's role does not allow this"),
    InvalidPosition = ("invalid-position", 400, "The position is not the position of an event"),
    DiskFull = ("disk-full", 507, "The disk is full; nothing was written"),
    Unavailable = ("unavailable", 503, "The store is not accepting this request now"),
    Timeout = ("timeout", 408, "The request took longer than the server's request timeout"),
    Corrupt = ("corrupt", 500, "The store found a corrupt record"),
    NotConfigured = ("not-configured", 409, "This server is not configured for this"),
    BackupExists = ("backup-exists", 409, "A backup of this name exists"),
    BackupFailed = ("backup-failed", 500, "The backup could not be written"),
    Internal = ("internal", 500, "The server failed to handle the request"),
    ProjectionNotFound = ("projection-not-found", 404, "The projection does not exist"),
    ProjectionConflict = ("projection-conflict", 409, "The projection cannot do this in its current state"),
    ProjectionUnavailable = ("projection-unavailable", 503, "The projection cannot answer now"),
    ProjectionFailed = ("projection-failed", 500, "The projection's sink failed"),
    InvalidReset = ("invalid-reset", 422, "The reset target cannot be planned"),
    DeadLetterNotFound = ("dead-letter-not-found", 404, "The dead letter does not exist"),
    RetryFailed = ("retry-failed", 422, "The dead letter's event failed again"),
}

impl ProblemKind {
    /// The full `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }

    /// The kind whose `type` URI is `uri`.
    pub fn from_type_uri(uri: &str) -> Option<Self> {
        let slug = uri.strip_prefix(PROBLEM_BASE)?;
        Self::ALL.iter().copied().find(|k| k.slug() == slug)
    }
}

/// A problem details body (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; stable.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A summary of the kind; the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, and what to do about it.
    pub detail: String,
    /// The fields of the case, such as `stream` and `currentVersion` of a conflict.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: detail.into(),
            fields: Map::new(),
        }
    }

    /// Adds a field of the case.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// The kind, when the type is one of Factlog's.
    pub fn kind(&self) -> Option<ProblemKind> {
        ProblemKind::from_type_uri(&self.type_uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_round_trip() {
        let mut slugs = std::collections::HashSet::new();
        for kind in ProblemKind::ALL {
            assert!(slugs.insert(kind.slug()), "{kind:?}");
            assert_eq!(ProblemKind::from_type_uri(&kind.type_uri()), Some(*kind));
            assert!((400..600).contains(&kind.status()));
        }
    }

    #[test]
    fn fields_are_flattened() {
        let p = Problem::new(ProblemKind::WrongExpectedVersion, "no")
            .with("currentVersion", Value::Null);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["status"], 409);
        assert!(json.as_object().unwrap().contains_key("currentVersion"));
        let back: Problem = serde_json::from_value(json).unwrap();
        assert_eq!(back.kind(), Some(ProblemKind::WrongExpectedVersion));
    }
}
