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
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use factlog_server::{FileConfig as ServerFileConfig, Role, Secret, TokenConfig};
use serde::Deserialize;

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
}

/// Where commands run with `--server`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFileConfig {
    pub server: Option<String>,
    pub token: Option<Secret>,
}

impl FileConfig {
    /// Reads `path`; a missing or malformed file is an error that names it.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("the configuration file {} is invalid", path.display()))
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
}
