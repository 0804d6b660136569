//! What the conformance suite does not cover, through a real server on a real socket: resuming
//! subscriptions across a server restart, giving up, tokens, HTTPS with a self-signed
//! certificate, connection errors, reads longer than one page, and names a URL path cannot hold.

mod common;

use std::future::Future;
use std::time::Duration;

use common::TestServer;
use factlog_client::HttpStore;
use factlog_server::{Config, Role, Secret, TlsConfig, TokenConfig};
use factlog_store::{
    AppendError, EventFilter, EventStore, ExpectedVersion, ListStreams, NewEvent, ReadAll,
    ReadError, ReadStream, RecordedEvent, StreamAppend, StreamName, SubscribeError, SubscribeFrom,
    Subscription,
};
use futures::StreamExt;

/// The longest any single wait may take.
const DEADLINE: Duration = Duration::from_secs(30);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn events(first: u64, count: u64) -> Vec<NewEvent> {
    (first..first + count)
        .map(|n| NewEvent::json("E", &serde_json::json!({ "n": n })).unwrap())
        .collect()
}

async fn next_events(sub: &mut Subscription, n: usize, what: &str) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    for _ in 0..n {
        match within(what, sub.next()).await {
            Some(Ok(event)) => out.push(event),
            other => panic!("{what}: {other:?}"),
        }
    }
    out
}

async fn all_events(store: &HttpStore) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAll::forward().limit(usize::MAX))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_resume_across_a_server_restart_without_gap_or_duplicate() {
    let mut t = TestServer::start().await;
    let store = t.client();
    let (a, b) = (stream("resume-a"), stream("resume-b"));
    for i in 0..3 {
        store
            .append(&a, ExpectedVersion::Any, events(i * 10, 2))
            .await
            .unwrap();
        store
            .append(&b, ExpectedVersion::Any, events(i * 10 + 5, 1))
            .await
            .unwrap();
    }
    let mut all = store.subscribe_all(SubscribeFrom::Start, EventFilter::default());
    let mut of_a = store.subscribe_stream(a.clone(), SubscribeFrom::Start);
    let filter = EventFilter {
        stream_prefix: Some("resume-b".into()),
        ..EventFilter::default()
    };
    let mut of_b = store.subscribe_all(SubscribeFrom::Start, filter.clone());
    let mut got_all = next_events(&mut all, 9, "$all before the restart").await;
    let mut got_a = next_events(&mut of_a, 6, "stream a before the restart").await;
    let mut got_b = next_events(&mut of_b, 3, "filtered before the restart").await;

    // The server goes away (ending every stream) and comes back on the same address; meanwhile
    // the subscriptions retry.
    t.restart_server().await;
    for i in 3..6 {
        store
            .append(&a, ExpectedVersion::Any, events(i * 10, 2))
            .await
            .unwrap();
        store
            .append(&b, ExpectedVersion::Any, events(i * 10 + 5, 1))
            .await
            .unwrap();
    }
    got_all.extend(next_events(&mut all, 9, "$all after the restart").await);
    got_a.extend(next_events(&mut of_a, 6, "stream a after the restart").await);
    got_b.extend(next_events(&mut of_b, 3, "filtered after the restart").await);

    let stored = all_events(&store).await;
    assert_eq!(got_all, stored, "$all: no gap, no duplicate");
    let stored_a = store.read_stream(&a, ReadStream::forward()).await.unwrap();
    assert_eq!(got_a, stored_a, "stream a: no gap, no duplicate");
    let stored_b: Vec<RecordedEvent> = stored
        .iter()
        .filter(|e| filter.matches(e))
        .cloned()
        .collect();
    assert_eq!(got_b, stored_b, "filtered: no gap, no duplicate");

    // And the next event of each is the next one appended.
    let r = store
        .append(&a, ExpectedVersion::Any, events(100, 1))
        .await
        .unwrap();
    let last = store.read_event(&a, r.last_version).await.unwrap().unwrap();
    assert_eq!(
        next_events(&mut all, 1, "$all next").await,
        std::slice::from_ref(&last)
    );
    assert_eq!(
        next_events(&mut of_a, 1, "stream a next").await,
        std::slice::from_ref(&last)
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_gives_up_after_its_attempts_and_says_why() {
    let mut t = TestServer::start().await;
    let store = HttpStore::builder(&t.url)
        .reconnect_attempts_max(2)
        .build()
        .unwrap();
    let s = stream("gone-1");
    store
        .append(&s, ExpectedVersion::Any, events(0, 1))
        .await
        .unwrap();
    let mut sub = store.subscribe_stream(s.clone(), SubscribeFrom::Start);
    next_events(&mut sub, 1, "the stored event").await;
    t.stop_server().await;
    match within("the subscription to give up", sub.next()).await {
        Some(Err(SubscribeError::Read(ReadError::Backend(message)))) => {
            assert!(message.contains("after event 0"), "{message}");
            assert!(message.contains("2 attempts to resume failed"), "{message}");
            assert!(
                message.contains(&format!("{}/subscribe/streams/gone-1", t.url)),
                "{message}"
            );
        }
        other => panic!("expected the subscription to end with an error, got {other:?}"),
    }
    assert!(sub.next().await.is_none(), "a failed subscription ends");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_ends_subscriptions_with_closed() {
    let t = TestServer::start().await;
    let store = t.client();
    let s = stream("closing-1");
    store
        .append(&s, ExpectedVersion::Any, events(0, 1))
        .await
        .unwrap();
    let mut sub = store.subscribe_all(SubscribeFrom::Start, EventFilter::default());
    next_events(&mut sub, 1, "the stored event").await;
    t.store.close();
    match within("the subscription to end", sub.next()).await {
        Some(Err(SubscribeError::Closed)) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, events(1, 1)).await,
        Err(AppendError::Closed)
    ));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_sent_and_refusals_say_why() {
    let token = |role, secret: &str| TokenConfig {
        name: None,
        role,
        token: Secret::new(secret),
    };
    let config = Config {
        tokens: vec![
            token(Role::Read, "reader-secret"),
            token(Role::Write, "writer-secret"),
        ],
        ..Config::default()
    };
    let t = TestServer::with(config, TestServer::options()).await;
    let s = stream("tokens-1");
    let writer = HttpStore::new(&t.url, Some("writer-secret".into())).unwrap();
    let reader = HttpStore::new(&t.url, Some("reader-secret".into())).unwrap();
    let nobody = HttpStore::new(&t.url, None).unwrap();
    let stranger = HttpStore::new(&t.url, Some("guessed".into())).unwrap();

    writer
        .append(&s, ExpectedVersion::NoStream, events(0, 2))
        .await
        .unwrap();
    assert_eq!(
        reader
            .read_stream(&s, ReadStream::forward())
            .await
            .unwrap()
            .len(),
        2
    );
    let mut sub = reader.subscribe_stream(s.clone(), SubscribeFrom::Start);
    assert_eq!(
        next_events(&mut sub, 2, "a reader's subscription")
            .await
            .len(),
        2
    );

    let url = format!("{}/streams/tokens-1", t.url);
    match reader.append(&s, ExpectedVersion::Any, events(2, 1)).await {
        Err(AppendError::Backend(m)) => {
            assert!(m.starts_with("forbidden: this needs the write role"), "{m}");
            assert!(m.contains(&url), "{m}");
        }
        other => panic!("{other:?}"),
    }
    match nobody.read_stream(&s, ReadStream::forward()).await {
        Err(ReadError::Backend(m)) => {
            assert!(m.starts_with("unauthorized: send a token"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    match stranger
        .append(&s, ExpectedVersion::Any, events(2, 1))
        .await
    {
        Err(AppendError::Backend(m)) => {
            assert!(
                m.starts_with("unauthorized: the bearer token is not valid"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A subscription that is refused ends at once, without retrying.
    let mut refused = nobody.subscribe_all(SubscribeFrom::Start, EventFilter::default());
    match within("a refused subscription", refused.next()).await {
        Some(Err(SubscribeError::Read(ReadError::Backend(m)))) => {
            assert!(m.starts_with("unauthorized:"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Health needs no token.
    assert!(nobody.end_position().await.is_ok());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let config = Config {
        tls: Some(TlsConfig { cert, key }),
        ..Config::default()
    };
    let t = TestServer::with(config, TestServer::options()).await;
    let url = format!("https://localhost:{}", t.addr().port());

    let store = HttpStore::builder(&url)
        .root_certificate_pem(certified.cert.pem())
        .build()
        .unwrap();
    let s = stream("tls-1");
    let mut sub = store.subscribe_stream(s.clone(), SubscribeFrom::Start);
    store
        .append(&s, ExpectedVersion::NoStream, events(0, 2))
        .await
        .unwrap();
    let read = store.read_stream(&s, ReadStream::forward()).await.unwrap();
    assert_eq!(
        next_events(&mut sub, 2, "a subscription over TLS").await,
        read
    );

    let untrusting = HttpStore::new(&url, None).unwrap();
    match untrusting.end_position().await {
        Err(ReadError::Backend(m)) => {
            assert!(m.contains(&format!("GET {url}/health")), "{m}");
            assert!(m.to_lowercase().contains("certificate"), "{m}");
        }
        other => panic!("an untrusted certificate must be refused, got {other:?}"),
    }
    t.stop().await;
}

#[tokio::test]
async fn connection_errors_name_the_url() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let store = HttpStore::new(&url, None).unwrap();
    match store.end_position().await {
        Err(ReadError::Backend(m)) => {
            assert!(
                m.starts_with(&format!(
                    "cannot reach the Factlog server for GET {url}/health"
                )),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    match store
        .append(&stream("x"), ExpectedVersion::Any, events(0, 1))
        .await
    {
        Err(AppendError::Backend(m)) => {
            assert!(m.contains(&format!("POST {url}/streams/x")), "{m}");
            assert!(m.contains("retry it with the same event ids"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_longer_than_a_page_are_read_page_by_page() {
    let t = TestServer::start().await;
    let store = t.client();
    let s = stream("long-1");
    store
        .append(&s, ExpectedVersion::NoStream, events(0, 6_000))
        .await
        .unwrap();
    store
        .append(&s, ExpectedVersion::Exact(5_999), events(6_000, 6_000))
        .await
        .unwrap();

    let forward = store
        .read_stream(&s, ReadStream::forward().from_version(500).limit(11_000))
        .await
        .unwrap();
    assert_eq!(forward.len(), 11_000);
    assert!(
        forward
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == 500 + i as u64)
    );
    let backward = store
        .read_stream(&s, ReadStream::backward().limit(usize::MAX))
        .await
        .unwrap();
    assert_eq!(backward.len(), 12_000);
    assert!(
        backward
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == 11_999 - i as u64)
    );

    let all = all_events(&store).await;
    assert_eq!(all.len(), 12_000);
    let all_backward = store
        .read_all(ReadAll::backward().limit(10_001))
        .await
        .unwrap();
    let expected: Vec<RecordedEvent> = all.iter().rev().take(10_001).cloned().collect();
    assert_eq!(all_backward, expected);

    // More names than one listing answers.
    for part in 0..2 {
        let appends = (0..5_001)
            .map(|i| StreamAppend {
                stream: stream(&format!("many-{part}-{i:05}")),
                expected: ExpectedVersion::NoStream,
                events: events(0, 1),
            })
            .collect();
        store.append_multi(appends).await.unwrap();
    }
    let page = store
        .list_streams(ListStreams {
            prefix: "many-".into(),
            after: None,
            limit: 10_001,
        })
        .await
        .unwrap();
    assert_eq!(page.streams.len(), 10_001);
    assert!(page.streams.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        page.next_after.as_deref(),
        Some(page.streams[10_000].as_str())
    );
    let rest = store
        .list_streams(ListStreams {
            prefix: "many-".into(),
            after: page.next_after.clone(),
            limit: 10_001,
        })
        .await
        .unwrap();
    assert_eq!(rest.streams.len(), 1);
    assert_eq!(rest.next_after, None);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_names_are_appended_through_the_body_and_refused_in_paths() {
    let t = TestServer::start().await;
    let store = t.client();
    let dot = stream(".");
    let r = store
        .append(&dot, ExpectedVersion::NoStream, events(0, 1))
        .await
        .unwrap();
    assert_eq!((r.first_version, r.last_version), (0, 0));
    let all = all_events(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].stream, dot);
    match store.read_stream(&dot, ReadStream::forward()).await {
        Err(ReadError::Backend(m)) => assert!(m.contains("dot segment"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut sub = store.subscribe_stream(stream(".."), SubscribeFrom::Start);
    assert!(matches!(
        sub.next().await,
        Some(Err(SubscribeError::Read(ReadError::Backend(_))))
    ));
    t.stop().await;
}
