//! Commands per second on the bank service (HTTP, embedded store, durable appends): 64
//! concurrent clients on 64 distinct accounts, then 64 clients on one hot account. The clients
//! run in the same process as the service, on the same cores. Prints figures; asserts nothing.
//!
//! `cargo bench -p factlog-examples --bench bank` (`BANK_BENCH_SECONDS` sets each phase's
//! length, default 5)

use std::time::{Duration, Instant};

use factlog_examples::bank_service::{BankOptions, new_app, router};
use factlog_examples::service::{Backend, ServiceArgs};
use serde_json::json;

const CLIENTS: usize = 64;

struct Phase {
    ok: u64,
    refused: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn phase(
    http: &reqwest::Client,
    url: &str,
    accounts: Vec<String>,
    length: Duration,
) -> Phase {
    let started = Instant::now();
    let tasks: Vec<_> = accounts
        .into_iter()
        .map(|account| {
            let http = http.clone();
            let url = format!("{url}/accounts/{account}/deposits");
            tokio::spawn(async move {
                let (mut ok, mut refused, mut latencies) = (0, 0, Vec::new());
                while started.elapsed() < length {
                    let sent = Instant::now();
                    let response = http
                        .post(&url)
                        .json(&json!({"amount": 1}))
                        .send()
                        .await
                        .expect("the service answers");
                    let status = response.status();
                    let _ = response.bytes().await;
                    latencies.push(sent.elapsed());
                    if status.is_success() {
                        ok += 1;
                    } else {
                        refused += 1;
                    }
                }
                (ok, refused, latencies)
            })
        })
        .collect();
    let mut result = Phase {
        ok: 0,
        refused: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (ok, refused, latencies) = task.await.expect("a client task");
        result.ok += ok;
        result.refused += refused;
        result.latencies.extend(latencies);
    }
    result.elapsed = started.elapsed();
    result.latencies.sort_unstable();
    result
}

fn print(name: &str, phase: &Phase) {
    let at = |p: f64| {
        let i =
            ((phase.latencies.len() as f64 * p).ceil() as usize).clamp(1, phase.latencies.len());
        phase.latencies[i - 1].as_secs_f64() * 1e3
    };
    println!(
        "{name:<40} {:>9.0} commands/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} refused, {:.1} s)",
        phase.ok as f64 / phase.elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
        phase.ok,
        phase.refused,
        phase.elapsed.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BANK_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let length = Duration::from_secs(seconds);
    let dir = tempfile::tempdir()?;
    let args = ServiceArgs {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_owned(),
        server: None,
        token: None,
        snapshot_every: 100,
    };
    let backend = Backend::open(&args)?;
    let app = new_app(&backend, BankOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(app)).await });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;

    let accounts: Vec<String> = (0..CLIENTS).map(|i| format!("bench-{i}")).collect();
    for account in accounts.iter().chain([&"hot".to_owned()]) {
        let response = http
            .post(format!("{url}/accounts"))
            .json(&json!({"accountId": account, "owner": "bench"}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "opening {account}");
    }
    println!(
        "bank service, embedded store (durable), {CLIENTS} concurrent HTTP clients, deposits of 1"
    );
    let distinct = phase(&http, &url, accounts, length).await;
    print("64 clients, 64 distinct accounts", &distinct);
    let hot = phase(&http, &url, vec!["hot".to_owned(); CLIENTS], length).await;
    print("64 clients, one hot account", &hot);
    if let Some(store) = &backend.embedded {
        store.close();
    }
    Ok(())
}
