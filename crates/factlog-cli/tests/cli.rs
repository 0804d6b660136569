//! The `factlog` binary, run as users run it, on temporary data directories.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_factlog");

/// `factlog --data-dir DIR ARGS...`, unaffected by the caller's environment.
fn factlog(dir: &Path, args: &[&str]) -> Output {
    factlog_with_stdin(dir, args, None)
}

fn factlog_with_stdin(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(EXE)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("FACTLOG_DATA_DIR")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the factlog binary starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("stdin takes the input");
    }
    child.wait_with_output().expect("factlog runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "factlog failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line of --json output is JSON"))
        .collect()
}

#[test]
fn append_then_read_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let id = "0190f5a2-7c3e-7b1a-9d4e-5f6a7b8c9d0e";
    let out = factlog(
        &dir,
        &[
            "append",
            "order-7",
            "--type",
            "OrderCreated",
            "--data",
            r#"{"total": 42, "items": ["a"]}"#,
            "--id",
            id,
            "--metadata",
            r#"{"correlationId": "c-1"}"#,
            "--expected-version",
            "no-stream",
            "--json",
        ],
    );
    assert_ok(&out);
    let appended = &json_lines(&out)[0];
    assert_eq!(appended["firstVersion"], 0);
    assert_eq!(appended["lastVersion"], 0);
    assert_eq!(appended["firstPosition"], "1");

    // Two more in one append, from JSON lines on stdin (an empty line is skipped).
    let lines = concat!(
        r#"{"eventType": "ItemAdded", "data": {"sku": "b"}}"#,
        "\n\n",
        r#"{"eventType": "ItemAdded", "data": {"sku": "c"}, "schemaVersion": 2}"#,
        "\n"
    );
    let out = factlog_with_stdin(
        &dir,
        &["append", "order-7", "--expected-version", "0", "--json"],
        Some(lines),
    );
    assert_ok(&out);
    let appended = &json_lines(&out)[0];
    assert_eq!(appended["events"], 2);
    assert_eq!(appended["firstVersion"], 1);
    assert_eq!(appended["lastVersion"], 2);

    let out = factlog(&dir, &["read", "order-7", "--json"]);
    assert_ok(&out);
    let events = json_lines(&out);
    assert_eq!(events.len(), 3);
    let first = &events[0];
    assert_eq!(first["eventId"], id);
    assert_eq!(first["stream"], "order-7");
    assert_eq!(first["version"], 0);
    assert_eq!(first["position"], "1", "positions are strings");
    assert_eq!(first["eventType"], "OrderCreated");
    assert_eq!(first["schemaVersion"], 1);
    assert_eq!(
        first["data"],
        serde_json::json!({"total": 42, "items": ["a"]})
    );
    assert_eq!(
        first["metadata"],
        serde_json::json!({"correlationId": "c-1"})
    );
    let recorded_at = first["recordedAt"].as_str().unwrap();
    assert_eq!(recorded_at.len(), "2026-11-23T10:15:00.123Z".len());
    assert!(recorded_at.ends_with('Z') && recorded_at.as_bytes()[19] == b'.');
    assert_eq!(events[2]["data"], serde_json::json!({"sku": "c"}));
    assert_eq!(events[2]["schemaVersion"], 2);
    assert_eq!(events[2]["version"], 2);

    // Backward with a limit, and $all filtered by type.
    let out = factlog(
        &dir,
        &["read", "order-7", "--backward", "--limit", "2", "--json"],
    );
    assert_ok(&out);
    let versions: Vec<_> = json_lines(&out)
        .iter()
        .map(|e| e["version"].clone())
        .collect();
    assert_eq!(versions, [2, 1]);
    let out = factlog(&dir, &["read", "$all", "--types", "ItemAdded", "--json"]);
    assert_ok(&out);
    let positions: Vec<_> = json_lines(&out)
        .iter()
        .map(|e| e["position"].clone())
        .collect();
    assert_eq!(positions, ["2", "3"]);

    // Stream info and listing agree.
    let out = factlog(&dir, &["info", "order-7", "--json"]);
    assert_ok(&out);
    let info = &json_lines(&out)[0];
    assert_eq!(info["eventCount"], 3);
    assert_eq!(info["lastVersion"], 2);
    let out = factlog(&dir, &["streams", "--prefix", "order", "--json"]);
    assert_ok(&out);
    assert_eq!(json_lines(&out), [serde_json::json!({"stream": "order-7"})]);
    let out = factlog(&dir, &["stats", "--json"]);
    assert_ok(&out);
    assert_eq!(json_lines(&out)[0]["events"], 3);
}

#[test]
fn read_pages_through_more_than_one_page() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // 5000 events: more than one page (4096) of a stream and of $all.
    let lines: String = (0..5000)
        .map(|i| format!("{{\"eventType\": \"Tick\", \"data\": {{\"i\": {i}}}}}\n"))
        .collect();
    assert_ok(&factlog_with_stdin(
        &dir,
        &["append", "clock-1"],
        Some(&lines),
    ));
    for target in ["clock-1", "$all"] {
        let out = factlog(&dir, &["read", target, "--json"]);
        assert_ok(&out);
        let events = json_lines(&out);
        assert_eq!(events.len(), 5000, "{target}");
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(i, e)| e["data"]["i"] == i && e["version"] == i),
            "{target}: events out of order or repeated"
        );
        let out = factlog(&dir, &["read", target, "--backward", "--json"]);
        assert_ok(&out);
        let events = json_lines(&out);
        assert_eq!(events.len(), 5000, "{target} backward");
        assert_eq!(events[0]["version"], 4999);
        assert_eq!(events[4999]["version"], 0);
    }
}

#[test]
fn wrong_expected_version_exits_1_with_the_current_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    for _ in 0..2 {
        assert_ok(&factlog(
            &dir,
            &["append", "account-1", "--type", "Deposited", "--data", "{}"],
        ));
    }
    let out = factlog(
        &dir,
        &[
            "append",
            "account-1",
            "--type",
            "Deposited",
            "--data",
            "{}",
            "--expected-version",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("is at version 1"),
        "the message names the current version: {message}"
    );

    // Scripts get the current version as a field.
    let out = factlog(
        &dir,
        &[
            "append",
            "account-1",
            "--type",
            "Deposited",
            "--data",
            "{}",
            "--expected-version",
            "no-stream",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(error["kind"], "wrong_expected_version");
    assert_eq!(error["currentVersion"], 1);

    let out = factlog(&dir, &["read", "account-1", "--json"]);
    assert_eq!(json_lines(&out).len(), 2, "nothing was written");
}

#[test]
fn bad_stream_name_exits_non_zero_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    for name in ["$system", "", "a\nb"] {
        let out = factlog(&dir, &["append", name, "--type", "T", "--data", "{}"]);
        assert!(!out.status.success(), "{name:?} was accepted");
        let message = stderr(&out);
        assert!(
            message.contains("stream name"),
            "the message says what is wrong with {name:?}: {message}"
        );
    }
    assert!(!dir.exists(), "a refused append must not create a store");

    // A bad line among good ones: nothing of the append is stored.
    assert_ok(&factlog(
        &dir,
        &["append", "ok-1", "--type", "T", "--data", "{}"],
    ));
    let lines = "{\"eventType\": \"T\", \"data\": 1}\n{\"eventType\": \"\", \"data\": 2}\n";
    let out = factlog_with_stdin(&dir, &["append", "ok-1"], Some(lines));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2"),
        "the message names the line: {}",
        stderr(&out)
    );
    let out = factlog(&dir, &["read", "$all", "--json"]);
    assert_eq!(json_lines(&out).len(), 1);

    // Reading a bad name is refused too, and reading a missing store creates nothing.
    let out = factlog(&dir, &["read", "$nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("$all"), "{}", stderr(&out));
    let missing = tmp.path().join("missing");
    let out = factlog(&missing, &["read", "$all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no Factlog store"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists());
}

#[test]
fn verify_passes_then_names_file_and_offset_of_a_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // 2000 events of about 300 bytes of data.
    let pad = "x".repeat(280);
    let lines: String = (0..2000)
        .map(|i| {
            format!("{{\"eventType\": \"Filled\", \"data\": {{\"i\": {i}, \"pad\": \"{pad}\"}}}}\n")
        })
        .collect();
    assert_ok(&factlog_with_stdin(
        &dir,
        &["append", "big-1"],
        Some(&lines),
    ));

    let out = factlog(&dir, &["verify"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("2000 events"), "{}", stdout(&out));
    let out = factlog(&dir, &["verify", "--json"]);
    assert_ok(&out);
    let report = &json_lines(&out)[0];
    assert_eq!(report["events"], 2000);
    assert_eq!(report["segments"], 1);

    // Frames start at byte 64; byte 1064 is inside the data of the third or fourth event,
    // far from the end of the log, where a torn tail could be.
    let segment = dir.join("segment-00000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() > 500_000);
    bytes[64 + 1000] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();

    let out = factlog(&dir, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout(&out));
    let message = stderr(&out);
    assert!(message.contains("segment-00000000.seg"), "{message}");
    assert!(message.contains("offset"), "{message}");
    let out = factlog(&dir, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert!(
        error["file"]
            .as_str()
            .unwrap()
            .ends_with("segment-00000000.seg")
    );
    let offset = error["offset"].as_u64().unwrap();
    assert!(
        (64..=64 + 1000).contains(&offset),
        "the bad frame starts at or before the flipped byte: {offset}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let cases: &[&[&str]] = &[
        &[],
        &["no-such-command"],
        &["read"],
        &["append", "s-1", "--data", "{", "--type", "T"],
        &["append", "s-1", "--data", "{}"],
        &[
            "append",
            "s-1",
            "--type",
            "T",
            "--data",
            "{}",
            "--expected-version",
            "soon",
        ],
        &["read", "s-1", "--types", "A"],
        &["read", "s-1", "--limit", "many"],
    ];
    for args in cases {
        let out = factlog(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?} says what is wrong");
    }
    assert!(!dir.exists(), "a usage error writes nothing");
}

#[test]
fn bench_quick_runs_every_scenario_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let bench_dir = tmp.path().join("bench");
    let out = factlog(
        &tmp.path().join("data"),
        &["bench", "--quick", "--dir", bench_dir.to_str().unwrap()],
    );
    assert_ok(&out);
    let table = stdout(&out);
    for name in [
        "fsync latency",
        "batched durable appends",
        "concurrent writers",
        "read $all, warm cache",
        "read 100-event streams",
        "open after clean close",
        "open after kill -9",
    ] {
        assert!(table.contains(name), "{name:?} missing from:\n{table}");
    }
    for column in ["measured", "target", "ratio", "meets target"] {
        assert!(table.contains(column), "{column:?} missing from:\n{table}");
    }
    assert!(
        std::fs::read_dir(&bench_dir).unwrap().next().is_none(),
        "the bench removes its directory"
    );

    let out = factlog(
        &tmp.path().join("data"),
        &[
            "bench",
            "--quick",
            "--json",
            "--dir",
            bench_dir.to_str().unwrap(),
        ],
    );
    assert_ok(&out);
    let report = &json_lines(&out)[0];
    let results = report["results"].as_array().unwrap();
    let scenarios: std::collections::BTreeSet<_> = results
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios.into_iter().collect::<String>(), "abcdefghi");
    for row in results {
        assert!(row["measured"].as_f64().is_some(), "unmeasured: {row}");
    }
    assert_eq!(report["details"]["crashOpen"]["keptAcknowledged"], true);
}
