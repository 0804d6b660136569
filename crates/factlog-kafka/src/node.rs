//! One Factlog node on a Kafka cluster: its membership in the writers' group (which shards it
//! owns), its shard writers, the routing of appends to the owner, and the replies.
//!
//! Ownership: the nodes of a store form the consumer group `<prefix>writers` on the request
//! topic `<prefix>_requests`, which has one partition per shard. The node assigned partition
//! `k` of the request topic owns shard `k`: it runs its writer and consumes the appends other
//! nodes route to it there. Their replies go to the reply topic, in the same transaction as
//! the events and the request's offset, so a routed append is answered exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use factlog_store::{AppendError, AppendResult, StreamAppend, Timestamp};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::KafkaError;
use crate::catalog::Catalog;
use crate::codec::{Reply, Request, header, partition_of};
use crate::options::KafkaOptions;
use crate::replica::Replica;
use crate::writer::{AGAIN, Job, MOVED, Origin, ShardWriter};

/// Appends queued for one shard writer, at most; more wait.
const WRITER_QUEUE: usize = 4096;

struct WriterHandle {
    jobs: SyncSender<Job>,
    owned: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
}

/// The consumer context of the writers' group: it starts and stops shard writers.
pub(crate) struct MembershipContext {
    node: OnceLock<Weak<Node>>,
}

impl ClientContext for MembershipContext {}

impl ConsumerContext for MembershipContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(node) = self.node.get().and_then(Weak::upgrade) else {
            return;
        };
        if let Rebalance::Revoke(tpl) = rebalance {
            for e in tpl.elements() {
                node.revoke(e.partition() as u32);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(node) = self.node.get().and_then(Weak::upgrade) else {
            return;
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    node.assign(e.partition() as u32);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "writers' group rebalance"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A node: what the store's appends go through.
pub(crate) struct Node {
    pub options: Arc<KafkaOptions>,
    pub runtime: tokio::runtime::Handle,
    pub catalog: Arc<Catalog>,
    pub replica: Arc<Replica>,
    /// Idempotent, not transactional: routed requests.
    producer: FutureProducer,
    membership: OnceLock<Arc<BaseConsumer<MembershipContext>>>,
    writers: Mutex<HashMap<u32, WriterHandle>>,
    /// Routed appends waiting for their reply, by request id.
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    reply_partition: i32,
    stop: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.options.node_id)
            .field("owned", &self.owned_partitions())
            .finish()
    }
}

impl Node {
    pub async fn start(
        options: Arc<KafkaOptions>,
        producer: FutureProducer,
        catalog: Arc<Catalog>,
        replica: Arc<Replica>,
    ) -> Result<Arc<Self>, KafkaError> {
        let reply_partition = partition_of(options.node_id.as_bytes(), options.partitions) as i32;
        let node = Arc::new(Node {
            options: options.clone(),
            runtime: tokio::runtime::Handle::current(),
            catalog,
            replica,
            producer,
            membership: OnceLock::new(),
            writers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            reply_partition,
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });

        // Replies first, so no reply to this node's first request can be missed.
        let replies: BaseConsumer = options
            .client_config()
            .set(
                "group.id",
                format!("{}replies-{}", options.topic_prefix, options.node_id),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(KafkaError::client("the reply consumer"))?;
        let topic = options.replies_topic();
        // A leader may still be moving (a new topic, a broker lost): try for a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        let high = loop {
            match replies.fetch_watermarks(&topic, reply_partition, Duration::from_secs(10)) {
                Ok((_, high)) => break high,
                Err(e) if Instant::now() > deadline => {
                    return Err(KafkaError::Kafka(format!(
                        "reading the end of {topic}: {e}"
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, reply_partition, Offset::Offset(high))
            .expect("a valid partition");
        replies
            .assign(&tpl)
            .map_err(KafkaError::client("the reply consumer"))?;
        let weak = Arc::downgrade(&node);
        let thread = std::thread::Builder::new()
            .name("factlog-replies".into())
            .spawn(move || follow_replies(weak, replies))
            .map_err(|e| KafkaError::Kafka(format!("starting the reply thread: {e}")))?;
        node.threads.lock().push(thread);

        if options.writer {
            let context = MembershipContext {
                node: OnceLock::new(),
            };
            let _ = context.node.set(Arc::downgrade(&node));
            let membership: BaseConsumer<MembershipContext> = options
                .client_config()
                .set("group.id", options.writers_group())
                // Incremental: a rebalance moves only the partitions that change owner, so the
                // other shards keep writing.
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "earliest")
                .set(
                    "session.timeout.ms",
                    options.session_timeout.as_millis().to_string(),
                )
                .set(
                    "heartbeat.interval.ms",
                    (options.session_timeout.as_millis() / 4)
                        .max(100)
                        .to_string(),
                )
                .set("fetch.wait.max.ms", "10")
                .create_with_context(context)
                .map_err(KafkaError::client("the writers' group consumer"))?;
            membership
                .subscribe(&[&options.requests_topic()])
                .map_err(KafkaError::client("the writers' group consumer"))?;
            let membership = Arc::new(membership);
            let _ = node.membership.set(membership.clone());
            let weak = Arc::downgrade(&node);
            let thread = std::thread::Builder::new()
                .name("factlog-membership".into())
                .spawn(move || follow_requests(weak, membership))
                .map_err(|e| KafkaError::Kafka(format!("starting the membership thread: {e}")))?;
            node.threads.lock().push(thread);
        }
        Ok(node)
    }

    pub fn topic_of(&self, category: u32) -> String {
        let name = self
            .catalog
            .name(category)
            .expect("a category id comes from the catalog");
        self.options.topic(&name)
    }

    pub fn owned_partitions(&self) -> Vec<u32> {
        let mut owned: Vec<u32> = self
            .writers
            .lock()
            .iter()
            .filter(|(_, h)| h.ready.load(Ordering::Acquire))
            .map(|(k, _)| *k)
            .collect();
        owned.sort_unstable();
        owned
    }

    fn assign(self: &Arc<Self>, partition: u32) {
        let Some(consumer) = self.membership.get().cloned() else {
            return;
        };
        let mut writers = self.writers.lock();
        if writers.contains_key(&partition) {
            return;
        }
        let (jobs, receiver) = sync_channel(WRITER_QUEUE);
        let owned = Arc::new(AtomicBool::new(true));
        let ready = Arc::new(AtomicBool::new(false));
        let writer = ShardWriter {
            node: self.clone(),
            partition,
            jobs: receiver,
            owned: owned.clone(),
            ready: ready.clone(),
            consumer,
        };
        tracing::info!(partition, node = %self.options.node_id, "shard assigned");
        let thread = std::thread::Builder::new()
            .name(format!("factlog-writer-{partition}"))
            .spawn(move || writer.run());
        match thread {
            Ok(_) => {
                writers.insert(partition, WriterHandle { jobs, owned, ready });
            }
            Err(e) => tracing::error!(partition, error = %e, "starting a shard writer"),
        }
    }

    fn revoke(&self, partition: u32) {
        if let Some(handle) = self.writers.lock().remove(&partition) {
            handle.owned.store(false, Ordering::Release);
            tracing::info!(partition, node = %self.options.node_id, "shard revoked");
        }
    }

    /// Appends to shard `partition`: through this node's writer when it owns the shard, else
    /// routed to the owner. Retries while the shard moves, until `append_timeout`.
    pub async fn submit(
        &self,
        partition: u32,
        appends: Vec<StreamAppend>,
        categories: Vec<u32>,
    ) -> Result<Vec<AppendResult>, AppendError> {
        let timeout = self.options.append_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let local = {
                let writers = self.writers.lock();
                writers
                    .get(&partition)
                    .filter(|h| h.ready.load(Ordering::Acquire))
                    .map(|h| h.jobs.clone())
            };
            let outcome = match local {
                Some(jobs) => {
                    let (reply, answer) = oneshot::channel();
                    let job = Job {
                        appends: appends.clone(),
                        categories: categories.clone(),
                        origin: Origin::Local(reply),
                    };
                    let sent = tokio::task::block_in_place(|| jobs.send(job));
                    match sent {
                        Ok(()) => answer
                            .await
                            .unwrap_or_else(|_| Err(crate::writer::moved(partition))),
                        Err(_) => Err(crate::writer::moved(partition)),
                    }
                }
                None => self.route(partition, &appends, deadline).await,
            };
            match outcome {
                Err(AppendError::Backend(m))
                    if (m.starts_with(MOVED) || m.starts_with(AGAIN))
                        && Instant::now() < deadline =>
                {
                    // Ids are fixed, so sending the same append again is idempotent.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// Sends an append to the owner of `partition` and waits for its reply.
    async fn route(
        &self,
        partition: u32,
        appends: &[StreamAppend],
        deadline: Instant,
    ) -> Result<Vec<AppendResult>, AppendError> {
        let request_id = uuid::Uuid::now_v7().to_string();
        let (reply, answer) = oneshot::channel();
        self.pending.lock().insert(request_id.clone(), reply);
        let body =
            serde_json::to_vec(&Request::from_appends(appends)).expect("a request serializes");
        let remaining = deadline.saturating_duration_since(Instant::now());
        let deadline_ms = Timestamp::now().unix_micros() / 1000 + remaining.as_millis() as i64;
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: header::REQUEST_ID,
                value: Some(request_id.as_str()),
            })
            .insert(Header {
                key: header::REPLY_TO,
                value: Some(&self.reply_partition.to_string()),
            })
            .insert(Header {
                key: header::DEADLINE,
                value: Some(&deadline_ms.to_string()),
            });
        let topic = self.options.requests_topic();
        let sent = self
            .producer
            .send(
                FutureRecord::<str, [u8]>::to(&topic)
                    .partition(partition as i32)
                    .payload(&body)
                    .headers(headers),
                remaining,
            )
            .await;
        if let Err((e, _)) = sent {
            self.pending.lock().remove(&request_id);
            return Err(AppendError::Backend(format!(
                "routing the append to the owner of partition {partition} failed: {e}; nothing was appended"
            )));
        }
        match tokio::time::timeout(remaining, answer).await {
            Ok(Ok(reply)) => reply.into_outcome(),
            _ => {
                self.pending.lock().remove(&request_id);
                Err(AppendError::Backend(format!(
                    "no owner of partition {partition} answered within {:?}; the append may not have been written: append again with the same event ids to find out",
                    self.options.append_timeout
                )))
            }
        }
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, handle) in self.writers.lock().drain() {
            handle.owned.store(false, Ordering::Release);
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The membership thread: polls the writers' group (which drives rebalances) and hands routed
/// appends to the shard writers.
fn follow_requests(node: Weak<Node>, consumer: Arc<BaseConsumer<MembershipContext>>) {
    loop {
        let message = consumer.poll(Duration::from_millis(50));
        let Some(node) = node.upgrade() else { return };
        if node.stop.load(Ordering::Relaxed) {
            consumer.unsubscribe();
            return;
        }
        let m = match message {
            None => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "writers' group consumer");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let partition = m.partition() as u32;
        let text = |name: &str| -> Option<String> {
            let headers = m.headers()?;
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| String::from_utf8(v.to_vec()).ok())
        };
        let (Some(request_id), Some(reply_partition), Some(deadline_ms)) = (
            text(header::REQUEST_ID),
            text(header::REPLY_TO).and_then(|s| s.parse().ok()),
            text(header::DEADLINE).and_then(|s| s.parse().ok()),
        ) else {
            tracing::warn!(
                offset = m.offset(),
                partition,
                "a request without its headers; skipped"
            );
            continue;
        };
        let parsed = m
            .payload()
            .ok_or_else(|| "no body".to_owned())
            .and_then(|b| serde_json::from_slice::<Request>(b).map_err(|e| e.to_string()))
            .and_then(Request::into_appends);
        let appends = match parsed {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(offset = m.offset(), partition, error = %e, "a malformed request; skipped");
                continue;
            }
        };
        let categories: Option<Vec<u32>> = appends
            .iter()
            .map(|a| node.catalog.id(a.stream.category()))
            .collect();
        let categories = match categories {
            Some(c) => c,
            None => {
                let ids: Result<Vec<u32>, _> = node.runtime.block_on(async {
                    let mut ids = Vec::new();
                    for a in &appends {
                        ids.push(node.catalog.ensure(a.stream.category()).await?);
                    }
                    Ok::<_, KafkaError>(ids)
                });
                match ids {
                    Ok(ids) => ids,
                    Err(e) => {
                        tracing::warn!(error = %e, "a routed append names an unknown category");
                        continue;
                    }
                }
            }
        };
        let job = Job {
            appends,
            categories,
            origin: Origin::Routed {
                request_id,
                reply_partition,
                deadline_ms,
                offset: m.offset(),
            },
        };
        let jobs = node.writers.lock().get(&partition).map(|h| h.jobs.clone());
        match jobs {
            Some(jobs) => {
                let _ = jobs.send(job);
            }
            None => tracing::warn!(
                partition,
                "a routed append for a shard this node does not own"
            ),
        }
    }
}

/// The reply thread: hands replies to the appends waiting for them.
fn follow_replies(node: Weak<Node>, consumer: BaseConsumer) {
    loop {
        let message = consumer.poll(Duration::from_millis(50));
        let Some(node) = node.upgrade() else { return };
        if node.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(Ok(m)) = message else { continue };
        let Some(request_id) = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == header::REQUEST_ID)
                .and_then(|h| h.value)
                .and_then(|v| String::from_utf8(v.to_vec()).ok())
        }) else {
            continue;
        };
        let Some(waiter) = node.pending.lock().remove(&request_id) else {
            continue;
        };
        match m.payload().map(serde_json::from_slice::<Reply>) {
            Some(Ok(reply)) => {
                let _ = waiter.send(reply);
            }
            _ => tracing::warn!(request_id, "a malformed reply"),
        }
    }
}
