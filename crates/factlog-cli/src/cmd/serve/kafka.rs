//! `factlog serve --backend kafka`: this process is one node of a store on a Kafka cluster
//! (`factlog_kafka::KafkaStore`, docs/kafka.md), with its read replica in the data directory.
//!
//! The settings come from the `[kafka]` table of the file, the `FACTLOG_KAFKA_*` variables and
//! the flags (in that order of precedence, lowest first) and are checked as a whole before
//! anything connects or is created: a mistake is a usage error. The librdkafka properties merge
//! key by key (file, then `FACTLOG_KAFKA_PROPERTIES`, then each `--kafka-property`).
//!
//! Without a node id, the node takes the one in `<data-dir>/node-id`, written on its first
//! start, so a restarted node keeps its id.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use factlog_kafka::KafkaOptions;
use serde_json::{Value, json};

use crate::UsageError;
use crate::config::{KafkaFileConfig, KafkaProperties, parse_property};

/// The variable of extra librdkafka properties: `k=v,k=v`.
pub const PROPERTIES_ENV: &str = "FACTLOG_KAFKA_PROPERTIES";
/// The file in the data directory that keeps a generated node id.
pub const NODE_ID_FILE: &str = "node-id";

/// librdkafka properties the backend sets itself, and why.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "give the brokers with --brokers (or brokers in [kafka])",
    ),
    (
        "metadata.broker.list",
        "give the brokers with --brokers (or brokers in [kafka])",
    ),
    (
        "group.id",
        "the backend names its consumer groups after the topic prefix",
    ),
    (
        "transactional.id",
        "each partition's writer has its own, named after the topic prefix",
    ),
    (
        "enable.idempotence",
        "the backend's writers are always idempotent",
    ),
    ("acks", "the backend always writes with acks=all"),
    (
        "isolation.level",
        "the backend always reads with read_committed",
    ),
    (
        "enable.auto.commit",
        "the backend commits its offsets in its transactions",
    ),
    (
        "partition.assignment.strategy",
        "the writers' group always uses cooperative-sticky",
    ),
];

/// The flags of the Kafka backend, each with its variable.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Kafka backend (--backend kafka)")]
pub struct KafkaArgs {
    /// The Kafka brokers to bootstrap from (required with --backend kafka).
    #[arg(long, env = "FACTLOG_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,

    /// Prepended to every topic, consumer group and transactional id of the store; every node
    /// of one store agrees on it [default: factlog.].
    #[arg(long, env = "FACTLOG_KAFKA_TOPIC_PREFIX", value_name = "PREFIX")]
    pub kafka_topic_prefix: Option<String>,

    /// Partitions of every topic (1 to 1024); every node of one store agrees on it
    /// [default: 8].
    #[arg(long, env = "FACTLOG_KAFKA_PARTITIONS", value_name = "N")]
    pub kafka_partitions: Option<u32>,

    /// The replication factor of the topics this node creates [default: 1].
    #[arg(long, env = "FACTLOG_KAFKA_REPLICATION_FACTOR", value_name = "N")]
    pub kafka_replication_factor: Option<i16>,

    /// `min.insync.replicas` of the topics this node creates, at most the replication factor
    /// [default: 1].
    #[arg(long, env = "FACTLOG_KAFKA_MIN_INSYNC_REPLICAS", value_name = "N")]
    pub kafka_min_insync_replicas: Option<u16>,

    /// This node's name: ASCII letters, digits, '.', '_' and '-' [default: generated on the
    /// first start and kept in <data-dir>/node-id].
    #[arg(long, env = "FACTLOG_KAFKA_NODE_ID", value_name = "ID")]
    pub kafka_node_id: Option<String>,

    /// A librdkafka setting for every client, such as security.protocol=SASL_SSL; repeatable.
    /// Passwords belong in the file or FACTLOG_KAFKA_PROPERTIES (k=v,k=v), not here.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
}

/// The Kafka backend's settings, merged and checked.
#[derive(Debug, Clone)]
pub struct KafkaPlan {
    /// Everything but the properties (kept apart, so that `Debug` masks them) and, when
    /// `node_id` is `None`, the node id.
    options: KafkaOptions,
    properties: KafkaProperties,
    /// Given, or read from `<data-dir>/node-id`; `None` until the first start writes one.
    node_id: Option<String>,
}

impl KafkaPlan {
    /// Merges the file's `[kafka]` table, the environment and the flags, for the replica in
    /// `dir`, and checks the result. Reads `<data-dir>/node-id` if it is there; creates nothing.
    pub fn resolve(args: &KafkaArgs, file: &KafkaFileConfig, dir: &Path) -> anyhow::Result<Self> {
        let brokers = args
            .brokers
            .clone()
            .or_else(|| file.brokers.clone())
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                UsageError(
                    "--backend kafka needs the Kafka brokers: pass --brokers HOST:PORT,... (or set \
                     FACTLOG_KAFKA_BROKERS, or brokers in the [kafka] section of the \
                     configuration file)"
                        .into(),
                )
            })?;
        let mut options = KafkaOptions::new(brokers, dir);
        if let Some(prefix) = args
            .kafka_topic_prefix
            .clone()
            .or_else(|| file.topic_prefix.clone())
        {
            options.topic_prefix = prefix;
        }
        if let Some(n) = args.kafka_partitions.or(file.partitions) {
            options.partitions = n;
        }
        if let Some(n) = args.kafka_replication_factor.or(file.replication_factor) {
            options.replication_factor = n;
        }
        if let Some(n) = args.kafka_min_insync_replicas.or(file.min_insync_replicas) {
            options.min_insync_replicas = n;
        }
        options.session_timeout = seconds(
            file.session_timeout_seconds,
            options.session_timeout,
            "session-timeout-seconds",
        )?;
        options.append_timeout = seconds(
            file.append_timeout_seconds,
            options.append_timeout,
            "append-timeout-seconds",
        )?;
        let node_id = match args.kafka_node_id.clone().or_else(|| file.node_id.clone()) {
            Some(id) => Some(id),
            None => read_node_id(dir)?,
        };
        if let Some(id) = &node_id {
            options.node_id = id.clone();
        }
        options
            .validate()
            .map_err(|e| UsageError(format!("the Kafka settings are invalid: {e}")))?;
        let properties = merge_properties(&file.properties, &args.kafka_properties)?;
        Ok(Self {
            options,
            properties,
            node_id,
        })
    }

    /// The effective settings, for `--print-config`, secrets masked. The node id is absent
    /// when the first start is still to generate it.
    pub fn to_json(&self) -> Value {
        let o = &self.options;
        json!({
            "brokers": o.brokers,
            "topic-prefix": o.topic_prefix,
            "partitions": o.partitions,
            "replication-factor": o.replication_factor,
            "min-insync-replicas": o.min_insync_replicas,
            "node-id": self.node_id,
            "session-timeout-seconds": o.session_timeout.as_secs_f64(),
            "append-timeout-seconds": o.append_timeout.as_secs_f64(),
            "properties": self.properties.masked(),
        })
    }

    /// The options to open the store with. Without a node id, takes the one kept in the data
    /// directory, writing a new one there on the first start.
    pub fn into_options(self) -> anyhow::Result<KafkaOptions> {
        let mut options = self.options;
        options.node_id = match self.node_id {
            Some(id) => id,
            None => create_node_id(&options.data_dir)?,
        };
        options.client_properties = self.properties.0.into_iter().collect();
        Ok(options)
    }
}

/// A positive number of seconds, or the default.
fn seconds(value: Option<f64>, default: Duration, what: &str) -> Result<Duration, UsageError> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(UsageError(format!(
            "[kafka] {what} must be a positive number of seconds, not {s}"
        ))),
    }
}

/// The file's properties, then the variable's, then the flags'; refuses those the backend sets.
fn merge_properties(
    file: &KafkaProperties,
    flags: &[(String, String)],
) -> Result<KafkaProperties, UsageError> {
    let mut all: BTreeMap<String, String> = file.0.clone();
    if let Some(text) = std::env::var_os(PROPERTIES_ENV) {
        let text = text
            .to_str()
            .ok_or_else(|| UsageError(format!("{PROPERTIES_ENV} is not UTF-8")))?;
        let entries = text.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let (key, value) = parse_property(entry)
                .map_err(|e| UsageError(format!("{PROPERTIES_ENV} entry {}: {e}", index + 1)))?;
            all.insert(key, value);
        }
    }
    for (key, value) in flags {
        all.insert(key.clone(), value.clone());
    }
    for key in all.keys() {
        if let Some((_, why)) = RESERVED_PROPERTIES.iter().find(|(r, _)| r == key) {
            return Err(UsageError(format!(
                "the Kafka property {key} is set by the backend itself: {why}"
            )));
        }
    }
    Ok(KafkaProperties(all))
}

fn node_id_path(dir: &Path) -> PathBuf {
    dir.join(NODE_ID_FILE)
}

/// The node id kept in the data directory, if there is one.
fn read_node_id(dir: &Path) -> anyhow::Result<Option<String>> {
    let path = node_id_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    let id = text.trim().to_owned();
    let probe = KafkaOptions {
        node_id: id.clone(),
        ..KafkaOptions::new("-", dir)
    };
    if let Err(e) = probe.validate() {
        return Err(UsageError(format!(
            "{} does not hold a node id: {e}; fix it, remove it (the next start writes a new \
             one) or give --kafka-node-id",
            path.display()
        ))
        .into());
    }
    Ok(Some(id))
}

/// Writes a new node id into the data directory (created if missing) and returns it: written
/// beside, synced, then renamed, so a crash never leaves a half-written id.
fn create_node_id(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create the data directory {}", dir.display()))?;
    let id = format!("node-{}", uuid::Uuid::now_v7().simple());
    let path = node_id_path(dir);
    let temporary = dir.join(format!(".{NODE_ID_FILE}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&temporary)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("could not write the node id to {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_properties_are_refused_and_later_sources_win() {
        let file = KafkaProperties(BTreeMap::from([
            ("sasl.username".to_owned(), "file".to_owned()),
            ("linger.ms".to_owned(), "5".to_owned()),
        ]));
        let merged = merge_properties(&file, &[("sasl.username".into(), "flag".into())]).unwrap();
        assert_eq!(merged.0["sasl.username"], "flag");
        assert_eq!(merged.0["linger.ms"], "5");
        let e = merge_properties(&file, &[("bootstrap.servers".into(), "x:1".into())]).unwrap_err();
        assert!(e.0.contains("--brokers"), "{e}");
    }

    #[test]
    fn the_node_id_is_kept_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(read_node_id(&data).unwrap(), None);
        let id = create_node_id(&data).unwrap();
        assert_eq!(read_node_id(&data).unwrap(), Some(id.clone()));
        assert!(
            KafkaOptions {
                node_id: id,
                ..KafkaOptions::new("-", &data)
            }
            .validate()
            .is_ok()
        );
        std::fs::write(data.join(NODE_ID_FILE), "not a/node id\n").unwrap();
        let e = read_node_id(&data).unwrap_err();
        assert!(e.to_string().contains("node-id"), "{e}");
    }
}
