//! `factlog`: append to, read, inspect, verify and benchmark a Factlog data directory.
//!
//! Every command prints text for people by default and JSON for scripts with `--json`.
//! Exit codes: 0 success, 1 the command failed (the store refused or could not do it), 2 the
//! command line was wrong (clap's own usage errors also exit 2).

mod bench;
mod cmd;
mod config;
mod kafka_target;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use factlog_store::AppendError;

/// Factlog: an embedded event store.
#[derive(Debug, Parser)]
#[command(name = "factlog", version, about, propagate_version = true)]
struct Cli {
    /// The store's data directory [default: ./factlog-data].
    #[arg(long, global = true, env = "FACTLOG_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Work against a running server at this URL instead of a data directory.
    #[arg(long, global = true, env = "FACTLOG_SERVER", value_name = "URL")]
    server: Option<String>,

    /// The bearer token for --server.
    #[arg(
        long,
        global = true,
        env = "FACTLOG_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// A TOML configuration file; the environment and flags override what it says.
    #[arg(long, global = true, env = "FACTLOG_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print JSON for scripts instead of text (errors go to stderr as one JSON object).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the store in --data-dir over HTTP (the API at /openapi.json), or with --backend
    /// kafka a store on Kafka as one of its nodes.
    Serve(cmd::serve::Args),
    /// Check every record of a closed store and its saved index; names the first bad record.
    Verify(cmd::verify::Args),
    /// Append events to a stream, all in one atomic append.
    Append(cmd::append::Args),
    /// Read a stream, or '$all' (every event of the store in order).
    Read(cmd::read::Args),
    /// List stream names in byte order.
    Streams(cmd::streams::Args),
    /// Show what one stream holds.
    Info(cmd::info::Args),
    /// Show the store's size and what opening it found.
    Stats(cmd::stats::Args),
    /// Follow '$all' or one stream, printing each event as it is appended.
    Tail(cmd::tail::Args),
    /// Write every event (or one stream's) as JSON lines, for `factlog import`; with --kafka
    /// URL, of a store on Kafka (a backup).
    Export(cmd::export::Args),
    /// Append the JSON lines of `factlog export`, with their ids; running it again is harmless.
    Import(cmd::import::Args),
    /// Copy an embedded store into a store on Kafka, keeping streams, versions and event ids;
    /// resumable, and running it again writes nothing.
    Migrate(cmd::migrate::Args),
    /// Copy the store into a new directory, consistently (the store must not be open elsewhere).
    Backup(cmd::backup::Args),
    /// Restore a backup of `factlog backup` into --data-dir, which must not exist or be empty.
    Restore(cmd::restore::Args),
    /// The projections of a running server: list, status, pause, resume, reset, rebuild and
    /// dead letters (with --server).
    Projections(cmd::projections::Args),
    /// Measure the embedded store against its performance targets (in a temporary directory).
    Bench(cmd::bench::Args),
    /// The process `factlog bench` starts and kills; not for direct use.
    #[command(hide = true)]
    BenchChild(cmd::bench::ChildArgs),
}

/// A command line that parsed but makes no sense (such as `--types` on a stream read): exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let json = cli.json;
    // Two workers: the machine the targets are set for has two cores, and the store's writer
    // runs on its own thread besides.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report_error(&anyhow::anyhow!("could not start the runtime: {e}"), json),
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report_error(&e, json),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => config::FileConfig::load(path)?,
        None => config::FileConfig::default(),
    };
    let dir = cli
        .data_dir
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
    let server_flag = cli.server.is_some();
    let server = cli.server.or_else(|| file.client.server.clone());
    let token = cli
        .token
        .or_else(|| file.client.token.as_ref().map(|t| t.expose().to_owned()))
        .filter(|t| !t.is_empty());
    let target = match server {
        Some(url) => cmd::Location::Server { url, token },
        None => cmd::Location::Dir(dir.clone()),
    };
    let mut out = output::Out::new(cli.json);
    match cli.command {
        Command::Serve(args) => {
            cmd::serve::run(
                target.local_dir("serve", "it serves a data directory")?,
                args,
                &file,
                &mut out,
            )
            .await?
        }
        Command::Verify(args) => cmd::verify::run(&target, args, &mut out)?,
        Command::Append(args) => cmd::append::run(&target, args, &mut out).await?,
        Command::Read(args) => {
            let target = read_location(target, &args.kafka, server_flag, &file)?;
            cmd::read::run(&target, args, &mut out).await?
        }
        Command::Streams(args) => {
            let target = read_location(target, &args.kafka, server_flag, &file)?;
            cmd::streams::run(&target, args, &mut out).await?
        }
        Command::Info(args) => {
            let target = read_location(target, &args.kafka, server_flag, &file)?;
            cmd::info::run(&target, args, &mut out).await?
        }
        Command::Stats(args) => cmd::stats::run(&target, args, &mut out)?,
        Command::Tail(args) => cmd::tail::run(&target, args, &mut out).await?,
        Command::Export(args) => {
            let target = read_location(target, &args.kafka, server_flag, &file)?;
            cmd::export::run(&target, args, &mut out).await?
        }
        Command::Import(args) => cmd::import::run(&target, args, &mut out).await?,
        // It reads the directory of --from and writes to the URL of --to, nothing else.
        Command::Migrate(args) => cmd::migrate::run(args, &file, &mut out).await?,
        Command::Backup(args) => cmd::backup::run(&target, args, &mut out).await?,
        Command::Restore(args) => cmd::restore::run(&target, args, &mut out)?,
        Command::Projections(args) => cmd::projections::run(&target, args, &mut out).await?,
        Command::Bench(args) => cmd::bench::run(&dir, args, &mut out).await?,
        Command::BenchChild(args) => cmd::bench::run_child(args, &mut out).await?,
    }
    out.finish()?;
    Ok(())
}

/// Where a read command reads: the store on Kafka of its `--kafka URL`, or the data directory
/// or server of the global options.
fn read_location(
    target: cmd::Location,
    kafka: &kafka_target::KafkaReadArgs,
    server_flag: bool,
    file: &config::FileConfig,
) -> anyhow::Result<cmd::Location> {
    let Some(url) = &kafka.url else {
        if !kafka.properties.is_empty() {
            return Err(UsageError("--kafka-property applies to --kafka URL only".into()).into());
        }
        return Ok(target);
    };
    if server_flag {
        return Err(UsageError(
            "--kafka and --server (or FACTLOG_SERVER) both name a store: give one of them".into(),
        )
        .into());
    }
    let target = kafka_target::KafkaTarget::new(url, &kafka.properties, &file.kafka)?;
    Ok(cmd::Location::Kafka(Box::new(target)))
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // The library logs what it repairs (a torn tail cut on open) at `warn`: worth seeing.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Prints `error` to stderr (as JSON with `--json`) and picks the exit code.
fn report_error(error: &anyhow::Error, json: bool) -> ExitCode {
    // A reader piped into `head` closes the pipe early; that is not a failure of the command.
    if error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        return ExitCode::SUCCESS;
    }
    let usage = error.downcast_ref::<UsageError>().is_some();
    let message = format!("{error:#}");
    if json {
        let mut object = serde_json::json!({
            "error": message,
            "kind": if usage { "usage" } else { "error" },
        });
        add_error_details(error, &mut object);
        eprintln!("{object}");
    } else if usage {
        eprintln!("error: {message}\n\nFor more information, try '--help'.");
    } else {
        eprintln!("error: {message}");
    }
    if usage {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Adds the fields a script needs to act on an error without parsing its message.
fn add_error_details(error: &anyhow::Error, object: &mut serde_json::Value) {
    use serde_json::json;
    let details = if let Some(AppendError::WrongExpectedVersion {
        stream,
        expected,
        current,
    }) = error.downcast_ref::<AppendError>()
    {
        json!({
            "kind": "wrong_expected_version",
            "stream": stream.as_str(),
            "expectedVersion": expected.to_string(),
            "currentVersion": current,
        })
    } else if let Some(factlog_log::VerifyError::Corrupt { file, offset, .. }) =
        error.downcast_ref::<factlog_log::VerifyError>()
    {
        json!({"kind": "corrupt", "file": file, "offset": offset})
    } else if let Some(factlog_log::OpenError::Corrupt { file, offset, .. }) =
        error.downcast_ref::<factlog_log::OpenError>()
    {
        json!({"kind": "corrupt", "file": file, "offset": offset})
    } else if let Some(problem) = error
        .downcast_ref::<factlog_client::ProjectionError>()
        .and_then(factlog_client::ProjectionError::problem)
    {
        // The server's problem document, for scripts to tell cases apart by its type.
        json!({"problem": problem})
    } else {
        return;
    };
    if let (Some(object), serde_json::Value::Object(details)) = (object.as_object_mut(), details) {
        object.extend(details);
    }
}
