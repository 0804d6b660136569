//! `factlog backup`: an online, consistent copy of the store into a new directory; and the
//! progress bar the long-running commands share.
//!
//! The copy holds every event committed when the backup starts and ends at a whole append; a
//! directory without its `BACKUP.json` is a backup that did not finish. The store in
//! `--data-dir` is opened by this command, so it cannot run while a server holds the directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cmd::{open_existing, plural};
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write the backup to; it must not exist or be empty.
    #[arg(value_name = "DEST")]
    dest: PathBuf,
}

pub fn run(dir: &Path, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let store = open_existing(dir)?;
    let bar = progress_bar(Unit::Bytes, "backup");
    let started = Instant::now();
    let result = store.backup_with_progress(&args.dest, &mut |p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
    });
    bar.finish_and_clear();
    store.close();
    let report = result.with_context(|| {
        format!(
            "backup of {} into {} failed",
            dir.display(),
            args.dest.display()
        )
    })?;
    let took = started.elapsed();
    if out.json() {
        out.json_line(&json!({
            "dir": dir.display().to_string(),
            "backup": args.dest.display().to_string(),
            "events": report.events,
            "endPosition": report.end_position.to_string(),
            "segments": report.segments,
            "bytes": report.bytes,
            "indexSnapshot": report.index_snapshot,
            "createdAt": report.created_at.to_rfc3339_millis(),
            "durationMillis": took.as_secs_f64() * 1000.0,
        }))?;
    } else {
        out.line(format_args!(
            "backed up {} ({}, {} bytes) of {} into {} in {:.1} s",
            plural(report.events, "event"),
            plural(u64::from(report.segments), "segment"),
            report.bytes,
            dir.display(),
            args.dest.display(),
            took.as_secs_f64()
        ))?;
        if !report.index_snapshot {
            out.line("the index snapshot was left out: the restored store rebuilds its index when first opened")?;
        }
    }
    Ok(())
}

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Bytes,
    Events,
}

/// A progress bar on stderr when stderr is a terminal, and a hidden one otherwise, so that
/// scripts and logs see only the result. Its length can be set later.
pub fn progress_bar(unit: Unit, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        Unit::Events => "{msg} [{bar:40}] {human_pos}/{human_len} events {per_sec} eta {eta}",
    };
    let style = ProgressStyle::with_template(template)
        .expect("the template is valid")
        .progress_chars("=> ");
    ProgressBar::new(0)
        .with_style(style)
        .with_message(what.to_owned())
}
