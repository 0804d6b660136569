//! The writer of one shard: partition `k` of every category topic, owned by one node at a time.
//!
//! It runs on its own thread while this node owns the shard. It opens two transactional
//! producers whose `transactional.id`s are bound to the shard (`<prefix>writer-<k>` and
//! `<prefix>writer-<k>.1`), so their `init_transactions` fence any earlier owner: from then on
//! the earlier owner cannot commit. It commits with them in turn, so one transaction does not
//! wait for the commit markers of the one before. Then it waits until
//! the local replica has read partition `k` of every category topic up to its end (the last
//! stable offset, now that no other transaction is open), so the replica holds every version
//! and event id of the shard. Only then does it accept appends.
//!
//! Appends are taken in batches: each is checked (expected versions against the replica and
//! the appends before it in the batch; event ids for idempotency), the accepted ones are
//! produced in one transaction together with the replies to routed appends and the request
//! offsets, and the transaction is committed. What it committed stays in the writer's overlay
//! until the replica holds it; checks look at the overlay first, so the replica plus the overlay
//! is always the complete state of the shard when a batch is checked, without waiting for the
//! replica between batches. (The caller's read-your-writes wait happens in the store, after
//! the answer.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use factlog_store::{
    AppendError, AppendResult, EventId, EventStore, RecordedEvent, StreamAppend, StreamName,
    Timestamp, Version, find_retry, whole_retry,
};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::KafkaError;
use crate::codec::{KafkaPosition, Reply, Slot, event_headers, header};
use crate::node::{MembershipContext, Node};
use crate::replica::Replica;
use crate::wakeup::Wakeup;

/// Transactional producers per shard, used in turn.
const PRODUCERS: usize = 2;

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
        // Every producer of the shard is fenced by a new owner's `init_transactions`, so the
        // writer commits with them in turn: a transaction of one does not wait for the commit
        // markers of the other's last transaction, which librdkafka (no KIP-890) would
        // otherwise retry against (CONCURRENT_TRANSACTIONS) before it may add a partition.
        let mut producers = Vec::with_capacity(PRODUCERS);
        for i in 0..PRODUCERS {
            let id = node.options.transactional_id(k, i);
            let producer = node
                .options
                .client_config()
                .set("transactional.id", &id)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "1")
                .set("message.max.bytes", "20971520")
                .set("transaction.timeout.ms", "30000")
                // A transaction that adds a partition whose previous commit markers are
                // still being written is refused (CONCURRENT_TRANSACTIONS) and retried after
                // this backoff; librdkafka's 100 ms default would cap a shard at ~10
                // commits/s.
                .set("retry.backoff.ms", "5")
                .set("retry.backoff.max.ms", "100")
                .create_with_context(TxnContext::default())
                .map_err(KafkaError::client("the transactional producer"))?;
            let producer = TxnProducer::new(producer)?;
            producer
                .init_transactions(Duration::from_secs(30))
                .map_err(|e| KafkaError::Kafka(format!("init_transactions for {id}: {e}")))?;
            producers.push(producer);
        }
        let started = std::time::Instant::now();
        self.restore()?;
        if started.elapsed() > crate::store::SLOW {
            tracing::warn!(
                partition = k,
                took_ms = started.elapsed().as_millis() as u64,
                "slow takeover: restoring the shard took long"
            );
        }
        tracing::info!(
            partition = k,
            took_ms = started.elapsed().as_millis() as u64,
            "shard restored; accepting appends"
        );
        self.ready.store(true, Ordering::Release);

        let mut carried: Vec<Job> = Vec::new();
        let mut overlay = Overlay::default();
        let mut last_recorded_at = Timestamp::UNIX_EPOCH;
        let mut turn = 0usize;
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
            let producer = &producers[turn % PRODUCERS];
            turn = turn.wrapping_add(1);
            carried = self.write_batch(producer, &mut overlay, jobs, last_recorded_at)?;
        }
        Ok(())
    }

    /// Waits until the replica has read partition `k` of every category topic to its end. Gives
    /// up after 20 s with an error naming the partitions not reached; the writer then starts
    /// over (fencing again and reading the catalog again).
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
            .block_on(node.replica.wait_for(&targets, Duration::from_secs(20)))
    }

    /// Checks, writes and commits one batch. Returns the jobs to carry to the next batch (those
    /// that retry an append of this batch: they are answered once it is in the replica).
    fn write_batch(
        &self,
        producer: &TxnProducer,
        overlay: &mut Overlay,
        jobs: Vec<Job>,
        recorded_at: Timestamp,
    ) -> Result<Vec<Job>, KafkaError> {
        let k = self.partition;
        overlay.prune(&self.node.replica);
        let now_ms = Timestamp::now().unix_micros() / 1000;

        // 1. Check each job against the replica and the jobs accepted before it.
        let checking = std::time::Instant::now();
        let mut versions: HashMap<StreamName, Option<Version>> = HashMap::new();
        let mut batch_ids: HashSet<EventId> = HashSet::new();
        let mut accepted: Vec<(Job, Vec<(Version, usize)>)> = Vec::new();
        let mut refused: Vec<(Job, Result<Vec<AppendResult>, AppendError>)> = Vec::new();
        let mut carried = Vec::new();
        for job in jobs {
            if let Origin::Routed { deadline_ms, .. } = job.origin
                && deadline_ms < now_ms
            {
                refused.push((
                    job,
                    Err(AppendError::Backend(
                        "the routed append arrived after its deadline; it was not appended".into(),
                    )),
                ));
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
            match self.check(&job, overlay, &mut versions)? {
                Checked::Retry(results) => refused.push((job, Ok(results))),
                Checked::Refused(e) => refused.push((job, Err(e))),
                Checked::Accepted(firsts) => {
                    batch_ids.extend(
                        job.appends
                            .iter()
                            .flat_map(|a| &a.events)
                            .filter_map(|e| e.id),
                    );
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
        let started = std::time::Instant::now();
        let check_us = (started - checking).as_micros() as u64;
        let outcome = self.transaction(producer, &accepted, &refused, recorded_at);
        tracing::debug!(
            partition = k,
            appends = accepted.len(),
            check_us,
            transaction_us = started.elapsed().as_micros() as u64,
            "batch written"
        );
        if started.elapsed() > crate::store::SLOW {
            tracing::warn!(
                partition = k,
                took_ms = started.elapsed().as_millis() as u64,
                appends = accepted.len(),
                "slow transaction"
            );
        }
        match outcome {
            Ok(results) => {
                // Until the replica holds them, this writer's own appends are checked
                // against the overlay.
                for ((job, _), results) in accepted.iter().zip(&results) {
                    overlay.record(job, results, recorded_at);
                }
                for ((job, _), results) in accepted.into_iter().zip(results) {
                    job.answer(Ok(results));
                }
                for (job, outcome) in refused {
                    job.answer(outcome);
                }
                Ok(carried)
            }
            Err(Failure::Aborted(reason)) => {
                // Nothing was written: routed appends are read again from the request topic,
                // local ones are sent again by the store (their ids make that idempotent).
                self.read_requests_again(
                    accepted
                        .iter()
                        .map(|(j, _)| j)
                        .chain(refused.iter().map(|(j, _)| j)),
                );
                for (job, _) in accepted {
                    job.answer(Err(again(k, &reason)));
                }
                for (job, outcome) in refused {
                    job.answer(outcome);
                }
                Ok(carried)
            }
            Err(Failure::Fatal(reason)) => {
                self.read_requests_again(
                    accepted
                        .iter()
                        .map(|(j, _)| j)
                        .chain(refused.iter().map(|(j, _)| j))
                        .chain(carried.iter()),
                );
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

    /// Rewinds the request partition to the first of these routed appends, so that whoever
    /// writes the shard next (this writer once restarted, or a new owner) reads them again:
    /// their transaction did not commit, so neither did their offsets, but this node's
    /// consumer had already read past them.
    fn read_requests_again<'a>(&self, jobs: impl Iterator<Item = &'a Job>) {
        let first = jobs
            .filter_map(|j| match j.origin {
                Origin::Routed { offset, .. } => Some(offset),
                Origin::Local(_) => None,
            })
            .min();
        if let Some(offset) = first {
            let topic = self.node.options.requests_topic();
            if let Err(e) = self.consumer.seek(
                &topic,
                self.partition as i32,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                tracing::warn!(partition = self.partition, error = %e, "rewinding the request partition");
            }
        }
    }

    /// Checks one job: a retry, a refusal, or accepted with each part's first version.
    fn check(
        &self,
        job: &Job,
        overlay: &Overlay,
        versions: &mut HashMap<StreamName, Option<Version>>,
    ) -> Result<Checked, KafkaError> {
        let node = &self.node;
        let replica = &node.replica;
        let rt = &node.runtime;
        let lookup = |id: EventId| -> Result<Option<RecordedEvent>, AppendError> {
            if let Some(event) = overlay.events.get(&id) {
                return Ok(Some(event.0.clone()));
            }
            rt.block_on(replica.store.read_event_by_id(id))
                .map(|e| e.map(Replica::to_api))
                .map_err(|e| AppendError::Backend(e.to_string()))
        };
        let mut retried = Vec::new();
        for part in &job.appends {
            let found = find_retry(part, lookup, |id| matches!(lookup(id), Ok(Some(_))));
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
            let current = match versions
                .get(&part.stream)
                .copied()
                .or_else(|| overlay.streams.get(&part.stream).map(|v| Some(v.0)))
            {
                Some(v) => v,
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
        producer: &TxnProducer,
        accepted: &[(Job, Vec<(Version, usize)>)],
        refused: &[(Job, Result<Vec<AppendResult>, AppendError>)],
        recorded_at: Timestamp,
    ) -> Result<Vec<Vec<AppendResult>>, Failure> {
        let node = &self.node;
        let k = self.partition;
        producer.begin_transaction().map_err(classify)?;
        producer.context().reports.lock().clear();
        let produced = std::time::Instant::now();
        let result = (|| {
            // The events, each numbered for its delivery report.
            let mut parts_of_jobs = Vec::new();
            let mut n = 0usize;
            for (job, firsts) in accepted {
                let mut parts = Vec::new();
                for ((part, &category), &(first, _)) in
                    job.appends.iter().zip(&job.categories).zip(firsts)
                {
                    let topic = node.topic_of(category);
                    let start = n;
                    for (i, event) in part.events.iter().enumerate() {
                        let id = event.id.expect("filled in");
                        let mut headers = OwnedHeaders::new();
                        for (name, value) in event_headers(id, event, first + i as u64, recorded_at)
                        {
                            headers = headers.insert(Header {
                                key: name,
                                value: Some(&value),
                            });
                        }
                        let record = BaseRecord::with_opaque_to(&topic, n)
                            .partition(k as i32)
                            .key(part.stream.as_str())
                            .payload(event.data.as_ref())
                            .headers(headers)
                            .timestamp(recorded_at.unix_micros() / 1000);
                        send(producer, record)?;
                        n += 1;
                    }
                    parts.push((category, first, start, n));
                }
                parts_of_jobs.push(parts);
            }
            // Serves the delivery reports on this thread, so no poller adds its wait.
            settle(producer)?;
            let reports = std::mem::take(&mut *producer.context().reports.lock());
            let offset = |i: usize| -> Result<i64, Failure> {
                match reports.get(&i) {
                    Some(Ok(offset)) => Ok(*offset),
                    Some(Err(e)) => Err(classify(e.clone())),
                    None => Err(Failure::Aborted(format!(
                        "no delivery report for record {i}"
                    ))),
                }
            };
            let mut results = Vec::new();
            for parts in parts_of_jobs {
                let mut job_results = Vec::new();
                for (category, first, start, end) in parts {
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
                        last_version: first + (end - start) as u64 - 1,
                        first_position: position(offset(start)?),
                        last_position: position(offset(end - 1)?),
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
                let body =
                    serde_json::to_vec(&Reply::from_outcome(&outcome)).expect("a reply serializes");
                let headers = OwnedHeaders::new().insert(Header {
                    key: header::REQUEST_ID,
                    value: Some(request_id.as_bytes()),
                });
                let topic = node.options.replies_topic();
                let record = BaseRecord::<str, [u8], usize>::with_opaque_to(&topic, usize::MAX)
                    .partition(*reply_partition)
                    .payload(&body)
                    .headers(headers);
                send(producer, record)?;
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
            settle(producer)?;
            let committing = std::time::Instant::now();
            producer
                .commit_transaction(Duration::from_secs(30))
                .map_err(classify)?;
            tracing::debug!(
                partition = k,
                records = n,
                produce_us = (committing - produced).as_micros() as u64,
                commit_us = committing.elapsed().as_micros() as u64,
                "transaction committed"
            );
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

/// This writer's appends that the replica may not hold yet: stream versions and events by id,
/// each with the offset the replica must reach to hold it. Checks look here first.
#[derive(Default)]
struct Overlay {
    streams: HashMap<StreamName, (Version, Slot, i64)>,
    events: HashMap<EventId, (RecordedEvent, Slot, i64)>,
}

impl Overlay {
    fn record(&mut self, job: &Job, results: &[AppendResult], recorded_at: Timestamp) {
        for (part, result) in job.appends.iter().zip(results) {
            let (
                KafkaPosition::Event {
                    slot,
                    offset: first,
                },
                KafkaPosition::Event { offset: last, .. },
            ) = (
                KafkaPosition::decode(result.first_position),
                KafkaPosition::decode(result.last_position),
            )
            else {
                continue;
            };
            let reached = last as i64 + 1;
            self.streams
                .insert(part.stream.clone(), (result.last_version, slot, reached));
            for (i, event) in part.events.iter().enumerate() {
                let id = event.id.expect("filled in");
                // Offsets inside one append are consecutive: one producer, one partition,
                // one transaction (control records come only after it).
                let position = KafkaPosition::Event {
                    slot,
                    offset: first + i as u64,
                }
                .encode();
                let recorded = RecordedEvent {
                    id,
                    stream: part.stream.clone(),
                    version: result.first_version + i as u64,
                    position,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    content_type: event.content_type.clone(),
                    data: event.data.clone(),
                    metadata: event.metadata.clone(),
                    recorded_at,
                };
                self.events.insert(id, (recorded, slot, reached));
            }
        }
    }

    /// Forgets what the replica holds now.
    fn prune(&mut self, replica: &Replica) {
        self.streams
            .retain(|_, (_, slot, reached)| !replica.reached(*slot, *reached));
        self.events
            .retain(|_, (_, slot, reached)| !replica.reached(*slot, *reached));
    }
}

/// The shard's transactional producer. It has no polling thread: this writer's thread serves
/// the delivery reports (`settle`), woken by librdkafka when one arrives ([`Wakeup`]), so a
/// commit never waits for a poller's timeout and no thread spins.
pub(crate) struct TxnProducer {
    // Fields drop in order: the wakeup releases its queue reference before the producer goes.
    wakeup: Wakeup,
    producer: BaseProducer<TxnContext>,
}

impl TxnProducer {
    fn new(producer: BaseProducer<TxnContext>) -> Result<Self, KafkaError> {
        let wakeup = Wakeup::new(&producer)
            .map_err(|e| KafkaError::Kafka(format!("the producer's wakeup pipe: {e}")))?;
        Ok(Self { wakeup, producer })
    }
}

impl std::ops::Deref for TxnProducer {
    type Target = BaseProducer<TxnContext>;

    fn deref(&self) -> &Self::Target {
        &self.producer
    }
}

/// Collects the offsets of the records of the current transaction, by record number.
#[derive(Default)]
pub(crate) struct TxnContext {
    reports: parking_lot::Mutex<HashMap<usize, Result<i64, RdError>>>,
}

impl ClientContext for TxnContext {}

impl ProducerContext for TxnContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, record: usize) {
        let report = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.clone()),
        };
        self.reports.lock().insert(record, report);
    }
}

/// Waits until every record sent is acknowledged, serving delivery reports on this thread as
/// they arrive. (rdkafka's `flush` and `poll` wait out their whole timeout even after serving
/// the report waited for; see [`Wakeup`].)
fn settle(producer: &TxnProducer) -> Result<(), Failure> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Serves at most one event.
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if producer.wakeup.pending() {
            continue;
        }
        if std::time::Instant::now() > deadline {
            return Err(Failure::Aborted(
                "records were not acknowledged within 30 s".into(),
            ));
        }
        // Woken by the next event; the timeout only bounds a missed wakeup.
        producer.wakeup.wait(Duration::from_millis(20));
    }
}

/// Queues a record, serving delivery reports while librdkafka's queue is full.
fn send<K, P>(
    producer: &TxnProducer,
    mut record: BaseRecord<'_, K, P, usize>,
) -> Result<(), Failure>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(5));
                record = back;
            }
            Err((e, _)) => return Err(classify(e)),
        }
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

/// The error of an append whose transaction was aborted; the store sends it again.
fn again(partition: u32, reason: &str) -> AppendError {
    AppendError::Backend(format!(
        "{AGAIN}: the transaction of partition {partition} was aborted ({reason}); nothing was appended"
    ))
}

pub(crate) const AGAIN: &str = "not appended yet";
