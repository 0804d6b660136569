//! How the server listens: HTTPS with rustls, the connection limit, and graceful shutdown with
//! an append in flight.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use factlog_server::{Config, TlsConfig};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let t = common::TestServer::with_config(Config {
        tls: Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..Config::default()
    })
    .await;
    assert!(t.url.starts_with("https://"), "{}", t.url);
    let port = t.url.rsplit(':').next().unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let health: serde_json::Value = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{port}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port");
    t.stop().await;
}

#[tokio::test]
async fn refuses_to_start_with_missing_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsConfig {
            cert: dir.path().join("missing-cert.pem"),
            key: dir.path().join("missing-key.pem"),
        }),
        ..Config::default()
    };
    let error = config.check().unwrap_err().to_string();
    assert!(error.contains("missing-cert.pem"), "{error}");
}

fn get_health(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n")?;
    let mut buffer = [0u8; 1024];
    let n = stream.read(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_until_one_closes() {
    let t = common::TestServer::with_config(Config {
        connections_max: 2,
        ..Config::default()
    })
    .await;
    let addr = t.url.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let mut first = TcpStream::connect(&addr).unwrap();
        let mut second = TcpStream::connect(&addr).unwrap();
        assert!(get_health(&mut first).unwrap().starts_with("HTTP/1.1 200"));
        assert!(get_health(&mut second).unwrap().starts_with("HTTP/1.1 200"));
        // Both kept alive: a third connection is accepted by the kernel but not served.
        let mut third = TcpStream::connect(&addr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let waited = get_health(&mut third);
        assert!(waited.is_err(), "served over the limit: {waited:?}");
        drop(first);
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; 1024];
        let n = third.read(&mut buffer).unwrap();
        assert!(
            String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
            "served once a connection closed"
        );
    })
    .await
    .unwrap();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_the_append_in_flight_then_refuses_new_connections() {
    let t = common::TestServer::start().await;
    let url = t.url("/streams/inflight-1");
    let http = t.http.clone();
    // A large append is still being sent when shutdown begins.
    let events: Vec<_> = (0..5000)
        .map(|i| json!({"eventType": "Big", "data": {"i": i, "pad": "x".repeat(200)}}))
        .collect();
    let append = tokio::spawn(async move { http.post(url).json(&events).send().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let base = t.url.clone();
    let store = t.store.clone();
    let mut t = t;
    let server = t.server.take().unwrap();
    server.shutdown().await;
    let answered = append.await.unwrap();
    // The append either completed (and is stored) or never reached the handler; never half.
    let stored = store.stats().events;
    match answered {
        Ok(r) if r.status() == 201 => assert_eq!(stored, 5000),
        other => {
            assert_eq!(stored, 0, "an unanswered append was stored: {other:?}");
        }
    }
    let refused = reqwest::Client::new()
        .get(format!("{base}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(refused.is_err(), "a stopped server answered");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_loses_its_slot_after_the_header_timeout() {
    let t = common::TestServer::with_config(Config {
        connections_max: 1,
        header_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let addr = t.url.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        // Takes the only slot and says nothing.
        let _silent = TcpStream::connect(&addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut next = TcpStream::connect(&addr).unwrap();
        next.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let answer = get_health(&mut next).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    })
    .await
    .unwrap();
    t.stop().await;
}
