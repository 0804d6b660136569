//! Shared by the CLI's Kafka tests: the broker `scripts/kafka.sh run` started, and topic
//! prefixes no other test uses (tests share the broker, never a store).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The brokers `scripts/kafka.sh run` started.
pub fn brokers() -> String {
    std::env::var("FACTLOG_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "FACTLOG_TEST_KAFKA_BROKERS is not set: run the tests under `scripts/kafka.sh run -- \
             cargo test -p factlog-cli --test <name>`, which starts a Kafka broker"
        )
    })
}

/// A topic prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!(
        "t.cli.{name}.{}.{micros}.{}.",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
