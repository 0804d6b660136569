//! `factlog bench kafka`, run as users run it: arguments that cannot work are refused before
//! anything runs (no broker needed), and a `--quick` run against a real broker measures every
//! row, reads back every acknowledged event and times a takeover.
//!
//! The run needs `FACTLOG_TEST_KAFKA_BROKERS` and `FACTLOG_TEST_KAFKA_CLASSPATH`: run it under
//! `scripts/kafka.sh run -- cargo test -p factlog-cli --test bench_kafka`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_factlog");

/// `factlog` with none of the variables the command reads, but those given.
fn factlog() -> Command {
    let mut command = Command::new(EXE);
    for variable in [
        "FACTLOG_CONFIG",
        "FACTLOG_DATA_DIR",
        "FACTLOG_BENCH_COMMAND",
        "FACTLOG_TEST_KAFKA_BROKERS",
        "FACTLOG_TEST_KAFKA_CLASSPATH",
    ] {
        command.env_remove(variable);
    }
    command.stdin(Stdio::null());
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_refused(args: &[&str], wanted: &[&str]) {
    let started = Instant::now();
    let output = factlog()
        .args(["bench", "kafka"])
        .args(args)
        .output()
        .expect("factlog runs");
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} is a usage error (exit 2): {output:?}"
    );
    let text = stderr(&output);
    for w in wanted {
        assert!(text.contains(w), "{w:?} is not in {text:?} ({args:?})");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{args:?} was refused only after {:?}: something ran first",
        started.elapsed()
    );
}

#[test]
fn arguments_that_cannot_work_are_refused_before_anything_runs() {
    // 127.0.0.1:9 (discard) has no broker and the classpath no jar: a refusal must come first.
    let base = [
        "--brokers",
        "127.0.0.1:9",
        "--kafka-classpath",
        "/nonexistent/kafka-clients.jar",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };
    assert_refused(&with(&["--batch-events", "0"]), &["--batch-events"]);
    assert_refused(&with(&["--clients", "0"]), &["--clients"]);
    assert_refused(&with(&["--single-clients", "0"]), &["--single-clients"]);
    assert_refused(&with(&["--partitions", "0"]), &["--partitions"]);
    assert_refused(&with(&["--batch-events", "20000"]), &["--batch-events"]);
    assert_refused(&with(&["--record-size", "1"]), &["--record-size"]);
    assert_refused(&with(&["--seconds", "0"]), &["--seconds"]);
    assert_refused(
        &with(&["--session-timeout-seconds", "0.1"]),
        &["--session-timeout-seconds"],
    );
    assert_refused(
        &with(&["--quick", "--write-docs", "docs/benchmarks.md"]),
        &["--write-docs"],
    );
    // Without the broker's variables: say where the brokers and the jars come from.
    assert_refused(&[], &["--brokers", "scripts/kafka.sh"]);
    assert_refused(
        &["--brokers", "127.0.0.1:9"],
        &["--kafka-classpath", "scripts/kafka.sh"],
    );
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the test under `scripts/kafka.sh run -- cargo test -p \
             factlog-cli --test bench_kafka`, which starts a Kafka broker"
        )
    })
}

/// The result row of a scenario and metric (a prefix of it).
fn row<'a>(report: &'a Value, scenario: &str, metric: &str) -> &'a Value {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["scenario"] == scenario && r["metric"].as_str().unwrap().starts_with(metric))
        .unwrap_or_else(|| panic!("no row {scenario} {metric:?} in {report}"))
}

fn positive(value: &Value, what: &str) -> f64 {
    let n = value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"));
    assert!(n > 0.0, "{what} is {n}");
    n
}

#[test]
fn a_quick_run_measures_every_row_and_reads_every_event_back() {
    let brokers = env("FACTLOG_TEST_KAFKA_BROKERS");
    let classpath = env("FACTLOG_TEST_KAFKA_CLASSPATH");
    let dir = tempfile::tempdir().unwrap();
    let output = factlog()
        .args(["--json", "bench", "kafka", "--quick", "--dir"])
        .arg(dir.path())
        .env("FACTLOG_TEST_KAFKA_BROKERS", &brokers)
        .env("FACTLOG_TEST_KAFKA_CLASSPATH", &classpath)
        .stderr(Stdio::piped())
        .output()
        .expect("factlog runs");
    assert!(
        output.status.success(),
        "factlog bench kafka --quick failed: {}\n{}",
        output.status,
        stderr(&output)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));
    assert_eq!(report["quick"], true);

    // a. Kafka's ProducerPerformance.
    let raw = positive(
        &row(&report, "a", "transactions of")["measured"],
        "raw events/s",
    );
    positive(&row(&report, "a", "p50")["measured"], "raw p50");
    positive(&row(&report, "a", "p99")["measured"], "raw p99");
    let details = &report["details"];
    positive(
        &details["raw"]["transactionDurationMs"],
        "transaction duration",
    );
    positive(
        &details["raw"]["recordsPerTransaction"],
        "records per transaction",
    );

    // b. Factlog, batched; c. the ratio; d. single events.
    let batched = positive(&row(&report, "b", "")["measured"], "batched events/s");
    positive(&row(&report, "b", "p50")["measured"], "batched p50");
    positive(&row(&report, "b", "p99")["measured"], "batched p99");
    let ratio = row(&report, "c", "");
    assert_eq!(ratio["unit"], "ratio");
    assert_eq!(ratio["comparison"], ">=");
    assert_eq!(ratio["target"], 0.5);
    let measured = positive(&ratio["measured"], "ratio");
    assert!(
        (measured - batched / raw).abs() < 1e-6 * measured.max(1.0),
        "the ratio {measured} is not {batched} / {raw}"
    );
    assert!(ratio["meetsTarget"].is_boolean());
    positive(&row(&report, "d", "")["measured"], "single-event events/s");
    positive(&row(&report, "d", "p99")["measured"], "single-event p99");

    // Every acknowledged event read back.
    let verification = &details["verification"];
    let acknowledged = positive(&verification["acknowledgedEvents"], "acknowledged events");
    assert_eq!(
        verification["readBackEvents"].as_f64(),
        Some(acknowledged),
        "{verification}"
    );
    let factlog = &details["factlog"];
    assert_eq!(
        factlog["batched"]["events"].as_f64().unwrap()
            + factlog["single"]["events"].as_f64().unwrap(),
        acknowledged
    );

    // e. The takeover.
    let takeover = &details["takeover"];
    let seconds = positive(&takeover["seconds"], "takeover time");
    assert!(seconds >= takeover["ownedAgainSeconds"].as_f64().unwrap());
    assert!(
        !takeover["movedShards"].as_array().unwrap().is_empty(),
        "{takeover}"
    );
    positive(&row(&report, "e", "")["measured"], "takeover row");

    // Machine facts, as the other benchmarks report them.
    for key in ["cores", "memory", "build", "Kafka"] {
        assert!(
            report["setup"][key].is_string(),
            "no {key} in {}",
            report["setup"]
        );
    }
    // The temporary directory is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
