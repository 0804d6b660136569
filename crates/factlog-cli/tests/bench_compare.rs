//! `factlog bench compare` as users run it, on the stores that need no server: the embedded
//! store (durable and bulk-import), the server in its own process, and SQLite; and Factlog on
//! Kafka when `FACTLOG_TEST_KAFKA_BROKERS` names a broker (the test command runs the tests
//! under `scripts/kafka.sh run`, which starts one). The servers of the other peers are
//! exercised by `scripts/bench-compare.sh --quick` in the test command.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_factlog");

fn compare(dir: &Path, args: &[&str]) -> Output {
    Command::new(EXE)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["bench", "compare", "--dir"])
        .arg(dir)
        .args(args)
        .env_remove("FACTLOG_BENCH_COMMAND")
        .env_remove("RUST_LOG")
        .output()
        .expect("factlog runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The broker `scripts/kafka.sh run` started, if the tests run under it.
fn kafka_brokers() -> Option<String> {
    let brokers = std::env::var("FACTLOG_TEST_KAFKA_BROKERS").ok();
    if brokers.is_none() {
        eprintln!(
            "FACTLOG_TEST_KAFKA_BROKERS is not set: Factlog on Kafka is not measured (run under \
             `scripts/kafka.sh run -- cargo test -p factlog-cli --test bench_compare`)"
        );
    }
    brokers.filter(|b| !b.trim().is_empty())
}

#[test]
fn a_quick_run_measures_every_workload_checks_it_and_writes_json_and_docs() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("benchmarks.md");
    std::fs::write(&docs, "# Benchmarks\n\nHand-written text stays.\n").unwrap();
    let json_path = dir.path().join("compare.json");
    let kafka = kafka_brokers();
    let mut only = vec!["factlog", "factlog-http", "sqlite", "factlog-bulk"];
    let mut args = vec![
        "--quick",
        "--seconds",
        "0.1",
        "--read-streams",
        "5",
        "--json-out",
        json_path.to_str().unwrap(),
        "--write-docs",
        docs.to_str().unwrap(),
    ];
    if let Some(brokers) = &kafka {
        only.push("factlog-kafka");
        args.extend(["--kafka-brokers", brokers]);
    }
    let only = only.join(",");
    args.extend(["--only", &only]);
    let output = compare(dir.path(), &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();

    let stores: Vec<&str> = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(stores.join(","), only, "every store chosen ran, in order");
    let results = report["results"].as_array().unwrap();
    let workloads = [
        "read-stream",
        "aggregate-load",
        "read-all",
        "catch-up",
        "batched-uniform",
        "batched-zipf",
        "concurrent-1-uniform",
        "concurrent-8-zipf",
        "concurrent-64-uniform",
        "conflicts",
    ];
    for store in &stores {
        for workload in workloads {
            let result = results
                .iter()
                .find(|r| r["store"] == *store && r["workload"] == workload)
                .unwrap_or_else(|| panic!("no {workload} for {store}"));
            assert!(
                result["eventsPerSecond"].as_f64().unwrap() > 0.0,
                "{result}"
            );
        }
    }
    // Reads of the data set read exactly what was written: 5 streams of 100.
    for r in results.iter().filter(|r| r["workload"] == "read-all") {
        assert_eq!(r["events"], 500, "{r}");
    }
    // At the end every store held the data set and every acknowledged append, and no more.
    let written = |store: &str| -> u64 {
        let writes = ["batched-", "concurrent-", "conflicts"];
        results
            .iter()
            .filter(|r| r["store"] == store)
            .filter(|r| {
                writes
                    .iter()
                    .any(|w| r["workload"].as_str().unwrap().starts_with(w))
            })
            .map(|r| r["events"].as_u64().unwrap())
            .sum()
    };
    for store in &stores {
        assert_eq!(
            report["verifiedEvents"][*store].as_u64(),
            Some(500 + written(store)),
            "{store}"
        );
    }
    // SQLite is durable: compared with the durable store and the server; the bulk-import
    // store is not compared with anything on writes.
    let sqlite_batched = results
        .iter()
        .find(|r| r["store"] == "sqlite" && r["workload"] == "batched-uniform")
        .unwrap();
    assert!(sqlite_batched["factlogEmbeddedRatio"].as_f64().unwrap() > 0.0);
    assert!(sqlite_batched["factlogHttpRatio"].as_f64().unwrap() > 0.0);
    if kafka.is_some() {
        // Kafka acknowledges once replicated, before fsync: its writes are compared with the
        // bulk-import mode, its reads with the durable store and the server.
        let kafka_store = report["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "factlog-kafka")
            .unwrap();
        assert_eq!(kafka_store["durability"], "replicated", "{kafka_store}");
        let settings = kafka_store["settings"].as_str().unwrap();
        for said in ["acks=all", "min.insync.replicas=", "not after an fsync"] {
            assert!(settings.contains(said), "{said:?} is not in {settings:?}");
        }
        let row = |workload: &str| {
            results
                .iter()
                .find(|r| r["store"] == "factlog-kafka" && r["workload"] == workload)
                .unwrap()
        };
        let batched = row("batched-uniform");
        assert!(
            batched["factlogEmbeddedRatio"].as_f64().unwrap() > 0.0,
            "{batched}"
        );
        assert!(batched["factlogHttpRatio"].is_null(), "{batched}");
        let read = row("read-stream");
        assert!(
            read["factlogEmbeddedRatio"].as_f64().unwrap() > 0.0,
            "{read}"
        );
        assert!(read["factlogHttpRatio"].as_f64().unwrap() > 0.0, "{read}");
        let conflicts = row("conflicts");
        assert!(
            conflicts["note"]
                .as_str()
                .unwrap()
                .contains("the hot streams hold exactly the"),
            "{conflicts}"
        );
    }
    let goals = report["goals"].as_array().unwrap();
    assert!(goals.iter().all(|g| g["store"] == "sqlite"), "{goals:?}");
    assert_eq!(goals.len(), 2);
    for (store, events) in report["verifiedEvents"].as_object().unwrap() {
        assert!(events.as_u64().unwrap() >= 500, "{store}: {events}");
    }
    assert_eq!(
        report["leftOut"].as_array().unwrap().len(),
        0,
        "--only leaves nothing out"
    );

    let doc = std::fs::read_to_string(&docs).unwrap();
    assert!(doc.starts_with("# Benchmarks\n\nHand-written text stays.\n"));
    assert!(doc.contains("<!-- factlog bench compare: begin"));
    assert!(doc.contains("### Batched appends: 1 writer x 1000 events"));
    assert!(doc.contains("| SQLite | fsync before ack |"));
    if kafka.is_some() {
        assert!(
            doc.contains("| Factlog on Kafka | ack before fsync, once on the in-sync replicas |"),
            "{doc}"
        );
    }
    assert!(
        doc.trim_end()
            .ends_with("<!-- factlog bench compare: end -->")
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("### Goals"), "{stdout}");
}

#[test]
fn a_store_without_url_is_left_out_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = compare(
        dir.path(),
        &["--quick", "--only", "postgres", "--require-all"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no URL for the peer postgres"),
        "{}",
        stderr(&output)
    );

    let output = compare(
        dir.path(),
        &["--quick", "--only", "factlog-kafka", "--require-all"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no URL for the peer factlog-kafka"),
        "{}",
        stderr(&output)
    );

    let output = compare(
        dir.path(),
        &["--quick", "--only", "postgres,nats,factlog-kafka"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("| Factlog on Kafka | left out: no URL given |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| PostgreSQL | left out: no URL given |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| NATS JetStream | left out: no URL given |"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (args, message) in [
        (&["--only", "mysql"][..], "unknown peer 'mysql'"),
        (&["--workloads", "scan"][..], "unknown workload 'scan'"),
        (&["--seconds", "0"][..], "--seconds must be above 0"),
        (
            &["--read-streams", "0"][..],
            "--read-streams must be at least 1",
        ),
    ] {
        let output = compare(dir.path(), args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // Nothing was left behind in the directory but what the test made.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("factlog-compare-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
