//! Subscriptions over Server-Sent Events, resumed after a dropped connection.
//!
//! A subscription is one `GET /subscribe/...` whose body is read as it arrives, parsed by
//! [`crate::sse::Parser`], and handed out event by event (so a slow consumer slows the reading
//! and holds at most one body chunk). When the connection drops, the body ends, or nothing (not
//! even a keep-alive) arrives for the idle timeout, the subscription asks again with
//! `Last-Event-ID` set to the id of the last event it handed out: the server continues after
//! that event, so the consumer sees no gap and no duplicate. A frame cut off by the drop was
//! never handed out and comes again.
//!
//! Resuming is bounded: after `reconnect_attempts_max` failures in a row (the count starts again
//! whenever something arrives), the subscription ends with `ReadError::Backend`. An answer that
//! cannot get better by waiting (a bad request, no rights, a closed store) and an `event: error`
//! frame end it at once with the error they stand for.
//!
//! The first request is sent when `subscribe_*` is called (when called on a Tokio runtime), not
//! when the stream is first polled, so that `End` means the end at the call. One gap remains: a
//! subscription from `End` that loses its connection before its first event asks for `end`
//! again, so events appended while it was away are not delivered (until an event arrives there
//! is no id to resume after, and positions are opaque).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use factlog_api::{EventJson, Problem};
use factlog_store::{ReadError, RecordedEvent, SubscribeError, Subscription};
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Url;
use tokio::sync::oneshot;

use crate::failure::Failure;
use crate::http::Http;
use crate::sse::{Frame, Item, Parser};

/// The first wait before resuming; it doubles with each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait before resuming.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the ids of a subscription's events are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ids {
    /// `$all`: positions.
    Positions,
    /// One stream: versions.
    Versions,
}

/// Starts a subscription on `url` (the route and its filters), from `from`: `start`, `end`, or
/// the id of the event to continue after.
pub(crate) fn subscribe(http: Arc<Http>, url: Url, from: String, ids: Ids) -> Subscription {
    let mut first_url = url.clone();
    first_url.query_pairs_mut().append_pair("from", &from);
    let first = tokio::runtime::Handle::try_current().ok().map(|runtime| {
        let (tx, rx) = oneshot::channel();
        // Only `end` depends on when the server gets the request.
        let guard = (from == "end").then(|| http.hold_requests());
        let http = http.clone();
        let first_url = first_url.clone();
        runtime.spawn(async move {
            let answer = http.open_events(&first_url, None).await;
            drop(guard);
            // A subscription dropped before its first poll no longer wants the answer.
            let _ = tx.send(answer);
        });
        rx
    });
    let follow = Follow {
        http,
        url,
        first_url: Some(first_url),
        first,
        ids,
        last_id: None,
        body: None,
        parser: Parser::default(),
        ready: VecDeque::new(),
        failures: 0,
        done: false,
    };
    futures::stream::unfold(follow, |mut follow| async move {
        let item = follow.next().await?;
        Some((item, follow))
    })
    .boxed()
}

/// A subscription that failed before it was sent (such as a stream name the URL cannot hold).
pub(crate) fn failed(error: ReadError) -> Subscription {
    futures::stream::once(async move { Err(SubscribeError::Read(error)) }).boxed()
}

/// The state of one subscription between events.
struct Follow {
    http: Arc<Http>,
    /// The route and its filters, without `from`.
    url: Url,
    /// The route with the first `from`, until an event has been handed out; after that,
    /// requests resume with `Last-Event-ID`.
    first_url: Option<Url>,
    /// The answer to the first request, sent when the subscription was made.
    first: Option<oneshot::Receiver<Result<reqwest::Response, Failure>>>,
    ids: Ids,
    /// The id of the last event handed out.
    last_id: Option<String>,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    parser: Parser,
    /// Items parsed and not yet handed out.
    ready: VecDeque<Item>,
    /// Failures since something last arrived.
    failures: u32,
    done: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Result<RecordedEvent, SubscribeError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(item) = self.ready.pop_front() {
                self.failures = 0;
                if let Item::Frame(frame) = item {
                    let result = self.event(frame);
                    self.done = result.is_err();
                    return Some(result);
                }
                continue;
            }
            let Some(body) = self.body.as_mut() else {
                match self.connect().await {
                    Ok(response) => {
                        self.body = Some(response.bytes_stream().boxed());
                        self.parser = Parser::default();
                    }
                    Err(failure) => {
                        if let Some(error) = self.failed(failure).await {
                            self.done = true;
                            return Some(Err(error));
                        }
                    }
                }
                continue;
            };
            let dropped = match tokio::time::timeout(self.http.idle_timeout, body.next()).await {
                Ok(Some(Ok(chunk))) => match self.parser.push(&chunk, &mut self.ready) {
                    Ok(()) => continue,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(ReadError::Backend(format!("{}: {e}", self.url)).into()));
                    }
                },
                Ok(Some(Err(e))) => crate::failure::error_chain(&e.without_url()),
                Ok(None) => "the server ended the stream".to_owned(),
                Err(_) => format!(
                    "nothing arrived for {:?}, not even a keep-alive",
                    self.http.idle_timeout
                ),
            };
            self.body = None;
            let failure = Failure::Transport {
                request: format!("GET {}", self.url),
                reason: dropped,
                timed_out: false,
            };
            if let Some(error) = self.failed(failure).await {
                self.done = true;
                return Some(Err(error));
            }
        }
    }

    /// Sends the request (or takes the answer to the one sent when the subscription was made).
    async fn connect(&mut self) -> Result<reqwest::Response, Failure> {
        if let Some(first) = self.first.take() {
            return match first.await {
                Ok(answer) => answer,
                Err(_) => Err(Failure::Transport {
                    request: format!("GET {}", self.url),
                    reason: "the first request was cancelled".to_owned(),
                    timed_out: false,
                }),
            };
        }
        match (&self.last_id, &self.first_url) {
            (Some(id), _) => self.http.open_events(&self.url, Some(id)).await,
            (None, Some(first_url)) => self.http.open_events(first_url, None).await,
            (None, None) => unreachable!("the first URL is kept until an event has an id"),
        }
    }

    /// Counts a failure and waits before the next attempt; or returns the error that ends the
    /// subscription, when waiting cannot help or the attempts are used up.
    async fn failed(&mut self, failure: Failure) -> Option<SubscribeError> {
        if !failure.is_transient() {
            return Some(failure.subscribe_error());
        }
        self.failures += 1;
        if self.failures > self.http.reconnect_attempts_max {
            let after = match &self.last_id {
                Some(id) => format!("after event {id}"),
                None => "before its first event".to_owned(),
            };
            return Some(
                ReadError::Backend(format!(
                    "the subscription lost its connection {after} and {} attempts to resume \
                     failed; the last: {failure}",
                    self.http.reconnect_attempts_max
                ))
                .into(),
            );
        }
        tokio::time::sleep(backoff(self.failures)).await;
        None
    }

    /// The event in a frame, or the error an `event: error` frame carries.
    fn event(&mut self, frame: Frame) -> Result<RecordedEvent, SubscribeError> {
        let request = format!("GET {}", self.url);
        let json = match serde_json::from_str::<EventJson>(&frame.data) {
            Ok(json) => json,
            Err(e) => {
                // The server ends a failed subscription with `event: error` and a problem. (An
                // event type may be called `error` too, so an event's JSON wins.)
                if frame.event == "error"
                    && let Ok(problem) = serde_json::from_str::<Problem>(&frame.data)
                {
                    return Err(Failure::Status {
                        request,
                        status: problem.status,
                        problem: Some(problem),
                        body: String::new(),
                    }
                    .subscribe_error());
                }
                return Err(Failure::Body {
                    request,
                    reason: format!("event {:?}: {e}", frame.event),
                }
                .read_error()
                .into());
            }
        };
        let event = json.into_recorded().map_err(|reason| {
            SubscribeError::from(
                Failure::Body {
                    request,
                    reason: format!("event {:?}: {reason}", frame.event),
                }
                .read_error(),
            )
        })?;
        let id = frame.id.unwrap_or_else(|| match self.ids {
            Ids::Positions => event.position.to_string(),
            Ids::Versions => event.version.to_string(),
        });
        self.last_id = Some(id);
        self.first_url = None;
        Ok(event)
    }
}

/// The wait before attempt `failures` (from 1).
fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let waits: Vec<u128> = (1..=12).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(
            waits,
            [
                100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000, 5000
            ]
        );
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
