//! Projections through the binary: `factlog serve` runs the projections of its configuration
//! file (a stream summary into SQLite, beside the data directory), events go in with
//! `factlog append`, and `factlog projections ...` lists, pauses, resumes, resets, rebuilds and
//! shows dead letters. A bad projection configuration is a usage error that names the field.

mod projection_harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use projection_harness::{Serve, command, eventually};
use serde_json::Value;

const NAME: &str = "order_summary";

/// The summary's view: events per stream.
fn rows(database: &Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(database).unwrap();
    let mut statement = conn
        .prepare(&format!("SELECT stream, events FROM {NAME}"))
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

/// A data directory and a configuration file in a temporary directory; the SQLite file goes
/// beside the data directory.
struct Files {
    root: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    database: PathBuf,
}

fn files(config: &str) -> Files {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let path = root.path().join("factlog.toml");
    std::fs::write(&path, config).unwrap();
    let database = root.path().join("data.projections.sqlite");
    Files {
        root,
        data,
        config: path,
        database,
    }
}

const CONFIG: &str = r#"
[[projections]]
name = "order_summary"
kind = "stream-summary"
categories = ["order"]
batch-linger-ms = 0
"#;

#[test]
fn serve_runs_the_configured_projections_and_the_cli_controls_them() {
    let f = files(CONFIG);
    let serve = Serve::start(&f.config, &f.data);
    serve.append("order-1", "Placed", 3);
    serve.append("order-2", "Placed", 2);
    serve.append("customer-1", "Registered", 1);

    // Caught up: the view in the SQLite file beside the data directory has each event once.
    let status = eventually("the projection to catch up", || {
        let status = serve.status(NAME);
        (status["position"] == "6").then_some(status)
    });
    assert_eq!(status["state"], "running");
    assert_eq!(status["sink"], "sqlite");
    assert_eq!(status["appliedTotal"], 5);
    eventually("the read model", || {
        (rows(&f.database) == counts(&[("order-1", 3), ("order-2", 2)])).then_some(())
    });
    let in_data_dir: Vec<String> = std::fs::read_dir(&f.data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        in_data_dir.iter().all(|name| !name.contains("sqlite")),
        "{in_data_dir:?}"
    );

    // The list, as a table and as JSON lines.
    let table = serve.ok(&["projections", "list"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("POSITION"),
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..5], [NAME, "running", "sqlite", "1", "6"], "{table}");
    let listed = serve.ok(&["--json", "projections", "list"]);
    let listed: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], NAME);
    let details = serve.ok(&["projections", "status", NAME]);
    assert!(
        details.contains("state:               running"),
        "{details}"
    );
    assert!(details.contains("position:            6"), "{details}");

    // Paused: appends go on, the position stays; resumed, it catches up.
    let paused = serve.ok(&["projections", "pause", NAME]);
    assert!(
        paused.starts_with(&format!("paused {NAME} at position 6")),
        "{paused}"
    );
    serve.append("order-1", "Shipped", 1);
    let behind = eventually("the paused projection to see the new event", || {
        let status = serve.status(NAME);
        (status["lagEvents"] == 1).then_some(status)
    });
    assert_eq!(behind["state"], "paused");
    assert_eq!(behind["position"], "6");
    assert_eq!(rows(&f.database)["order-1"], 3);
    serve.ok(&["projections", "resume", NAME]);
    eventually("the resumed projection to catch up", || {
        (serve.status(NAME)["position"] == "7" && rows(&f.database)["order-1"] == 4).then_some(())
    });

    // A dry run shows the plan and changes nothing; --execute applies it.
    let plan = serve.ok(&["projections", "reset", NAME, "--to-earliest"]);
    assert!(plan.contains("current position:   7"), "{plan}");
    assert!(plan.contains("new position:       0"), "{plan}");
    assert!(plan.contains("events to reapply:  7"), "{plan}");
    assert!(
        plan.contains("dry run: nothing changed; add --execute to apply"),
        "{plan}"
    );
    assert_eq!(serve.status(NAME)["position"], "7");
    assert_eq!(rows(&f.database), counts(&[("order-1", 4), ("order-2", 2)]));
    let plan: Value = serde_json::from_str(&serve.ok(&[
        "--json",
        "projections",
        "reset",
        NAME,
        "--shift-by",
        "-2",
    ]))
    .unwrap();
    assert_eq!(plan["newPosition"], "5");
    assert_eq!(plan["eventsToReapply"], 2);
    assert_eq!(plan["executed"], false);
    let plan = serve.ok(&["projections", "reset", NAME, "--to-earliest", "--execute"]);
    assert!(
        plan.contains("executed: the checkpoint is now at 0"),
        "{plan}"
    );
    // Applied again, on top of the read model.
    eventually("the reset projection to apply every event again", || {
        (rows(&f.database) == counts(&[("order-1", 8), ("order-2", 4)])
            && serve.status(NAME)["position"] == "7")
            .then_some(())
    });

    // A rebuild: generation 2, from scratch.
    let rebuilt = serve.ok(&["projections", "rebuild", NAME]);
    assert!(rebuilt.contains("generation 2"), "{rebuilt}");
    eventually("generation 2 to go live", || {
        let status = serve.status(NAME);
        (status["generation"] == 2 && status["rebuild"].is_null() && status["position"] == "7")
            .then_some(())
    });
    assert_eq!(rows(&f.database), counts(&[("order-1", 4), ("order-2", 2)]));

    // No dead letters.
    let dead_letters = serve.ok(&["projections", "dead-letters", NAME]);
    assert_eq!(dead_letters.trim(), format!("{NAME} has no dead letters"));
    assert_eq!(
        serve.ok(&["--json", "projections", "dead-letters", NAME]),
        ""
    );

    // The server's refusals exit 1 with its title and detail (and the problem with --json).
    let refused = serve.run(&["projections", "dead-letters", NAME, "--retry", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("The dead letter does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("dead-letter-not-found"), "{stderr}");
    let refused = serve.run(&["--json", "projections", "status", "nope"]);
    assert_eq!(refused.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&refused.stderr).unwrap();
    assert_eq!(error["problem"]["status"], 404);
    assert!(
        error["problem"]["type"]
            .as_str()
            .unwrap()
            .ends_with("#projection-not-found")
    );
    let refused = serve.run(&[
        "projections",
        "reset",
        NAME,
        "--to-position",
        "99",
        "--execute",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid-reset"));
    // Usage errors exit 2: no target, two targets, no server.
    for args in [
        &["projections", "reset", NAME][..],
        &["projections", "reset", NAME, "--to-earliest", "--to-latest"],
        &["projections", "reset", NAME, "--to-datetime", "yesterday"],
    ] {
        assert_eq!(serve.run(args).status.code(), Some(2), "{args:?}");
    }
    let output = command(&["projections", "list"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--server"));
    serve.stop();

    // Started again, the projection resumes where its read model is.
    let serve = Serve::start(&f.config, &f.data);
    serve.append("order-2", "Shipped", 1);
    eventually("the restarted projection to catch up", || {
        (serve.status(NAME)["position"] == "8" && rows(&f.database)["order-2"] == 3).then_some(())
    });
    assert_eq!(serve.status(NAME)["generation"], 2);
    serve.stop();
    drop(f.root);
}

#[test]
fn a_bad_projection_configuration_is_a_usage_error_that_names_the_field() {
    let cases: [(&str, &str); 7] = [
        (
            "[[projections]]\nname = \"Orders\"\nkind = \"stream-summary\"\n",
            "projections[0].name",
        ),
        (
            "[[projections]]\nname = \"orders\"\nkind = \"nonsense\"\n",
            "kind",
        ),
        (
            "[[projections]]\nname = \"orders\"\nkind = \"stream-summary\"\nsink = \"kafka\"\n",
            "sink",
        ),
        (
            "[[projections]]\nname = \"orders\"\nkind = \"stream-summary\"\nbatch-events-max = 0\n",
            "projections[0].batch-events-max",
        ),
        (
            "[[projections]]\nname = \"orders\"\nkind = \"stream-summary\"\nsink = \"postgres\"\n",
            "postgres-url",
        ),
        (
            "[[projections]]\nname = \"orders\"\nkind = \"stream-summary\"\n\
             [[projections]]\nname = \"orders\"\nkind = \"stream-summary\"\n",
            "projections[1].name",
        ),
        (
            "[[projections]]\nname = \"orders\"\nkind = \"stream-summary\"\n\
             [projection-sinks]\nsqlite-path = \"DATA/read.sqlite\"\n",
            "inside the data directory",
        ),
    ];
    for (config, expected) in cases {
        let f = files("");
        let config = config.replace("DATA", f.data.to_str().unwrap());
        std::fs::write(&f.config, &config).unwrap();
        let output = command(&[])
            .arg("--config")
            .arg(&f.config)
            .arg("--data-dir")
            .arg(&f.data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{config}: {stderr}");
        assert!(stderr.contains(expected), "{config}: {stderr}");
        assert!(
            !f.data.exists(),
            "{config}: the refused start created the store"
        );
        assert!(
            !f.database.exists(),
            "{config}: the refused start created the SQLite file"
        );
    }
}

#[test]
fn print_config_shows_the_projections_with_their_defaults_and_masks_urls() {
    let f = files(
        r#"
        [[projections]]
        name = "order_summary"
        kind = "stream-summary"
        categories = ["order"]
        [[projections]]
        name = "everything"
        kind = "stream-summary"
        table = "all_streams"
        sink = "postgres"
        on-error = "stop"
        [projection-sinks]
        postgres-url = "postgres://factlog:pa55word@db.internal/factlog"
        "#,
    );
    let output = command(&["--json"])
        .arg("--config")
        .arg(&f.config)
        .arg("--data-dir")
        .arg(&f.data)
        .args(["serve", "--print-config"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("pa55word"), "{text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    let projections = config["projections"].as_array().unwrap();
    assert_eq!(projections[0]["name"], NAME);
    assert_eq!(projections[0]["table"], NAME);
    assert_eq!(projections[0]["sink"], "sqlite");
    assert_eq!(projections[0]["on-error"], "park");
    assert_eq!(projections[1]["table"], "all_streams");
    assert_eq!(projections[1]["on-error"], "stop");
    let sinks = &config["projection-sinks"];
    assert_eq!(sinks["sqlite-path"], f.database.to_str().unwrap());
    assert_eq!(sinks["postgres-url"], "********");
    assert_eq!(sinks["postgres-schema"], "public");
    assert!(
        sinks.get("redis-url").is_none(),
        "unused sinks are left out"
    );
    assert!(!f.data.exists(), "--print-config opens nothing");
}
