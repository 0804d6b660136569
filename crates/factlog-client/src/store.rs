//! [`HttpStore`]: the store API implemented by calling a Factlog server.
//!
//! Each method is one route of the HTTP API (`docs/http-api.md`), or a few pages of one when a
//! read asks for more than the server answers at once. The JSON shapes are `factlog-api`'s, the
//! same types the server answers with.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use factlog_api::{
    AllEventsResponse, AppendResponse, CategoriesResponse, EXPECTED_VERSION_HEADER, EventJson,
    ExpectedVersionJson, HealthResponse, MultiAppendResponse, NewEventJson, ProblemKind,
    StreamAppendJson, StreamEventsResponse, StreamInfoJson, StreamsResponse,
};
use factlog_store::{
    AllFrom, AppendError, AppendResult, AsOf, Direction, EventFilter, EventId, EventStore,
    ExpectedVersion, ListStreams, NewEvent, Ordering, Position, ReadAll, ReadError, ReadStream,
    RecordedEvent, StreamAppend, StreamFrom, StreamInfo, StreamName, StreamPage, SubscribeFrom,
    Subscription, Timestamp, Version,
};
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::error::ClientError;
use crate::failure::Failure;
use crate::http::Http;
use crate::subscription::{self, Ids};

/// The most events the server returns for one read request (its `limit` maximum); longer reads
/// are made of several pages.
pub const PAGE_EVENTS_MAX: usize = 10_000;
/// The most stream names the server returns for one listing request.
pub const PAGE_STREAMS_MAX: usize = 10_000;
/// How long a request may take by default. Longer than the server's own request timeout (30 s),
/// so that a slow append is answered by the server's `timeout` problem rather than cut off here.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// How long a subscription may receive nothing by default before it resumes on a new
/// connection: four of the server's keep-alive intervals (15 s).
pub const SUBSCRIPTION_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// How many times in a row a subscription tries to resume by default.
pub const RECONNECT_ATTEMPTS_MAX_DEFAULT: u32 = 10;

/// The store API over HTTP: an [`EventStore`] backed by a running Factlog server.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct HttpStore {
    pub(crate) http: Arc<Http>,
    /// How the server's `$all` is ordered. `Total` (the embedded store behind today's server)
    /// from construction; kept as a field so that a server that says otherwise can set it.
    ordering: Ordering,
}

impl std::fmt::Debug for HttpStore {
    /// Without the token, which lives only in the connection pool's default headers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStore")
            .field("base_url", &self.http.base.as_str())
            .field("timeout", &self.http.timeout)
            .field("ordering", &self.ordering)
            .finish_non_exhaustive()
    }
}

/// Options of an [`HttpStore`]: see [`HttpStore::builder`].
pub struct HttpStoreBuilder {
    base_url: String,
    token: Option<String>,
    root_certificates_pem: Vec<Vec<u8>>,
    timeout: Duration,
    subscription_idle_timeout: Duration,
    reconnect_attempts_max: u32,
}

impl std::fmt::Debug for HttpStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStoreBuilder")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "********"))
            .field("root_certificates", &self.root_certificates_pem.len())
            .field("timeout", &self.timeout)
            .field("subscription_idle_timeout", &self.subscription_idle_timeout)
            .field("reconnect_attempts_max", &self.reconnect_attempts_max)
            .finish()
    }
}

impl HttpStoreBuilder {
    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Trusts the certificates in `pem` (one or more PEM `CERTIFICATE` blocks) as roots, in
    /// addition to the usual ones: for an `https://` server with a self-signed certificate.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates_pem.push(pem.into());
        self
    }

    /// How long a request may take, from sending it to the end of the answer (for a
    /// subscription: to the answer's headers). Default [`TIMEOUT_DEFAULT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a subscription may receive nothing, not even the server's keep-alive comments,
    /// before it resumes on a new connection. Keep it above the server's keep-alive interval.
    /// Default [`SUBSCRIPTION_IDLE_TIMEOUT_DEFAULT`].
    pub fn subscription_idle_timeout(mut self, timeout: Duration) -> Self {
        self.subscription_idle_timeout = timeout;
        self
    }

    /// How many times in a row a subscription tries to resume after its connection dropped
    /// before it ends with an error; the waits between attempts double from 100 ms up to 5 s.
    /// Default [`RECONNECT_ATTEMPTS_MAX_DEFAULT`].
    pub fn reconnect_attempts_max(mut self, attempts: u32) -> Self {
        self.reconnect_attempts_max = attempts;
        self
    }

    pub fn build(self) -> Result<HttpStore, ClientError> {
        let invalid_url = |reason: &str| ClientError::InvalidUrl {
            url: self.base_url.clone(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(&self.base_url).map_err(|e| invalid_url(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid_url("the scheme must be http or https"));
        }
        if base.host().is_none() || base.cannot_be_a_base() {
            return Err(invalid_url("it has no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid_url("a base URL has no query and no fragment"));
        }

        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::InvalidToken)?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(self.timeout);
        for pem in &self.root_certificates_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::InvalidCertificate(crate::failure::error_chain(&e)))?;
            if certificates.is_empty() {
                return Err(ClientError::InvalidCertificate(
                    "no CERTIFICATE block in the PEM text".to_owned(),
                ));
            }
            for certificate in certificates {
                client = client.add_root_certificate(certificate);
            }
        }
        let client = client
            .build()
            .map_err(|e| ClientError::Http(crate::failure::error_chain(&e)))?;
        Ok(HttpStore {
            http: Arc::new(Http::new(
                client,
                base,
                self.timeout,
                self.subscription_idle_timeout,
                self.reconnect_attempts_max,
            )),
            ordering: Ordering::Total,
        })
    }
}

impl HttpStore {
    /// A store that calls the server at `base_url` (such as `http://127.0.0.1:4470`), sending
    /// `token` as a bearer token when given. Nothing is sent until the first call.
    pub fn new(base_url: &str, token: Option<String>) -> Result<HttpStore, ClientError> {
        let builder = Self::builder(base_url);
        match token {
            Some(token) => builder.token(token),
            None => builder,
        }
        .build()
    }

    /// Options beyond the URL and the token: root certificates, timeouts, resuming.
    pub fn builder(base_url: &str) -> HttpStoreBuilder {
        HttpStoreBuilder {
            base_url: base_url.to_owned(),
            token: None,
            root_certificates_pem: Vec::new(),
            timeout: TIMEOUT_DEFAULT,
            subscription_idle_timeout: SUBSCRIPTION_IDLE_TIMEOUT_DEFAULT,
            reconnect_attempts_max: RECONNECT_ATTEMPTS_MAX_DEFAULT,
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.http.base.as_str()
    }
}

/// The JSON of the events: each one's data as `data` when that carries the bytes exactly, as
/// `dataBase64` otherwise, so that the server stores what was given byte for byte.
fn events_json(events: &[NewEvent]) -> Vec<NewEventJson> {
    events.iter().map(NewEventJson::from_new_event).collect()
}

fn body(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("API shapes always serialize")
}

fn recorded(events: Vec<EventJson>, request: &Url) -> Result<Vec<RecordedEvent>, ReadError> {
    events
        .into_iter()
        .map(|json| {
            json.into_recorded().map_err(|reason| {
                Failure::Body {
                    request: format!("GET {request}"),
                    reason: format!("an event: {reason}"),
                }
                .read_error()
            })
        })
        .collect()
}

/// `t` as the server's `asOf`: RFC 3339 in UTC with the milliseconds of `t`, which the server
/// reads as up to the end of that millisecond.
///
/// Every `recorded_at` this client returns is a whole millisecond (the API's `recordedAt`), so an
/// event it reports at or before `t` is one recorded by the end of `t`'s millisecond: sending the
/// microseconds of `t` instead would leave out the events of that millisecond recorded after `t`,
/// although they are reported at or before it. Times beyond what RFC 3339 can write (years 0000 to
/// 9999) are clamped to its ends.
pub(crate) fn as_of_text(t: Timestamp) -> String {
    const FIRST: i64 = -62_167_219_200_000_000; // 0000-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
    Timestamp::from_unix_micros(t.unix_micros().clamp(FIRST, LAST)).to_rfc3339_millis()
}

fn add_as_of(url: &mut Url, as_of: Option<AsOf>) {
    match as_of {
        None => {}
        Some(AsOf::Time(t)) => {
            url.query_pairs_mut().append_pair("asOf", &as_of_text(t));
        }
        Some(AsOf::Position(p)) => {
            url.query_pairs_mut()
                .append_pair("asOfPosition", &p.to_string());
        }
    }
}

fn add_filter(url: &mut Url, filter: &EventFilter) {
    let mut query = url.query_pairs_mut();
    if !filter.event_types.is_empty() {
        query.append_pair("types", &filter.event_types.join(","));
    }
    if let Some(prefix) = &filter.stream_prefix {
        query.append_pair("prefix", prefix);
    }
    if let Some(category) = &filter.category {
        query.append_pair("category", category);
    }
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
    }
}

/// The size of the next page of a read that has `got` of `limit` events. A read of 0 events
/// still asks for one (and drops it), so that it fails as any read would (a missing stream, a
/// closed store).
fn page_size(limit: usize, got: usize, max: usize) -> usize {
    (limit - got).clamp(1, max)
}

#[async_trait]
impl EventStore for HttpStore {
    fn ordering(&self) -> Ordering {
        self.ordering
    }

    /// `POST /streams/{stream}` with `Expected-Version`.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let json = events_json(&events);
        let url = match self.http.stream_url(&["streams"], stream, &[]) {
            Ok(url) => url,
            // `/append` carries the name in the body, where any name fits.
            Err(_) => {
                let mut results = self
                    .append_multi(vec![StreamAppend {
                        stream: stream.clone(),
                        expected,
                        events,
                    }])
                    .await?;
                return Ok(results.pop().expect("one result per stream"));
            }
        };
        let header = (
            HeaderName::from_static(EXPECTED_VERSION_HEADER),
            HeaderValue::from_str(&expected.to_string()).expect("an expected version is ASCII"),
        );
        let response: AppendResponse = self
            .http
            .post(url, body(&json), Some(header))
            .await
            .map_err(Failure::append_error)?;
        Ok(response.into())
    }

    /// `POST /append`.
    async fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        let parts = appends
            .iter()
            .map(|part| StreamAppendJson {
                stream: part.stream.as_str().to_owned(),
                expected_version: ExpectedVersionJson(part.expected),
                events: events_json(&part.events),
            })
            .collect::<Vec<_>>();
        let url = self.http.url(&["append"]);
        let request = format!("POST {url}");
        let response: MultiAppendResponse = self
            .http
            .post(url, body(&parts), None)
            .await
            .map_err(Failure::append_error)?;
        let in_order = response.results.len() == appends.len()
            && response
                .results
                .iter()
                .zip(&appends)
                .all(|(result, part)| result.stream == part.stream.as_str());
        if !in_order {
            return Err(Failure::Body {
                request,
                reason: "the results are not one per stream in the order of the request".into(),
            }
            .append_error());
        }
        Ok(response
            .results
            .into_iter()
            .map(|r| r.result.into())
            .collect())
    }

    /// `GET /streams/{stream}`, a page at a time.
    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let route = self
            .http
            .stream_url(&["streams"], stream, &[])
            .map_err(ReadError::Backend)?;
        let mut limit = options.limit;
        // Absent `from` is the start going forward and the end going backward.
        let (mut from, direction) = match (options.from, options.direction) {
            (StreamFrom::Start, Direction::Forward) | (StreamFrom::End, Direction::Backward) => {
                (None, options.direction)
            }
            (StreamFrom::Version(v), direction) => (Some(v), direction),
            (StreamFrom::Start, Direction::Backward) => (Some(0), Direction::Backward),
            // Forward from the last version is the last event alone: read it backward.
            (StreamFrom::End, Direction::Forward) => {
                limit = limit.min(1);
                (None, Direction::Backward)
            }
        };
        let mut out = Vec::new();
        loop {
            let mut url = route.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(v) = from {
                    query.append_pair("from", &v.to_string());
                }
                query.append_pair(
                    "limit",
                    &page_size(limit, out.len(), PAGE_EVENTS_MAX).to_string(),
                );
                query.append_pair("direction", direction_name(direction));
            }
            add_as_of(&mut url, options.as_of);
            let page: StreamEventsResponse = self
                .http
                .get(url.clone())
                .await
                .map_err(Failure::read_error)?;
            let wanted = limit - out.len();
            out.extend(recorded(
                page.events.into_iter().take(wanted).collect(),
                &url,
            )?);
            match page.next_version {
                Some(next) if out.len() < limit => from = Some(next),
                _ => return Ok(out),
            }
        }
    }

    /// `GET /streams/{stream}/{version}`; no such event (or stream) is `None`.
    async fn read_event(
        &self,
        stream: &StreamName,
        version: Version,
    ) -> Result<Option<RecordedEvent>, ReadError> {
        let url = self
            .http
            .stream_url(&["streams"], stream, &[&version.to_string()])
            .map_err(ReadError::Backend)?;
        match self.http.get::<EventJson>(url.clone()).await {
            Ok(json) => Ok(recorded(vec![json], &url)?.pop()),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(failure.read_error()),
        }
    }

    /// `GET /events/{eventId}`; `event-not-found` is `None`. Any other answer, such as the
    /// `not-found` of a server without this route, is an error rather than a `None` that would
    /// say the event is not stored.
    async fn read_event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, ReadError> {
        let url = self.http.url(&["events", &id.to_string()]);
        let event = match self.http.get::<EventJson>(url.clone()).await {
            Ok(json) => recorded(vec![json], &url)?.pop(),
            Err(failure) if failure.kind() == Some(ProblemKind::EventNotFound) => return Ok(None),
            Err(failure) => return Err(failure.read_error()),
        };
        match event {
            Some(event) if event.id != id => Err(Failure::Body {
                request: format!("GET {url}"),
                reason: format!("it is the event with the id {}", event.id),
            }
            .read_error()),
            event => Ok(event),
        }
    }

    /// `GET /streams/{stream}/info`; no such stream is `None`.
    async fn stream_info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, ReadError> {
        let url = self
            .http
            .stream_url(&["streams"], stream, &["info"])
            .map_err(ReadError::Backend)?;
        match self.http.get::<StreamInfoJson>(url.clone()).await {
            Ok(json) => json.into_info().map(Some).map_err(|reason| {
                Failure::Body {
                    request: format!("GET {url}"),
                    reason,
                }
                .read_error()
            }),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(failure.read_error()),
        }
    }

    /// `GET /all`, a page at a time.
    async fn read_all(&self, options: ReadAll) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut from = match (options.from, options.direction) {
            (AllFrom::Start, Direction::Forward) | (AllFrom::End, Direction::Backward) => None,
            (AllFrom::Position(p), _) => Some(p),
            (AllFrom::Start, Direction::Backward) => Some(Position::START),
            // The end is after the last event: nothing is there to read forward.
            (AllFrom::End, Direction::Forward) => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        loop {
            let mut url = self.http.url(&["all"]);
            {
                let mut query = url.query_pairs_mut();
                if let Some(p) = from {
                    query.append_pair("from", &p.to_string());
                }
                query.append_pair(
                    "limit",
                    &page_size(options.limit, out.len(), PAGE_EVENTS_MAX).to_string(),
                );
                query.append_pair("direction", direction_name(options.direction));
            }
            add_filter(&mut url, &options.filter);
            add_as_of(&mut url, options.as_of);
            let page: AllEventsResponse = self
                .http
                .get(url.clone())
                .await
                .map_err(Failure::read_error)?;
            let wanted = options.limit - out.len();
            out.extend(recorded(
                page.events.into_iter().take(wanted).collect(),
                &url,
            )?);
            match page.next_position {
                Some(next) if out.len() < options.limit => from = Some(next.0),
                _ => return Ok(out),
            }
        }
    }

    /// `GET /streams?prefix=&after=&limit=`, a page at a time.
    async fn list_streams(&self, options: ListStreams) -> Result<StreamPage, ReadError> {
        let mut streams = Vec::new();
        let mut after = options.after.clone();
        loop {
            let mut url = self.http.url(&["streams"]);
            {
                let mut query = url.query_pairs_mut();
                if !options.prefix.is_empty() {
                    query.append_pair("prefix", &options.prefix);
                }
                if let Some(after) = &after {
                    query.append_pair("after", after);
                }
                query.append_pair(
                    "limit",
                    &page_size(options.limit, streams.len(), PAGE_STREAMS_MAX).to_string(),
                );
            }
            let page: StreamsResponse = self
                .http
                .get(url.clone())
                .await
                .map_err(Failure::read_error)?;
            if options.limit == 0 {
                // Asked for one name to learn whether any remain; `next_after` stays where it was.
                let more = !page.streams.is_empty();
                return Ok(StreamPage {
                    streams: Vec::new(),
                    next_after: more.then(|| options.after.unwrap_or_default()),
                });
            }
            for name in page.streams {
                streams.push(StreamName::new(name).map_err(|e| {
                    Failure::Body {
                        request: format!("GET {url}"),
                        reason: format!("a stream name: {e}"),
                    }
                    .read_error()
                })?);
            }
            match page.next_after {
                Some(next) if streams.len() < options.limit => after = Some(next),
                next_after => {
                    return Ok(StreamPage {
                        streams,
                        next_after,
                    });
                }
            }
        }
    }

    /// `GET /categories`.
    async fn categories(&self) -> Result<Vec<String>, ReadError> {
        let response: CategoriesResponse = self
            .http
            .get(self.http.url(&["categories"]))
            .await
            .map_err(Failure::read_error)?;
        Ok(response.categories)
    }

    /// `endPosition` of `GET /health`.
    async fn end_position(&self) -> Result<Position, ReadError> {
        let url = self.http.url(&["health"]);
        let response: HealthResponse = self
            .http
            .get(url.clone())
            .await
            .map_err(Failure::read_error)?;
        match response.end_position {
            Some(end) => Ok(end.0),
            None => Err(Failure::Body {
                request: format!("GET {url}"),
                reason: "it has no endPosition".to_owned(),
            }
            .read_error()),
        }
    }

    /// `GET /subscribe/all`, Server-Sent Events; resumed with `Last-Event-ID` when the
    /// connection drops.
    fn subscribe_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        let mut url = self.http.url(&["subscribe", "all"]);
        add_filter(&mut url, &filter);
        let from = match from {
            SubscribeFrom::Start => "start".to_owned(),
            SubscribeFrom::End => "end".to_owned(),
            SubscribeFrom::After(p) => p.to_string(),
        };
        subscription::subscribe(self.http.clone(), url, from, Ids::Positions)
    }

    /// `GET /subscribe/streams/{stream}`, Server-Sent Events; resumed with `Last-Event-ID` when
    /// the connection drops.
    fn subscribe_stream(&self, stream: StreamName, from: SubscribeFrom<Version>) -> Subscription {
        let url = match self
            .http
            .stream_url(&["subscribe", "streams"], &stream, &[])
        {
            Ok(url) => url,
            Err(reason) => return subscription::failed(ReadError::Backend(reason)),
        };
        let from = match from {
            SubscribeFrom::Start => "start".to_owned(),
            SubscribeFrom::End => "end".to_owned(),
            SubscribeFrom::After(v) => v.to_string(),
        };
        subscription::subscribe(self.http.clone(), url, from, Ids::Versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_times_are_written_with_their_milliseconds() {
        let text = |micros| as_of_text(Timestamp::from_unix_micros(micros));
        assert_eq!(text(1_767_225_600_123_456), "2026-01-01T00:00:00.123Z");
        assert_eq!(text(1_767_225_600_123_999), "2026-01-01T00:00:00.123Z");
        assert_eq!(text(1_767_225_600_123_000), "2026-01-01T00:00:00.123Z");
        assert_eq!(text(1_767_225_600_122_999), "2026-01-01T00:00:00.122Z");
        assert_eq!(text(0), "1970-01-01T00:00:00.000Z");
        // Before the epoch, a millisecond still starts at its lower end.
        assert_eq!(text(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(text(-1000), "1969-12-31T23:59:59.999Z");
        assert_eq!(text(-1001), "1969-12-31T23:59:59.998Z");
        assert_eq!(text(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(text(i64::MIN), "0000-01-01T00:00:00.000Z");
        for micros in [-62_167_219_200_000_000, -1, 0, 1_767_225_600_123_456] {
            let t = Timestamp::from_unix_micros(micros);
            let back = Timestamp::parse_rfc3339(&as_of_text(t)).unwrap();
            assert_eq!(back.unix_micros(), micros.div_euclid(1000) * 1000, "{t:?}");
        }
    }

    #[test]
    fn base_urls_are_checked() {
        for bad in [
            "localhost:4470",
            "ftp://host",
            "http://",
            "http://h/?q=1",
            "not a url",
        ] {
            assert!(
                matches!(
                    HttpStore::new(bad, None),
                    Err(ClientError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        let store = HttpStore::new("http://127.0.0.1:4470", Some("t".into())).unwrap();
        assert_eq!(store.ordering(), Ordering::Total);
        assert_eq!(
            store.http.url(&["subscribe", "all"]).as_str(),
            "http://127.0.0.1:4470/subscribe/all"
        );
        // A path prefix (a server behind a reverse proxy) is kept, with or without a slash.
        for base in [
            "https://example.com/factlog",
            "https://example.com/factlog/",
        ] {
            let store = HttpStore::new(base, None).unwrap();
            assert_eq!(
                store.http.url(&["health"]).as_str(),
                "https://example.com/factlog/health"
            );
        }
    }

    #[test]
    fn stream_names_are_one_path_segment() {
        let store = HttpStore::new("http://h:1", None).unwrap();
        let url = |name: &str, after: &[&str]| {
            store
                .http
                .stream_url(&["streams"], &StreamName::new(name).unwrap(), after)
                .map(|u| u.to_string())
        };
        assert_eq!(
            url("a/b:c.d?e=f#g", &[]).unwrap(),
            "http://h:1/streams/a%2Fb:c.d%3Fe=f%23g"
        );
        assert_eq!(
            url("with space-ü%", &["info"]).unwrap(),
            "http://h:1/streams/with%20space-%C3%BC%25/info"
        );
        assert_eq!(url("...", &["3"]).unwrap(), "http://h:1/streams/.../3");
        for dots in [".", ".."] {
            let e = url(dots, &[]).unwrap_err();
            assert!(e.contains("dot segment"), "{e}");
        }
    }

    #[test]
    fn tokens_and_certificates_are_checked() {
        assert!(matches!(
            HttpStore::new("http://h:1", Some("bad\ntoken".into())),
            Err(ClientError::InvalidToken)
        ));
        let e = HttpStore::builder("https://h:1")
            .root_certificate_pem(b"not pem".to_vec())
            .build()
            .unwrap_err();
        assert!(matches!(e, ClientError::InvalidCertificate(_)), "{e}");
        let debug = format!("{:?}", HttpStore::builder("http://h:1").token("s3cret"));
        assert!(!debug.contains("s3cret"), "{debug}");
        let store = HttpStore::new("http://h:1", Some("s3cret".into())).unwrap();
        assert!(!format!("{store:?}").contains("s3cret"));
    }

    #[test]
    fn data_a_json_field_cannot_carry_goes_as_base64() {
        use factlog_store::{ContentType, EventType};
        let event = |content_type: &str, data: &[u8]| {
            NewEvent::new(
                EventType::new("E").unwrap(),
                ContentType::new(content_type).unwrap(),
                data.to_vec(),
            )
        };
        let events = [
            event("application/json", br#"{"a":[1,2]}"#),
            event("text/plain", "héllo".as_bytes()),
            event("application/json", b""),
            event("application/json", b"{"),
            event("application/json", br#"{"a": [1, 2]}"#),
            event("application/octet-stream", b"\xff\x00"),
        ];
        let json = events_json(&events);
        let as_data: Vec<bool> = json.iter().map(|e| e.data.is_some()).collect();
        assert_eq!(as_data, [true, true, false, false, true, false]);
        for (sent, event) in json.into_iter().zip(&events) {
            assert_eq!(sent.data.is_none(), sent.data_base64.is_some());
            assert_eq!(&sent.into_new_event().unwrap(), event);
        }
    }

    #[test]
    fn pages_ask_for_what_is_left_within_the_servers_maximum() {
        assert_eq!(page_size(0, 0, PAGE_EVENTS_MAX), 1);
        assert_eq!(page_size(5, 2, PAGE_EVENTS_MAX), 3);
        assert_eq!(page_size(25_000, 0, PAGE_EVENTS_MAX), 10_000);
        assert_eq!(page_size(25_000, 20_000, PAGE_EVENTS_MAX), 5_000);
        assert_eq!(page_size(usize::MAX, 0, PAGE_EVENTS_MAX), 10_000);
    }
}
