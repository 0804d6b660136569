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
        Self::start_with_tokens(dir, extra, None)
    }

    fn start_with_tokens(dir: &Path, extra: &[&str], tokens: Option<&str>) -> Self {
        let mut command = Command::new(EXE);
        command
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("FACTLOG_TOKENS");
        if let Some(tokens) = tokens {
            command.env("FACTLOG_TOKENS", tokens);
        }
        let mut child = command
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

/// `factlog --server URL --token T ARGS...` with `stdin` as its input.
fn client(url: &str, token: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(EXE)
        .args(["--server", url, "--token", token])
        .args(args)
        .env_remove("FACTLOG_DATA_DIR")
        .env_remove("FACTLOG_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("factlog starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

#[track_caller]
fn ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn commands_work_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start_with_tokens(&data, &[], Some("admin:adm1n,read:re4d"));
    let url = serve.url.clone();

    ok(&client(
        &url,
        "adm1n",
        &[
            "append",
            "order-1",
            "--type",
            "OrderCreated",
            "--data",
            r#"{"total": 5}"#,
            "--expected-version",
            "no-stream",
        ],
        None,
    ));
    ok(&client(
        &url,
        "adm1n",
        &["append", "order-2", "--type", "OrderCreated"],
        Some(
            "{\"data\": {\"total\": 7}}\n{\"eventType\": \"ItemAdded\", \"data\": {\"sku\": \"x\"}}\n",
        ),
    ));
    // A conflict over HTTP is the same error as on a data directory: exit 1 with the version.
    let conflict = client(
        &url,
        "adm1n",
        &[
            "--json",
            "append",
            "order-1",
            "--type",
            "X",
            "--data",
            "{}",
            "--expected-version",
            "no-stream",
        ],
        None,
    );
    assert_eq!(conflict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("\"currentVersion\":0"));

    let read = ok(&client(&url, "re4d", &["--json", "read", "$all"], None));
    let events: Vec<serde_json::Value> = read
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["stream"], "order-1");
    assert_eq!(events[2]["eventType"], "ItemAdded");
    let streams = ok(&client(&url, "re4d", &["streams"], None));
    assert_eq!(streams.lines().collect::<Vec<_>>(), ["order-1", "order-2"]);
    assert!(ok(&client(&url, "re4d", &["info", "order-2"], None)).contains('2'));
    let tailed = ok(&client(
        &url,
        "re4d",
        &["--json", "tail", "--from", "beginning", "--count", "3"],
        None,
    ));
    assert_eq!(tailed.lines().count(), 3);

    // export from the server, import into another server: the same events, ids included.
    let exported = ok(&client(&url, "re4d", &["export"], None));
    assert_eq!(exported.lines().count(), 3);
    let other_dir = dir.path().join("other");
    let other = Serve::start_with_tokens(&other_dir, &[], Some("write:wr1te"));
    ok(&client(&other.url, "wr1te", &["import"], Some(&exported)));
    let again = ok(&client(
        &other.url,
        "wr1te",
        &["--json", "import"],
        Some(&exported),
    ));
    assert!(again.contains("\"imported\":0"), "{again}");
    let copied = ok(&client(&other.url, "wr1te", &["export"], None));
    let ids = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["eventId"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ids(&copied), ids(&exported));

    // Roles hold for the CLI too: a read token cannot append.
    let refused = client(
        &url,
        "re4d",
        &["append", "order-3", "--type", "X", "--data", "{}"],
        None,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("forbidden"));
    // Commands that need the files say so, as usage errors.
    for args in [&["verify"][..], &["stats"], &["restore", "/nonexistent"]] {
        let output = client(&url, "adm1n", args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("not with --server"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_through_the_server_under_write_load_restores_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let serve = Serve::start(&data, &["--backup-dir", backups.to_str().unwrap()]);
    let url = serve.url.clone();
    let writers = {
        let url = url.clone();
        tokio::spawn(async move { write_until_stopped(&url, 4).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every append acknowledged before the backup begins must be in it.
    let before_backup = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["endPosition"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let backup = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            client(&url, "", &["--json", "backup", "nightly"], None)
        })
        .await
        .unwrap()
    };
    let report: serde_json::Value = serde_json::from_str(&ok(&backup)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    serve.signal("TERM");
    assert!(serve.wait().success());
    let acknowledged = writers.await.unwrap();
    let end = report["endPosition"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(
        end >= before_backup,
        "the backup ends at {end}, before {before_backup}"
    );

    let restored = dir.path().join("restored");
    let output = Command::new(EXE)
        .arg("--data-dir")
        .arg(&restored)
        .arg("restore")
        .arg(backups.join("nightly"))
        .output()
        .unwrap();
    ok(&output);
    let output = Command::new(EXE)
        .arg("--data-dir")
        .arg(&restored)
        .arg("verify")
        .output()
        .unwrap();
    ok(&output);
    // The restored store holds exactly the events before the backup's end position, and each
    // acknowledged append is either in it or was after its cut.
    let store = EmbeddedStore::open(&restored, Options::default()).unwrap();
    assert_eq!(store.stats().events, end - 1);
    let original = EmbeddedStore::open(&data, Options::default()).unwrap();
    for (stream, id) in &acknowledged {
        let name = StreamName::new(stream.as_str()).unwrap();
        let all = original
            .read_stream(&name, factlog_store::ReadStream::forward().limit(1_000_000))
            .await
            .unwrap();
        let event = all
            .iter()
            .find(|e| e.id == *id)
            .expect("acknowledged and stored");
        if event.position.raw() < before_backup {
            let kept = store.read_event(&name, event.version).await.unwrap();
            assert_eq!(
                kept.map(|e| e.id),
                Some(*id),
                "acknowledged before the backup, missing from it"
            );
        }
    }
}
