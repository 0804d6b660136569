//! `factlog info STREAM`: what one stream holds.

use anyhow::anyhow;
use factlog_store::StreamName;
use serde_json::json;

use crate::cmd::Location;
use crate::output::Out;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream, such as `order-7`.
    stream: StreamName,

    #[command(flatten)]
    pub kafka: crate::kafka_target::KafkaReadArgs,
}

pub async fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let store = target.open_existing().await?;
    let info = store.stream_info(&args.stream).await;
    store.close().await;
    let info = info?.ok_or_else(|| {
        anyhow!(
            "stream {} does not exist in {}; `factlog streams --prefix {}` lists similar names",
            args.stream,
            target.describe(),
            args.stream.category()
        )
    })?;
    if out.json() {
        out.json_line(&json!({
            "stream": info.stream.as_str(),
            "category": info.stream.category(),
            "lastVersion": info.last_version,
            "eventCount": info.event_count,
            "firstRecordedAt": info.first_recorded_at.to_rfc3339_millis(),
            "lastRecordedAt": info.last_recorded_at.to_rfc3339_millis(),
        }))?;
    } else {
        out.line(format_args!("stream:        {}", info.stream))?;
        out.line(format_args!("category:      {}", info.stream.category()))?;
        out.line(format_args!("events:        {}", info.event_count))?;
        out.line(format_args!("last version:  {}", info.last_version))?;
        out.line(format_args!(
            "first event:   {}",
            info.first_recorded_at.to_rfc3339_millis()
        ))?;
        out.line(format_args!(
            "last event:    {}",
            info.last_recorded_at.to_rfc3339_millis()
        ))?;
    }
    Ok(())
}
