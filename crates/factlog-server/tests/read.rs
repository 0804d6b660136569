//! Reads over HTTP: streams, single events, stream info, listings, categories and `$all`, the
//! event JSON, paging in both directions, filters and time travel.

mod common;

use std::collections::HashSet;

use common::{ManualClock, TestServer, expect_problem, is_utc_millis, new_events};
use factlog_api::ProblemKind;
use factlog_log::Options;
use factlog_server::Config;
use serde_json::{Value, json};

fn positions(events: &Value) -> Vec<u64> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn an_event_has_every_field_in_its_json_form() {
    let clock = ManualClock::at("2026-03-04T05:06:07.123456Z");
    let t = TestServer::with(
        Config::default(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let appended = t
        .append_ok(
            "account-7",
            None,
            &json!([{
                "eventId": "0190a5a0-0000-7000-8000-0000000000aa",
                "eventType": "Deposited",
                "data": {"amount": 12, "note": "ünïcode"},
                "metadata": {"correlationId": "c-9", "causationId": "d-1"},
                "schemaVersion": 3,
            }]),
        )
        .await;
    let event = t.get_json("/streams/account-7/0").await;
    let mut fields: Vec<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "contentType",
            "data",
            "eventId",
            "eventType",
            "metadata",
            "position",
            "recordedAt",
            "schemaVersion",
            "stream",
            "version"
        ]
    );
    assert_eq!(event["eventId"], "0190a5a0-0000-7000-8000-0000000000aa");
    assert_eq!(event["stream"], "account-7");
    assert_eq!(event["version"], 0);
    assert!(event["position"].is_string(), "a position is a string");
    assert_eq!(event["position"], appended["firstPosition"]);
    assert_eq!(event["eventType"], "Deposited");
    assert_eq!(event["schemaVersion"], 3);
    assert_eq!(event["contentType"], "application/json");
    assert_eq!(event["data"], json!({"amount": 12, "note": "ünïcode"}));
    assert_eq!(
        event["metadata"],
        json!({"correlationId": "c-9", "causationId": "d-1"})
    );
    // RFC 3339, UTC, milliseconds: the microseconds of the clock are cut, not rounded.
    let recorded_at = event["recordedAt"].as_str().unwrap();
    assert!(is_utc_millis(recorded_at), "{recorded_at}");
    assert_eq!(recorded_at, "2026-03-04T05:06:07.123Z");

    // Defaults: an id from the store, schema version 1, empty metadata.
    t.append_ok(
        "account-7",
        None,
        &json!([{"eventType": "Noted", "data": null}]),
    )
    .await;
    let event = t.get_json("/streams/account-7/1").await;
    assert_eq!(event["schemaVersion"], 1);
    assert_eq!(event["metadata"], json!({}));
    assert_eq!(event["data"], Value::Null);
    assert_eq!(event["eventId"].as_str().unwrap().len(), 36);
    assert!(is_utc_millis(event["recordedAt"].as_str().unwrap()));

    // Data of another content type is a string, stored and answered as it was given.
    t.append_ok(
        "account-7",
        None,
        &json!([{"eventType": "Noted", "data": "plain {text}", "contentType": "text/plain"}]),
    )
    .await;
    let text = t.get_json("/streams/account-7/2").await;
    assert_eq!(text["contentType"], "text/plain");
    assert_eq!(text["data"], "plain {text}");

    // The same JSON in a stream page and in $all.
    let page = t.get_json("/streams/account-7").await;
    assert_eq!(page["events"][1], event);
    let all = t.get_json("/all").await;
    assert_eq!(all["events"][1], event);
    t.stop().await;
}

#[tokio::test]
async fn stream_reads_page_forward_and_backward_visiting_every_event_once() {
    let t = TestServer::start().await;
    for batch in 0..10 {
        t.append_ok("page-1", None, &new_events("E", batch * 5, 5))
            .await;
        t.append_ok("page-2", None, &new_events("F", batch, 1))
            .await;
    }
    let page = t.get_json("/streams/page-1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 50);
    assert!(page.get("nextVersion").is_none(), "{page}");

    for (direction, expected) in [
        ("forward", (0..50).collect::<Vec<u64>>()),
        ("backward", (0..50).rev().collect()),
    ] {
        let mut seen = Vec::new();
        let mut from: Option<u64> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/streams/page-1?limit=7&direction={direction}");
            if let Some(from) = from {
                path.push_str(&format!("&from={from}"));
            }
            let page = t.get_json(&path).await;
            pages += 1;
            for event in page["events"].as_array().unwrap() {
                seen.push(event["version"].as_u64().unwrap());
                assert_eq!(event["data"]["n"], event["version"], "{event}");
            }
            match page.get("nextVersion") {
                Some(next) => from = Some(next.as_u64().unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{direction}");
        assert_eq!(pages, 8, "{direction}");
    }

    // Starting in the middle, and past the end.
    let page = t.get_json("/streams/page-1?from=45").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 5);
    assert!(page.get("nextVersion").is_none());
    let page = t
        .get_json("/streams/page-1?from=3&direction=backward")
        .await;
    let versions: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1, 0]);
    let page = t.get_json("/streams/page-1?from=50").await;
    assert_eq!(page["events"], json!([]));
    assert!(page.get("nextVersion").is_none());
    // Exactly a page.
    let page = t.get_json("/streams/page-1?from=40&limit=10").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 10);
    assert!(page.get("nextVersion").is_none(), "{page}");
    t.stop().await;
}

#[tokio::test]
async fn missing_streams_and_events_are_problems() {
    let t = TestServer::start().await;
    t.append_ok("here-1", None, &new_events("E", 0, 2)).await;
    let body = expect_problem(
        t.get("/streams/nowhere-1").await,
        ProblemKind::StreamNotFound,
    )
    .await;
    assert_eq!(body["stream"], "nowhere-1");
    expect_problem(
        t.get("/streams/nowhere-1/info").await,
        ProblemKind::StreamNotFound,
    )
    .await;
    let body = expect_problem(t.get("/streams/here-1/2").await, ProblemKind::EventNotFound).await;
    assert_eq!(body["stream"], "here-1");
    assert_eq!(body["version"], 2);
    expect_problem(
        t.get("/streams/nowhere-1/0").await,
        ProblemKind::EventNotFound,
    )
    .await;
    t.stop().await;
}

#[tokio::test]
async fn events_are_found_by_id_in_any_stream() {
    let t = TestServer::start().await;
    let given = "0190a5a0-0000-7000-8000-0000000000bb";
    t.append_ok("byid-1", None, &new_events("E", 0, 2)).await;
    t.append_ok(
        "byid-2",
        None,
        &json!([{"eventId": given, "eventType": "Given", "data": {"n": 9}}]),
    )
    .await;
    t.append_ok("byid-1", None, &new_events("E", 2, 1)).await;

    // Every event, by its id, is the same JSON as by its stream and version and as in $all.
    let all = t.get_json("/all").await;
    let all = all["events"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    for event in all {
        let id = event["eventId"].as_str().unwrap();
        let by_id = t.get_json(&format!("/events/{id}")).await;
        assert_eq!(&by_id, event, "GET /events/{id}");
        let by_version = t
            .get_json(&format!(
                "/streams/{}/{}",
                event["stream"].as_str().unwrap(),
                event["version"]
            ))
            .await;
        assert_eq!(by_id, by_version, "GET /events/{id}");
    }
    let by_id = t.get_json(&format!("/events/{given}")).await;
    assert_eq!(by_id["eventId"], given);
    assert_eq!(by_id["stream"], "byid-2");
    assert_eq!(by_id["version"], 0);
    assert_eq!(by_id["eventType"], "Given");
    assert_eq!(by_id["data"], json!({"n": 9}));
    // A UUID is a UUID in either case; the answer spells it as stored.
    let upper = t
        .get_json(&format!("/events/{}", given.to_uppercase()))
        .await;
    assert_eq!(upper, by_id);
    t.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_event_ids_are_problems() {
    let t = TestServer::start().await;
    let unknown = "0190a5a0-0000-7000-8000-0000000000cc";
    let body = expect_problem(
        t.get(&format!("/events/{unknown}")).await,
        ProblemKind::EventNotFound,
    )
    .await;
    assert_eq!(body["eventId"], unknown, "on an empty store: {body}");
    t.append_ok("byid-1", None, &new_events("E", 0, 3)).await;
    let body = expect_problem(
        t.get(&format!("/events/{unknown}")).await,
        ProblemKind::EventNotFound,
    )
    .await;
    assert_eq!(body["eventId"], unknown, "{body}");

    for bad in [
        "not-a-uuid",
        "0",
        "42",
        "0190a5a0-0000-7000-8000-0000000000c",
        "0190a5a0-0000-7000-8000-0000000000ccc",
        "g190a5a0-0000-7000-8000-0000000000cc",
        "0190a5a0%200000-7000-8000-0000000000cc",
        "%FF",
        "byid-1",
    ] {
        let body = expect_problem(
            t.get(&format!("/events/{bad}")).await,
            ProblemKind::InvalidParameter,
        )
        .await;
        assert_eq!(body["parameter"], "eventId", "/events/{bad}: {body}");
    }
    // No id, or more than one segment, is no route.
    for path in ["/events", "/events/", &format!("/events/{unknown}/0")] {
        expect_problem(t.get(path).await, ProblemKind::NotFound).await;
    }
    assert_eq!(t.events(), 3, "reads write nothing");
    t.stop().await;
}

#[tokio::test]
async fn stream_info_listings_and_categories() {
    let clock = ManualClock::at("2026-01-01T00:00:00.000Z");
    let t = TestServer::with(
        Config::default(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    t.append_ok("account-1", None, &new_events("E", 0, 2)).await;
    clock.set("2026-01-01T00:00:05.250Z");
    t.append_ok("account-1", None, &new_events("E", 2, 1)).await;
    for stream in ["account-2", "account-10", "order-1", "order-2", "solo"] {
        t.append_ok(stream, None, &new_events("E", 0, 1)).await;
    }

    let info = t.get_json("/streams/account-1/info").await;
    assert_eq!(
        info,
        json!({
            "stream": "account-1",
            "lastVersion": 2,
            "eventCount": 3,
            "firstRecordedAt": "2026-01-01T00:00:00.000Z",
            "lastRecordedAt": "2026-01-01T00:00:05.250Z",
        })
    );

    let all = t.get_json("/streams").await;
    assert_eq!(
        all,
        json!({"streams": ["account-1", "account-10", "account-2", "order-1", "order-2", "solo"]})
    );
    let accounts = t.get_json("/streams?prefix=account-").await;
    assert_eq!(
        accounts["streams"],
        json!(["account-1", "account-10", "account-2"])
    );
    // Paging with after= visits every name once.
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/streams?limit=2".to_owned(),
            Some(after) => format!("/streams?limit=2&after={after}"),
        };
        let page = t.get_json(&path).await;
        for name in page["streams"].as_array().unwrap() {
            names.push(name.as_str().unwrap().to_owned());
        }
        match page.get("nextAfter") {
            Some(next) => after = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(
        names,
        all["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    );
    let page = t.get_json("/streams?prefix=order-&after=order-1").await;
    assert_eq!(page["streams"], json!(["order-2"]));

    let categories = t.get_json("/categories").await;
    assert_eq!(
        categories,
        json!({"categories": ["account", "order", "solo"]})
    );
    t.stop().await;
}

#[tokio::test]
async fn all_pages_forward_and_backward_with_filters_visiting_every_event_once() {
    let t = TestServer::start().await;
    // Interleaved appends to three streams with two event types.
    let mut expected = Vec::new(); // (stream, version, type)
    for round in 0..12 {
        for (stream, event_type) in [
            ("cart-1", "Added"),
            ("cart-2", "Removed"),
            ("user-1", "Added"),
        ] {
            let n = 1 + round % 3;
            let body = t
                .append_ok(stream, None, &new_events(event_type, 0, n))
                .await;
            let first = body["firstVersion"].as_u64().unwrap();
            for v in first..first + n as u64 {
                expected.push((stream.to_owned(), v, event_type.to_owned()));
            }
        }
    }
    let total = expected.len();
    assert_eq!(t.events(), total as u64);

    let read_all = |query: String| {
        let t = &t;
        async move {
            let mut seen = Vec::new();
            let mut from: Option<String> = None;
            loop {
                let mut path = format!("/all?{query}");
                if let Some(from) = &from {
                    path.push_str(&format!("&from={from}"));
                }
                let page = t.get_json(&path).await;
                for event in page["events"].as_array().unwrap() {
                    seen.push(event.clone());
                }
                match page.get("nextPosition") {
                    Some(next) => {
                        assert!(next.is_string(), "{page}");
                        from = Some(next.as_str().unwrap().to_owned());
                    }
                    None => break,
                }
            }
            seen
        }
    };

    let forward = read_all("limit=5".to_owned()).await;
    let keys: Vec<(String, u64, String)> = forward
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_owned(),
                e["version"].as_u64().unwrap(),
                e["eventType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(keys, expected);
    let forward_positions = positions(&Value::Array(forward.clone()));
    assert!(forward_positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        forward_positions.iter().collect::<HashSet<_>>().len(),
        total
    );

    let backward = read_all("limit=7&direction=backward".to_owned()).await;
    let mut reversed = positions(&Value::Array(backward));
    reversed.reverse();
    assert_eq!(reversed, forward_positions);

    // One page holding everything has no next position.
    let page = t.get_json(&format!("/all?limit={total}")).await;
    assert_eq!(page["events"].as_array().unwrap().len(), total);
    assert!(page.get("nextPosition").is_none(), "{page}");

    // Filters, with paging through filtered pages.
    let filtered = |keep: &dyn Fn(&(String, u64, String)) -> bool| {
        expected
            .iter()
            .filter(|e| keep(e))
            .cloned()
            .collect::<Vec<_>>()
    };
    for (query, want) in [
        ("types=Added", filtered(&|e| e.2 == "Added")),
        ("types=Removed,Nope", filtered(&|e| e.2 == "Removed")),
        ("prefix=cart-", filtered(&|e| e.0.starts_with("cart-"))),
        (
            "types=Added&prefix=cart-",
            filtered(&|e| e.0.starts_with("cart-") && e.2 == "Added"),
        ),
        ("category=user", filtered(&|e| e.0 == "user-1")),
        ("types=Nope", Vec::new()),
    ] {
        for direction in ["forward", "backward"] {
            let seen = read_all(format!("limit=4&direction={direction}&{query}")).await;
            let mut keys: Vec<(String, u64, String)> = seen
                .iter()
                .map(|e| {
                    (
                        e["stream"].as_str().unwrap().to_owned(),
                        e["version"].as_u64().unwrap(),
                        e["eventType"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            if direction == "backward" {
                keys.reverse();
            }
            assert_eq!(keys, want, "{query} {direction}");
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn as_of_reads_what_had_been_recorded_at_that_time() {
    let clock = ManualClock::at("2026-05-01T10:00:00.000Z");
    let t = TestServer::with(
        Config::default(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    t.append_ok("tt-1", None, &new_events("Early", 0, 3)).await;
    t.append_ok("tt-2", None, &new_events("Early", 0, 1)).await;
    clock.set("2026-05-01T11:00:00.000Z");
    t.append_ok("tt-1", None, &new_events("Late", 3, 2)).await;
    t.append_ok("tt-3", None, &new_events("Late", 0, 1)).await;

    let versions = |page: &Value| -> Vec<u64> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect()
    };
    let page = t.get_json("/streams/tt-1?asOf=2026-05-01T10:30:00Z").await;
    assert_eq!(versions(&page), [0, 1, 2]);
    let page = t
        .get_json("/streams/tt-1?asOf=2026-05-01T11:30:00%2B01:00&direction=backward")
        .await;
    assert_eq!(versions(&page), [2, 1, 0], "11:30+01:00 is 10:30Z");
    let page = t
        .get_json("/streams/tt-1?asOf=2026-05-01T11:00:00.000Z")
        .await;
    assert_eq!(versions(&page), [0, 1, 2, 3, 4]);

    // Before the stream existed, it did not exist.
    expect_problem(
        t.get("/streams/tt-3?asOf=2026-05-01T10:30:00Z").await,
        ProblemKind::StreamNotFound,
    )
    .await;

    let all = t.get_json("/all?asOf=2026-05-01T10:59:59.999Z").await;
    let types: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Early"; 4]);
    assert!(all.get("nextPosition").is_none());
    let all = t.get_json("/all?asOf=2026-05-01T09:00:00Z").await;
    assert_eq!(all["events"], json!([]));
    let all = t
        .get_json("/all?asOf=2026-05-01T10:30:00Z&direction=backward&limit=2")
        .await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2);
    assert_eq!(all["events"][0]["stream"], "tt-2");
    t.stop().await;
}

/// `Wait-For-Position` (read-your-writes across the nodes of a replicated store): on the
/// embedded store every acknowledged position is readable at once, so the request is answered
/// as without it; a header that is not positions is refused.
#[tokio::test]
async fn wait_for_position_is_answered_at_once_here_and_a_bad_one_is_refused() {
    let t = TestServer::start().await;
    let appended = t
        .append_ok("account-1", None, &new_events("Opened", 0, 2))
        .await;
    let last = appended["lastPosition"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let response = http
        .get(t.url("/streams/account-1"))
        .header("Wait-For-Position", format!("{last}, 1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    for bad in ["x", "1,,2", "-3", ""] {
        let response = http
            .get(t.url("/streams/account-1"))
            .header("Wait-For-Position", bad)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, ProblemKind::InvalidHeader).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Wait-For-Position"),
            "{problem}"
        );
    }
}
