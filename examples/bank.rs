//! The bank service: accounts with no overdraft, transfers as one atomic multi-stream append,
//! time travel, history and a replay of the read model.
//!
//! `cargo run --release --example bank -- --listen 127.0.0.1:8080 --data-dir ./bank-data`
//! (add `--server http://127.0.0.1:2113` to run on a Factlog server instead of the embedded
//! store). The HTTP contract is in docs/examples.md.

use anyhow::Context;
use clap::Parser;
use factlog_examples::bank_service::{BankOptions, new_app, router};
use factlog_examples::service::{Backend, ServiceArgs, serve};

/// The bank example service.
#[derive(Debug, Parser)]
#[command(name = "bank")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let backend = Backend::open(&args.service)?;
    let app = new_app(&backend, BankOptions::default());
    let listener = tokio::net::TcpListener::bind(args.service.listen).await?;
    println!("bank listening on http://{}", listener.local_addr()?);
    app.catch_up()
        .await
        .context("could not read the store to build the read model")?;
    serve(listener, router(app), &backend).await
}
