//! The store conformance suite on the Kafka backend (a real broker: run under
//! `scripts/kafka.sh run -- cargo test -p factlog-kafka`).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use factlog_conformance::{Backend, Limits};
use factlog_kafka::KafkaStore;
use parking_lot::Mutex;

struct KafkaBackend {
    dirs: Mutex<Vec<tempfile::TempDir>>,
    /// Held from the case's first store until its end: the cases run one at a time, as each
    /// starts a node (consumer group, transactional producers, replica) and two cores running
    /// several at once turn seconds of startup into timeouts.
    turn: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

static TURNS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(1)));

impl KafkaBackend {
    fn new() -> Self {
        Self {
            dirs: Mutex::new(Vec::new()),
            turn: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Backend for KafkaBackend {
    type Store = KafkaStore;

    async fn open(&self) -> Arc<KafkaStore> {
        if self.turn.lock().is_none() {
            let permit = TURNS.clone().acquire_owned().await.unwrap();
            *self.turn.lock() = Some(permit);
        }
        let dir = tempfile::tempdir().unwrap();
        let options = common::options(
            &common::unique_prefix("conformance"),
            dir.path().join("replica"),
            "node-a",
        );
        self.dirs.lock().push(dir);
        common::open(options).await
    }

    async fn reopen(&self, store: Arc<KafkaStore>) -> Arc<KafkaStore> {
        let options = store.options().clone();
        store.close().await;
        drop(store);
        common::open(options).await
    }

    fn limits(&self) -> Limits {
        let o = factlog_kafka::KafkaOptions::new("unused:1", "unused").limits;
        Limits {
            event_size_bytes_max: o.event_size_bytes_max,
            append_events_max: o.append_events_max,
        }
    }
}

factlog_conformance::conformance_tests!(KafkaBackend::new());
