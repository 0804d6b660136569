//! `factlog serve`: the HTTP server on the embedded store in `--data-dir`, or, with `--backend
//! kafka`, on a store on a Kafka cluster as one of its nodes (see [`kafka`]), with the node's
//! read replica in `--data-dir`.
//!
//! Prints one line with the URL once it listens (JSON with `--json`), then serves until SIGTERM
//! or SIGINT, and shuts down gracefully: stop accepting, finish appends in flight, end live
//! subscriptions, stop the projections, sync and close the store (a Kafka node leaves the
//! writers' group and closes its replica), exit 0.
//!
//! The projections of the configuration (`[[projections]]`, see [`projections`]) run in the
//! same process, over the same store, and are served at `/projections/...`. On Kafka their
//! checkpoints are per partition, so a projection moved to another node resumes exactly where
//! its read model is.

pub(crate) mod kafka;
mod projections;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use factlog_kafka::KafkaStore;
use factlog_log::{EmbeddedStore, Options};
use factlog_server::{Backend, Config, Server, TlsConfig};
use factlog_store::EventStore;
use serde_json::json;

use crate::config::{BackendKind, FileConfig, parse_tokens};
use crate::output::Out;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Tokens come from the configuration file ([[server.tokens]] with name, role and token) or from
FACTLOG_TOKENS=\"role:token,name=role:token\", never from flags (they would show in `ps`). Roles:
read (reads, subscriptions, metrics, projections' status), write (also appends), admin (also
/admin and controlling projections). Without tokens the server listens on loopback addresses
only, unless --insecure.

Projections come from the configuration file: [[projections]] with name, kind = \"stream-summary\",
table, sink = \"sqlite\" | \"postgres\" | \"redis\", categories, event-types, on-error = \"park\" |
\"stop\", batch-events-max, batch-linger-ms; and [projection-sinks] with sqlite-path (default: the
file <data-dir>.projections.sqlite beside the data directory), postgres-url, postgres-schema,
redis-url, redis-key-prefix. The URLs may come from FACTLOG_PROJECTION_POSTGRES_URL and
FACTLOG_PROJECTION_REDIS_URL instead. Control them with `factlog projections`. On the Kafka backend
their checkpoints are per partition (docs/kafka.md).

With --backend kafka (or backend = \"kafka\" in the file) this process is one node of a store on
a Kafka cluster (docs/kafka.md), with its read replica in --data-dir. The file's [kafka] section
holds brokers, topic-prefix, partitions, replication-factor, min-insync-replicas, node-id,
session-timeout-seconds, append-timeout-seconds and [kafka.properties], librdkafka settings
passed through to every client (quote keys with dots):

  [kafka]
  brokers = \"kafka-1:9092,kafka-2:9092\"
  [kafka.properties]
  \"security.protocol\" = \"SASL_SSL\"
  \"sasl.mechanism\" = \"SCRAM-SHA-512\"
  \"sasl.username\" = \"factlog\"
  \"sasl.password\" = \"...\"
  \"ssl.ca.location\" = \"/etc/factlog/kafka-ca.pem\"

Properties merge key by key: the file's, then FACTLOG_KAFKA_PROPERTIES=\"k=v,k=v\", then each
--kafka-property. Passwords (sasl.password, ssl.key.password, ssl.keystore.password,
sasl.oauthbearer.client.secret) belong in the file or FACTLOG_KAFKA_PROPERTIES, never in flags
(they would show in `ps`); --print-config masks them. Without a node id, the first start writes
a new one into <data-dir>/node-id and later starts keep it.")]
pub struct Args {
    /// The address to listen on [default: 127.0.0.1:4470].
    #[arg(long, env = "FACTLOG_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Listen on a non-loopback address without tokens (anyone who can reach it can write).
    #[arg(long, env = "FACTLOG_INSECURE")]
    insecure: bool,

    /// The TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(
        long,
        env = "FACTLOG_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The TLS private key (PEM).
    #[arg(
        long,
        env = "FACTLOG_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// The largest request body, in bytes [default: 16 MiB].
    #[arg(long, env = "FACTLOG_BODY_LIMIT_BYTES", value_name = "BYTES")]
    body_limit_bytes: Option<usize>,

    /// Connections served at once [default: 1024].
    #[arg(long, env = "FACTLOG_CONNECTIONS_MAX", value_name = "N")]
    connections_max: Option<usize>,

    /// The longest a request may take to be answered, in seconds [default: 30].
    #[arg(long, env = "FACTLOG_REQUEST_TIMEOUT_SECONDS", value_name = "SECONDS")]
    request_timeout_seconds: Option<f64>,

    /// Where `POST /admin/backup` (and `factlog backup --server`) writes backups, one directory
    /// each; unset, backups over HTTP are off.
    #[arg(long, env = "FACTLOG_BACKUP_DIR", value_name = "DIR")]
    backup_dir: Option<PathBuf>,

    /// The projections' SQLite file [default: <data-dir>.projections.sqlite, beside the data
    /// directory].
    #[arg(long, env = "FACTLOG_PROJECTION_SQLITE_PATH", value_name = "FILE")]
    projection_sqlite_path: Option<PathBuf>,

    /// The store to serve: the embedded store in --data-dir, or a node of a store on Kafka
    /// with its read replica in --data-dir [default: embedded].
    #[arg(long, env = "FACTLOG_BACKEND", value_enum, value_name = "BACKEND")]
    backend: Option<BackendKind>,

    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,

    #[command(flatten)]
    kafka: kafka::KafkaArgs,
}

/// Merges file, environment and flags into the server's configuration.
pub fn server_config(args: &Args, file: &FileConfig) -> anyhow::Result<Config> {
    let defaults = Config::default();
    let f = &file.server;
    let seconds = |value: Option<f64>, default: Duration, what: &str| -> anyhow::Result<Duration> {
        match value {
            None => Ok(default),
            Some(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
            Some(s) => anyhow::bail!("{what} must be a positive number of seconds, not {s}"),
        }
    };
    let tokens = match std::env::var("FACTLOG_TOKENS") {
        Ok(text) => parse_tokens(&text)?,
        Err(_) => f.tokens.clone(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => f.tls.clone(),
    };
    Ok(Config {
        listen: args.listen.or(f.listen).unwrap_or(defaults.listen),
        tokens,
        insecure: args.insecure || f.insecure.unwrap_or(false),
        tls,
        body_limit_bytes: args
            .body_limit_bytes
            .or(f.body_limit_bytes)
            .unwrap_or(defaults.body_limit_bytes),
        connections_max: args
            .connections_max
            .or(f.connections_max)
            .unwrap_or(defaults.connections_max)
            .max(1),
        request_timeout: seconds(
            args.request_timeout_seconds.or(f.request_timeout_seconds),
            defaults.request_timeout,
            "request-timeout-seconds",
        )?,
        header_timeout: seconds(
            f.header_timeout_seconds,
            defaults.header_timeout,
            "header-timeout-seconds",
        )?,
        keep_alive_interval: seconds(
            f.keep_alive_seconds,
            defaults.keep_alive_interval,
            "keep-alive-seconds",
        )?,
        shutdown_timeout: seconds(
            f.shutdown_timeout_seconds,
            defaults.shutdown_timeout,
            "shutdown-timeout-seconds",
        )?,
        backup_dir: args.backup_dir.clone().or_else(|| f.backup_dir.clone()),
    })
}

pub async fn run(dir: &Path, args: Args, file: &FileConfig, out: &mut Out) -> anyhow::Result<()> {
    let config = server_config(&args, file)?;
    if args.backend.or(file.backend).unwrap_or_default() == BackendKind::Kafka {
        return run_kafka(dir, &args, config, file, out).await;
    }
    let plan = projections::Plan::resolve(file, args.projection_sqlite_path.as_deref(), dir)?;
    if args.print_config {
        let mut effective =
            json!({"data-dir": dir, "backend": BackendKind::Embedded, "server": config});
        if !plan.is_empty() {
            let (projections, sinks) = plan.to_json();
            effective["projections"] = projections;
            effective["projection-sinks"] = sinks;
        }
        return print_config(effective, out);
    }
    // Refuse a bad configuration before the store is opened (or created).
    config.check()?;
    let store = Arc::new(
        EmbeddedStore::open(dir, Options::default())
            .with_context(|| format!("could not open the store in {}", dir.display()))?,
    );
    let projections = match plan
        .start_if_any(store.clone() as Arc<dyn EventStore>)
        .await
    {
        Ok(projections) => projections,
        Err(e) => {
            close(&store).await?;
            return Err(e);
        }
    };
    let mut backend = Backend::embedded(store.clone());
    if let Some(projections) = &projections {
        backend = backend.with_projections(projections.clone());
    }
    let server = match Server::start(config.clone(), backend).await {
        Ok(server) => server,
        Err(e) => {
            if let Some(projections) = &projections {
                projections.stop().await;
            }
            close(&store).await?;
            return Err(e.into());
        }
    };
    let url = server.url();
    if out.json() {
        out.json_line(&json!({
            "listening": url,
            "backend": BackendKind::Embedded,
            "dataDir": dir,
            "projections": plan.names(),
        }))?;
    } else {
        out.line(format!(
            "factlog serving {url} on the store in {} ({} events); stop with Ctrl-C",
            dir.display(),
            store.stats().events
        ))?;
        if config.tokens.is_empty() {
            out.line("no tokens configured: requests need no token (loopback only)")?;
        }
        for line in plan.describe() {
            out.line(line)?;
        }
    }
    out.flush()?;
    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down");
    // Stops the projections too, before the store is closed.
    server.shutdown().await;
    close(&store).await?;
    if !out.json() {
        out.line(format!("stopped on {signal}; the store is closed"))?;
    }
    Ok(())
}

/// `factlog serve --backend kafka`: checks everything, joins the store on Kafka as a node, serves
/// it, and on SIGTERM or SIGINT stops the server, then leaves the store.
async fn run_kafka(
    dir: &Path,
    args: &Args,
    config: Config,
    file: &FileConfig,
    out: &mut Out,
) -> anyhow::Result<()> {
    let projection_plan =
        projections::Plan::resolve(file, args.projection_sqlite_path.as_deref(), dir)?;
    let plan = kafka::KafkaPlan::resolve(&args.kafka, &file.kafka, dir)?;
    if args.print_config {
        let mut effective = json!({
            "data-dir": dir,
            "backend": BackendKind::Kafka,
            "server": config,
            "kafka": plan.to_json(),
        });
        if !projection_plan.is_empty() {
            let (projections, sinks) = projection_plan.to_json();
            effective["projections"] = projections;
            effective["projection-sinks"] = sinks;
        }
        return print_config(effective, out);
    }
    // Refuse a bad configuration before connecting (or creating the replica).
    config.check()?;
    let options = plan.into_options()?;
    let (brokers, prefix, partitions, node_id) = (
        options.brokers.clone(),
        options.topic_prefix.clone(),
        options.partitions,
        options.node_id.clone(),
    );
    let store = KafkaStore::open(options).await.with_context(|| {
        format!("could not join the store on the Kafka brokers {brokers} (topic prefix {prefix:?})")
    })?;
    // Projections checkpoint per partition here, in their sink's transaction, so they resume
    // where they were on whichever node runs them next.
    let projections = match projection_plan
        .start_if_any(store.clone() as Arc<dyn EventStore>)
        .await
    {
        Ok(projections) => projections,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let mut backend = Backend::store(store.clone() as Arc<dyn EventStore>);
    if let Some(projections) = &projections {
        backend = backend.with_projections(projections.clone());
    }
    let server = match Server::start(config.clone(), backend).await {
        Ok(server) => server,
        Err(e) => {
            if let Some(projections) = &projections {
                projections.stop().await;
            }
            store.close().await;
            return Err(e.into());
        }
    };
    let url = server.url();
    if out.json() {
        out.json_line(&json!({
            "listening": url,
            "backend": BackendKind::Kafka,
            "dataDir": dir,
            "projections": projection_plan.names(),
            "brokers": brokers,
            "topicPrefix": prefix,
            "partitions": partitions,
            "nodeId": node_id,
        }))?;
    } else {
        out.line(format!(
            "factlog serving {url} on the Kafka store at {brokers} (topic prefix {prefix:?}, \
             {partitions} partitions) as node {node_id}, its replica in {}; stop with Ctrl-C",
            dir.display()
        ))?;
        if config.tokens.is_empty() {
            out.line("no tokens configured: requests need no token (loopback only)")?;
        }
        for line in projection_plan.describe() {
            out.line(line)?;
        }
    }
    out.flush()?;
    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down");
    // Stops the projections too, before the node leaves.
    server.shutdown().await;
    store.close().await;
    if !out.json() {
        out.line(format!(
            "stopped on {signal}; the node left the store and its replica is closed"
        ))?;
    }
    Ok(())
}

/// `--print-config`: one JSON line with `--json`, TOML otherwise.
fn print_config(effective: serde_json::Value, out: &mut Out) -> anyhow::Result<()> {
    if out.json() {
        out.json_line(&effective)?;
    } else {
        let effective = without_nulls(effective);
        out.line(toml::to_string_pretty(&effective).context("printing the configuration")?)?;
    }
    Ok(())
}

/// Closes the store: syncs what is written and saves the index, so the next start is quick.
async fn close(store: &Arc<EmbeddedStore>) -> anyhow::Result<()> {
    let closing = store.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .context("closing the store")
}

/// TOML has no null: unset settings are left out.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, without_nulls(v)))
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
