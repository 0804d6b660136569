//! Crash test: a child process appends with concurrent writers and reports every acknowledged
//! append on stdout; the parent kills it with SIGKILL at a random moment, reopens the store and
//! checks that every acknowledged event is there at its version and position, with no gap and no
//! duplicate. Repeats for `FACTLOG_CRASH_CYCLES` cycles (default 50). The seed is printed, and
//! `FACTLOG_CRASH_SEED` replays a run.
//!
//! The test binary is its own child: run with `--child DIR CYCLE` it is the writer.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use factlog_log::{EmbeddedStore, Options};
use factlog_store::{EventId, EventStore, ExpectedVersion, NewEvent};
use rand::{Rng, SeedableRng};

/// Small segments and frequent index checkpoints, so that kills also land in segment rolls and
/// in checkpoint saves, and reopening loads checkpoints written by killed processes.
fn options() -> Options {
    Options {
        segment_bytes_max: 1024 * 1024,
        checkpoint_bytes: 256 * 1024,
        ..Options::default()
    }
}

const WRITERS: u64 = 8;

/// The id of event `i` of append `seq` by `writer` in `cycle`: the parent recomputes it.
fn event_id(cycle: u64, writer: u64, seq: u64, i: u64) -> EventId {
    let v = (u128::from(cycle) << 96)
        | (u128::from(writer) << 64)
        | (u128::from(seq) << 8)
        | u128::from(i);
    EventId::from_bytes(v.to_be_bytes())
}

fn child(dir: &str, cycle: u64) {
    let rt = rt();
    rt.block_on(async {
        let store = std::sync::Arc::new(EmbeddedStore::open(dir, options()).unwrap());
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0.. {
                    let s = stream(&format!("crash-{}", (writer + seq) % 5));
                    let count = 1 + (seq % 3);
                    let events: Vec<NewEvent> = (0..count)
                        .map(|i| {
                            event("Crashed", seq, 64 + (seq as usize % 200))
                                .with_id(event_id(cycle, writer, seq, i))
                        })
                        .collect();
                    let r = store
                        .append(&s, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                    // Format: ack <stream> <first version> <count> <first position> <cycle> <writer> <seq>
                    let line = format!(
                        "ack {s} {} {count} {} {cycle} {writer} {seq}\n",
                        r.first_version,
                        r.first_position.raw()
                    );
                    let mut out = out.lock().unwrap();
                    out.write_all(line.as_bytes()).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

struct Ack {
    stream: String,
    first_version: u64,
    count: u64,
    first_position: u64,
    cycle: u64,
    writer: u64,
    seq: u64,
}

fn parse(line: &str) -> Ack {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f[0], "ack", "unexpected child output {line:?}");
    let n = |i: usize| f[i].parse::<u64>().unwrap();
    Ack {
        stream: f[1].into(),
        first_version: n(2),
        count: n(3),
        first_position: n(4),
        cycle: n(5),
        writer: n(6),
        seq: n(7),
    }
}

fn parent() {
    let cycles: u64 = std::env::var("FACTLOG_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("FACTLOG_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("crash: {cycles} cycles, seed {seed} (FACTLOG_CRASH_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let rt = rt();
    let mut acked: Vec<Ack> = Vec::new();
    let mut truncated_total = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["--child", dir.path().to_str().unwrap(), &cycle.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after_acks: usize = rng.gen_range(0..400);
        let kill_after = Duration::from_micros(rng.gen_range(0..30_000));
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let mut seen = 0;
        // Wait for some acknowledgements (or none), then kill at a random moment.
        while seen < kill_after_acks && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => {
                    acked.push(parse(&line));
                    seen += 1;
                }
                _ => break,
            }
        }
        let wait = kill_after.saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        child.kill().unwrap();
        child.wait().unwrap();
        // Every line the child wrote before dying was an acknowledged append.
        for line in lines.map_while(Result::ok) {
            acked.push(parse(&line));
        }
        let store = EmbeddedStore::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): reopen failed: {e}"));
        truncated_total += store.open_report().truncated_bytes;
        rt.block_on(check(&store, &acked, cycle, seed));
    }
    println!(
        "crash: {} acknowledged appends survived {cycles} kills; {truncated_total} torn bytes cut",
        acked.len()
    );
}

async fn check(store: &EmbeddedStore, acked: &[Ack], cycle: u64, seed: u64) {
    let all = all_events(store).await;
    // No gap, no duplicate: positions are 1..=n, ids are unique, versions are dense per stream.
    let mut ids = HashSet::new();
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            e.position.raw(),
            i as u64 + 1,
            "cycle {cycle} seed {seed}: gap in positions"
        );
        assert!(
            ids.insert(e.id),
            "cycle {cycle} seed {seed}: duplicate event id {}",
            e.id
        );
        let next = versions.entry(e.stream.to_string()).or_default();
        assert_eq!(
            e.version, *next,
            "cycle {cycle} seed {seed}: gap in {}",
            e.stream
        );
        *next += 1;
    }
    // Every acknowledged event is there, at its version and position, with its id.
    for a in acked {
        for i in 0..a.count {
            // Positions start at 1, so position p is the (p - 1)th event of $all.
            let e = &all
                .get((a.first_position + i - 1) as usize)
                .unwrap_or_else(|| {
                    panic!(
                        "cycle {cycle} seed {seed}: acknowledged position {} is lost",
                        a.first_position + i
                    )
                });
            assert_eq!(e.stream.as_str(), a.stream, "cycle {cycle} seed {seed}");
            assert_eq!(e.version, a.first_version + i, "cycle {cycle} seed {seed}");
            assert_eq!(
                e.id,
                event_id(a.cycle, a.writer, a.seq, i),
                "cycle {cycle} seed {seed}"
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--child" {
        child(&args[2], args[3].parse().unwrap());
        return;
    }
    // `cargo test` passes filters and flags such as `--quiet`; this test has a single case.
    if args
        .iter()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"crash".contains(a.as_str()))
    {
        println!("crash: filtered out");
        return;
    }
    parent();
    println!("test result: ok. 1 passed; 0 failed; 0 ignored");
}
