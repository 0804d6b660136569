//! Live subscriptions as Server-Sent Events.
//!
//! Each event is one SSE message: `id:` its position (its version on a stream subscription),
//! `event:` its type, `data:` the event as one line of JSON. A client resumes with the standard
//! `Last-Event-ID` header (or `from=<id>`): the subscription continues *after* that event, with
//! the store's catch-up-then-live guarantee, so there is no gap and no duplicate. A quiet stream
//! gets a keep-alive comment every `keep_alive_interval`. An error ends the stream with one
//! `event: error` message whose data is a problem document. Shutdown ends every stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use factlog_api::{EventJson, Problem};
use factlog_store::{Position, RecordedEvent, SubscribeFrom, Subscription, Version};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::ReadErrors;
use crate::routes::{PathParams, Query, stream_name};

/// Where to start: the `Last-Event-ID` header wins over `from=`; each is `start`, `end`, or the
/// id of the last event the client has.
fn start<T: std::str::FromStr>(
    headers: &HeaderMap,
    query: &Query,
    what: &str,
) -> Result<SubscribeFrom<T>, ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().unwrap_or("").trim();
        return text.parse().map(SubscribeFrom::After).map_err(|_| {
            ApiError::new(
                factlog_api::ProblemKind::InvalidHeader,
                format!("Last-Event-ID {text:?} is not {what}"),
            )
            .with("header", "Last-Event-ID")
        });
    }
    match query.get("from")? {
        None | Some("start") => Ok(SubscribeFrom::Start),
        Some("end") => Ok(SubscribeFrom::End),
        Some(text) => text.parse().map(SubscribeFrom::After).map_err(|_| {
            ApiError::invalid_parameter("from", format!("{text:?} is not start, end or {what}"))
        }),
    }
}

/// Follow `$all`: catch-up, then live.
#[utoipa::path(
    get,
    path = "/subscribe/all",
    tag = "subscriptions",
    params(
        ("from" = Option<String>, Query, description = "`start` (default), `end`, or the position of the last event you have"),
        ("types" = Option<String>, Query, description = "Only these event types, comma-separated"),
        ("prefix" = Option<String>, Query, description = "Only streams whose name starts with this"),
        ("category" = Option<String>, Query, description = "Only streams of this category"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position (wins over `from`)"),
    ),
    responses(
        (status = 200, description = "An endless stream of events", body = String, content_type = "text/event-stream"),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn subscribe_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query);
    let from = start::<Position>(&headers, &query, "a position")?;
    let filter = query.filter()?;
    let subscription = state.store.subscribe_all(from, filter);
    Ok(sse(&state, subscription, |e| e.position.to_string()))
}

/// Follow one stream: catch-up, then live.
#[utoipa::path(
    get,
    path = "/subscribe/streams/{stream}",
    tag = "subscriptions",
    params(
        ("stream" = String, Path, description = "The stream"),
        ("from" = Option<String>, Query, description = "`start` (default), `end`, or the version of the last event you have"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this version (wins over `from`)"),
    ),
    responses(
        (status = 200, description = "An endless stream of events", body = String, content_type = "text/event-stream"),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
pub async fn subscribe_stream(
    State(state): State<AppState>,
    PathParams(stream): PathParams<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let stream = stream_name(stream)?;
    let query = Query::parse(query);
    let from = start::<Version>(&headers, &query, "a version")?;
    let subscription = state.store.subscribe_stream(stream, from);
    Ok(sse(&state, subscription, |e| e.version.to_string()))
}

/// Events at most coalesced into one write of the response body.
const CHUNK_EVENTS: usize = 256;

fn sse(state: &AppState, subscription: Subscription, id: fn(&RecordedEvent) -> String) -> Response {
    let guard = state.metrics.subscriber();
    let metrics = state.metrics.clone();
    let cache = state.event_json.clone();
    let mut shutdown = state.shutdown.clone();
    let stopped = async move {
        // Ends when shutdown begins, or when the server (and the sender) is gone.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    // Events that are ready together go out in one write; the JSON of an event is made once
    // and shared by every subscriber that sends it (see `EventJsonCache`).
    let events = subscription
        .take_until(stopped)
        .ready_chunks(CHUNK_EVENTS)
        .scan(false, move |failed, items| {
            if *failed {
                return std::future::ready(None);
            }
            let mut body = Vec::with_capacity(items.len() * 512);
            for item in items {
                match item {
                    Ok(event) => {
                        guard.delivered(event.position.raw());
                        let json = cache.json(&event);
                        body.extend_from_slice(b"id: ");
                        body.extend_from_slice(id(&event).as_bytes());
                        body.extend_from_slice(b"\nevent: ");
                        body.extend_from_slice(event.event_type.as_str().as_bytes());
                        body.extend_from_slice(b"\ndata: ");
                        body.extend_from_slice(&json);
                        body.extend_from_slice(b"\n\n");
                    }
                    Err(e) => {
                        *failed = true;
                        let problem: Problem = ApiError::from(e).0;
                        if let Some(kind) = problem.kind() {
                            metrics.error(kind);
                        }
                        body.extend_from_slice(b"event: error\ndata: ");
                        body.extend_from_slice(
                            &serde_json::to_vec(&problem).expect("a problem serializes"),
                        );
                        body.extend_from_slice(b"\n\n");
                        break;
                    }
                }
            }
            std::future::ready(Some(Bytes::from(body)))
        });
    let body = with_keep_alive(events, state.config.keep_alive_interval);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        // Proxies such as nginx must pass events on as they come.
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body.map(Ok::<_, Infallible>)))
        .expect("a valid response")
}

/// Adds a keep-alive comment whenever `events` has been quiet for `interval`; ends with it.
fn with_keep_alive(
    events: impl Stream<Item = Bytes> + Send + 'static,
    interval: Duration,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let quiet = tokio::time::sleep(interval);
    futures::stream::unfold(
        (Box::pin(events), Box::pin(quiet)),
        move |(mut events, mut quiet)| async move {
            let next = tokio::select! {
                item = events.next() => item?,
                _ = quiet.as_mut() => Bytes::from_static(b": keep-alive\n\n"),
            };
            quiet.as_mut().reset(tokio::time::Instant::now() + interval);
            Some((next, (events, quiet)))
        },
    )
}

/// The JSON of recent events, made once and shared by every subscriber: with a hundred
/// subscribers following the log, each event is serialized once rather than a hundred times.
/// A fixed ring of slots indexed by position; a slot holding another position is simply
/// overwritten.
pub struct EventJsonCache {
    slots: Vec<Mutex<Option<(u64, Bytes)>>>,
}

impl std::fmt::Debug for EventJsonCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventJsonCache")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl EventJsonCache {
    pub fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The event as one line of JSON.
    pub fn json(&self, event: &RecordedEvent) -> Bytes {
        let position = event.position.raw();
        let slot = &self.slots[(position % self.slots.len() as u64) as usize];
        if let Some((cached, json)) = &*slot.lock()
            && *cached == position
        {
            return json.clone();
        }
        let json = Bytes::from(
            serde_json::to_vec(&EventJson::from(event)).expect("an event always serializes"),
        );
        *slot.lock() = Some((position, json.clone()));
        json
    }
}
