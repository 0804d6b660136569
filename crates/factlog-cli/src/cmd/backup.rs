//! `factlog backup`: an online, consistent copy of the store into a new directory; and the
//! progress bar the long-running commands share.
//!
//! The copy holds every event committed when the backup starts and ends at a whole append; a
//! directory without its `BACKUP.json` is a backup that did not finish. The store in
//! `--data-dir` is opened by this command, so it cannot run while a server holds the directory;
//! with `--server`, the server takes the backup into its `--backup-dir`, DEST naming it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cmd::{Location, open_existing, plural};
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write the backup to; it must not exist or be empty. With --server, the
    /// name of the backup in the server's backup directory.
    #[arg(value_name = "DEST")]
    dest: PathBuf,
}

pub async fn run(location: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    match location {
        Location::Dir(dir) => run_local(dir, args, out),
        Location::Server { url, token } => run_remote(url, token.as_deref(), args, out).await,
        Location::Kafka(_) => Err(crate::UsageError(
            "`factlog backup` copies a data directory or asks a server; for a store on Kafka, \
             use `factlog export --kafka URL`"
                .into(),
        )
        .into()),
    }
}

/// `POST /admin/backup` on the server.
async fn run_remote(
    url: &str,
    token: Option<&str>,
    args: Args,
    out: &mut Out,
) -> anyhow::Result<()> {
    let name = args.dest.to_string_lossy().into_owned();
    let endpoint = format!("{}/admin/backup", url.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .post(&endpoint)
        .json(&factlog_api::BackupRequest { name: name.clone() });
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("could not reach the server at {endpoint}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<factlog_api::Problem>(&text)
            .map(|p| p.detail)
            .unwrap_or(text);
        anyhow::bail!("the server refused the backup ({status}): {detail}");
    }
    let report: factlog_api::BackupResponse = serde_json::from_str(&text)
        .with_context(|| format!("the server's answer is not a backup report: {text}"))?;
    if out.json() {
        out.json_line(&serde_json::to_value(&report)?)?;
    } else {
        out.line(format_args!(
            "the server backed up {} ({}, {} bytes) into {}",
            plural(report.events, "event"),
            plural(u64::from(report.segments), "segment"),
            report.bytes,
            report.directory
        ))?;
    }
    Ok(())
}

fn run_local(dir: &Path, args: Args, out: &mut Out) -> anyhow::Result<()> {
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
