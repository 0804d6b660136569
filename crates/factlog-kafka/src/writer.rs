//! The writer of one shard: partition `k` of every category topic, owned by one node at a time.
//!
//! It runs on its own thread while this node owns the shard. It opens a transactional producer
//! whose `transactional.id` is bound to the shard (`<prefix>writer-<k>`), so `init_transactions`
//! fences any earlier owner: from then on the earlier owner cannot commit. Then it waits until
//! the local replica has read partition `k` of every category topic up to its end (the last
//! stable offset, now that no other transaction is open), so the replica holds every version
//! and event id of the shard. Only then does it accept appends.
//!
//! Appends are taken in batches: each is checked (expected versions against the replica and
//! the appends before it in the batch; event ids for idempotency), the accepted ones are
//! produced in one transaction together with the replies to routed appends and the request
//! offsets, and the transaction is committed. The writer then waits for the replica to hold
//! what it wrote before it answers and takes the next batch, so the replica is always the
//! complete state of the shard when a batch is checked.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use factlog_store::{
    AppendError, AppendResult, EventId, EventStore, RecordedEvent, StreamAppend, StreamName,
    Timestamp, Version, find_retry, whole_retry,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::KafkaError;
use crate::codec::{KafkaPosition, Reply, Slot, event_headers, header};
use crate::node::{MembershipContext, Node};
use crate::replica::Replica;

/// Appends taken into one transaction, at most.
const BATCH_JOBS_MAX: usize = 256;

/// Who waits for an append's outcome.
#[derive(Debug)]
pub(crate) enum Origin {
    Local(oneshot::Sender<Result<Vec<AppendResult>, AppendError>>),
    Routed {
        request_id: String,
        reply_partition: i32,
        /// Milliseconds since the Unix epoch; past it, the requester has given up.
        deadline_ms: i64,
        /// The request's offset in partition `k` of the request topic.
        offset: i64,
    },
}

/// One append for the shard: its parts (checked and with ids), each part's category id.
#[derive(Debug)]
pub(crate) struct Job {
    pub appends: Vec<StreamAppend>,
    pub categories: Vec<u32>,
    pub origin: Origin,
}

impl Job {
    fn answer(self, outcome: Result<Vec<AppendResult>, AppendError>) {
        if let Origin::Local(reply) = self.origin {
            let _ = reply.send(outcome);
        }
    }
}

/// What the error of a failed transaction means for the writer.
enum Failure {
    /// Nothing was written; the writer goes on with the next batch.
    Aborted(String),
    /// The producer is fenced or broken: the writer stops (and is restarted if it still owns
    /// the shard).
    Fatal(String),
}

pub(crate) struct ShardWriter {
    pub node: Arc<Node>,
    pub partition: u32,
    pub jobs: Receiver<Job>,
    /// Cleared when the shard is revoked.
    pub owned: Arc<AtomicBool>,
    /// Set once restored; appends are sent here only then.
    pub ready: Arc<AtomicBool>,
    pub consumer: Arc<BaseConsumer<MembershipContext>>,
}

impl ShardWriter {
    pub fn run(self) {
        let k = self.partition;
        while self.owned.load(Ordering::Acquire) {
            match self.serve() {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(partition = k, error = %e, "shard writer stopped; restarting while this node owns the shard");
                    self.ready.store(false, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        self.ready.store(false, Ordering::Release);
        // Anything still queued was never taken: say so, so callers route again.
        while let Ok(job) = self.jobs.try_recv() {
            job.answer(Err(moved(k)));
        }
        tracing::info!(partition = k, "shard writer stopped");
    }

    /// Opens the producer, restores the shard, and writes until the shard is revoked.
    fn serve(&self) -> Result<(), KafkaError> {
        let node = &self.node;
        let k = self.partition;
        let producer: FutureProducer = node
            .options
            .client_config()
            .set("transactional.id", node.options.transactional_id(k))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.max.bytes", "20971520")
            .set("transaction.timeout.ms", "30000")
            .create()
            .map_err(KafkaError::client("the transactional producer"))?;
        producer
            .init_transactions(Duration::from_secs(30))
            .map_err(|e| KafkaError::Kafka(format!("init_transactions for shard {k}: {e}")))?;
        let started = std::time::Instant::now();
        self.restore()?;
        tracing::info!(partition = k, took_ms = started.elapsed().as_millis() as u64, "shard restored; accepting appends");
        self.ready.store(true, Ordering::Release);

        let mut carried: Vec<Job> = Vec::new();
        let mut last_recorded_at = Timestamp::UNIX_EPOCH;
        while self.owned.load(Ordering::Acquire) {
            let mut jobs = std::mem::take(&mut carried);
            if jobs.is_empty() {
                match self.jobs.recv_timeout(Duration::from_millis(100)) {
                    Ok(job) => jobs.push(job),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
            while jobs.len() < BATCH_JOBS_MAX {
                match self.jobs.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if !self.owned.load(Ordering::Acquire) {
                for job in jobs {
                    job.answer(Err(moved(k)));
                }
                return Ok(());
            }
            last_recorded_at = Timestamp::now().max(last_recorded_at);
            carried = self.write_batch(&producer, jobs, last_recorded_at)?;
        }
        Ok(())
    }

    /// Waits until the replica has read partition `k` of every category topic to its end.
    fn restore(&self) -> Result<(), KafkaError> {
        let node = &self.node;
        node.runtime.block_on(node.catalog.refresh())?;
        let mut targets = Vec::new();
        for (id, name) in node.catalog.all() {
            let topic = node.options.topic(&name);
            let (_, high) = self
                .consumer
                .fetch_watermarks(&topic, self.partition as i32, Duration::from_secs(10))
                .map_err(|e| KafkaError::Kafka(format!("reading the end of {topic}: {e}")))?;
            targets.push((
                Slot {
                    category: id,
                    partition: self.partition,
                },
                high,
            ));
        }
        node.runtime
            .block_on(node.replica.wait_for(&targets, Duration::from_secs(120)))
    }

    /// Checks, writes and commits one batch. Returns the jobs to carry to the next batch (those
    /// that retry an append of this batch: they are answered once it is in the replica).
    fn write_batch(
        &self,
        producer: &FutureProducer,
        jobs: Vec<Job>,
        recorded_at: Timestamp,
    ) -> Result<Vec<Job>, KafkaError> {
        let node = &self.node;
        let k = self.partition;
        let replica = &node.replica;
        let now_ms = Timestamp::now().unix_micros() / 1000;

        // 1. Check each job against the replica and the jobs accepted before it.
        let mut versions: HashMap<StreamName, Option<Version>> = HashMap::new();
        let mut batch_ids: HashSet<EventId> = HashSet::new();
        let mut accepted: Vec<(Job, Vec<(Version, usize)>)> = Vec::new();
        let mut refused: Vec<(Job, Result<Vec<AppendResult>, AppendError>)> = Vec::new();
        let mut carried = Vec::new();
        for job in jobs {
            if let Origin::Routed { deadline_ms, .. } = job.origin
                && deadline_ms < now_ms
            {
                refused.push((job, Err(AppendError::Backend("the routed append arrived after its deadline; it was not appended".into()))));
                continue;
            }
            if job
                .appends
                .iter()
                .flat_map(|a| &a.events)
                .any(|e| batch_ids.contains(&e.id.expect("filled in")))
            {
                carried.push(job);
                continue;
            }
            match self.check(&job, &mut versions)? {
                Checked::Retry(results) => refused.push((job, Ok(results))),
                Checked::Refused(e) => refused.push((job, Err(e))),
                Checked::Accepted(firsts) => {
                    batch_ids.extend(job.appends.iter().flat_map(|a| &a.events).filter_map(|e| e.id));
                    accepted.push((job, firsts));
                }
            }
        }
        let routed = accepted
            .iter()
            .map(|(j, _)| j)
            .chain(refused.iter().map(|(j, _)| j))
            .any(|j| matches!(j.origin, Origin::Routed { .. }));
        if accepted.is_empty() && !routed {
            for (job, outcome) in refused {
                job.answer(outcome);
            }
            return Ok(carried);
        }

        // 2. One transaction: the events, the replies to routed appends, the request offsets.
        let outcome = self.transaction(producer, &accepted, &refused, recorded_at);
        match outcome {
            Ok(results) => {
                let mut targets: HashMap<Slot, i64> = HashMap::new();
                for r in results.iter().flatten() {
                    if let KafkaPosition::Event { slot, offset } =
                        KafkaPosition::decode(r.last_position)
                    {
                        let t = targets.entry(slot).or_default();
                        *t = (*t).max(offset as i64 + 1);
                    }
                }
                let targets: Vec<_> = targets.into_iter().collect();
                // The next batch is checked against the replica: it must hold this one.
                node.runtime.block_on(
                    replica.wait_for(&targets, Duration::from_secs(60)),
                )?;
                for ((job, _), results) in accepted.into_iter().zip(results) {
                    job.answer(Ok(results));
                }
                for (job, outcome) in refused {
                    job.answer(outcome);
                }
                Ok(carried)
            }
            Err(Failure::Aborted(reason)) => {
                let error = AppendError::Backend(format!(
                    "the transaction of partition {k} was aborted ({reason}); nothing was appended, append again"
                ));
                for (job, _) in accepted {
                    job.answer(Err(error.clone()));
                }
                for (job, outcome) in refused {
                    job.answer(outcome);
                }
                Ok(carried)
            }
            Err(Failure::Fatal(reason)) => {
                for (job, _) in accepted {
                    job.answer(Err(moved(k)));
                }
                for (job, _) in refused {
                    job.answer(Err(moved(k)));
                }
                for job in carried {
                    job.answer(Err(moved(k)));
                }
                Err(KafkaError::Kafka(format!(
                    "the writer of partition {k} cannot go on: {reason}"
                )))
            }
        }
    }

    /// Checks one job: a retry, a refusal, or accepted with each part's first version.
    fn check(
        &self,
        job: &Job,
        versions: &mut HashMap<StreamName, Option<Version>>,
    ) -> Result<Checked, KafkaError> {
        let node = &self.node;
        let replica = &node.replica;
        let rt = &node.runtime;
        let lookup = |id: EventId| -> Result<Option<RecordedEvent>, AppendError> {
            rt.block_on(replica.store.read_event_by_id(id))
                .map(|e| e.map(Replica::to_api))
                .map_err(|e| AppendError::Backend(e.to_string()))
        };
        let mut retried = Vec::new();
        for part in &job.appends {
            let found = find_retry(part, lookup, |id| {
                matches!(lookup(id), Ok(Some(_)))
            });
            match found {
                Ok(Some(result)) => retried.push(result),
                Ok(None) => {}
                Err(e) => return Ok(Checked::Refused(e)),
            }
        }
        match whole_retry(&job.appends, retried) {
            Ok(Some(results)) => return Ok(Checked::Retry(results)),
            Ok(None) => {}
            Err(e) => return Ok(Checked::Refused(e)),
        }
        let mut firsts = Vec::new();
        for part in &job.appends {
            let current = match versions.get(&part.stream) {
                Some(v) => *v,
                None => {
                    let info = rt
                        .block_on(replica.store.stream_info(&part.stream))
                        .map_err(|e| KafkaError::Replica(e.to_string()))?;
                    info.map(|i| i.last_version)
                }
            };
            if !part.expected.is_met_by(current) {
                return Ok(Checked::Refused(AppendError::WrongExpectedVersion {
                    stream: part.stream.clone(),
                    expected: part.expected,
                    current,
                }));
            }
            firsts.push((current.map_or(0, |v| v + 1), part.events.len()));
        }
        for (part, (first, n)) in job.appends.iter().zip(&firsts) {
            versions.insert(part.stream.clone(), Some(first + *n as u64 - 1));
        }
        Ok(Checked::Accepted(firsts))
    }

    fn transaction(
        &self,
        producer: &FutureProducer,
        accepted: &[(Job, Vec<(Version, usize)>)],
        refused: &[(Job, Result<Vec<AppendResult>, AppendError>)],
        recorded_at: Timestamp,
    ) -> Result<Vec<Vec<AppendResult>>, Failure> {
        let node = &self.node;
        let k = self.partition;
        producer.begin_transaction().map_err(classify)?;
        let result = (|| {
            // The events.
            let mut deliveries = Vec::new();
            for (job, firsts) in accepted {
                let mut parts = Vec::new();
                for ((part, &category), &(first, _)) in
                    job.appends.iter().zip(&job.categories).zip(firsts)
                {
                    let topic = node.topic_of(category);
                    let mut futures = Vec::new();
                    for (i, event) in part.events.iter().enumerate() {
                        let id = event.id.expect("filled in");
                        let mut headers = OwnedHeaders::new();
                        for (name, value) in
                            event_headers(id, event, first + i as u64, recorded_at)
                        {
                            headers = headers.insert(Header {
                                key: name,
                                value: Some(&value),
                            });
                        }
                        let record = FutureRecord::to(&topic)
                            .partition(k as i32)
                            .key(part.stream.as_str())
                            .payload(event.data.as_ref())
                            .headers(headers)
                            .timestamp(recorded_at.unix_micros() / 1000);
                        let future = producer
                            .send_result(record)
                            .map_err(|(e, _)| classify(e))?;
                        futures.push(future);
                    }
                    parts.push((category, first, futures));
                }
                deliveries.push(parts);
            }
            let mut results = Vec::new();
            for parts in deliveries {
                let mut job_results = Vec::new();
                for (category, first, futures) in parts {
                    let n = futures.len();
                    let mut offsets = Vec::with_capacity(n);
                    for future in futures {
                        let delivery = node
                            .runtime
                            .block_on(future)
                            .map_err(|_| Failure::Aborted("the producer was closed".into()))?
                            .map_err(|(e, _)| classify(e))?;
                        offsets.push(delivery.offset);
                    }
                    let slot = Slot {
                        category,
                        partition: k,
                    };
                    let position = |offset: i64| {
                        KafkaPosition::Event {
                            slot,
                            offset: offset as u64,
                        }
                        .encode()
                    };
                    job_results.push(AppendResult {
                        first_version: first,
                        last_version: first + n as u64 - 1,
                        first_position: position(offsets[0]),
                        last_position: position(offsets[n - 1]),
                    });
                }
                results.push(job_results);
            }
            // The replies to routed appends, and their request offsets.
            let mut request_offset = None;
            let replies = accepted
                .iter()
                .zip(results.iter().map(|r| Ok(r.clone())))
                .map(|((job, _), outcome)| (job, outcome))
                .chain(refused.iter().map(|(job, outcome)| (job, outcome.clone())));
            for (job, outcome) in replies {
                let Origin::Routed {
                    request_id,
                    reply_partition,
                    offset,
                    ..
                } = &job.origin
                else {
                    continue;
                };
                request_offset = Some(request_offset.unwrap_or(0).max(*offset + 1));
                let body = serde_json::to_vec(&Reply::from_outcome(&outcome))
                    .expect("a reply serializes");
                let headers = OwnedHeaders::new().insert(Header {
                    key: header::REQUEST_ID,
                    value: Some(request_id.as_bytes()),
                });
                let topic = node.options.replies_topic();
                let record = FutureRecord::<str, [u8]>::to(&topic)
                    .partition(*reply_partition)
                    .payload(&body)
                    .headers(headers);
                producer.send_result(record).map_err(|(e, _)| classify(e))?;
            }
            if let Some(next) = request_offset {
                let mut offsets = TopicPartitionList::new();
                offsets
                    .add_partition_offset(
                        &node.options.requests_topic(),
                        k as i32,
                        Offset::Offset(next),
                    )
                    .expect("a valid partition");
                let metadata = self
                    .consumer
                    .group_metadata()
                    .ok_or_else(|| Failure::Fatal("the node left its consumer group".into()))?;
                producer
                    .send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30))
                    .map_err(classify)?;
            }
            producer
                .commit_transaction(Duration::from_secs(30))
                .map_err(classify)?;
            Ok(results)
        })();
        if let Err(Failure::Aborted(_)) = &result
            && let Err(e) = producer.abort_transaction(Duration::from_secs(30))
        {
            return Err(Failure::Fatal(format!("aborting: {e}")));
        }
        result
    }
}

enum Checked {
    Retry(Vec<AppendResult>),
    Refused(AppendError),
    Accepted(Vec<(Version, usize)>),
}

fn classify(e: RdError) -> Failure {
    let abortable = match &e {
        RdError::Transaction(t) => t.txn_requires_abort() && !t.is_fatal(),
        _ => false,
    };
    if abortable {
        Failure::Aborted(e.to_string())
    } else {
        Failure::Fatal(e.to_string())
    }
}

/// The error a caller gets when the shard moved before its append was written; the store
/// routes such an append again.
pub(crate) fn moved(partition: u32) -> AppendError {
    AppendError::Backend(format!(
        "{MOVED}: partition {partition} moved to another node before the append was written"
    ))
}

pub(crate) const MOVED: &str = "ownership moved";
