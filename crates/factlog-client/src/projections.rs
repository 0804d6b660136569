//! [`ProjectionsClient`]: the projection routes of a server (`/projections/...`): list, status,
//! pause and resume, reset (a dry-run plan unless executed), rebuild, and dead letters.
//!
//! The answers are `factlog-api`'s JSON shapes, the same types the server answers with. A
//! refusal comes back as a [`ProjectionError`] that carries the server's problem document, so
//! that callers tell cases apart by its kind (`projection-not-found`, `invalid-reset`, ...).

use std::sync::Arc;

use factlog_api::{
    DeadLetterJson, DeadLettersResponse, Problem, ProblemKind, ProjectionStatusJson,
    ProjectionsResponse, RebuildResponse, ResetPlanJson, ResetRequest,
};
use reqwest::Url;

use crate::error::ClientError;
use crate::failure::Failure;
use crate::http::Http;
use crate::store::HttpStore;

/// The projections of a Factlog server. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct ProjectionsClient {
    http: Arc<Http>,
}

/// Why a call of [`ProjectionsClient`] failed: the server's refusal (with its problem document),
/// no answer, or an answer that is not what the API promises.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProjectionError {
    message: String,
    status: Option<u16>,
    problem: Option<Problem>,
    transient: bool,
}

impl ProjectionError {
    /// The server's problem document, when it answered with one.
    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    /// The problem's kind, when it is one of Factlog's.
    pub fn kind(&self) -> Option<ProblemKind> {
        self.problem.as_ref().and_then(Problem::kind)
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Whether trying again later can help (no answer, or "not now").
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl From<Failure> for ProjectionError {
    fn from(failure: Failure) -> Self {
        let transient = failure.is_transient();
        match failure {
            Failure::Status {
                request,
                status,
                problem: Some(problem),
                ..
            } => {
                let slug = problem
                    .kind()
                    .map_or_else(|| problem.type_uri.clone(), |k| k.slug().to_owned());
                Self {
                    message: format!(
                        "{}: {} ({status} {slug}; {request})",
                        problem.title, problem.detail
                    ),
                    status: Some(status),
                    problem: Some(problem),
                    transient,
                }
            }
            other => Self {
                message: other.message(),
                status: match &other {
                    Failure::Status { status, .. } => Some(*status),
                    _ => None,
                },
                problem: None,
                transient,
            },
        }
    }
}

impl HttpStore {
    /// The server's projections, through this store's connection pool and token.
    pub fn projections(&self) -> ProjectionsClient {
        ProjectionsClient {
            http: self.http.clone(),
        }
    }
}

impl ProjectionsClient {
    /// The projections of the server at `base_url`, sending `token` as a bearer token when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Ok(HttpStore::new(base_url, token)?.projections())
    }

    fn url(&self, name: &str, after: &[&str]) -> Url {
        let mut segments = vec!["projections", name];
        segments.extend_from_slice(after);
        self.http.url(&segments)
    }

    /// Every projection the server runs, by name.
    pub async fn list(&self) -> Result<Vec<ProjectionStatusJson>, ProjectionError> {
        let response: ProjectionsResponse = self.http.get(self.http.url(&["projections"])).await?;
        Ok(response.projections)
    }

    /// One projection's status.
    pub async fn status(&self, name: &str) -> Result<ProjectionStatusJson, ProjectionError> {
        Ok(self.http.get(self.url(name, &[])).await?)
    }

    /// Pauses the projection; returns its status after the change.
    pub async fn pause(&self, name: &str) -> Result<ProjectionStatusJson, ProjectionError> {
        Ok(self.http.post_empty(self.url(name, &["pause"])).await?)
    }

    /// Resumes the projection; returns its status after the change.
    pub async fn resume(&self, name: &str) -> Result<ProjectionStatusJson, ProjectionError> {
        Ok(self.http.post_empty(self.url(name, &["resume"])).await?)
    }

    /// Plans a reset of the projection's checkpoint and, with `request.execute`, carries it out.
    pub async fn reset(
        &self,
        name: &str,
        request: &ResetRequest,
    ) -> Result<ResetPlanJson, ProjectionError> {
        let body = serde_json::to_vec(request).expect("a reset request always serializes");
        Ok(self
            .http
            .post(self.url(name, &["reset"]), body, None)
            .await?)
    }

    /// Starts a rebuild; returns the generation being built.
    pub async fn rebuild(&self, name: &str) -> Result<u64, ProjectionError> {
        let response: RebuildResponse = self.http.post_empty(self.url(name, &["rebuild"])).await?;
        Ok(response.generation)
    }

    /// Every dead letter of the projection, oldest first.
    pub async fn dead_letters(&self, name: &str) -> Result<Vec<DeadLetterJson>, ProjectionError> {
        let response: DeadLettersResponse =
            self.http.get(self.url(name, &["dead-letters"])).await?;
        Ok(response.dead_letters)
    }

    /// Applies a parked event again; returns the dead letter after the change (`None` when it
    /// is already gone, replaced by a rebuild).
    pub async fn retry_dead_letter(
        &self,
        name: &str,
        id: u64,
    ) -> Result<Option<DeadLetterJson>, ProjectionError> {
        let id = id.to_string();
        Ok(self
            .http
            .post_empty_optional(self.url(name, &["dead-letters", &id, "retry"]))
            .await?)
    }

    /// Marks a parked event skipped; returns the dead letter after the change (`None` when it is
    /// already gone, replaced by a rebuild).
    pub async fn skip_dead_letter(
        &self,
        name: &str,
        id: u64,
    ) -> Result<Option<DeadLetterJson>, ProjectionError> {
        let id = id.to_string();
        Ok(self
            .http
            .post_empty_optional(self.url(name, &["dead-letters", &id, "skip"]))
            .await?)
    }
}
