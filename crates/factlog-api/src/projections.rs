//! The JSON shapes of the projection routes (`/projections/...`): a projection's status, reset
//! requests and plans, rebuilds and dead letters.
//!
//! They carry what `factlog-projection` reports (its `Status`, `ResetPlan` and `DeadLetter`
//! serialize to exactly these shapes); the server converts, the HTTP client parses. Positions are
//! strings and times RFC 3339 UTC with milliseconds, as everywhere in the API.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::PositionJson;

/// `GET /projections`: every projection the server runs, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionsResponse {
    pub projections: Vec<ProjectionStatusJson>,
}

/// What a projection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionState {
    /// Registering with its sink (or waiting for the sink to answer).
    Starting,
    Running,
    Paused,
    /// Running, with a new generation of the read model being built beside the live one.
    Rebuilding,
    /// Stopped by an error (see `lastError`) until it is resumed or reset.
    Stopped,
}

impl ProjectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Rebuilding => "rebuilding",
            Self::Stopped => "stopped",
        }
    }
}

/// What a projection does with an event whose attempts have run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnErrorJson {
    /// Park it as a dead letter and go on.
    Park,
    /// Stop the projection at the event.
    Stop,
}

/// The events a projection wants: any of `eventTypes` (all when empty) in any of `categories`
/// (all when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterestJson {
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

/// A projection's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatusJson {
    pub name: String,
    /// `sqlite`, `postgres` or `redis`.
    pub sink: String,
    pub state: ProjectionState,
    pub interest: InterestJson,
    pub on_error: OnErrorJson,
    /// The live generation of the read model.
    pub generation: u64,
    /// The last position the projection has processed.
    pub position: PositionJson,
    /// The position committed in the sink with the read model.
    pub committed_position: PositionJson,
    /// The position of the last event of the log when the lag was last measured.
    pub last_position: PositionJson,
    /// Events in the log after `position`.
    pub lag_events: u64,
    /// How long ago the oldest event not yet processed was recorded; 0 when caught up.
    pub lag_seconds: f64,
    /// Events processed per second, over the last ten seconds or so.
    pub events_per_second: f64,
    /// Events read from the log since the projection started, wanted or not.
    pub events_total: u64,
    /// Events handed to the projection and committed since it started.
    pub applied_total: u64,
    /// Dead letters waiting to be retried or skipped.
    pub dead_letters_parked: u64,
    /// The last error, until the projection recovers from it.
    pub last_error: Option<LastErrorJson>,
    /// A rebuild under way.
    pub rebuild: Option<RebuildStatusJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastErrorJson {
    pub message: String,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
}

/// A rebuild under way: the generation being built and how far it has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildStatusJson {
    pub generation: u64,
    pub position: PositionJson,
    pub lag_events: u64,
}

/// Where a reset moves a projection's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResetTo {
    /// Before the first event: every event is applied again. No `value`.
    Earliest,
    /// The end of the log: the events not yet processed are never applied. No `value`.
    Latest,
    /// Right after the event at `value` (a position, as a string, or 0 for the start).
    Position,
    /// Before the first event recorded at or after `value` (RFC 3339).
    Datetime,
    /// `value` events later (skipping them) or, negative, back (applying them again).
    ShiftBy,
}

impl ResetTo {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
            Self::Position => "position",
            Self::Datetime => "datetime",
            Self::ShiftBy => "shift-by",
        }
    }
}

/// `POST /projections/{name}/reset`: a target and whether to carry the reset out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetRequest {
    pub to: ResetTo,
    /// The target's value: a position (`position`, a string such as `"42"`), an RFC 3339 time
    /// (`datetime`), a number of events (`shift-by`); absent for `earliest` and `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub value: Option<Value>,
    /// Carry the reset out; false (the default) only plans it: a dry run that changes nothing.
    #[serde(default)]
    pub execute: bool,
}

/// A reset target as a plan shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetTargetJson {
    pub to: ResetTo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub value: Option<Value>,
}

/// What a reset would do (`executed` false: a dry run) or did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetPlanJson {
    pub projection: String,
    /// The live generation the reset applies to.
    pub generation: u64,
    pub target: ResetTargetJson,
    pub current_position: PositionJson,
    pub new_position: PositionJson,
    /// Events after the new position that had already been processed: applied again.
    pub events_to_reapply: u64,
    /// Events after the current position up to the new one: never applied.
    pub events_to_skip: u64,
    /// Events the projection has to process after the reset.
    pub lag_events: u64,
    /// False for a dry run.
    pub executed: bool,
}

/// `POST /projections/{name}/rebuild`: the generation being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildResponse {
    pub generation: u64,
}

/// What became of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStatusJson {
    /// Waiting to be retried or skipped.
    Parked,
    Retried,
    Skipped,
}

impl DeadLetterStatusJson {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parked => "parked",
            Self::Retried => "retried",
            Self::Skipped => "skipped",
        }
    }
}

/// An event a projection parked after its attempts ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterJson {
    /// Unique within the projection.
    pub id: u64,
    pub generation: u64,
    pub position: PositionJson,
    pub event_id: String,
    pub stream: String,
    pub version: u64,
    pub event_type: String,
    /// The event's data as the log holds it, when it is UTF-8 text.
    pub data: Option<String>,
    pub error: String,
    pub attempts: u32,
    pub first_failed_at: String,
    pub last_failed_at: String,
    pub status: DeadLetterStatusJson,
}

/// `GET /projections/{name}/dead-letters`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLettersResponse {
    pub dead_letters: Vec<DeadLetterJson>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_requests_default_to_a_dry_run() {
        let request: ResetRequest = serde_json::from_str(r#"{"to": "earliest"}"#).unwrap();
        assert_eq!(request.to, ResetTo::Earliest);
        assert!(!request.execute);
        let request: ResetRequest =
            serde_json::from_str(r#"{"to": "shift-by", "value": -3, "execute": true}"#).unwrap();
        assert_eq!(request.to, ResetTo::ShiftBy);
        assert_eq!(request.value, Some(Value::from(-3)));
        assert!(request.execute);
        assert!(serde_json::from_str::<ResetRequest>(r#"{"to": "sideways"}"#).is_err());
        assert!(serde_json::from_str::<ResetRequest>(r#"{"to": "latest", "x": 1}"#).is_err());
    }
}
