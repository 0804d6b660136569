//! Scenario f: opening a large store after a clean close and after `kill -9`.
//!
//! Both opens that matter run in a fresh process, the bench's own binary started with the hidden
//! `bench-child` command: resident memory after a clean open is only meaningful in a process
//! that has not just built a large store, and a crash has to kill a real process. The child
//! talks to the bench over its stdout, one line per message.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use factlog_log::{EmbeddedStore, OpenReport, Options};
use factlog_store::{EventStore, ExpectedVersion, StreamName};
use serde_json::{Value, json};

use crate::bench::data::Payloads;
use crate::bench::scenarios::BATCH_EVENTS;
use crate::bench::sys::resident_bytes;
use crate::cmd::open_report_json;
use crate::output::Out;

/// What the child does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChildMode {
    /// Open the store, print the open's duration and resident memory as JSON, close, exit.
    Open,
    /// Open the store, append, print "ready", keep appending until killed.
    Crash,
}

/// Acknowledged appends before the crash child says it is ready.
const BATCHES_BEFORE_READY: u64 = 3;
/// The crash child stops appending after this long if nobody kills it, so that a bench that
/// died without killing it does not fill the disk.
const CRASH_APPEND_TIME_MAX: Duration = Duration::from_secs(10);

pub async fn run(dir: &Path, mode: ChildMode, out: &mut Out) -> anyhow::Result<()> {
    match mode {
        ChildMode::Open => open_and_report(dir, out),
        ChildMode::Crash => append_until_killed(dir, out).await,
    }
}

fn open_and_report(dir: &Path, out: &mut Out) -> anyhow::Result<()> {
    let before = resident_bytes();
    let started = Instant::now();
    let store = EmbeddedStore::open(dir, Options::default())
        .with_context(|| format!("could not open {}", dir.display()))?;
    let took = started.elapsed();
    let after = resident_bytes();
    out.json_line(&json!({
        "openSeconds": took.as_secs_f64(),
        "residentBytesBefore": before,
        "residentBytesAfter": after,
        "report": open_report_json(store.open_report()),
    }))?;
    out.flush()?;
    store.close();
    Ok(())
}

async fn append_until_killed(dir: &Path, out: &mut Out) -> anyhow::Result<()> {
    // The bench holds our stdin open; end of input means it is gone and nobody will kill us.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(3);
    });
    let store = EmbeddedStore::open(dir, Options::default())
        .with_context(|| format!("could not open {}", dir.display()))?;
    let payloads = Payloads::new();
    let started = Instant::now();
    let mut acked = 0u64;
    for batch in 0.. {
        if batch > BATCHES_BEFORE_READY && started.elapsed() > CRASH_APPEND_TIME_MAX {
            break;
        }
        let stream = StreamName::new(format!("crash-{batch}"))?;
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                payloads.events(acked, BATCH_EVENTS),
            )
            .await?;
        acked += BATCH_EVENTS;
        // Printed only once durable: the bench takes it as a promise the recovery must keep.
        out.line(format_args!("acked {acked}"))?;
        if batch + 1 == BATCHES_BEFORE_READY {
            out.line("ready")?;
        }
        out.flush()?;
    }
    // Keep the store open (not closed cleanly) until the bench kills us.
    std::future::pending::<()>().await;
    Ok(())
}

/// Kills the child when dropped, so that no error path leaves it running.
#[derive(Debug)]
struct ChildGuard {
    child: Child,
    lines: Receiver<std::io::Result<String>>,
}

impl ChildGuard {
    fn spawn(dir: &Path, mode: ChildMode) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("could not find this program's own binary")?;
        let mode = match mode {
            ChildMode::Open => "open",
            ChildMode::Crash => "crash",
        };
        let mut child = Command::new(&exe)
            .arg("bench-child")
            .arg("--dir")
            .arg(dir)
            .args(["--mode", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {} bench-child", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        // A thread, so that waiting for a line can time out.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// The next line; `None` at the end of the child's output.
    fn next_line(&self, deadline: Instant) -> anyhow::Result<Option<String>> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(Some(
                line.context("could not read the bench child's output")?,
            )),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => bail!("the bench child did not answer in time"),
        }
    }

    /// Waits for the child to exit on its own and checks that it succeeded.
    fn wait(&mut self) -> anyhow::Result<()> {
        let status = self
            .child
            .wait()
            .context("could not wait for the bench child")?;
        if !status.success() {
            bail!("the bench child failed ({status}); its errors are above");
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The clean open, measured in the child.
#[derive(Debug, Clone)]
pub struct CleanOpen {
    pub took: Duration,
    pub resident_bytes: Option<u64>,
    pub resident_bytes_before: Option<u64>,
    pub report: Value,
}

/// The open after `kill -9`, measured here.
#[derive(Debug, Clone)]
pub struct CrashOpen {
    pub took: Duration,
    pub report: OpenReport,
    /// Events the child had acknowledged when it was killed (beyond the store it opened).
    pub acked: u64,
    /// Events in the store before the child appended, and after recovery.
    pub events_before: u64,
    pub events_after: u64,
}

impl CrashOpen {
    /// Whether every acknowledged event survived the kill.
    pub fn kept_acknowledged(&self) -> bool {
        self.events_after >= self.events_before + self.acked
    }
}

/// Opens the closed store in `dir` in a child process.
pub fn clean_open(dir: &Path, timeout: Duration) -> anyhow::Result<CleanOpen> {
    let deadline = Instant::now() + timeout;
    let mut child = ChildGuard::spawn(dir, ChildMode::Open)?;
    let line = child
        .next_line(deadline)?
        .ok_or_else(|| anyhow!("the bench child ended without reporting its open"))?;
    // The child closes the store (and releases its lock) before it exits.
    child.wait()?;
    let value: Value = serde_json::from_str(&line)
        .with_context(|| format!("the bench child printed {line:?}, not its JSON report"))?;
    let took = value["openSeconds"]
        .as_f64()
        .ok_or_else(|| anyhow!("the bench child's report has no openSeconds: {line}"))?;
    Ok(CleanOpen {
        took: Duration::from_secs_f64(took),
        resident_bytes: value["residentBytesAfter"].as_u64(),
        resident_bytes_before: value["residentBytesBefore"].as_u64(),
        report: value["report"].clone(),
    })
}

/// Starts a child appending to the store in `dir`, kills it with SIGKILL while it appends,
/// then opens the store here and times it.
pub fn crash_open(dir: &Path, events_before: u64, timeout: Duration) -> anyhow::Result<CrashOpen> {
    let deadline = Instant::now() + timeout;
    let mut child = ChildGuard::spawn(dir, ChildMode::Crash)?;
    let mut acked = 0;
    loop {
        match child.next_line(deadline)?.as_deref() {
            Some("ready") => break,
            Some(line) => acked = parse_acked(line)?.max(acked),
            None => {
                child.wait()?;
                bail!("the bench child ended before it was ready");
            }
        }
    }
    // Let it write a little more, so that the kill lands in the middle of appending.
    std::thread::sleep(Duration::from_millis(50));
    // `Child::kill` is SIGKILL on Unix: no destructor, no close, no snapshot.
    child
        .child
        .kill()
        .context("could not kill the bench child")?;
    child
        .child
        .wait()
        .context("could not reap the bench child")?;
    // Everything it acknowledged before dying must survive.
    while let Some(line) = child.next_line(deadline)? {
        if line != "ready" {
            acked = parse_acked(&line)?.max(acked);
        }
    }
    let started = Instant::now();
    let store = EmbeddedStore::open(dir, Options::default())
        .with_context(|| format!("could not open {} after kill -9", dir.display()))?;
    let took = started.elapsed();
    let report = store.open_report().clone();
    let events_after = store.stats().events;
    store.close();
    Ok(CrashOpen {
        took,
        report,
        acked,
        events_before,
        events_after,
    })
}

fn parse_acked(line: &str) -> anyhow::Result<u64> {
    line.strip_prefix("acked ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            anyhow!("the bench child printed {line:?}; expected \"acked N\" or \"ready\"")
        })
}
