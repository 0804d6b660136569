//! Shared by the Kafka tests: the broker from the environment and stores on it, each with its
//! own topic prefix (so tests share the broker but nothing else) and replica directory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use factlog_kafka::{KafkaOptions, KafkaStore};

/// The brokers `scripts/kafka.sh run` started.
pub fn brokers() -> String {
    std::env::var("FACTLOG_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "FACTLOG_TEST_KAFKA_BROKERS is not set: run the tests under `scripts/kafka.sh run -- \
             cargo test -p factlog-kafka`, which starts a Kafka broker"
        )
    })
}

/// A topic prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "t.{name}.{}.{nanos}.{}.",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for a test node: few partitions, short timeouts.
pub fn options(prefix: &str, data_dir: PathBuf, node: &str) -> KafkaOptions {
    let mut o = KafkaOptions::new(brokers(), data_dir);
    o.topic_prefix = prefix.to_owned();
    o.partitions = 2;
    o.node_id = node.to_owned();
    o.session_timeout = Duration::from_secs(3);
    o.append_timeout = Duration::from_secs(60);
    o
}

pub async fn open(options: KafkaOptions) -> Arc<KafkaStore> {
    // Warnings of the store (slow steps, retries) go to the test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    KafkaStore::open(options)
        .await
        .expect("the Kafka store opens")
}
