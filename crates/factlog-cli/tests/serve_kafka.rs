//! `factlog serve --backend kafka`, run as users run it: the settings are checked before
//! anything connects (no broker needed for those tests), and a real node on a real broker
//! serves appends and reads over HTTP and stops on SIGTERM with exit 0.
//!
//! The tests with a broker need `FACTLOG_TEST_KAFKA_BROKERS`: run them under
//! `scripts/kafka.sh run -- cargo test -p factlog-cli --test serve_kafka`.

mod kafka_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use kafka_common::{brokers, unique_prefix};
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_factlog");

/// The variables `factlog serve` reads, removed so that the tests see only what they set.
const VARIABLES: &[&str] = &[
    "FACTLOG_CONFIG",
    "FACTLOG_DATA_DIR",
    "FACTLOG_SERVER",
    "FACTLOG_LISTEN",
    "FACTLOG_TOKENS",
    "FACTLOG_INSECURE",
    "FACTLOG_BACKEND",
    "FACTLOG_KAFKA_BROKERS",
    "FACTLOG_KAFKA_TOPIC_PREFIX",
    "FACTLOG_KAFKA_PARTITIONS",
    "FACTLOG_KAFKA_REPLICATION_FACTOR",
    "FACTLOG_KAFKA_MIN_INSYNC_REPLICAS",
    "FACTLOG_KAFKA_NODE_ID",
    "FACTLOG_KAFKA_PROPERTIES",
];

/// `factlog` with a clean environment.
fn factlog() -> Command {
    let mut command = Command::new(EXE);
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    command.stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("factlog runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_usage_error(output: &Output, wanted: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(2),
        "a usage error exits 2: {output:?}"
    );
    let text = stderr(output);
    for w in wanted {
        assert!(text.contains(w), "{w:?} is not in {text:?}");
    }
}

// ---- Without a broker: refused before anything connects or is created. ----

#[test]
fn kafka_without_brokers_is_a_usage_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = run(factlog()
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--backend", "kafka"]));
    assert_usage_error(&output, &["--brokers", "FACTLOG_KAFKA_BROKERS"]);
    assert!(
        !data.exists(),
        "the refused start created the data directory"
    );

    // The same from the file and the environment.
    let file = dir.path().join("factlog.toml");
    std::fs::write(&file, "backend = \"kafka\"\n[kafka]\npartitions = 2\n").unwrap();
    let output = run(factlog()
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .arg("serve"));
    assert_usage_error(&output, &["--brokers"]);
    let output = run(factlog()
        .arg("--data-dir")
        .arg(&data)
        .arg("serve")
        .env("FACTLOG_BACKEND", "kafka"));
    assert_usage_error(&output, &["--brokers"]);
    assert!(!data.exists());
}

#[test]
fn bad_kafka_settings_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 127.0.0.1:9 (discard) has no broker: every case must be refused before connecting.
    let base = ["serve", "--backend", "kafka", "--brokers", "127.0.0.1:9"];
    for (extra, env, wanted) in [
        (&["--kafka-partitions", "0"][..], None, "partitions"),
        (&["--kafka-partitions", "5000"], None, "partitions"),
        (
            &[
                "--kafka-replication-factor",
                "1",
                "--kafka-min-insync-replicas",
                "2",
            ],
            None,
            "min-insync-replicas",
        ),
        (
            &["--kafka-replication-factor", "0"],
            None,
            "replication-factor",
        ),
        (&["--kafka-topic-prefix", "a/b"], None, "prefix"),
        (&["--kafka-node-id", "a node"], None, "node id"),
        (&["--kafka-property", "no-equals-sign"], None, "KEY=VALUE"),
        (&["--kafka-property", "=value"], None, "key"),
        (
            &["--kafka-property", "bootstrap.servers=127.0.0.1:1"],
            None,
            "--brokers",
        ),
        (&[], Some("FACTLOG_KAFKA_PARTITIONS=0"), "partitions"),
        (
            &[],
            Some("FACTLOG_KAFKA_PROPERTIES=linger.ms=5,sasl.passwordhunter2"),
            "FACTLOG_KAFKA_PROPERTIES entry 2",
        ),
    ] {
        let mut command = factlog();
        command.arg("--data-dir").arg(&data).args(base).args(extra);
        if let Some((name, value)) = env.and_then(|e| e.split_once('=')) {
            command.env(name, value);
        }
        let output = run(&mut command);
        assert_usage_error(&output, &[wanted]);
        assert!(
            !stderr(&output).contains("hunter2"),
            "a malformed property is not repeated: {}",
            stderr(&output)
        );
    }
    let output =
        run(factlog()
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--backend", "cassandra"]));
    assert_usage_error(&output, &["cassandra"]);
    let file = dir.path().join("factlog.toml");
    for (text, wanted) in [
        ("[kafka]\npartitions = 0\n", "partitions"),
        (
            "[kafka]\nsession-timeout-seconds = -1\n",
            "session-timeout-seconds",
        ),
        ("[kafka]\ncolour = 1\n", "colour"),
        ("[kafka.properties]\n\"linger.ms\" = [1]\n", "linger.ms"),
        ("backend = \"cassandra\"\n", "cassandra"),
    ] {
        std::fs::write(&file, text).unwrap();
        let output = run(factlog()
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(&data)
            .args(base));
        assert_usage_error(&output, &[wanted]);
    }
    assert!(!data.exists(), "a refused start created the data directory");
}

#[test]
fn print_config_shows_the_kafka_settings_merged_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("factlog.toml");
    std::fs::write(
        &file,
        r#"
        backend = "kafka"
        [kafka]
        brokers = "file-broker:9092"
        topic-prefix = "from-file."
        partitions = 4
        replication-factor = 3
        min-insync-replicas = 2
        session-timeout-seconds = 6
        [kafka.properties]
        "ssl.key.password" = "file-pw-1"
        "ssl.keystore.password" = "file-pw-2"
        sasl.username = "file-user"
        "security.protocol" = "SASL_SSL"
        "linger.ms" = 5
        "#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let print = |json: bool| {
        let mut command = factlog();
        command
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(&data);
        if json {
            command.arg("--json");
        }
        command
            .args([
                "serve",
                "--print-config",
                "--kafka-partitions",
                "6",
                "--kafka-property",
                "sasl.password=secret",
                "--kafka-property",
                "sasl.username=flag-user",
            ])
            .env("FACTLOG_KAFKA_TOPIC_PREFIX", "from-env.")
            .env("FACTLOG_KAFKA_PARTITIONS", "5")
            .env(
                "FACTLOG_KAFKA_PROPERTIES",
                "sasl.oauthbearer.client.secret=env-pw-3, sasl.mechanism=SCRAM-SHA-512,\
                 sasl.username=env-user",
            );
        let output = run(&mut command);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    for json in [true, false] {
        let text = print(json);
        for secret in ["file-pw-1", "file-pw-2", "env-pw-3"] {
            assert!(!text.contains(secret), "{secret} printed: {text}");
        }
        assert!(
            !text
                .replace("sasl.oauthbearer.client.secret", "")
                .contains("secret"),
            "secret printed: {text}"
        );
        assert!(text.contains("********"), "{text}");
    }
    let config: Value = serde_json::from_str(&print(true)).unwrap();
    assert_eq!(config["backend"], "kafka", "file");
    let kafka = &config["kafka"];
    assert_eq!(kafka["brokers"], "file-broker:9092", "file");
    assert_eq!(kafka["topic-prefix"], "from-env.", "environment over file");
    assert_eq!(kafka["partitions"], 6, "flag over environment over file");
    assert_eq!(kafka["replication-factor"], 3);
    assert_eq!(kafka["min-insync-replicas"], 2);
    assert_eq!(kafka["session-timeout-seconds"], 6.0);
    assert_eq!(kafka["append-timeout-seconds"], 10.0, "default");
    assert!(
        kafka["node-id"].is_null(),
        "not generated by --print-config"
    );
    let properties = &kafka["properties"];
    assert_eq!(properties["sasl.username"], "flag-user", "flag over env");
    assert_eq!(properties["sasl.mechanism"], "SCRAM-SHA-512", "env");
    assert_eq!(properties["security.protocol"], "SASL_SSL", "file");
    assert_eq!(properties["linger.ms"], "5", "a number in the file");
    for masked in [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
    ] {
        assert_eq!(properties[masked], "********", "{masked}");
    }
    assert!(!data.exists(), "--print-config created the data directory");

    // The default backend is shown too.
    let output =
        run(factlog()
            .arg("--data-dir")
            .arg(&data)
            .args(["--json", "serve", "--print-config"]));
    assert!(output.status.success(), "{output:?}");
    let config: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(config["backend"], "embedded");
    assert!(config.get("kafka").is_none());
}

#[test]
fn print_config_shows_the_projections_on_the_kafka_backend() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("factlog.toml");
    std::fs::write(
        &file,
        r#"
        [[projections]]
        name = "orders"
        kind = "stream-summary"
        "#,
    )
    .unwrap();
    let output = run(factlog()
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .args(["--json", "serve", "--print-config"])
        .args(["--backend", "kafka", "--brokers", "127.0.0.1:9"]));
    assert!(output.status.success(), "{output:?}");
    let config: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(config["backend"], "kafka");
    assert_eq!(config["projections"][0]["name"], "orders");
    assert!(!data.exists(), "--print-config created the data directory");
}

// ---- With a broker. ----

/// A running `factlog --json serve --backend kafka`; killed (by pid) if the test ends early.
struct Node {
    child: Child,
    url: String,
    /// The line it printed once listening.
    listening: Value,
}

impl Node {
    fn start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = factlog();
        command
            .arg("--data-dir")
            .arg(data)
            .args(["--json", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("factlog serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("factlog serve prints a line");
        let listening: Value = match serde_json::from_str(&line) {
            Ok(value) => value,
            Err(_) => {
                let status = child.wait().unwrap();
                panic!("factlog serve printed {line:?} and exited with {status}");
            }
        };
        let url = listening["listening"]
            .as_str()
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Self {
            child,
            url,
            listening,
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("factlog serve did not exit within 60 s of SIGTERM");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /streams/{stream}`: the status and the body.
async fn append(
    http: &reqwest::Client,
    url: &str,
    stream: &str,
    expected: &str,
    events: Value,
) -> (u16, Value) {
    let response = http
        .post(format!("{url}/streams/{stream}"))
        .header("Expected-Version", expected)
        .json(&events)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get(http: &reqwest::Client, url: &str, path: &str) -> Value {
    let response = http.get(format!("{url}{path}")).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// The arguments of a node on the test broker: `--backend kafka`, the brokers, the prefix and
/// the partitions, then `extra`.
fn on_kafka<'a>(
    brokers: &'a str,
    prefix: &'a str,
    partitions: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--backend",
        "kafka",
        "--brokers",
        brokers,
        "--kafka-topic-prefix",
        prefix,
        "--kafka-partitions",
        partitions,
    ];
    args.extend_from_slice(extra);
    args
}

fn position(value: &Value) -> u64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a position is a string, not {value}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_appends_and_reads_on_kafka_then_stops_on_sigterm() {
    let brokers = brokers();
    let prefix = unique_prefix("serve");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("replica");
    let node = Node::start(
        &data,
        &on_kafka(
            &brokers,
            &prefix,
            "2",
            &["--kafka-property", "socket.keepalive.enable=true"],
        ),
        &[],
    );
    assert_eq!(node.listening["backend"], "kafka");
    assert_eq!(node.listening["topicPrefix"], prefix.as_str());
    assert_eq!(node.listening["partitions"], 2);
    let node_id = node.listening["nodeId"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(data.join("node-id"))
            .unwrap()
            .trim(),
        node_id,
        "the generated node id is kept in the data directory"
    );
    let http = reqwest::Client::new();
    let url = node.url.clone();

    let ids = [
        "0190f0a0-0000-7000-8000-000000000001",
        "0190f0a0-0000-7000-8000-000000000002",
    ];
    let opened = json!([
        {"eventId": ids[0], "eventType": "Opened", "data": {"owner": "ada"}},
        {"eventId": ids[1], "eventType": "Deposited", "data": {"amount": 10}},
    ]);
    let (status, first) = append(&http, &url, "account-1", "no-stream", opened.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["firstVersion"], 0);
    assert_eq!(first["lastVersion"], 1);
    let (p0, p1) = (
        position(&first["firstPosition"]),
        position(&first["lastPosition"]),
    );
    assert!(p1 > p0, "positions grow within a stream: {first}");

    // The same events again: the same answer, nothing written.
    let (status, again) = append(&http, &url, "account-1", "no-stream", opened).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again, first, "an idempotent retry answers the same");

    // A wrong expected version is refused with the current version.
    let (status, conflict) = append(
        &http,
        &url,
        "account-1",
        "no-stream",
        json!([{"eventType": "Opened", "data": {}}]),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["currentVersion"], 1, "{conflict}");

    let (status, more) = append(
        &http,
        &url,
        "account-1",
        "1",
        json!([{"eventType": "Withdrawn", "data": {"amount": 3}}]),
    )
    .await;
    assert_eq!(status, 201, "{more}");
    assert_eq!(more["firstVersion"], 2);
    assert!(position(&more["firstPosition"]) > p1);
    let (status, other) = append(
        &http,
        &url,
        "order-7",
        "any",
        json!([{"eventType": "Placed", "data": {"total": 5}}]),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    assert_eq!(other["firstVersion"], 0);

    // Read back (read-your-writes on the node that appended).
    let page = get(&http, &url, "/streams/account-1").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{page}");
    for (version, event) in events.iter().enumerate() {
        assert_eq!(event["version"], version);
        assert_eq!(event["stream"], "account-1");
    }
    assert_eq!(events[0]["eventId"], ids[0]);
    assert_eq!(events[0]["data"]["owner"], "ada");
    assert_eq!(events[1]["data"]["amount"], 10);
    assert_eq!(events[2]["eventType"], "Withdrawn");
    assert_eq!(position(&events[0]["position"]), p0);
    assert_eq!(position(&events[1]["position"]), p1);
    let by_id = get(&http, &url, &format!("/events/{}", ids[1])).await;
    assert_eq!(by_id["version"], 1);
    assert_eq!(by_id["stream"], "account-1");
    let info = get(&http, &url, "/streams/account-1/info").await;
    assert_eq!(info["lastVersion"], 2);
    let all = get(&http, &url, "/all").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 4, "{all}");
    let streams = get(&http, &url, "/streams").await;
    assert_eq!(streams["streams"], json!(["account-1", "order-7"]));

    let status = tokio::task::spawn_blocking(move || node.terminate())
        .await
        .unwrap();
    assert!(
        status.success(),
        "SIGTERM stops the node with exit 0, not {status}"
    );

    // Started again from the file and the environment on the same data directory: the same
    // node id, and the events are there.
    let file = dir.path().join("factlog.toml");
    std::fs::write(
        &file,
        format!(
            "backend = \"kafka\"\n[kafka]\nbrokers = \"{brokers}\"\npartitions = 2\n\
             session-timeout-seconds = 6\n[kafka.properties]\n\"client.rack\" = \"rack-1\"\n"
        ),
    )
    .unwrap();
    let node = Node::start(
        &data,
        &["--config", file.to_str().unwrap()],
        &[
            ("FACTLOG_KAFKA_TOPIC_PREFIX", &prefix),
            ("FACTLOG_KAFKA_PROPERTIES", "socket.keepalive.enable=true"),
        ],
    );
    assert_eq!(
        node.listening["nodeId"],
        node_id.as_str(),
        "a restart keeps the id"
    );
    let url = node.url.clone();
    let page = get(&http, &url, "/streams/account-1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3, "{page}");
    let (status, next) = append(
        &http,
        &url,
        "account-1",
        "2",
        json!([{"eventType": "Closed", "data": {}}]),
    )
    .await;
    assert_eq!(status, 201, "{next}");
    assert_eq!(next["firstVersion"], 3);
    let status = tokio::task::spawn_blocking(move || node.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

/// The stream summary's rows: stream -> (events, last version).
fn summary(database: &Path, table: &str) -> std::collections::BTreeMap<String, (i64, i64)> {
    let Ok(conn) = rusqlite::Connection::open(database) else {
        return Default::default();
    };
    let Ok(mut statement) =
        conn.prepare(&format!("SELECT stream, events, last_version FROM {table}"))
    else {
        return Default::default();
    };
    statement
        .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Appends `rounds` events to each stream through `url`, the streams spread over every
/// partition, one append per stream and round, each at the version it expects.
async fn append_rounds(
    http: &reqwest::Client,
    url: &str,
    streams: &[String],
    from: u64,
    rounds: u64,
) {
    for round in from..from + rounds {
        for stream in streams {
            let expected = if round == 0 {
                "no-stream".to_owned()
            } else {
                (round - 1).to_string()
            };
            let (status, body) = append(
                http,
                url,
                stream,
                &expected,
                json!([{"eventType": "Deposited", "data": {"round": round}}]),
            )
            .await;
            assert_eq!(status, 201, "{stream} round {round}: {body}");
        }
    }
}

/// Waits until the summary holds exactly `events` events for every stream (each applied once).
async fn summary_reaches(database: &Path, table: &str, streams: &[String], events: i64) {
    let want: std::collections::BTreeMap<String, (i64, i64)> = streams
        .iter()
        .map(|s| (s.clone(), (events, events - 1)))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let rows = summary(database, table);
        if rows == want {
            return;
        }
        for (stream, (n, last)) in &rows {
            assert!(
                *n == last + 1 && *n <= events,
                "{stream} has {n} events applied up to version {last}: an event was applied twice"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the summary did not reach {events} events per stream: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A projection on Kafka checkpoints per partition in its sink's transaction: killed with
/// SIGKILL on one node and started on a fresh node (whose replica merges the partitions in
/// another order), it resumes where its read model is, with every event applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_resumes_on_another_node_from_its_per_partition_checkpoint() {
    let brokers = brokers();
    let prefix = unique_prefix("projection");
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("read-models.sqlite");
    let config = dir.path().join("factlog.toml");
    std::fs::write(
        &config,
        "[[projections]]\nname = \"bank_summary\"\nkind = \"stream-summary\"\n\
         categories = [\"bank\"]\nbatch-events-max = 7\nbatch-linger-ms = 0\n",
    )
    .unwrap();
    let start = |replica: &str| {
        Node::start(
            &dir.path().join(replica),
            &on_kafka(
                &brokers,
                &prefix,
                "4",
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "--projection-sqlite-path",
                    database.to_str().unwrap(),
                ],
            ),
            &[],
        )
    };
    let http = reqwest::Client::new();
    let streams: Vec<String> = (0..12).map(|i| format!("bank-{i}")).collect();

    let a = start("replica-a");
    assert_eq!(a.listening["projections"], json!(["bank_summary"]));
    // Another category, which the projection does not want, interleaved in `$all`.
    append_rounds(&http, &a.url, &["audit-1".to_owned()], 0, 3).await;
    append_rounds(&http, &a.url, &streams, 0, 4).await;
    summary_reaches(&database, "bank_summary", &streams, 4).await;
    let status = get(&http, &a.url, "/projections/bank_summary").await;
    assert_eq!(status["state"], "running", "{status}");
    drop(a); // SIGKILL

    // A fresh node: a new replica, partitions merged in its own arrival order.
    let b = start("replica-b");
    append_rounds(&http, &b.url, &streams, 4, 3).await;
    summary_reaches(&database, "bank_summary", &streams, 7).await;
    let status = get(&http, &b.url, "/projections/bank_summary").await;
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["lastError"], Value::Null, "{status}");
    let status = tokio::task::spawn_blocking(move || b.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");

    // And back on the first node's replica, behind by the events the second appended.
    let a = start("replica-a");
    append_rounds(&http, &a.url, &streams, 7, 1).await;
    summary_reaches(&database, "bank_summary", &streams, 8).await;
    drop(a);
}

/// Read-your-writes across nodes: a read on one node with `Wait-For-Position` set to what an
/// append on the other returned sees the event; a position that is never written is answered
/// `unavailable` once the wait runs out, not with a read that misses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_another_node_waits_for_the_position_an_append_returned() {
    let brokers = brokers();
    let prefix = unique_prefix("ryw");
    let dir = tempfile::tempdir().unwrap();
    let start = |replica: &str| {
        Node::start(
            &dir.path().join(replica),
            &on_kafka(&brokers, &prefix, "2", &["--request-timeout-seconds", "5"]),
            &[],
        )
    };
    let (a, b) = (start("replica-a"), start("replica-b"));
    let http = reqwest::Client::new();
    for round in 0..20u64 {
        let stream = format!("order-{round}");
        let (status, appended) = append(
            &http,
            &a.url,
            &stream,
            "no-stream",
            json!([{"eventType": "Placed", "data": {"round": round}}]),
        )
        .await;
        assert_eq!(status, 201, "{appended}");
        let last = appended["lastPosition"].as_str().unwrap();
        let response = http
            .get(format!("{}/streams/{stream}", b.url))
            .header("Wait-For-Position", last)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "round {round}");
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["events"][0]["position"], last, "round {round}: {page}");
    }
    // The same partition, far past its end: never written while the request waits.
    let (_, appended) = append(
        &http,
        &a.url,
        "order-x",
        "no-stream",
        json!([{"eventType": "Placed", "data": {}}]),
    )
    .await;
    let beyond = position(&appended["lastPosition"]) + 1_000_000;
    let started = std::time::Instant::now();
    let response = http
        .get(format!("{}/streams/order-x", b.url))
        .header("Wait-For-Position", beyond.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&beyond.to_string()),
        "{problem}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "it did not wait"
    );
    drop((a, b));
}
