//! A store on Kafka named by a URL: where `factlog migrate --to` copies a store, and where
//! `--kafka` points the read commands (`export`, `read`, `streams`, `info`).
//!
//! ```text
//! kafka://HOST:PORT[,HOST:PORT...]/PREFIX?partitions=N&replication-factor=R&min-insync-replicas=M
//! ```
//!
//! The prefix is the store's topic prefix (default `factlog.`); the query keys are optional and
//! default as in `KafkaOptions` (every node of one store must agree on `partitions`). Unknown
//! keys and credentials in the URL are refused; librdkafka settings (security, SASL) come from
//! `--kafka-property KEY=VALUE`, `FACTLOG_KAFKA_PROPERTIES` and the `[kafka.properties]` of the
//! configuration file, merged as `factlog serve` merges them (its [`KafkaPlan`] does it). A URL
//! is checked before anything connects: a bad one is a usage error (exit 2).
//!
//! A node opened for reading ([`open_reader`]) does not join the writers' group, keeps its read
//! replica in a temporary directory and catches up before it is used, so it reads everything
//! committed when it was opened.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use factlog_kafka::{KafkaOptions, KafkaStore};

use crate::UsageError;
use crate::cmd::serve::kafka::{KafkaArgs, KafkaPlan};
use crate::config::{KafkaFileConfig, KafkaProperties, parse_property};

/// The form of a Kafka URL, for messages and help.
pub const URL_FORM: &str = "kafka://HOST:PORT[,HOST:PORT...]/PREFIX?partitions=N&replication-factor=R&min-insync-replicas=M";

/// How long a node waits for its replica to hold everything committed to the store: the whole
/// store is read into the replica first, so this is generous.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The query keys of a Kafka URL.
const QUERY_KEYS: &str = "partitions, replication-factor and min-insync-replicas";

/// A parsed `kafka://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUrl {
    /// `host:port,host:port`.
    pub brokers: String,
    pub topic_prefix: String,
    pub partitions: Option<u32>,
    pub replication_factor: Option<i16>,
    pub min_insync_replicas: Option<u16>,
}

impl KafkaUrl {
    /// Parses and checks a URL. The errors do not repeat the URL (it could hold a secret).
    pub fn parse(text: &str) -> Result<Self, UsageError> {
        let bad = |why: String| UsageError(format!("bad Kafka URL: {why}; the form is {URL_FORM}"));
        let rest = text
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("kafka://"))
            .map(|_| &text[8..])
            .ok_or_else(|| bad("it does not start with kafka://".into()))?;
        if rest.contains('#') {
            return Err(bad("it has a fragment ('#')".into()));
        }
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match location.split_once('/') {
            Some((authority, path)) => (authority, path),
            None => (location, ""),
        };
        if authority.contains('@') {
            return Err(UsageError(
                "bad Kafka URL: credentials do not belong in the URL; give them with \
                 --kafka-property (sasl.username=..., sasl.password=...) or \
                 FACTLOG_KAFKA_PROPERTIES"
                    .into(),
            ));
        }
        let mut brokers = Vec::new();
        for broker in authority.split(',') {
            let broker = broker.trim();
            let ok = broker.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if broker.is_empty() && authority.trim().is_empty() {
                return Err(bad("it names no broker".into()));
            }
            if !ok {
                return Err(bad(format!("the broker {broker:?} is not HOST:PORT")));
            }
            brokers.push(broker);
        }
        let topic_prefix = if path.is_empty() {
            KafkaOptions::new("-", "-").topic_prefix
        } else {
            path.to_owned()
        };
        let mut url = KafkaUrl {
            brokers: brokers.join(","),
            topic_prefix,
            partitions: None,
            replication_factor: None,
            min_insync_replicas: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                bad(format!(
                    "the query part {pair:?} is not KEY=VALUE (the keys are {QUERY_KEYS})"
                ))
            })?;
            fn number<T: std::str::FromStr>(
                slot: &mut Option<T>,
                key: &str,
                value: &str,
            ) -> Result<(), String> {
                if slot.is_some() {
                    return Err(format!("{key} is given twice"));
                }
                let n = value
                    .parse()
                    .map_err(|_| format!("{key}={value:?} is not a number in range"))?;
                *slot = Some(n);
                Ok(())
            }
            match key {
                "partitions" => number(&mut url.partitions, key, value),
                "replication-factor" => number(&mut url.replication_factor, key, value),
                "min-insync-replicas" => number(&mut url.min_insync_replicas, key, value),
                _ => Err(format!(
                    "unknown query key {key:?}; the keys are {QUERY_KEYS} (librdkafka settings \
                     go in --kafka-property KEY=VALUE)"
                )),
            }
            .map_err(bad)?;
        }
        url.options(Path::new("-"))
            .validate()
            .map_err(|e| bad(e.to_string()))?;
        Ok(url)
    }

    /// Options with this URL's settings and otherwise the defaults (no properties).
    fn options(&self, dir: &Path) -> KafkaOptions {
        let mut options = KafkaOptions::new(self.brokers.clone(), dir);
        options.topic_prefix = self.topic_prefix.clone();
        if let Some(n) = self.partitions {
            options.partitions = n;
        }
        if let Some(n) = self.replication_factor {
            options.replication_factor = n;
        }
        if let Some(n) = self.min_insync_replicas {
            options.min_insync_replicas = n;
        }
        options
    }
}

impl std::fmt::Display for KafkaUrl {
    /// The URL in its normal form, with the settings it gives.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kafka://{}/{}", self.brokers, self.topic_prefix)?;
        let mut separator = '?';
        for (key, value) in [
            ("partitions", self.partitions.map(|n| n.to_string())),
            (
                "replication-factor",
                self.replication_factor.map(|n| n.to_string()),
            ),
            (
                "min-insync-replicas",
                self.min_insync_replicas.map(|n| n.to_string()),
            ),
        ] {
            if let Some(value) = value {
                write!(f, "{separator}{key}={value}")?;
                separator = '&';
            }
        }
        Ok(())
    }
}

/// The flags that point a read command at a store on Kafka.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaReadArgs {
    /// Read the store on Kafka at this URL instead of a data directory or a server:
    /// kafka://HOST:PORT[,HOST:PORT...]/PREFIX?partitions=N (PREFIX defaults to factlog.). A node
    /// that does not write joins the store with a temporary replica and catches up first.
    #[arg(long = "kafka", value_name = "URL")]
    pub url: Option<String>,

    /// A librdkafka setting for --kafka, such as security.protocol=SASL_SSL; repeatable.
    /// Passwords belong in the file or FACTLOG_KAFKA_PROPERTIES (k=v,k=v), not here.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

/// A store on Kafka and the librdkafka settings to reach it with.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    pub url: KafkaUrl,
    /// The `--kafka-property` flags (later ones win).
    flags: KafkaProperties,
    /// The `[kafka.properties]` of the configuration file.
    file: KafkaProperties,
}

impl KafkaTarget {
    /// Parses `url` and checks the flags' properties, before anything connects.
    pub fn new(
        url: &str,
        flags: &[(String, String)],
        file: &KafkaFileConfig,
    ) -> Result<Self, UsageError> {
        let url = KafkaUrl::parse(url)?;
        for (key, _) in flags {
            if key == "bootstrap.servers" || key == "metadata.broker.list" {
                return Err(UsageError(format!(
                    "the Kafka property {key} is taken from the kafka:// URL; name the brokers there"
                )));
            }
        }
        let target = Self {
            url,
            flags: KafkaProperties(flags.iter().cloned().collect()),
            file: KafkaProperties(file.properties.0.clone()),
        };
        // The properties merged and checked now, so that a mistake is found before connecting
        // (with a node id given, so that no directory is looked at).
        target.plan(Path::new("-"), Some("check".into()))?;
        Ok(target)
    }

    /// The settings of a node with its replica in `dir`: this target's URL and properties,
    /// merged and checked as `factlog serve` does (a node id kept in `dir` is reused).
    fn plan(&self, dir: &Path, node_id: Option<String>) -> Result<KafkaPlan, UsageError> {
        let args = KafkaArgs {
            brokers: Some(self.url.brokers.clone()),
            kafka_topic_prefix: Some(self.url.topic_prefix.clone()),
            kafka_partitions: self.url.partitions,
            kafka_replication_factor: self.url.replication_factor,
            kafka_min_insync_replicas: self.url.min_insync_replicas,
            kafka_node_id: node_id,
            kafka_properties: self
                .flags
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        // Only the file's properties: the URL says everything else.
        let file = KafkaFileConfig {
            properties: self.file.clone(),
            ..KafkaFileConfig::default()
        };
        KafkaPlan::resolve(&args, &file, dir).map_err(|e| match e.downcast::<UsageError>() {
            Ok(usage) => usage,
            Err(other) => UsageError(format!("{other:#}")),
        })
    }

    /// The options of a node with its replica in `dir` (created if missing; a node id is
    /// generated and kept there unless it holds one).
    pub fn options(&self, dir: &Path, writer: bool) -> anyhow::Result<KafkaOptions> {
        let mut options = self.plan(dir, None)?.into_options()?;
        options.writer = writer;
        Ok(options)
    }
}

/// Fails unless the store exists on the cluster (its catalog topic is there), so that reading
/// a mistyped prefix is an error instead of creating the topics of a new, empty store.
pub async fn check_store_exists(options: &KafkaOptions) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &options.brokers)
        .set("allow.auto.create.topics", "false")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
    for (key, value) in &options.client_properties {
        config.set(key, value);
    }
    let catalog = format!("{}_categories", options.topic_prefix);
    let brokers = options.brokers.clone();
    let topic = catalog.clone();
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let consumer: BaseConsumer = config.create().context("could not create a Kafka client")?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .with_context(|| format!("cannot reach the Kafka brokers {brokers} within 10 s"))?;
        Ok(metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
    })
    .await
    .context("the Kafka metadata check stopped")??;
    if !found {
        anyhow::bail!(
            "there is no Factlog store with the topic prefix {:?} on {} (no topic {catalog}); \
             check the prefix in the kafka:// URL",
            options.topic_prefix,
            options.brokers
        );
    }
    Ok(())
}

/// A node of the store on Kafka for reading: not a writer, with its replica in a temporary
/// directory (removed when the returned directory is dropped, after closing the store), caught
/// up with everything committed.
pub async fn open_reader(
    target: &KafkaTarget,
) -> anyhow::Result<(Arc<KafkaStore>, tempfile::TempDir)> {
    let dir = tempfile::Builder::new()
        .prefix("factlog-kafka-replica-")
        .tempdir()
        .context("could not create a temporary directory for the Kafka node's replica")?;
    let options = target.options(&dir.path().join("replica"), false)?;
    check_store_exists(&options).await?;
    let store = KafkaStore::open(options)
        .await
        .with_context(|| format!("could not open the store at {}", target.url))?;
    if let Err(e) = store.catch_up(CATCH_UP_TIMEOUT).await {
        store.close().await;
        return Err(e).with_context(|| {
            format!(
                "could not read everything committed to the store at {}",
                target.url
            )
        });
    }
    Ok((store, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults() {
        let url = KafkaUrl::parse("kafka://127.0.0.1:9092").unwrap();
        assert_eq!(url.brokers, "127.0.0.1:9092");
        assert_eq!(url.topic_prefix, "factlog.");
        assert_eq!(url.partitions, None);
        assert_eq!(url.to_string(), "kafka://127.0.0.1:9092/factlog.");
        let url = KafkaUrl::parse(
            "KAFKA://a:1, b:2,[::1]:3/shop.?partitions=4&replication-factor=3&min-insync-replicas=2",
        )
        .unwrap();
        assert_eq!(url.brokers, "a:1,b:2,[::1]:3");
        assert_eq!(url.topic_prefix, "shop.");
        assert_eq!(
            (
                url.partitions,
                url.replication_factor,
                url.min_insync_replicas
            ),
            (Some(4), Some(3), Some(2))
        );
        assert_eq!(
            url.to_string(),
            "kafka://a:1,b:2,[::1]:3/shop.?partitions=4&replication-factor=3&min-insync-replicas=2"
        );
        assert_eq!(
            KafkaUrl::parse("kafka://h:1/").unwrap().topic_prefix,
            "factlog."
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for (text, wanted) in [
            ("http://h:1/x", "kafka://"),
            ("kafka://", "no broker"),
            ("kafka:///x", "no broker"),
            ("kafka://h/x", "HOST:PORT"),
            ("kafka://h:0/x", "HOST:PORT"),
            ("kafka://h:1,/x", "HOST:PORT"),
            ("kafka://h:1/x?colour=red", "unknown query key \"colour\""),
            ("kafka://h:1/x?partitions=0", "partitions"),
            ("kafka://h:1/x?partitions=2000", "partitions"),
            ("kafka://h:1/x?partitions=two", "partitions"),
            ("kafka://h:1/x?partitions=2&partitions=3", "twice"),
            ("kafka://h:1/x?partitions", "KEY=VALUE"),
            ("kafka://h:1/a/b", "prefix"),
            ("kafka://h:1/x?min-insync-replicas=2", "min-insync-replicas"),
            ("kafka://h:1/x#f", "fragment"),
        ] {
            let e = KafkaUrl::parse(text).unwrap_err().0;
            assert!(e.contains(wanted), "{text}: {e}");
        }
        let e = KafkaUrl::parse("kafka://user:hunter2@h:1/x").unwrap_err().0;
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn reserved_properties_are_refused() {
        let file = KafkaFileConfig::default();
        let e = KafkaTarget::new(
            "kafka://h:1",
            &[("bootstrap.servers".into(), "x:1".into())],
            &file,
        )
        .unwrap_err();
        assert!(e.0.contains("URL"), "{e}");
        let e = KafkaTarget::new("kafka://h:1", &[("acks".into(), "1".into())], &file).unwrap_err();
        assert!(e.0.contains("acks"), "{e}");
        assert!(
            KafkaTarget::new("kafka://h:1", &[("linger.ms".into(), "5".into())], &file).is_ok()
        );
    }
}
