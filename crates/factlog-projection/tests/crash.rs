//! Crash test, for each sink: a child process appends events and runs a stream-summary
//! projection; the parent kills it with SIGKILL at a random moment, again and again
//! (`FACTLOG_PROJECTION_CRASH_CYCLES`, default 20 per sink), then finishes the run in-process
//! and checks that the read model equals the summary computed from the log (every event applied
//! exactly once: `events` is incremented, so a lost or doubled event shows), and equals it again
//! after a from-scratch rebuild. The seed is printed; `FACTLOG_PROJECTION_CRASH_SEED` replays it.
//!
//! The test binary is its own child: run with `--child SINK DIR` it is the projection process.
//! PostgreSQL and Redis come from `FACTLOG_TEST_POSTGRES_URL` and `FACTLOG_TEST_REDIS_URL`
//! (`scripts/services.sh run -- cargo test` starts both).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Row, model};
use factlog_log::{EmbeddedStore, Options};
use factlog_projection::{
    Interest, PostgresSink, ProjectionName, ProjectionOptions, Projections, RedisSink, SqliteSink,
    StreamSummary,
};
use factlog_store::{EventStore, ExpectedVersion, NewEvent, ReadAll, StreamName};
use rand::{Rng, SeedableRng};

/// The child stops appending at this many events, so that a run stays bounded.
const EVENTS_MAX: u64 = 40_000;
const NAME: &str = "crash_summary";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
    Redis,
}

impl Kind {
    fn parse(s: &str) -> Self {
        match s {
            "sqlite" => Kind::Sqlite,
            "postgres" => Kind::Postgres,
            "redis" => Kind::Redis,
            other => panic!("unknown sink {other}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests under `scripts/services.sh run -- cargo test`, which starts PostgreSQL and Redis")
    })
}

/// A schema or key prefix of this run's own, named after the data directory.
fn namespace(dir: &Path) -> String {
    let leaf = dir.file_name().unwrap().to_string_lossy().to_lowercase();
    let clean: String = leaf
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("crash_{clean}")
}

fn options() -> ProjectionOptions {
    let mut options = ProjectionOptions::new(ProjectionName::new(NAME).unwrap());
    // Small batches: many commits, so kills land inside and between them.
    options.batch_events_max = 64;
    options
}

fn summary() -> Arc<StreamSummary> {
    Arc::new(StreamSummary::new("crash_rows", Interest::all()))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the projection in this process until `until` says stop, then stops it.
async fn with_projection<F>(kind: Kind, dir: &Path, store: Arc<dyn EventStore>, until: F)
where
    F: AsyncFnOnce(&factlog_projection::ProjectionHandle),
{
    let projections = Projections::new();
    let handle = match kind {
        Kind::Sqlite => {
            let sink = SqliteSink::open(dir.join("read-models.sqlite"))
                .await
                .unwrap();
            projections.start(store, Arc::new(sink), summary(), options())
        }
        Kind::Postgres => {
            let url = env("FACTLOG_TEST_POSTGRES_URL");
            let sink = PostgresSink::connect(&url, &namespace(dir)).await.unwrap();
            projections.start(store, Arc::new(sink), summary(), options())
        }
        Kind::Redis => {
            let url = env("FACTLOG_TEST_REDIS_URL");
            let sink = RedisSink::connect(&url, &format!("{}:", namespace(dir)))
                .await
                .unwrap();
            projections.start(store, Arc::new(sink), summary(), options())
        }
    }
    .unwrap();
    until(&handle).await;
    projections.stop().await;
}

/// The child: appends (while the log is under `EVENTS_MAX`) and projects, until killed.
fn child(kind: Kind, dir: &Path) {
    rt().block_on(async {
        let store = Arc::new(EmbeddedStore::open(dir.join("events"), Options::default()).unwrap());
        let appender = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::from_entropy();
                loop {
                    let end = store.end_position().await.unwrap().raw();
                    if end >= EVENTS_MAX {
                        return;
                    }
                    let stream =
                        StreamName::new(format!("account-{}", rng.gen_range(0..40))).unwrap();
                    let count = rng.gen_range(1..=8);
                    let events = (0..count)
                        .map(|_| {
                            NewEvent::json("Deposited", &serde_json::json!({"amount": 1})).unwrap()
                        })
                        .collect();
                    store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                }
            })
        };
        println!("ready");
        with_projection(kind, dir, store, async |_| {
            appender.await.unwrap();
            std::future::pending::<()>().await;
        })
        .await;
    });
}

/// The read model as readers see it.
async fn read_model(kind: Kind, dir: &Path) -> BTreeMap<String, Row> {
    match kind {
        Kind::Sqlite => {
            let conn = rusqlite::Connection::open(dir.join("read-models.sqlite")).unwrap();
            let mut statement = conn
                .prepare("SELECT stream, category, events, last_version, last_event_type, last_position FROM crash_rows")
                .unwrap();
            statement
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Row {
                            category: r.get(1)?,
                            events: r.get(2)?,
                            last_version: r.get(3)?,
                            last_event_type: r.get(4)?,
                            last_position: r.get(5)?,
                        },
                    ))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        }
        Kind::Postgres => {
            let (client, connection) =
                tokio_postgres::connect(&env("FACTLOG_TEST_POSTGRES_URL"), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let sql = format!(
                "SELECT stream, category, events, last_version, last_event_type, last_position FROM {}.crash_rows",
                namespace(dir)
            );
            client
                .query(&sql, &[])
                .await
                .unwrap()
                .into_iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        Row {
                            category: r.get(1),
                            events: r.get(2),
                            last_version: r.get(3),
                            last_event_type: r.get(4),
                            last_position: r.get(5),
                        },
                    )
                })
                .collect()
        }
        Kind::Redis => {
            let url = env("FACTLOG_TEST_REDIS_URL");
            let sink = RedisSink::connect(&url, &format!("{}:", namespace(dir)))
                .await
                .unwrap();
            let name = ProjectionName::new(NAME).unwrap();
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let streams_key = sink.live_key(&name, "crash_rows:streams").await.unwrap();
            let streams: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&streams_key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let mut rows = BTreeMap::new();
            for stream in streams {
                let key = sink
                    .live_key(&name, &format!("crash_rows:stream:{stream}"))
                    .await
                    .unwrap();
                let h: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let n = |f: &str| h[f].parse::<i64>().unwrap();
                rows.insert(
                    stream,
                    Row {
                        category: h["category"].clone(),
                        events: n("events"),
                        last_version: n("last_version"),
                        last_event_type: h["last_event_type"].clone(),
                        last_position: n("last_position"),
                    },
                );
            }
            rows
        }
    }
}

fn parent(kind: Kind, cycles: u64, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    for _ in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["--child", kind.name(), dir.path().to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().expect("the child says it is ready").unwrap();
        assert_eq!(ready, "ready");
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, it did not exit");
    }

    rt().block_on(async {
        let store = Arc::new(EmbeddedStore::open(dir.path().join("events"), Options::default()).unwrap());
        let events = store.read_all(ReadAll::forward().limit(usize::MAX)).await.unwrap();
        let last = events.last().expect("the children appended").position;
        let expected = model(&events, |_| true);

        // Finish the run: the model must be exact, then exact again after a rebuild.
        let deadline = Instant::now() + Duration::from_secs(120);
        let before_restart = read_model(kind, dir.path()).await;
        with_projection(kind, dir.path(), store.clone(), async |handle| {
            while handle.status().position < last {
                assert!(Instant::now() < deadline, "{:?}", handle.status());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(read_model(kind, dir.path()).await, expected, "seed {seed}");
            handle.rebuild().await.unwrap();
            while handle.status().generation < 2 {
                assert!(Instant::now() < deadline, "{:?}", handle.status());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(read_model(kind, dir.path()).await, expected, "seed {seed}");
        })
        .await;
        let applied_before: i64 = before_restart.values().map(|r| r.events).sum();
        assert!(applied_before > 0, "the killed children applied nothing: the test tested nothing");
        println!(
            "crash {}: {cycles} kills in {:.1?}, {} events, {applied_before} applied by the killed processes, read model exact and equal to a rebuild",
            kind.name(),
            started.elapsed(),
            events.len()
        );
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--child" {
        child(Kind::parse(&args[2]), Path::new(&args[3]));
        return;
    }
    // `cargo test` passes filters and flags such as `--quiet`; this test has a single case.
    if args
        .iter()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"crash".contains(a.as_str()))
    {
        println!("crash: filtered out");
        return;
    }
    let cycles: u64 = std::env::var("FACTLOG_PROJECTION_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("FACTLOG_PROJECTION_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!(
        "crash: {cycles} cycles per sink, seed {seed} (FACTLOG_PROJECTION_CRASH_SEED={seed} replays it)"
    );
    for kind in [Kind::Sqlite, Kind::Postgres, Kind::Redis] {
        parent(kind, cycles, seed);
    }
}
