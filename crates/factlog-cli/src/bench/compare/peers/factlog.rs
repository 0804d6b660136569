//! Factlog itself, through the store API: the embedded store as a library, and the same API
//! over HTTP to a `factlog serve` process ([`factlog_client::HttpStore`]).
//!
//! Versions are Factlog's own (the first event is version 0), so the suite's token "n events"
//! is `NoStream` for 0 and `Exact(n - 1)` otherwise.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::Bytes;
use factlog_client::HttpStore;
use factlog_log::{EmbeddedStore, Options, SyncMode};
use factlog_store::{
    AppendError, ContentType, EventFilter, EventStore, EventType, ExpectedVersion, NewEvent,
    ReadAll, ReadError, ReadStream, StreamName, SubscribeFrom,
};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::{Appended, Counters, EVENT_TYPE, Expect, Peer};

/// Events per page of `read_all`.
const PAGE: usize = 4096;

/// Factlog on any backend of the store API.
pub struct FactlogPeer<S> {
    store: Arc<S>,
    event_type: EventType,
    content_type: ContentType,
    /// The server process behind an [`HttpStore`], stopped by [`Peer::shut_down`].
    server: Mutex<Option<Child>>,
    /// Closes an embedded store (a final sync), run by [`Peer::shut_down`].
    close: Option<Box<dyn Fn() + Send + Sync>>,
    /// Whether an embedded store runs in bulk-import mode.
    bulk: bool,
    /// An embedded store's write counters.
    counters: Option<Box<dyn Fn() -> Counters + Send + Sync>>,
}

impl<S> std::fmt::Debug for FactlogPeer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactlogPeer").finish_non_exhaustive()
    }
}

impl<S: EventStore> FactlogPeer<S> {
    fn new(store: Arc<S>, server: Option<Child>) -> Self {
        Self {
            store,
            close: None,
            bulk: false,
            counters: None,
            event_type: EventType::new(EVENT_TYPE).expect("a valid event type"),
            content_type: ContentType::json(),
            server: Mutex::new(server),
        }
    }
}

impl FactlogPeer<EmbeddedStore> {
    /// The embedded store in `dir`, acknowledging appends after fsync (`durable`) or once
    /// written (bulk-import mode).
    pub fn embedded(dir: &Path, durable: bool) -> anyhow::Result<Self> {
        let options = Options {
            sync_mode: if durable {
                SyncMode::Durable
            } else {
                SyncMode::BulkImport
            },
            ..Options::default()
        };
        let store = EmbeddedStore::open(dir, options)
            .with_context(|| format!("could not open a store in {}", dir.display()))?;
        let store = Arc::new(store);
        let closing = store.clone();
        let mut peer = Self::new(store, None);
        peer.close = Some(Box::new(move || closing.close()));
        peer.bulk = !durable;
        let counted = peer.store.clone();
        peer.counters = Some(Box::new(move || {
            let stats = counted.stats();
            Counters {
                appends: stats.appends,
                fsyncs: stats.fsyncs,
                checkpoints: stats.checkpoints,
            }
        }));
        Ok(peer)
    }
}

impl FactlogPeer<HttpStore> {
    /// Starts `exe serve` on a fresh data directory `dir` on a free loopback port, and talks to
    /// it over HTTP.
    pub async fn server(exe: &PathBuf, dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg("--json")
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("FACTLOG_TOKENS")
            .env_remove("FACTLOG_CONFIG")
            .env_remove("FACTLOG_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("could not start {} serve", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("factlog serve did not say where it listens within 60 s")?
            .context("could not read factlog serve's output")?;
        let Some(first) = first else {
            bail!(
                "factlog serve exited before listening: {:?}",
                child.wait().await
            );
        };
        let url = serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v["listening"].as_str().map(str::to_owned))
            .with_context(|| format!("unexpected first line from factlog serve: {first}"))?;
        // Keep reading its output so that the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let store = HttpStore::new(&url, None).context("could not make the HTTP client")?;
        Ok(Self::new(Arc::new(store), Some(child)))
    }
}

fn stream_name(stream: &str) -> anyhow::Result<StreamName> {
    StreamName::new(stream).with_context(|| format!("bad stream name {stream}"))
}

fn expected(expect: Expect) -> ExpectedVersion {
    match expect {
        Expect::Any => ExpectedVersion::Any,
        Expect::Exact(0) => ExpectedVersion::NoStream,
        Expect::Exact(n) => ExpectedVersion::Exact(n - 1),
    }
}

#[async_trait]
impl<S: EventStore> Peer for FactlogPeer<S> {
    async fn about(&self) -> anyhow::Result<String> {
        let mode = if self.server.lock().await.is_some() {
            "`factlog serve` on an embedded store, durable (fsync before the 201); HTTP/1.1 \
             keep-alive, JSON"
        } else if self.close.is_some() && self.bulk {
            "bulk-import mode: acknowledged once written, fsync every `write_batch_bytes_max` \
             bytes and on close"
        } else {
            "durable mode: fsync before the acknowledgement, shared by a group commit"
        };
        Ok(format!("Factlog {}, {mode}", env!("CARGO_PKG_VERSION")))
    }

    async fn reset(&self) -> anyhow::Result<()> {
        // Each run opens a fresh directory: there is nothing to drop.
        Ok(())
    }

    async fn append(
        &self,
        _session: usize,
        stream: &str,
        expect: Expect,
        events: &[Bytes],
    ) -> anyhow::Result<Appended> {
        let stream = stream_name(stream)?;
        let events = events
            .iter()
            .map(|data| {
                NewEvent::new(
                    self.event_type.clone(),
                    self.content_type.clone(),
                    data.clone(),
                )
            })
            .collect();
        match self.store.append(&stream, expected(expect), events).await {
            Ok(result) => Ok(Appended::Done {
                next: result.last_version + 1,
            }),
            Err(AppendError::WrongExpectedVersion { .. }) => Ok(Appended::Conflict),
            Err(e) => Err(e).context("append failed"),
        }
    }

    async fn current(&self, _session: usize, stream: &str) -> anyhow::Result<u64> {
        let info = self.store.stream_info(&stream_name(stream)?).await?;
        Ok(info.map_or(0, |info| info.last_version + 1))
    }

    async fn read_stream(&self, _session: usize, stream: &str) -> anyhow::Result<Vec<Bytes>> {
        let stream = stream_name(stream)?;
        let mut data = Vec::new();
        let mut from = 0;
        loop {
            let page = match self
                .store
                .read_stream(
                    &stream,
                    ReadStream::forward().from_version(from).limit(PAGE),
                )
                .await
            {
                Ok(page) => page,
                Err(ReadError::StreamNotFound(_)) => return Ok(data),
                Err(e) => return Err(e).context("read_stream failed"),
            };
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                from = last.version + 1;
            }
            data.extend(page.into_iter().map(|event| event.data));
            if !full {
                return Ok(data);
            }
        }
    }

    async fn read_all(
        &self,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut read = 0;
        let mut after = None;
        loop {
            let mut options = ReadAll::forward().limit(PAGE);
            if let Some(position) = after {
                options = options.from_position(position);
            }
            let page = self.store.read_all(options).await?;
            let full = page.len() == PAGE;
            let mut new = 0;
            for event in &page {
                // A page starts at the last position of the one before it.
                if Some(event.position) == after {
                    continue;
                }
                visit(&event.data);
                new += 1;
            }
            read += new;
            after = page.last().map(|event| event.position).or(after);
            if !full || new == 0 {
                return Ok(read);
            }
        }
    }

    async fn catch_up(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut subscription = self
            .store
            .subscribe_all(SubscribeFrom::Start, EventFilter::default());
        let mut received = 0;
        while received < count {
            match subscription.next().await {
                Some(event) => {
                    visit(&event.context("subscription failed")?.data);
                    received += 1;
                }
                None => break,
            }
        }
        Ok(received)
    }

    fn counters(&self) -> Option<Counters> {
        self.counters.as_ref().map(|counters| counters())
    }

    async fn shut_down(&self) -> anyhow::Result<()> {
        if let Some(close) = &self.close {
            close();
        }
        if let Some(mut child) = self.server.lock().await.take() {
            // SIGTERM first: the server closes its store cleanly.
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                child.kill().await.context("could not stop factlog serve")?;
            }
        }
        Ok(())
    }
}
