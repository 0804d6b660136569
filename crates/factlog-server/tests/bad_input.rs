//! Bad input changes nothing and is never a server error: every case is a problem document with
//! its stable `type`, and no event is written.

mod common;

use common::{TestServer, expect_problem, new_events};
use factlog_api::ProblemKind;
use factlog_log::Options;
use factlog_server::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

/// Posts `body` (raw bytes, `application/json`) to `path`, expects `kind`, and checks that
/// nothing was written.
async fn post_raw(t: &TestServer, path: &str, body: &[u8], kind: ProblemKind) -> Value {
    let before = t.events();
    let response = t
        .http
        .post(t.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, kind).await;
    assert_eq!(
        t.events(),
        before,
        "POST {path} {} wrote events",
        String::from_utf8_lossy(body)
    );
    problem
}

#[tokio::test]
async fn malformed_and_non_array_bodies_are_400() {
    let t = TestServer::start().await;
    t.append_ok("body-1", None, &new_events("E", 0, 1)).await;
    for body in [
        &b"[{\""[..],
        b"not json",
        b"",
        b"   ",
        b"{\"eventType\": \"E\", \"data\": 1}",
        b"\"E\"",
        b"null",
        b"42",
        b"[] trailing",
        b"[,]",
        b"[{]",
        b"\xff\xfe[",
    ] {
        for path in ["/streams/body-1", "/append"] {
            post_raw(&t, path, body, ProblemKind::MalformedBody).await;
        }
    }
    post_raw(
        &t,
        "/streams/body-1",
        b"[{\"eventType\":",
        ProblemKind::MalformedBody,
    )
    .await;
    t.stop().await;
}

#[tokio::test]
async fn invalid_events_are_422_and_name_the_field() {
    let t = TestServer::start().await;
    t.append_ok("event-1", None, &new_events("E", 0, 1)).await;
    let long_type = "T".repeat(256);
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!([1]), None),
        (json!([{"data": 1}]), None),
        (json!([{"eventType": "E"}]), None),
        (
            json!([{"eventType": "E", "data": 1, "colour": "red"}]),
            None,
        ),
        (json!([{"eventType": 7, "data": 1}]), None),
        (json!([{"eventType": "E", "data": 1, "metadata": 5}]), None),
        (
            json!([{"eventType": "E", "data": 1, "metadata": [1]}]),
            None,
        ),
        (
            json!([{"eventType": "E", "data": 1, "schemaVersion": -1}]),
            None,
        ),
        (
            json!([{"eventType": "E", "data": 1, "schemaVersion": "2"}]),
            None,
        ),
        (json!([{"eventType": "", "data": 1}]), Some("eventType")),
        (
            json!([{"eventType": long_type, "data": 1}]),
            Some("eventType"),
        ),
        (
            json!([{"eventType": "A\u{1}B", "data": 1}]),
            Some("eventType"),
        ),
        (
            json!([{"eventType": "E", "data": 1, "eventId": "not-a-uuid"}]),
            Some("eventId"),
        ),
        (
            json!([{"eventType": "E", "data": {"a": 1}, "contentType": "text/plain"}]),
            Some("data"),
        ),
        // The second event is the bad one: the first is not stored either.
        (
            json!([{"eventType": "Good", "data": 1}, {"eventType": "", "data": 1}]),
            Some("eventType"),
        ),
    ];
    for (events, field) in cases {
        let body = serde_json::to_vec(&events).unwrap();
        let problem = post_raw(&t, "/streams/event-1", &body, ProblemKind::InvalidEvent).await;
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "{problem}");
        }
        // The same events inside a multi-stream append.
        let multi = json!([
            {"stream": "event-2", "events": new_events("E", 0, 1)},
            {"stream": "event-1", "events": events},
        ]);
        let problem = post_raw(
            &t,
            "/append",
            &serde_json::to_vec(&multi).unwrap(),
            ProblemKind::InvalidEvent,
        )
        .await;
        if field.is_some() {
            assert_eq!(problem["streamIndex"], 1, "{problem}");
        }
    }
    let problem = post_raw(
        &t,
        "/streams/event-1",
        br#"[{"eventType": "E", "data": 1}, {"eventType": "F", "data": 2, "eventId": "0190a5a0-0000-7000-8000-00000000000x"}]"#,
        ProblemKind::InvalidEvent,
    )
    .await;
    assert_eq!(problem["index"], 1);

    // An append without events, and one id twice in one append.
    post_raw(&t, "/streams/event-1", b"[]", ProblemKind::EmptyAppend).await;
    let id = "0190a5a0-0000-7000-8000-000000000007";
    let twice = json!([
        {"eventId": id, "eventType": "E", "data": 1},
        {"eventId": id, "eventType": "E", "data": 2},
    ]);
    let problem = post_raw(
        &t,
        "/streams/event-1",
        &serde_json::to_vec(&twice).unwrap(),
        ProblemKind::DuplicateEventId,
    )
    .await;
    assert_eq!(problem["eventId"], id);
    t.stop().await;
}

#[tokio::test]
async fn invalid_stream_names_are_400() {
    let t = TestServer::start().await;
    let too_long = "s".repeat(256);
    let names = [
        "%24all".to_owned(),
        "%24anything".to_owned(),
        too_long.clone(),
        "a%01b".to_owned(),
        "%0A".to_owned(),
        "tab%09".to_owned(),
        "del%7F".to_owned(),
        // Percent-encoding that is not UTF-8.
        "%FF%FE".to_owned(),
    ];
    for name in &names {
        let path = format!("/streams/{name}");
        let before = t.events();
        let response = t
            .http
            .post(t.url(&path))
            .json(&new_events("E", 0, 1))
            .send()
            .await
            .unwrap();
        expect_problem(response, ProblemKind::InvalidStreamName).await;
        assert_eq!(t.events(), before, "POST {path} wrote events");
        for read in [
            path.clone(),
            format!("{path}/0"),
            format!("{path}/info"),
            format!("/subscribe/streams/{name}"),
        ] {
            expect_problem(t.get(&read).await, ProblemKind::InvalidStreamName).await;
        }
    }
    // In a multi-stream append.
    for name in ["$all", &too_long, "a\u{1}b", ""] {
        let body = json!([{"stream": name, "events": new_events("E", 0, 1)}]);
        let problem = post_raw(
            &t,
            "/append",
            &serde_json::to_vec(&body).unwrap(),
            ProblemKind::InvalidStreamName,
        )
        .await;
        assert_eq!(problem["streamIndex"], 0, "{problem}");
    }
    // 255 bytes is the longest name; a name may hold reserved characters when encoded.
    assert_eq!(t.events(), 0);
    t.append_ok(&"s".repeat(255), None, &new_events("E", 0, 1))
        .await;
    t.append_ok("a%24b%2Fc%3Fd", None, &new_events("E", 0, 1))
        .await;
    assert_eq!(t.events(), 2);
    t.stop().await;
}

#[tokio::test]
async fn invalid_expected_versions_are_400() {
    let t = TestServer::start().await;
    t.append_ok("ev-1", None, &new_events("E", 0, 1)).await;
    let before = t.events();
    let values: [&[u8]; 10] = [
        b"sometimes",
        b"-1",
        b"1.5",
        b"",
        b"Any",
        b"NO-STREAM",
        b"0x1",
        b"18446744073709551616",
        b"1, 2",
        b"\xff",
    ];
    for value in values {
        let response = t
            .http
            .post(t.url("/streams/ev-1"))
            .header(
                "expected-version",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            )
            .json(&new_events("E", 0, 1))
            .send()
            .await
            .unwrap();
        expect_problem(response, ProblemKind::InvalidExpectedVersion).await;
        assert_eq!(t.events(), before, "{}", String::from_utf8_lossy(value));
    }
    // Given twice, even when one of them would hold.
    let response = t
        .http
        .post(t.url("/streams/ev-1"))
        .header("expected-version", "0")
        .header("expected-version", "any")
        .json(&new_events("E", 0, 1))
        .send()
        .await
        .unwrap();
    expect_problem(response, ProblemKind::InvalidExpectedVersion).await;
    assert_eq!(t.events(), before);
    t.stop().await;
}

#[tokio::test]
async fn invalid_query_parameters_are_400() {
    let t = TestServer::start().await;
    t.append_ok("query-1", None, &new_events("E", 0, 3)).await;
    let bad = [
        "limit=0",
        "limit=abc",
        "limit=-1",
        "limit=",
        "limit=10001",
        "limit=18446744073709551616",
        "limit=1&limit=2",
        "direction=sideways",
        "direction=",
        "asOf=yesterday",
        "asOf=2026-01-01",
        "asOf=2026-01-01T00:00:00",
        "asOf=2026-01-01T00:00:00Z&asOfPosition=1",
        "asOfPosition=first",
        "from=-1",
        "from=abc",
        "from=1.5",
    ];
    for query in bad {
        for path in ["/streams/query-1", "/all"] {
            let url = format!("{path}?{query}");
            let problem = expect_problem(t.get(&url).await, ProblemKind::InvalidParameter).await;
            assert!(problem["parameter"].is_string(), "{url}: {problem}");
        }
    }
    let body = expect_problem(t.get("/all?limit=0").await, ProblemKind::InvalidParameter).await;
    assert_eq!(body["parameter"], "limit");
    let body = expect_problem(
        t.get("/streams/query-1?asOf=yesterday").await,
        ProblemKind::InvalidParameter,
    )
    .await;
    assert_eq!(body["parameter"], "asOf");
    for query in ["limit=0", "limit=abc", "limit=10001", "prefix=a&prefix=b"] {
        expect_problem(
            t.get(&format!("/streams?{query}")).await,
            ProblemKind::InvalidParameter,
        )
        .await;
    }
    // A version in the path.
    for version in ["abc", "-1", "1.0", "18446744073709551616", "%FF"] {
        let body = expect_problem(
            t.get(&format!("/streams/query-1/{version}")).await,
            ProblemKind::InvalidParameter,
        )
        .await;
        assert_eq!(body["parameter"], "version");
    }
    // Where a subscription starts.
    for path in [
        "/subscribe/all?from=-1",
        "/subscribe/all?from=abc",
        "/subscribe/all?from=1&from=2",
        "/subscribe/streams/query-1?from=-1",
        "/subscribe/streams/query-1?from=later",
    ] {
        expect_problem(t.get(path).await, ProblemKind::InvalidParameter).await;
    }
    for path in ["/subscribe/all", "/subscribe/streams/query-1"] {
        let response = t
            .http
            .get(t.url(path))
            .header("last-event-id", "yesterday")
            .send()
            .await
            .unwrap();
        let body = expect_problem(response, ProblemKind::InvalidHeader).await;
        assert_eq!(body["header"], "Last-Event-ID");
    }
    assert_eq!(t.events(), 3);
    t.stop().await;
}

#[tokio::test]
async fn bodies_over_the_body_limit_are_413() {
    let t = TestServer::with_config(Config {
        body_limit_bytes: 1024,
        ..Config::default()
    })
    .await;
    t.append_ok("limit-1", None, &new_events("E", 0, 1)).await;
    let big = json!([{"eventType": "E", "data": "x".repeat(4000)}]);
    let body = serde_json::to_vec(&big).unwrap();
    for path in ["/streams/limit-1", "/append"] {
        let problem = post_raw(&t, path, &body, ProblemKind::BodyTooLarge).await;
        assert_eq!(problem["max"], 1024);
    }
    // Without a Content-Length (chunked), the limit holds as the body arrives.
    let before = t.events();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(500).map(|c| Ok(c.to_vec())).collect();
    let response = t
        .http
        .post(t.url("/streams/limit-1"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    expect_problem(response, ProblemKind::BodyTooLarge).await;
    assert_eq!(t.events(), before);
    // Just under the limit is fine.
    let small = json!([{"eventType": "E", "data": "x".repeat(900)}]);
    assert!(serde_json::to_vec(&small).unwrap().len() <= 1024);
    t.append_ok("limit-1", None, &small).await;
    t.stop().await;
}

#[tokio::test]
async fn events_over_the_store_limits_are_413() {
    let t = TestServer::with(
        Config::default(),
        Options {
            event_size_bytes_max: 1024,
            append_events_max: 10,
            ..Options::default()
        },
    )
    .await;
    t.append_ok("limit-2", None, &new_events("E", 0, 1)).await;
    let before = t.events();
    let big = json!([
        {"eventType": "E", "data": "small"},
        {"eventType": "E", "data": "x".repeat(2000)},
    ]);
    let problem = post_raw(
        &t,
        "/streams/limit-2",
        &serde_json::to_vec(&big).unwrap(),
        ProblemKind::LimitExceeded,
    )
    .await;
    assert_eq!(problem["limit"], "event_size_bytes_max");
    assert_eq!(problem["max"], 1024);
    assert!(problem["actual"].as_u64().unwrap() > 1024, "{problem}");
    let multi = json!([
        {"stream": "limit-3", "events": new_events("E", 0, 1)},
        {"stream": "limit-2", "events": big},
    ]);
    post_raw(
        &t,
        "/append",
        &serde_json::to_vec(&multi).unwrap(),
        ProblemKind::LimitExceeded,
    )
    .await;
    let many = new_events("E", 0, 11);
    let problem = post_raw(
        &t,
        "/streams/limit-2",
        &serde_json::to_vec(&many).unwrap(),
        ProblemKind::LimitExceeded,
    )
    .await;
    assert_eq!(problem["limit"], "append_events_max");
    assert_eq!(t.events(), before);
    t.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415() {
    let t = TestServer::start().await;
    let body = serde_json::to_vec(&new_events("E", 0, 1)).unwrap();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ] {
        for path in ["/streams/media-1", "/append"] {
            let response = t
                .http
                .post(t.url(path))
                .header("content-type", content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            expect_problem(response, ProblemKind::UnsupportedMediaType).await;
        }
    }
    // JSON with parameters, or a +json type, is fine.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.factlog+json",
    ] {
        let response = t
            .http
            .post(t.url("/streams/media-1"))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{content_type}");
    }
    assert_eq!(t.events(), 2);
    t.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let t = TestServer::start().await;
    t.append_ok("route-1", None, &new_events("E", 0, 1)).await;
    let body = serde_json::to_vec(&new_events("E", 0, 1)).unwrap();
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/nope"),
        (Method::GET, "/streams/route-1/0/extra"),
        (Method::POST, "/streams/route-1/0/extra"),
        (Method::GET, "/subscribe"),
        (Method::GET, "/subscribe/streams"),
        (Method::GET, "/admin"),
        (Method::GET, "/"),
    ] {
        let response = t
            .http
            .request(method.clone(), t.url(path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, ProblemKind::NotFound).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(path),
            "{method} {path}: {problem}"
        );
    }
    for (method, path) in [
        (Method::DELETE, "/streams/route-1"),
        (Method::PUT, "/streams/route-1"),
        (Method::PATCH, "/streams/route-1"),
        (Method::POST, "/streams/route-1/0"),
        (Method::DELETE, "/streams/route-1/0"),
        (Method::POST, "/streams/route-1/info"),
        (Method::GET, "/append"),
        (Method::PUT, "/append"),
        (Method::POST, "/all"),
        (Method::POST, "/streams"),
        (Method::POST, "/categories"),
        (Method::POST, "/health"),
        (Method::POST, "/ready"),
        (Method::POST, "/metrics"),
        (Method::POST, "/openapi.json"),
        (Method::POST, "/subscribe/all"),
        (Method::DELETE, "/admin/stats"),
        (Method::GET, "/admin/backup"),
    ] {
        let response = t
            .http
            .request(method.clone(), t.url(path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        expect_problem(response, ProblemKind::MethodNotAllowed).await;
        let allow = allow.unwrap_or_else(|| panic!("{method} {path}: a 405 without Allow"));
        assert!(
            !allow.contains(method.as_str()),
            "{method} {path}: Allow: {allow}"
        );
    }
    assert_eq!(t.events(), 1);
    t.stop().await;
}

#[tokio::test]
async fn extreme_numbers_are_answered_without_a_server_error() {
    let t = TestServer::start().await;
    t.append_ok("edge-1", None, &new_events("E", 0, 3)).await;
    let max = u64::MAX;
    for path in [
        format!("/streams/edge-1?from={max}"),
        format!("/streams/edge-1?from={max}&direction=backward"),
        format!("/streams/edge-1?from={max}&limit=10000"),
        format!("/streams/edge-1/{max}"),
        format!("/all?from={max}"),
        format!("/all?from={max}&direction=backward"),
        format!("/all?asOfPosition={max}"),
        "/all?asOfPosition=0&direction=backward".to_owned(),
        format!("/streams/edge-1?asOfPosition={max}"),
        "/all?asOf=9999-12-31T23:59:59.999Z".to_owned(),
        "/all?asOf=0001-01-01T00:00:00Z&direction=backward".to_owned(),
        "/streams/edge-1?asOf=1970-01-01T00:00:00Z".to_owned(),
        "/streams?after=%F0%9F%A6%80&limit=10000".to_owned(),
    ] {
        let response = t.get(&path).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status == 200 || status == 400 || status == 404,
            "GET {path}: {status} {text}"
        );
    }
    for (path, id) in [
        ("/subscribe/all", max.to_string()),
        ("/subscribe/streams/edge-1", max.to_string()),
    ] {
        let response = t
            .http
            .get(t.url(path))
            .header("last-event-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = t
        .append("edge-1", Some(&max.to_string()), &new_events("E", 0, 1))
        .await;
    let body = expect_problem(response, ProblemKind::WrongExpectedVersion).await;
    assert_eq!(body["currentVersion"], 2);
    assert_eq!(t.events(), 3);
    t.stop().await;
}

/// Random damage to valid requests: every answer is a success or a problem below 500, and a
/// request that is not answered `201` writes nothing.
#[tokio::test]
async fn random_damage_is_never_a_server_error_and_never_a_partial_write() {
    let seed: u64 = std::env::var("FACTLOG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("FACTLOG_TEST_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let t = TestServer::start().await;
    let valid_single = serde_json::to_vec(&json!([
        {"eventId": "0190a5a0-0000-7000-8000-000000000001", "eventType": "Opened", "data": {"owner": "ada", "n": [1, 2]}, "metadata": {"k": "v"}, "schemaVersion": 2},
        {"eventType": "Renamed", "data": "text"},
    ]))
    .unwrap();
    let valid_multi = serde_json::to_vec(&json!([
        {"stream": "fuzz-2", "expectedVersion": "any", "events": [{"eventType": "A", "data": 1}]},
        {"stream": "fuzz-3", "expectedVersion": 0, "events": [{"eventType": "B", "data": {"x": null}}]},
    ]))
    .unwrap();
    let alphabet: &[u8] = b"[]{}\",:0123456789-.eE \\/$%\x01\xffatrufnl";
    for round in 0..400 {
        let (path, valid) = if rng.gen_bool(0.5) {
            ("/streams/fuzz-1", &valid_single)
        } else {
            ("/append", &valid_multi)
        };
        let mut body = valid.clone();
        for _ in 0..rng.gen_range(1..4) {
            match rng.gen_range(0..4) {
                0 => body.truncate(rng.gen_range(0..=body.len())),
                1 if !body.is_empty() => {
                    let i = rng.gen_range(0..body.len());
                    body[i] = alphabet[rng.gen_range(0..alphabet.len())];
                }
                2 => {
                    let i = rng.gen_range(0..=body.len());
                    body.insert(i, alphabet[rng.gen_range(0..alphabet.len())]);
                }
                _ if !body.is_empty() => {
                    let i = rng.gen_range(0..body.len());
                    body.remove(i);
                }
                _ => {}
            }
        }
        let mut request = t
            .http
            .post(t.url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        if rng.gen_bool(0.2) {
            let expected =
                ["any", "no-stream", "exists", "0", "1", "x", "-3", ""][rng.gen_range(0..8)];
            request = request.header("expected-version", expected);
        }
        let before = t.events();
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let context = format!(
            "seed {seed}, round {round}: POST {path} {} -> {status} {text}",
            String::from_utf8_lossy(&body)
        );
        assert!(status < 500, "{context}");
        if status == 201 {
            assert!(t.events() > before, "{context}");
        } else {
            assert_eq!(t.events(), before, "{context}");
            assert_eq!(
                content_type.as_deref(),
                Some("application/problem+json"),
                "{context}"
            );
            let problem: Value = serde_json::from_str(&text).unwrap();
            let kind = ProblemKind::from_type_uri(problem["type"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{context}"));
            assert_eq!(kind.status(), status, "{context}");
        }
    }
    // Damaged query strings on every read.
    let pieces = [
        "from=",
        "limit=",
        "direction=",
        "asOf=",
        "asOfPosition=",
        "types=",
        "prefix=",
        "after=",
        "category=",
        "1",
        "0",
        "-1",
        "abc",
        "%",
        "%zz",
        "%FF",
        "&",
        "=",
        "backward",
        "2026-01-01T00:00:00Z",
        "18446744073709551616",
        "+",
        ";",
    ];
    for round in 0..300 {
        let path = [
            "/streams/fuzz-1",
            "/all",
            "/streams",
            "/categories",
            "/streams/fuzz-1/info",
            "/streams/fuzz-1/0",
        ][rng.gen_range(0..6)];
        let query: String = (0..rng.gen_range(1..6))
            .map(|_| pieces[rng.gen_range(0..pieces.len())])
            .collect();
        let url = format!("{path}?{query}");
        let response = t.get(&url).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(
            status < 500,
            "seed {seed}, round {round}: GET {url} -> {status} {text}"
        );
    }
    t.stop().await;
}
