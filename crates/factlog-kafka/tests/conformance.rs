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
}

impl KafkaBackend {
    fn new() -> Self {
        Self {
            dirs: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Backend for KafkaBackend {
    type Store = KafkaStore;

    async fn open(&self) -> Arc<KafkaStore> {
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
