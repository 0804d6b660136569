//! The broker side of Factlog on Kafka (see [`super::factlog`]): the settings that decide what
//! an acknowledgement means, read back from the brokers, and the removal of a run's topics.
//!
//! The store's producer is idempotent and transactional with `acks=all` (set by
//! `factlog_kafka::KafkaStore`, not readable from the brokers): the broker acknowledges a write
//! once every in-sync replica has it in its page cache. Whether it is fsynced first depends on
//! the topics' `flush.messages` and `flush.ms`, which default to "never" (Kafka leaves the
//! writing back to the operating system and relies on replication); they are read here so the
//! report says which it was.

use std::time::Duration;

use anyhow::{Context, anyhow};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;

/// How long a metadata or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `flush.messages` and `flush.ms` when unset: Long.MAX_VALUE, "never".
const NEVER: i64 = i64::MAX;

/// What the brokers say about the topics of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Brokers in the cluster's metadata.
    pub brokers: usize,
    /// The fewest replicas of any partition of those topics.
    pub replication_factor: usize,
    /// The weakest (smallest) value of each topic setting over those topics.
    pub min_insync_replicas: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
}

impl Settings {
    /// Whether the brokers fsync every write before acknowledging it.
    pub fn fsync_per_write(&self) -> bool {
        self.flush_messages <= 1
    }

    /// The settings as the report shows them.
    pub fn describe(&self) -> String {
        let flush = |value: i64| {
            if value == NEVER {
                "never".to_owned()
            } else {
                value.to_string()
            }
        };
        let fsync = if self.fsync_per_write() {
            "the brokers fsync every write before acknowledging it"
        } else {
            "Kafka acknowledges once the write is on the in-sync replicas, not after an fsync \
             (no fsync before the acknowledgement)"
        };
        format!(
            "{} broker{}; the store's topics: replication factor {}, min.insync.replicas={}, \
             flush.messages={}, flush.ms={}: {fsync}",
            self.brokers,
            if self.brokers == 1 { "" } else { "s" },
            self.replication_factor,
            self.min_insync_replicas,
            flush(self.flush_messages),
            flush(self.flush_ms),
        )
    }
}

fn admin(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set_log_level(RDKafkaLogLevel::Error)
        .create()
        .with_context(|| format!("could not create a Kafka admin client for {brokers}"))
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// The cluster as its metadata shows it.
#[derive(Debug)]
struct Cluster {
    brokers: usize,
    /// The topics named after the prefix, with the fewest replicas of any of their partitions.
    topics: Vec<(String, usize)>,
}

/// Reads the metadata (a blocking call of librdkafka, so on a blocking thread).
async fn cluster(brokers: &str, prefix: &str) -> anyhow::Result<Cluster> {
    let (brokers, prefix) = (brokers.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        let admin = admin(&brokers)?;
        let metadata = admin
            .inner()
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .with_context(|| {
                format!("could not read the metadata of the Kafka cluster {brokers}")
            })?;
        let topics = metadata
            .topics()
            .iter()
            .filter(|t| t.name().starts_with(&prefix))
            .map(|t| {
                let replicas = t.partitions().iter().map(|p| p.replicas().len()).min();
                (t.name().to_owned(), replicas.unwrap_or(0))
            })
            .collect();
        Ok(Cluster {
            brokers: metadata.brokers().len(),
            topics,
        })
    })
    .await
    .context("reading the Kafka metadata panicked")?
}

/// The number of brokers of the cluster.
pub async fn broker_count(brokers: &str) -> anyhow::Result<usize> {
    Ok(cluster(brokers, "").await?.brokers)
}

/// The settings of the topics named after `prefix`, read from the brokers.
pub async fn settings(brokers: &str, prefix: &str) -> anyhow::Result<Settings> {
    let cluster = cluster(brokers, prefix).await?;
    anyhow::ensure!(
        !cluster.topics.is_empty(),
        "the Kafka cluster {brokers} holds no topic named {prefix}*: the store's topics are missing"
    );
    let specifiers: Vec<ResourceSpecifier<'_>> = cluster
        .topics
        .iter()
        .map(|(name, _)| ResourceSpecifier::Topic(name))
        .collect();
    let described = admin(brokers)?
        .describe_configs(&specifiers, &options())
        .await
        .context("could not read the configuration of the store's topics")?;
    let mut settings = Settings {
        brokers: cluster.brokers,
        replication_factor: cluster.topics.iter().map(|(_, n)| *n).min().unwrap_or(0),
        min_insync_replicas: NEVER,
        flush_messages: NEVER,
        flush_ms: NEVER,
    };
    for resource in described {
        let resource =
            resource.map_err(|code| anyhow!("could not describe a topic of the store: {code}"))?;
        let value = |name: &str| -> anyhow::Result<i64> {
            resource
                .get(name)
                .and_then(|entry| entry.value.as_deref())
                .and_then(|value| value.parse().ok())
                .with_context(|| format!("the brokers did not report {name} of a store topic"))
        };
        settings.min_insync_replicas = settings
            .min_insync_replicas
            .min(value("min.insync.replicas")?);
        settings.flush_messages = settings.flush_messages.min(value("flush.messages")?);
        settings.flush_ms = settings.flush_ms.min(value("flush.ms")?);
    }
    Ok(settings)
}

/// Deletes every topic named after `prefix`. The rest of a store stays until the brokers
/// expire it: the writers' consumer group (empty once the node closed; the broker still
/// counts its member for a moment, so deleting it at once fails) and the transactional ids of
/// the shards (`transactional.id.expiration.ms`, 7 days by default). Neither holds events.
pub async fn delete_topics(brokers: &str, prefix: &str) -> anyhow::Result<()> {
    let cluster = cluster(brokers, prefix).await?;
    let topics: Vec<&str> = cluster.topics.iter().map(|(n, _)| n.as_str()).collect();
    if topics.is_empty() {
        return Ok(());
    }
    let failed: Vec<String> = admin(brokers)?
        .delete_topics(&topics, &options())
        .await
        .context("could not delete the store's topics")?
        .into_iter()
        .filter_map(Result::err)
        .map(|(topic, code)| format!("{topic}: {code}"))
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "could not delete the topics {}",
        failed.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_say_whether_kafka_fsyncs_before_the_acknowledgement() {
        let settings = Settings {
            brokers: 1,
            replication_factor: 1,
            min_insync_replicas: 1,
            flush_messages: NEVER,
            flush_ms: NEVER,
        };
        assert!(!settings.fsync_per_write());
        let text = settings.describe();
        assert!(text.starts_with("1 broker; the store's topics: replication factor 1,"));
        assert!(
            text.contains("flush.messages=never, flush.ms=never"),
            "{text}"
        );
        assert!(
            text.contains("no fsync before the acknowledgement"),
            "{text}"
        );
        let fsyncing = Settings {
            flush_messages: 1,
            ..settings
        };
        assert!(fsyncing.fsync_per_write());
        assert!(!fsyncing.describe().contains("no fsync before"));
    }
}
