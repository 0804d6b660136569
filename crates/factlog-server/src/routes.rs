//! The handlers of the HTTP API, each with its OpenAPI description.
//!
//! Every handler validates all of its input before it touches the store, so that bad input
//! changes nothing; every failure is an [`ApiError`] (a problem document).

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use factlog_api::{
    AllEventsResponse, AppendResponse, BackupRequest, BackupResponse, CategoriesResponse,
    EXPECTED_VERSION_HEADER, EventJson, HealthResponse, MultiAppendResponse, NewEventJson,
    PositionJson, Problem, ProblemKind, StreamAppendJson, StreamAppendResponse,
    StreamEventsResponse, StreamInfoJson, StreamsResponse,
};
use factlog_store::{
    AllFrom, AsOf, Direction, EventFilter, EventId, ExpectedVersion, ListStreams, NewEvent,
    Position, ReadAll, ReadStream, StreamAppend, StreamFrom, StreamName, Timestamp, Version,
};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::{AppendErrors, CommonErrors, ReadErrors};

/// Events a read returns when the request does not say.
pub const READ_LIMIT_DEFAULT: usize = 100;
/// The most events one read returns.
pub const READ_LIMIT_MAX: usize = 10_000;
/// Stream names one listing returns when the request does not say, and at most.
pub const LIST_LIMIT_DEFAULT: usize = 1000;
pub const LIST_LIMIT_MAX: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Input

/// The query string, decoded, with typed getters that name the bad parameter.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<String>) -> Self {
        Self(
            raw.map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// The value of `name`; a parameter given twice is an error, not a silent choice.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::invalid_parameter(name, "is given more than once"));
        }
        Ok(first.map(String::as_str))
    }

    pub fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.get(name)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid_parameter(name, format!("{text:?} is not {what}"))),
        }
    }

    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let limit = self
            .parsed::<usize>("limit", "a number")?
            .unwrap_or(default);
        if limit == 0 || limit > max {
            return Err(ApiError::invalid_parameter(
                "limit",
                format!("must be from 1 to {max}, not {limit}"),
            ));
        }
        Ok(limit)
    }

    pub fn direction(&self) -> Result<Direction, ApiError> {
        match self.get("direction")? {
            None | Some("forward") => Ok(Direction::Forward),
            Some("backward") => Ok(Direction::Backward),
            Some(other) => Err(ApiError::invalid_parameter(
                "direction",
                format!("{other:?} is not forward or backward"),
            )),
        }
    }

    /// `asOf=<RFC 3339>` or `asOfPosition=<position>`, not both.
    ///
    /// A time written with at most three fractional digits means the end of that millisecond:
    /// `recordedAt` has milliseconds while the store keeps microseconds, so `asOf=<an event's
    /// recordedAt>` must include every event recorded within that millisecond. More digits are
    /// taken as they are, to the microsecond.
    pub fn as_of(&self) -> Result<Option<AsOf>, ApiError> {
        let time = match self.get("asOf")? {
            None => None,
            Some(text) => {
                let t = Timestamp::parse_rfc3339_bound(text).map_err(|e| {
                    ApiError::invalid_parameter(
                        "asOf",
                        format!("{text:?} is not an RFC 3339 time ({e})"),
                    )
                })?;
                Some(AsOf::Time(t))
            }
        };
        let position = self
            .parsed::<Position>("asOfPosition", "a position")?
            .map(AsOf::Position);
        match (time, position) {
            (Some(_), Some(_)) => Err(ApiError::invalid_parameter(
                "asOf",
                "give asOf or asOfPosition, not both",
            )),
            (time, position) => Ok(time.or(position)),
        }
    }

    /// `types=a,b`, `prefix=`, `category=`.
    pub fn filter(&self) -> Result<EventFilter, ApiError> {
        let event_types = match self.get("types")? {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        Ok(EventFilter {
            event_types,
            stream_prefix: self.get("prefix")?.map(str::to_owned),
            category: self.get("category")?.map(str::to_owned),
        })
    }
}

pub fn stream_name(raw: String) -> Result<StreamName, ApiError> {
    StreamName::new(raw.clone()).map_err(|e| {
        ApiError::new(
            ProblemKind::InvalidStreamName,
            format!("stream name {raw:?}: {e}"),
        )
        .with("stream", raw)
    })
}

/// The parameters of the path, like axum's `Path`, but a parameter that is not UTF-8 once
/// percent-decoded is a problem like any other bad input rather than axum's plain-text answer.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(params)| Self(params))
            .map_err(|rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(e) => {
                    let detail = e.body_text();
                    match e.into_kind() {
                        axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key }
                            if key == "stream" =>
                        {
                            ApiError::new(ProblemKind::InvalidStreamName, detail)
                        }
                        axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => {
                            ApiError::new(ProblemKind::InvalidParameter, detail)
                                .with("parameter", key)
                        }
                        _ => ApiError::new(ProblemKind::InvalidParameter, detail),
                    }
                }
                other => ApiError::new(ProblemKind::Internal, other.body_text()),
            })
    }
}

fn version_segment(raw: &str) -> Result<Version, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            ProblemKind::InvalidParameter,
            format!("{raw:?} is not a version (a number from 0)"),
        )
        .with("parameter", "version")
    })
}

fn event_id_segment(raw: &str) -> Result<EventId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            ProblemKind::InvalidParameter,
            format!("{raw:?} is not an event id (a UUID)"),
        )
        .with("parameter", "eventId")
    })
}

/// The request body, within the size limit, after checking that it claims to be JSON.
async fn json_bytes(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        let json = content_type.to_str().ok().is_some_and(|ct| {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        if !json {
            return Err(ApiError::new(
                ProblemKind::UnsupportedMediaType,
                format!(
                    "the body is {}; send application/json",
                    String::from_utf8_lossy(content_type.as_bytes())
                ),
            ));
        }
    }
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ProblemKind::BodyTooLarge,
                    format!(
                        "the body is over {} bytes; split the append",
                        state.config.body_limit_bytes
                    ),
                )
                .with("max", state.config.body_limit_bytes)
            } else {
                ApiError::new(ProblemKind::MalformedBody, rejection.body_text())
            }
        })
}

/// The request body as a JSON array of `T`.
pub struct JsonArray<T>(pub Vec<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonArray<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = json_bytes(request, state).await?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'[') {
            return Err(ApiError::new(
                ProblemKind::MalformedBody,
                "the body must be a JSON array",
            ));
        }
        serde_json::from_slice::<Vec<T>>(&bytes)
            .map(JsonArray)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => {
                    ApiError::new(ProblemKind::InvalidEvent, format!("the body: {e}"))
                        .with("line", e.line())
                        .with("column", e.column())
                }
                _ => ApiError::new(
                    ProblemKind::MalformedBody,
                    format!("the body is not valid JSON: {e}"),
                ),
            })
    }
}

/// The request body as one JSON value of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = json_bytes(request, state).await?;
        serde_json::from_slice::<T>(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::new(ProblemKind::MalformedBody, format!("the body: {e}")))
    }
}

fn new_events(
    events: Vec<NewEventJson>,
    stream_index: Option<usize>,
) -> Result<Vec<NewEvent>, ApiError> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            event.into_new_event().map_err(|e| {
                let mut error = ApiError::new(
                    ProblemKind::InvalidEvent,
                    format!("event {index}: {}: {}", e.field, e.reason),
                )
                .with("index", index)
                .with("field", e.field);
                if let Some(stream_index) = stream_index {
                    error = error.with("streamIndex", stream_index);
                }
                error
            })
        })
        .collect()
}

fn expected_version(headers: &HeaderMap) -> Result<ExpectedVersion, ApiError> {
    let mut values = headers.get_all(EXPECTED_VERSION_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(ExpectedVersion::Any);
    };
    // Like a query parameter given twice: an error, not a silent choice of one.
    if values.next().is_some() {
        return Err(ApiError::new(
            ProblemKind::InvalidExpectedVersion,
            "the Expected-Version header is given more than once",
        ));
    }
    value
        .to_str()
        .map_err(|_| "is not text".to_owned())
        .and_then(|text| text.trim().parse())
        .map_err(|e| {
            ApiError::new(
                ProblemKind::InvalidExpectedVersion,
                format!("Expected-Version header: {e}"),
            )
        })
}

/// `/streams/{stream}` with the name percent-encoded as one path segment.
pub fn stream_path(stream: &StreamName) -> String {
    format!(
        "/streams/{}",
        percent_encoding::utf8_percent_encode(stream.as_str(), SEGMENT)
    )
}

/// What must be escaped in a path segment: everything but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

// ---------------------------------------------------------------------------------------------
// Appends

/// Append events to a stream, all or nothing.
#[utoipa::path(
    post,
    path = "/streams/{stream}",
    tag = "streams",
    params(
        ("stream" = String, Path, description = "The stream, such as `account-42`"),
        ("Expected-Version" = Option<String>, Header,
            description = "`any` (default), `no-stream`, `exists`, or the version the stream's last event must have"),
    ),
    request_body(content = Vec<NewEventJson>, description = "The events, in order"),
    responses(
        (status = 201, description = "Stored (or an idempotent retry of stored events)", body = AppendResponse,
            headers(("Location" = String, description = "The first event's URL"))),
        AppendErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn append_stream(
    State(state): State<AppState>,
    PathParams(stream): PathParams<String>,
    headers: HeaderMap,
    JsonArray(events): JsonArray<NewEventJson>,
) -> Result<Response, ApiError> {
    let stream = stream_name(stream)?;
    let expected = expected_version(&headers)?;
    let events = new_events(events, None)?;
    let count = events.len();
    let started = Instant::now();
    let result = state.store.append(&stream, expected, events).await?;
    state.metrics.append_succeeded(count, started.elapsed());
    let location = format!("{}/{}", stream_path(&stream), result.first_version);
    let mut response = (StatusCode::CREATED, Json(AppendResponse::from(result))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Append to several streams atomically: every expectation holds and every event is stored, or
/// nothing is.
#[utoipa::path(
    post,
    path = "/append",
    tag = "streams",
    request_body(content = Vec<StreamAppendJson>, description = "One entry per stream"),
    responses(
        (status = 201, description = "Stored", body = MultiAppendResponse),
        AppendErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn append_multi(
    State(state): State<AppState>,
    JsonArray(parts): JsonArray<StreamAppendJson>,
) -> Result<Response, ApiError> {
    let mut appends = Vec::with_capacity(parts.len());
    let mut count = 0;
    for (index, part) in parts.into_iter().enumerate() {
        let stream = stream_name(part.stream).map_err(|e| e.with("streamIndex", index))?;
        let events = new_events(part.events, Some(index))?;
        count += events.len();
        appends.push(StreamAppend {
            stream,
            expected: part.expected_version.0,
            events,
        });
    }
    let streams: Vec<String> = appends
        .iter()
        .map(|a| a.stream.as_str().to_owned())
        .collect();
    let started = Instant::now();
    let results = state.store.append_multi(appends).await?;
    state.metrics.append_succeeded(count, started.elapsed());
    let body = MultiAppendResponse {
        results: streams
            .into_iter()
            .zip(results)
            .map(|(stream, result)| StreamAppendResponse {
                stream,
                result: result.into(),
            })
            .collect(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Reads

/// Read a stream, a page at a time.
#[utoipa::path(
    get,
    path = "/streams/{stream}",
    tag = "streams",
    params(
        ("stream" = String, Path, description = "The stream"),
        ("from" = Option<u64>, Query, description = "The first version to read (default: the start, or the end going backward)"),
        ("limit" = Option<usize>, Query, description = "At most this many events (1 to 10000, default 100)"),
        ("direction" = Option<String>, Query, description = "`forward` (default) or `backward`"),
        ("asOf" = Option<String>, Query, description = "Only events recorded at or before this RFC 3339 time; a time with at most 3 fractional digits means the end of that millisecond"),
        ("asOfPosition" = Option<String>, Query, description = "Only events at or before this position"),
    ),
    responses(
        (status = 200, description = "A page of events; `nextVersion` is absent at the end", body = StreamEventsResponse),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn read_stream(
    State(state): State<AppState>,
    PathParams(stream): PathParams<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<StreamEventsResponse>, ApiError> {
    let stream = stream_name(stream)?;
    let query = Query::parse(query);
    let direction = query.direction()?;
    let limit = query.limit(READ_LIMIT_DEFAULT, READ_LIMIT_MAX)?;
    let from = match query.parsed::<Version>("from", "a version (a number from 0)")? {
        Some(v) => StreamFrom::Version(v),
        None if direction == Direction::Backward => StreamFrom::End,
        None => StreamFrom::Start,
    };
    let options = ReadStream {
        from,
        direction,
        // One more than asked, to learn whether there is a next page.
        limit: limit + 1,
        as_of: query.as_of()?,
    };
    let mut events = state.store.read_stream(&stream, options).await?;
    let next_version = (events.len() > limit).then(|| events[limit].version);
    events.truncate(limit);
    Ok(Json(StreamEventsResponse {
        events: events.iter().map(EventJson::from).collect(),
        next_version,
    }))
}

/// One event of a stream.
#[utoipa::path(
    get,
    path = "/streams/{stream}/{version}",
    tag = "streams",
    params(
        ("stream" = String, Path, description = "The stream"),
        ("version" = u64, Path, description = "The event's version"),
    ),
    responses((status = 200, description = "The event", body = EventJson), ReadErrors),
    security((), ("bearer" = []))
)]
pub async fn read_event(
    State(state): State<AppState>,
    PathParams((stream, version)): PathParams<(String, String)>,
) -> Result<Json<EventJson>, ApiError> {
    let stream = stream_name(stream)?;
    let version = version_segment(&version)?;
    match state.store.read_event(&stream, version).await? {
        Some(event) => Ok(Json(EventJson::from(&event))),
        None => Err(ApiError::new(
            ProblemKind::EventNotFound,
            format!("stream {stream} has no event at version {version}"),
        )
        .with("stream", stream.as_str())
        .with("version", version)),
    }
}

/// One event by its id, whatever its stream.
#[utoipa::path(
    get,
    path = "/events/{eventId}",
    tag = "streams",
    params(("eventId" = String, Path, description = "The event's id, a UUID")),
    responses((status = 200, description = "The event", body = EventJson), ReadErrors),
    security((), ("bearer" = []))
)]
pub async fn read_event_by_id(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<EventJson>, ApiError> {
    let id = event_id_segment(&id)?;
    match state.store.read_event_by_id(id).await? {
        Some(event) => Ok(Json(EventJson::from(&event))),
        None => Err(ApiError::new(
            ProblemKind::EventNotFound,
            format!("no event has the id {id}"),
        )
        .with("eventId", id.to_string())),
    }
}

/// What a stream holds.
#[utoipa::path(
    get,
    path = "/streams/{stream}/info",
    tag = "streams",
    params(("stream" = String, Path, description = "The stream")),
    responses((status = 200, description = "The stream's versions and times", body = StreamInfoJson), ReadErrors),
    security((), ("bearer" = []))
)]
pub async fn stream_info(
    State(state): State<AppState>,
    PathParams(stream): PathParams<String>,
) -> Result<Json<StreamInfoJson>, ApiError> {
    let stream = stream_name(stream)?;
    match state.store.stream_info(&stream).await? {
        Some(info) => Ok(Json(StreamInfoJson::from(&info))),
        None => Err(factlog_store::ReadError::StreamNotFound(stream).into()),
    }
}

/// Stream names in byte order, a page at a time.
#[utoipa::path(
    get,
    path = "/streams",
    tag = "streams",
    params(
        ("prefix" = Option<String>, Query, description = "Only names starting with this"),
        ("after" = Option<String>, Query, description = "Only names after this one (`nextAfter` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "At most this many names (1 to 10000, default 1000)"),
    ),
    responses((status = 200, description = "A page of names", body = StreamsResponse), ReadErrors),
    security((), ("bearer" = []))
)]
pub async fn list_streams(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<StreamsResponse>, ApiError> {
    let query = Query::parse(query);
    let options = ListStreams {
        prefix: query.get("prefix")?.unwrap_or_default().to_owned(),
        after: query.get("after")?.map(str::to_owned),
        limit: query.limit(LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX)?,
    };
    let page = state.store.list_streams(options).await?;
    Ok(Json(StreamsResponse {
        streams: page
            .streams
            .into_iter()
            .map(StreamName::into_string)
            .collect(),
        next_after: page.next_after,
    }))
}

/// Every category (the part of a stream name before the first `-`).
#[utoipa::path(
    get,
    path = "/categories",
    tag = "streams",
    responses((status = 200, description = "The categories in byte order", body = CategoriesResponse), CommonErrors),
    security((), ("bearer" = []))
)]
pub async fn categories(
    State(state): State<AppState>,
) -> Result<Json<CategoriesResponse>, ApiError> {
    Ok(Json(CategoriesResponse {
        categories: state.store.categories().await?,
    }))
}

/// Read `$all`, every event of the store in order, filtered.
#[utoipa::path(
    get,
    path = "/all",
    tag = "all",
    params(
        ("from" = Option<String>, Query, description = "The first position to read (default: the start, or the end going backward)"),
        ("limit" = Option<usize>, Query, description = "At most this many events (1 to 10000, default 100)"),
        ("direction" = Option<String>, Query, description = "`forward` (default) or `backward`"),
        ("types" = Option<String>, Query, description = "Only these event types, comma-separated"),
        ("prefix" = Option<String>, Query, description = "Only streams whose name starts with this"),
        ("category" = Option<String>, Query, description = "Only streams of this category"),
        ("asOf" = Option<String>, Query, description = "Only events recorded at or before this RFC 3339 time; a time with at most 3 fractional digits means the end of that millisecond"),
        ("asOfPosition" = Option<String>, Query, description = "Only events at or before this position"),
    ),
    responses(
        (status = 200, description = "A page of events; `nextPosition` is absent at the end", body = AllEventsResponse),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn read_all(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<AllEventsResponse>, ApiError> {
    let query = Query::parse(query);
    let direction = query.direction()?;
    let limit = query.limit(READ_LIMIT_DEFAULT, READ_LIMIT_MAX)?;
    let from = match query.parsed::<Position>("from", "a position")? {
        Some(p) => AllFrom::Position(p),
        None if direction == Direction::Backward => AllFrom::End,
        None => AllFrom::Start,
    };
    let options = ReadAll {
        from,
        direction,
        limit: limit + 1,
        filter: query.filter()?,
        as_of: query.as_of()?,
    };
    let mut events = state.store.read_all(options).await?;
    let next_position = (events.len() > limit).then(|| PositionJson(events[limit].position));
    events.truncate(limit);
    Ok(Json(AllEventsResponse {
        events: events.iter().map(EventJson::from).collect(),
        next_position,
    }))
}

// ---------------------------------------------------------------------------------------------
// Operations

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Alive", body = HealthResponse),
        (status = 503, description = "The store is closed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn health(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    let end = state.store.end_position().await?;
    Ok(Json(HealthResponse {
        status: "ok".into(),
        end_position: Some(PositionJson(end)),
    }))
}

/// Readiness: the store accepts appends and the server is not shutting down.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "Not ready, and why", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    if *state.shutdown.borrow() {
        return Err(
            ApiError::new(ProblemKind::Unavailable, "the server is shutting down")
                .with("reason", "shutting-down"),
        );
    }
    if let Some(store) = &state.embedded
        && store.is_closed()
    {
        return Err(
            ApiError::new(ProblemKind::Unavailable, "the store is closed").with("reason", "closed"),
        );
    }
    if let Some(store) = &state.embedded
        && let Some(reason) = store.stats().writer_failed
    {
        return Err(ApiError::new(
            ProblemKind::Unavailable,
            format!("the store stopped accepting appends: {reason}"),
        )
        .with("reason", reason));
    }
    let end = state.store.end_position().await?;
    Ok(Json(HealthResponse {
        status: "ok".into(),
        end_position: Some(PositionJson(end)),
    }))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text"),
        CommonErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let end = state.store.end_position().await?;
    let text = state.metrics.encode(end.raw());
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn valid_backup_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// An online, consistent backup of the embedded store into a new directory of the server's
/// backup directory (`--backup-dir`); appends go on meanwhile. Restore it with `factlog restore`.
#[utoipa::path(
    post,
    path = "/admin/backup",
    tag = "operations",
    request_body(content = BackupRequest),
    responses(
        (status = 201, description = "The backup is complete and synced", body = BackupResponse),
        (status = 409, description = "`backup-exists`, or `not-configured`: no backup directory, or not the embedded store", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`disk-full`", body = Problem, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn admin_backup(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<BackupRequest>,
) -> Result<Response, ApiError> {
    let (Some(store), Some(backup_dir)) = (&state.embedded, &state.config.backup_dir) else {
        return Err(ApiError::new(
            ProblemKind::NotConfigured,
            "backups over HTTP need the embedded store and a backup directory (--backup-dir)",
        ));
    };
    if !valid_backup_name(&request.name) {
        return Err(ApiError::new(
            ProblemKind::InvalidParameter,
            format!(
                "backup name {:?}: use 1 to 100 of A-Z a-z 0-9 . _ -, not starting with .",
                request.name
            ),
        )
        .with("parameter", "name"));
    }
    let directory = backup_dir.join(&request.name);
    if directory.exists() {
        return Err(ApiError::new(
            ProblemKind::BackupExists,
            format!("{} exists; choose another name", directory.display()),
        )
        .with("name", request.name));
    }
    let (store, target) = (store.clone(), directory.clone());
    let report = tokio::task::spawn_blocking(move || store.backup(&target))
        .await
        .map_err(|e| ApiError::new(ProblemKind::Internal, e.to_string()))?
        .map_err(|e| {
            let detail = e.to_string();
            match e {
                factlog_log::BackupError::DestinationNotEmpty { .. } => {
                    ApiError::new(ProblemKind::BackupExists, detail)
                }
                factlog_log::BackupError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    ApiError::new(ProblemKind::DiskFull, detail)
                }
                _ => ApiError::new(ProblemKind::BackupFailed, detail),
            }
        })?;
    let body = BackupResponse {
        name: request.name,
        directory: directory.display().to_string(),
        end_position: PositionJson(report.end_position),
        events: report.events,
        segments: report.segments,
        bytes: report.bytes,
        created_at: report.created_at.to_rfc3339_millis(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The embedded engine's statistics.
#[utoipa::path(
    get,
    path = "/admin/stats",
    tag = "operations",
    responses(
        (status = 200, description = "What the engine has done since it opened", body = Object),
        CommonErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn admin_stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(store) = &state.embedded else {
        return Err(ApiError::new(
            ProblemKind::NotFound,
            "statistics are kept by the embedded store only",
        ));
    };
    let s = store.stats();
    Ok(Json(serde_json::json!({
        "syncMode": format!("{:?}", s.sync_mode),
        "appends": s.appends,
        "eventsWritten": s.events_written,
        "bytesWritten": s.bytes_written,
        "writeBatches": s.write_batches,
        "fsyncs": s.fsyncs,
        "fsyncMaxMillis": s.fsync_max.as_secs_f64() * 1000.0,
        "idempotentRetries": s.idempotent_retries,
        "wrongExpectedVersion": s.wrong_expected_version,
        "diskFull": s.disk_full,
        "checkpoints": s.checkpoints,
        "writerFailed": s.writer_failed,
        "events": s.events,
        "streams": s.streams,
        "segments": s.segments,
    }))
    .into_response())
}
