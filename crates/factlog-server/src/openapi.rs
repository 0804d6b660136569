//! The OpenAPI 3.1 document, generated from the handlers' annotations and the types of
//! `factlog-api`, served at `/openapi.json`.

use factlog_api::Problem;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Factlog",
        description = "The Factlog event store over HTTP: appends with optimistic concurrency, \
                       reads of streams and of `$all`, time travel, and live subscriptions as \
                       Server-Sent Events. Errors are RFC 9457 problem documents.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "streams", description = "Appends and reads of streams"),
        (name = "all", description = "Reads of every event of the store, in order"),
        (name = "subscriptions", description = "Catch-up then live subscriptions (Server-Sent Events)"),
        (name = "operations", description = "Health, readiness, metrics and administration"),
        (name = "projections", description = "The projections the server runs: status, pause and resume, reset, rebuild, dead letters"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The errors any route with a token can answer with.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// `invalid-header`, `invalid-parameter` and the like.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// `unauthorized`: no token, or not a valid one (only when tokens are configured).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`: the token's role does not allow this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `not-found`.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// `timeout`: the request took longer than the request timeout.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(Problem),
    /// `corrupt` or `internal`.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// `unavailable`: the store is closed or stopped after a storage failure.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The errors of reads.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ReadErrors {
    /// `invalid-stream-name`, `invalid-parameter`, `invalid-position`, `invalid-header`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// `unauthorized`.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `stream-not-found`, `event-not-found`.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// `timeout`.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(Problem),
    /// `corrupt` or `internal`.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// `unavailable`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The errors of appends. Nothing is written in any of these cases.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AppendErrors {
    /// `malformed-body`, `invalid-stream-name`, `invalid-expected-version`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// `unauthorized`.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `timeout`: the append may or may not have been stored; retry with the same event ids.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(Problem),
    /// `wrong-expected-version` (with `stream`, `currentVersion`, and a `Current-Version`
    /// header when the stream exists) or `idempotency-conflict`.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// `body-too-large` or `limit-exceeded`.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// `unsupported-media-type`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// `invalid-event`, `empty-append`, `duplicate-event-id`, `duplicate-stream`.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// `internal`.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// `unavailable`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
    /// `disk-full`.
    #[response(status = 507, content_type = "application/problem+json")]
    DiskFull(Problem),
}

/// The errors of the projection routes that only read.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ProjectionReadErrors {
    /// `invalid-parameter`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// `unauthorized`.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `projection-not-found`: the server runs no projection of this name.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// `timeout`.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(Problem),
    /// `projection-failed` (the sink failed) or `internal`.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// `projection-unavailable` (with `reason`: `starting`, `busy`, `not-running`,
    /// `sink-unavailable`) or `unavailable`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The errors of the routes that control a projection. Nothing changes in any of these cases.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ProjectionControlErrors {
    /// `malformed-body`, `invalid-parameter`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// `unauthorized`.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`: controlling projections needs the admin role.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `projection-not-found`, `dead-letter-not-found`.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// `timeout`.
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(Problem),
    /// `projection-conflict`, with `reason`: `rebuilding`, `already-rebuilding`, `not-parked`,
    /// `not-live-generation`, `event-gone`, `fenced`.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// `body-too-large`.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// `unsupported-media-type`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// `invalid-reset` (with `reason`: `invalid-value`, `past-end`, `no-such-position`), or
    /// `retry-failed`.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// `projection-failed` (the sink failed) or `internal`.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// `projection-unavailable` (with `reason`: `starting`, `busy`, `not-running`,
    /// `sink-unavailable`) or `unavailable`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}
