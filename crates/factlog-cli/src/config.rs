//! The configuration file, and how it merges with the environment and flags.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config FILE` or
//! `FACTLOG_CONFIG`), environment variables (`FACTLOG_*`), flags. Clap merges the last two (a
//! flag wins over its variable); this module fills what neither gave from the file.
//!
//! ```toml
//! data-dir = "/var/lib/factlog"
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
//! ```

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
