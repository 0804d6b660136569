//! Live subscriptions as Server-Sent Events.
//!
//! Each event is one SSE message: `id:` its position (its version on a stream subscription),
//! `event:` its type, `data:` the event as one line of JSON. A client resumes with the standard
//! `Last-Event-ID` header (or `from=<id>`): the subscription continues *after* that event, with
//! the store's catch-up-then-live guarantee, so there is no gap and no duplicate. A quiet stream
//! gets a keep-alive comment every `keep_alive_interval`. An error ends the stream with one
//! `event: error` message whose data is a problem document. Shutdown ends every stream.

use std::convert::Infallible;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use factlog_api::{EventJson, Problem};
use factlog_store::{Position, RecordedEvent, SubscribeFrom, Subscription, Version};
use futures::{Stream, StreamExt};

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::ReadErrors;
use crate::routes::{Query, stream_name};

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
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, ApiError> {
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
    Path(stream): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, ApiError> {
    let stream = stream_name(stream)?;
    let query = Query::parse(query);
    let from = start::<Version>(&headers, &query, "a version")?;
    let subscription = state.store.subscribe_stream(stream, from);
    Ok(sse(&state, subscription, |e| e.version.to_string()))
}

fn sse(
    state: &AppState,
    subscription: Subscription,
    id: fn(&RecordedEvent) -> String,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let guard = state.metrics.subscriber();
    let metrics = state.metrics.clone();
    let mut shutdown = state.shutdown.clone();
    let stopped = async move {
        // Ends when shutdown begins, or when the server (and the sender) is gone.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let events = subscription
        .take_until(stopped)
        .scan(false, move |failed, item| {
            if *failed {
                return std::future::ready(None);
            }
            std::future::ready(Some(match item {
                Ok(event) => {
                    guard.delivered(event.position.raw());
                    let data = serde_json::to_string(&EventJson::from(&event))
                        .expect("an event always serializes");
                    Event::default()
                        .id(id(&event))
                        .event(event.event_type.as_str())
                        .data(data)
                }
                Err(e) => {
                    *failed = true;
                    let problem: Problem = ApiError::from(e).0;
                    if let Some(kind) = problem.kind() {
                        metrics.error(kind);
                    }
                    Event::default()
                        .event("error")
                        .data(serde_json::to_string(&problem).expect("a problem serializes"))
                }
            }))
        })
        .map(Ok);
    Sse::new(events).keep_alive(KeepAlive::new().interval(state.config.keep_alive_interval))
}
