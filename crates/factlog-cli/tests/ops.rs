//! Operating a store with the `factlog` binary: export and import, tail, backup and restore.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_factlog");

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(EXE);
    command
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("FACTLOG_DATA_DIR")
        .env_remove("FACTLOG_CONFIG")
        .env_remove("RUST_LOG");
    command
}

/// `factlog --data-dir DIR ARGS...` with `stdin` as its input.
fn factlog_with_stdin(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = command(dir, args)
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

fn factlog(dir: &Path, args: &[&str]) -> Output {
    factlog_with_stdin(dir, args, None)
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

#[track_caller]
fn ok(dir: &Path, args: &[&str]) -> Output {
    let output = factlog(dir, args);
    assert_ok(&output);
    output
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect()
}

/// Every event of the store in `dir`, as `factlog read '$all' --json` prints them.
fn all_events(dir: &Path) -> Vec<Value> {
    json_lines(&stdout(&ok(dir, &["read", "$all", "--json"])))
}

/// What an import must keep of each event (the time and, in another store, the position are
/// the importing store's).
fn kept(event: &Value) -> Value {
    let mut event = event.clone();
    let object = event.as_object_mut().unwrap();
    object.remove("recordedAt");
    object.remove("position");
    event
}

/// A store with events in three streams, appended so that one stream's events are consecutive
/// in `$all` (one import batch) and the streams also interleave.
fn sample_store(dir: &Path) {
    let lines = |kind: &str, from: u64, to: u64| -> String {
        (from..to)
            .map(|n| {
                format!(
                    r#"{{"eventType": "{kind}", "data": {{"n": {n}, "text": "ünïcödé {n}"}}, "metadata": {{"correlationId": "c-{n}"}}, "schemaVersion": {}}}"#,
                    1 + n % 2
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (stream, kind, from, to) in [
        ("account-1", "Deposited", 0, 6),
        ("account-2", "Opened", 0, 1),
        ("account-1", "Withdrawn", 6, 9),
        ("order-1", "Placed", 0, 4),
        ("account-2", "Deposited", 1, 3),
    ] {
        assert_ok(&factlog_with_stdin(
            dir,
            &["append", stream],
            Some(&lines(kind, from, to)),
        ));
    }
}

fn import_json(dir: &Path, file: &Path) -> Value {
    let output = ok(dir, &["import", file.to_str().unwrap(), "--json"]);
    json_lines(&stdout(&output)).remove(0)
}

#[test]
fn export_then_import_round_trip_and_import_twice_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, target) = (tmp.path().join("source"), tmp.path().join("target"));
    sample_store(&source);
    let file = tmp.path().join("export.jsonl");
    let exported = ok(&source, &["export", "--file", file.to_str().unwrap()]);
    assert!(
        stdout(&exported).contains("exported 16 events"),
        "{}",
        stdout(&exported)
    );

    // The file holds the API's event shape, one per line, and stdout gets the same lines.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 16);
    for line in &lines {
        let event: factlog_api::EventJson = serde_json::from_value(line.clone()).unwrap();
        assert_eq!(
            &serde_json::to_value(&event).unwrap(),
            line,
            "nothing more, nothing less"
        );
    }
    assert_eq!(lines[0]["stream"], "account-1");
    assert_eq!(stdout(&ok(&source, &["export"])), text);

    let report = import_json(&target, &file);
    assert_eq!(report["imported"], 16);
    assert_eq!(report["alreadyPresent"], 0);
    let original = all_events(&source);
    let imported = all_events(&target);
    assert_eq!(
        original.iter().map(kept).collect::<Vec<_>>(),
        imported.iter().map(kept).collect::<Vec<_>>(),
        "same events, ids, streams, versions, types, schema versions, data and metadata"
    );

    let again = import_json(&target, &file);
    assert_eq!(again["imported"], 0);
    assert_eq!(again["alreadyPresent"], 16);
    assert_eq!(
        all_events(&target),
        imported,
        "the second import wrote nothing"
    );

    // One stream, from a version.
    let stream = json_lines(&stdout(&ok(
        &source,
        &["export", "--stream", "account-1", "--from", "7"],
    )));
    assert_eq!(
        stream
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [7, 8]
    );
}

/// A previous import that stopped in the middle of a batch (here: it was given the first
/// lines of the file, cutting the first stream's batch in two) is finished by importing the
/// whole file: each event is stored once, in the order of the file.
#[test]
fn import_resumes_after_a_cut_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, target) = (tmp.path().join("source"), tmp.path().join("target"));
    sample_store(&source);
    let text = stdout(&ok(&source, &["export"]));
    let full = tmp.path().join("full.jsonl");
    std::fs::write(&full, &text).unwrap();
    // Lines 1-6 are account-1's first append (one batch); cut inside it.
    let cut = tmp.path().join("cut.jsonl");
    let first_lines: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&cut, first_lines.join("\n") + "\n").unwrap();

    let first = import_json(&target, &cut);
    assert_eq!(
        (first["imported"].as_u64(), first["alreadyPresent"].as_u64()),
        (Some(3), Some(0))
    );
    let second = import_json(&target, &full);
    assert_eq!(
        (
            second["imported"].as_u64(),
            second["alreadyPresent"].as_u64()
        ),
        (Some(13), Some(3))
    );
    let third = import_json(&target, &full);
    assert_eq!(
        (third["imported"].as_u64(), third["alreadyPresent"].as_u64()),
        (Some(0), Some(16))
    );

    let original = all_events(&source);
    let imported = all_events(&target);
    assert_eq!(imported.len(), 16, "exactly one copy of each event");
    assert_eq!(
        original.iter().map(kept).collect::<Vec<_>>(),
        imported.iter().map(kept).collect::<Vec<_>>()
    );
    ok(&target, &["verify"]);
}

#[test]
fn import_of_a_malformed_line_names_it_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    sample_store(&source);
    let text = stdout(&ok(&source, &["export"]));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replace("\"stream\"", "\"strem\"");
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();

    // Into a new directory: no store is created.
    let fresh = tmp.path().join("fresh");
    let output = factlog(&fresh, &["import", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("line 4"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nothing was imported"),
        "{}",
        stderr(&output)
    );
    assert!(!fresh.exists());

    // Into an existing store: its events stay as they were, also those of earlier lines.
    let existing = tmp.path().join("existing");
    ok(
        &existing,
        &["append", "other-1", "--type", "T", "--data", "{}"],
    );
    let before = all_events(&existing);
    let output = factlog_with_stdin(&existing, &["import", "--json"], Some(&lines.join("\n")));
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_str(stderr(&output).trim()).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("stdin line 4"),
        "{error}"
    );
    assert_eq!(all_events(&existing), before);
}

/// `tail` on a store no other process has open: the existing events, then it stops after
/// `--count`. Following events as they are appended needs a second process appending to the
/// same directory, which the directory lock forbids; that live part is the store's
/// subscription, covered by the conformance suite (`factlog-conformance` subscribe tests) and
/// the engine's own tests, and `tail` only prints what the subscription yields.
#[test]
fn tail_prints_existing_events_and_stops_after_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    sample_store(&dir);
    let all = all_events(&dir);

    let output = ok(
        &dir,
        &["tail", "--from", "beginning", "--count", "3", "--json"],
    );
    assert_eq!(json_lines(&stdout(&output)), all[..3]);

    let output = ok(&dir, &["tail", "--from", "5", "--count", "2", "--json"]);
    let positions: Vec<_> = json_lines(&stdout(&output))
        .iter()
        .map(|e| e["position"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(positions, ["5", "6"]);

    let output = ok(
        &dir,
        &["tail", "account-2", "--from", "1", "--count", "2", "--json"],
    );
    let events = json_lines(&stdout(&output));
    assert_eq!(
        events
            .iter()
            .map(|e| (e["stream"].clone(), e["version"].clone()))
            .collect::<Vec<_>>(),
        [
            ("account-2".into(), 1.into()),
            ("account-2".into(), 2.into())
        ]
    );

    let output = ok(
        &dir,
        &[
            "tail",
            "--types",
            "Placed",
            "--from",
            "beginning",
            "--count",
            "4",
            "--json",
        ],
    );
    assert!(
        json_lines(&stdout(&output))
            .iter()
            .all(|e| e["eventType"] == "Placed")
    );

    // From a time: the first event recorded at or after it. Each append above was its own
    // process, so appends lie milliseconds apart and the millisecond of an append's first event
    // is after every earlier append.
    let order = all.iter().find(|e| e["stream"] == "order-1").unwrap();
    let time = order["recordedAt"].as_str().unwrap();
    let output = ok(&dir, &["tail", "--from", time, "--count", "1", "--json"]);
    assert_eq!(json_lines(&stdout(&output)), std::slice::from_ref(order));

    // Text by default.
    let output = ok(&dir, &["tail", "--from", "beginning", "--count", "1"]);
    assert!(
        stdout(&output).contains("account-1@0  Deposited"),
        "{}",
        stdout(&output)
    );

    let output = factlog(
        &dir,
        &["tail", "account-1", "--types", "Placed", "--count", "1"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// After the existing events `tail` keeps following, until Ctrl-C, which ends it with success.
#[test]
fn tail_follows_until_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    sample_store(&dir);
    let mut child = command(&dir, &["tail", "--from", "15", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for position in ["15", "16"] {
        let line = lines.next().unwrap().unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["position"], position);
    }
    assert!(child.try_wait().unwrap().is_none(), "tail keeps following");
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "tail did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "Ctrl-C ends tail with success: {status}");
}

#[test]
fn backup_and_restore_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, backup, restored) = (
        tmp.path().join("data"),
        tmp.path().join("backup"),
        tmp.path().join("restored"),
    );
    sample_store(&dir);
    let output = ok(&dir, &["backup", backup.to_str().unwrap(), "--json"]);
    let report = &json_lines(&stdout(&output))[0];
    assert_eq!(report["events"], 16);
    assert!(backup.join("BACKUP.json").is_file());

    let output = ok(&restored, &["restore", backup.to_str().unwrap()]);
    assert!(
        stdout(&output).contains("restored 16 events"),
        "{}",
        stdout(&output)
    );
    ok(&restored, &["verify"]);
    assert_eq!(all_events(&restored), all_events(&dir));

    // Into a directory that is not empty: refused, and the store there is unchanged.
    let before = all_events(&dir);
    let output = factlog(&dir, &["restore", backup.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not empty"),
        "{}",
        stderr(&output)
    );
    assert_eq!(all_events(&dir), before);

    // Into a backup directory that is not empty: refused.
    let output = factlog(&dir, &["backup", backup.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not empty"), "{}", stderr(&output));

    // A damaged backup: refused, naming the file.
    let segment = backup.join("segment-00000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&segment, bytes).unwrap();
    let output = factlog(
        &tmp.path().join("again"),
        &["restore", backup.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("segment-00000000.seg"),
        "{}",
        stderr(&output)
    );
}
