//! Projection benchmarks (printed, not asserted):
//! - rebuild throughput: a projection catching up from the start of a log of small events, with
//!   a no-op handler in an in-memory sink (the runtime's own cost: subscription, batching,
//!   interest, checkpoints), and with the stream summary into SQLite, PostgreSQL and Redis;
//! - append-to-read-model latency: one durable append every millisecond (1,000 events/s) and
//!   the time until the read model's committed checkpoint includes it, p50/p99.
//!
//! `cargo bench -p factlog-projection --bench projections`; PostgreSQL and Redis are measured
//! when `FACTLOG_TEST_POSTGRES_URL` / `FACTLOG_TEST_REDIS_URL` are set (for example under
//! `scripts/services.sh run -- cargo bench ...`). `FACTLOG_BENCH_EVENTS` sets the log size
//! (default 1,000,000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use factlog_log::{EmbeddedStore, Options};
use factlog_projection::{
    ApplyError, DeadLetter, HandleError, Interest, NewDeadLetter, PostgresSink, Projection,
    ProjectionHandle, ProjectionName, ProjectionOptions, Projections, RedisSink, Sink, SinkError,
    SqliteSink, Stored, StreamSummary, Target,
};
use factlog_store::{
    Checkpoint, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamName,
    Timestamp,
};
use parking_lot::Mutex;

/// A sink that keeps only its checkpoints, in memory.
#[derive(Debug, Default)]
struct NullSink {
    state: Mutex<Option<Stored>>,
}

/// Does nothing with each event.
#[derive(Debug)]
struct Noop;

impl Projection<NullSink> for Noop {
    fn interest(&self) -> Interest {
        Interest::all()
    }
    fn setup(&self, _: &mut ()) -> Result<(), HandleError> {
        Ok(())
    }
    fn handle(&self, event: &RecordedEvent, _: &mut ()) -> Result<(), HandleError> {
        std::hint::black_box(event);
        Ok(())
    }
}

impl NullSink {
    fn move_checkpoint(&self, target: &Target, to: Checkpoint) -> Result<(), ApplyError> {
        let mut state = self.state.lock();
        let stored = state.as_mut().expect("registered");
        let checkpoint = stored
            .checkpoints
            .get_mut(&target.generation)
            .expect("generation");
        if *checkpoint != target.checkpoint {
            return Err(ApplyError::Fenced {
                name: target.name.clone(),
                generation: target.generation,
                expected: Some(target.checkpoint.clone()),
                found: Some(checkpoint.clone()),
            });
        }
        *checkpoint = to;
        Ok(())
    }
}

impl Sink for NullSink {
    type Unit<'u> = ();

    fn kind(&self) -> &'static str {
        "null"
    }
    async fn migrate(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn load(&self, _: &ProjectionName) -> Result<Option<Stored>, SinkError> {
        Ok(self.state.lock().clone())
    }
    async fn create_generation<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        live: bool,
    ) -> Result<(), ApplyError> {
        projection
            .setup(&mut ())
            .map_err(|e| ApplyError::event(None, e))?;
        let mut state = self.state.lock();
        let stored = state.get_or_insert_with(|| Stored {
            live_generation: target.generation,
            paused: false,
            checkpoints: BTreeMap::new(),
        });
        if live {
            stored.live_generation = target.generation;
        }
        stored
            .checkpoints
            .insert(target.generation, target.checkpoint);
        Ok(())
    }
    async fn apply<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        events: Vec<RecordedEvent>,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        for (i, event) in events.iter().enumerate() {
            projection
                .handle(event, &mut ())
                .map_err(|e| ApplyError::event(Some(i), e))?;
        }
        self.move_checkpoint(&target, to)
    }
    async fn park(
        &self,
        target: Target,
        _: NewDeadLetter,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        self.move_checkpoint(&target, to)
    }
    async fn set_checkpoint(&self, target: Target, to: Checkpoint) -> Result<(), ApplyError> {
        self.move_checkpoint(&target, to)
    }
    async fn swap(&self, _: &ProjectionName, from: u64, to: u64) -> Result<(), SinkError> {
        let mut state = self.state.lock();
        let stored = state.as_mut().expect("registered");
        stored.live_generation = to;
        stored.checkpoints.remove(&from);
        Ok(())
    }
    async fn drop_generation(&self, _: &ProjectionName, generation: u64) -> Result<(), SinkError> {
        self.state
            .lock()
            .as_mut()
            .expect("registered")
            .checkpoints
            .remove(&generation);
        Ok(())
    }
    async fn set_paused(&self, _: &ProjectionName, paused: bool) -> Result<(), SinkError> {
        self.state.lock().as_mut().expect("registered").paused = paused;
        Ok(())
    }
    async fn dead_letters(&self, _: &ProjectionName) -> Result<Vec<DeadLetter>, SinkError> {
        Ok(Vec::new())
    }
    async fn retry_dead_letter<P: Projection<Self>>(
        &self,
        _: Arc<P>,
        _: ProjectionName,
        _: u64,
        id: u64,
        _: RecordedEvent,
    ) -> Result<(), ApplyError> {
        Err(SinkError::DeadLetterNotFound(id).into())
    }
    async fn fail_dead_letter(
        &self,
        _: &ProjectionName,
        id: u64,
        _: String,
        _: Timestamp,
    ) -> Result<(), SinkError> {
        Err(SinkError::DeadLetterNotFound(id))
    }
    async fn skip_dead_letter(
        &self,
        _: &ProjectionName,
        id: u64,
        _: Timestamp,
    ) -> Result<(), SinkError> {
        Err(SinkError::DeadLetterNotFound(id))
    }
}

fn options(name: &str) -> ProjectionOptions {
    ProjectionOptions::new(ProjectionName::new(name).unwrap())
}

/// Appends `count` small JSON events over 1,000 streams, 1,000 per append.
async fn fill(store: &EmbeddedStore, count: u64) {
    let mut appended = 0;
    let mut i = 0u64;
    while appended < count {
        let n = 1000.min(count - appended);
        let stream = StreamName::new(format!("account-{}", i % 1000)).unwrap();
        let events = (0..n)
            .map(|_| NewEvent::json("Deposited", &serde_json::json!({"amount": 1})).unwrap())
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
        appended += n;
        i += 1;
    }
}

async fn last_position(store: &EmbeddedStore) -> Position {
    store
        .read_all(factlog_store::ReadAll::backward().limit(1))
        .await
        .unwrap()
        .first()
        .map_or(Position::START, |e| e.position)
}

/// Starts a projection and times its catch-up from the start of the log.
async fn catch_up(
    label: &str,
    events: u64,
    last: Position,
    start: impl FnOnce() -> ProjectionHandle,
) {
    let started = Instant::now();
    let handle = start();
    while handle.status().committed_position < last {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{label}: no catch-up within 300 s: {:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rebuild {label:<28} {events:>9} events in {seconds:>7.3} s = {:>10.0} events/s",
        events as f64 / seconds
    );
    handle.stop().await;
}

/// One append per millisecond for `seconds`; the latency from the append's start until the
/// projection has committed it.
async fn latency(label: &str, store: Arc<EmbeddedStore>, handle: ProjectionHandle, seconds: u64) {
    let pending: Arc<Mutex<Vec<(Position, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A watcher thread polls the committed checkpoint every 50 µs.
    let watcher = {
        let (pending, latencies, done, handle) = (
            pending.clone(),
            latencies.clone(),
            done.clone(),
            handle.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) || !pending.lock().is_empty() {
                let committed = handle.status().committed_position;
                let now = Instant::now();
                pending.lock().retain(|&(position, at)| {
                    if position <= committed {
                        latencies.lock().push(now - at);
                        false
                    } else {
                        true
                    }
                });
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let stream = StreamName::new("latency-1").unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let total = seconds * 1000;
    for _ in 0..total {
        tick.tick().await;
        let at = Instant::now();
        let event = NewEvent::json("Measured", &serde_json::json!({"at": 1})).unwrap();
        let result = store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
        pending.lock().push((result.last_position, at));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.join().unwrap();
    let mut latencies = latencies.lock().clone();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "append-to-read-model {label:<12} {} events at 1,000/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    handle.stop().await;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events: u64 = std::env::var("FACTLOG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path().join("events"), Options::default()).unwrap());
        let filled = Instant::now();
        fill(&store, events).await;
        let last = last_position(&store).await;
        println!("log: {events} events of ~60 bytes over 1,000 streams, written in {:.1?}", filled.elapsed());
        let dyn_store: Arc<dyn EventStore> = store.clone();
        let projections = Projections::new();
        let summary = || Arc::new(StreamSummary::new("summary", Interest::all()));

        catch_up("no-op handler", events, last, || {
            projections.start(dyn_store.clone(), Arc::new(NullSink::default()), Arc::new(Noop), options("noop")).unwrap()
        })
        .await;

        let sqlite = Arc::new(SqliteSink::open(dir.path().join("read-models.sqlite")).await.unwrap());
        catch_up("stream summary -> sqlite", events, last, || {
            projections.start(dyn_store.clone(), sqlite.clone(), summary(), options("summary_sqlite")).unwrap()
        })
        .await;

        let schema = format!("bench_{}", std::process::id());
        let postgres = match std::env::var("FACTLOG_TEST_POSTGRES_URL") {
            Ok(url) => Some(Arc::new(PostgresSink::connect(&url, &schema).await.unwrap())),
            Err(_) => {
                println!("rebuild stream summary -> postgres: skipped, FACTLOG_TEST_POSTGRES_URL is not set");
                None
            }
        };
        if let Some(postgres) = &postgres {
            catch_up("stream summary -> postgres", events, last, || {
                projections.start(dyn_store.clone(), postgres.clone(), summary(), options("summary_postgres")).unwrap()
            })
            .await;
        }
        let redis = match std::env::var("FACTLOG_TEST_REDIS_URL") {
            Ok(url) => Some(Arc::new(RedisSink::connect(&url, &format!("{schema}:")).await.unwrap())),
            Err(_) => {
                println!("rebuild stream summary -> redis: skipped, FACTLOG_TEST_REDIS_URL is not set");
                None
            }
        };
        if let Some(redis) = &redis {
            catch_up("stream summary -> redis", events, last, || {
                projections.start(dyn_store.clone(), redis.clone(), summary(), options("summary_redis")).unwrap()
            })
            .await;
        }

        // Latency: a caught-up projection, one durable append per millisecond.
        let handle = projections
            .start(dyn_store.clone(), sqlite.clone(), summary(), options("latency_sqlite"))
            .unwrap();
        let last = last_position(&store).await;
        while handle.status().committed_position < last {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latency("sqlite", store.clone(), handle, 10).await;
        if let Some(postgres) = &postgres {
            let handle = projections
                .start(dyn_store.clone(), postgres.clone(), summary(), options("latency_postgres"))
                .unwrap();
            let last = last_position(&store).await;
            while handle.status().committed_position < last {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latency("postgres", store.clone(), handle, 10).await;
        }
        if let Some(redis) = &redis {
            let handle = projections
                .start(dyn_store.clone(), redis.clone(), summary(), options("latency_redis"))
                .unwrap();
            let last = last_position(&store).await;
            while handle.status().committed_position < last {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latency("redis", store.clone(), handle, 10).await;
        }
        store.close();
    });
}
