//! Subscriptions as Server-Sent Events over a real socket: every event exactly once and in
//! order while writers append, resumption with `Last-Event-ID` after a disconnect, filters,
//! keep-alive comments on a quiet stream, and shutdown ending open streams.

mod common;

use std::time::Duration;

use common::{SseItem, SseMessage, TestServer, expect_problem, new_events};
use factlog_api::ProblemKind;
use factlog_server::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::task::JoinHandle;

const WRITERS: usize = 4;
const APPENDS_PER_WRITER: usize = 40;

/// Events one append of a writer holds: 1, 2 or 3.
fn batch(append: usize) -> usize {
    1 + append % 3
}

fn events_per_writer() -> u64 {
    (0..APPENDS_PER_WRITER).map(batch).sum::<usize>() as u64
}

/// Writers appending concurrently, each to its own stream `sse-w{i}` with exact expected
/// versions, alternating event types `Even` and `Odd`.
fn spawn_writers(t: &TestServer) -> Vec<JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let http = t.http.clone();
            let url = t.url(&format!("/streams/sse-w{w}"));
            tokio::spawn(async move {
                let mut next_version = 0;
                for append in 0..APPENDS_PER_WRITER {
                    let n = batch(append);
                    let event_type = if append % 2 == 0 { "Even" } else { "Odd" };
                    let expected = match next_version {
                        0 => "no-stream".to_owned(),
                        v => (v - 1).to_string(),
                    };
                    let response = http
                        .post(&url)
                        .header("expected-version", expected)
                        .json(&new_events(event_type, next_version, n))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201, "writer {w}");
                    next_version += n;
                }
            })
        })
        .collect()
}

async fn join(writers: Vec<JoinHandle<()>>) {
    for writer in writers {
        writer.await.unwrap();
    }
}

/// Every event of `$all` as the reads see it, in order.
async fn read_all(t: &TestServer, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = format!("/all?limit=1000&{query}");
        if let Some(from) = &from {
            path.push_str(&format!("&from={from}"));
        }
        let page = t.get_json(&path).await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page.get("nextPosition") {
            Some(next) => from = Some(next.as_str().unwrap().to_owned()),
            None => return events,
        }
    }
}

/// Checks one message of a `$all` subscription: the id is the position, the event name the type.
fn check_all_message(message: &SseMessage) -> Value {
    let event = message.json();
    assert_eq!(
        message.id.as_deref(),
        event["position"].as_str(),
        "{message:?}"
    );
    assert_eq!(message.event.as_deref(), event["eventType"].as_str());
    event
}

/// Checks one message of a stream subscription: the id is the version.
fn check_stream_message(message: &SseMessage, stream: &str) -> Value {
    let event = message.json();
    assert_eq!(
        message.id.as_deref(),
        Some(event["version"].as_u64().unwrap().to_string().as_str()),
        "{message:?}"
    );
    assert_eq!(message.event.as_deref(), event["eventType"].as_str());
    assert_eq!(event["stream"], stream);
    event
}

fn seed() -> u64 {
    let seed = std::env::var("FACTLOG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("FACTLOG_TEST_SEED={seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_see_every_event_once_in_order_while_writers_append() {
    let t = TestServer::start().await;
    // Stored before anyone subscribes: the catch-up part.
    t.append_ok("sse-early", None, &new_events("Early", 0, 5))
        .await;
    let mut all = t.subscribe("/subscribe/all", None).await;
    let mut stream = t.subscribe("/subscribe/streams/sse-w1", None).await;
    let mut filtered = t
        .subscribe("/subscribe/all?types=Odd&prefix=sse-w2", None)
        .await;
    let writers = spawn_writers(&t);
    let total = 5 + WRITERS as u64 * events_per_writer();

    let mut received = Vec::new();
    while (received.len() as u64) < total {
        let message = all.next_message().await.expect("the stream goes on");
        received.push(check_all_message(&message));
    }
    join(writers).await;
    assert_eq!(t.events(), total);
    // Exactly what the reads of $all hold, in the same order: no gap, no duplicate.
    let stored = read_all(&t, "").await;
    assert_eq!(received, stored);
    let positions: Vec<u64> = received
        .iter()
        .map(|e| e["position"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    // Each writer's events in version order.
    for w in 0..WRITERS {
        let name = format!("sse-w{w}");
        let versions: Vec<u64> = received
            .iter()
            .filter(|e| e["stream"] == name.as_str())
            .map(|e| e["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, (0..events_per_writer()).collect::<Vec<_>>());
    }

    // The stream subscription: versions 0, 1, 2, ... as ids, and the same JSON as a read.
    for version in 0..events_per_writer() {
        let message = stream.next_message().await.unwrap();
        let event = check_stream_message(&message, "sse-w1");
        assert_eq!(event["version"], version);
        if version % 17 == 0 {
            assert_eq!(
                event,
                t.get_json(&format!("/streams/sse-w1/{version}")).await
            );
        }
    }

    // The filtered subscription: exactly the matching events.
    let want = read_all(&t, "types=Odd&prefix=sse-w2").await;
    assert!(!want.is_empty());
    for expected in &want {
        let message = filtered.next_message().await.unwrap();
        assert_eq!(&check_all_message(&message), expected);
    }
    // Nothing more is pending on any of them: the next event appended is the next one seen.
    t.append_ok(
        "sse-w2",
        None,
        &serde_json::json!([{"eventType": "Odd", "data": "last"}]),
    )
    .await;
    let last = filtered.next_message().await.unwrap();
    assert_eq!(last.json()["data"], "last");
    let last = all.next_message().await.unwrap();
    assert_eq!(last.json()["data"], "last");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_with_last_event_id_leaves_no_gap_and_no_duplicate() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let t = TestServer::start().await;
    t.append_ok("sse-early", None, &new_events("Early", 0, 3))
        .await;
    let writers = spawn_writers(&t);
    let total = 3 + WRITERS as u64 * events_per_writer();

    // $all, disconnecting after a random number of events each time.
    let mut received: Vec<Value> = Vec::new();
    let mut last_id: Option<String> = None;
    let mut connections = 0;
    while (received.len() as u64) < total {
        let mut sse = t.subscribe("/subscribe/all", last_id.as_deref()).await;
        connections += 1;
        for _ in 0..rng.gen_range(1..=60) {
            if received.len() as u64 == total {
                break;
            }
            let message = sse.next_message().await.expect("the stream goes on");
            received.push(check_all_message(&message));
            last_id = message.id;
        }
        // Dropped mid-stream, with events possibly in flight.
    }
    assert!(
        connections > 2,
        "seed {seed}: only {connections} connections"
    );

    // One stream, resuming by version, alternating the header and `from=`.
    let mut versions = Vec::new();
    let mut last_version: Option<String> = None;
    let mut resumes = 0;
    while (versions.len() as u64) < events_per_writer() {
        let mut sse = match (&last_version, resumes % 2) {
            (None, _) => t.subscribe("/subscribe/streams/sse-w3", None).await,
            (Some(id), 0) => t.subscribe("/subscribe/streams/sse-w3", Some(id)).await,
            // The header wins over a stale `from=`.
            (Some(id), _) if resumes % 4 == 1 => {
                t.subscribe("/subscribe/streams/sse-w3?from=0", Some(id))
                    .await
            }
            (Some(id), _) => {
                t.subscribe(&format!("/subscribe/streams/sse-w3?from={id}"), None)
                    .await
            }
        };
        resumes += 1;
        for _ in 0..rng.gen_range(1..=25) {
            if versions.len() as u64 == events_per_writer() {
                break;
            }
            let message = sse.next_message().await.unwrap();
            let event = check_stream_message(&message, "sse-w3");
            versions.push(event["version"].as_u64().unwrap());
            last_version = message.id;
        }
    }
    join(writers).await;
    assert_eq!(
        versions,
        (0..events_per_writer()).collect::<Vec<_>>(),
        "seed {seed}"
    );
    let stored = read_all(&t, "").await;
    assert_eq!(received.len(), stored.len(), "seed {seed}");
    assert!(received == stored, "seed {seed}: a gap or a duplicate");

    // Resuming a filtered subscription after a position skips what does not match.
    let odd = read_all(&t, "types=Odd").await;
    let resume_after = odd[odd.len() / 2]["position"].as_str().unwrap().to_owned();
    let mut sse = t
        .subscribe("/subscribe/all?types=Odd", Some(&resume_after))
        .await;
    for expected in &odd[odd.len() / 2 + 1..] {
        assert_eq!(
            &check_all_message(&sse.next_message().await.unwrap()),
            expected
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn from_end_sees_only_new_events() {
    let t = TestServer::start().await;
    t.append_ok("sse-end", None, &new_events("Old", 0, 3)).await;
    let mut all = t.subscribe("/subscribe/all?from=end", None).await;
    let mut stream = t
        .subscribe("/subscribe/streams/sse-end?from=end", None)
        .await;
    t.append_ok("sse-end", None, &new_events("New", 3, 1)).await;
    let message = all.next_message().await.unwrap();
    assert_eq!(message.event.as_deref(), Some("New"));
    let message = stream.next_message().await.unwrap();
    assert_eq!(message.id.as_deref(), Some("3"));
    t.stop().await;
}

#[tokio::test]
async fn appends_reads_and_subscriptions_work_over_http2() {
    let t = TestServer::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut sse = {
        let response = h2
            .get(t.url("/subscribe/streams/h2-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        common::Sse::new(response).await
    };
    let response = h2
        .post(t.url("/streams/h2-1"))
        .json(&new_events("E", 0, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 201);
    for version in ["0", "1"] {
        let message = sse.next_message().await.unwrap();
        assert_eq!(message.id.as_deref(), Some(version));
    }
    let page: Value = h2
        .get(t.url("/streams/h2-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let response = h2.get(t.url("/nope")).send().await.unwrap();
    expect_problem(response, ProblemKind::NotFound).await;
    t.stop().await;
}

#[tokio::test]
async fn a_quiet_stream_gets_keep_alive_comments() {
    let t = TestServer::with_config(Config {
        keep_alive_interval: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let mut sse = t.subscribe("/subscribe/streams/quiet-1", None).await;
    // Nothing to send: the first thing that arrives is a comment, and then another.
    for _ in 0..2 {
        match sse.next_item().await {
            SseItem::Comment(text) => assert_eq!(text, "keep-alive"),
            other => panic!("expected a keep-alive comment, got {other:?}"),
        }
    }
    // And the subscription is still live.
    t.append_ok("quiet-1", None, &new_events("Woke", 0, 1))
        .await;
    let message = sse.next_message().await.unwrap();
    assert_eq!(message.event.as_deref(), Some("Woke"));
    assert_eq!(message.id.as_deref(), Some("0"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_subscriptions_and_idle_connections() {
    let mut t = TestServer::start().await;
    t.append_ok("bye-1", None, &new_events("E", 0, 1)).await;
    let mut all = t.subscribe("/subscribe/all", None).await;
    let mut stream = t.subscribe("/subscribe/streams/bye-1", None).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut over_h2 = common::Sse::new(h2.get(t.url("/subscribe/all")).send().await.unwrap()).await;
    assert!(all.next_message().await.is_some());
    assert!(stream.next_message().await.is_some());
    assert!(over_h2.next_message().await.is_some());
    // Connections that hold no request do not hold up the shutdown either: one that never
    // sent a byte, and an idle keep-alive one.
    let _silent = std::net::TcpStream::connect(t.url.trim_start_matches("http://")).unwrap();
    assert_eq!(t.get("/health").await.status(), 200);
    let server = t.server.take().unwrap();
    let started = tokio::time::Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    // Each stream ends cleanly (the end of the chunked body), not cut off.
    assert_eq!(all.next_message().await, None);
    assert_eq!(stream.next_message().await, None);
    assert_eq!(over_h2.next_message().await, None);
    shutdown.await.unwrap();
    // Well before the shutdown timeout (30 s), which would have cut the streams off instead.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    t.stop().await;
}

#[tokio::test]
async fn the_subscriber_gauge_follows_connections() {
    let t = TestServer::with_config(Config {
        keep_alive_interval: Duration::from_millis(50),
        ..Config::default()
    })
    .await;
    let subscribers = |text: &str| common::metric(text, "factlog_subscribers");
    assert_eq!(subscribers(&t.metrics().await), Some(0.0));
    let first = t.subscribe("/subscribe/all", None).await;
    let second = t.subscribe("/subscribe/streams/gauge-1", None).await;
    assert_eq!(subscribers(&t.metrics().await), Some(2.0));
    drop(first);
    drop(second);
    // The server notices the closed connections at its next write (a keep-alive at the latest).
    common::eventually("the subscribers to be gone", || async {
        (subscribers(&t.metrics().await) == Some(0.0)).then_some(())
    })
    .await;
    t.stop().await;
}

#[tokio::test]
async fn subscriptions_validate_their_input() {
    let t = TestServer::start().await;
    expect_problem(
        t.get("/subscribe/streams/%24all").await,
        ProblemKind::InvalidStreamName,
    )
    .await;
    let response = t
        .http
        .get(t.url("/subscribe/streams/ok-1"))
        .header("last-event-id", "-1")
        .send()
        .await
        .unwrap();
    expect_problem(response, ProblemKind::InvalidHeader).await;
    t.stop().await;
}
