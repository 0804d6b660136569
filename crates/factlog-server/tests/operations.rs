//! Operations: health, readiness, the Prometheus metrics, the engine's statistics, and the
//! OpenAPI document.

mod common;

use std::collections::BTreeSet;

use common::{TestServer, metric, new_events};
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness_report_the_end_position() {
    let t = TestServer::start().await;
    for path in ["/health", "/ready"] {
        let body = t.get_json(path).await;
        assert_eq!(body["status"], "ok", "{path}");
        assert!(body["endPosition"].is_string(), "{path}: {body}");
    }
    let appended = t.append_ok("ops-1", None, &new_events("E", 0, 2)).await;
    let end: u64 = t.get_json("/health").await["endPosition"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let last: u64 = appended["lastPosition"].as_str().unwrap().parse().unwrap();
    assert!(end > last, "the end is after the last event");
    // Reading $all from the end returns nothing.
    let page = t.get_json(&format!("/all?from={end}")).await;
    assert_eq!(page["events"], serde_json::json!([]));
    t.stop().await;
}

#[tokio::test]
async fn metrics_count_appends_bytes_latencies_subscribers_and_errors() {
    let t = TestServer::start().await;
    for i in 0..3 {
        t.append_ok("metrics-1", None, &new_events("E", i * 2, 2))
            .await;
    }
    let response = t.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let value =
        |sample: &str| metric(&text, sample).unwrap_or_else(|| panic!("{sample} in\n{text}"));
    assert_eq!(value("factlog_appends_total"), 3.0);
    assert_eq!(value("factlog_appended_events_total"), 6.0);
    assert_eq!(value("factlog_events_written_total"), 6.0);
    assert_eq!(value("factlog_events"), 6.0);
    assert_eq!(value("factlog_streams"), 1.0);
    assert!(value("factlog_bytes_written_total") > 0.0);
    assert!(value("factlog_write_batches_total") >= 1.0);
    // The latency histograms: counts, sums and the +Inf bucket agree.
    assert_eq!(value("factlog_append_duration_seconds_count"), 3.0);
    assert!(value("factlog_append_duration_seconds_sum") > 0.0);
    assert_eq!(
        value("factlog_append_duration_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );
    let fsyncs = value("factlog_fsync_duration_seconds_count");
    assert!(fsyncs >= 1.0, "{text}");
    assert!(value("factlog_fsync_duration_seconds_sum") > 0.0);
    assert_eq!(
        value("factlog_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
        fsyncs
    );
    // Buckets are cumulative.
    for histogram in [
        "factlog_append_duration_seconds",
        "factlog_fsync_duration_seconds",
    ] {
        let buckets: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{histogram}_bucket{{")))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        assert!(buckets.len() > 5, "{histogram}");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{histogram}: {buckets:?}"
        );
    }
    assert_eq!(value("factlog_subscribers"), 0.0);
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );

    // Errors by kind, once they happen.
    assert_eq!(
        metric(
            &text,
            "factlog_errors_total{kind=\"wrong-expected-version\"}"
        ),
        None
    );
    let response = t
        .append("metrics-1", Some("no-stream"), &new_events("E", 0, 1))
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(t.get("/nope").await.status(), 404);
    assert_eq!(t.get("/nope").await.status(), 404);
    let _subscriber = t.subscribe("/subscribe/all?from=end", None).await;
    let text = t.metrics().await;
    assert_eq!(
        metric(
            &text,
            "factlog_errors_total{kind=\"wrong-expected-version\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "factlog_errors_total{kind=\"not-found\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "factlog_wrong_expected_version_total"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "factlog_subscribers"), Some(1.0));
    // Failed appends are not counted as appends.
    assert_eq!(metric(&text, "factlog_appends_total"), Some(3.0));
    t.stop().await;
}

#[tokio::test]
async fn admin_stats_are_the_engine_statistics() {
    let t = TestServer::start().await;
    t.append_ok("stats-1", None, &new_events("E", 0, 4)).await;
    t.append_ok("stats-2", None, &new_events("E", 0, 1)).await;
    let stats = t.get_json("/admin/stats").await;
    assert_eq!(stats["appends"], 2);
    assert_eq!(stats["eventsWritten"], 5);
    assert_eq!(stats["events"], 5);
    assert_eq!(stats["streams"], 2);
    assert!(stats["bytesWritten"].as_u64().unwrap() > 0);
    assert_eq!(stats["writerFailed"], Value::Null);
    t.stop().await;
}

/// Every route the server has, as (method, OpenAPI path). `/openapi.json` itself is left out:
/// the document describes the API, not where it is published.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/streams/{stream}"),
    ("get", "/streams/{stream}"),
    ("post", "/append"),
    ("get", "/streams/{stream}/{version}"),
    ("get", "/events/{eventId}"),
    ("get", "/streams/{stream}/info"),
    ("get", "/streams"),
    ("get", "/categories"),
    ("get", "/all"),
    ("get", "/subscribe/all"),
    ("get", "/subscribe/streams/{stream}"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/admin/stats"),
    ("post", "/admin/backup"),
    ("get", "/projections"),
    ("get", "/projections/{name}"),
    ("post", "/projections/{name}/pause"),
    ("post", "/projections/{name}/resume"),
    ("post", "/projections/{name}/reset"),
    ("post", "/projections/{name}/rebuild"),
    ("get", "/projections/{name}/dead-letters"),
    ("post", "/projections/{name}/dead-letters/{id}/retry"),
    ("post", "/projections/{name}/dead-letters/{id}/skip"),
];

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_every_route() {
    let t = TestServer::start().await;
    let response = t.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let document: Value = response.json().await.unwrap();
    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");
    assert!(document["info"]["title"].is_string());

    let mut listed = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            if let Some(operation) = item.get(method) {
                listed.insert((method.to_owned(), path.clone()));
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed, expected);

    // Every listed route is served (none answers the unknown-route 404).
    for (method, path) in &expected {
        let concrete = path
            .replace("{stream}", "doc-1")
            .replace("{version}", "0")
            .replace("{eventId}", "0190a5a0-0000-7000-8000-000000000d0c")
            .replace("{name}", "doc")
            .replace("{id}", "1");
        let response = t
            .http
            .request(method.to_uppercase().parse().unwrap(), t.url(&concrete))
            .json(&serde_json::json!([]))
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            let body: Value = response.json().await.unwrap();
            assert_ne!(
                body["type"],
                factlog_api::ProblemKind::NotFound.type_uri(),
                "{method} {path} is documented but not routed"
            );
        }
    }

    // Every reference resolves.
    fn references(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => {
                            out.insert(target.clone());
                        }
                        _ => references(value, out),
                    }
                }
            }
            Value::Array(values) => values.iter().for_each(|v| references(v, out)),
            _ => {}
        }
    }
    let mut targets = BTreeSet::new();
    references(&document, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target}"));
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{target} does not resolve"
        );
    }

    // The problem schema and the bearer scheme are described.
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    t.stop().await;
}

#[tokio::test]
async fn readiness_fails_once_the_store_is_closed() {
    let t = TestServer::start().await;
    assert_eq!(t.get("/ready").await.status(), 200);
    t.store.close();
    let problem =
        common::expect_problem(t.get("/ready").await, factlog_api::ProblemKind::Unavailable).await;
    assert_eq!(problem["reason"], "closed");
    t.stop().await;
}
