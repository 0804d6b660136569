//! Scenarios g to i: the server, measured over real HTTP on 127.0.0.1.
//!
//! The server runs in this process on its own embedded store (the same code `factlog serve`
//! runs); clients are reqwest connections kept alive, so the figures include HTTP parsing, JSON
//! encoding and decoding on both sides, and loopback TCP, on the same cores as the server.
//! - g. single-event appends from 64 keep-alive connections (target >= 20,000 events/s);
//! - h. batched POSTs of 100 events from 8 connections (target >= 300,000 events/s);
//! - i. 100 SSE subscribers following a writer that appends 10,000 events/s (10 events every
//!   millisecond): the delay from the append request to the event's arrival at each subscriber.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinSet;

use crate::bench::data::Payloads;
use crate::bench::scenarios::Throughput;

/// Connections of scenario g.
pub const SINGLE_CONNECTIONS: u64 = 64;
/// Events per POST, and connections, of scenario h.
pub const BATCH_EVENTS: u64 = 100;
pub const BATCH_CONNECTIONS: u64 = 8;
/// Subscribers, and the writer's rate, of scenario i.
pub const SUBSCRIBERS: usize = 100;
pub const FOLLOW_RATE: u64 = 10_000;
/// Events per append of the scenario i writer: one append every millisecond.
const FOLLOW_BATCH: u64 = 10;

/// A JSON array of new events with the given data (already JSON).
fn body<'a>(data: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut body = Vec::with_capacity(4096);
    body.push(b'[');
    for (i, data) in data.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"eventType":"MoneyDeposited","data":"#);
        body.extend_from_slice(data);
        body.push(b'}');
    }
    body.push(b']');
    Bytes::from(body)
}

fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("could not build the HTTP client")
}

async fn post(client: &reqwest::Client, url: &str, body: Bytes) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        bail!(
            "POST {url}: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// g and h: `connections` clients each POST `per_request` events at a time, one request after
/// the other, until `events` are stored or the budget is spent. Returns the throughput and
/// the sorted request latencies.
pub async fn appends(
    base: &str,
    payloads: Arc<Payloads>,
    connections: u64,
    per_request: u64,
    events: u64,
    budget: Duration,
) -> anyhow::Result<(Throughput, Vec<Duration>)> {
    let client = client(connections as usize)?;
    let requests = events.div_ceil(per_request).div_ceil(connections).max(1);
    let started = Instant::now();
    let deadline = started + budget;
    let mut tasks = JoinSet::new();
    for c in 0..connections {
        let client = client.clone();
        let payloads = payloads.clone();
        let url = format!("{base}/streams/http-{per_request}-{c}");
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(requests as usize);
            for r in 0..requests {
                if Instant::now() >= deadline {
                    break;
                }
                let first = (c * requests + r) * per_request;
                let events: Vec<_> = (first..first + per_request)
                    .map(|n| payloads.event(n).data)
                    .collect();
                let body = body(events.iter().map(|d| &d[..]));
                let t = Instant::now();
                post(&client, &url, body).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.context("a client task panicked")??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let done = latencies.len() as u64 * per_request;
    Ok((
        Throughput {
            events: done,
            elapsed,
            stopped_early: done < requests * connections * per_request,
        },
        latencies,
    ))
}

/// What scenario i measured.
#[derive(Debug)]
pub struct Follow {
    /// Sorted delays from the start of the append request to the arrival, over every delivery.
    pub delays: Vec<Duration>,
    pub written: u64,
    /// Deliveries expected (written x subscribers) and made.
    pub expected: u64,
    pub delivered: u64,
    pub elapsed: Duration,
}

/// i. `SUBSCRIBERS` SSE clients follow `$all` from the end while one writer appends
/// `FOLLOW_RATE` events per second for `duration`. Each event's data carries the microsecond
/// (since the scenario began) at which its append was sent.
pub async fn subscribers_follow(base: &str, duration: Duration) -> anyhow::Result<Follow> {
    let origin = Instant::now();
    let sse_client = client(SUBSCRIBERS)?;
    let mut subscribers = JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(SUBSCRIBERS);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let arrived = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..SUBSCRIBERS {
        let client = sse_client.clone();
        let url = format!("{base}/subscribe/all?from=end");
        let ready = ready_tx.clone();
        let mut stop = stop_rx.clone();
        let arrived = arrived.clone();
        subscribers.spawn(async move {
            let response = client
                .get(&url)
                .timeout(Duration::from_secs(3600))
                .send()
                .await
                .context("subscribing")?;
            ensure!(
                response.status().is_success(),
                "subscribe: {}",
                response.status()
            );
            ready.send(()).await.ok();
            let mut body = response.bytes_stream();
            let mut pending = Vec::new();
            let mut delays = Vec::new();
            loop {
                let chunk = tokio::select! {
                    chunk = body.next() => chunk,
                    _ = stop.changed() => break,
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk.context("reading the event stream")?;
                let now = origin.elapsed();
                pending.extend_from_slice(&chunk);
                // Complete lines only; the rest waits for the next chunk.
                let Some(last_newline) = memchr::memrchr(b'\n', &pending) else {
                    continue;
                };
                for line in pending[..last_newline].split(|&b| b == b'\n') {
                    if let Some(data) = line.strip_prefix(b"data: ") {
                        let sent =
                            sent_micros(data).context("an event without its sending time")?;
                        delays.push(now.saturating_sub(Duration::from_micros(sent)));
                        arrived.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                pending.drain(..=last_newline);
            }
            anyhow::Ok(delays)
        });
    }
    drop(ready_tx);
    for _ in 0..SUBSCRIBERS {
        ready_rx
            .recv()
            .await
            .context("a subscriber failed to connect")?;
    }

    // The writer: one append of FOLLOW_BATCH events per tick, several in flight.
    let writer = client(16)?;
    let url = format!("{base}/streams/follow-1");
    let in_flight = Arc::new(tokio::sync::Semaphore::new(16));
    let mut ticks = tokio::time::interval(Duration::from_micros(
        1_000_000 * FOLLOW_BATCH / FOLLOW_RATE,
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut appends = JoinSet::new();
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration {
        ticks.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let sent = origin.elapsed().as_micros() as u64;
        let data: Vec<Vec<u8>> = (0..FOLLOW_BATCH)
            .map(|i| format!(r#"{{"sentMicros":{sent},"i":{i}}}"#).into_bytes())
            .collect();
        let body = body(data.iter().map(|d| &d[..]));
        let writer = writer.clone();
        let url = url.clone();
        appends.spawn(async move {
            let _permit = permit;
            post(&writer, &url, body).await
        });
        written += FOLLOW_BATCH;
    }
    while let Some(joined) = appends.join_next().await {
        joined.context("an append task panicked")??;
    }
    let elapsed = started.elapsed();
    // Let the last events arrive (or give up after 10 s), then stop the subscribers.
    let expected = written * SUBSCRIBERS as u64;
    let waiting = Instant::now();
    while arrived.load(std::sync::atomic::Ordering::Relaxed) < expected
        && waiting.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).ok();
    let mut delays = Vec::new();
    while let Some(joined) = subscribers.join_next().await {
        delays.extend(joined.context("a subscriber panicked")??);
    }
    delays.sort();
    Ok(Follow {
        delivered: delays.len() as u64,
        expected,
        delays,
        written,
        elapsed,
    })
}

/// The `sentMicros` field of an event's JSON (the scenario's own data), without a full parse.
fn sent_micros(event_json: &[u8]) -> Option<u64> {
    let key = br#""sentMicros":"#;
    let at = memchr::memmem::find(event_json, key)? + key.len();
    let digits: Vec<u8> = event_json[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_arrays() {
        let body = body([&b"{\"a\":1}"[..], b"2"].into_iter());
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value[1]["data"], 2);
        assert_eq!(value[0]["eventType"], "MoneyDeposited");
    }

    #[test]
    fn finds_the_sending_time() {
        let event = br#"{"eventId":"x","data":{"sentMicros":1234,"i":0},"metadata":{}}"#;
        assert_eq!(sent_micros(event), Some(1234));
        assert_eq!(sent_micros(b"{}"), None);
    }
}
