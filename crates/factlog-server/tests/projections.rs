//! Projections over HTTP: a real server on 127.0.0.1 running a `StreamSummary` into SQLite (and
//! a projection that parks poison events), controlled through `/projections/...`: status, pause
//! and resume, reset plans and resets, rebuilds, dead letters, the problems of every refusal,
//! the roles, the metrics, and shutdown.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestServer, eventually, expect_problem, metric, new_events};
use factlog_api::ProblemKind;
use factlog_log::{EmbeddedStore, Options};
use factlog_projection::{
    ControlError, HandleError, Interest, Projection, ProjectionHandle, ProjectionName,
    ProjectionOptions, Projections, SqliteSink, SqliteUnit, StreamSummary,
};
use factlog_server::{Backend, Config, Role, Secret, TokenConfig};
use factlog_store::{EventStore, ReadAll, RecordedEvent};
use reqwest::Method;
use serde_json::{Value, json};

/// The stream summary of the `order` category.
const SUMMARY: &str = "order_summary";
/// Counts events of the `item` category and refuses `Poison` events while told to.
const PICKY: &str = "picky";

/// Counts each `item` stream's events; a `Poison` event fails (permanently, so it is parked at
/// once) while `refuse` is set.
struct Picky {
    refuse: Arc<AtomicBool>,
}

impl Projection<SqliteSink> for Picky {
    fn interest(&self) -> Interest {
        Interest::categories(["item"])
    }

    fn setup(&self, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        unit.create_table(PICKY, "(stream TEXT PRIMARY KEY, events INTEGER NOT NULL)")
    }

    fn handle(&self, event: &RecordedEvent, unit: &mut SqliteUnit<'_>) -> Result<(), HandleError> {
        if event.event_type.as_str() == "Poison" && self.refuse.load(Ordering::SeqCst) {
            return Err(HandleError::permanent("poison"));
        }
        let sql = format!(
            "INSERT INTO {} (stream, events) VALUES (?1, 1) \
             ON CONFLICT (stream) DO UPDATE SET events = events + 1",
            unit.table(PICKY)
        );
        unit.tx().execute(&sql, [event.stream.as_str()])?;
        Ok(())
    }
}

/// A server with the two projections into one SQLite file.
struct Setup {
    t: TestServer,
    /// Holds the SQLite file, beside (not inside) the store's directory.
    _sinks: tempfile::TempDir,
    database: PathBuf,
    summary: ProjectionHandle,
    refuse: Arc<AtomicBool>,
}

async fn start(config: Config) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Options::default()).unwrap());
    let sinks = tempfile::tempdir().unwrap();
    let database = sinks.path().join("read-models.sqlite");
    let sink = Arc::new(SqliteSink::open(&database).await.unwrap());
    let projections = Projections::new();
    let options = |name: &str| ProjectionOptions {
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        ..ProjectionOptions::new(ProjectionName::new(name).unwrap())
    };
    let summary = projections
        .start(
            store.clone() as Arc<dyn EventStore>,
            sink.clone(),
            Arc::new(StreamSummary::new(SUMMARY, Interest::categories(["order"]))),
            options(SUMMARY),
        )
        .unwrap();
    let refuse = Arc::new(AtomicBool::new(true));
    projections
        .start(
            store.clone() as Arc<dyn EventStore>,
            sink,
            Arc::new(Picky {
                refuse: refuse.clone(),
            }),
            options(PICKY),
        )
        .unwrap();
    let backend = Backend::embedded(store.clone()).with_projections(projections);
    let t = TestServer::with_backend(config, dir, store, backend).await;
    Setup {
        t,
        _sinks: sinks,
        database,
        summary,
        refuse,
    }
}

/// The position of the last event of the store, as the API writes positions.
async fn last_position(t: &TestServer) -> String {
    let last = t
        .store
        .read_all(ReadAll::backward().limit(1))
        .await
        .unwrap();
    last.first()
        .map_or("0".to_owned(), |e| e.position.to_string())
}

async fn get_status(t: &TestServer, name: &str) -> Value {
    t.get_json(&format!("/projections/{name}")).await
}

/// Waits until `name` has processed every event of the store; returns its status.
async fn caught_up(t: &TestServer, name: &str) -> Value {
    let end = last_position(t).await;
    eventually(&format!("{name} to reach {end}"), || async {
        let status = get_status(t, name).await;
        (status["position"] == end.as_str() && status["state"] == "running").then_some(status)
    })
    .await
}

async fn post(t: &TestServer, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = t.http.post(t.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// `POST path`, checking the status; returns the JSON body.
async fn post_ok(t: &TestServer, path: &str, body: Option<Value>, expected: u16) -> Value {
    let response = post(t, path, body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "POST {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn reset(t: &TestServer, body: Value) -> Value {
    post_ok(t, &format!("/projections/{SUMMARY}/reset"), Some(body), 200).await
}

/// The rows of a read model's view: events per stream.
fn rows(database: &Path, view: &str) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(database).unwrap();
    let mut statement = conn
        .prepare(&format!("SELECT stream, events FROM \"{view}\""))
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

/// Waits until the summary's view holds `expected` and the projection has caught up.
async fn summary_rows(s: &Setup, expected: &[(&str, i64)]) {
    let expected = counts(expected);
    eventually(&format!("the summary to be {expected:?}"), || async {
        (rows(&s.database, SUMMARY) == expected).then_some(())
    })
    .await;
    caught_up(&s.t, SUMMARY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pause_reset_and_rebuild_over_http() {
    let s = start(Config::default()).await;
    let t = &s.t;
    t.append_ok("order-1", None, &new_events("Placed", 0, 5))
        .await;
    t.append_ok("order-2", None, &new_events("Placed", 0, 3))
        .await;
    t.append_ok("customer-1", None, &new_events("Registered", 0, 2))
        .await;
    summary_rows(&s, &[("order-1", 5), ("order-2", 3)]).await;

    // The list, by name, and one status with every field.
    let list = t.get_json("/projections").await;
    let names: Vec<&str> = list["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [SUMMARY, PICKY]);
    let status = caught_up(t, SUMMARY).await;
    assert_eq!(status["name"], SUMMARY);
    assert_eq!(status["sink"], "sqlite");
    assert_eq!(status["state"], "running");
    assert_eq!(
        status["interest"],
        json!({"eventTypes": [], "categories": ["order"]})
    );
    assert_eq!(status["onError"], "park");
    assert_eq!(status["generation"], 1);
    assert_eq!(status["position"], "10");
    assert_eq!(status["eventsTotal"], 10);
    assert_eq!(status["appliedTotal"], 8);
    assert_eq!(status["deadLettersParked"], 0);
    assert_eq!(status["lastError"], Value::Null);
    assert_eq!(status["rebuild"], Value::Null);
    for field in ["committedPosition", "lastPosition"] {
        let position: u64 = status[field].as_str().unwrap().parse().unwrap();
        assert!(position <= 10, "{field}: {status}");
    }
    for field in ["lagEvents", "lagSeconds", "eventsPerSecond"] {
        assert!(status[field].as_f64().unwrap() >= 0.0, "{field}: {status}");
    }

    // Paused: appends go on, the position stays; resumed, it catches up.
    let paused = post_ok(t, &format!("/projections/{SUMMARY}/pause"), None, 200).await;
    assert_eq!(paused["state"], "paused");
    t.append_ok("order-1", None, &new_events("Shipped", 5, 3))
        .await;
    let behind = eventually("the paused projection to measure its lag", || async {
        let status = get_status(t, SUMMARY).await;
        (status["lagEvents"] == 3).then_some(status)
    })
    .await;
    assert_eq!(behind["position"], "10");
    assert_eq!(behind["state"], "paused");
    assert_eq!(
        rows(&s.database, SUMMARY),
        counts(&[("order-1", 5), ("order-2", 3)])
    );
    let resumed = post_ok(t, &format!("/projections/{SUMMARY}/resume"), None, 200).await;
    assert_eq!(resumed["state"], "running");
    summary_rows(&s, &[("order-1", 8), ("order-2", 3)]).await;

    // Dry runs: the plan of each target, and nothing changes.
    let plan = reset(t, json!({"to": "earliest"})).await;
    assert_eq!(
        plan,
        json!({
            "projection": SUMMARY, "generation": 1, "target": {"to": "earliest"},
            "currentPosition": "13", "newPosition": "0", "eventsToReapply": 13,
            "eventsToSkip": 0, "lagEvents": 13, "executed": false,
        })
    );
    let plan = reset(t, json!({"to": "latest", "execute": false})).await;
    assert_eq!(plan["target"], json!({"to": "latest"}));
    assert_eq!(plan["newPosition"], "13");
    assert_eq!(plan["eventsToReapply"], 0);
    assert_eq!(plan["lagEvents"], 0);
    let plan = reset(t, json!({"to": "position", "value": "5"})).await;
    assert_eq!(plan["target"], json!({"to": "position", "value": "5"}));
    assert_eq!(plan["newPosition"], "5");
    assert_eq!(plan["eventsToReapply"], 8);
    assert_eq!(plan["lagEvents"], 8);
    let plan = reset(t, json!({"to": "shift-by", "value": -3})).await;
    assert_eq!(plan["target"], json!({"to": "shift-by", "value": -3}));
    assert_eq!(plan["newPosition"], "10");
    assert_eq!(plan["eventsToReapply"], 3);
    let plan = reset(t, json!({"to": "shift-by", "value": 3})).await;
    assert_eq!(plan["newPosition"], "13", "nothing after the end to skip");
    let plan = reset(
        t,
        json!({"to": "datetime", "value": "2000-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(plan["newPosition"], "0");
    assert_eq!(plan["target"]["value"], "2000-01-01T00:00:00.000Z");
    let plan = reset(
        t,
        json!({"to": "datetime", "value": "2999-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(plan["newPosition"], "13");
    assert_eq!(get_status(t, SUMMARY).await["position"], "13");
    assert_eq!(
        rows(&s.database, SUMMARY),
        counts(&[("order-1", 8), ("order-2", 3)])
    );

    // Executed: the checkpoint moves, and the events after it are applied again (on top of the
    // read model: a reset does not clear it).
    let plan = reset(t, json!({"to": "position", "value": "10", "execute": true})).await;
    assert_eq!(plan["executed"], true);
    assert_eq!(plan["currentPosition"], "13");
    assert_eq!(plan["newPosition"], "10");
    assert_eq!(plan["eventsToReapply"], 3);
    assert_eq!(plan["eventsToSkip"], 0);
    summary_rows(&s, &[("order-1", 11), ("order-2", 3)]).await;
    let plan = reset(t, json!({"to": "shift-by", "value": -2, "execute": true})).await;
    assert_eq!(plan["newPosition"], "11");
    assert_eq!(plan["eventsToReapply"], 2);
    summary_rows(&s, &[("order-1", 13), ("order-2", 3)]).await;
    let plan = reset(t, json!({"to": "earliest", "execute": true})).await;
    assert_eq!(plan["newPosition"], "0");
    assert_eq!(plan["eventsToReapply"], 13);
    summary_rows(&s, &[("order-1", 21), ("order-2", 6)]).await;

    // Targets that cannot be planned, and bodies that are not reset requests: problems, and
    // nothing changes.
    let path = format!("/projections/{SUMMARY}/reset");
    let problem = expect_problem(
        post(
            t,
            &path,
            Some(json!({"to": "position", "value": "999", "execute": true})),
        )
        .await,
        ProblemKind::InvalidReset,
    )
    .await;
    assert_eq!(problem["reason"], "past-end");
    assert_eq!(problem["position"], "999");
    assert_eq!(problem["end"], "13");
    assert_eq!(problem["projection"], SUMMARY);
    for body in [
        json!({"to": "position"}),
        json!({"to": "position", "value": "five"}),
        json!({"to": "earliest", "value": 3}),
        json!({"to": "datetime", "value": "yesterday"}),
        json!({"to": "shift-by", "value": 0.5}),
    ] {
        let problem = expect_problem(
            post(t, &path, Some(body.clone())).await,
            ProblemKind::InvalidReset,
        )
        .await;
        assert_eq!(problem["reason"], "invalid-value", "{body}");
        assert_eq!(problem["field"], "value", "{body}");
        assert_eq!(problem["projection"], SUMMARY, "{body}");
    }
    for body in [
        json!({"to": "sideways"}),
        json!({"value": 1}),
        json!({"to": "earliest", "execute": "yes"}),
        json!({"to": "earliest", "extra": 1}),
        json!([]),
    ] {
        expect_problem(post(t, &path, Some(body)).await, ProblemKind::MalformedBody).await;
    }
    let response = t.http.post(t.url(&path)).body("{").send().await.unwrap();
    expect_problem(response, ProblemKind::MalformedBody).await;
    let response = t
        .http
        .post(t.url(&path))
        .header("content-type", "text/plain")
        .body(r#"{"to": "earliest", "execute": true}"#)
        .send()
        .await
        .unwrap();
    expect_problem(response, ProblemKind::UnsupportedMediaType).await;
    assert_eq!(get_status(t, SUMMARY).await["position"], "13");
    assert_eq!(
        rows(&s.database, SUMMARY),
        counts(&[("order-1", 21), ("order-2", 6)])
    );

    // A rebuild builds generation 2 from scratch beside the live one. Paused, it waits: a second
    // rebuild and an executed reset are refused meanwhile, a dry run is not.
    post_ok(t, &format!("/projections/{SUMMARY}/pause"), None, 200).await;
    let response = post(t, &format!("/projections/{SUMMARY}/rebuild"), None).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["location"],
        format!("/projections/{SUMMARY}").as_str()
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"generation": 2})
    );
    let rebuilding = get_status(t, SUMMARY).await;
    assert_eq!(rebuilding["generation"], 1);
    assert_eq!(rebuilding["rebuild"]["generation"], 2);
    let problem = expect_problem(
        post(t, &format!("/projections/{SUMMARY}/rebuild"), None).await,
        ProblemKind::ProjectionConflict,
    )
    .await;
    assert_eq!(problem["reason"], "already-rebuilding");
    assert_eq!(problem["generation"], 2);
    let problem = expect_problem(
        post(t, &path, Some(json!({"to": "earliest", "execute": true}))).await,
        ProblemKind::ProjectionConflict,
    )
    .await;
    assert_eq!(problem["reason"], "rebuilding");
    assert_eq!(reset(t, json!({"to": "earliest"})).await["executed"], false);
    post_ok(t, &format!("/projections/{SUMMARY}/resume"), None, 200).await;
    eventually("generation 2 to go live", || async {
        let status = get_status(t, SUMMARY).await;
        (status["generation"] == 2 && status["rebuild"].is_null()).then_some(())
    })
    .await;
    // The new generation holds each event once.
    summary_rows(&s, &[("order-1", 8), ("order-2", 3)]).await;

    // No dead letters, and none to retry or skip.
    let dead_letters = t
        .get_json(&format!("/projections/{SUMMARY}/dead-letters"))
        .await;
    assert_eq!(dead_letters, json!({"deadLetters": []}));
    for action in ["retry", "skip"] {
        let problem = expect_problem(
            post(
                t,
                &format!("/projections/{SUMMARY}/dead-letters/1/{action}"),
                None,
            )
            .await,
            ProblemKind::DeadLetterNotFound,
        )
        .await;
        assert_eq!(problem["id"], 1);
        // Not a number, or more than any sink can store.
        for id in ["one", "-1", "9223372036854775808"] {
            let problem = expect_problem(
                post(
                    t,
                    &format!("/projections/{SUMMARY}/dead-letters/{id}/{action}"),
                    None,
                )
                .await,
                ProblemKind::InvalidParameter,
            )
            .await;
            assert_eq!(problem["parameter"], "id");
        }
    }

    // Unknown projections, on every route.
    for (method, path) in [
        (Method::GET, "/projections/nope"),
        (Method::GET, "/projections/Not-A-Name"),
        (Method::GET, "/projections/nope/dead-letters"),
        (Method::POST, "/projections/nope/pause"),
        (Method::POST, "/projections/nope/resume"),
        (Method::POST, "/projections/nope/rebuild"),
        (Method::POST, "/projections/nope/reset"),
        (Method::POST, "/projections/nope/dead-letters/1/retry"),
        (Method::POST, "/projections/nope/dead-letters/1/skip"),
    ] {
        let mut request = t.http.request(method.clone(), t.url(path));
        if path.ends_with("/reset") {
            request = request.json(&json!({"to": "earliest"}));
        }
        let problem = expect_problem(
            request.send().await.unwrap(),
            ProblemKind::ProjectionNotFound,
        )
        .await;
        assert!(
            problem["projection"] == "nope" || problem["projection"] == "Not-A-Name",
            "{method} {path}: {problem}"
        );
    }

    // The metrics, per projection.
    let text = t.metrics().await;
    let sample = |name: &str| format!("factlog_projection_{name}{{projection=\"{SUMMARY}\"}}");
    assert_eq!(metric(&text, &sample("position")), Some(13.0), "{text}");
    assert_eq!(metric(&text, &sample("generation")), Some(2.0), "{text}");
    assert_eq!(metric(&text, &sample("dead_letters_parked")), Some(0.0));
    assert_eq!(
        metric(
            &text,
            &format!("factlog_projection_state{{projection=\"{SUMMARY}\",state=\"running\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            &format!("factlog_projection_position{{projection=\"{PICKY}\"}}")
        )
        .is_some()
    );

    // Shutting the server down stops the projections (before the store is closed).
    let summary = s.summary.clone();
    s.t.stop().await;
    assert_eq!(summary.pause().await, Err(ControlError::NotRunning));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_and_skipped() {
    let s = start(Config::default()).await;
    let t = &s.t;
    let events = json!([
        {"eventType": "Added", "data": {}},
        {"eventType": "Poison", "data": {"bad": true}},
        {"eventType": "Added", "data": {}},
    ]);
    t.append_ok("item-1", None, &events).await;
    t.append_ok(
        "item-2",
        None,
        &json!([{"eventType": "Poison", "data": {}}]),
    )
    .await;
    let end = last_position(t).await;
    let status = eventually("both poison events to be parked", || async {
        let status = get_status(t, PICKY).await;
        (status["position"] == end.as_str() && status["deadLettersParked"] == 2).then_some(status)
    })
    .await;
    assert_eq!(status["state"], "running", "parking does not stop it");
    assert!(
        status["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("poison"),
        "{status}"
    );
    let path = format!("/projections/{PICKY}/dead-letters");
    let listed = t.get_json(&path).await;
    let dead_letters = listed["deadLetters"].as_array().unwrap();
    assert_eq!(dead_letters.len(), 2, "{listed}");
    let first = &dead_letters[0];
    assert_eq!(first["stream"], "item-1");
    assert_eq!(first["version"], 1);
    assert_eq!(first["position"], "2");
    assert_eq!(first["eventType"], "Poison");
    assert_eq!(first["data"], r#"{"bad":true}"#);
    assert_eq!(first["status"], "parked");
    assert_eq!(first["generation"], 1);
    assert!(
        first["error"].as_str().unwrap().contains("poison"),
        "{first}"
    );
    assert!(common::is_utc_millis(
        first["firstFailedAt"].as_str().unwrap()
    ));
    let (first_id, second_id) = (
        first["id"].as_u64().unwrap(),
        dead_letters[1]["id"].as_u64().unwrap(),
    );
    let attempts = first["attempts"].as_u64().unwrap();

    // Failing again: retry-failed, still parked, one more attempt.
    let problem = expect_problem(
        post(t, &format!("{path}/{first_id}/retry"), None).await,
        ProblemKind::RetryFailed,
    )
    .await;
    assert_eq!(problem["id"], first_id);
    assert!(problem["error"].as_str().unwrap().contains("poison"));
    let again = t.get_json(&path).await;
    assert_eq!(again["deadLetters"][0]["status"], "parked");
    assert_eq!(again["deadLetters"][0]["attempts"], attempts + 1);

    // Fixed: the retry applies the event.
    s.refuse.store(false, Ordering::SeqCst);
    let retried = post_ok(t, &format!("{path}/{first_id}/retry"), None, 200).await;
    assert_eq!(retried["id"], first_id);
    assert_eq!(retried["status"], "retried");
    assert_eq!(rows(&s.database, PICKY)["item-1"], 3);
    let problem = expect_problem(
        post(t, &format!("{path}/{first_id}/retry"), None).await,
        ProblemKind::ProjectionConflict,
    )
    .await;
    assert_eq!(problem["reason"], "not-parked");
    assert_eq!(problem["deadLetterStatus"], "retried");

    // Skipped: never applied.
    let skipped = post_ok(t, &format!("{path}/{second_id}/skip"), None, 200).await;
    assert_eq!(skipped["status"], "skipped");
    let problem = expect_problem(
        post(t, &format!("{path}/{second_id}/skip"), None).await,
        ProblemKind::ProjectionConflict,
    )
    .await;
    assert_eq!(problem["reason"], "not-parked");
    assert!(!rows(&s.database, PICKY).contains_key("item-2"));
    let statuses: Vec<Value> = t.get_json(&path).await["deadLetters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("retried"), json!("skipped")]);
    assert_eq!(get_status(t, PICKY).await["deadLettersParked"], 0);
    s.t.stop().await;
}

const READ_TOKEN: &str = "read-token-0123456789";
const WRITE_TOKEN: &str = "write-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_needs_the_read_role_and_control_the_admin_role() {
    let tokens = [
        (Role::Read, READ_TOKEN),
        (Role::Write, WRITE_TOKEN),
        (Role::Admin, ADMIN_TOKEN),
    ]
    .into_iter()
    .map(|(role, token)| TokenConfig {
        name: None,
        role,
        token: Secret::new(token),
    })
    .collect();
    let s = start(Config {
        tokens,
        ..Config::default()
    })
    .await;
    let t = &s.t;
    let summary = format!("/projections/{SUMMARY}");
    // (method, path, body, role, status once allowed)
    let routes: Vec<(Method, String, Option<Value>, Role, u16)> = vec![
        (Method::GET, "/projections".into(), None, Role::Read, 200),
        (Method::GET, summary.clone(), None, Role::Read, 200),
        (
            Method::GET,
            format!("{summary}/dead-letters"),
            None,
            Role::Read,
            200,
        ),
        (
            Method::POST,
            format!("{summary}/pause"),
            None,
            Role::Admin,
            200,
        ),
        (
            Method::POST,
            format!("{summary}/resume"),
            None,
            Role::Admin,
            200,
        ),
        (
            Method::POST,
            format!("{summary}/reset"),
            Some(json!({"to": "latest"})),
            Role::Admin,
            200,
        ),
        (
            Method::POST,
            format!("{summary}/rebuild"),
            None,
            Role::Admin,
            202,
        ),
        (
            Method::POST,
            format!("{summary}/dead-letters/1/retry"),
            None,
            Role::Admin,
            404,
        ),
        (
            Method::POST,
            format!("{summary}/dead-letters/1/skip"),
            None,
            Role::Admin,
            404,
        ),
    ];
    let callers: [(&str, Option<&str>, Option<Role>); 5] = [
        ("no token", None, None),
        ("a wrong token", Some("not-a-token"), None),
        ("read", Some(READ_TOKEN), Some(Role::Read)),
        ("write", Some(WRITE_TOKEN), Some(Role::Write)),
        ("admin", Some(ADMIN_TOKEN), Some(Role::Admin)),
    ];
    for (method, path, body, required, allowed) in &routes {
        for (caller, token, role) in callers {
            let what = format!("{method} {path} with {caller}");
            let mut request = t.http.request(method.clone(), t.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            match role {
                None => {
                    expect_problem(response, ProblemKind::Unauthorized).await;
                }
                Some(role) if role < *required => {
                    let problem = expect_problem(response, ProblemKind::Forbidden).await;
                    assert_eq!(problem["requiredRole"], required.to_string(), "{what}");
                }
                Some(_) => {
                    let status = response.status();
                    let text = response.text().await.unwrap();
                    assert_eq!(status, *allowed, "{what}: {text}");
                }
            }
        }
    }
    s.t.stop().await;
}

#[tokio::test]
async fn a_server_without_projections_lists_none() {
    let t = TestServer::start().await;
    assert_eq!(t.get_json("/projections").await, json!({"projections": []}));
    let problem = expect_problem(
        t.get("/projections/summary").await,
        ProblemKind::ProjectionNotFound,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("runs no projections")
    );
    let response = t
        .http
        .post(t.url("/projections/summary/pause"))
        .send()
        .await
        .unwrap();
    expect_problem(response, ProblemKind::ProjectionNotFound).await;
    assert!(!t.metrics().await.contains("factlog_projection_"));
    t.stop().await;
}
