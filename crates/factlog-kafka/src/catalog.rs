//! The catalog: every category of the store, numbered the same way on every node.
//!
//! A position names its partition by the category's number, so every node must number the
//! categories alike. The catalog topic (`<prefix>_categories`, one partition) holds one record
//! per registration, key = category; a category's id is 1 + the number of distinct categories
//! registered before its first record. Two nodes registering the same new category at once
//! both write a record, and both read the same first one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::KafkaError;
use crate::codec::CATEGORY_ID_MAX;
use crate::options::KafkaOptions;

const RETENTION_FOREVER: &str = "-1";
/// Broker-side limit of one record batch on our topics: an event is at most 1 MiB of payload,
/// and a routed append at most 8 MiB before base64.
const EVENT_TOPIC_MESSAGE_BYTES: &str = "4194304";
const REQUEST_TOPIC_MESSAGE_BYTES: &str = "16777216";

#[derive(Debug, Default)]
struct Known {
    by_name: HashMap<String, u32>,
    names: Vec<String>,
    /// The next catalog offset to read.
    next_offset: i64,
}

/// The catalog of one node, with the admin client that creates topics.
pub(crate) struct Catalog {
    options: Arc<KafkaOptions>,
    admin: AdminClient<DefaultClientContext>,
    reader: Mutex<BaseConsumer>,
    producer: FutureProducer,
    known: Mutex<Known>,
    /// Set when this node registered a category, so its replica follows the new topic at once.
    registered: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("categories", &self.known.lock().names.len())
            .finish()
    }
}

/// A catalog reader behind the end that fetches nothing for this long seeks to restart its
/// fetch.
const STUCK: Duration = Duration::from_secs(5);

impl Catalog {
    /// Connects, creates the store's internal topics when missing, and reads the catalog.
    pub async fn open(
        options: Arc<KafkaOptions>,
        producer: FutureProducer,
    ) -> Result<Self, KafkaError> {
        let admin: AdminClient<DefaultClientContext> = options
            .client_config()
            .create()
            .map_err(KafkaError::client("the admin client"))?;
        let reader: BaseConsumer = options
            .client_config()
            .set("group.id", format!("{}catalog", options.topic_prefix))
            // Its watermark and metadata queries wait behind its own fetches: keep them short.
            .set("fetch.wait.max.ms", "10")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(KafkaError::client("the catalog reader"))?;
        // Fail fast (and clearly) when no broker answers, before any topic is created.
        if let Err(e) = reader.fetch_metadata(None, Duration::from_secs(10)) {
            return Err(KafkaError::Kafka(format!(
                "cannot reach the Kafka brokers {} within 10 s: {e}",
                options.brokers
            )));
        }
        let catalog = Self {
            options,
            admin,
            reader: Mutex::new(reader),
            producer,
            known: Mutex::new(Known::default()),
            registered: std::sync::atomic::AtomicBool::new(false),
        };
        let o = &catalog.options;
        catalog.create_topic(&o.catalog_topic(), 1, &[]).await?;
        catalog
            .create_topic(
                &o.requests_topic(),
                o.partitions,
                &[
                    ("max.message.bytes", REQUEST_TOPIC_MESSAGE_BYTES),
                    ("retention.ms", "604800000"),
                ],
            )
            .await?;
        catalog
            .create_topic(
                &o.replies_topic(),
                o.partitions,
                &[
                    ("max.message.bytes", REQUEST_TOPIC_MESSAGE_BYTES),
                    ("retention.ms", "604800000"),
                ],
            )
            .await?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&catalog.options.catalog_topic(), 0, Offset::Beginning)
            .expect("a valid partition");
        catalog
            .reader
            .lock()
            .assign(&tpl)
            .map_err(KafkaError::client("the catalog reader"))?;
        catalog.refresh().await?;
        Ok(catalog)
    }

    /// Creates a topic with the store's settings, or checks an existing one has the store's
    /// partition count.
    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        extra: &[(&str, &str)],
    ) -> Result<(), KafkaError> {
        let o = &self.options;
        let min_isr = o.min_insync_replicas.to_string();
        let mut topic = NewTopic::new(
            name,
            partitions as i32,
            TopicReplication::Fixed(i32::from(o.replication_factor)),
        )
        .set("retention.ms", RETENTION_FOREVER)
        .set("retention.bytes", RETENTION_FOREVER)
        .set("min.insync.replicas", &min_isr)
        .set("max.message.bytes", EVENT_TOPIC_MESSAGE_BYTES);
        for (k, v) in extra {
            topic = topic.set(k, v);
        }
        let results = self
            .admin
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .map_err(|e| KafkaError::Kafka(format!("creating topic {name}: {e}")))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::Kafka(format!("creating topic {topic}: {code}")));
                }
            }
        }
        // A new topic takes a moment to appear in every broker's metadata.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let found = loop {
            let metadata = self
                .reader
                .lock()
                .fetch_metadata(Some(name), Duration::from_secs(10))
                .map_err(|e| KafkaError::Kafka(format!("reading the metadata of {name}: {e}")))?;
            // Found once every partition has a leader: a partition without one refuses reads
            // of its end (NotLeaderForPartition) for a moment after creation.
            let found = metadata
                .topics()
                .iter()
                .find(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions()
                            .iter()
                            .all(|p| p.error().is_none() && p.leader() >= 0)
                })
                .map_or(0, |t| t.partitions().len());
            if found > 0 || std::time::Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if found != partitions as usize {
            return Err(KafkaError::Config(format!(
                "topic {name} has {found} partitions, and this store is configured with {partitions}; every node and topic of a store must agree"
            )));
        }
        Ok(())
    }

    /// Reads the catalog topic to its end.
    pub async fn refresh(&self) -> Result<(), KafkaError> {
        let topic = self.options.catalog_topic();
        let reader = &self.reader;
        let (_, high) = reader
            .lock()
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .map_err(|e| KafkaError::Kafka(format!("reading the end of {topic}: {e}")))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // A consumer error here is librdkafka reporting a broker it cannot reach (one of
        // several down, a leader moving); it keeps fetching from the others, so the read goes
        // on until the deadline and the last error is part of the timeout's message.
        let mut last_error = None;
        let mut progress_at = std::time::Instant::now();
        loop {
            let next_offset = self.known.lock().next_offset;
            if next_offset >= high {
                return Ok(());
            }
            if progress_at.elapsed() > STUCK {
                // Behind the end and nothing fetched for a while: seek to the next offset,
                // which restarts the partition's fetch. (A seek, not a new assignment: librdkafka
                // 2.12 can abort on an assignment change made while the previous one's fetch
                // stop is still pending.)
                tracing::warn!(
                    topic,
                    next_offset,
                    high,
                    "the catalog reader fetched nothing for {STUCK:?}; seeking to restart its fetch"
                );
                if let Err(e) = self.reader.lock().seek(
                    &topic,
                    0,
                    Offset::Offset(next_offset),
                    Duration::from_secs(1),
                ) {
                    tracing::warn!(topic, error = %e, "seeking the catalog reader");
                }
                progress_at = std::time::Instant::now();
            }
            if std::time::Instant::now() > deadline {
                let why = last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                return Err(KafkaError::Kafka(format!(
                    "the catalog topic {topic} could not be read to offset {high} in 30s{why}"
                )));
            }
            let message = {
                let reader = reader.lock();
                reader
                    .poll(Duration::from_millis(100))
                    .map(|m| m.map(|m| (m.offset(), m.key().map(<[u8]>::to_vec))))
            };
            match message {
                None => tokio::task::yield_now().await,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, topic, "catalog reader");
                    last_error = Some(e);
                    tokio::task::yield_now().await;
                }
                Some(Ok((offset, key))) => {
                    progress_at = std::time::Instant::now();
                    let mut known = self.known.lock();
                    known.next_offset = offset + 1;
                    let Some(name) = key.and_then(|k| String::from_utf8(k).ok()) else {
                        continue;
                    };
                    if !known.by_name.contains_key(&name) {
                        let id = known.names.len() as u32 + 1;
                        known.by_name.insert(name.clone(), id);
                        known.names.push(name);
                    }
                }
            }
        }
    }

    /// The end (high watermark) of one partition.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, KafkaError> {
        let (_, high) = self
            .reader
            .lock()
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(|e| KafkaError::Kafka(format!("reading the end of {topic}: {e}")))?;
        Ok(high)
    }

    /// Whether this node registered a category since the last call.
    pub fn take_registered(&self) -> bool {
        self.registered
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// The next catalog offset this node has not read.
    pub fn next_offset(&self) -> i64 {
        self.known.lock().next_offset
    }

    pub fn id(&self, category: &str) -> Option<u32> {
        self.known.lock().by_name.get(category).copied()
    }

    pub fn name(&self, id: u32) -> Option<String> {
        self.known.lock().names.get(id as usize - 1).cloned()
    }

    /// Every category known, with its id.
    pub fn all(&self) -> Vec<(u32, String)> {
        let known = self.known.lock();
        known
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u32 + 1, n.clone()))
            .collect()
    }

    /// The id of `category`, creating its topic and registering it when it is new.
    pub async fn ensure(&self, category: &str) -> Result<u32, KafkaError> {
        if let Some(id) = self.id(category) {
            return Ok(id);
        }
        self.refresh().await?;
        if let Some(id) = self.id(category) {
            return Ok(id);
        }
        let topic = self.options.topic(category);
        if self.known.lock().names.len() as u32 >= CATEGORY_ID_MAX {
            return Err(KafkaError::Config(format!(
                "the store has {CATEGORY_ID_MAX} categories, the most a Kafka store holds"
            )));
        }
        self.create_topic(&topic, self.options.partitions, &[])
            .await?;
        self.producer
            .send(
                FutureRecord::<str, [u8]>::to(&self.options.catalog_topic())
                    .key(category)
                    .partition(0),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| KafkaError::Kafka(format!("registering category {category}: {e}")))?;
        self.registered
            .store(true, std::sync::atomic::Ordering::Release);
        // The catalog's end may lag the acknowledged registration for a moment while leaders
        // move; read it again until the registration shows.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.refresh().await?;
            if let Some(id) = self.id(category) {
                return Ok(id);
            }
            if std::time::Instant::now() > deadline {
                return Err(KafkaError::Kafka(format!(
                    "category {category} was registered but not read back within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
