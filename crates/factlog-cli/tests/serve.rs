//! `factlog serve`, run as users run it: a real process on 127.0.0.1, real HTTP clients, and
//! signals. The promise under test: an append acknowledged with `201` survives SIGTERM (a
//! graceful shutdown that exits 0) and SIGKILL (recovery on the next open).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use factlog_log::{EmbeddedStore, Options};
use factlog_store::{EventId, EventStore, StreamName};
use parking_lot::Mutex;
use serde_json::json;

const EXE: &str = env!("CARGO_BIN_EXE_factlog");

/// A running `factlog serve`; killed (by pid) if the test ends early.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(EXE)
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("FACTLOG_TOKENS")
            .env_remove("FACTLOG_LISTEN")
            .env_remove("FACTLOG_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("factlog serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("factlog serve prints its URL");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Self { child, url }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn wait(mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("factlog serve did not exit within 30 s");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writers append single events with their own ids until the server stops answering; returns
/// the ids of the appends acknowledged with 201.
async fn write_until_stopped(url: &str, writers: usize) -> Vec<(String, EventId)> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let url = url.to_owned();
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let stream = format!("load-{w}");
            loop {
                let id = EventId::new_v7();
                let sent = http
                    .post(format!("{url}/streams/{stream}"))
                    .json(&json!([{"eventId": id.to_string(), "eventType": "Tick", "data": {"w": w}}]))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => acknowledged.lock().push((stream.clone(), id)),
                    Ok(r) if r.status() == 503 => break,
                    Ok(r) => panic!("unexpected {}: {}", r.status(), r.text().await.unwrap()),
                    Err(_) => break,
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer task panicked");
    }
    Arc::try_unwrap(acknowledged).unwrap().into_inner()
}

async fn assert_all_stored(dir: &Path, acknowledged: &[(String, EventId)]) {
    let store = EmbeddedStore::open(dir, Options::default()).expect("the store opens");
    for (stream, id) in acknowledged {
        let events = store
            .read_stream(
                &StreamName::new(stream.as_str()).unwrap(),
                factlog_store::ReadStream::forward().limit(1_000_000),
            )
            .await
            .unwrap();
        assert!(
            events.iter().any(|e| e.id == *id),
            "acknowledged event {id} of {stream} is missing"
        );
    }
    store.close();
}

async fn signal_during_writes(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let url = serve.url.clone();
    let writers = tokio::spawn(async move { write_until_stopped(&url, 8).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    serve.signal(signal);
    let status = serve.wait();
    let acknowledged = writers.await.unwrap();
    assert!(
        acknowledged.len() > 50,
        "only {} appends before the {signal}",
        acknowledged.len()
    );
    if signal == "TERM" {
        assert!(status.success(), "graceful shutdown exits 0, not {status}");
    }
    assert_all_stored(dir.path(), &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_writes_loses_no_acknowledged_event() {
    signal_during_writes("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_event() {
    signal_during_writes("KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_appends_and_reads_then_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/streams/account-1", serve.url))
        .header("Expected-Version", "no-stream")
        .json(&json!([{"eventType": "Opened", "data": {"owner": "ada"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let page: serde_json::Value = http
        .get(format!("{}/streams/account-1", serve.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"][0]["data"]["owner"], "ada");
    serve.signal("INT");
    assert!(serve.wait().success());
}

#[test]
fn refuses_a_public_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(EXE)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("FACTLOG_TOKENS")
        .env_remove("FACTLOG_INSECURE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without tokens"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the refused start created no store"
    );
}

#[test]
fn print_config_merges_file_environment_and_flags_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("factlog.toml");
    std::fs::write(
        &file,
        r#"
        data-dir = "/from/file"
        [server]
        listen = "127.0.0.1:1111"
        body-limit-bytes = 1000
        connections-max = 7
        [[server.tokens]]
        name = "ops"
        role = "admin"
        token = "file-secret-token"
        "#,
    )
    .unwrap();
    let output = Command::new(EXE)
        .args(["--config"])
        .arg(&file)
        .args([
            "--json",
            "serve",
            "--print-config",
            "--connections-max",
            "9",
        ])
        .env("FACTLOG_LISTEN", "127.0.0.1:2222")
        .env_remove("FACTLOG_DATA_DIR")
        .env_remove("FACTLOG_TOKENS")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("file-secret-token"),
        "secret printed: {text}"
    );
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["data-dir"], "/from/file", "file");
    assert_eq!(config["server"]["body-limit-bytes"], 1000, "file");
    assert_eq!(
        config["server"]["listen"], "127.0.0.1:2222",
        "environment over file"
    );
    assert_eq!(config["server"]["connections-max"], 9, "flag over file");
    assert_eq!(config["server"]["tokens"][0]["role"], "admin");
    assert_eq!(config["server"]["tokens"][0]["token"], "********");
}
