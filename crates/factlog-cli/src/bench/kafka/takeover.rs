//! Takeover: a second node of the same store runs as its own process (`factlog serve --backend
//! kafka`), takes its share of the shards, and is killed with SIGKILL; the figure is the time
//! from the kill until the in-process node owns every shard again and an append to each shard
//! the killed node owned is acknowledged.
//!
//! A killed node says nothing: the group coordinator notices when its session times out, so
//! the session timeout (given to both nodes) is most of the figure. The rest is the rebalance,
//! `init_transactions` of the new owner's writer (which fences the dead one) and the restore of
//! the shard from the new owner's replica.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use factlog_kafka::{KafkaOptions, KafkaStore};
use factlog_store::{EventStore, ExpectedVersion, StreamName};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::Config;
use super::load::streams_in;
use crate::bench::data::Payloads;

/// The category of the takeover's streams.
const CATEGORY: &str = "takeover";
/// How often ownership is polled after the kill.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct Takeover {
    /// The shards the second node owned when it was killed.
    pub moved: Vec<u32>,
    /// From starting the second node until it served appends to its shards.
    pub joined: Duration,
    /// From the kill until the in-process node owned every shard again.
    pub owned_again: Duration,
    /// From the kill until an append to every moved shard was acknowledged.
    pub total: Duration,
}

/// A node in its own process: killed (SIGKILL, by its pid) when dropped, whatever happened.
pub struct Child {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Child {
    /// The end of what the node wrote to its standard error, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(20);
        if start == lines.len() {
            return String::new();
        }
        format!(
            "\nthe node's log ({}) ends with:\n{}",
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    /// Stops the node with SIGTERM, by its pid (it leaves the group and closes); SIGKILL (on
    /// drop) if it has not exited within a minute.
    pub async fn terminate(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                status.context("could not wait for the node")?;
                Ok(())
            }
            Err(_) => bail!("the node did not exit within 60 s of SIGTERM; killed"),
        }
    }
}

pub async fn measure(
    store: &Arc<KafkaStore>,
    payloads: &Payloads,
    config: &Config,
    dir: &Path,
    progress: impl Fn(&str),
) -> anyhow::Result<Takeover> {
    let mut child = start_node(store.options(), config, "bench-second-node", dir).await?;
    let result = share_then_kill(store, payloads, config, &mut child, progress).await;
    // Its log explains a failure; dropping `child` kills it (it is dead already on success).
    let result = result.map_err(|e| anyhow::anyhow!("{e:#}{}", child.log_tail()));
    drop(child);
    result
}

/// Starts `factlog serve --backend kafka` as the node `node_id` of the store of `options` (its
/// brokers, prefix and partitions), with a data directory of its own in `dir` and the session
/// timeout of `config` (in a configuration file: `serve` has no flag for it), and waits for its
/// `{"listening": ...}` line: the node has opened the store.
pub async fn start_node(
    options: &KafkaOptions,
    config: &Config,
    node_id: &str,
    dir: &Path,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("where is this factlog executable?")?;
    let config_file = dir.join(format!("{node_id}.toml"));
    std::fs::write(
        &config_file,
        format!(
            "[kafka]\nsession-timeout-seconds = {}\n",
            config.session_timeout.as_secs_f64()
        ),
    )
    .with_context(|| format!("could not write {}", config_file.display()))?;
    let log = dir.join(format!("{node_id}.log"));
    let stderr = std::fs::File::create(&log)
        .with_context(|| format!("could not create {}", log.display()))?;
    let mut command = tokio::process::Command::new(&exe);
    command
        .arg("--json")
        .arg("--config")
        .arg(&config_file)
        .arg("--data-dir")
        .arg(dir.join(node_id))
        .args(["serve", "--listen", "127.0.0.1:0", "--backend", "kafka"])
        .args(["--brokers", &options.brokers])
        .args(["--kafka-topic-prefix", &options.topic_prefix])
        .args(["--kafka-partitions", &options.partitions.to_string()])
        .args(["--kafka-node-id", node_id]);
    for variable in [
        "FACTLOG_TOKENS",
        "FACTLOG_LISTEN",
        "FACTLOG_INSECURE",
        "FACTLOG_KAFKA_PROPERTIES",
        "FACTLOG_KAFKA_REPLICATION_FACTOR",
        "FACTLOG_KAFKA_MIN_INSYNC_REPLICAS",
    ] {
        command.env_remove(variable);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("could not start {} serve", exe.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let child = Child { child, log };
    let mut lines = BufReader::new(stdout).lines();
    let first = match tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => bail!(
            "the node {node_id} (factlog serve) exited before listening{}",
            child.log_tail()
        ),
        Ok(Err(e)) => bail!("could not read the output of the node {node_id}: {e}"),
        Err(_) => bail!(
            "the node {node_id} did not say where it listens within 120 s{}",
            child.log_tail()
        ),
    };
    let listening = serde_json::from_str::<serde_json::Value>(&first)
        .ok()
        .and_then(|v| v["listening"].as_str().map(str::to_owned));
    if listening.is_none() {
        bail!(
            "unexpected first line from the node {node_id}: {first}{}",
            child.log_tail()
        );
    }
    // Keep reading its output so that the pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

/// Waits until the nodes share the shards and the second node serves appends to its own, then
/// kills it and times the takeover.
async fn share_then_kill(
    store: &Arc<KafkaStore>,
    payloads: &Payloads,
    config: &Config,
    child: &mut Child,
    progress: impl Fn(&str),
) -> anyhow::Result<Takeover> {
    let partitions = store.options().partitions;
    let all: Vec<u32> = (0..partitions).collect();
    let started = Instant::now();
    // The second node's replica reads every event of the store before its writers accept
    // appends: generous.
    let deadline = started + Duration::from_secs(600) + config.session_timeout * 4;
    let moved = loop {
        if let Some(status) = child.child.try_wait()? {
            bail!("the second node exited with {status} before it took any shard");
        }
        let owned = store.owned_partitions();
        if owned.len() < all.len() {
            break all
                .iter()
                .copied()
                .filter(|k| !owned.contains(k))
                .collect::<Vec<u32>>();
        }
        if Instant::now() > deadline {
            bail!(
                "the second node took no shard within {:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    progress(&format!(
        "e. the second node took shard(s) {moved:?}; waiting until it serves them"
    ));
    // One stream per moved shard; one event each, routed through the in-process node to the
    // second node, proves that the second node owns and serves the shard.
    let streams: Vec<StreamName> = moved
        .iter()
        .map(|&k| streams_in(store, CATEGORY, "s", k, 1).remove(0))
        .collect();
    for stream in &streams {
        loop {
            if let Some(status) = child.child.try_wait()? {
                bail!("the second node exited with {status}");
            }
            match store
                .append(stream, ExpectedVersion::NoStream, payloads.events(0, 1))
                .await
            {
                Ok(_) => break,
                // Sent again after an unknown outcome: the same stream, whatever happened.
                Err(factlog_store::AppendError::WrongExpectedVersion { .. }) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "append to the second node's shard; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("the second node did not serve {stream} in time")
                    });
                }
            }
        }
    }
    let owned = store.owned_partitions();
    let expected: Vec<u32> = all.iter().copied().filter(|k| !moved.contains(k)).collect();
    if owned != expected {
        bail!(
            "the shards moved again while the second node started (this node owned {expected:?}, \
             now {owned:?})"
        );
    }
    let joined = started.elapsed();
    let versions = check_versions(store, &streams).await?;

    progress("e. SIGKILL to the second node");
    let killed = Instant::now();
    child
        .child
        .start_kill()
        .context("could not kill the second node")?;
    let wait_deadline = killed + config.session_timeout * 10 + Duration::from_secs(120);
    let owned_again = loop {
        if store.owned_partitions().len() == all.len() {
            break killed.elapsed();
        }
        if Instant::now() > wait_deadline {
            bail!(
                "this node did not own every shard within {:?} of the kill (it owns {:?})",
                killed.elapsed(),
                store.owned_partitions()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    // The child is dead: reap it (tokio would, too).
    let _ = tokio::time::timeout(Duration::from_secs(10), child.child.wait()).await;
    let appends = streams.iter().zip(&versions).map(|(stream, &version)| {
        let store = store.clone();
        let events = payloads.events(1, 1);
        async move {
            store
                .append(stream, ExpectedVersion::Exact(version), events)
                .await
                .with_context(|| format!("the append to {stream} after the takeover"))
        }
    });
    futures::future::try_join_all(appends).await?;
    let total = killed.elapsed();
    Ok(Takeover {
        moved,
        joined,
        owned_again,
        total,
    })
}

/// The last version of each stream (each must exist).
async fn check_versions(store: &KafkaStore, streams: &[StreamName]) -> anyhow::Result<Vec<u64>> {
    let mut versions = Vec::with_capacity(streams.len());
    for stream in streams {
        let info = store
            .stream_info(stream)
            .await
            .with_context(|| format!("stream info of {stream}"))?
            .with_context(|| format!("{stream} was appended to but does not exist"))?;
        versions.push(info.last_version);
    }
    Ok(versions)
}
