//! What the server tests share: a real server on 127.0.0.1:0 over an embedded store in a
//! temporary directory, checks of problem answers, a reader of the Prometheus text, a minimal
//! Server-Sent Events parser, and polling with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use factlog_api::{PROBLEM_CONTENT_TYPE, ProblemKind};
use factlog_log::{Clock, EmbeddedStore, Options};
use factlog_server::{Backend, Config, Server};
use factlog_store::Timestamp;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;

/// How long a test waits for anything the server should do promptly.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub server: Option<Server>,
    pub store: Arc<EmbeddedStore>,
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(Config::default()).await
    }

    pub async fn with_config(config: Config) -> Self {
        Self::with(config, Options::default()).await
    }

    /// Always listens on 127.0.0.1 with a port of the kernel's choosing, whatever `config` says.
    pub async fn with(config: Config, options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), options).unwrap());
        let backend = Backend::embedded(store.clone());
        Self::with_backend(config, dir, store, backend).await
    }

    /// Serves `backend` (over `store`, in `dir`), such as one with projections.
    pub async fn with_backend(
        mut config: Config,
        dir: tempfile::TempDir,
        store: Arc<EmbeddedStore>,
        backend: Backend,
    ) -> Self {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::start(config, backend).await.unwrap();
        let url = server.url();
        Self {
            server: Some(server),
            store,
            url,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.store.close();
    }

    /// Events in the store, by the embedded engine's own count.
    pub fn events(&self) -> u64 {
        self.store.stats().events
    }

    /// `POST /streams/{stream}` with a JSON body and, when given, an `Expected-Version`.
    pub async fn append(
        &self,
        stream: &str,
        expected: Option<&str>,
        events: &Value,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(&format!("/streams/{stream}")));
        if let Some(expected) = expected {
            request = request.header("expected-version", expected);
        }
        request.json(events).send().await.unwrap()
    }

    /// Appends and checks the `201`; returns the body.
    pub async fn append_ok(&self, stream: &str, expected: Option<&str>, events: &Value) -> Value {
        let response = self.append(stream, expected, events).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 201, "append to {stream}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET path`, checking the `200`; returns the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Opens a Server-Sent Events subscription at `path`, resuming after `last_event_id`.
    pub async fn subscribe(&self, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = self.http.get(self.url(path));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Sse::new(request.send().await.unwrap()).await
    }
}

/// `n` new events of type `event_type`, their data numbered from `first`.
pub fn new_events(event_type: &str, first: usize, n: usize) -> Value {
    Value::Array(
        (first..first + n)
            .map(|i| serde_json::json!({"eventType": event_type, "data": {"n": i}}))
            .collect(),
    )
}

/// Checks that `response` is the problem `kind`: its status, `application/problem+json`, and a
/// body with the kind's `type`, `title` and `status` and a `detail`. Returns the body.
pub async fn expect_problem(response: reqwest::Response, kind: ProblemKind) -> Value {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(
        status,
        kind.status(),
        "expected {} ({}), got {status}: {text}",
        kind.slug(),
        kind.status()
    );
    assert_eq!(
        content_type.as_deref(),
        Some(PROBLEM_CONTENT_TYPE),
        "content type of {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["type"], kind.type_uri(), "{text}");
    assert_eq!(body["status"], kind.status(), "{text}");
    assert_eq!(body["title"], kind.title(), "{text}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{text}"
    );
    body
}

/// Whether `text` is RFC 3339 in UTC with exactly three fractional digits, such as
/// `2026-11-23T10:15:00.123Z`.
pub fn is_utc_millis(text: &str) -> bool {
    let Some(rest) = text.strip_suffix('Z') else {
        return false;
    };
    let Some((seconds, fraction)) = rest.split_once('.') else {
        return false;
    };
    fraction.len() == 3
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && seconds.len() == "2026-11-23T10:15:00".len()
        && seconds.as_bytes()[10] == b'T'
        && Timestamp::parse_rfc3339(text).is_ok()
}

/// The value of one sample of the Prometheus text, such as `factlog_appends_total` or
/// `factlog_errors_total{kind="not-found"}`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().unwrap())
        })
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A clock the test sets; the store records events at its time.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(rfc3339: &str) -> Arc<Self> {
        let clock = Arc::new(Self(AtomicI64::new(0)));
        clock.set(rfc3339);
        clock
    }

    pub fn set(&self, rfc3339: &str) {
        let t = Timestamp::parse_rfc3339(rfc3339).unwrap();
        self.0.store(t.unix_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(self.0.load(Ordering::SeqCst))
    }
}

/// One Server-Sent Events message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseMessage {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

/// What a Server-Sent Events stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    Message(SseMessage),
    /// A line starting with `:`, without the colon.
    Comment(String),
    /// The response body ended cleanly.
    End,
}

/// A minimal parser of `text/event-stream` (the WHATWG rules the server's output needs: lines
/// ended by `\n`, `\r\n` or `\r`, `field: value` with one optional space, comments, and a blank
/// line to dispatch a message).
pub struct Sse {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: Vec<u8>,
    pending: SseMessage,
    has_fields: bool,
    ended: bool,
}

impl Sse {
    /// Checks that `response` is a `200` event stream.
    pub async fn new(response: reqwest::Response) -> Self {
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        if status != 200 {
            panic!(
                "subscription answered {status}: {}",
                response.text().await.unwrap()
            );
        }
        assert_eq!(content_type.as_deref(), Some("text/event-stream"));
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            pending: SseMessage::default(),
            has_fields: false,
            ended: false,
        }
    }

    /// The next item; fails the test after [`DEADLINE`] or on a transport error.
    pub async fn next_item(&mut self) -> SseItem {
        match tokio::time::timeout(DEADLINE, self.next_item_unbounded()).await {
            Ok(item) => item,
            Err(_) => panic!("no Server-Sent Events item within {DEADLINE:?}"),
        }
    }

    /// The next message, skipping comments; `None` when the stream ended.
    pub async fn next_message(&mut self) -> Option<SseMessage> {
        loop {
            match self.next_item().await {
                SseItem::Message(message) => return Some(message),
                SseItem::Comment(_) => {}
                SseItem::End => return None,
            }
        }
    }

    async fn next_item_unbounded(&mut self) -> SseItem {
        loop {
            if let Some(line) = self.take_line() {
                if let Some(item) = self.line(&line) {
                    return item;
                }
                continue;
            }
            if self.ended {
                return SseItem::End;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("the event stream failed: {e}"),
                None => {
                    self.ended = true;
                    // A message without its blank line is incomplete: dropped, as the spec says.
                    self.buffer.clear();
                }
            }
        }
    }

    /// The next complete line of the buffer, without its end.
    fn take_line(&mut self) -> Option<String> {
        let end = self.buffer.iter().position(|&b| b == b'\n' || b == b'\r')?;
        // A `\r` at the end of the buffer may be the first half of a `\r\n`.
        if self.buffer[end] == b'\r' && end + 1 == self.buffer.len() && !self.ended {
            return None;
        }
        let skip = if self.buffer[end] == b'\r' && self.buffer.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        let line: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
        Some(String::from_utf8(line).expect("the event stream is UTF-8"))
    }

    fn line(&mut self, line: &str) -> Option<SseItem> {
        if line.is_empty() {
            if !self.has_fields {
                return None;
            }
            self.has_fields = false;
            let mut message = std::mem::take(&mut self.pending);
            if message.data.ends_with('\n') {
                message.data.pop();
            }
            return Some(SseItem::Message(message));
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Some(SseItem::Comment(comment.trim_start().to_owned()));
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        self.has_fields = true;
        match field {
            "id" => self.pending.id = Some(value.to_owned()),
            "event" => self.pending.event = Some(value.to_owned()),
            "data" => {
                self.pending.data.push_str(value);
                self.pending.data.push('\n');
            }
            other => panic!("unexpected field {other:?} in the event stream"),
        }
        None
    }
}
