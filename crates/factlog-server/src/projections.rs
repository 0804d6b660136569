//! The projection routes (`/projections/...`): list the projections the server runs, read one's
//! status, pause and resume it, reset its checkpoint (a dry-run plan unless executed), rebuild
//! it, and retry or skip its dead letters.
//!
//! Each handler checks its input (the body, the dead letter's id) before it asks the projection
//! anything; the projection's runner carries control requests out between two batches, and every
//! refusal ([`ControlError`]) is a problem of its own kind, so that a client's mistake is never a
//! `500`.

use std::future::Future;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use factlog_api::{
    DeadLetterJson, DeadLetterStatusJson, DeadLettersResponse, InterestJson, LastErrorJson,
    OnErrorJson, PositionJson, ProblemKind, ProjectionState, ProjectionStatusJson,
    ProjectionsResponse, RebuildResponse, RebuildStatusJson, ResetPlanJson, ResetRequest,
    ResetTargetJson, ResetTo,
};
use factlog_projection::{
    ControlError, DeadLetter, DeadLetterStatus, OnError, ProjectionHandle, ResetError, ResetPlan,
    ResetTarget, SinkError, State as RunState, Status,
};
use factlog_store::{Position, Timestamp};
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::{ProjectionControlErrors, ProjectionReadErrors};
use crate::routes::{JsonBody, PathParams};

// ---------------------------------------------------------------------------------------------
// Routes

/// Every projection the server runs, by name.
#[utoipa::path(
    get,
    path = "/projections",
    tag = "projections",
    responses(
        (status = 200, description = "Their statuses, by name; empty when the server runs none", body = ProjectionsResponse),
        ProjectionReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn list(State(state): State<AppState>) -> Json<ProjectionsResponse> {
    let statuses = state
        .projections
        .as_ref()
        .map(|p| p.statuses())
        .unwrap_or_default();
    Json(ProjectionsResponse {
        projections: statuses.into_iter().map(status_json).collect(),
    })
}

/// One projection's status: where it is, how far behind, how fast, and what went wrong last.
#[utoipa::path(
    get,
    path = "/projections/{name}",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name", example = "order_summary")),
    responses(
        (status = 200, description = "The status as of now", body = ProjectionStatusJson),
        ProjectionReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<ProjectionStatusJson>, ApiError> {
    let handle = find(&state, &name)?;
    Ok(Json(status_json(handle.status())))
}

/// Stops applying events until resumed (kept across restarts). Appends go on; the projection
/// catches up when resumed.
#[utoipa::path(
    post,
    path = "/projections/{name}/pause",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name", example = "order_summary")),
    responses(
        (status = 200, description = "Paused: the status after the change", body = ProjectionStatusJson),
        ProjectionControlErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn pause(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<ProjectionStatusJson>, ApiError> {
    let handle = find(&state, &name)?;
    ask(&state, &name, handle.pause()).await?;
    // The runner publishes its status before it answers, so this shows the pause.
    Ok(Json(status_json(handle.status())))
}

/// Applies events again after a pause, or after a stop by an error (retrying the event).
#[utoipa::path(
    post,
    path = "/projections/{name}/resume",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name", example = "order_summary")),
    responses(
        (status = 200, description = "Resumed: the status after the change", body = ProjectionStatusJson),
        ProjectionControlErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn resume(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<ProjectionStatusJson>, ApiError> {
    let handle = find(&state, &name)?;
    ask(&state, &name, handle.resume()).await?;
    Ok(Json(status_json(handle.status())))
}

/// Plans a reset of the projection's checkpoint, like `kafka-consumer-groups --reset-offsets`,
/// and carries it out with `execute: true`. Without `execute` it is a dry run: nothing changes.
/// A reset moves the checkpoint only (events applied again are applied on top of the read
/// model); it is refused while a rebuild is under way.
#[utoipa::path(
    post,
    path = "/projections/{name}/reset",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name", example = "order_summary")),
    request_body(content = ResetRequest),
    responses(
        (status = 200, description = "The plan; `executed` says whether it was carried out", body = ResetPlanJson),
        ProjectionControlErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn reset(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
    JsonBody(request): JsonBody<ResetRequest>,
) -> Result<Json<ResetPlanJson>, ApiError> {
    let target = reset_target(&request).map_err(|e| e.with("projection", name.as_str()))?;
    let handle = find(&state, &name)?;
    let plan = ask(&state, &name, handle.reset(target, request.execute)).await?;
    Ok(Json(plan_json(plan)))
}

/// Starts a zero-downtime rebuild: a new generation of the read model is built from the start
/// of the log beside the live one, and replaces it once it has caught up. Follow it in the
/// status (`state: rebuilding`, `rebuild`, then `generation`).
#[utoipa::path(
    post,
    path = "/projections/{name}/rebuild",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name", example = "order_summary")),
    responses(
        (status = 202, description = "The rebuild has started: the generation being built", body = RebuildResponse,
            headers(("Location" = String, description = "The projection's status"))),
        ProjectionControlErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn rebuild(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    let handle = find(&state, &name)?;
    let generation = ask(&state, &name, handle.rebuild()).await?;
    let mut response = (StatusCode::ACCEPTED, Json(RebuildResponse { generation })).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/projections/{name}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Every dead letter of the projection, oldest first: parked, retried and skipped.
#[utoipa::path(
    get,
    path = "/projections/{name}/dead-letters",
    tag = "projections",
    params(("name" = String, Path, description = "The projection's name", example = "order_summary")),
    responses(
        (status = 200, description = "The dead letters", body = DeadLettersResponse),
        ProjectionReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<DeadLettersResponse>, ApiError> {
    let handle = find(&state, &name)?;
    let dead_letters = ask(&state, &name, handle.dead_letters()).await?;
    Ok(Json(DeadLettersResponse {
        dead_letters: dead_letters.into_iter().map(dead_letter_json).collect(),
    }))
}

/// Applies a parked event again (read from the log) to the live read model; the dead letter is
/// marked retried in the same unit of work. If it fails again, it stays parked with one more
/// attempt, and the answer is `retry-failed`.
#[utoipa::path(
    post,
    path = "/projections/{name}/dead-letters/{id}/retry",
    tag = "projections",
    params(
        ("name" = String, Path, description = "The projection's name", example = "order_summary"),
        ("id" = u64, Path, description = "The dead letter's id (at most 2^63 - 1)"),
    ),
    responses(
        (status = 200, description = "Retried: the dead letter after the change", body = DeadLetterJson),
        (status = 204, description = "Retried, and the dead letter is already gone (a rebuild replaced its generation)"),
        ProjectionControlErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn retry_dead_letter(
    State(state): State<AppState>,
    PathParams((name, id)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let id = dead_letter_id(&id)?;
    let handle = find(&state, &name)?;
    ask(&state, &name, handle.retry_dead_letter(id)).await?;
    dead_letter_after(&state, &name, &handle, id).await
}

/// Marks a parked event skipped: it is never applied.
#[utoipa::path(
    post,
    path = "/projections/{name}/dead-letters/{id}/skip",
    tag = "projections",
    params(
        ("name" = String, Path, description = "The projection's name", example = "order_summary"),
        ("id" = u64, Path, description = "The dead letter's id (at most 2^63 - 1)"),
    ),
    responses(
        (status = 200, description = "Skipped: the dead letter after the change", body = DeadLetterJson),
        (status = 204, description = "Skipped, and the dead letter is already gone (a rebuild replaced its generation)"),
        ProjectionControlErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn skip_dead_letter(
    State(state): State<AppState>,
    PathParams((name, id)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let id = dead_letter_id(&id)?;
    let handle = find(&state, &name)?;
    ask(&state, &name, handle.skip_dead_letter(id)).await?;
    dead_letter_after(&state, &name, &handle, id).await
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The running projection `name`.
fn find(state: &AppState, name: &str) -> Result<ProjectionHandle, ApiError> {
    let Some(projections) = &state.projections else {
        return Err(ApiError::new(
            ProblemKind::ProjectionNotFound,
            format!("no projection named {name:?}: this server runs no projections"),
        )
        .with("projection", name));
    };
    projections.get(name).ok_or_else(|| {
        ApiError::new(
            ProblemKind::ProjectionNotFound,
            format!("no projection named {name:?}; GET /projections lists them"),
        )
        .with("projection", name)
    })
}

/// Waits for a control request, within the request timeout (less a margin, so that the answer
/// says which projection did not answer rather than being a bare `timeout`).
async fn ask<T>(
    state: &AppState,
    name: &str,
    request: impl Future<Output = Result<T, ControlError>>,
) -> Result<T, ApiError> {
    let limit = state.config.request_timeout.mul_f64(0.9);
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(|e| control_error(name, e)),
        Err(_) => Err(control_error(name, ControlError::Busy(limit))),
    }
}

/// The most a dead letter's id can be: the sinks keep ids as SQL integers.
const DEAD_LETTER_ID_MAX: u64 = i64::MAX as u64;

fn dead_letter_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .ok()
        .filter(|id| *id <= DEAD_LETTER_ID_MAX)
        .ok_or_else(|| {
            ApiError::new(
                ProblemKind::InvalidParameter,
                format!(
                    "{raw:?} is not a dead letter id (a number from 0 to {DEAD_LETTER_ID_MAX})"
                ),
            )
            .with("parameter", "id")
        })
}

/// The answer to a retry or a skip: the dead letter as it is now.
async fn dead_letter_after(
    state: &AppState,
    name: &str,
    handle: &ProjectionHandle,
    id: u64,
) -> Result<Response, ApiError> {
    let dead_letters = ask(state, name, handle.dead_letters()).await?;
    Ok(match dead_letters.into_iter().find(|d| d.id == id) {
        Some(dead_letter) => Json(dead_letter_json(dead_letter)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

fn invalid_reset(to: ResetTo, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ProblemKind::InvalidReset,
        format!("reset to {}: {detail}", to.as_str()),
    )
    .with("reason", "invalid-value")
    .with("field", "value")
}

/// The reset target of a request, its value checked against its kind.
fn reset_target(request: &ResetRequest) -> Result<ResetTarget, ApiError> {
    let to = request.to;
    let value = request.value.as_ref().filter(|v| !v.is_null());
    let need = |what: &str| invalid_reset(to, format!("give the {what} as value"));
    Ok(match to {
        ResetTo::Earliest | ResetTo::Latest => {
            if let Some(value) = value {
                return Err(invalid_reset(to, format!("takes no value, not {value}")));
            }
            if to == ResetTo::Earliest {
                ResetTarget::Earliest
            } else {
                ResetTarget::Latest
            }
        }
        ResetTo::Position => {
            let position = match value.ok_or_else(|| need("position (a string such as \"42\")"))? {
                Value::String(text) => text.parse::<Position>().ok(),
                Value::Number(n) => n.as_u64().map(Position::from_raw),
                _ => None,
            };
            ResetTarget::Position(position.ok_or_else(|| {
                invalid_reset(
                    to,
                    "the value is not a position (such as \"42\", or 0 for the start)",
                )
            })?)
        }
        ResetTo::Datetime => match value.ok_or_else(|| need("time (RFC 3339)"))? {
            Value::String(text) => {
                ResetTarget::Datetime(Timestamp::parse_rfc3339(text).map_err(|e| {
                    invalid_reset(to, format!("the value is not an RFC 3339 time: {e}"))
                })?)
            }
            other => {
                return Err(invalid_reset(
                    to,
                    format!("the value {other} is not an RFC 3339 time"),
                ));
            }
        },
        ResetTo::ShiftBy => {
            let n = match value.ok_or_else(|| need("number of events (negative: back)"))? {
                Value::Number(n) => n.as_i64(),
                Value::String(text) => text.trim().parse().ok(),
                _ => None,
            };
            ResetTarget::ShiftBy(
                n.ok_or_else(|| invalid_reset(to, "the value is not a whole number of events"))?,
            )
        }
    })
}

/// The problem a refused control request answers with.
fn control_error(name: &str, error: ControlError) -> ApiError {
    use ProblemKind::{
        DeadLetterNotFound, InvalidReset, ProjectionConflict, ProjectionFailed,
        ProjectionUnavailable, RetryFailed,
    };
    let detail = format!("projection {name}: {error}");
    let problem = match error {
        ControlError::NotRunning => {
            ApiError::new(ProjectionUnavailable, detail).with("reason", "not-running")
        }
        ControlError::Starting => {
            ApiError::new(ProjectionUnavailable, detail).with("reason", "starting")
        }
        ControlError::Busy(_) => {
            ApiError::new(ProjectionUnavailable, detail).with("reason", "busy")
        }
        ControlError::Sink(SinkError::Unavailable(_)) => {
            ApiError::new(ProjectionUnavailable, detail).with("reason", "sink-unavailable")
        }
        ControlError::Rebuilding => {
            ApiError::new(ProjectionConflict, detail).with("reason", "rebuilding")
        }
        ControlError::AlreadyRebuilding(generation) => ApiError::new(ProjectionConflict, detail)
            .with("reason", "already-rebuilding")
            .with("generation", generation),
        ControlError::DeadLetterNotParked { id, status }
        | ControlError::Sink(SinkError::DeadLetterNotParked { id, status }) => {
            ApiError::new(ProjectionConflict, detail)
                .with("reason", "not-parked")
                .with("id", id)
                .with("deadLetterStatus", status)
        }
        ControlError::NotLiveGeneration { id, generation } => {
            ApiError::new(ProjectionConflict, detail)
                .with("reason", "not-live-generation")
                .with("id", id)
                .with("generation", generation)
        }
        ControlError::EventGone(event_id) => ApiError::new(ProjectionConflict, detail)
            .with("reason", "event-gone")
            .with("eventId", event_id.to_string()),
        ControlError::Fenced(_) => {
            ApiError::new(ProjectionConflict, detail).with("reason", "fenced")
        }
        ControlError::DeadLetterNotFound(id)
        | ControlError::Sink(SinkError::DeadLetterNotFound(id)) => {
            ApiError::new(DeadLetterNotFound, detail).with("id", id)
        }
        ControlError::RetryFailed { id, message } => ApiError::new(RetryFailed, detail)
            .with("id", id)
            .with("error", message),
        ControlError::Reset(ResetError::PastEnd { position, end }) => {
            ApiError::new(InvalidReset, detail)
                .with("reason", "past-end")
                .with("position", position.to_string())
                .with("end", end.to_string())
        }
        ControlError::Reset(ResetError::NoSuchPosition(position)) => {
            ApiError::new(InvalidReset, detail)
                .with("reason", "no-such-position")
                .with("position", position.to_string())
        }
        // The store's own errors keep their problems (a closed store is `unavailable`).
        ControlError::Reset(ResetError::Read(e)) | ControlError::Read(e) => ApiError::from(e),
        ControlError::Sink(SinkError::Invalid(_)) => ApiError::new(ProjectionFailed, detail),
        _ => ApiError::new(ProjectionFailed, detail),
    };
    problem.with("projection", name)
}

// ---------------------------------------------------------------------------------------------
// The projection runtime's types as the API's JSON

fn status_json(status: Status) -> ProjectionStatusJson {
    ProjectionStatusJson {
        name: status.name.as_str().to_owned(),
        sink: status.sink.to_owned(),
        state: match status.state {
            RunState::Starting => ProjectionState::Starting,
            RunState::Running => ProjectionState::Running,
            RunState::Paused => ProjectionState::Paused,
            RunState::Rebuilding => ProjectionState::Rebuilding,
            RunState::Stopped => ProjectionState::Stopped,
        },
        interest: InterestJson {
            event_types: status.interest.event_types,
            categories: status.interest.categories,
        },
        on_error: match status.on_error {
            OnError::Park => OnErrorJson::Park,
            OnError::Stop => OnErrorJson::Stop,
        },
        generation: status.generation,
        position: PositionJson(status.position),
        committed_position: PositionJson(status.committed_position),
        last_position: PositionJson(status.last_position),
        lag_events: status.lag_events,
        lag_seconds: status.lag_seconds,
        events_per_second: status.events_per_second,
        events_total: status.events_total,
        applied_total: status.applied_total,
        dead_letters_parked: status.dead_letters_parked,
        last_error: status.last_error.map(|e| LastErrorJson {
            message: e.message,
            at: e.at.to_rfc3339_millis(),
        }),
        rebuild: status.rebuild.map(|r| RebuildStatusJson {
            generation: r.generation,
            position: PositionJson(r.position),
            lag_events: r.lag_events,
        }),
    }
}

fn target_json(target: ResetTarget) -> ResetTargetJson {
    let (to, value) = match target {
        ResetTarget::Earliest => (ResetTo::Earliest, None),
        ResetTarget::Latest => (ResetTo::Latest, None),
        ResetTarget::Position(p) => (ResetTo::Position, Some(Value::from(p.to_string()))),
        ResetTarget::Datetime(t) => (ResetTo::Datetime, Some(Value::from(t.to_rfc3339_millis()))),
        ResetTarget::ShiftBy(n) => (ResetTo::ShiftBy, Some(Value::from(n))),
    };
    ResetTargetJson { to, value }
}

fn plan_json(plan: ResetPlan) -> ResetPlanJson {
    ResetPlanJson {
        projection: plan.projection.as_str().to_owned(),
        generation: plan.generation,
        target: target_json(plan.target),
        current_position: PositionJson(plan.current_position),
        new_position: PositionJson(plan.new_position),
        events_to_reapply: plan.events_to_reapply,
        events_to_skip: plan.events_to_skip,
        lag_events: plan.lag_events,
        executed: plan.executed,
    }
}

fn dead_letter_json(d: DeadLetter) -> DeadLetterJson {
    DeadLetterJson {
        id: d.id,
        generation: d.generation,
        position: PositionJson(d.position),
        event_id: d.event_id.to_string(),
        stream: d.stream,
        version: d.version,
        event_type: d.event_type,
        data: d.data,
        error: d.error,
        attempts: d.attempts,
        first_failed_at: d.first_failed_at.to_rfc3339_millis(),
        last_failed_at: d.last_failed_at.to_rfc3339_millis(),
        status: match d.status {
            DeadLetterStatus::Parked => DeadLetterStatusJson::Parked,
            DeadLetterStatus::Retried => DeadLetterStatusJson::Retried,
            DeadLetterStatus::Skipped => DeadLetterStatusJson::Skipped,
        },
    }
}

#[cfg(test)]
mod tests {
    use factlog_projection::{
        Interest, LastError, ProjectionName, RebuildStatus, ResetTarget, State as RunState,
    };

    use super::*;

    /// The API's shapes are exactly what the runtime's own types serialize to, so that a client
    /// reading either agrees.
    #[test]
    fn the_json_is_what_the_runtime_serializes() {
        let name = ProjectionName::new("summary").unwrap();
        let at = Timestamp::from_unix_micros(1_767_225_600_123_000);
        let status = Status {
            name: name.clone(),
            sink: "sqlite",
            state: RunState::Rebuilding,
            interest: Interest::categories(["order"]).with_event_types(["Placed"]),
            on_error: OnError::Stop,
            generation: 2,
            position: Position::from_raw(7),
            committed_position: Position::from_raw(6),
            last_position: Position::from_raw(9),
            lag_events: 2,
            lag_seconds: 0.5,
            events_per_second: 12.5,
            events_total: 9,
            applied_total: 4,
            dead_letters_parked: 1,
            last_error: Some(LastError {
                message: "boom".into(),
                at,
            }),
            rebuild: Some(RebuildStatus {
                generation: 3,
                position: Position::from_raw(1),
                lag_events: 8,
            }),
        };
        assert_eq!(
            serde_json::to_value(status_json(status.clone())).unwrap(),
            serde_json::to_value(&status).unwrap()
        );
        let quiet = Status {
            last_error: None,
            rebuild: None,
            state: RunState::Running,
            ..status
        };
        assert_eq!(
            serde_json::to_value(status_json(quiet.clone())).unwrap(),
            serde_json::to_value(&quiet).unwrap()
        );

        for target in [
            ResetTarget::Earliest,
            ResetTarget::Latest,
            ResetTarget::Position(Position::from_raw(4)),
            ResetTarget::Datetime(at),
            ResetTarget::ShiftBy(-3),
        ] {
            let plan = ResetPlan {
                projection: name.clone(),
                generation: 1,
                target,
                current_position: Position::from_raw(9),
                new_position: Position::from_raw(4),
                events_to_reapply: 5,
                events_to_skip: 0,
                lag_events: 5,
                executed: true,
            };
            assert_eq!(
                serde_json::to_value(plan_json(plan.clone())).unwrap(),
                serde_json::to_value(&plan).unwrap()
            );
            // What a plan shows as its target is a request for the same target.
            let shown = target_json(target);
            let request = ResetRequest {
                to: shown.to,
                value: shown.value,
                execute: false,
            };
            assert_eq!(reset_target(&request).unwrap(), target);
        }

        let dead_letter = DeadLetter {
            id: 5,
            generation: 1,
            position: Position::from_raw(3),
            event_id: "0190a5a0-0000-7000-8000-000000000001".parse().unwrap(),
            stream: "order-1".into(),
            version: 0,
            event_type: "Placed".into(),
            data: Some("{}".into()),
            error: "bad".into(),
            attempts: 5,
            first_failed_at: at,
            last_failed_at: at,
            status: DeadLetterStatus::Parked,
        };
        assert_eq!(
            serde_json::to_value(dead_letter_json(dead_letter.clone())).unwrap(),
            serde_json::to_value(&dead_letter).unwrap()
        );
    }

    #[test]
    fn reset_values_are_checked_against_their_target() {
        let target = |v: Value| {
            serde_json::from_value::<ResetRequest>(v)
                .map_err(|e| e.to_string())
                .and_then(|r| reset_target(&r).map_err(|e| e.0.detail))
        };
        assert_eq!(
            target(serde_json::json!({"to": "position", "value": 7})).unwrap(),
            ResetTarget::Position(Position::from_raw(7))
        );
        assert_eq!(
            target(serde_json::json!({"to": "shift-by", "value": "-2"})).unwrap(),
            ResetTarget::ShiftBy(-2)
        );
        assert_eq!(
            target(serde_json::json!({"to": "latest", "value": null})).unwrap(),
            ResetTarget::Latest
        );
        for bad in [
            serde_json::json!({"to": "earliest", "value": 1}),
            serde_json::json!({"to": "position"}),
            serde_json::json!({"to": "position", "value": "x"}),
            serde_json::json!({"to": "position", "value": -1}),
            serde_json::json!({"to": "datetime", "value": "yesterday"}),
            serde_json::json!({"to": "datetime", "value": 5}),
            serde_json::json!({"to": "shift-by", "value": 1.5}),
            serde_json::json!({"to": "shift-by"}),
        ] {
            let detail = target(bad.clone()).unwrap_err();
            assert!(detail.starts_with("reset to "), "{bad}: {detail}");
        }
    }

    #[test]
    fn every_refusal_is_a_problem_of_its_own_kind() {
        let kind = |e: ControlError| control_error("p", e).kind();
        assert_eq!(
            kind(ControlError::NotRunning),
            ProblemKind::ProjectionUnavailable
        );
        assert_eq!(
            kind(ControlError::Starting),
            ProblemKind::ProjectionUnavailable
        );
        assert_eq!(
            kind(ControlError::Busy(std::time::Duration::from_secs(1))),
            ProblemKind::ProjectionUnavailable
        );
        assert_eq!(
            kind(ControlError::Rebuilding),
            ProblemKind::ProjectionConflict
        );
        assert_eq!(
            kind(ControlError::AlreadyRebuilding(2)),
            ProblemKind::ProjectionConflict
        );
        assert_eq!(
            kind(ControlError::DeadLetterNotFound(1)),
            ProblemKind::DeadLetterNotFound
        );
        assert_eq!(
            kind(ControlError::DeadLetterNotParked {
                id: 1,
                status: "skipped"
            }),
            ProblemKind::ProjectionConflict
        );
        assert_eq!(
            kind(ControlError::NotLiveGeneration {
                id: 1,
                generation: 1
            }),
            ProblemKind::ProjectionConflict
        );
        assert_eq!(
            kind(ControlError::EventGone(
                "0190a5a0-0000-7000-8000-000000000001".parse().unwrap()
            )),
            ProblemKind::ProjectionConflict
        );
        assert_eq!(
            kind(ControlError::RetryFailed {
                id: 1,
                message: "again".into()
            }),
            ProblemKind::RetryFailed
        );
        assert_eq!(
            kind(ControlError::Reset(ResetError::PastEnd {
                position: Position::from_raw(9),
                end: Position::from_raw(3)
            })),
            ProblemKind::InvalidReset
        );
        assert_eq!(
            kind(ControlError::Reset(ResetError::NoSuchPosition(
                Position::from_raw(9)
            ))),
            ProblemKind::InvalidReset
        );
        assert_eq!(
            kind(ControlError::Read(factlog_store::ReadError::Closed)),
            ProblemKind::Unavailable
        );
        assert_eq!(
            kind(ControlError::Sink(SinkError::Unavailable("down".into()))),
            ProblemKind::ProjectionUnavailable
        );
        assert_eq!(
            kind(ControlError::Sink(SinkError::Invalid(
                "newer schema".into()
            ))),
            ProblemKind::ProjectionFailed
        );
        assert_eq!(
            kind(ControlError::Fenced("another runner".into())),
            ProblemKind::ProjectionConflict
        );
        let problem = control_error("p", ControlError::Rebuilding).0;
        assert_eq!(problem.fields["projection"], "p");
        assert_eq!(problem.fields["reason"], "rebuilding");
    }
}
