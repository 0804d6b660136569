//! Appends over HTTP: `POST /streams/{stream}` with every expected version, conflicts,
//! idempotent retries, and the atomic multi-stream `POST /append`.

mod common;

use common::{TestServer, expect_problem, new_events};
use factlog_api::ProblemKind;
use serde_json::{Value, json};

#[tokio::test]
async fn append_answers_201_with_versions_positions_and_location() {
    let t = TestServer::start().await;
    let response = t
        .append(
            "account-1",
            None,
            &json!([
                {"eventType": "Opened", "data": {"owner": "ada"}, "metadata": {"correlationId": "c-1"}},
                {"eventType": "Deposited", "data": {"amount": 5}, "schemaVersion": 2},
            ]),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/streams/account-1/0");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["firstVersion"], 0);
    assert_eq!(body["lastVersion"], 1);
    // Positions are strings: ordered, opaque.
    let first: u64 = body["firstPosition"].as_str().unwrap().parse().unwrap();
    let last: u64 = body["lastPosition"].as_str().unwrap().parse().unwrap();
    assert!(first < last, "{body}");
    assert_eq!(t.events(), 2);

    // The Location is the first event.
    let event = t.get_json(&location).await;
    assert_eq!(event["eventType"], "Opened");
    assert_eq!(event["data"], json!({"owner": "ada"}));
    assert_eq!(event["metadata"], json!({"correlationId": "c-1"}));
    assert_eq!(event["position"], body["firstPosition"]);
    let second = t.get_json("/streams/account-1/1").await;
    assert_eq!(second["schemaVersion"], 2);
    assert_eq!(second["position"], body["lastPosition"]);

    // A second append continues the stream; its Location names its own first event.
    let response = t
        .append("account-1", Some("1"), &new_events("Deposited", 0, 1))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/streams/account-1/2");
    t.stop().await;
}

#[tokio::test]
async fn the_location_of_a_stream_with_reserved_characters_is_percent_encoded() {
    let t = TestServer::start().await;
    let response = t.append("a%2Fb%20c", None, &new_events("E", 0, 1)).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/streams/a%2Fb%20c/0");
    let event = t.get_json(&location).await;
    assert_eq!(event["stream"], "a/b c");
    t.stop().await;
}

#[tokio::test]
async fn every_expected_version_is_honoured() {
    let t = TestServer::start().await;
    let one = new_events("E", 0, 1);

    // no-stream: only while the stream does not exist.
    t.append_ok("ev-1", Some("no-stream"), &one).await;
    let body = expect_problem(
        t.append("ev-1", Some("no-stream"), &one).await,
        ProblemKind::WrongExpectedVersion,
    )
    .await;
    assert_eq!(body["currentVersion"], 0);
    assert_eq!(body["stream"], "ev-1");
    assert_eq!(body["expectedVersion"], "no-stream");

    // exists: only once it does.
    t.append_ok("ev-1", Some("exists"), &one).await;
    let before = t.events();
    let response = t.append("ev-2", Some("exists"), &one).await;
    assert!(
        response.headers().get("current-version").is_none(),
        "no Current-Version header for a stream that does not exist"
    );
    let body = expect_problem(response, ProblemKind::WrongExpectedVersion).await;
    assert_eq!(body["currentVersion"], Value::Null);
    assert!(body.as_object().unwrap().contains_key("currentVersion"));
    assert_eq!(t.events(), before);

    // An exact version: the last event's.
    let body = t.append_ok("ev-1", Some("1"), &one).await;
    assert_eq!(body["firstVersion"], 2);
    let before = t.events();
    let response = t.append("ev-1", Some("1"), &one).await;
    assert_eq!(response.headers()["current-version"], "2");
    let body = expect_problem(response, ProblemKind::WrongExpectedVersion).await;
    assert_eq!(body["currentVersion"], 2);
    assert_eq!(body["expectedVersion"], "1");
    // An exact version of a stream that does not exist.
    let response = t.append("ev-3", Some("0"), &one).await;
    assert!(response.headers().get("current-version").is_none());
    let body = expect_problem(response, ProblemKind::WrongExpectedVersion).await;
    assert_eq!(body["currentVersion"], Value::Null);
    assert_eq!(t.events(), before);

    // any (the default, and explicitly) appends whatever the stream holds.
    assert_eq!(t.append_ok("ev-1", None, &one).await["firstVersion"], 3);
    assert_eq!(
        t.append_ok("ev-1", Some("any"), &one).await["firstVersion"],
        4
    );
    assert_eq!(
        t.append_ok("ev-4", Some("any"), &one).await["firstVersion"],
        0
    );
    assert_eq!(t.events(), before + 3);
    t.stop().await;
}

#[tokio::test]
async fn a_retry_with_the_same_event_ids_answers_the_same_and_writes_nothing() {
    let t = TestServer::start().await;
    let events = json!([
        {"eventId": "0190a5a0-0000-7000-8000-000000000001", "eventType": "Opened", "data": {"a": 1}},
        {"eventId": "0190a5a0-0000-7000-8000-000000000002", "eventType": "Renamed", "data": {"a": 2}},
    ]);
    let first = t.append_ok("idem-1", Some("no-stream"), &events).await;
    t.append_ok("idem-other", None, &new_events("E", 0, 3))
        .await;
    let stored = t.events();
    // The same append again, also with an expectation that no longer holds: the retry of an
    // acknowledged append is recognised by its ids.
    for expected in [None, Some("no-stream")] {
        let response = t.append("idem-1", expected, &events).await;
        assert_eq!(response.status(), 201, "{expected:?}");
        assert_eq!(response.headers()["location"], "/streams/idem-1/0");
        let again: Value = response.json().await.unwrap();
        assert_eq!(again, first, "{expected:?}");
        assert_eq!(t.events(), stored);
    }
    let page = t.get_json("/streams/idem-1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["events"][0]["eventId"],
        "0190a5a0-0000-7000-8000-000000000001"
    );

    // The same id with other content is a conflict, and writes nothing either.
    let body = expect_problem(
        t.append(
            "idem-1",
            None,
            &json!([{"eventId": "0190a5a0-0000-7000-8000-000000000001", "eventType": "Opened", "data": {"a": 99}}]),
        )
        .await,
        ProblemKind::IdempotencyConflict,
    )
    .await;
    assert_eq!(body["eventId"], "0190a5a0-0000-7000-8000-000000000001");
    // And so is the same id in another stream.
    expect_problem(
        t.append(
            "idem-2",
            None,
            &json!([{"eventId": "0190a5a0-0000-7000-8000-000000000002", "eventType": "Renamed", "data": {"a": 2}}]),
        )
        .await,
        ProblemKind::IdempotencyConflict,
    )
    .await;
    assert_eq!(t.events(), stored);
    t.stop().await;
}

#[tokio::test]
async fn multi_stream_append_stores_every_part_in_request_order() {
    let t = TestServer::start().await;
    t.append_ok("order-1", None, &new_events("Placed", 0, 2))
        .await;
    let response = t
        .http
        .post(t.url("/append"))
        .json(&json!([
            {"stream": "order-1", "expectedVersion": 1, "events": new_events("Paid", 0, 1)},
            {"stream": "invoice-1", "expectedVersion": "no-stream", "events": new_events("Issued", 0, 2)},
            {"stream": "audit-1", "events": new_events("Logged", 0, 1)},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    let streams: Vec<&str> = results
        .iter()
        .map(|r| r["stream"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["order-1", "invoice-1", "audit-1"]);
    assert_eq!(results[0]["firstVersion"], 2);
    assert_eq!(results[1]["firstVersion"], 0);
    assert_eq!(results[1]["lastVersion"], 1);
    assert_eq!(results[2]["lastVersion"], 0);
    assert!(results[0]["firstPosition"].is_string());
    assert_eq!(t.events(), 6);
    let info = t.get_json("/streams/invoice-1/info").await;
    assert_eq!(info["eventCount"], 2);
    t.stop().await;
}

#[tokio::test]
async fn a_multi_stream_conflict_names_the_stream_and_writes_nothing() {
    let t = TestServer::start().await;
    t.append_ok("order-2", None, &new_events("Placed", 0, 1))
        .await;
    let before = t.events();
    let response = t
        .http
        .post(t.url("/append"))
        .json(&json!([
            {"stream": "invoice-2", "expectedVersion": "no-stream", "events": new_events("Issued", 0, 1)},
            {"stream": "order-2", "expectedVersion": "no-stream", "events": new_events("Paid", 0, 1)},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["current-version"], "0");
    let body = expect_problem(response, ProblemKind::WrongExpectedVersion).await;
    assert_eq!(body["stream"], "order-2");
    assert_eq!(body["currentVersion"], 0);
    assert_eq!(t.events(), before);
    // The part that met its expectation was not stored either.
    expect_problem(
        t.get("/streams/invoice-2").await,
        ProblemKind::StreamNotFound,
    )
    .await;

    // A bad part anywhere stops the whole append before the store is touched. The problem
    // names the part when it can (`streamIndex`).
    let invoice = json!({"stream": "invoice-2", "events": new_events("Issued", 0, 1)});
    let bad_parts = [
        (
            json!([invoice, {"stream": "$all", "events": new_events("Paid", 0, 1)}]),
            ProblemKind::InvalidStreamName,
            Some(1),
        ),
        (
            json!([invoice, {"stream": "order-2", "events": [{"eventType": "", "data": 1}]}]),
            ProblemKind::InvalidEvent,
            Some(1),
        ),
        (
            json!([invoice, {"stream": "invoice-2", "events": new_events("Issued", 1, 1)}]),
            ProblemKind::DuplicateStream,
            None,
        ),
        (
            json!([invoice, {"stream": "order-2", "events": []}]),
            ProblemKind::EmptyAppend,
            None,
        ),
        (json!([]), ProblemKind::EmptyAppend, None),
        // An expected version or a field the body cannot hold is a shape error of the body.
        (
            json!([{"stream": "invoice-2", "expectedVersion": "sometimes", "events": new_events("Issued", 0, 1)}]),
            ProblemKind::InvalidEvent,
            None,
        ),
        (
            json!([{"stream": "invoice-2", "events": new_events("Issued", 0, 1), "extra": true}]),
            ProblemKind::InvalidEvent,
            None,
        ),
        (invoice.clone(), ProblemKind::MalformedBody, None),
    ];
    for (body, kind, stream_index) in bad_parts {
        let response = t
            .http
            .post(t.url("/append"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, kind).await;
        if let Some(index) = stream_index {
            assert_eq!(problem["streamIndex"], index, "{problem}");
        }
        assert_eq!(t.events(), before, "{body} wrote events");
    }
    t.stop().await;
}
