//! The benchmark suite of `factlog bench`: the embedded store measured against its targets.
//!
//! Scenarios, in the order they run (each row of the result names its letter):
//! - a. the disk's fsync latency (4 KiB append + `sync_data`): the floor under durable appends;
//! - b. batched durable appends, one writer, 1000 events per append (target >= 500,000 events/s);
//! - c. 64 concurrent writers, one event per append, each awaiting its acknowledgement
//!   (targets >= 50,000 events/s and p99 latency <= 10 ms);
//! - d. reading `$all` from a warm cache in pages of 4096 (target >= 3,000,000 events/s);
//! - e. a large store of 100-event streams, random whole-stream reads (target p99 <= 1 ms);
//! - f. opening that store after a clean close (targets <= 1 s and <= 1 GiB resident) and
//!   after `kill -9` of a process appending to it (target <= 3 s);
//! - g, h, i. the HTTP server: single-event appends from 64 keep-alive connections (target at
//!   least 20,000 events/s), batched POSTs of 100 events (target at least 300,000 events/s),
//!   and 100 SSE subscribers following a writer at 10,000 events/s (p99 delivery delay); see
//!   [`http`].
//!
//! Everything happens in a temporary directory that is removed at the end, also on Ctrl-C.
//! Nothing is hard-coded: every figure is measured in this run, and a scenario cut short by
//! its time budget says so.

pub mod child;
pub mod compare;
mod data;
mod http;
pub mod kafka;
mod report;
mod scenarios;
mod sys;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use factlog_log::{EmbeddedStore, Options, SyncMode};
use factlog_store::EventStore;
use serde_json::json;

use crate::bench::data::{DATA_BYTES, Payloads};
use crate::bench::report::{Goal, Report, Row, Unit};
use crate::bench::scenarios::{BATCH_EVENTS, READ_ALL_PAGE, STREAM_EVENTS, Throughput, WRITERS};
use crate::bench::sys::{millis, percentile, size, thousands};
use crate::cmd::{index_source_name, open_report_json};
use crate::output::Out;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Sizes and budgets of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Events appended by scenarios b and c (each).
    pub events: u64,
    /// Events of the large store of scenarios e and f.
    pub store_events: u64,
    /// Writes of scenario a.
    pub fsync_iterations: usize,
    /// Stream reads of scenario e.
    pub stream_reads: usize,
    /// Time each timed loop may take.
    pub scenario_time: Duration,
    pub quick: bool,
}

impl Config {
    pub fn full() -> Self {
        Self {
            events: 1_000_000,
            store_events: 1_000_000,
            fsync_iterations: 200,
            stream_reads: 10_000,
            scenario_time: Duration::from_secs(30),
            quick: false,
        }
    }

    pub fn quick() -> Self {
        Self {
            events: 10_000,
            store_events: 10_000,
            fsync_iterations: 20,
            stream_reads: 200,
            scenario_time: Duration::from_secs(2),
            quick: true,
        }
    }

    /// How long a child process may take to open the large store and answer: generous, since
    /// a slow open is a result to report, not a reason to give up.
    fn child_timeout(&self) -> Duration {
        Duration::from_secs(120).max(self.scenario_time * 4)
    }
}

/// Where the temporary bench directory goes by default: beside the data directory when it
/// exists, so that the figures are those of the disk the store really uses; otherwise the
/// system's temporary directory.
pub fn default_base_dir(data_dir: &Path) -> PathBuf {
    if let Ok(data_dir) = data_dir.canonicalize()
        && let Some(parent) = data_dir.parent()
    {
        return parent.to_path_buf();
    }
    std::env::temp_dir()
}

pub async fn run(config: Config, base: &Path, out: &mut Out) -> anyhow::Result<()> {
    std::fs::create_dir_all(base).with_context(|| {
        format!(
            "could not create the bench directory's parent {}",
            base.display()
        )
    })?;
    let dir = tempfile::Builder::new()
        .prefix("factlog-bench-")
        .tempdir_in(base)
        .with_context(|| {
            format!(
                "could not create a temporary directory in {}; pass --dir DIR on a writable disk",
                base.display()
            )
        })?;
    let progress = !out.json();
    let result = tokio::select! {
        result = run_in(&config, dir.path(), progress) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted by Ctrl-C; no results")),
    };
    let path = dir.path().display().to_string();
    let removed = dir
        .close()
        .with_context(|| format!("could not remove the bench directory {path}; remove it by hand"));
    let (report, lost) = result?;
    removed?;
    if out.json() {
        out.json_line(&report.json())?;
    } else {
        out.line(report.text())?;
    }
    if lost {
        bail!("acknowledged events were lost in the kill -9 scenario; see the notes above");
    }
    Ok(())
}

fn progress(enabled: bool, message: &str) {
    if enabled {
        eprintln!("bench: {message}");
    }
}

/// Runs every scenario in `dir`; the report, and whether acknowledged events were lost.
async fn run_in(config: &Config, dir: &Path, show: bool) -> anyhow::Result<(Report, bool)> {
    let mut report = Report::default();
    describe_setup(config, dir, &mut report);
    let payloads = Arc::new(Payloads::new());
    let budget = config.scenario_time;

    progress(show, "a. fsync latency");
    let fsync = {
        let dir = dir.to_path_buf();
        let iterations = config.fsync_iterations;
        tokio::task::spawn_blocking(move || scenarios::fsync_latency(&dir, iterations, budget))
            .await
            .context("the fsync probe panicked")??
    };
    let name = "fsync latency";
    let n = fsync.len() as u64;
    report.push(
        Row::new('a', name, "p50 (4 KiB append + sync_data)", Unit::Seconds)
            .latency(percentile(&fsync, 50.0), n),
    );
    report.push(
        Row::new('a', name, "p99 (4 KiB append + sync_data)", Unit::Seconds)
            .latency(percentile(&fsync, 99.0), n),
    );
    report.note(format!(
        "a: {n} appends of 4 KiB, each followed by sync_data; max {}",
        millis(fsync.last().copied().unwrap_or_default())
    ));

    let throughput_dir = dir.join("throughput");
    let store = Arc::new(open_store(&throughput_dir, Options::default())?);
    let shared: Arc<dyn EventStore> = store.clone();

    progress(show, "b. batched durable appends");
    let batched = scenarios::batched_appends(&*shared, &payloads, config.events, budget).await?;
    report.push(
        Row::new(
            'b',
            "batched durable appends",
            "1 writer x 1000 events/append",
            Unit::EventsPerSecond,
        )
        .measured(batched.per_second(), batched.events)
        .goal(Goal::AtLeast(500_000.0)),
    );
    report.note(format!(
        "b: {} events in {} appends of {BATCH_EVENTS} in {:.2} s{}",
        thousands(batched.events as f64),
        batched.events.div_ceil(BATCH_EVENTS),
        batched.elapsed.as_secs_f64(),
        budget_note(&batched, budget)
    ));

    progress(show, "c. concurrent writers");
    let before = store.stats();
    let (concurrent, latencies) =
        scenarios::concurrent_writers(shared.clone(), payloads.clone(), config.events, budget)
            .await?;
    let after = store.stats();
    let name = "concurrent writers";
    let n = latencies.len() as u64;
    report.push(
        Row::new(
            'c',
            name,
            "64 writers x 1 event/append",
            Unit::EventsPerSecond,
        )
        .measured(concurrent.per_second(), n)
        .goal(Goal::AtLeast(50_000.0)),
    );
    report.push(
        Row::new('c', name, "p50 append latency", Unit::Seconds)
            .latency(percentile(&latencies, 50.0), n),
    );
    report.push(
        Row::new('c', name, "p99 append latency", Unit::Seconds)
            .latency(percentile(&latencies, 99.0), n)
            .goal(Goal::AtMost(0.010)),
    );
    let commits = after.write_batches - before.write_batches;
    report.note(format!(
        "c: {} appends by {WRITERS} writers in {:.2} s, in {} group commits ({:.1} appends per fsync){}",
        thousands(n as f64),
        concurrent.elapsed.as_secs_f64(),
        thousands(commits as f64),
        n as f64 / commits.max(1) as f64,
        budget_note(&concurrent, budget)
    ));

    progress(show, "d. read $all from a warm cache");
    let read_all = scenarios::read_all_warm(&*shared, budget).await?;
    report.push(
        Row::new(
            'd',
            "read $all, warm cache",
            "pages of 4096",
            Unit::EventsPerSecond,
        )
        .measured(read_all.per_second(), read_all.events)
        .goal(Goal::AtLeast(3_000_000.0)),
    );
    report.note(format!(
        "d: second full pass over {} events (the first warmed the cache) in {:.3} s, read_all pages of {READ_ALL_PAGE}{}",
        thousands(read_all.events as f64),
        read_all.elapsed.as_secs_f64(),
        budget_note(&read_all, budget)
    ));
    drop(shared);
    store.close();
    drop(store);

    http_scenarios(config, &dir.join("http"), &payloads, &mut report, show).await?;

    // Free the disk before the large store is built.
    std::fs::remove_dir_all(&throughput_dir)
        .with_context(|| format!("could not remove {}", throughput_dir.display()))?;

    let large_dir = dir.join("large");
    let streams = (config.store_events / STREAM_EVENTS).max(1);
    progress(
        show,
        &format!(
            "e. building a store of {} events in {} streams",
            thousands((streams * STREAM_EVENTS) as f64),
            thousands(streams as f64)
        ),
    );
    // Bulk import mode: the store is set-up here, not a figure; it is synced on close.
    let bulk = Options {
        sync_mode: SyncMode::BulkImport,
        ..Options::default()
    };
    let store = Arc::new(open_store(&large_dir, bulk)?);
    let shared: Arc<dyn EventStore> = store.clone();
    let build = scenarios::build_large_store(shared.clone(), payloads.clone(), streams).await?;
    report.note(format!(
        "e: built {} events ({} streams of {STREAM_EVENTS}) in {:.2} s ({} events/s) in bulk import \
         mode, 10 streams per append_multi; {} of segments",
        thousands(build.events as f64),
        thousands(streams as f64),
        build.elapsed.as_secs_f64(),
        thousands(build.per_second()),
        size(store.stats().bytes_written as f64)
    ));
    progress(show, "e. reading random 100-event streams");
    let reads =
        scenarios::read_random_streams(&*shared, streams, config.stream_reads, budget).await?;
    let name = "read 100-event streams";
    let n = reads.len() as u64;
    report.push(
        Row::new('e', name, "p50 latency", Unit::Seconds).latency(percentile(&reads, 50.0), n),
    );
    report.push(
        Row::new('e', name, "p99 latency", Unit::Seconds)
            .latency(percentile(&reads, 99.0), n)
            .goal(Goal::AtMost(0.001)),
    );
    report.note(format!(
        "e: {} reads of a random whole stream (warm page cache: the store was just written){}",
        thousands(n as f64),
        if (n as usize) < config.stream_reads {
            " - stopped by the time budget"
        } else {
            ""
        }
    ));
    drop(shared);
    store.close();
    drop(store);

    progress(show, "f. open after a clean close");
    let timeout = config.child_timeout();
    let clean = {
        let large_dir = large_dir.clone();
        tokio::task::spawn_blocking(move || child::clean_open(&large_dir, timeout))
            .await
            .context("the clean open panicked")??
    };
    let name = "open after clean close";
    report.push(
        Row::new('f', name, "open duration", Unit::Seconds)
            .latency(clean.took, build.events)
            .goal(Goal::AtMost(1.0)),
    );
    let mut rss =
        Row::new('f', name, "resident memory (VmRSS)", Unit::Bytes).goal(Goal::AtMost(GIB));
    if let Some(bytes) = clean.resident_bytes {
        rss = rss.measured(bytes as f64, build.events);
    }
    report.push(rss);
    report.note(format!(
        "f: clean open of {} events in a fresh process: index from {}; resident {} before the open, {} after",
        thousands(build.events as f64),
        clean.report["indexSource"].as_str().unwrap_or("?"),
        clean.resident_bytes_before.map_or("n/a".into(), |b| size(b as f64)),
        clean.resident_bytes.map_or("n/a".into(), |b| size(b as f64)),
    ));
    report
        .details
        .insert("cleanOpen".into(), clean.report.clone());

    progress(show, "f. open after kill -9");
    let events_before = clean.report["events"].as_u64().unwrap_or(build.events);
    let crash = {
        let large_dir = large_dir.clone();
        tokio::task::spawn_blocking(move || child::crash_open(&large_dir, events_before, timeout))
            .await
            .context("the crash scenario panicked")??
    };
    report.push(
        Row::new('f', "open after kill -9", "open duration", Unit::Seconds)
            .latency(crash.took, crash.events_after)
            .goal(Goal::AtMost(3.0)),
    );
    let r = &crash.report;
    report.note(format!(
        "f: after kill -9 of a process appending 1000-event batches: index {}{}, {} bytes checked, \
         {} bytes truncated{}; open took {} (report: {})",
        index_source_name(r.index_source),
        r.snapshot_problem
            .as_ref()
            .map_or(String::new(), |p| format!(" (snapshot unused: {p})")),
        thousands(r.checked_bytes as f64),
        thousands(r.truncated_bytes as f64),
        r.truncated_at
            .as_ref()
            .map_or(String::new(), |(file, offset)| format!(
                " at {file} offset {offset}"
            )),
        millis(crash.took),
        millis(r.duration),
    ));
    let lost = !crash.kept_acknowledged();
    report.note(if lost {
        format!(
            "f: ACKNOWLEDGED EVENTS LOST: the child acknowledged {} events beyond {}, but the \
             recovered store holds {}",
            crash.acked, crash.events_before, crash.events_after
        )
    } else {
        format!(
            "f: all {} events the killed process had acknowledged were there after recovery",
            thousands(crash.acked as f64)
        )
    });
    let mut crash_json = open_report_json(&crash.report);
    if let Some(object) = crash_json.as_object_mut() {
        object.insert("acknowledgedEvents".into(), json!(crash.acked));
        object.insert("eventsBefore".into(), json!(crash.events_before));
        object.insert("eventsAfter".into(), json!(crash.events_after));
        object.insert("keptAcknowledged".into(), json!(!lost));
    }
    report.details.insert("crashOpen".into(), crash_json);
    Ok((report, lost))
}

/// g, h, i: the server on its own store, over HTTP.
async fn http_scenarios(
    config: &Config,
    dir: &Path,
    payloads: &Arc<Payloads>,
    report: &mut Report,
    show: bool,
) -> anyhow::Result<()> {
    let budget = config.scenario_time;
    let store = Arc::new(open_store(dir, Options::default())?);
    let server_config = factlog_server::Config {
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        ..factlog_server::Config::default()
    };
    let server = factlog_server::Server::start(
        server_config,
        factlog_server::Backend::embedded(store.clone()),
    )
    .await
    .context("could not start the server")?;
    let base = server.url();

    progress(show, "g. HTTP single-event appends");
    let (single, latencies) = http::appends(
        &base,
        payloads.clone(),
        http::SINGLE_CONNECTIONS,
        1,
        config.events,
        budget,
    )
    .await?;
    let name = "HTTP single-event appends";
    let n = latencies.len() as u64;
    report.push(
        Row::new(
            'g',
            name,
            "64 keep-alive connections",
            Unit::EventsPerSecond,
        )
        .measured(single.per_second(), single.events)
        .goal(Goal::AtLeast(20_000.0)),
    );
    report.push(
        Row::new('g', name, "p99 request latency", Unit::Seconds)
            .latency(percentile(&latencies, 99.0), n),
    );
    report.note(format!(
        "g: {} POSTs of 1 event by {} connections in {:.2} s{}",
        thousands(n as f64),
        http::SINGLE_CONNECTIONS,
        single.elapsed.as_secs_f64(),
        budget_note(&single, budget)
    ));

    progress(show, "h. HTTP batched appends");
    let (batched, latencies) = http::appends(
        &base,
        payloads.clone(),
        http::BATCH_CONNECTIONS,
        http::BATCH_EVENTS,
        config.events,
        budget,
    )
    .await?;
    let n = latencies.len() as u64;
    report.push(
        Row::new(
            'h',
            "HTTP batched appends",
            "POSTs of 100 events, 8 connections",
            Unit::EventsPerSecond,
        )
        .measured(batched.per_second(), batched.events)
        .goal(Goal::AtLeast(300_000.0)),
    );
    report.note(format!(
        "h: {} POSTs of {} events by {} connections in {:.2} s; p99 request {}{}",
        thousands(n as f64),
        http::BATCH_EVENTS,
        http::BATCH_CONNECTIONS,
        batched.elapsed.as_secs_f64(),
        millis(percentile(&latencies, 99.0)),
        budget_note(&batched, budget)
    ));

    progress(show, "i. SSE subscribers following a writer");
    let follow_time = if config.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let follow = http::subscribers_follow(&base, follow_time).await?;
    let name = "SSE subscribers";
    let n = follow.delays.len() as u64;
    report.push(
        Row::new('i', name, "p50 delivery delay", Unit::Seconds)
            .latency(percentile(&follow.delays, 50.0), n),
    );
    report.push(
        Row::new('i', name, "p99 delivery delay", Unit::Seconds)
            .latency(percentile(&follow.delays, 99.0), n),
    );
    report.note(format!(
        "i: {} subscribers, a writer of {} events/s ({} events in {:.2} s, 10 per POST); {} of {} \
         deliveries arrived; delay from the append request to arrival at the subscriber",
        http::SUBSCRIBERS,
        thousands(http::FOLLOW_RATE as f64),
        thousands(follow.written as f64),
        follow.elapsed.as_secs_f64(),
        thousands(follow.delivered as f64),
        thousands(follow.expected as f64),
    ));
    if follow.delivered != follow.expected {
        report.note(format!(
            "i: DELIVERIES MISSING: {} expected, {} arrived",
            follow.expected, follow.delivered
        ));
    }
    server.shutdown().await;
    store.close();
    drop(store);
    std::fs::remove_dir_all(dir).with_context(|| format!("could not remove {}", dir.display()))
}

fn open_store(dir: &Path, options: Options) -> anyhow::Result<EmbeddedStore> {
    EmbeddedStore::open(dir, options).with_context(|| format!("could not open {}", dir.display()))
}

fn budget_note(throughput: &Throughput, budget: Duration) -> String {
    if throughput.stopped_early {
        format!(" - stopped by the {} s time budget", budget.as_secs_f64())
    } else {
        String::new()
    }
}

fn describe_setup(config: &Config, dir: &Path, report: &mut Report) {
    report.setup("bench directory", dir.display().to_string());
    match sys::filesystem(dir) {
        Some((fs_type, mount)) => {
            report.setup("filesystem", format!("{fs_type} (mounted at {mount})"));
            if fs_type == "tmpfs" || fs_type == "ramfs" {
                report.note(format!(
                    "the bench directory is on {fs_type}, where fsync does nothing: durable write \
                     figures are not those of a disk; pass --dir DIR on the store's disk"
                ));
            }
        }
        None => report.setup("filesystem", "unknown"),
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    report.setup("cores", cores.to_string());
    let build = if cfg!(debug_assertions) {
        "debug (figures far below a release build: use `cargo run --release -p factlog-cli -- bench`)"
    } else {
        "release"
    };
    report.setup("build", build);
    report.setup(
        "sizes",
        format!(
            "{} events per write scenario, {} events in the large store, {DATA_BYTES}-byte data, \
             {} s budget per scenario{}",
            thousands(config.events as f64),
            thousands(config.store_events as f64),
            config.scenario_time.as_secs_f64(),
            if config.quick { " (--quick)" } else { "" }
        ),
    );
    if config.quick {
        report.note(
            "--quick: sizes are far too small to compare with the targets; this run checks \
             that every scenario works",
        );
    }
}
