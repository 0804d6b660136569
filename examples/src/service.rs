//! What the example services share: opening a backend, problem+json errors, an in-process read
//! model fed by a subscription, the replay that rebuilds it, time-travel queries and history.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use factlog_aggregate::{
    Aggregate, At, Command, CommandError, Executed, FileSnapshots, HistoryEntry, LoadError,
    Outcome, Repository, RetryPolicy, SnapshotPolicy, SnapshotStore,
};
use factlog_log::{EmbeddedStore, Options};
use factlog_store::{
    AppendError, AsOf, EventFilter, EventStore, ExpectedVersion, NewEvent, Position, ReadAll,
    RecordedEvent, StreamName, SubscribeFrom, Timestamp,
};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock, Semaphore, watch};

/// Where problem types are documented.
pub const PROBLEM_BASE: &str = "https://github.com/factlog/factlog/blob/main/docs/examples.md#";

/// How long a command's response waits for the read model to show its events.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);

/// Command-line options every example service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory of the embedded store (`events/`) and of the snapshots (`snapshots/`).
    #[arg(long, default_value = "./example-data")]
    pub data_dir: PathBuf,
    /// Use a Factlog server (any backend) instead of the embedded store, for example
    /// http://127.0.0.1:2113. Snapshots stay in --data-dir.
    #[arg(long, env = "FACTLOG_SERVER")]
    pub server: Option<String>,
    /// The token for --server.
    #[arg(long, env = "FACTLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Snapshot an aggregate every N events (0: never).
    #[arg(long, default_value_t = 100)]
    pub snapshot_every: u64,
}

/// The backend a service runs on.
pub struct Backend {
    pub store: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub policy: SnapshotPolicy,
    /// The embedded store, to close cleanly at shutdown.
    pub embedded: Option<Arc<EmbeddedStore>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("policy", &self.policy)
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

impl Backend {
    pub fn open(args: &ServiceArgs) -> anyhow::Result<Self> {
        let snapshots =
            FileSnapshots::open(args.data_dir.join("snapshots")).map_err(|e| anyhow::anyhow!(e))?;
        let policy = match args.snapshot_every {
            0 => SnapshotPolicy::Never,
            n => SnapshotPolicy::EveryEvents(n),
        };
        let (store, embedded): (Arc<dyn EventStore>, _) = match &args.server {
            Some(url) => {
                let store = factlog_client::HttpStore::new(url, args.token.clone())
                    .with_context(|| format!("connecting to the Factlog server at {url}"))?;
                (Arc::new(store), None)
            }
            None => {
                let dir = args.data_dir.join("events");
                let store = Arc::new(
                    EmbeddedStore::open(&dir, Options::default())
                        .with_context(|| format!("opening the store in {}", dir.display()))?,
                );
                (store.clone(), Some(store))
            }
        };
        Ok(Self {
            store,
            snapshots: Arc::new(snapshots),
            policy,
            embedded,
        })
    }
}

/// Serves `router` on `listener` until SIGTERM or SIGINT, then closes the embedded store.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    backend: &Backend,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        })
        .await?;
    if let Some(store) = &backend.embedded {
        store.close();
    }
    Ok(())
}

/// An RFC 9457 problem: the error body of every failed request.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// The anchor of the problem type in docs/examples.md.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extra: serde_json::Map<String, Value>,
    pub retry_after_seconds: Option<u64>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            extra: serde_json::Map::new(),
            retry_after_seconds: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    pub fn replay_in_progress() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "replay-in-progress",
            "A replay is rebuilding the read model",
            "commands wait until the replay of the read model has finished; retry shortly",
        )
        .retry_after(1)
    }

    /// The problem for a repository error other than a business error.
    pub fn from_load(error: LoadError) -> Self {
        match error {
            LoadError::InvalidId { id, source } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-id",
                "Invalid id",
                format!("{id:?} cannot be used as an id: {source}"),
            ),
            e @ LoadError::VersionNotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                "version-not-found",
                "No such version",
                e.to_string(),
            ),
            e => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store-error",
                "The event store failed",
                e.to_string(),
            ),
        }
    }

    /// The problem for a command error; `rejected` maps the business errors.
    pub fn from_command<E>(error: CommandError<E>, rejected: impl FnOnce(E) -> Problem) -> Self
    where
        E: std::error::Error,
    {
        match error {
            CommandError::Rejected(e) => rejected(e),
            CommandError::Load(e) => Self::from_load(e),
            CommandError::InvalidCommand(e) => Self::bad_request(e.to_string()),
            e @ CommandError::DuplicateAggregate { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "duplicate-aggregate",
                "One aggregate twice in one command",
                e.to_string(),
            ),
            e @ CommandError::Conflict { .. } => Self::new(
                StatusCode::CONFLICT,
                "concurrency-conflict",
                "Too many concurrent changes",
                e.to_string(),
            )
            .retry_after(1),
            CommandError::Append(
                e @ (AppendError::DiskFull | AppendError::WriterFailed { .. }),
            )
            | CommandError::Append(e @ AppendError::Closed) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The event store cannot take writes",
                e.to_string(),
            ),
            e => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store-error",
                "The event store failed",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), format!("{PROBLEM_BASE}{}", self.slug).into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.extend(self.extra);
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON body whose rejection is a problem (400 for malformed JSON, 422 for a body of the wrong
/// shape, 415 for another content type).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                let status = rejection.status();
                let detail = rejection.body_text();
                Err(match rejection {
                    JsonRejection::JsonDataError(_) => Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-body",
                        "The body does not have the expected fields",
                        detail,
                    ),
                    JsonRejection::MissingJsonContentType(_) => Problem::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "invalid-body",
                        "The body must be application/json",
                        detail,
                    ),
                    _ => Problem::new(status, "invalid-body", "The body is not JSON", detail),
                })
            }
        }
    }
}

/// The correlation id a client sent in `X-Correlation-Id`, if any.
pub fn correlation_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-correlation-id")?
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= factlog_aggregate::COMMAND_ID_BYTES_MAX)
        .map(str::to_owned)
}

/// `?version=n` or `?asOf=<RFC 3339>`: which past state a query asks for. A time with at most
/// millisecond digits means the end of that millisecond, as in the server's API.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeTravel {
    pub version: Option<u64>,
    pub as_of: Option<String>,
}

impl TimeTravel {
    pub fn at(&self) -> Result<Option<At>, Problem> {
        match (&self.version, &self.as_of) {
            (Some(_), Some(_)) => Err(Problem::bad_request(
                "ask for a version or a time (asOf), not both",
            )),
            (Some(v), None) => Ok(Some(At::Version(*v))),
            (None, Some(t)) => Timestamp::parse_rfc3339_bound(t)
                .map(|t| Some(At::Time(t)))
                .map_err(|e| Problem::bad_request(format!("asOf: {e}"))),
            (None, None) => Ok(None),
        }
    }
}

/// One event of an aggregate's history, as JSON.
pub fn history_json<E>(entries: &[HistoryEntry<E>]) -> Value {
    let events: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let e = &entry.recorded;
            let data: Value = serde_json::from_slice(&e.data).unwrap_or(Value::Null);
            json!({
                "version": e.version,
                "position": e.position.raw().to_string(),
                "eventId": e.id,
                "eventType": e.event_type.as_str(),
                "schemaVersion": e.schema_version,
                "recordedAt": e.recorded_at.to_rfc3339_millis(),
                "data": data,
                "metadata": e.metadata,
            })
        })
        .collect();
    Value::Array(events)
}

/// A read model built in process from one category of events.
pub trait ReadModel: Default + Send + Sync + 'static {
    /// The name of this read model, used in the replay marker events.
    const NAME: &'static str;
    /// The category of the events it is built from.
    const CATEGORY: &'static str;
    /// Applies one event. It never fails: an event it cannot read is logged and skipped.
    fn apply(&mut self, event: &RecordedEvent);
}

struct Current<M> {
    model: M,
    /// The position of the last event applied (or the replay marker it was rebuilt up to).
    position: Position,
}

/// A read model kept up to date by a subscription to `$all`.
pub struct View<M: ReadModel> {
    store: Arc<dyn EventStore>,
    current: RwLock<Current<M>>,
    position: watch::Sender<Position>,
}

impl<M: ReadModel> std::fmt::Debug for View<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("name", &M::NAME)
            .field("position", &*self.position.borrow())
            .finish()
    }
}

impl<M: ReadModel> View<M> {
    /// Builds the model from the start of the store and keeps following it.
    pub fn start(store: Arc<dyn EventStore>) -> Arc<Self> {
        let view = Arc::new(Self {
            store: store.clone(),
            current: RwLock::new(Current {
                model: M::default(),
                position: Position::START,
            }),
            position: watch::channel(Position::START).0,
        });
        let weak = Arc::downgrade(&view);
        let filter = EventFilter {
            category: Some(M::CATEGORY.to_owned()),
            ..EventFilter::default()
        };
        let mut events = store.subscribe_all(SubscribeFrom::Start, filter);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Some(view) = weak.upgrade() else { return };
                match event {
                    Ok(event) => view.apply(&event).await,
                    Err(e) => {
                        tracing::warn!(view = M::NAME, error = %e, "the read model's subscription ended");
                        return;
                    }
                }
            }
        });
        view
    }

    async fn apply(&self, event: &RecordedEvent) {
        let mut current = self.current.write().await;
        // After a rebuild, events the rebuild already holds arrive again: skip them.
        if event.position <= current.position {
            return;
        }
        current.model.apply(event);
        current.position = event.position;
        self.position.send_replace(event.position);
    }

    /// Reads the model.
    pub async fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&self.current.read().await.model)
    }

    /// Waits (a bounded time) until the model has applied every event of its category stored
    /// now: a service answers only once its read model shows what the store held at start.
    pub async fn catch_up(&self) -> Result<(), factlog_store::ReadError> {
        let filter = EventFilter {
            category: Some(M::CATEGORY.to_owned()),
            ..EventFilter::default()
        };
        let last = self
            .store
            .read_all(ReadAll::backward().limit(1).filter(filter))
            .await?;
        if let Some(event) = last.first() {
            self.wait_for(event.position).await;
        }
        Ok(())
    }

    /// Waits (a bounded time) until the model has applied the event at `position`, so that a
    /// client reads its own writes.
    pub async fn wait_for(&self, position: Position) {
        let mut rx = self.position.subscribe();
        let reached = tokio::time::timeout(READ_YOUR_WRITES_WAIT, rx.wait_for(|p| *p >= position));
        if reached.await.is_err() {
            tracing::warn!(
                view = M::NAME,
                %position,
                "the read model has not caught up; answering anyway"
            );
        }
    }

    /// A new model built from every event of the category up to `position`, and how many events
    /// it applied.
    async fn rebuild(&self, position: Position) -> Result<(M, u64), factlog_store::ReadError> {
        let filter = EventFilter {
            category: Some(M::CATEGORY.to_owned()),
            ..EventFilter::default()
        };
        let mut model = M::default();
        let mut applied = 0;
        let mut from = Position::START;
        loop {
            let page = self
                .store
                .read_all(
                    ReadAll::forward()
                        .from_position(from)
                        .filter(filter.clone())
                        .as_of(AsOf::Position(position))
                        .limit(4096),
                )
                .await?;
            let Some(last) = page.last() else { break };
            from = Position::from_raw(last.position.raw() + 1);
            for event in &page {
                model.apply(event);
                applied += 1;
            }
        }
        Ok((model, applied))
    }

    async fn replace(&self, model: M, position: Position) {
        let mut current = self.current.write().await;
        current.model = model;
        current.position = current.position.max(position);
        self.position.send_replace(current.position);
    }
}

/// The state of the replay endpoint.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStatus {
    pub running: bool,
    pub last: Option<ReplayReport>,
}

/// What a finished replay did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    pub read_model: &'static str,
    pub events_replayed: u64,
    /// The position of the "replay started" marker: the rebuilt model holds every event before.
    pub started_position: String,
    pub finished_position: String,
    pub duration_ms: u64,
}

/// Rebuilds a read model from the log, as the seeds describe it: write a "replay started"
/// marker, clear the read model, re-apply every event, write "replay finished". Commands are
/// refused (503 with Retry-After) while it runs.
///
/// The rebuild starts from an empty model and replaces the live one when it is complete;
/// queries keep being answered by the live one meanwhile, which cannot change because no
/// command runs.
pub struct Replay<M: ReadModel> {
    view: Arc<View<M>>,
    /// Commands hold it shared; a replay holds it exclusively.
    gate: RwLock<()>,
    status: Mutex<ReplayStatus>,
    /// When set, a replay waits for a permit after writing its start marker: tests use it to
    /// hold a replay open.
    hold: Option<Arc<Semaphore>>,
}

impl<M: ReadModel> std::fmt::Debug for Replay<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay").field("view", &self.view).finish()
    }
}

/// A command's permission to run: no replay runs while it is held.
#[derive(Debug)]
pub struct CommandPermit<'a>(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'a, ()>);

impl<M: ReadModel> Replay<M> {
    pub fn new(view: Arc<View<M>>, hold: Option<Arc<Semaphore>>) -> Self {
        Self {
            view,
            gate: RwLock::new(()),
            status: Mutex::new(ReplayStatus::default()),
            hold,
        }
    }

    /// Lets a command run, or refuses it while a replay runs.
    pub fn command_permit(&self) -> Result<CommandPermit<'_>, Problem> {
        self.gate
            .try_read()
            .map(CommandPermit)
            .map_err(|_| Problem::replay_in_progress())
    }

    pub async fn status(&self) -> ReplayStatus {
        self.status.lock().await.clone()
    }

    /// Runs a replay to the end.
    pub async fn run(&self) -> Result<ReplayReport, Problem> {
        {
            let mut status = self.status.lock().await;
            if status.running {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "replay-in-progress",
                    "A replay is already running",
                    "wait for it to finish (GET /api/replay-events)",
                ));
            }
            status.running = true;
        }
        let result = self.replay().await;
        let mut status = self.status.lock().await;
        status.running = false;
        if let Ok(report) = &result {
            status.last = Some(report.clone());
        }
        result
    }

    async fn replay(&self) -> Result<ReplayReport, Problem> {
        let started = Instant::now();
        // Waits for running commands to finish; new ones are refused from here on.
        let _exclusive = self.gate.write().await;
        let store = &self.view.store;
        let marker_stream =
            StreamName::new(format!("replays-{}", M::NAME)).expect("a valid stream name");
        let marker = |event_type: &str, data: Value| {
            NewEvent::json(event_type, &data).expect("a valid marker event")
        };
        let store_error = |e: String| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The event store failed",
                e,
            )
        };
        let start = store
            .append(
                &marker_stream,
                ExpectedVersion::Any,
                vec![marker("ReplayStarted", json!({ "readModel": M::NAME }))],
            )
            .await
            .map_err(|e| store_error(e.to_string()))?;
        if let Some(hold) = &self.hold {
            hold.acquire().await.expect("never closed").forget();
        }
        let (model, events_replayed) = self
            .view
            .rebuild(start.last_position)
            .await
            .map_err(|e| store_error(e.to_string()))?;
        self.view.replace(model, start.last_position).await;
        let finish = store
            .append(
                &marker_stream,
                ExpectedVersion::Any,
                vec![marker(
                    "ReplayFinished",
                    json!({
                        "readModel": M::NAME,
                        "eventsReplayed": events_replayed,
                        "startedPosition": start.last_position.raw().to_string(),
                    }),
                )],
            )
            .await
            .map_err(|e| store_error(e.to_string()))?;
        Ok(ReplayReport {
            read_model: M::NAME,
            events_replayed,
            started_position: start.last_position.raw().to_string(),
            finished_position: finish.last_position.raw().to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// The category's events decoded for a read model; an event that does not decode is logged and
/// skipped (a read model must not stop on one bad event).
pub fn decode_for_view<A: Aggregate>(event: &RecordedEvent) -> Option<A::Event> {
    use factlog_aggregate::DomainEvent;
    match A::Event::schema().decode_recorded(event) {
        Ok(decoded) => Some(decoded),
        Err(e) => {
            tracing::warn!(stream = %event.stream, version = event.version, error = %e, "skipping an event the read model cannot read");
            None
        }
    }
}

/// What every example service is made of: the aggregate's repository, the read model its
/// queries read, and the replay that rebuilds that read model.
pub struct Service<A: Aggregate, M: ReadModel> {
    pub repository: Repository<A>,
    pub view: Arc<View<M>>,
    pub replay: Replay<M>,
}

impl<A: Aggregate, M: ReadModel> std::fmt::Debug for Service<A, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("repository", &self.repository)
            .field("view", &self.view)
            .finish()
    }
}

/// `?from=V&limit=N` of a history request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    pub from: u64,
    pub limit: Option<usize>,
}

impl<A: Aggregate, M: ReadModel> Service<A, M> {
    /// A service on `backend`; `replay_hold` holds replays open after their start marker until
    /// a permit is added (tests).
    pub fn new(backend: &Backend, retry: RetryPolicy, replay_hold: Option<Arc<Semaphore>>) -> Self {
        let repository = Repository::<A>::new(backend.store.clone())
            .with_snapshots(backend.snapshots.clone(), backend.policy)
            .with_retry(retry);
        let view = View::<M>::start(backend.store.clone());
        Self {
            repository,
            replay: Replay::new(view.clone(), replay_hold),
            view,
        }
    }

    /// Waits until the read model holds every event stored when the service started; call it
    /// before serving.
    pub async fn catch_up(&self) -> Result<(), factlog_store::ReadError> {
        self.view.catch_up().await
    }

    /// Runs one command on each of `commands`' aggregates (atomically), unless a replay runs,
    /// and answers once the read model shows what it did. `rejected` maps business errors.
    pub async fn execute(
        &self,
        headers: &HeaderMap,
        commands: Vec<(String, A::Command)>,
        command_id: Option<String>,
        rejected: impl FnOnce(A::Error) -> Problem,
    ) -> Result<Vec<Executed<A>>, Problem> {
        let _permit = self.replay.command_permit()?;
        let mut command = Command::new(commands);
        command.meta.command_id = command_id;
        command.meta.correlation_id = correlation_id(headers);
        let executed = self
            .repository
            .execute_all(command)
            .await
            .map_err(|e| Problem::from_command(e, rejected))?;
        let written_up_to = executed
            .iter()
            .filter_map(|e| match e.outcome {
                Outcome::Applied(r) | Outcome::AlreadyApplied(r) => Some(r.last_position),
                Outcome::Unchanged => None,
            })
            .max();
        if let Some(position) = written_up_to {
            self.view.wait_for(position).await;
        }
        Ok(executed)
    }

    /// The events of aggregate `id` as JSON; `not_found` when it has none.
    pub async fn history(
        &self,
        id: &str,
        query: &HistoryQuery,
        not_found: impl FnOnce() -> Problem,
    ) -> Result<Value, Problem> {
        let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
        let entries = self
            .repository
            .history(id, query.from, limit)
            .await
            .map_err(Problem::from_load)?;
        if entries.is_empty() && query.from == 0 {
            return Err(not_found());
        }
        Ok(history_json(&entries))
    }

    /// `POST /api/replay-events`.
    pub async fn replay_response(&self) -> Result<axum::Json<Value>, Problem> {
        let report = self.replay.run().await?;
        Ok(axum::Json(
            serde_json::to_value(report).expect("serializes"),
        ))
    }

    /// `GET /api/replay-events`.
    pub async fn replay_status_response(&self) -> axum::Json<Value> {
        axum::Json(serde_json::to_value(self.replay.status().await).expect("serializes"))
    }
}
