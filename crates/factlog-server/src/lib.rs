//! The Factlog server: the store API over HTTP (axum), live subscriptions as Server-Sent
//! Events, bearer tokens with roles, optional TLS (rustls), Prometheus metrics, and a graceful
//! shutdown that finishes appends in flight.
//!
//! The routes, their inputs and their errors are described in `docs/http-api.md` and in the
//! OpenAPI document the server generates from its handlers (`GET /openapi.json`).
//!
//! Projections (`factlog-projection`) started over the same store are served too, with
//! [`Backend::with_projections`]: listed and controlled at `/projections/...`, measured in
//! `/metrics`, and stopped by [`Server::shutdown`] before the caller closes the store.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! let store = Arc::new(factlog_log::EmbeddedStore::open("./factlog-data", Default::default())?);
//! let server = factlog_server::Server::start(
//!     factlog_server::Config::default(),
//!     factlog_server::Backend::embedded(store.clone()),
//! )
//! .await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await;
//! store.close();
//! # Ok(()) }
//! ```

mod auth;
pub mod config;
mod error;
mod metrics;
mod openapi;
mod projections;
mod routes;
mod serve;
mod sse;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use factlog_api::{ProblemKind, WAIT_FOR_POSITION_HEADER};
use factlog_log::EmbeddedStore;
use factlog_projection::Projections;
use factlog_store::{EventStore, Position};
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Role, required_role};
pub use config::{Config, FileConfig, Secret, TlsConfig, TokenConfig};
pub use error::ApiError;
pub use serve::{Server, StartError};

/// The store the server serves, and the projections it runs over it.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn EventStore>,
    /// The embedded engine, when that is the store: its statistics feed metrics and readiness.
    embedded: Option<Arc<EmbeddedStore>>,
    /// Projections to list, control (`/projections/...`) and measure; stopped when the server
    /// shuts down.
    projections: Option<Projections>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("embedded", &self.embedded.is_some())
            .field("projections", &self.projections.is_some())
            .finish()
    }
}

impl Backend {
    /// The embedded store.
    pub fn embedded(store: Arc<EmbeddedStore>) -> Self {
        Self {
            store: store.clone(),
            embedded: Some(store),
            projections: None,
        }
    }

    /// Any other implementation of the store API.
    pub fn store(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            embedded: None,
            projections: None,
        }
    }

    /// Serves `projections` (started by the caller over this store) at `/projections/...` and in
    /// the metrics. [`Server::shutdown`] stops them, before the caller closes the store.
    pub fn with_projections(mut self, projections: Projections) -> Self {
        self.projections = Some(projections);
        self
    }
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn EventStore>,
    embedded: Option<Arc<EmbeddedStore>>,
    /// The projections the server runs, when it runs any.
    projections: Option<Projections>,
    metrics: Arc<metrics::Metrics>,
    tokens: Arc<auth::Tokens>,
    config: Arc<Config>,
    /// The JSON of recent events, shared by subscribers.
    event_json: Arc<sse::EventJsonCache>,
    /// Becomes `true` when shutdown begins.
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The OpenAPI document of the server's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::append_stream, routes::read_stream))
        .routes(routes!(routes::append_multi))
        .routes(routes!(routes::read_event))
        .routes(routes!(routes::read_event_by_id))
        .routes(routes!(routes::stream_info))
        .routes(routes!(routes::list_streams))
        .routes(routes!(routes::categories))
        .routes(routes!(routes::read_all))
        .routes(routes!(sse::subscribe_all))
        .routes(routes!(sse::subscribe_stream))
        .routes(routes!(routes::health))
        .routes(routes!(routes::ready))
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::admin_stats))
        .routes(routes!(routes::admin_backup))
        .routes(routes!(projections::list))
        .routes(routes!(projections::status))
        .routes(routes!(projections::pause))
        .routes(routes!(projections::resume))
        .routes(routes!(projections::reset))
        .routes(routes!(projections::rebuild))
        .routes(routes!(projections::dead_letters))
        .routes(routes!(projections::retry_dead_letter))
        .routes(routes!(projections::skip_dead_letter))
}

/// The whole application: routes, `/openapi.json`, problem answers for unknown routes and
/// methods, authorization, request timeouts and error counting.
fn app(state: AppState) -> Router {
    let (router, document) = api_router().split_for_parts();
    let document = Arc::new(document);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            wait_for_positions,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.body_limit_bytes,
        ))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        ProblemKind::NotFound,
        format!(
            "there is no route {}; see /openapi.json",
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        ProblemKind::MethodNotAllowed,
        format!(
            "{} does not take {}; see /openapi.json",
            request.uri().path(),
            request.method()
        ),
    )
}

/// Answers `timeout` when the handler has not produced a response in time. The body of a live
/// stream is not counted: only the time to its first byte.
async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit: Duration = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ProblemKind::Timeout,
            format!(
                "no answer within {} s; an append may or may not have been stored: retry it with \
                 the same event ids",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Read-your-writes across nodes: a request with `Wait-For-Position` waits until this server's
/// reads see those events (an append on another node of a Kafka store returned them), for at
/// most 80% of the request timeout, and is answered `unavailable` when they do not come.
async fn wait_for_positions(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut positions = Vec::new();
    for value in request.headers().get_all(WAIT_FOR_POSITION_HEADER) {
        let parsed = value.to_str().ok().and_then(|text| {
            text.split(',')
                .map(|p| p.trim().parse::<Position>().ok())
                .collect::<Option<Vec<_>>>()
        });
        match parsed {
            Some(parsed) => positions.extend(parsed),
            None => {
                return ApiError::new(
                    ProblemKind::InvalidHeader,
                    format!(
                        "Wait-For-Position header {value:?}: expected positions as appends \
                         return them, separated by commas"
                    ),
                )
                .into_response();
            }
        }
    }
    if !positions.is_empty() {
        let wait = state.config.request_timeout.mul_f64(0.8);
        let deadline = tokio::time::Instant::now() + wait;
        for position in positions {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match state.store.wait_for_position(position, left).await {
                Ok(true) => {}
                Ok(false) => {
                    return ApiError::new(
                        ProblemKind::Unavailable,
                        format!(
                            "this server's reads did not reach position {position} within {} s; \
                             retry, or read from the server that appended it",
                            wait.as_secs_f64()
                        ),
                    )
                    .into_response();
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    }
    next.run(request).await
}

/// Counts error responses by problem kind (the kind rides in the response's extensions).
async fn count_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(kind) = response.extensions().get::<ProblemKind>() {
        state.metrics.error(*kind);
    }
    response
}
