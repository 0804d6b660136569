//! The HTTP side of the client: the connection pool with its token, certificates and timeouts,
//! the URLs of the API's routes, and one request as a `Result<T, Failure>`.

use std::sync::Arc;
use std::time::Duration;

use factlog_store::StreamName;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::failure::Failure;

/// The shared state of an [`crate::HttpStore`] and its subscriptions.
#[derive(Debug)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    /// The server's base URL, ending without a slash in its path.
    pub base: Url,
    /// How long a request may take, from sending it to the end of the answer (for a
    /// subscription: to the answer's headers).
    pub timeout: Duration,
    /// How long a subscription may receive nothing (not even a keep-alive) before it is
    /// considered dropped and resumed.
    pub idle_timeout: Duration,
    /// How many times in a row a subscription tries to resume before it ends with an error.
    pub reconnect_attempts_max: u32,
    /// Subscriptions from `End` whose request the server has not answered yet. Requests wait
    /// until there are none, so that "from the end" means the end when `subscribe_*` was called,
    /// as this client sees it: an append made after the call is always delivered. Counted up by
    /// `subscribe_*` when it sends the request, down by the guard when the answer arrives.
    handshakes: Arc<watch::Sender<usize>>,
}

/// Holds requests back until the server has answered one subscription request.
#[derive(Debug)]
pub(crate) struct HandshakeGuard(Arc<watch::Sender<usize>>);

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Http {
    pub(crate) fn new(
        client: reqwest::Client,
        base: Url,
        timeout: Duration,
        idle_timeout: Duration,
        reconnect_attempts_max: u32,
    ) -> Self {
        Self {
            client,
            base,
            timeout,
            idle_timeout,
            reconnect_attempts_max,
            handshakes: Arc::new(watch::channel(0).0),
        }
    }

    /// Counts a subscription request as in flight until the guard is dropped.
    pub(crate) fn hold_requests(&self) -> HandshakeGuard {
        self.handshakes.send_modify(|n| *n += 1);
        HandshakeGuard(self.handshakes.clone())
    }

    async fn handshakes_done(&self) {
        let mut pending = self.handshakes.subscribe();
        // The sender lives in `self`, so the wait ends only when the count is zero.
        let _ = pending.wait_for(|n| *n == 0).await;
    }

    /// The URL of a route made of fixed segments, such as `["subscribe", "all"]`.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("the base URL is checked to be a base when the store is built")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// The URL of a route under `/streams/{stream}` (or `/subscribe/streams/{stream}`), the name
    /// percent-encoded as one path segment.
    pub(crate) fn stream_url(
        &self,
        before: &[&str],
        stream: &StreamName,
        after: &[&str],
    ) -> Result<Url, String> {
        // URL parsers drop `.` and `..` segments (also written `%2E`), so these names cannot
        // travel in a path; the server would see another route.
        if matches!(stream.as_str(), "." | "..") {
            return Err(format!(
                "the stream name {:?} cannot be used in a URL path (it is a dot segment), so the \
                 HTTP API cannot address it; use another name",
                stream.as_str()
            ));
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("the base URL is checked to be a base when the store is built")
            .pop_if_empty()
            .extend(before)
            .push(stream.as_str())
            .extend(after);
        Ok(url)
    }

    /// `GET url`, answered with JSON.
    pub(crate) async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, Failure> {
        self.call(Method::GET, url, None, None).await
    }

    /// `POST url` with a JSON body (and a header, such as `Expected-Version`), answered with JSON.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        url: Url,
        body: Vec<u8>,
        header: Option<(HeaderName, HeaderValue)>,
    ) -> Result<T, Failure> {
        self.call(Method::POST, url, Some(body), header).await
    }

    /// `POST url` without a body, answered with JSON.
    pub(crate) async fn post_empty<T: DeserializeOwned>(&self, url: Url) -> Result<T, Failure> {
        self.call(Method::POST, url, None, None).await
    }

    /// `POST url` without a body, answered with JSON or with `204 No Content` (`None`).
    pub(crate) async fn post_empty_optional<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, Failure> {
        let (request, status, body) = self.send(Method::POST, url, None, None).await?;
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| Failure::Body {
                request,
                reason: e.to_string(),
            })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        header: Option<(HeaderName, HeaderValue)>,
    ) -> Result<T, Failure> {
        let (request, _, body) = self.send(method, url, body, header).await?;
        serde_json::from_slice(&body).map_err(|e| Failure::Body {
            request,
            reason: e.to_string(),
        })
    }

    /// Sends one request; returns the request (for messages), the success status and the body.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        header: Option<(HeaderName, HeaderValue)>,
    ) -> Result<(String, reqwest::StatusCode, bytes::Bytes), Failure> {
        self.handshakes_done().await;
        let request = format!("{method} {url}");
        let mut builder = self
            .client
            .request(method, url)
            .timeout(self.timeout)
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            builder = builder.header(CONTENT_TYPE, "application/json").body(body);
        }
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| Failure::transport(request.clone(), &e.without_url()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::transport(request.clone(), &e.without_url()))?;
        if !status.is_success() {
            return Err(Failure::from_answer(request, status.as_u16(), &body));
        }
        Ok((request, status, body))
    }

    /// Opens a Server-Sent Events stream: `GET url`, resuming after `last_event_id` when given.
    /// Returns once the server has answered with the headers of the stream.
    pub(crate) async fn open_events(
        &self,
        url: &Url,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let request = format!("GET {url}");
        let mut builder = self
            .client
            .get(url.clone())
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        // No total timeout on the request: the body is endless. The answer's headers are due
        // within the request timeout, and the body is watched for silence by the subscription.
        let response = match tokio::time::timeout(self.timeout, builder.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(Failure::transport(request, &e.without_url())),
            Err(_) => {
                return Err(Failure::Transport {
                    request,
                    reason: format!("no answer within {:?}", self.timeout),
                    timed_out: true,
                });
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body = tokio::time::timeout(self.timeout, response.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(Failure::from_answer(request, status.as_u16(), &body));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return Err(Failure::Body {
                request,
                reason: format!("the content type is {content_type:?}, not text/event-stream"),
            });
        }
        Ok(response)
    }
}
