//! Event data over HTTP: `dataBase64` carries any bytes exactly, `data` and `dataBase64` are one or
//! the other, and `asOf=<an event's recordedAt>` includes that event although `recordedAt` has
//! milliseconds and the store microseconds.

mod common;

use common::{ManualClock, TestServer, expect_problem};
use factlog_api::ProblemKind;
use factlog_log::Options;
use factlog_server::Config;
use factlog_store::{EventStore, StreamName};
use serde_json::{Value, json};

/// Standard base64 (RFC 4648, padded), written out here so that the test does not share the
/// server's encoder.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The names of the data fields `event` has.
fn data_fields(event: &Value) -> Vec<&'static str> {
    ["data", "dataBase64"]
        .into_iter()
        .filter(|field| event.get(field).is_some())
        .collect()
}

#[test]
fn the_tests_encoder_is_standard_base64() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(b"\xfb\xff"), "+/8=");
}

#[tokio::test]
async fn data_base64_stores_and_returns_the_exact_bytes() {
    let t = TestServer::start().await;
    let binary: Vec<u8> = (0..=255).collect();
    let spaced_json = br#"{"b": 1, "a": [1.0]}"#;
    t.append_ok(
        "bin-1",
        None,
        &json!([
            {"eventType": "Blob", "contentType": "application/octet-stream", "dataBase64": base64(&binary)},
            // Whatever the content type says: JSON-typed data that is not JSON, and text that is
            // not UTF-8.
            {"eventType": "Empty", "dataBase64": ""},
            {"eventType": "Latin1", "contentType": "text/plain", "dataBase64": base64(b"caf\xe9")},
            {"eventType": "Spaced", "dataBase64": base64(spaced_json)},
            {"eventType": "Compact", "dataBase64": base64(br#"{"a":1}"#)},
        ]),
    )
    .await;

    // The store holds the bytes exactly.
    let stream = StreamName::new("bin-1").unwrap();
    let expected: [&[u8]; 5] = [&binary, b"", b"caf\xe9", spaced_json, br#"{"a":1}"#];
    for (version, bytes) in expected.iter().enumerate() {
        let stored = t
            .store
            .read_event(&stream, version as u64)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&stored.data[..], *bytes, "event {version}");
    }

    // Reads give them back: as dataBase64 when data could not carry them exactly.
    let page = t.get_json("/streams/bin-1").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    for (event, bytes) in events.iter().zip(expected) {
        match event["eventType"].as_str().unwrap() {
            "Compact" => {
                assert_eq!(data_fields(event), ["data"], "{event}");
                assert_eq!(event["data"], json!({"a": 1}));
            }
            // Valid JSON travels as data, exactly as written (checked on the raw text below).
            "Spaced" => {
                assert_eq!(data_fields(event), ["data"], "{event}");
                assert_eq!(event["data"], json!({"a": [1.0], "b": 1}));
            }
            _ => {
                assert_eq!(data_fields(event), ["dataBase64"], "{event}");
                assert_eq!(event["dataBase64"], base64(bytes), "{event}");
            }
        }
    }
    assert_eq!(events[0]["contentType"], "application/octet-stream");
    assert_eq!(events[1]["contentType"], "application/json");
    let raw = t
        .http
        .get(t.url("/streams/bin-1/3"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains(std::str::from_utf8(spaced_json).unwrap()),
        "not as written: {raw}"
    );
    let one = t.get_json("/streams/bin-1/0").await;
    assert_eq!(one["dataBase64"], base64(&binary));
    let all = t.get_json("/all").await;
    assert_eq!(&all["events"], &page["events"]);

    // A retry with the same id and the same bytes is idempotent, whichever field carried them.
    let id = "0190a5a0-0000-7000-8000-0000000000d1";
    let first = t
        .append_ok(
            "bin-2",
            None,
            &json!([{"eventId": id, "eventType": "J", "data": {"a": 1}}]),
        )
        .await;
    let retry = t
        .append_ok(
            "bin-2",
            None,
            &json!([{"eventId": id, "eventType": "J", "dataBase64": base64(br#"{"a":1}"#)}]),
        )
        .await;
    assert_eq!(retry, first);
    assert_eq!(t.events(), 6);
    t.stop().await;
}

#[tokio::test]
async fn data_and_data_base64_both_or_neither_is_invalid_and_writes_nothing() {
    let t = TestServer::start().await;
    let good = json!({"eventType": "Good", "data": 1});
    for (bad, field) in [
        (
            json!({"eventType": "E", "data": 1, "dataBase64": "AA=="}),
            "data",
        ),
        (
            json!({"eventType": "E", "data": null, "dataBase64": ""}),
            "data",
        ),
        (json!({"eventType": "E"}), "data"),
        (
            json!({"eventType": "E", "contentType": "text/plain"}),
            "data",
        ),
        (
            json!({"eventType": "E", "dataBase64": "not base64!"}),
            "dataBase64",
        ),
        (json!({"eventType": "E", "dataBase64": "AA"}), "dataBase64"),
    ] {
        let response = t.append("strict-1", None, &json!([good, bad])).await;
        let body = expect_problem(response, ProblemKind::InvalidEvent).await;
        assert_eq!(body["index"], 1, "{bad}: {body}");
        assert_eq!(body["field"], field, "{bad}: {body}");

        let parts = json!([{"stream": "strict-2", "events": [good, bad]}]);
        let response = t
            .http
            .post(t.url("/append"))
            .json(&parts)
            .send()
            .await
            .unwrap();
        let body = expect_problem(response, ProblemKind::InvalidEvent).await;
        assert_eq!(body["field"], field, "{bad}: {body}");
        assert_eq!(body["streamIndex"], 0, "{bad}: {body}");
    }
    assert_eq!(t.events(), 0);
    for stream in ["strict-1", "strict-2"] {
        expect_problem(
            t.get(&format!("/streams/{stream}")).await,
            ProblemKind::StreamNotFound,
        )
        .await;
    }
    // `null` is a JSON value, not a missing `data`.
    t.append_ok(
        "strict-3",
        None,
        &json!([{"eventType": "Nothing", "data": null}]),
    )
    .await;
    let event = t.get_json("/streams/strict-3/0").await;
    assert_eq!(data_fields(&event), ["data"], "{event}");
    assert_eq!(event["data"], Value::Null);
    t.stop().await;
}

#[tokio::test]
async fn as_of_an_events_recorded_at_includes_that_event() {
    let clock = ManualClock::at("2026-11-23T10:15:00.123456Z");
    let t = TestServer::with(
        Config::default(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let one = |n: u32| json!([{"eventType": "E", "data": {"n": n}}]);
    t.append_ok("time-1", None, &one(0)).await;
    // Later within the same millisecond, then in the next one.
    clock.set("2026-11-23T10:15:00.123789Z");
    t.append_ok("time-1", None, &one(1)).await;
    clock.set("2026-11-23T10:15:00.124001Z");
    t.append_ok("time-1", None, &one(2)).await;

    let first = t.get_json("/streams/time-1/0").await;
    let recorded_at = first["recordedAt"].as_str().unwrap().to_owned();
    assert_eq!(recorded_at, "2026-11-23T10:15:00.123Z");
    let versions = |page: &Value| -> Vec<u64> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect()
    };
    // The end of the millisecond: both events recorded in it, though after `.123000`.
    for path in ["/streams/time-1", "/all"] {
        let page = t.get_json(&format!("{path}?asOf={recorded_at}")).await;
        assert_eq!(versions(&page), [0, 1], "{path}: {page}");
        let page = t
            .get_json(&format!("{path}?asOf={recorded_at}&direction=backward"))
            .await;
        assert_eq!(versions(&page), [1, 0], "{path}: {page}");
    }
    // Every event is included as of its own recordedAt.
    let page = t.get_json("/streams/time-1").await;
    for event in page["events"].as_array().unwrap() {
        let version = event["version"].as_u64().unwrap();
        let as_of = event["recordedAt"].as_str().unwrap();
        let seen = t.get_json(&format!("/streams/time-1?asOf={as_of}")).await;
        assert!(versions(&seen).contains(&version), "{as_of}: {seen}");
    }
    // More than three fractional digits are taken to the microsecond; fewer are a millisecond.
    for (as_of, expected) in [
        ("2026-11-23T10:15:00.123455Z", &[][..]),
        ("2026-11-23T10:15:00.123456Z", &[0][..]),
        ("2026-11-23T10:15:00.1234560Z", &[0][..]),
        ("2026-11-23T10:15:00.123788Z", &[0][..]),
        ("2026-11-23T10:15:00.123999Z", &[0, 1][..]),
        ("2026-11-23T10:15:00.122Z", &[][..]),
        ("2026-11-23T10:15:00.12Z", &[][..]),
        ("2026-11-23T10:15:00Z", &[][..]),
        ("2026-11-23T10:15:00.124Z", &[0, 1, 2][..]),
        // The same instant in another offset; `+` is `%2B` in a query.
        ("2026-11-23T11:15:00.123%2B01:00", &[0, 1][..]),
    ] {
        let page = t.get_json(&format!("/all?asOf={as_of}")).await;
        assert_eq!(versions(&page), expected, "asOf={as_of}: {page}");
    }
    t.stop().await;
}
