//! `factlog stats`: the store's size, and what opening it found and did.

use std::path::Path;

use factlog_log::IndexSource;
use serde_json::json;

use crate::cmd::Location;
use crate::cmd::{index_source_name, open_existing, open_report_json};
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(target: &Location, _args: Args, out: &mut Out) -> anyhow::Result<()> {
    let dir = target.local_dir(
        "stats",
        "it reports what opening the files found; use GET /admin/stats or /metrics of the server",
    )?;
    let store = open_existing(dir)?;
    let stats = store.stats();
    let report = store.open_report().clone();
    store.close();
    let index_source = index_source_name(report.index_source);
    let segment_bytes = segment_bytes(dir);
    if out.json() {
        out.json_line(&json!({
            "dir": dir.display().to_string(),
            "events": stats.events,
            "streams": stats.streams,
            "segments": stats.segments,
            "segmentBytes": segment_bytes,
            "open": open_report_json(&report),
        }))?;
        return Ok(());
    }
    out.line(format_args!("store:             {}", dir.display()))?;
    out.line(format_args!("events:            {}", stats.events))?;
    out.line(format_args!("streams:           {}", stats.streams))?;
    out.line(format_args!("segments:          {}", stats.segments))?;
    if let Some(bytes) = segment_bytes {
        out.line(format_args!("segment bytes:     {bytes}"))?;
    }
    out.line("opening the store:")?;
    out.line(format_args!(
        "  duration:        {:.3} ms",
        report.duration.as_secs_f64() * 1000.0
    ))?;
    out.line(format_args!(
        "  index source:    {index_source}{}",
        match report.index_source {
            IndexSource::Snapshot => " (saved at the last clean close)",
            IndexSource::Rebuilt => " (by scanning the log)",
        }
    ))?;
    if let Some(problem) = &report.snapshot_problem {
        out.line(format_args!("  snapshot unused: {problem}"))?;
    }
    out.line(format_args!("  checked bytes:   {}", report.checked_bytes))?;
    out.line(format_args!(
        "  truncated bytes: {}",
        report.truncated_bytes
    ))?;
    if let Some((file, offset)) = &report.truncated_at {
        out.line(format_args!("  truncated at:    {file} offset {offset}"))?;
    }
    for file in &report.removed_segments {
        out.line(format_args!("  removed:         {file}"))?;
    }
    Ok(())
}

/// Bytes of all segment files; `None` when the directory cannot be listed.
fn segment_bytes(dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("segment-") && name.ends_with(".seg") {
            total += entry.metadata().ok()?.len();
        }
    }
    Some(total)
}
