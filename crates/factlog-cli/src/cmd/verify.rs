//! `factlog verify`: check every record of a closed store and its saved index.
//!
//! Verify changes nothing. It fails (exit 1) on the first bad record, naming the file and the
//! byte offset, so that the damage can be inspected before the store is repaired.

use anyhow::{Context, bail};
use factlog_log::Options;
use serde_json::json;

use crate::cmd::Location;
use crate::cmd::plural;
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(target: &Location, _args: Args, out: &mut Out) -> anyhow::Result<()> {
    let dir = target.local_dir(
        "verify",
        "it reads the files of a closed store; verify a backup of the server instead",
    )?;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass --data-dir DIR or set FACTLOG_DATA_DIR to the store's directory",
            dir.display()
        );
    }
    let report = factlog_log::verify(dir, &Options::default())
        .with_context(|| format!("verify of {} failed", dir.display()))?;
    if out.json() {
        out.json_line(&json!({
            "ok": true,
            "dir": dir.display().to_string(),
            "segments": report.segments,
            "events": report.events,
            "streams": report.streams,
            "bytesChecked": report.bytes,
            "snapshotChecked": report.snapshot_checked,
        }))?;
    } else {
        out.line(format_args!(
            "ok: {} checked: {}, {}, {}, {} bytes",
            dir.display(),
            plural(u64::from(report.segments), "segment"),
            plural(report.events, "event"),
            plural(report.streams, "stream"),
            report.bytes
        ))?;
        out.line(if report.snapshot_checked {
            "the index snapshot matches the log"
        } else {
            "no index snapshot was found, so only the log was checked"
        })?;
    }
    Ok(())
}
