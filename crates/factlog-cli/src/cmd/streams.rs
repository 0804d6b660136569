//! `factlog streams`: list stream names in byte order, optionally by prefix.

use factlog_store::{EventStore, ListStreams};
use serde_json::json;

use crate::cmd::Location;
use crate::output::Out;

/// Names asked of the store per call.
const PAGE_STREAMS: usize = 1000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only streams whose name starts with this.
    #[arg(long, value_name = "P", default_value = "")]
    prefix: String,

    /// Only streams after this name (the last name of a previous listing).
    #[arg(long, value_name = "NAME")]
    after: Option<String>,

    /// Print at most this many names (default: all).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    #[command(flatten)]
    pub kafka: crate::kafka_target::KafkaReadArgs,
}

pub async fn run(target: &Location, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let store = target.open_existing().await?;
    let result = list(&*store, args, out).await;
    store.close().await;
    result
}

async fn list(store: &dyn EventStore, args: Args, out: &mut Out) -> anyhow::Result<()> {
    let mut remaining = args.limit.unwrap_or(usize::MAX);
    let mut after = args.after;
    while remaining > 0 {
        let page = store
            .list_streams(ListStreams {
                prefix: args.prefix.clone(),
                after: after.take(),
                limit: remaining.min(PAGE_STREAMS),
            })
            .await?;
        for stream in &page.streams {
            if out.json() {
                out.json_line(&json!({"stream": stream.as_str()}))?;
            } else {
                out.line(stream)?;
            }
        }
        out.flush()?;
        remaining -= page.streams.len();
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(())
}
