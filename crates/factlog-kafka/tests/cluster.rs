//! Several Factlog nodes on one Kafka cluster (a real broker: run under
//! `scripts/kafka.sh run -- cargo test -p factlog-kafka`): exactly one winner per expected
//! version across nodes, routing to the owner, and the record format as a plain Kafka consumer
//! sees it.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factlog_kafka::{KafkaPosition, KafkaStore};
use factlog_store::{
    AppendError, EventId, EventStore, ExpectedVersion, NewEvent, ReadStream, StreamAppend,
    StreamName,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn event(n: u64) -> NewEvent {
    NewEvent::json("Counted", &serde_json::json!({ "n": n })).unwrap()
}

/// Two nodes of one store, each with its own replica, waiting until every shard has a writer.
async fn two_nodes(name: &str) -> (Vec<tempfile::TempDir>, Arc<KafkaStore>, Arc<KafkaStore>) {
    let prefix = common::unique_prefix(name);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = common::open(common::options(&prefix, da.path().join("r"), "node-a")).await;
    let b = common::open(common::options(&prefix, db.path().join("r"), "node-b")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (oa, ob) = (a.owned_partitions(), b.owned_partitions());
        let mut all: Vec<u32> = oa.iter().chain(&ob).copied().collect();
        all.sort_unstable();
        if all == [0, 1] && !oa.is_empty() && !ob.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two nodes did not share the two shards within 60 s: a owns {oa:?}, b owns {ob:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (vec![da, db], a, b)
}

/// Every committed record of a topic, read with a plain consumer: (key, headers, value).
fn read_topic(topic: &str, partitions: i32) -> Vec<(String, BTreeMap<String, String>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::brokers())
        .set("group.id", "factlog-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = consumer.position().unwrap().elements().iter().all(|e| {
            matches!(e.offset(), Offset::Offset(o) if o >= ends[&e.partition()])
                || ends[&e.partition()] == 0
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "reading {topic} took over 60 s");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                headers,
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_exactly_one_winner_per_version() {
    let (_dirs, a, b) = two_nodes("race").await;
    // Streams of both shards, so each node writes some locally and routes the rest.
    let streams: Vec<StreamName> = (0..4).map(|i| stream(&format!("race-{i}"))).collect();
    let shards: HashSet<u32> = streams.iter().map(|s| a.partition_of(s)).collect();
    assert_eq!(shards.len(), 2, "the test streams cover both shards");
    let rounds = 200;
    let mut versions: HashMap<StreamName, Option<u64>> = HashMap::new();
    let mut winners = 0;
    for round in 0..rounds {
        let s = &streams[round % streams.len()];
        let current = versions.get(s).copied().flatten();
        let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let (ra, rb) = tokio::join!(
            a.append(s, expected, vec![event(2 * round as u64)]),
            b.append(s, expected, vec![event(2 * round as u64 + 1)]),
        );
        let won: Vec<_> = [&ra, &rb].into_iter().filter(|r| r.is_ok()).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round} on {s} expecting {expected}: exactly one of two nodes must win, got {ra:?} and {rb:?}"
        );
        for r in [&ra, &rb] {
            if let Err(e) = r {
                assert!(
                    matches!(e, AppendError::WrongExpectedVersion { current: c, .. } if *c == Some(current.map_or(0, |v| v + 1))),
                    "the loser of round {round} must get WrongExpectedVersion with the winner's version, got {e:?}"
                );
            }
        }
        let result = won[0].as_ref().unwrap();
        assert_eq!(result.first_version, current.map_or(0, |v| v + 1));
        versions.insert(s.clone(), Some(result.last_version));
        winners += 1;
    }
    assert_eq!(winners, rounds);

    // Both nodes read the same streams, contiguous from version 0.
    for s in &streams {
        let want = versions[s].unwrap() + 1;
        for (name, node) in [("a", &a), ("b", &b)] {
            let events = node.read_stream(s, ReadStream::forward()).await.unwrap();
            let got: Vec<u64> = events.iter().map(|e| e.version).collect();
            assert_eq!(
                got,
                (0..want).collect::<Vec<_>>(),
                "node {name} reads {s} with contiguous versions"
            );
        }
    }

    // And so does a plain Kafka consumer: no event id twice, versions contiguous per stream.
    let topic = a.options().topic("race");
    let records = read_topic(&topic, 2);
    assert_eq!(records.len(), rounds, "one record per winning append");
    let mut ids = HashSet::new();
    let mut next: HashMap<String, u64> = HashMap::new();
    for (key, headers, _) in &records {
        assert!(
            ids.insert(headers["factlog.id"].clone()),
            "event id {} appears twice in {topic}",
            headers["factlog.id"]
        );
        let version: u64 = headers["factlog.version"].parse().unwrap();
        let n = next.entry(key.clone()).or_default();
        assert_eq!(version, *n, "versions of {key} in {topic} are contiguous");
        *n += 1;
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_carry_the_stream_as_key_and_the_event_in_headers() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::unique_prefix("format");
    let store = common::open(common::options(&prefix, dir.path().join("r"), "node-a")).await;
    let id = EventId::new_v7();
    let mut e = NewEvent::json("Opened", &serde_json::json!({"owner": "ada"})).unwrap();
    e.id = Some(id);
    e.schema_version = 3;
    e.metadata.insert("correlationId".into(), "c-1".into());
    let s = stream("account-7");
    let r = store
        .append(&s, ExpectedVersion::NoStream, vec![e, event(1)])
        .await
        .unwrap();
    let KafkaPosition::Event { slot, offset } = KafkaPosition::decode(r.first_position) else {
        panic!(
            "an append returns event positions, got {:?}",
            r.first_position
        );
    };
    assert_eq!(slot.partition, store.partition_of(&s));

    let records = read_topic(&store.options().topic("account"), 2);
    assert_eq!(records.len(), 2);
    let (key, headers, value) = &records[0];
    assert_eq!(key, "account-7");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(value).unwrap(),
        serde_json::json!({"owner": "ada"})
    );
    assert_eq!(headers["factlog.id"], id.to_string());
    assert_eq!(headers["factlog.type"], "Opened");
    assert_eq!(headers["factlog.schema-version"], "3");
    assert_eq!(headers["factlog.version"], "0");
    assert_eq!(headers["factlog.content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&headers["factlog.metadata"]).unwrap(),
        serde_json::json!({"correlationId": "c-1"})
    );
    let stored = store.read_event(&s, 0).await.unwrap().unwrap();
    assert_eq!(
        headers["factlog.recorded-at"],
        stored.recorded_at.to_rfc3339_micros()
    );
    assert_eq!(stored.position, r.first_position);
    assert!(
        offset < 2,
        "the first records of a new topic: offset {offset}"
    );
    assert_eq!(records[1].1["factlog.version"], "1");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_consumer_reads_keys_and_headers() {
    let classpath = std::env::var("FACTLOG_TEST_KAFKA_CLASSPATH")
        .expect("FACTLOG_TEST_KAFKA_CLASSPATH is set by scripts/kafka.sh run");
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::unique_prefix("console");
    let store = common::open(common::options(&prefix, dir.path().join("r"), "node-a")).await;
    let s = stream("order-42");
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(7)])
        .await
        .unwrap();
    let topic = store.options().topic("order");
    let output = tokio::process::Command::new("java")
        .args([
            "-cp",
            &classpath,
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
        ])
        .args(["--bootstrap-server", &common::brokers(), "--topic", &topic])
        .args([
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "30000",
        ])
        .args(["--isolation-level", "read_committed"])
        .args(["--formatter-property", "print.key=true"])
        .args(["--formatter-property", "print.headers=true"])
        .args(["--formatter-property", "key.separator= | "])
        .args(["--formatter-property", "headers.separator=,"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("java runs the console consumer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the console consumer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().next().expect("one record printed");
    // Headers, key, value, in the console consumer's order.
    assert!(line.contains("factlog.type:Counted"), "{line}");
    assert!(line.contains("factlog.version:0"), "{line}");
    assert!(line.contains("factlog.id:"), "{line}");
    assert!(line.contains(" | order-42 | "), "{line}");
    assert!(line.ends_with(r#"{"n":7}"#), "{line}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_stream_appends_across_partitions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = common::unique_prefix("cross");
    let store = common::open(common::options(&prefix, dir.path().join("r"), "node-a")).await;
    // Find two streams in different partitions and two in the same one.
    let names: Vec<StreamName> = (0..20).map(|i| stream(&format!("acct-{i}"))).collect();
    let p0 = store.partition_of(&names[0]);
    let other = names.iter().find(|s| store.partition_of(s) != p0).unwrap();
    let same = names[1..]
        .iter()
        .find(|s| store.partition_of(s) == p0)
        .unwrap();
    let part = |s: &StreamName, n| StreamAppend {
        stream: s.clone(),
        expected: ExpectedVersion::NoStream,
        events: vec![event(n)],
    };
    let err = store
        .append_multi(vec![part(&names[0], 1), part(other, 2)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppendError::CrossPartition { first, other: o } if *first == names[0] && o == other),
        "{err:?}"
    );
    for s in [&names[0], other] {
        assert!(
            store.stream_info(s).await.unwrap().is_none(),
            "nothing was written to {s}"
        );
    }
    // Streams of one partition, even of two categories, are one atomic append.
    let third = (0..50)
        .map(|i| stream(&format!("ledger-{i}")))
        .find(|s| store.partition_of(s) == p0)
        .unwrap();
    let results = store
        .append_multi(vec![part(&names[0], 1), part(same, 2), part(&third, 3)])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    for s in [&names[0], same, &third] {
        assert_eq!(store.stream_info(s).await.unwrap().unwrap().last_version, 0);
    }
    // The reserved metadata key is refused.
    let mut bad = event(9);
    bad.metadata
        .insert(factlog_kafka::STASH_KEY.into(), serde_json::json!([1, 2]));
    let err = store
        .append(&names[0], ExpectedVersion::Any, vec![bad])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reserves"), "{err}");
    store.close().await;
}
