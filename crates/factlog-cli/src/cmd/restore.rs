//! `factlog restore`: a backup from `factlog backup` into `--data-dir`, which must not exist or
//! be empty.
//!
//! Every file is checked against the backup's manifest (length and CRC32C) as it is copied; a
//! damaged backup is refused, naming the file, and leaves nothing behind. The restored store is
//! opened once to prove that it works.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use factlog_log::Options;
use serde_json::json;

use crate::cmd::Location;
use crate::cmd::backup::{Unit, progress_bar};
use crate::cmd::plural;
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A directory written by `factlog backup`.
    #[arg(value_name = "BACKUP_DIR")]
    backup_dir: PathBuf,
}

pub fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let dir = target.local_dir("restore", "a server's store cannot be replaced while it runs; stop the server and restore into its data directory")?;
    let bar = progress_bar(Unit::Bytes, "restore");
    let started = Instant::now();
    let result =
        factlog_log::restore_with_progress(&args.backup_dir, dir, Options::default(), &mut |p| {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
        });
    bar.finish_and_clear();
    let report = result.with_context(|| {
        format!(
            "restore of {} into {} failed",
            args.backup_dir.display(),
            dir.display()
        )
    })?;
    let took = started.elapsed();
    if out.json() {
        out.json_line(&json!({
            "dir": dir.display().to_string(),
            "backup": args.backup_dir.display().to_string(),
            "events": report.events,
            "endPosition": report.end_position.to_string(),
            "segments": report.segments,
            "bytes": report.bytes,
            "backupCreatedAt": report.created_at.to_rfc3339_millis(),
            "durationMillis": took.as_secs_f64() * 1000.0,
        }))?;
    } else {
        out.line(format_args!(
            "restored {} ({}, {} bytes) from {} (taken {}) into {} in {:.1} s",
            plural(report.events, "event"),
            plural(u64::from(report.segments), "segment"),
            report.bytes,
            args.backup_dir.display(),
            report.created_at.to_rfc3339_millis(),
            dir.display(),
            took.as_secs_f64()
        ))?;
    }
    Ok(())
}
