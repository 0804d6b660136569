//! `factlog serve` running projections into PostgreSQL and Redis from its configuration (the
//! PostgreSQL URL from the environment, Redis's from the file), controlled with
//! `factlog projections`. Needs the servers of `scripts/services.sh`, which sets
//! FACTLOG_TEST_POSTGRES_URL and FACTLOG_TEST_REDIS_URL.

mod projection_harness;

use std::collections::BTreeMap;

use factlog_projection::{ProjectionName, RedisSink};
use projection_harness::{Serve, eventually};

const PG: &str = "pg_summary";
const REDIS: &str = "redis_summary";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests under `scripts/services.sh run -- cargo test -p \
             factlog-cli --test projection_sinks`, which starts PostgreSQL and Redis"
        )
    })
}

/// The PostgreSQL summary's view: events per stream.
async fn pg_rows(url: &str, schema: &str) -> BTreeMap<String, i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            &format!("SELECT stream, events FROM \"{schema}\".{PG}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The Redis summary as a reader sees it: through the live generation's keys.
async fn redis_rows(url: &str, prefix: &str) -> BTreeMap<String, i64> {
    let sink = RedisSink::connect(url, prefix).await.unwrap();
    let name = ProjectionName::new(REDIS).unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let streams_key = sink
        .live_key(&name, &format!("{REDIS}:streams"))
        .await
        .unwrap();
    let streams: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&streams_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut rows = BTreeMap::new();
    for stream in streams {
        let key = sink
            .live_key(&name, &format!("{REDIS}:stream:{stream}"))
            .await
            .unwrap();
        let events: i64 = redis::cmd("HGET")
            .arg(&key)
            .arg("events")
            .query_async(&mut conn)
            .await
            .unwrap();
        rows.insert(stream, events);
    }
    rows
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_projections_into_postgres_and_redis() {
    let pg_url = env("FACTLOG_TEST_POSTGRES_URL");
    let redis_url = env("FACTLOG_TEST_REDIS_URL");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("t_cli_{}", std::process::id());
    let prefix = format!("factlog_test:cli:{}:{nanos}:", std::process::id());
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("factlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [[projections]]
            name = "{PG}"
            kind = "stream-summary"
            sink = "postgres"
            categories = ["order"]
            [[projections]]
            name = "{REDIS}"
            kind = "stream-summary"
            sink = "redis"
            categories = ["order"]
            [projection-sinks]
            postgres-schema = "{schema}"
            redis-url = "{redis_url}"
            redis-key-prefix = "{prefix}"
            "#
        ),
    )
    .unwrap();
    let data = root.path().join("data");
    let serve = tokio::task::block_in_place(|| {
        Serve::start_with_env(
            &config,
            &data,
            &[("FACTLOG_PROJECTION_POSTGRES_URL", pg_url.as_str())],
        )
    });
    let caught_up = |position: &str| {
        tokio::task::block_in_place(|| {
            eventually(&format!("both projections to reach {position}"), || {
                [PG, REDIS]
                    .iter()
                    .all(|name| {
                        let status = serve.status(name);
                        status["position"] == position
                            && status["state"] == "running"
                            && status["rebuild"].is_null()
                    })
                    .then_some(())
            })
        })
    };
    tokio::task::block_in_place(|| {
        serve.append("order-1", "Placed", 3);
        serve.append("order-2", "Placed", 2);
        serve.append("customer-1", "Registered", 1);
    });
    caught_up("6");
    assert_eq!(serve.status(PG)["sink"], "postgres");
    assert_eq!(serve.status(REDIS)["sink"], "redis");
    let expected = counts(&[("order-1", 3), ("order-2", 2)]);
    assert_eq!(pg_rows(&pg_url, &schema).await, expected);
    assert_eq!(redis_rows(&redis_url, &prefix).await, expected);

    // Reset (applied again on top) and rebuild (from scratch), through the CLI.
    for name in [PG, REDIS] {
        let plan = serve.ok(&[
            "projections",
            "reset",
            name,
            "--shift-by",
            "-2",
            "--execute",
        ]);
        assert!(plan.contains("events to reapply:  2"), "{plan}");
    }
    // Positions 5 and 6: order-2's second event and the customer's.
    let reapplied = counts(&[("order-1", 3), ("order-2", 3)]);
    tokio::task::block_in_place(|| {
        eventually("the events to be applied again", || {
            let rt = tokio::runtime::Handle::current();
            let pg = rt.block_on(pg_rows(&pg_url, &schema));
            let redis = rt.block_on(redis_rows(&redis_url, &prefix));
            (pg == reapplied && redis == reapplied).then_some(())
        })
    });
    for name in [PG, REDIS] {
        assert!(
            serve
                .ok(&["projections", "rebuild", name])
                .contains("generation 2")
        );
    }
    caught_up("6");
    for name in [PG, REDIS] {
        assert_eq!(serve.status(name)["generation"], 2);
    }
    assert_eq!(pg_rows(&pg_url, &schema).await, expected);
    assert_eq!(redis_rows(&redis_url, &prefix).await, expected);
    tokio::task::block_in_place(|| serve.stop());

    let (client, connection) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
