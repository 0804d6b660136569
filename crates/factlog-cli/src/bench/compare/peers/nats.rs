//! NATS JetStream as an event store: one JetStream stream on file storage whose subjects are
//! `ev.<stream>`, one subject per event stream. Optimistic concurrency is the
//! `Nats-Expected-Last-Subject-Sequence` header: the server refuses a message when the last
//! message on its subject has another sequence, so the suite's token for NATS is that sequence
//! (0: no message). Each message carries its event id in `Nats-Msg-Id` (the server's duplicate
//! window) and the type in a header.
//!
//! Two differences from the other peers, stated wherever NATS is reported:
//! - nats-server 2.9 (Debian 12) has no atomic multi-message publish: a batch is one message
//!   per event, the first carrying the expectation and awaited, the rest pipelined. A writer
//!   racing in after the first message would interleave; the benchmark's batches have one
//!   writer per stream.
//! - nats-server 2.9 acknowledges before its files are fsynced (it syncs every two minutes and
//!   has no setting to sync on every write): "ack before fsync".
//!
//! Reads use ordered consumers (pull for reads, push for the catch-up subscription).

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull, push};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{Config, LastRawMessageErrorKind, StorageType, Stream};
use async_nats::jetstream::{self, Context as JetStream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{Appended, EVENT_TYPE, Expect, Peer, event_id};

const STREAM: &str = "FACTLOG_BENCH";

pub struct NatsPeer {
    client: async_nats::Client,
    jetstream: JetStream,
    stream: std::sync::Mutex<Option<Stream>>,
}

impl std::fmt::Debug for NatsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsPeer").finish_non_exhaustive()
    }
}

fn subject(stream: &str) -> String {
    format!("ev.{stream}")
}

impl NatsPeer {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("could not connect to NATS at {url}"))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self {
            client,
            jetstream,
            stream: std::sync::Mutex::new(None),
        })
    }

    fn stream(&self) -> anyhow::Result<Stream> {
        self.stream
            .lock()
            .expect("not poisoned")
            .clone()
            .context("the JetStream stream is not set up (reset first)")
    }

    fn headers(expected_last: Option<u64>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event_id().to_string().as_str());
        headers.insert("Event-Type", EVENT_TYPE);
        if let Some(sequence) = expected_last {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                sequence.to_string().as_str(),
            );
        }
        headers
    }

    /// Reads `filter` (every subject when empty) from the start with an ordered pull consumer:
    /// the messages pending when it was made.
    async fn read(
        &self,
        filter: String,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut consumer = self
            .stream()?
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("could not create a consumer")?;
        let pending = consumer.info().await?.num_pending;
        if pending == 0 {
            return Ok(0);
        }
        let mut messages = consumer.messages().await?;
        let mut read = 0;
        while read < pending {
            match messages.next().await {
                Some(message) => {
                    visit(&message.context("reading failed")?.payload);
                    read += 1;
                }
                None => break,
            }
        }
        Ok(read)
    }
}

#[async_trait]
impl Peer for NatsPeer {
    async fn about(&self) -> anyhow::Result<String> {
        let info = self.client.server_info();
        Ok(format!(
            "NATS {} with JetStream, file storage; fsync on a timer, not before the \
             acknowledgement (2.9 has no per-write sync)",
            info.version
        ))
    }

    async fn reset(&self) -> anyhow::Result<()> {
        // Absent the first time: the error is the stream not existing.
        let _ = self.jetstream.delete_stream(STREAM).await;
        let stream = self
            .jetstream
            .create_stream(Config {
                name: STREAM.to_owned(),
                subjects: vec!["ev.>".to_owned()],
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .context("could not create the JetStream stream")?;
        *self.stream.lock().expect("not poisoned") = Some(stream);
        Ok(())
    }

    async fn append(
        &self,
        _session: usize,
        stream: &str,
        expect: Expect,
        events: &[Bytes],
    ) -> anyhow::Result<Appended> {
        let subject = subject(stream);
        let Some((first, rest)) = events.split_first() else {
            bail!("an append needs events");
        };
        let expected = match expect {
            Expect::Any => None,
            Expect::Exact(sequence) => Some(sequence),
        };
        let ack = self
            .jetstream
            .publish_with_headers(subject.clone(), Self::headers(expected), first.clone())
            .await?
            .await;
        let mut last = match ack {
            Ok(ack) => ack.sequence,
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                return Ok(Appended::Conflict);
            }
            Err(e) => return Err(e).context("publish failed"),
        };
        let mut acks = Vec::with_capacity(rest.len());
        for data in rest {
            acks.push(
                self.jetstream
                    .publish_with_headers(subject.clone(), Self::headers(None), data.clone())
                    .await?,
            );
        }
        for ack in acks {
            last = ack.await.context("publish failed")?.sequence;
        }
        Ok(Appended::Done { next: last })
    }

    async fn current(&self, _session: usize, stream: &str) -> anyhow::Result<u64> {
        match self
            .stream()?
            .get_last_raw_message_by_subject(&subject(stream))
            .await
        {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(e).context("could not read the last message"),
        }
    }

    async fn read_stream(&self, _session: usize, stream: &str) -> anyhow::Result<Vec<Bytes>> {
        let mut data = Vec::new();
        self.read(subject(stream), &mut |d| {
            data.push(Bytes::copy_from_slice(d))
        })
        .await?;
        Ok(data)
    }

    async fn read_all(
        &self,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        self.read(String::new(), visit).await
    }

    async fn catch_up(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let consumer = self
            .stream()?
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("could not create a push consumer")?;
        let mut messages = consumer.messages().await?;
        let mut received = 0;
        while received < count {
            match messages.next().await {
                Some(message) => {
                    visit(&message.context("the subscription failed")?.payload);
                    received += 1;
                }
                None => break,
            }
        }
        Ok(received)
    }
}
