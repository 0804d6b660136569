//! Every error the server answers with, as an RFC 9457 problem.
//!
//! Handlers return `Result<_, ApiError>`; the store's errors convert with `?`. The kind of each
//! problem rides along in the response's extensions so that the metrics layer can count errors
//! by kind without parsing bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use factlog_api::{CURRENT_VERSION_HEADER, PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
use factlog_store::{AppendError, LimitKind, ReadError, SubscribeError};
use serde_json::Value;

/// A problem to answer with.
#[derive(Debug, Clone)]
pub struct ApiError(pub Problem);

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self(Problem::new(kind, detail))
    }

    /// Adds a field of the case.
    pub fn with(self, key: &str, value: impl Into<Value>) -> Self {
        Self(self.0.with(key, value))
    }

    pub fn kind(&self) -> ProblemKind {
        self.0.kind().unwrap_or(ProblemKind::Internal)
    }

    pub fn invalid_parameter(name: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            ProblemKind::InvalidParameter,
            format!("query parameter {name}: {detail}"),
        )
        .with("parameter", name)
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        let detail = e.to_string();
        match e {
            AppendError::WrongExpectedVersion {
                stream,
                expected,
                current,
            } => Self::new(ProblemKind::WrongExpectedVersion, detail)
                .with("stream", stream.as_str())
                .with("expectedVersion", expected.to_string())
                .with("currentVersion", current),
            AppendError::IdempotencyConflict { event_id, .. } => {
                Self::new(ProblemKind::IdempotencyConflict, detail)
                    .with("eventId", event_id.to_string())
            }
            AppendError::DuplicateEventId { event_id } => {
                Self::new(ProblemKind::DuplicateEventId, detail)
                    .with("eventId", event_id.to_string())
            }
            AppendError::DuplicateStream { stream } => {
                Self::new(ProblemKind::DuplicateStream, detail).with("stream", stream.as_str())
            }
            AppendError::Empty => Self::new(ProblemKind::EmptyAppend, detail),
            AppendError::LimitExceeded { limit, actual, max } => {
                Self::new(ProblemKind::LimitExceeded, detail)
                    .with("limit", limit_name(limit))
                    .with("actual", actual)
                    .with("max", max)
            }
            AppendError::DiskFull => Self::new(ProblemKind::DiskFull, detail),
            AppendError::WriterFailed { reason } => {
                Self::new(ProblemKind::Unavailable, detail).with("reason", reason)
            }
            AppendError::Closed => {
                Self::new(ProblemKind::Unavailable, detail).with("reason", "closed")
            }
            _ => Self::new(ProblemKind::Internal, detail),
        }
    }
}

fn limit_name(limit: LimitKind) -> String {
    limit.to_string()
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let detail = e.to_string();
        match e {
            ReadError::StreamNotFound(stream) => {
                Self::new(ProblemKind::StreamNotFound, detail).with("stream", stream.as_str())
            }
            ReadError::InvalidPosition(position) => Self::new(ProblemKind::InvalidPosition, detail)
                .with("position", position.to_string()),
            ReadError::Corrupt { file, offset, .. } => Self::new(ProblemKind::Corrupt, detail)
                .with("file", file)
                .with("offset", offset),
            ReadError::Closed => {
                Self::new(ProblemKind::Unavailable, detail).with("reason", "closed")
            }
            _ => Self::new(ProblemKind::Internal, detail),
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::Read(e) => e.into(),
            other => {
                Self::new(ProblemKind::Unavailable, other.to_string()).with("reason", "closed")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0).expect("a problem always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        match kind {
            ProblemKind::WrongExpectedVersion => {
                if let Some(Value::Number(current)) = self.0.fields.get("currentVersion")
                    && let Ok(value) = HeaderValue::from_str(&current.to_string())
                {
                    headers.insert(CURRENT_VERSION_HEADER, value);
                }
            }
            ProblemKind::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"factlog\""),
                );
            }
            _ => {}
        }
        response.extensions_mut().insert(kind);
        response
    }
}
