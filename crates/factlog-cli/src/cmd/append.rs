//! `factlog append`: append events to one stream in one atomic append.
//!
//! One event from `--data`, or many from JSON lines (`--file`, or stdin when neither is given).
//! Either every event is stored or none is: a bad line, a wrong expected version or a broken
//! limit leaves the store as it was.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use factlog_store::{
    ContentType, EventId, EventType, ExpectedVersion, Metadata, NewEvent, StreamName,
};
use serde_json::{Value, json};

use crate::UsageError;
use crate::cmd::{Location, plural};
use crate::output::Out;

/// The fields of a JSON line, for messages.
const LINE_FIELDS: &str = "eventType, data, metadata, eventId, schemaVersion";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
JSON lines (--file, or stdin): one event per line, for example
  {\"eventType\": \"Deposited\", \"data\": {\"amount\": 5}, \"metadata\": {\"correlationId\": \"c-1\"}, \"eventId\": \"0190...\"}
\"data\" is required; \"eventType\" defaults to --type, \"metadata\" to --metadata, \"eventId\" to a new
id, \"schemaVersion\" to --schema-version. Empty lines are skipped. All lines go in one atomic append.")]
pub struct Args {
    /// The stream to append to, such as `order-7`.
    stream: StreamName,

    /// The event type: required with --data; with JSON lines, the type of lines without "eventType".
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<EventType>,

    /// The data of a single event, a JSON value such as '{"amount": 5}'.
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    data: Option<String>,

    /// Read events from this file of JSON lines (without --data or --file: from stdin).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,

    /// What the stream must be for the append to go ahead: any, no-stream, exists, or the
    /// version its last event must have.
    #[arg(long, value_name = "EXPECTED", default_value = "any")]
    expected_version: ExpectedVersion,

    /// The id of the --data event (a UUID): appending the same id again is an idempotent retry.
    #[arg(long, value_name = "UUID", requires = "data")]
    id: Option<EventId>,

    /// Metadata, a JSON object: of the --data event, or of JSON lines without "metadata".
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,

    /// The version of the event type's schema, for events that do not say.
    #[arg(long, value_name = "N", default_value_t = 1)]
    schema_version: u32,
}

pub async fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let metadata = match &args.metadata {
        Some(text) => {
            Some(parse_metadata(text).map_err(|e| UsageError(format!("--metadata {e}")))?)
        }
        None => None,
    };
    // Everything is parsed before the store is opened: bad input must not create a store.
    let events = match &args.data {
        Some(data) => vec![data_event(&args, data, metadata)?],
        None => {
            let (source, text) = read_input(&args)?;
            let events = parse_lines(&text, &args, metadata.as_ref())
                .with_context(|| format!("nothing was appended: bad event in {source}"))?;
            if events.is_empty() {
                anyhow::bail!("{source} holds no events (only empty lines); nothing was appended");
            }
            events
        }
    };
    let store = target.open()?;
    let result = store
        .append(&args.stream, args.expected_version, events)
        .await;
    // Closing saves the index, so that the next command opens the store quickly.
    store.close().await;
    let result = result.with_context(|| format!("could not append to {}", args.stream))?;
    let count = result.last_version - result.first_version + 1;
    if out.json() {
        out.json_line(&json!({
            "stream": args.stream.as_str(),
            "events": count,
            "firstVersion": result.first_version,
            "lastVersion": result.last_version,
            "firstPosition": result.first_position.to_string(),
            "lastPosition": result.last_position.to_string(),
        }))?;
    } else if count == 1 {
        out.line(format_args!(
            "appended 1 event to {}: version {}, position {}",
            args.stream, result.first_version, result.first_position
        ))?;
    } else {
        out.line(format_args!(
            "appended {} to {}: versions {}..={}, positions {}..={}",
            plural(count, "event"),
            args.stream,
            result.first_version,
            result.last_version,
            result.first_position,
            result.last_position
        ))?;
    }
    Ok(())
}

/// The single event of `--data`.
fn data_event(args: &Args, data: &str, metadata: Option<Metadata>) -> anyhow::Result<NewEvent> {
    let Some(event_type) = args.event_type.clone() else {
        return Err(UsageError("--data needs --type TYPE, the event's type".into()).into());
    };
    let data: Value = serde_json::from_str(data).map_err(|e| {
        UsageError(format!(
            "--data is not valid JSON ({e}); pass a JSON value such as '{{\"amount\": 5}}'"
        ))
    })?;
    let mut event = new_event(event_type, &data, metadata.unwrap_or_default())
        .with_schema_version(args.schema_version);
    if let Some(id) = args.id {
        event = event.with_id(id);
    }
    Ok(event)
}

fn new_event(event_type: EventType, data: &Value, metadata: Metadata) -> NewEvent {
    // Compact JSON, so that a retry with the same id and the same data is byte-identical,
    // however the JSON was spaced on the command line.
    let data = serde_json::to_vec(data).expect("a JSON value always serializes");
    NewEvent::new(event_type, ContentType::json(), data).with_metadata(metadata)
}

fn parse_metadata(text: &str) -> Result<Metadata, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object such as '{\"correlationId\": \"c-1\"}'".into()),
        Err(e) => Err(format!("is not valid JSON ({e})")),
    }
}

/// The JSON lines, and a name for where they came from.
fn read_input(args: &Args) -> anyhow::Result<(String, String)> {
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        return Ok((path.display().to_string(), text));
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        // Waiting for a terminal to type JSON lines is never what was meant.
        return Err(UsageError(
            "no events given: pass --data JSON (with --type), --file FILE, or pipe JSON lines into stdin".into(),
        )
        .into());
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .context("could not read JSON lines from stdin")?;
    Ok(("stdin".into(), text))
}

fn parse_lines(
    text: &str,
    args: &Args,
    metadata: Option<&Metadata>,
) -> anyhow::Result<Vec<NewEvent>> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_line(line, args, metadata)
            .map_err(|e| anyhow::anyhow!("line {}: {e}", index + 1))?;
        events.push(event);
    }
    Ok(events)
}

fn parse_line(line: &str, args: &Args, metadata: Option<&Metadata>) -> Result<NewEvent, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    let Value::Object(mut object) = value else {
        return Err(format!(
            "not a JSON object; each line is an object with the fields {LINE_FIELDS}"
        ));
    };
    // Unknown fields first: "type" for "eventType" should be reported as the typo it is.
    let known = ["eventType", "data", "metadata", "eventId", "schemaVersion"];
    if let Some(field) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {field:?}; the fields are {LINE_FIELDS}"
        ));
    }
    let event_type = match object.remove("eventType") {
        Some(Value::String(name)) => EventType::new(name).map_err(|e| e.to_string())?,
        Some(_) => return Err("\"eventType\" must be a string".into()),
        None => args
            .event_type
            .clone()
            .ok_or("no \"eventType\"; add one, or pass --type for lines without it")?,
    };
    let data = object
        .remove("data")
        .ok_or("no \"data\"; add the event's data (for example \"data\": {})")?;
    let metadata = match object.remove("metadata") {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => metadata.cloned().unwrap_or_default(),
        Some(_) => return Err("\"metadata\" must be a JSON object".into()),
    };
    let id = match object.remove("eventId") {
        Some(Value::String(id)) => Some(
            id.parse::<EventId>()
                .map_err(|e| format!("\"eventId\" {id:?} is not a UUID ({e})"))?,
        ),
        None | Some(Value::Null) => None,
        Some(_) => return Err("\"eventId\" must be a UUID string".into()),
    };
    let schema_version = match object.remove("schemaVersion") {
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("\"schemaVersion\" must be a whole number from 0 to 4294967295")?,
        None => args.schema_version,
    };
    let mut event = new_event(event_type, &data, metadata).with_schema_version(schema_version);
    if let Some(id) = id {
        event = event.with_id(id);
    }
    Ok(event)
}
