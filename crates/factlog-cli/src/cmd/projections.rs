//! `factlog projections`: the projections a running server keeps (`factlog serve` with
//! `[[projections]]`): list them, show one's status, pause and resume it, reset its checkpoint
//! (a dry-run plan unless `--execute`), rebuild it, and list, retry or skip its dead letters.
//!
//! Every call goes to the server (`--server URL --token T`) through
//! [`factlog_client::ProjectionsClient`]; a refusal is the server's problem (its title and
//! detail) and exits 1.

use factlog_api::{DeadLetterJson, ProjectionStatusJson, ResetPlanJson, ResetRequest, ResetTo};
use factlog_client::ProjectionsClient;
use factlog_store::Timestamp;
use serde_json::Value;

use crate::UsageError;
use crate::cmd::{Location, plural};
use crate::output::Out;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Talks to a running server (--server URL, --token T): the projections run in `factlog serve`,
from [[projections]] in its configuration file. Reading needs the read role; pause, resume,
reset, rebuild, --retry and --skip need the admin role.")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the projections the server runs, with their state, position and lag.
    List,
    /// Show one projection's status.
    Status {
        /// The projection's name.
        name: String,
    },
    /// Stop applying events (kept across restarts) until resumed.
    Pause {
        /// The projection's name.
        name: String,
    },
    /// Apply events again after a pause, or after a stop by an error.
    Resume {
        /// The projection's name.
        name: String,
    },
    /// Plan a reset of the checkpoint (like kafka-consumer-groups --reset-offsets); --execute
    /// carries it out.
    Reset(ResetArgs),
    /// Build a new generation of the read model from the start of the log beside the live one;
    /// it replaces the live one once it has caught up.
    Rebuild {
        /// The projection's name.
        name: String,
    },
    /// List the projection's dead letters, or retry or skip one.
    DeadLetters(DeadLettersArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_position", "to_datetime", "shift_by"])
))]
struct ResetArgs {
    /// The projection's name.
    name: String,
    /// Before the first event: every event is applied again.
    #[arg(long)]
    to_earliest: bool,
    /// The end of the log: the events not yet processed are never applied.
    #[arg(long)]
    to_latest: bool,
    /// Right after the event at this position (0: the start).
    #[arg(long, value_name = "POSITION")]
    to_position: Option<u64>,
    /// Before the first event recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    to_datetime: Option<String>,
    /// N events later (skipping them) or, negative, N events back (applying them again).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Carry the reset out; without it, only the plan is shown and nothing changes.
    #[arg(long)]
    execute: bool,
}

#[derive(Debug, clap::Args)]
struct DeadLettersArgs {
    /// The projection's name.
    name: String,
    /// Apply this parked event again (to the live read model).
    #[arg(long, value_name = "ID", conflicts_with = "skip")]
    retry: Option<u64>,
    /// Mark this parked event skipped: it is never applied.
    #[arg(long, value_name = "ID")]
    skip: Option<u64>,
}

fn rfc3339(text: &str) -> Result<String, String> {
    Timestamp::parse_rfc3339(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("not an RFC 3339 time such as 2026-11-23T10:15:00Z: {e}"))
}

pub async fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let Location::Server { url, token } = target else {
        return Err(UsageError(
            "`factlog projections` talks to a running server, where the projections run: pass \
             --server URL (and --token T), or set server in the [client] table of the \
             configuration file"
                .into(),
        )
        .into());
    };
    let client = ProjectionsClient::new(url, token.clone())?;
    match args.action {
        Action::List => {
            let statuses = client.list().await?;
            if out.json() {
                for status in &statuses {
                    out.json_line(&serde_json::to_value(status)?)?;
                }
            } else if statuses.is_empty() {
                out.line(
                    "the server runs no projections (configure them with [[projections]] in the \
                     configuration file of `factlog serve`)",
                )?;
            } else {
                status_table(&statuses, out)?;
            }
        }
        Action::Status { name } => {
            let status = client.status(&name).await?;
            status_details(&status, out)?;
        }
        Action::Pause { name } => {
            let status = client.pause(&name).await?;
            if out.json() {
                out.json_line(&serde_json::to_value(&status)?)?;
            } else {
                out.line(format_args!(
                    "paused {name} at position {} (kept across restarts; `factlog projections \
                     resume {name}` to go on)",
                    status.position.0
                ))?;
            }
        }
        Action::Resume { name } => {
            let status = client.resume(&name).await?;
            if out.json() {
                out.json_line(&serde_json::to_value(&status)?)?;
            } else {
                out.line(format_args!(
                    "resumed {name} at position {} ({} behind)",
                    status.position.0,
                    plural(status.lag_events, "event")
                ))?;
            }
        }
        Action::Reset(reset) => {
            let request = reset_request(&reset);
            let plan = client.reset(&reset.name, &request).await?;
            plan_text(&plan, out)?;
        }
        Action::Rebuild { name } => {
            let generation = client.rebuild(&name).await?;
            if out.json() {
                out.json_line(&serde_json::json!({"projection": name, "generation": generation}))?;
            } else {
                out.line(format_args!(
                    "rebuilding {name}: generation {generation} is being built beside the live \
                     one and replaces it once caught up; follow it with `factlog projections \
                     status {name}`"
                ))?;
            }
        }
        Action::DeadLetters(args) => {
            let changed = match (args.retry, args.skip) {
                (Some(id), _) => Some((
                    id,
                    "retried",
                    client.retry_dead_letter(&args.name, id).await?,
                )),
                (None, Some(id)) => Some((
                    id,
                    "skipped",
                    client.skip_dead_letter(&args.name, id).await?,
                )),
                (None, None) => None,
            };
            match changed {
                Some((id, done, dead_letter)) => {
                    if out.json() {
                        let value = dead_letter
                            .as_ref()
                            .map_or(Ok(Value::Null), serde_json::to_value)?;
                        out.json_line(&value)?;
                    } else {
                        out.line(format_args!("{done} dead letter {id} of {}", args.name))?;
                        if let Some(dead_letter) = dead_letter {
                            dead_letter_table(&[dead_letter], out)?;
                        }
                    }
                }
                None => {
                    let dead_letters = client.dead_letters(&args.name).await?;
                    if out.json() {
                        for dead_letter in &dead_letters {
                            out.json_line(&serde_json::to_value(dead_letter)?)?;
                        }
                    } else if dead_letters.is_empty() {
                        out.line(format_args!("{} has no dead letters", args.name))?;
                    } else {
                        dead_letter_table(&dead_letters, out)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn reset_request(args: &ResetArgs) -> ResetRequest {
    let (to, value) = if args.to_earliest {
        (ResetTo::Earliest, None)
    } else if args.to_latest {
        (ResetTo::Latest, None)
    } else if let Some(position) = args.to_position {
        (ResetTo::Position, Some(Value::from(position.to_string())))
    } else if let Some(time) = &args.to_datetime {
        (ResetTo::Datetime, Some(Value::from(time.clone())))
    } else {
        (ResetTo::ShiftBy, args.shift_by.map(Value::from))
    };
    ResetRequest {
        to,
        value,
        execute: args.execute,
    }
}

/// Rows of cells as columns padded to their widest cell; columns named in `right` are aligned
/// to the right (numbers).
fn table(
    header: &[&str],
    rows: &[Vec<String>],
    right: &[usize],
    out: &mut Out,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, (cell, width)) in cells.into_iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if right.contains(&i) {
                text.push_str(&format!("{cell:>width$}"));
            } else if i == last {
                text.push_str(&cell);
            } else {
                text.push_str(&format!("{cell:<width$}"));
            }
        }
        text.trim_end().to_owned()
    };
    out.line(line(header.iter().map(|h| (*h).to_owned()).collect()))?;
    for row in rows {
        out.line(line(row.clone()))?;
    }
    Ok(())
}

fn status_table(statuses: &[ProjectionStatusJson], out: &mut Out) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.state.as_str().to_owned(),
                s.sink.clone(),
                s.generation.to_string(),
                s.position.0.to_string(),
                s.lag_events.to_string(),
                format!("{:.1}", s.events_per_second),
                s.dead_letters_parked.to_string(),
                s.last_error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "SINK",
            "GEN",
            "POSITION",
            "LAG",
            "EVENTS/S",
            "PARKED",
            "LAST ERROR",
        ],
        &rows,
        &[3, 4, 5, 6, 7],
        out,
    )
}

fn status_details(s: &ProjectionStatusJson, out: &mut Out) -> anyhow::Result<()> {
    if out.json() {
        out.json_line(&serde_json::to_value(s)?)?;
        return Ok(());
    }
    let all = |list: &[String]| {
        if list.is_empty() {
            "all".to_owned()
        } else {
            list.join(", ")
        }
    };
    out.line(format_args!("projection:          {}", s.name))?;
    out.line(format_args!("state:               {}", s.state.as_str()))?;
    out.line(format_args!("sink:                {}", s.sink))?;
    out.line(format_args!(
        "interest:            categories {}; event types {}",
        all(&s.interest.categories),
        all(&s.interest.event_types)
    ))?;
    out.line(format_args!(
        "on error:            {}",
        match s.on_error {
            factlog_api::OnErrorJson::Park => "park",
            factlog_api::OnErrorJson::Stop => "stop",
        }
    ))?;
    out.line(format_args!("generation:          {}", s.generation))?;
    out.line(format_args!("position:            {}", s.position.0))?;
    out.line(format_args!(
        "committed position:  {}",
        s.committed_position.0
    ))?;
    out.line(format_args!("last position:       {}", s.last_position.0))?;
    out.line(format_args!(
        "lag:                 {} ({:.1} s)",
        plural(s.lag_events, "event"),
        s.lag_seconds
    ))?;
    out.line(format_args!(
        "events per second:   {:.1}",
        s.events_per_second
    ))?;
    out.line(format_args!(
        "since start:         {} read, {} applied",
        s.events_total, s.applied_total
    ))?;
    out.line(format_args!(
        "dead letters parked: {}",
        s.dead_letters_parked
    ))?;
    if let Some(rebuild) = &s.rebuild {
        out.line(format_args!(
            "rebuild:             generation {} at position {} ({} behind)",
            rebuild.generation,
            rebuild.position.0,
            plural(rebuild.lag_events, "event")
        ))?;
    }
    if let Some(error) = &s.last_error {
        out.line(format_args!(
            "last error:          {} ({})",
            error.message, error.at
        ))?;
    }
    Ok(())
}

fn plan_text(plan: &ResetPlanJson, out: &mut Out) -> anyhow::Result<()> {
    if out.json() {
        out.json_line(&serde_json::to_value(plan)?)?;
        return Ok(());
    }
    let target = match &plan.target.value {
        None => plan.target.to.as_str().to_owned(),
        Some(Value::String(value)) => format!("{} {value}", plan.target.to.as_str()),
        Some(value) => format!("{} {value}", plan.target.to.as_str()),
    };
    out.line(format_args!(
        "reset of {} (generation {}) to {target}",
        plan.projection, plan.generation
    ))?;
    out.line(format_args!(
        "  current position:   {}",
        plan.current_position.0
    ))?;
    out.line(format_args!(
        "  new position:       {}",
        plan.new_position.0
    ))?;
    out.line(format_args!(
        "  events to reapply:  {}",
        plan.events_to_reapply
    ))?;
    out.line(format_args!(
        "  events to skip:     {}",
        plan.events_to_skip
    ))?;
    out.line(format_args!("  lag after reset:    {}", plan.lag_events))?;
    if plan.executed {
        out.line(format_args!(
            "executed: the checkpoint is now at {}",
            plan.new_position.0
        ))?;
    } else {
        out.line("dry run: nothing changed; add --execute to apply")?;
    }
    Ok(())
}

fn dead_letter_table(dead_letters: &[DeadLetterJson], out: &mut Out) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = dead_letters
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.status.as_str().to_owned(),
                d.generation.to_string(),
                d.position.0.to_string(),
                format!("{}@{}", d.stream, d.version),
                d.event_type.clone(),
                d.attempts.to_string(),
                d.last_failed_at.clone(),
                d.error.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATUS",
            "GEN",
            "POSITION",
            "EVENT",
            "TYPE",
            "ATTEMPTS",
            "LAST FAILED",
            "ERROR",
        ],
        &rows,
        &[0, 2, 3, 6],
        out,
    )
}
