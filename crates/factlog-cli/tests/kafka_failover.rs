//! Failures of a Kafka store, made for real: a node killed with SIGKILL during writes, a node
//! paused (SIGSTOP) past its session timeout while another takes its partition over and then
//! resumed (a zombie), and one broker of three killed during writes.
//!
//! Run under `scripts/kafka.sh run -- cargo test -p factlog-cli --test kafka_failover`; the
//! broker test starts its own three-broker cluster with `scripts/kafka.sh run --brokers 3`.

mod kafka_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factlog_kafka::codec::partition_of;
use kafka_common::{brokers, unique_prefix};
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_factlog");

/// The tests of this file run one at a time: each runs several nodes (and one a cluster of
/// its own) with session timeouts of a few seconds, which two cores could not keep together.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const PARTITIONS: u32 = 2;

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A `factlog serve --backend kafka` process; killed by pid when the test ends.
struct Node {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Node {
    /// A node with a 3 s session timeout.
    fn start(brokers: &str, prefix: &str, node_id: &str) -> Self {
        Self::start_with(
            brokers,
            prefix,
            node_id,
            "[kafka]\nsession-timeout-seconds = 3\nappend-timeout-seconds = 30\n",
        )
    }

    /// A node with this configuration file.
    fn start_with(brokers: &str, prefix: &str, node_id: &str, config_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("factlog.toml");
        std::fs::write(&config, config_toml).unwrap();
        let mut child = Command::new(EXE)
            .env_remove("FACTLOG_CONFIG")
            .env_remove("FACTLOG_DATA_DIR")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("replica"))
            .args([
                "--json",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--backend",
                "kafka",
            ])
            .args(["--brokers", brokers, "--kafka-topic-prefix", prefix])
            .args(["--kafka-partitions", &PARTITIONS.to_string()])
            .args(["--kafka-node-id", node_id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("factlog serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("factlog serve printed {line:?}"));
        Self {
            url: listening["listening"].as_str().unwrap().to_owned(),
            child,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = signal_quiet(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_quiet(pid: u32, signal: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
}

/// The partitions of the request topic each member of the writers' group holds, by client id,
/// once the group is stable with `members` members.
fn wait_for_owners(brokers: &str, prefix: &str, members: usize) -> HashMap<String, Vec<i32>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let group = format!("{prefix}writers");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(list) = consumer.fetch_group_list(Some(&group), Duration::from_secs(5))
            && let Some(g) = list.groups().first()
            && g.state() == "Stable"
            && g.members().len() == members
        {
            let owners: HashMap<String, Vec<i32>> = g
                .members()
                .iter()
                .map(|m| {
                    (
                        m.client_id().to_owned(),
                        assigned_partitions(m.assignment().unwrap_or_default()),
                    )
                })
                .collect();
            let total: usize = owners.values().map(Vec::len).sum();
            if total == PARTITIONS as usize {
                return owners;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the writers' group {group} did not become stable with {members} members"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`wait_for_owners`] of a two-node group, off the async runtime.
async fn owners_of_two(brokers: &str, prefix: &str) -> HashMap<String, Vec<i32>> {
    let (brokers, prefix) = (brokers.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || wait_for_owners(&brokers, &prefix, 2))
        .await
        .unwrap()
}

/// The partitions in a consumer protocol assignment (version, then topics with partitions).
fn assigned_partitions(bytes: &[u8]) -> Vec<i32> {
    let mut at = 2; // version
    let mut take = |n: usize| {
        let s = &bytes[at..at + n];
        at += n;
        s
    };
    let mut partitions = Vec::new();
    if bytes.len() < 6 {
        return partitions;
    }
    let topics = i32::from_be_bytes(take(4).try_into().unwrap());
    for _ in 0..topics {
        let len = i16::from_be_bytes(take(2).try_into().unwrap()) as usize;
        take(len);
        let count = i32::from_be_bytes(take(4).try_into().unwrap());
        for _ in 0..count {
            partitions.push(i32::from_be_bytes(take(4).try_into().unwrap()));
        }
    }
    partitions
}

/// One event with a client-chosen id, so retries are idempotent.
fn event(n: u64) -> (String, Value) {
    let id = uuid::Uuid::now_v7().to_string();
    (
        id.clone(),
        json!([{"eventId": id, "eventType": "Counted", "data": {"n": n}}]),
    )
}

/// `POST /streams/{stream}`: `Ok((status, body))`, or `Err` when no answer came (connection
/// refused or reset, timeout): the outcome is then unknown.
async fn post(
    http: &reqwest::Client,
    url: &str,
    stream: &str,
    expected: &str,
    body: &Value,
) -> Result<(u16, Value), String> {
    let response = http
        .post(format!("{url}/streams/{stream}"))
        .header("Expected-Version", expected)
        .json(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// `POST /streams/{stream}` until it is answered 201, sending the same append again (same ids,
/// same expectation) while the outcome is unknown (no answer, 408, 5xx); at most 90 s.
async fn post_until_answered(
    http: &reqwest::Client,
    url: &str,
    stream: &str,
    expected: &str,
    body: &Value,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match post(http, url, stream, expected, body).await {
            Ok((201, result)) => return result,
            Ok((status, problem)) if status != 408 && status < 500 => {
                panic!("{stream}: {status} {problem}")
            }
            other => {
                assert!(Instant::now() < deadline, "{stream}: no answer: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Every event of a stream through a node's HTTP API: (version, event id).
async fn read_stream(http: &reqwest::Client, url: &str, stream: &str) -> Vec<(u64, String)> {
    let response = http
        .get(format!("{url}/streams/{stream}?limit=10000"))
        .send()
        .await
        .unwrap();
    if response.status() == 404 {
        return Vec::new();
    }
    let page: Value = response.json().await.unwrap();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["eventId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Checks that each stream holds exactly the acknowledged events, at their versions, and that no
/// event id appears twice.
async fn assert_exactly_acknowledged(
    http: &reqwest::Client,
    url: &str,
    acknowledged: &BTreeMap<String, Vec<(u64, String)>>,
) {
    let mut ids = HashSet::new();
    for (stream, acked) in acknowledged {
        // A node that just started may still be catching its replica up.
        let deadline = Instant::now() + Duration::from_secs(60);
        let stored = loop {
            let stored = read_stream(http, url, stream).await;
            if stored.len() >= acked.len() || Instant::now() > deadline {
                break stored;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let versions: Vec<u64> = stored.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            versions,
            (0..stored.len() as u64).collect::<Vec<_>>(),
            "{stream}: versions are contiguous from 0"
        );
        assert_eq!(
            &stored, acked,
            "{stream}: the stored events are exactly the acknowledged ones (none lost, none extra)"
        );
        for (_, id) in &stored {
            assert!(ids.insert(id.clone()), "event id {id} is stored twice");
        }
    }
}

/// Appends to `stream` until `stop`, one event at a time with an expected version, through
/// `urls[0]` first and the next URL when a node stops answering. An append without an answer
/// is sent again unchanged (same ids, same expectation) until it gets one, so its outcome is
/// always known. Returns (version, id) of every acknowledged event.
async fn writer(
    http: reqwest::Client,
    urls: Vec<String>,
    stream: String,
    stop: Instant,
    acked_after: Arc<Mutex<Vec<(String, Instant)>>>,
) -> Vec<(u64, String)> {
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut node = 0;
    let mut n = 0;
    while Instant::now() < stop {
        let expected = match acked.last() {
            None => "no-stream".to_owned(),
            Some((v, _)) => v.to_string(),
        };
        let (id, body) = event(n);
        n += 1;
        let give_up = Instant::now() + Duration::from_secs(90);
        loop {
            match post(&http, &urls[node], &stream, &expected, &body).await {
                Ok((201, result)) => {
                    let first = result["firstVersion"].as_u64().unwrap();
                    assert_eq!(first, acked.len() as u64, "{stream}: {result}");
                    acked.push((first, id.clone()));
                    acked_after.lock().push((stream.clone(), Instant::now()));
                    break;
                }
                Ok((status, problem)) if status >= 500 || status == 408 => {
                    // The node could not append, or did not finish in time (its shard moving,
                    // a broker lost): the outcome is unknown, and the same append again (same
                    // ids, same expectation) is safe.
                    assert!(Instant::now() < give_up, "{stream}: {status} {problem}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok((status, problem)) => {
                    panic!(
                        "{stream}: an append with a known expected version got {status}: {problem}"
                    )
                }
                Err(_) => {
                    // No answer: the node is gone. Send the same append to the next node.
                    assert!(Instant::now() < give_up, "{stream}: no node answered");
                    node = (node + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    acked
}

/// Stream names covering every partition, `per_partition` of each.
fn streams(prefix: &str, per_partition: usize) -> Vec<String> {
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        let name = format!("{prefix}-{i}");
        let p = partition_of(name.as_bytes(), PARTITIONS);
        let list = by_partition.entry(p).or_default();
        if list.len() < per_partition {
            list.push(name);
        }
        if by_partition.len() == PARTITIONS as usize
            && by_partition.values().all(|l| l.len() == per_partition)
        {
            break;
        }
    }
    by_partition.into_values().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_a_node_during_writes_loses_and_duplicates_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let brokers = brokers();
    let prefix = unique_prefix("kill");
    let a = Node::start(&brokers, &prefix, "node-a");
    let b = Node::start(&brokers, &prefix, "node-b");
    let owners = owners_of_two(&brokers, &prefix).await;
    let b_partitions = owners["factlog-node-b"].clone();
    assert_eq!(
        b_partitions.len(),
        1,
        "each node owns one shard: {owners:?}"
    );

    let http = reqwest::Client::new();
    let names = streams("acct", 3);
    let stop = Instant::now() + Duration::from_secs(14);
    let acked_after = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, stream) in names.iter().enumerate() {
        // Half the writers go through the node that will be killed.
        let urls = if i % 2 == 0 {
            vec![a.url.clone(), b.url.clone()]
        } else {
            vec![b.url.clone(), a.url.clone()]
        };
        tasks.push(tokio::spawn(writer(
            http.clone(),
            urls,
            stream.clone(),
            stop,
            acked_after.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(b.pid(), "KILL");
    let killed_at = Instant::now();
    let mut acknowledged = BTreeMap::new();
    for (stream, task) in names.iter().zip(tasks) {
        acknowledged.insert(stream.clone(), task.await.unwrap());
    }
    drop(b);

    // The killed node's shard moved: its streams were written after the kill, through A.
    let after: HashSet<String> = acked_after
        .lock()
        .iter()
        .filter(|(_, t)| *t > killed_at + Duration::from_secs(1))
        .map(|(s, _)| s.clone())
        .collect();
    for stream in &names {
        let p = partition_of(stream.as_bytes(), PARTITIONS) as i32;
        if b_partitions.contains(&p) {
            assert!(
                after.contains(stream),
                "{stream} (partition {p}, owned by the killed node) got no append after the kill"
            );
        }
    }
    let total: usize = acknowledged.values().map(Vec::len).sum();
    assert!(total > 20, "only {total} appends were acknowledged");
    assert_exactly_acknowledged(&http, &a.url, &acknowledged).await;

    // A fresh node reads the same from Kafka.
    let c = Node::start(&brokers, &prefix, "node-c");
    assert_exactly_acknowledged(&http, &c.url, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_node_is_fenced_and_rejoins() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let brokers = brokers();
    let prefix = unique_prefix("zombie");
    let a = Node::start(&brokers, &prefix, "node-a");
    let b = Node::start(&brokers, &prefix, "node-b");
    let owners = owners_of_two(&brokers, &prefix).await;
    let b_partition = owners["factlog-node-b"][0] as u32;
    let stream = streams("ledger", 1)
        .into_iter()
        .find(|s| partition_of(s.as_bytes(), PARTITIONS) == b_partition)
        .unwrap();
    let http = reqwest::Client::new();

    // B owns the stream's shard and writes version 0 itself (the first append of a category
    // creates its topic; an answer of unknown outcome is sent again with the same ids).
    let (id0, first) = event(0);
    let result = post_until_answered(&http, &b.url, &stream, "no-stream", &first).await;
    assert_eq!(result["firstVersion"], 0, "{result}");

    // B pauses. A's append to that shard waits until the group gives A the shard (after B's
    // 3 s session timeout), then A fences B's transactional id and appends.
    signal(b.pid(), "STOP");
    let paused = Instant::now();
    let (id1, second) = event(1);
    let (status, result) = post(&http, &a.url, &stream, "0", &second).await.unwrap();
    assert_eq!(status, 201, "A appends once it owns the shard: {result}");
    assert_eq!(result["firstVersion"], 1);
    assert!(
        paused.elapsed() >= Duration::from_secs(2),
        "A could only append after taking the shard over ({:?})",
        paused.elapsed()
    );

    // B wakes up, still believing it owns the shard, and is asked to append at the version it
    // last knew: it must not win version 1 a second time.
    signal(b.pid(), "CONT");
    let (_, stale) = event(2);
    let (status, result) = post(&http, &b.url, &stream, "0", &stale).await.unwrap();
    assert_ne!(
        status, 201,
        "the resumed node appended at a stale version: {result}"
    );
    if status == 409 {
        assert_eq!(result["currentVersion"], 1, "{result}");
    }

    // B rejoins cleanly: the group is stable with both nodes, and appends through B work.
    owners_of_two(&brokers, &prefix).await;
    let (id3, third) = event(3);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, result) = post(&http, &b.url, &stream, "1", &third).await.unwrap();
        if status == 201 {
            assert_eq!(result["firstVersion"], 2, "{result}");
            break;
        }
        assert!(
            status >= 500 && Instant::now() < deadline,
            "B's append after rejoining: {status} {result}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acknowledged = BTreeMap::from([(stream.clone(), vec![(0, id0), (1, id1), (2, id3)])]);
    assert_exactly_acknowledged(&http, &a.url, &acknowledged).await;
    assert_exactly_acknowledged(&http, &b.url, &acknowledged).await;
}

/// A three-broker cluster of its own, started by `scripts/kafka.sh run --brokers 3`; stopped
/// (by the script, by pid) when this is dropped.
struct Cluster {
    child: Child,
    stdin: Option<ChildStdin>,
    brokers: String,
    pids: Vec<u32>,
}

impl Cluster {
    fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh");
        let mut child = Command::new("bash")
            .arg(script)
            .args(["run", "--brokers", "3", "--", "bash", "-c"])
            .arg(r#"echo "READY $FACTLOG_TEST_KAFKA_BROKERS $FACTLOG_TEST_KAFKA_PIDS"; read -r _"#)
            .env_remove("FACTLOG_TEST_KAFKA_BROKERS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("scripts/kafka.sh starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("READY"), "kafka.sh printed {line:?}");
        let brokers = words.next().unwrap().to_owned();
        let pids = words.map(|p| p.parse().unwrap()).collect::<Vec<u32>>();
        assert_eq!(pids.len(), 3, "{line}");
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            brokers,
            pids,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_one_broker_of_three_loses_no_acknowledged_event() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let prefix = unique_prefix("broker");
    let start = |node: &'static str| {
        let (brokers, prefix) = (cluster.brokers.clone(), prefix.clone());
        move || {
            Node::start_with(
                &brokers,
                &prefix,
                node,
                "[kafka]\nsession-timeout-seconds = 6\nappend-timeout-seconds = 30\n\
                 replication-factor = 3\nmin-insync-replicas = 2\n",
            )
        }
    };
    let a = tokio::task::spawn_blocking(start("node-a")).await.unwrap();

    let http = reqwest::Client::new();
    let names = streams("bank", 2);
    let stop = Instant::now() + Duration::from_secs(16);
    let acked_after = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = names
        .iter()
        .map(|s| {
            tokio::spawn(writer(
                http.clone(),
                vec![a.url.clone()],
                s.clone(),
                stop,
                acked_after.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(cluster.pids[0], "KILL");
    let killed_at = Instant::now();
    let mut acknowledged = BTreeMap::new();
    for (stream, task) in names.iter().zip(tasks) {
        acknowledged.insert(stream.clone(), task.await.unwrap());
    }
    let after = acked_after
        .lock()
        .iter()
        .filter(|(_, t)| *t > killed_at + Duration::from_secs(5))
        .count();
    assert!(
        after > 0,
        "no append was acknowledged after the broker was killed"
    );
    assert_exactly_acknowledged(&http, &a.url, &acknowledged).await;
    // A fresh node rebuilds its replica from the two remaining brokers.
    let fresh = tokio::task::spawn_blocking(start("node-b")).await.unwrap();
    assert_exactly_acknowledged(&http, &fresh.url, &acknowledged).await;
    drop(fresh);
    drop(a);
    drop(cluster);
}
