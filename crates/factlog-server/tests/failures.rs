//! Storage failures as the HTTP client sees them: a full disk (recoverable), a failed fsync
//! (fatal to the writer, reported by readiness), and a closed store.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{SseItem, TestServer, expect_problem, metric, new_events};
use factlog_api::ProblemKind;
use factlog_log::Options;
use factlog_log::fault::{Faults, FaultyStorage};
use factlog_server::Config;

async fn faulty() -> (TestServer, Arc<Faults>) {
    let faults = Faults::new();
    let t = TestServer::with(
        Config::default(),
        Options {
            storage: Arc::new(FaultyStorage::new(faults.clone())),
            ..Options::default()
        },
    )
    .await;
    (t, faults)
}

#[tokio::test]
async fn a_full_disk_is_507_and_appends_work_again_once_space_is_freed() {
    let (t, faults) = faulty().await;
    t.append_ok("disk-1", None, &new_events("E", 0, 2)).await;
    faults.set_space_left_bytes(10);
    let body = new_events("E", 2, 3);
    expect_problem(t.append("disk-1", None, &body).await, ProblemKind::DiskFull).await;
    assert_eq!(t.events(), 2);
    // Still ready: a full disk is not the end of the writer.
    assert_eq!(t.get("/ready").await.status(), 200);
    let page = t.get_json("/streams/disk-1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    faults.free_space();
    let appended = t.append_ok("disk-1", Some("1"), &body).await;
    assert_eq!(appended["firstVersion"], 2);
    assert_eq!(t.events(), 5);
    let text = t.metrics().await;
    assert_eq!(
        metric(&text, "factlog_errors_total{kind=\"disk-full\"}"),
        Some(1.0)
    );
    t.stop().await;
}

#[tokio::test]
async fn a_failed_fsync_stops_appends_and_readiness_but_not_reads() {
    let (t, faults) = faulty().await;
    t.append_ok("sync-1", None, &new_events("E", 0, 2)).await;
    faults.fail_syncs.store(true, Ordering::SeqCst);
    let body = expect_problem(
        t.append("sync-1", None, &new_events("E", 2, 1)).await,
        ProblemKind::Unavailable,
    )
    .await;
    assert!(body["reason"].is_string(), "{body}");
    faults.fail_syncs.store(false, Ordering::SeqCst);
    // The writer stays stopped: nothing is retried and then acknowledged.
    expect_problem(
        t.append("sync-1", None, &new_events("E", 2, 1)).await,
        ProblemKind::Unavailable,
    )
    .await;
    assert_eq!(t.events(), 2);
    let body = expect_problem(t.get("/ready").await, ProblemKind::Unavailable).await;
    assert!(body["reason"].is_string(), "{body}");
    // Alive, and reads work.
    assert_eq!(t.get("/health").await.status(), 200);
    let page = t.get_json("/streams/sync-1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let text = t.metrics().await;
    assert_eq!(metric(&text, "factlog_writer_failed"), Some(1.0));
    assert_eq!(
        metric(&text, "factlog_errors_total{kind=\"unavailable\"}"),
        Some(3.0)
    );
    t.stop().await;
}

#[tokio::test]
async fn a_closed_store_refuses_appends_and_ends_subscriptions_with_an_error_event() {
    let t = TestServer::start().await;
    t.append_ok("closed-1", None, &new_events("E", 0, 1)).await;
    let mut sse = t.subscribe("/subscribe/all", None).await;
    assert!(sse.next_message().await.is_some());
    t.store.close();
    // The subscription ends with one `error` message holding a problem.
    let message = sse.next_message().await.expect("an error message");
    assert_eq!(message.event.as_deref(), Some("error"));
    assert_eq!(message.id, None);
    let problem = message.json();
    assert_eq!(problem["type"], ProblemKind::Unavailable.type_uri());
    assert_eq!(problem["status"], 503);
    assert_eq!(sse.next_item().await, SseItem::End);
    expect_problem(
        t.append("closed-1", None, &new_events("E", 1, 1)).await,
        ProblemKind::Unavailable,
    )
    .await;
    t.stop().await;
}
