//! The configuration file, and how it merges with the environment and flags.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config FILE` or
//! `FACTLOG_CONFIG`), environment variables (`FACTLOG_*`), flags. Clap merges the last two (a
//! flag wins over its variable); this module fills what neither gave from the file.
//!
//! ```toml
//! data-dir = "/var/lib/factlog"   # with backend = "kafka": this node's read replica
//! backend = "embedded"            # or "kafka"; or FACTLOG_BACKEND, --backend
//!
//! [server]
//! listen = "0.0.0.0:4470"
//! body-limit-bytes = 16777216
//! connections-max = 1024
//! request-timeout-seconds = 30
//! tls = { cert = "/etc/factlog/cert.pem", key = "/etc/factlog/key.pem" }
//! [[server.tokens]]
//! name = "ingest"
//! role = "write"
//! token = "..."
//!
//! [client]              # what `--server` / `--token` default to
//! server = "https://factlog.internal:4470"
//! token = "..."
//!
//! [[projections]]       # read models `factlog serve` keeps up to date
//! name = "order_summary"
//! kind = "stream-summary"
//! categories = ["order"]
//! sink = "sqlite"       # or "postgres", "redis"
//!
//! [projection-sinks]
//! sqlite-path = "/var/lib/factlog-read-models.sqlite"   # default: <data-dir>.projections.sqlite
//! postgres-url = "postgres://factlog@db/factlog"        # or FACTLOG_PROJECTION_POSTGRES_URL
//! redis-url = "redis://127.0.0.1:6379/0"                # or FACTLOG_PROJECTION_REDIS_URL
//!
//! [kafka]               # with backend = "kafka" (docs/kafka.md); each has a flag and a variable
//! brokers = "kafka-1:9092,kafka-2:9092"   # required; --brokers, FACTLOG_KAFKA_BROKERS
//! topic-prefix = "factlog."               # every node of one store agrees on it
//! partitions = 8                          # ... and on this (1 to 1024)
//! replication-factor = 3                  # of the topics this node creates
//! min-insync-replicas = 2                 # at most the replication factor
//! node-id = "node-a"    # [default: generated once, kept in <data-dir>/node-id]
//! session-timeout-seconds = 10            # file only
//! append-timeout-seconds = 10             # file only
//! [kafka.properties]    # passed to librdkafka as they are: TLS, SASL, tuning
//! "security.protocol" = "SASL_SSL"        # quote keys with dots (dotted keys are joined too)
//! "sasl.mechanism" = "SCRAM-SHA-512"
//! "sasl.username" = "factlog"
//! "sasl.password" = "..."                 # masked by --print-config
//! "ssl.ca.location" = "/etc/factlog/kafka-ca.pem"
//! ```
//!
//! Kafka properties merge key by key: the file's, then `FACTLOG_KAFKA_PROPERTIES` (`k=v,k=v`),
//! then each `--kafka-property k=v`. Passwords belong in the file or that variable, not in flags
//! (they would show in `ps`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use factlog_projection::OnError;
use factlog_server::{FileConfig as ServerFileConfig, Role, Secret, TokenConfig};
use serde::{Deserialize, Serialize};

use crate::UsageError;

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./factlog-data";

/// The whole file; every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    /// The store `factlog serve` serves [default: embedded].
    pub backend: Option<BackendKind>,
    /// The Kafka backend's settings, used with `backend = "kafka"`.
    #[serde(default)]
    pub kafka: KafkaFileConfig,
    #[serde(default)]
    pub server: ServerFileConfig,
    #[serde(default)]
    pub client: ClientFileConfig,
    /// The projections `factlog serve` runs.
    #[serde(default)]
    pub projections: Vec<ProjectionFileConfig>,
    /// Where the projections' sinks are.
    #[serde(default)]
    pub projection_sinks: ProjectionSinksFileConfig,
}

/// One `[[projections]]` entry: a built-in projection, its sink and what it wants.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectionFileConfig {
    /// 1 to 48 of a-z, 0-9 and _, starting with a letter.
    pub name: String,
    pub kind: ProjectionKind,
    /// The table (the view readers query) [default: the name].
    pub table: Option<String>,
    #[serde(default)]
    pub sink: SinkKind,
    /// Only streams of these categories [default: all].
    #[serde(default)]
    pub categories: Vec<String>,
    /// Only events of these types [default: all].
    #[serde(default)]
    pub event_types: Vec<String>,
    /// What to do with an event that keeps failing: park it as a dead letter, or stop.
    pub on_error: Option<OnError>,
    /// At most this many events in one transaction of the sink [default: 1000].
    pub batch_events_max: Option<usize>,
    /// How long a batch that is not full waits for more events [default: 0].
    pub batch_linger_ms: Option<u64>,
}

/// The built-in projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectionKind {
    /// One row per stream: events applied, last version, type, position and time.
    StreamSummary,
}

/// Where a projection's read model lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    #[default]
    Sqlite,
    Postgres,
    Redis,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Sqlite => "sqlite",
            SinkKind::Postgres => "postgres",
            SinkKind::Redis => "redis",
        }
    }
}

/// The `[projection-sinks]` table: each sink's settings, used only when a projection uses it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectionSinksFileConfig {
    /// The SQLite file [default: beside the data directory, `<data-dir>.projections.sqlite`];
    /// never inside the data directory.
    pub sqlite_path: Option<PathBuf>,
    /// `postgres://user:password@host:port/dbname`; or `FACTLOG_PROJECTION_POSTGRES_URL`.
    pub postgres_url: Option<Secret>,
    /// The schema of the runtime's tables and the read models [default: public].
    pub postgres_schema: Option<String>,
    /// `redis://host:port/db`; or `FACTLOG_PROJECTION_REDIS_URL`.
    pub redis_url: Option<Secret>,
    /// What every key the sink writes starts with [default: factlog:].
    pub redis_key_prefix: Option<String>,
}

/// The store behind `factlog serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The embedded store in the data directory.
    #[default]
    Embedded,
    /// A node of a store on a Kafka cluster, with its read replica in the data directory.
    Kafka,
}

/// The `[kafka]` table: the Kafka backend's settings (see `factlog_kafka::KafkaOptions`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaFileConfig {
    /// `host:port,host:port`.
    pub brokers: Option<String>,
    pub topic_prefix: Option<String>,
    pub partitions: Option<u32>,
    pub replication_factor: Option<i16>,
    pub min_insync_replicas: Option<u16>,
    pub node_id: Option<String>,
    pub session_timeout_seconds: Option<f64>,
    pub append_timeout_seconds: Option<f64>,
    /// Passed through to librdkafka.
    #[serde(default)]
    pub properties: KafkaProperties,
}

/// librdkafka settings by name. In the file, a table of strings (numbers and booleans are taken
/// as their text); dotted keys written unquoted (`sasl.username = "x"`, which TOML reads as
/// nested tables) are joined with dots again. `Debug` masks secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// The settings, secrets masked, for showing.
    pub fn masked(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) { "********" } else { v };
                (k.as_str(), shown)
            })
            .collect()
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.masked()).finish()
    }
}

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn flatten(
            prefix: &str,
            table: toml::Table,
            out: &mut BTreeMap<String, String>,
        ) -> Result<(), String> {
            for (key, value) in table {
                let key = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(x) => x.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Table(t) => {
                        flatten(&key, t, out)?;
                        continue;
                    }
                    other => {
                        return Err(format!(
                            "kafka property {key:?}: give a string, not {}",
                            other.type_str()
                        ));
                    }
                };
                if out.insert(key.clone(), text).is_some() {
                    return Err(format!("kafka property {key:?} is given twice"));
                }
            }
            Ok(())
        }
        let table = toml::Table::deserialize(d)?;
        let mut out = BTreeMap::new();
        flatten("", table, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Self(out))
    }
}

/// Whether a librdkafka setting holds a secret, never to be shown: passwords, client secrets,
/// passphrases, inline private keys and the OAUTHBEARER configuration.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "passphrase"]
        .iter()
        .any(|word| key.contains(word))
        || matches!(key.as_str(), "ssl.key.pem" | "sasl.oauthbearer.config")
}

/// Parses one `KEY=VALUE` librdkafka setting (of `--kafka-property` or
/// `FACTLOG_KAFKA_PROPERTIES`).
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        Some(_) => Err("the key before '=' is empty".into()),
        // The text is not repeated: a malformed setting may still hold a secret.
        None => Err("expected KEY=VALUE, such as security.protocol=SASL_SSL".into()),
    }
}

/// Where commands run with `--server`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFileConfig {
    pub server: Option<String>,
    pub token: Option<Secret>,
}

impl FileConfig {
    /// Reads `path`; a missing or malformed file is an error that names it. A malformed file is
    /// a usage error (exit 2), like a bad flag: the message names the line and the field.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the configuration file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            UsageError(format!(
                "the configuration file {} is invalid: {e}",
                path.display()
            ))
            .into()
        })
    }
}

/// Parses `FACTLOG_TOKENS`: comma-separated `role:token` or `name=role:token` entries.
pub fn parse_tokens(text: &str) -> anyhow::Result<Vec<TokenConfig>> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            let (name, rest) = match entry.split_once('=') {
                Some((name, rest)) if !name.contains(':') => (Some(name.to_owned()), rest),
                _ => (None, entry),
            };
            let (role, token) = rest.split_once(':').with_context(|| {
                format!(
                    "FACTLOG_TOKENS entry {} is not role:token or name=role:token",
                    index + 1
                )
            })?;
            let role: Role = role
                .parse()
                .map_err(|e| anyhow::anyhow!("FACTLOG_TOKENS entry {}: {e}", index + 1))?;
            if token.is_empty() {
                anyhow::bail!("FACTLOG_TOKENS entry {} has an empty token", index + 1);
            }
            Ok(TokenConfig {
                name,
                role,
                token: Secret::new(token),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_the_environment() {
        let tokens = parse_tokens("admin:a1, ci=write:w:2,read:r").unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens[0].role, Role::Admin);
        assert_eq!(tokens[0].token.expose(), "a1");
        assert_eq!(tokens[1].name.as_deref(), Some("ci"));
        assert_eq!(tokens[1].token.expose(), "w:2");
        assert!(parse_tokens("boss:x").is_err());
        assert!(parse_tokens("read:").is_err());
        assert!(parse_tokens("nonsense").is_err());
    }

    #[test]
    fn file_parses() {
        let file: FileConfig = toml::from_str(
            r#"
            data-dir = "/data"
            [server]
            listen = "0.0.0.0:4470"
            request-timeout-seconds = 5
            [[server.tokens]]
            role = "admin"
            token = "t"
            [client]
            server = "http://127.0.0.1:4470"
            "#,
        )
        .unwrap();
        assert_eq!(file.data_dir.unwrap(), PathBuf::from("/data"));
        assert_eq!(file.server.tokens.len(), 1);
        assert!(toml::from_str::<FileConfig>("unknown = 1").is_err());
    }

    #[test]
    fn the_kafka_section_parses_and_masks_its_secrets() {
        let file: FileConfig = toml::from_str(
            r#"
            backend = "kafka"
            [kafka]
            brokers = "k1:9092,k2:9092"
            topic-prefix = "shop."
            partitions = 12
            replication-factor = 3
            min-insync-replicas = 2
            node-id = "node-a"
            session-timeout-seconds = 6
            append-timeout-seconds = 2.5
            [kafka.properties]
            "security.protocol" = "SASL_SSL"
            sasl.mechanism = "SCRAM-SHA-512"
            sasl.password = "pw"
            "linger.ms" = 5
            "enable.ssl.certificate.verification" = false
            "#,
        )
        .unwrap();
        assert_eq!(file.backend, Some(BackendKind::Kafka));
        let k = &file.kafka;
        assert_eq!(k.brokers.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(
            (k.partitions, k.replication_factor, k.min_insync_replicas),
            (Some(12), Some(3), Some(2))
        );
        assert_eq!(k.append_timeout_seconds, Some(2.5));
        let p = &k.properties.0;
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(
            p["sasl.mechanism"], "SCRAM-SHA-512",
            "dotted keys are joined"
        );
        assert_eq!(p["linger.ms"], "5");
        assert_eq!(p["enable.ssl.certificate.verification"], "false");
        assert_eq!(k.properties.masked()["sasl.password"], "********");
        assert!(!format!("{:?}", file.kafka).contains("\"pw\""));
        for secret in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
        ] {
            assert!(is_secret_property(secret), "{secret}");
        }
        assert!(!is_secret_property("sasl.username"));
        for bad in [
            "backend = \"cassandra\"",
            "[kafka]\nbroker = \"x\"",
            "[kafka.properties]\n\"a\" = [1]",
            "[kafka]\npartitions = -1",
        ] {
            assert!(toml::from_str::<FileConfig>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_property("a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_property("a.b").is_err());
        assert!(parse_property("=x").is_err());
    }

    #[test]
    fn projections_parse_with_their_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            [[projections]]
            name = "orders"
            kind = "stream-summary"
            categories = ["order"]
            on-error = "stop"
            batch-events-max = 10
            [[projections]]
            name = "all_streams"
            kind = "stream-summary"
            sink = "redis"
            [projection-sinks]
            redis-url = "redis://127.0.0.1:6379"
            "#,
        )
        .unwrap();
        assert_eq!(file.projections.len(), 2);
        assert_eq!(file.projections[0].sink, SinkKind::Sqlite);
        assert_eq!(file.projections[0].on_error, Some(OnError::Stop));
        assert_eq!(file.projections[1].sink, SinkKind::Redis);
        assert!(file.projection_sinks.redis_url.is_some());
        for bad in [
            "[[projections]]\nname = \"a\"\nkind = \"nonsense\"",
            "[[projections]]\nname = \"a\"",
            "[[projections]]\nname = \"a\"\nkind = \"stream-summary\"\nsink = \"kafka\"",
            "[[projections]]\nname = \"a\"\nkind = \"stream-summary\"\non-error = \"retry\"",
            "[[projections]]\nname = \"a\"\nkind = \"stream-summary\"\ncolour = 1",
            "[projection-sinks]\nmongo-url = \"x\"",
        ] {
            assert!(toml::from_str::<FileConfig>(bad).is_err(), "{bad}");
        }
    }
}
