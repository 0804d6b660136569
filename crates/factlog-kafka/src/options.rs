//! How a node of the Kafka backend is configured.

use std::path::PathBuf;
use std::time::Duration;

use factlog_store::AppendLimits;

/// The settings of one Factlog node on a Kafka cluster. Every node of one store must agree on
/// `topic_prefix` and `partitions`.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`: `host:port,host:port`.
    pub brokers: String,
    /// Prepended to every topic, consumer group and transactional id of this store
    /// (`factlog.` gives `factlog.account` for the category `account`).
    pub topic_prefix: String,
    /// Partitions of every topic; partition `k` of every category topic is shard `k`, owned by
    /// one node at a time. At most [`crate::codec::PARTITIONS_MAX`].
    pub partitions: u32,
    /// Replication factor of the topics this node creates.
    pub replication_factor: i16,
    /// `min.insync.replicas` of the topics this node creates.
    pub min_insync_replicas: u16,
    /// This node's name: its consumer group member id prefix and where replies find it.
    pub node_id: String,
    /// The directory of this node's read replica (an embedded store).
    pub data_dir: PathBuf,
    /// Extra librdkafka settings for every client: `security.protocol`, `sasl.*`, `ssl.*`, ...
    pub client_properties: Vec<(String, String)>,
    /// How long the group waits for a silent node before it moves its partitions.
    pub session_timeout: Duration,
    /// How long an append waits for the owner of its partition (routing included).
    pub append_timeout: Duration,
    /// The append limits, the same named limits as the embedded store's.
    pub limits: AppendLimits,
    /// Whether this node joins the writers' group and may own partitions. A node that does not
    /// (a backup or an export) reads from its replica and routes every append to an owner.
    pub writer: bool,
}

impl KafkaOptions {
    /// Defaults for a node on `brokers` with its replica in `data_dir`.
    pub fn new(brokers: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: "factlog.".into(),
            partitions: 8,
            replication_factor: 1,
            min_insync_replicas: 1,
            node_id: format!("node-{}", uuid::Uuid::now_v7().simple()),
            data_dir: data_dir.into(),
            client_properties: Vec::new(),
            session_timeout: Duration::from_secs(10),
            append_timeout: Duration::from_secs(10),
            limits: AppendLimits {
                event_size_bytes_max: 1024 * 1024,
                append_events_max: 10_000,
                append_size_bytes_max: 8 * 1024 * 1024,
                fixed_bytes_per_event: factlog_log::FRAME_FIXED_BYTES,
            },
            writer: true,
        }
    }

    /// Refuses settings that cannot work, before anything connects.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("brokers is empty: give at least one host:port".into());
        }
        if self.partitions == 0 || self.partitions > crate::codec::PARTITIONS_MAX {
            return Err(format!(
                "partitions is {}; it must be between 1 and {}",
                self.partitions,
                crate::codec::PARTITIONS_MAX
            ));
        }
        if self.replication_factor < 1 {
            return Err("replication-factor must be at least 1".into());
        }
        if self.min_insync_replicas < 1
            || i32::from(self.min_insync_replicas) > i32::from(self.replication_factor)
        {
            return Err(format!(
                "min-insync-replicas is {}; it must be between 1 and the replication factor ({})",
                self.min_insync_replicas, self.replication_factor
            ));
        }
        let legal = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !legal(&self.topic_prefix) || self.topic_prefix.len() > 100 {
            return Err(format!(
                "topic prefix {:?} may hold only ASCII letters, digits, '.', '_' and '-' (at most 100)",
                self.topic_prefix
            ));
        }
        if self.node_id.is_empty() || !legal(&self.node_id) {
            return Err(format!(
                "node id {:?} may hold only ASCII letters, digits, '.', '_' and '-'",
                self.node_id
            ));
        }
        Ok(())
    }

    /// The topic of a category: the prefix and the category made topic-safe; when that is
    /// longer than Kafka allows, cut and followed by a 64-bit hash of the whole category.
    pub fn topic(&self, category: &str) -> String {
        let full = format!("{}{}", self.topic_prefix, topic_safe(category));
        if full.len() <= TOPIC_NAME_MAX {
            return full;
        }
        let mut cut = TOPIC_NAME_MAX - 17;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}-{:016x}", &full[..cut], fnv1a64(category.as_bytes()))
    }

    pub(crate) fn requests_topic(&self) -> String {
        format!("{}_requests", self.topic_prefix)
    }

    pub(crate) fn replies_topic(&self) -> String {
        format!("{}_replies", self.topic_prefix)
    }

    pub(crate) fn catalog_topic(&self) -> String {
        format!("{}_categories", self.topic_prefix)
    }

    pub(crate) fn writers_group(&self) -> String {
        format!("{}writers", self.topic_prefix)
    }

    /// The `transactional.id` of the shard writer's producer `index` (0 keeps the name of a
    /// writer with one producer).
    pub(crate) fn transactional_id(&self, partition: u32, index: usize) -> String {
        match index {
            0 => format!("{}writer-{partition}", self.topic_prefix),
            i => format!("{}writer-{partition}.{i}", self.topic_prefix),
        }
    }

    /// A client configuration with the brokers and the pass-through settings.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config.set("client.id", format!("factlog-{}", self.node_id));
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        for (k, v) in &self.client_properties {
            config.set(k, v);
        }
        config
    }
}

/// The longest topic name Kafka accepts.
pub const TOPIC_NAME_MAX: usize = 249;

/// FNV-1a, 64 bits: a hash that never changes between versions or machines.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A category as a topic name: Kafka allows `[a-zA-Z0-9._-]`, so any other byte is written as
/// `_xx` (hex), and `_` itself as `__`. Distinct categories give distinct topics.
pub fn topic_safe(category: &str) -> String {
    let mut out = String::with_capacity(category.len());
    for b in category.bytes() {
        match b {
            b'_' => out.push_str("__"),
            b if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' => out.push(b as char),
            b => out.push_str(&format!("_{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_become_distinct_legal_topic_names() {
        assert_eq!(topic_safe("account"), "account");
        assert_eq!(topic_safe("user_profile"), "user__profile");
        assert_eq!(topic_safe("café"), "caf_c3_a9");
        assert_ne!(topic_safe("a_2e"), topic_safe("a.")); // "a__2e" vs "a."
        assert_eq!(topic_safe("a b"), "a_20b");
    }

    #[test]
    fn long_categories_get_a_short_distinct_topic() {
        let o = KafkaOptions::new("127.0.0.1:9092", "/tmp/x");
        let a = "x".repeat(255);
        let b = format!("{}y", "x".repeat(254));
        let (ta, tb) = (o.topic(&a), o.topic(&b));
        assert!(ta.len() <= TOPIC_NAME_MAX && tb.len() <= TOPIC_NAME_MAX);
        assert_ne!(ta, tb);
        assert_eq!(
            ta,
            o.topic(&a),
            "the same category always gets the same topic"
        );
        assert_eq!(o.topic("account"), "factlog.account");
    }

    #[test]
    fn bad_settings_are_refused() {
        let ok = KafkaOptions::new("127.0.0.1:9092", "/tmp/x");
        assert!(ok.validate().is_ok());
        for (bad, what) in [
            (
                KafkaOptions {
                    partitions: 0,
                    ..ok.clone()
                },
                "partitions",
            ),
            (
                KafkaOptions {
                    partitions: 5000,
                    ..ok.clone()
                },
                "partitions",
            ),
            (
                KafkaOptions {
                    brokers: " ".into(),
                    ..ok.clone()
                },
                "brokers",
            ),
            (
                KafkaOptions {
                    topic_prefix: "a/b".into(),
                    ..ok.clone()
                },
                "prefix",
            ),
            (
                KafkaOptions {
                    min_insync_replicas: 2,
                    ..ok.clone()
                },
                "min-insync",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }
}
