//! What a failed request means: the server's problem documents (RFC 9457) mapped back to the
//! store API's errors, and the failures that never reached an answer.
//!
//! Cases are told apart by the problem's `type` and its fields, never by `detail`; `detail` only
//! goes into messages. Whatever has no variant of its own in the store API becomes `Backend`,
//! with a message that names the request, the status and the server's detail.

use factlog_api::{Problem, ProblemKind};
use factlog_store::{
    AppendError, EventId, ExpectedVersion, LimitKind, Position, ReadError, StreamName,
    SubscribeError, Version,
};
use serde_json::Value;

/// The most bytes of a body that is not a problem document quoted in a message.
const BODY_QUOTE_BYTES_MAX: usize = 300;

/// A request that did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// No answer: the connection failed, broke, or the answer took too long.
    Transport {
        /// The method and URL, such as `GET http://127.0.0.1:4470/health`.
        request: String,
        reason: String,
        timed_out: bool,
    },
    /// An answer with an error status.
    Status {
        request: String,
        status: u16,
        /// The body, when it is a problem document.
        problem: Option<Problem>,
        /// The start of the body, when it is not.
        body: String,
    },
    /// A success whose body is not what the API promises.
    Body { request: String, reason: String },
}

impl Failure {
    /// The failure an answer with an error status stands for.
    pub(crate) fn from_answer(request: String, status: u16, body: &[u8]) -> Self {
        let problem = serde_json::from_slice::<Problem>(body).ok();
        let body = if problem.is_some() {
            String::new()
        } else {
            let text = String::from_utf8_lossy(body);
            let mut end = text.len().min(BODY_QUOTE_BYTES_MAX);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].trim().to_owned()
        };
        Failure::Status {
            request,
            status,
            problem,
            body,
        }
    }

    /// The failure of a request that got no answer.
    pub(crate) fn transport(request: String, error: &reqwest::Error) -> Self {
        Failure::Transport {
            request,
            reason: error_chain(error),
            timed_out: error.is_timeout(),
        }
    }

    /// The problem's kind, when the answer is one of Factlog's problems.
    pub(crate) fn kind(&self) -> Option<ProblemKind> {
        match self {
            Failure::Status {
                problem: Some(problem),
                ..
            } => problem.kind(),
            _ => None,
        }
    }

    fn problem(&self) -> Option<&Problem> {
        match self {
            Failure::Status { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// `404` because the stream or the event is not there (not because the route is unknown).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(
            self.kind(),
            Some(ProblemKind::StreamNotFound | ProblemKind::EventNotFound)
        )
    }

    /// Whether the store behind the server is closed (`unavailable` with reason `closed`).
    fn is_closed(&self) -> bool {
        self.kind() == Some(ProblemKind::Unavailable)
            && self.problem().and_then(|p| str_field(p, "reason")) == Some("closed")
    }

    /// Whether trying again later can help: no answer, or an answer that says "not now". Wrong
    /// input, missing rights and a closed store stay wrong.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Failure::Transport { .. } => true,
            Failure::Status { status, .. } => match status {
                408 | 429 | 502 | 504 => true,
                503 => !self.is_closed(),
                _ => false,
            },
            Failure::Body { .. } => false,
        }
    }

    /// The error for a message: what was asked, and what came back.
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Transport {
                request,
                reason,
                timed_out: true,
            } => format!("no answer in time to {request}: {reason}"),
            Failure::Transport {
                request, reason, ..
            } => format!("cannot reach the Factlog server for {request}: {reason}"),
            Failure::Status {
                request,
                status,
                problem: Some(problem),
                ..
            } => {
                let name = match problem.kind() {
                    Some(kind) => kind.slug().to_owned(),
                    None => problem.type_uri.clone(),
                };
                match status {
                    401 => format!("unauthorized: {} ({request})", problem.detail),
                    403 => format!("forbidden: {} ({request})", problem.detail),
                    _ => format!("{request} answered {status} {name}: {}", problem.detail),
                }
            }
            Failure::Status {
                request,
                status,
                body,
                ..
            } => {
                let what = match status {
                    401 => "unauthorized: ",
                    403 => "forbidden: ",
                    _ => "",
                };
                if body.is_empty() {
                    format!("{what}{request} answered {status}")
                } else {
                    format!("{what}{request} answered {status}: {body}")
                }
            }
            Failure::Body { request, reason } => {
                format!("the answer to {request} is not what the Factlog API promises: {reason}")
            }
        }
    }

    /// The append error this failure stands for.
    pub(crate) fn append_error(self) -> AppendError {
        let Some(problem) = self.problem() else {
            return AppendError::Backend(self.append_message());
        };
        let mapped = match problem.kind() {
            Some(ProblemKind::WrongExpectedVersion) => wrong_expected_version(problem),
            Some(ProblemKind::IdempotencyConflict) => {
                event_id_field(problem).map(|event_id| AppendError::IdempotencyConflict {
                    event_id,
                    detail: conflict_detail(&problem.detail, event_id),
                })
            }
            Some(ProblemKind::DuplicateEventId) => {
                event_id_field(problem).map(|event_id| AppendError::DuplicateEventId { event_id })
            }
            Some(ProblemKind::DuplicateStream) => {
                stream_field(problem).map(|stream| AppendError::DuplicateStream { stream })
            }
            Some(ProblemKind::EmptyAppend) => Some(AppendError::Empty),
            Some(ProblemKind::LimitExceeded) => limit_exceeded(problem),
            Some(ProblemKind::DiskFull) => Some(AppendError::DiskFull),
            Some(ProblemKind::Unavailable) => match str_field(problem, "reason") {
                Some("closed") => Some(AppendError::Closed),
                Some(reason) => Some(AppendError::WriterFailed {
                    reason: reason.to_owned(),
                }),
                None => None,
            },
            _ => None,
        };
        mapped.unwrap_or_else(|| AppendError::Backend(self.append_message()))
    }

    /// An append whose answer was lost may have been stored; the message says how to find out.
    fn append_message(&self) -> String {
        let message = self.message();
        let uncertain = match self {
            Failure::Transport { .. } => true,
            Failure::Status { status, .. } => *status == 408,
            Failure::Body { .. } => false,
        };
        if uncertain {
            format!(
                "{message}; the append may or may not be stored: retry it with the same event ids"
            )
        } else {
            message
        }
    }

    /// The read error this failure stands for.
    pub(crate) fn read_error(self) -> ReadError {
        let Some(problem) = self.problem() else {
            return ReadError::Backend(self.message());
        };
        let mapped = match problem.kind() {
            Some(ProblemKind::StreamNotFound) => {
                stream_field(problem).map(ReadError::StreamNotFound)
            }
            Some(ProblemKind::InvalidPosition) => str_field(problem, "position")
                .and_then(|p| p.parse::<Position>().ok())
                .map(ReadError::InvalidPosition),
            Some(ProblemKind::Corrupt) => {
                match (str_field(problem, "file"), u64_field(problem, "offset")) {
                    (Some(file), Some(offset)) => Some(ReadError::Corrupt {
                        file: file.to_owned(),
                        offset,
                        reason: problem.detail.clone(),
                    }),
                    _ => None,
                }
            }
            Some(ProblemKind::Unavailable) if self.is_closed() => Some(ReadError::Closed),
            _ => None,
        };
        mapped.unwrap_or_else(|| ReadError::Backend(self.message()))
    }

    /// The error that ends a subscription.
    pub(crate) fn subscribe_error(self) -> SubscribeError {
        if self.is_closed() {
            SubscribeError::Closed
        } else {
            SubscribeError::Read(self.read_error())
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// An error and its sources, as one line.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        // hyper and reqwest sometimes repeat their source's text in their own.
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

fn str_field<'a>(problem: &'a Problem, name: &str) -> Option<&'a str> {
    problem.fields.get(name).and_then(Value::as_str)
}

fn u64_field(problem: &Problem, name: &str) -> Option<u64> {
    problem.fields.get(name).and_then(Value::as_u64)
}

fn stream_field(problem: &Problem) -> Option<StreamName> {
    str_field(problem, "stream").and_then(|s| StreamName::new(s).ok())
}

fn event_id_field(problem: &Problem) -> Option<EventId> {
    str_field(problem, "eventId").and_then(|id| id.parse().ok())
}

fn wrong_expected_version(problem: &Problem) -> Option<AppendError> {
    let stream = stream_field(problem)?;
    let expected: ExpectedVersion = str_field(problem, "expectedVersion")?.parse().ok()?;
    let current: Option<Version> = match problem.fields.get("currentVersion")? {
        Value::Null => None,
        value => Some(value.as_u64()?),
    };
    Some(AppendError::WrongExpectedVersion {
        stream,
        expected,
        current,
    })
}

fn limit_exceeded(problem: &Problem) -> Option<AppendError> {
    let limit = match str_field(problem, "limit")? {
        "event_size_bytes_max" => LimitKind::EventSize,
        "append_events_max" => LimitKind::EventsPerAppend,
        "append_size_bytes_max" => LimitKind::AppendSize,
        _ => return None,
    };
    Some(AppendError::LimitExceeded {
        limit,
        actual: u64_field(problem, "actual")?,
        max: u64_field(problem, "max")?,
    })
}

/// The part of the server's detail that `AppendError::IdempotencyConflict` does not say itself
/// (where the id is stored), so that the message does not say everything twice.
fn conflict_detail(detail: &str, event_id: EventId) -> String {
    let prefix = format!("event id {event_id} is already stored ");
    detail
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix("; use a new id for a new event"))
        .map_or_else(|| format!("(the server says: {detail})"), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "POST http://127.0.0.1:4470/streams/account-1";

    fn answer(problem: Problem) -> Failure {
        let body = serde_json::to_vec(&problem).unwrap();
        Failure::from_answer(REQUEST.to_owned(), problem.status, &body)
    }

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    const ID: &str = "0190a5a0-0000-7000-8000-000000000001";

    fn id() -> EventId {
        ID.parse().unwrap()
    }

    /// A problem as the server builds it from each store error, mapped back.
    fn round_trip_append(error: AppendError) -> AppendError {
        let detail = error.to_string();
        let problem = match &error {
            AppendError::WrongExpectedVersion {
                stream,
                expected,
                current,
            } => Problem::new(ProblemKind::WrongExpectedVersion, detail)
                .with("stream", stream.as_str())
                .with("expectedVersion", expected.to_string())
                .with("currentVersion", *current),
            AppendError::IdempotencyConflict { event_id, .. } => {
                Problem::new(ProblemKind::IdempotencyConflict, detail)
                    .with("eventId", event_id.to_string())
            }
            AppendError::DuplicateEventId { event_id } => {
                Problem::new(ProblemKind::DuplicateEventId, detail)
                    .with("eventId", event_id.to_string())
            }
            AppendError::DuplicateStream { stream } => {
                Problem::new(ProblemKind::DuplicateStream, detail).with("stream", stream.as_str())
            }
            AppendError::Empty => Problem::new(ProblemKind::EmptyAppend, detail),
            AppendError::LimitExceeded { limit, actual, max } => {
                Problem::new(ProblemKind::LimitExceeded, detail)
                    .with("limit", limit.to_string())
                    .with("actual", *actual)
                    .with("max", *max)
            }
            AppendError::DiskFull => Problem::new(ProblemKind::DiskFull, detail),
            AppendError::WriterFailed { reason } => {
                Problem::new(ProblemKind::Unavailable, detail).with("reason", reason.as_str())
            }
            AppendError::Closed => {
                Problem::new(ProblemKind::Unavailable, detail).with("reason", "closed")
            }
            other => panic!("not a case of the API: {other:?}"),
        };
        answer(problem).append_error()
    }

    #[test]
    fn every_append_problem_maps_back_to_its_error() {
        let cases = [
            AppendError::WrongExpectedVersion {
                stream: stream("account-1"),
                expected: ExpectedVersion::Exact(3),
                current: Some(5),
            },
            AppendError::WrongExpectedVersion {
                stream: stream("a/b c"),
                expected: ExpectedVersion::StreamExists,
                current: None,
            },
            AppendError::WrongExpectedVersion {
                stream: stream("account-1"),
                expected: ExpectedVersion::NoStream,
                current: Some(0),
            },
            AppendError::WrongExpectedVersion {
                stream: stream("account-1"),
                expected: ExpectedVersion::Any,
                current: Some(u64::MAX),
            },
            AppendError::IdempotencyConflict {
                event_id: id(),
                detail: "in stream account-1 at version 3 with other content".into(),
            },
            AppendError::DuplicateEventId { event_id: id() },
            AppendError::DuplicateStream {
                stream: stream("order-9"),
            },
            AppendError::Empty,
            AppendError::LimitExceeded {
                limit: LimitKind::EventSize,
                actual: 1_048_577,
                max: 1_048_576,
            },
            AppendError::LimitExceeded {
                limit: LimitKind::EventsPerAppend,
                actual: 10_001,
                max: 10_000,
            },
            AppendError::LimitExceeded {
                limit: LimitKind::AppendSize,
                actual: 9_000_000,
                max: 8_388_608,
            },
            AppendError::DiskFull,
            AppendError::WriterFailed {
                reason: "fsync of 00000001.log failed: EIO".into(),
            },
            AppendError::Closed,
        ];
        for error in cases {
            assert_eq!(round_trip_append(error.clone()), error);
        }
    }

    #[test]
    fn a_conflict_detail_not_in_the_usual_words_is_kept_whole() {
        let problem =
            Problem::new(ProblemKind::IdempotencyConflict, "other words").with("eventId", ID);
        assert_eq!(
            answer(problem).append_error(),
            AppendError::IdempotencyConflict {
                event_id: id(),
                detail: "(the server says: other words)".into()
            }
        );
    }

    #[test]
    fn a_problem_with_missing_or_bad_fields_is_a_backend_error_naming_it() {
        let problems = [
            Problem::new(ProblemKind::WrongExpectedVersion, "no fields"),
            Problem::new(ProblemKind::WrongExpectedVersion, "bad version")
                .with("stream", "s")
                .with("expectedVersion", "sometimes")
                .with("currentVersion", Value::Null),
            Problem::new(ProblemKind::WrongExpectedVersion, "current missing")
                .with("stream", "s")
                .with("expectedVersion", "any"),
            Problem::new(ProblemKind::WrongExpectedVersion, "current negative")
                .with("stream", "s")
                .with("expectedVersion", "any")
                .with("currentVersion", -1),
            Problem::new(ProblemKind::IdempotencyConflict, "bad id").with("eventId", "x"),
            Problem::new(ProblemKind::DuplicateEventId, "no id"),
            Problem::new(ProblemKind::DuplicateStream, "bad stream").with("stream", "$all"),
            Problem::new(ProblemKind::LimitExceeded, "unknown limit")
                .with("limit", "streams_max")
                .with("actual", 2)
                .with("max", 1),
            Problem::new(ProblemKind::LimitExceeded, "no numbers")
                .with("limit", "append_events_max"),
            Problem::new(ProblemKind::Unavailable, "no reason"),
        ];
        for problem in problems {
            let detail = problem.detail.clone();
            match answer(problem).append_error() {
                AppendError::Backend(message) => {
                    assert!(message.contains(&detail), "{message}");
                    assert!(message.contains(REQUEST), "{message}");
                }
                other => panic!("{detail}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_problems_are_backend_errors_with_status_type_and_detail() {
        for kind in [
            ProblemKind::InvalidEvent,
            ProblemKind::MalformedBody,
            ProblemKind::InvalidStreamName,
            ProblemKind::BodyTooLarge,
            ProblemKind::Internal,
            ProblemKind::NotFound,
        ] {
            let error = answer(Problem::new(kind, "the detail")).append_error();
            let expected = format!(
                "{REQUEST} answered {} {}: the detail",
                kind.status(),
                kind.slug()
            );
            assert_eq!(error, AppendError::Backend(expected));
        }
        // A type that is not one of Factlog's is named by its URI.
        let mut foreign = Problem::new(ProblemKind::Internal, "d");
        foreign.type_uri = "https://example.com/oops".into();
        assert_eq!(
            answer(foreign).read_error(),
            ReadError::Backend(format!(
                "{REQUEST} answered 500 https://example.com/oops: d"
            ))
        );
    }

    #[test]
    fn unauthorized_and_forbidden_say_so_with_the_servers_detail() {
        let unauthorized = answer(Problem::new(
            ProblemKind::Unauthorized,
            "no bearer token was given",
        ));
        assert_eq!(
            unauthorized.clone().append_error(),
            AppendError::Backend(format!(
                "unauthorized: no bearer token was given ({REQUEST})"
            ))
        );
        assert_eq!(
            unauthorized.read_error(),
            ReadError::Backend(format!(
                "unauthorized: no bearer token was given ({REQUEST})"
            ))
        );
        let forbidden = answer(
            Problem::new(ProblemKind::Forbidden, "role read may not append")
                .with("role", "read")
                .with("requiredRole", "write"),
        );
        assert_eq!(
            forbidden.subscribe_error(),
            SubscribeError::Read(ReadError::Backend(format!(
                "forbidden: role read may not append ({REQUEST})"
            )))
        );
        // Without a problem body (a proxy in front of the server, say).
        let bare = Failure::from_answer(REQUEST.into(), 401, b"<html>401</html>");
        assert_eq!(
            bare.read_error(),
            ReadError::Backend(format!(
                "unauthorized: {REQUEST} answered 401: <html>401</html>"
            ))
        );
    }

    #[test]
    fn read_problems_map_back_to_their_errors() {
        let cases = [
            (
                Problem::new(ProblemKind::StreamNotFound, "d").with("stream", "account-1"),
                ReadError::StreamNotFound(stream("account-1")),
            ),
            (
                Problem::new(ProblemKind::InvalidPosition, "d").with("position", "12345"),
                ReadError::InvalidPosition(Position::from_raw(12345)),
            ),
            (
                Problem::new(ProblemKind::Corrupt, "bad crc; run factlog verify")
                    .with("file", "00000002.log")
                    .with("offset", 4096),
                ReadError::Corrupt {
                    file: "00000002.log".into(),
                    offset: 4096,
                    reason: "bad crc; run factlog verify".into(),
                },
            ),
            (
                Problem::new(ProblemKind::Unavailable, "d").with("reason", "closed"),
                ReadError::Closed,
            ),
        ];
        for (problem, expected) in cases {
            assert_eq!(answer(problem).read_error(), expected);
        }
        // Missing fields and other kinds.
        for problem in [
            Problem::new(ProblemKind::StreamNotFound, "no stream field"),
            Problem::new(ProblemKind::InvalidPosition, "bad").with("position", 7),
            Problem::new(ProblemKind::Corrupt, "no file"),
            Problem::new(ProblemKind::Unavailable, "shutting down").with("reason", "shutting-down"),
            Problem::new(ProblemKind::InvalidParameter, "limit").with("parameter", "limit"),
        ] {
            let detail = problem.detail.clone();
            assert!(
                matches!(answer(problem).read_error(), ReadError::Backend(m) if m.contains(&detail)),
                "{detail}"
            );
        }
    }

    #[test]
    fn not_found_is_stream_or_event_not_found_only() {
        assert!(
            answer(Problem::new(ProblemKind::EventNotFound, "d").with("version", 3)).is_not_found()
        );
        assert!(
            answer(Problem::new(ProblemKind::StreamNotFound, "d").with("stream", "s"))
                .is_not_found()
        );
        // An unknown route is not "no such event": it is an error.
        assert!(!answer(Problem::new(ProblemKind::NotFound, "no route")).is_not_found());
        assert!(!Failure::from_answer(REQUEST.into(), 404, b"not found").is_not_found());
    }

    #[test]
    fn subscription_errors() {
        assert_eq!(
            answer(Problem::new(ProblemKind::Unavailable, "closed").with("reason", "closed"))
                .subscribe_error(),
            SubscribeError::Closed
        );
        assert_eq!(
            answer(Problem::new(ProblemKind::InvalidPosition, "d").with("position", "99"))
                .subscribe_error(),
            SubscribeError::Read(ReadError::InvalidPosition(Position::from_raw(99)))
        );
    }

    #[test]
    fn transient_failures_are_those_that_may_pass() {
        let transport = Failure::Transport {
            request: REQUEST.into(),
            reason: "connection refused".into(),
            timed_out: false,
        };
        assert!(transport.is_transient());
        for (status, transient) in [
            (408, true),
            (429, true),
            (502, true),
            (503, true),
            (504, true),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (500, false),
            (501, false),
        ] {
            let failure = Failure::from_answer(REQUEST.into(), status, b"");
            assert_eq!(failure.is_transient(), transient, "{status}");
        }
        let closed =
            answer(Problem::new(ProblemKind::Unavailable, "closed").with("reason", "closed"));
        assert!(
            !closed.is_transient(),
            "a closed store does not reopen by itself"
        );
        let failed = answer(Problem::new(ProblemKind::Unavailable, "d").with("reason", "EIO"));
        assert!(failed.is_transient());
    }

    #[test]
    fn transport_failures_name_the_url_and_warn_about_lost_appends() {
        let refused = Failure::Transport {
            request: REQUEST.into(),
            reason: "tcp connect error: Connection refused (os error 111)".into(),
            timed_out: false,
        };
        assert_eq!(
            refused.clone().read_error(),
            ReadError::Backend(format!(
                "cannot reach the Factlog server for {REQUEST}: tcp connect error: Connection \
                 refused (os error 111)"
            ))
        );
        match refused.append_error() {
            AppendError::Backend(m) => {
                assert!(m.contains(REQUEST), "{m}");
                assert!(m.contains("retry it with the same event ids"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let timeout = answer(Problem::new(ProblemKind::Timeout, "no answer within 30 s"));
        match timeout.append_error() {
            AppendError::Backend(m) => {
                assert!(m.contains("408 timeout"), "{m}");
                assert!(m.contains("may or may not be stored"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_that_is_not_a_problem_is_quoted_briefly() {
        let long = "é".repeat(1000);
        let failure = Failure::from_answer(REQUEST.into(), 502, long.as_bytes());
        let Failure::Status { body, problem, .. } = &failure else {
            panic!("{failure:?}")
        };
        assert!(problem.is_none());
        assert!(body.len() <= BODY_QUOTE_BYTES_MAX && body.len() > BODY_QUOTE_BYTES_MAX - 4);
        assert_eq!(
            Failure::from_answer(REQUEST.into(), 502, b"").message(),
            format!("{REQUEST} answered 502")
        );
    }
}
