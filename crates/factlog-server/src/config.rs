//! What the server is told: where to listen, which tokens to accept, TLS, limits.
//!
//! [`Config`] is what [`crate::Server::start`] takes. [`FileConfig`] is the `[server]` part of
//! the TOML file `factlog serve --config` reads; the command line merges file, environment and
//! flags (in that order of precedence, lowest first) into a `Config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Role;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4470";

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; call only to compare or send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
    }
}

impl Serialize for Secret {
    /// Masked: serialized configuration is for showing, never for keeping secrets.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

/// A bearer token and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs and `--print-config` (the token itself is never shown).
    #[serde(default)]
    pub name: Option<String>,
    pub role: Role,
    pub token: Secret,
}

/// The certificate chain and private key (PEM files) for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's configuration. Serialized (secrets masked) in the configuration file's
/// format, for `factlog serve --print-config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    pub listen: SocketAddr,
    /// Accepted bearer tokens; none means no authentication, allowed on loopback only.
    pub tokens: Vec<TokenConfig>,
    /// Allow listening on a non-loopback address without tokens.
    pub insecure: bool,
    pub tls: Option<TlsConfig>,
    /// The largest request body.
    pub body_limit_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub connections_max: usize,
    /// The longest a request may take to be answered (not counting a live stream's body).
    #[serde(with = "seconds", rename = "request-timeout-seconds")]
    pub request_timeout: Duration,
    /// How long a client has to complete the TLS handshake, send its first bytes, and send a
    /// request's headers; and to answer an HTTP/2 ping.
    #[serde(with = "seconds", rename = "header-timeout-seconds")]
    pub header_timeout: Duration,
    /// How often a quiet Server-Sent Events stream gets a keep-alive comment.
    #[serde(with = "seconds", rename = "keep-alive-seconds")]
    pub keep_alive_interval: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    #[serde(with = "seconds", rename = "shutdown-timeout-seconds")]
    pub shutdown_timeout: Duration,
    /// Where `POST /admin/backup` writes backups (one directory each); unset, the route answers
    /// `not-configured`.
    pub backup_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            tokens: Vec::new(),
            insecure: false,
            tls: None,
            body_limit_bytes: 16 * 1024 * 1024,
            connections_max: 1024,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            backup_dir: None,
        }
    }
}

/// The `[server]` table of the configuration file; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    pub insecure: Option<bool>,
    pub tls: Option<TlsConfig>,
    pub body_limit_bytes: Option<usize>,
    pub connections_max: Option<usize>,
    pub request_timeout_seconds: Option<f64>,
    pub keep_alive_seconds: Option<f64>,
    pub header_timeout_seconds: Option<f64>,
    pub shutdown_timeout_seconds: Option<f64>,
    pub backup_dir: Option<PathBuf>,
}

mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let token = TokenConfig {
            name: Some("ci".into()),
            role: Role::Admin,
            token: Secret::new("s3cret-value"),
        };
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&token).unwrap().contains("s3cret"));
    }
}
