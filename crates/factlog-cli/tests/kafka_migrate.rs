//! `factlog migrate --from DIR --to kafka://...` and `factlog export --kafka URL`, run as users
//! run them: an embedded store is copied into a store on a real broker and read back.
//!
//! The tests with a broker need `FACTLOG_TEST_KAFKA_BROKERS`: run them under
//! `scripts/kafka.sh run -- cargo test -p factlog-cli --test kafka_migrate`.

mod kafka_common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use factlog_log::{EmbeddedStore, Options};
use factlog_store::{
    ContentType, EventStore, EventType, ExpectedVersion, Metadata, NewEvent, StreamAppend,
    StreamName,
};
use kafka_common::{brokers, unique_prefix};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_factlog");
const PARTITIONS: u32 = 3;

/// The variables `factlog` reads, removed so that the tests see only what they set.
const VARIABLES: &[&str] = &[
    "FACTLOG_CONFIG",
    "FACTLOG_DATA_DIR",
    "FACTLOG_SERVER",
    "FACTLOG_TOKEN",
    "FACTLOG_KAFKA_PROPERTIES",
    "RUST_LOG",
];

fn url(prefix: &str) -> String {
    format!("kafka://{}/{prefix}?partitions={PARTITIONS}", brokers())
}

/// `factlog ARGS...` with a clean environment.
fn factlog(args: &[&str]) -> Output {
    let mut command = Command::new(EXE);
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("factlog runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let output = factlog(args);
    assert!(
        output.status.success(),
        "factlog {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    output
}

#[track_caller]
fn assert_fails(output: &Output, code: i32, wanted: &[&str]) {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    let text = stderr(output);
    for w in wanted {
        assert!(text.contains(w), "{w:?} is not in {text:?}");
    }
}

/// `factlog --json migrate --from SRC --to URL`: its report, and how long it took.
#[track_caller]
fn migrate(source: &Path, url: &str) -> (Value, Duration) {
    let started = Instant::now();
    let output = ok(&[
        "--json",
        "migrate",
        "--from",
        source.to_str().unwrap(),
        "--to",
        url,
    ]);
    let took = started.elapsed();
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    (report, took)
}

/// Every exported event, from the JSON lines of `factlog export`.
fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an exported event"))
        .collect()
}

fn export_dir(dir: &Path) -> Vec<Value> {
    lines(&ok(&["--data-dir", dir.to_str().unwrap(), "export"]))
}

fn export_kafka(url: &str) -> Vec<Value> {
    lines(&ok(&["export", "--kafka", url]))
}

/// The events of an export by stream, in the order the export has them, without what may
/// differ between the stores: the position (on Kafka an offset in a partition; `$all` is
/// ordered per partition there, so streams of different partitions interleave differently)
/// and recorded-at (the time of the append that stored the event, on Kafka the migration's).
/// Everything else must be equal: id, stream, version, type, schema version, content type,
/// data (as JSON, as text or in base64) and metadata.
fn by_stream(events: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut streams: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for event in events {
        let mut kept = event.clone();
        let object = kept.as_object_mut().unwrap();
        assert!(object.remove("position").is_some(), "{event}");
        assert!(object.remove("recordedAt").is_some(), "{event}");
        let stream = event["stream"].as_str().unwrap().to_owned();
        streams.entry(stream).or_default().push(kept);
    }
    for (stream, events) in &streams {
        let versions: Vec<u64> = events
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect();
        let dense: Vec<u64> = (0..events.len() as u64).collect();
        assert_eq!(versions, dense, "{stream} is exported in version order");
    }
    streams
}

#[track_caller]
fn assert_same_events(source: &Path, url: &str) -> u64 {
    let from_source = export_dir(source);
    let from_kafka = export_kafka(url);
    assert_eq!(from_kafka.len(), from_source.len(), "events on Kafka");
    assert_eq!(
        by_stream(&from_kafka),
        by_stream(&from_source),
        "every stream holds the same events"
    );
    from_source.len() as u64
}

const CATEGORIES: &[&str] = &["order", "account", "user_profile", "café"];

/// Appends rounds `rounds` to the store in `dir` (created if missing): in each round every
/// stream (`streams` per category) gets one to three events in one append, interleaved with
/// the other streams'; events have JSON, text and binary data, schema versions 1 to 3 and
/// sometimes metadata; every fifth round two streams change in one multi-stream append.
/// Returns how many events it appended.
async fn fill(dir: &Path, streams: usize, rounds: Range<usize>) -> u64 {
    let store = EmbeddedStore::open(dir, Options::default()).unwrap();
    let mut appended = 0u64;
    for round in rounds {
        for (c, category) in CATEGORIES.iter().enumerate() {
            for s in 0..streams {
                let k = c * streams + s;
                let stream = StreamName::new(format!("{category}-{s}")).unwrap();
                let n = 1 + (round + k) % 3;
                let events: Vec<NewEvent> = (0..n).map(|i| event(round, k, i)).collect();
                appended += events.len() as u64;
                store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .unwrap();
            }
        }
        if round.is_multiple_of(5) {
            let parts = ["order-0", "account-1"]
                .iter()
                .enumerate()
                .map(|(i, name)| StreamAppend {
                    stream: StreamName::new(*name).unwrap(),
                    expected: ExpectedVersion::Any,
                    events: vec![event(round, 1000 + i, 0)],
                })
                .collect();
            store.append_multi(parts).await.unwrap();
            appended += 2;
        }
    }
    store.close();
    appended
}

fn event(round: usize, k: usize, i: usize) -> NewEvent {
    let kind = (round + k + i) % 4;
    let mut event = match kind {
        0 => NewEvent::json("Created", &json!({"round": round, "k": k, "i": i})).unwrap(),
        1 => NewEvent::new(
            EventType::new("Noted").unwrap(),
            ContentType::new("text/plain; charset=utf-8").unwrap(),
            format!("note {round}/{k}/{i}: ünïcödé"),
        ),
        2 => NewEvent::new(
            EventType::new("Blob").unwrap(),
            ContentType::new("application/octet-stream").unwrap(),
            vec![0xff, 0x00, round as u8, k as u8, i as u8, 0xfe],
        ),
        _ => NewEvent::json(
            "Changed",
            &json!({"to": [round, k, i], "nested": {"x": null}}),
        )
        .unwrap(),
    };
    event.schema_version = 1 + ((round + i) % 3) as u32;
    if (round + k).is_multiple_of(3) {
        let mut metadata = Metadata::new();
        metadata.insert("correlationId".into(), json!(format!("c-{round}-{k}")));
        metadata.insert("by".into(), json!({"user": k, "tags": ["a", "b"]}));
        event.metadata = metadata;
    }
    event
}

/// The end (high watermark) of every partition of the store's event and catalog topics. The
/// request and reply topics are left out: they carry appends routed between nodes, not events.
fn watermarks(prefix: &str) -> BTreeMap<(String, i32), i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let mut ends = BTreeMap::new();
    for topic in metadata.topics() {
        let name = topic.name();
        if !name.starts_with(prefix)
            || name == format!("{prefix}_requests")
            || name == format!("{prefix}_replies")
        {
            continue;
        }
        for partition in topic.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(name, partition.id(), Duration::from_secs(10))
                .unwrap();
            ends.insert((name.to_owned(), partition.id()), high);
        }
    }
    ends
}

// ---- Refused before anything connects (127.0.0.1:9 has no broker). ----

#[test]
fn bad_urls_and_a_missing_source_are_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fill(&source, 1, 0..1));
    let from = source.to_str().unwrap();
    for (to, wanted) in [
        ("kafka://", "no broker"),
        ("http://127.0.0.1:9/x.", "kafka://"),
        ("kafka://127.0.0.1/x.", "HOST:PORT"),
        (
            "kafka://127.0.0.1:9/x.?colour=red",
            "unknown query key \"colour\"",
        ),
        ("kafka://127.0.0.1:9/x.?partitions=0", "partitions"),
        ("kafka://127.0.0.1:9/x.?partitions=eight", "partitions"),
        ("kafka://127.0.0.1:9/a/b", "prefix"),
        ("kafka://u:hunter2@127.0.0.1:9/x.", "credentials"),
    ] {
        let started = Instant::now();
        let output = factlog(&["migrate", "--from", from, "--to", to]);
        assert_fails(&output, 2, &[wanted]);
        assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{to}: refused only after {:?}",
            started.elapsed()
        );
    }
    let output = factlog(&[
        "migrate",
        "--from",
        from,
        "--to",
        "kafka://127.0.0.1:9/x.",
        "--kafka-property",
        "bootstrap.servers=127.0.0.1:1",
    ]);
    assert_fails(&output, 2, &["bootstrap.servers", "URL"]);

    // The read commands check --kafka the same way.
    for args in [
        &["export", "--kafka", "kafka://127.0.0.1:9/x.?partitions=0"][..],
        &[
            "read",
            "$all",
            "--kafka",
            "kafka://127.0.0.1:9/x.?colour=red",
        ],
        &["streams", "--kafka", "kafka://"],
        &[
            "info",
            "order-0",
            "--kafka",
            "kafka://127.0.0.1:9/x.?partitions=0",
        ],
        &[
            "--server",
            "http://127.0.0.1:9",
            "export",
            "--kafka",
            "kafka://127.0.0.1:9/x.",
        ],
        &["export", "--kafka-property", "linger.ms=5"],
    ] {
        let started = Instant::now();
        assert_fails(&factlog(args), 2, &[]);
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
    }

    // A source that is not there: a clear error, before connecting.
    let started = Instant::now();
    let missing = dir.path().join("missing");
    let output = factlog(&[
        "migrate",
        "--from",
        missing.to_str().unwrap(),
        "--to",
        "kafka://127.0.0.1:9/x.",
    ]);
    assert_fails(&output, 1, &["no Factlog store in", "missing", "--from"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !missing.exists(),
        "the refused migration created the source"
    );
}

// ---- With a broker. ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_reads_back_identical_and_a_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let events = fill(&source, 10, 0..40).await;
    assert!(events > 3000, "{events}");
    let prefix = unique_prefix("twice");
    let url = url(&prefix);

    let (report, took) = migrate(&source, &url);
    eprintln!("migrated {events} events in {took:?}: {report}");
    assert_eq!(report["migrated"], events, "{report}");
    assert_eq!(report["alreadyPresent"], 0, "{report}");
    assert_eq!(report["streams"], CATEGORIES.len() * 10, "{report}");
    assert_eq!(report["to"], url, "{report}");
    assert_eq!(assert_same_events(&source, &url), events);

    // The other read commands read the same store.
    let listed = |args: &[&str]| -> Vec<String> {
        String::from_utf8(ok(args).stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        listed(&["streams", "--kafka", &url]),
        listed(&["--data-dir", source.to_str().unwrap(), "streams"])
    );
    let info = |args: &[&str]| -> Value { serde_json::from_slice(&ok(args).stdout).unwrap() };
    let on_kafka = info(&["--json", "info", "café-3", "--kafka", &url]);
    let in_source = info(&[
        "--json",
        "--data-dir",
        source.to_str().unwrap(),
        "info",
        "café-3",
    ]);
    assert_eq!(on_kafka["eventCount"], in_source["eventCount"]);
    assert_eq!(on_kafka["lastVersion"], in_source["lastVersion"]);
    let read = lines(&ok(&[
        "--json", "read", "order-0", "--from", "5", "--kafka", &url,
    ]));
    assert_eq!(read[0]["version"], 5);
    assert_eq!(read.len() as u64 + 5, in_source_count(&source, "order-0"));

    // Again: everything is there already, and nothing is written.
    let before = watermarks(&prefix);
    assert!(
        before.len() >= CATEGORIES.len() * PARTITIONS as usize,
        "{before:?}"
    );
    let (again, took) = migrate(&source, &url);
    eprintln!("migrated again in {took:?}: {again}");
    assert_eq!(again["migrated"], 0, "{again}");
    assert_eq!(again["alreadyPresent"], events, "{again}");
    assert_eq!(
        watermarks(&prefix),
        before,
        "the second migration wrote to the topics"
    );
    assert_eq!(assert_same_events(&source, &url), events);
}

fn in_source_count(source: &Path, stream: &str) -> u64 {
    let output = ok(&[
        "--json",
        "--data-dir",
        source.to_str().unwrap(),
        "info",
        stream,
    ]);
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    info["eventCount"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_resumes_with_the_new_events_and_refuses_a_stream_that_differs() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let first = fill(&source, 3, 0..6).await;
    let prefix = unique_prefix("resume");
    let url = url(&prefix);
    let (report, _) = migrate(&source, &url);
    assert_eq!(report["migrated"], first, "{report}");

    // More events in the same streams, and new streams: only those are written. The last
    // append of each stream in the first run is now cut together with new events, so that
    // chunk is a mix of stored and new events and goes one event at a time.
    let more = fill(&source, 5, 6..9).await;
    let before = watermarks(&prefix);
    let (report, _) = migrate(&source, &url);
    assert_eq!(report["migrated"], more, "{report}");
    assert_eq!(report["alreadyPresent"], first, "{report}");
    assert_eq!(report["streams"], CATEGORIES.len() * 5, "{report}");
    assert_eq!(assert_same_events(&source, &url), first + more);
    let after = watermarks(&prefix);
    let written: i64 = after.values().sum::<i64>() - before.values().sum::<i64>();
    assert!(
        written >= more as i64,
        "{written} records for {more} events"
    );

    // A store whose stream order-0 holds other events than the one on Kafka: refused,
    // naming the stream, and nothing of it is written.
    let other = dir.path().join("other");
    let store = EmbeddedStore::open(&other, Options::default()).unwrap();
    store
        .append(
            &StreamName::new("order-0").unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent::json("Other", &json!({"not": "the same"})).unwrap()],
        )
        .await
        .unwrap();
    store.close();
    let before = watermarks(&prefix);
    let output = factlog(&["migrate", "--from", other.to_str().unwrap(), "--to", &url]);
    assert_fails(
        &output,
        1,
        &["order-0", "holds other events than the source"],
    );
    assert_eq!(watermarks(&prefix), before);

    // Exporting a store that is not there is an error, and creates nothing.
    let missing = unique_prefix("missing");
    let output = factlog(&["export", "--kafka", &self::url(&missing)]);
    assert_fails(&output, 1, &["no Factlog store", &missing]);
    assert!(watermarks(&missing).is_empty(), "topics were created");
}
