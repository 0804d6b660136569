//! The HTTP client of the Factlog server: [`HttpStore`] implements the store API
//! ([`factlog_store::EventStore`]) by calling a running server, so that code written against the
//! store API works the same on an embedded store and on a server.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use factlog_client::HttpStore;
//! use factlog_store::{EventStore, ExpectedVersion, NewEvent, ReadStream, StreamName};
//!
//! let store = HttpStore::new("http://127.0.0.1:4470", std::env::var("FACTLOG_TOKEN").ok())?;
//! let account = StreamName::new("account-42")?;
//! let opened = NewEvent::json("AccountOpened", &serde_json::json!({ "owner": "Ada" }))?;
//! store.append(&account, ExpectedVersion::NoStream, vec![opened]).await?;
//! for event in store.read_stream(&account, ReadStream::forward()).await? {
//!     println!("{} {} {}", event.version, event.event_type, event.recorded_at);
//! }
//! # Ok(()) }
//! ```
//!
//! Each call is one request of the HTTP API (`docs/http-api.md`), or several pages of one when a
//! read asks for more than the server answers at once ([`PAGE_EVENTS_MAX`]). The JSON shapes and
//! problem types are `factlog-api`'s, shared with the server. Errors come back as the store API's
//! errors: each problem type the server answers with maps to its variant (a wrong expected
//! version, a limit, a full disk, ...), and anything without a variant of its own (no answer,
//! `unauthorized`, `forbidden`, a bug) is `Backend` with a message naming the request and the
//! server's detail.
//!
//! [`ProjectionsClient`] (from [`HttpStore::projections`]) lists and controls the projections the
//! server runs: status, pause and resume, reset, rebuild, dead letters.
//!
//! Subscriptions read Server-Sent Events and resume by themselves when the connection drops
//! (`Last-Event-ID`, up to [`RECONNECT_ATTEMPTS_MAX_DEFAULT`] attempts in a row), with no gap and
//! no duplicate.
//!
//! What the HTTP API carries differently from an embedded store:
//! - `recorded_at` has the milliseconds of the API's `recordedAt`, not the store's microseconds;
//!   reads `AsOf::Time(t)` agree with it: they see the events recorded by the end of `t`'s
//!   millisecond, which are the events reported at or before `t`.
//! - The stream names `.` and `..` cannot be addressed in a URL path; appends to them go through
//!   `POST /append`, and reads of them fail.

mod error;
mod failure;
mod http;
mod projections;
mod sse;
mod store;
mod subscription;

pub use error::ClientError;
pub use projections::{ProjectionError, ProjectionsClient};
pub use store::{
    HttpStore, HttpStoreBuilder, PAGE_EVENTS_MAX, PAGE_STREAMS_MAX, RECONNECT_ATTEMPTS_MAX_DEFAULT,
    SUBSCRIPTION_IDLE_TIMEOUT_DEFAULT, TIMEOUT_DEFAULT,
};
