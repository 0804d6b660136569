//! `factlog bench`: the command line of the benchmark suite; the suite itself is in
//! [`crate::bench`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bench::{self, Config, child::ChildMode};
use crate::output::Out;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Scenarios: a. fsync latency of the disk, b. batched durable appends, c. concurrent writers,
d. read $all from a warm cache, e. read 100-event streams from a large store, f. open that store
after a clean close and after kill -9. Each row shows the measured figure, its target, the ratio
(above 1 is better than the target) and whether the target is met.

The store goes in a temporary directory, removed afterwards: in --dir if given, else beside the
data directory when it exists (to measure its disk), else in the system's temporary directory.")]
pub struct Args {
    /// Events appended by each write scenario (b and c); each also stops at its time budget.
    /// Default 1,000,000 (10,000 with --quick).
    #[arg(long, value_name = "N")]
    events: Option<u64>,

    /// Events of the large store of scenarios e and f, in streams of 100 events.
    /// Default 1,000,000 (10,000 with --quick); docs/benchmarks.md uses 10,000,000.
    #[arg(long, value_name = "N")]
    store_events: Option<u64>,

    /// Seconds each timed scenario may run before it stops and reports what it measured.
    /// Default 30 (2 with --quick).
    #[arg(long, value_name = "S")]
    scenario_seconds: Option<u64>,

    /// Small sizes everywhere: a smoke test in seconds, not a measurement to compare with
    /// the targets.
    #[arg(long)]
    quick: bool,

    /// Put the temporary bench directory in this directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub async fn run(data_dir: &Path, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let mut config = if args.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(events) = args.events {
        config.events = events;
    }
    if let Some(store_events) = args.store_events {
        config.store_events = store_events;
    }
    if let Some(seconds) = args.scenario_seconds {
        config.scenario_time = Duration::from_secs(seconds);
    }
    let base = match args.dir {
        Some(dir) => dir,
        None => bench::default_base_dir(data_dir),
    };
    bench::run(config, &base, out).await
}

/// The hidden `bench-child` command: a store in another process, for scenario f.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// The store's directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,

    #[arg(long, value_enum)]
    mode: ChildMode,
}

pub async fn run_child(args: ChildArgs, out: &mut Out) -> anyhow::Result<()> {
    bench::child::run(&args.dir, args.mode, out).await
}
