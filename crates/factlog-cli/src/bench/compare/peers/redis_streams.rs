//! Redis Streams as an event store: one Redis stream per event stream (`s:<stream>`) and one
//! global stream (`all`) for reading everything in order and for subscriptions. An append is
//! one Lua script, so it is atomic and checked: it compares the stream's length (`XLEN`) with the
//! expectation and `XADD`s every event to both keys (the data twice: a global order needs the
//! global stream, and reading one stream must not scan it). Durability is the server's
//! `appendfsync`: `always` fsyncs the append-only file before replying (group commit across
//! clients of one event-loop pass), `everysec` once a second.
//!
//! The client is one multiplexed connection: concurrent requests are pipelined on it, the
//! way the redis crate is meant to be used from async code.

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script, Value};

use super::{Appended, EVENT_TYPE, Expect, Peer, event_id};

/// Entries per page of `read_all` and `catch_up`.
const PAGE: usize = 4096;
const ALL: &str = "all";

/// KEYS: the stream's key, the global stream. ARGV: the expected length (-1: any), the event
/// type, then an id and the data of each event. Returns {1, new length} or {0, length}.
const APPEND: &str = r"
local len = redis.call('XLEN', KEYS[1])
local expected = tonumber(ARGV[1])
if expected >= 0 and expected ~= len then
    return {0, len}
end
for i = 3, #ARGV, 2 do
    redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'type', ARGV[2], 'data', ARGV[i + 1])
    redis.call('XADD', KEYS[2], '*', 'stream', KEYS[1], 'id', ARGV[i], 'type', ARGV[2], 'data', ARGV[i + 1])
end
return {1, len + (#ARGV - 2) / 2}
";

/// What a Redis server says about itself.
#[derive(Debug)]
pub struct RedisInfo {
    pub version: String,
    pub appendonly: String,
    pub appendfsync: String,
}

pub struct RedisStreamsPeer {
    connection: MultiplexedConnection,
    append: Script,
}

impl std::fmt::Debug for RedisStreamsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamsPeer").finish_non_exhaustive()
    }
}

fn key(stream: &str) -> String {
    format!("s:{stream}")
}

impl RedisStreamsPeer {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("bad Redis URL {url}"))?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("could not connect to Redis at {url}"))?;
        Ok(Self {
            connection,
            append: Script::new(APPEND),
        })
    }

    /// The server's version and persistence settings, as it reports them.
    pub async fn info(&self) -> anyhow::Result<RedisInfo> {
        let mut connection = self.connection.clone();
        let get = |name: &'static str| {
            let mut connection = connection.clone();
            async move {
                let pair: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut connection)
                    .await?;
                anyhow::Ok(pair.get(1).cloned().unwrap_or_default())
            }
        };
        let appendonly = get("appendonly").await?;
        let appendfsync = get("appendfsync").await?;
        let server: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await?;
        let version = server
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        Ok(RedisInfo {
            version,
            appendonly,
            appendfsync,
        })
    }

    /// The data field of a stream entry.
    fn data(fields: &std::collections::HashMap<String, Value>) -> anyhow::Result<&[u8]> {
        match fields.get("data") {
            Some(Value::BulkString(data)) => Ok(data),
            other => anyhow::bail!("a stream entry without data: {other:?}"),
        }
    }

    /// Reads `ALL` after `after` with `XREAD` (the subscription command), at most `count`.
    async fn xread(&self, after: &str, count: usize) -> anyhow::Result<StreamReadReply> {
        let mut connection = self.connection.clone();
        let options = StreamReadOptions::default().count(count).block(1000);
        Ok(connection.xread_options(&[ALL], &[after], &options).await?)
    }
}

#[async_trait]
impl Peer for RedisStreamsPeer {
    async fn about(&self) -> anyhow::Result<String> {
        let info = self.info().await?;
        Ok(format!(
            "Redis {}: appendonly={}, appendfsync={}",
            info.version, info.appendonly, info.appendfsync
        ))
    }

    async fn reset(&self) -> anyhow::Result<()> {
        let mut connection = self.connection.clone();
        redis::cmd("FLUSHDB")
            .query_async::<()>(&mut connection)
            .await
            .context("FLUSHDB failed")
    }

    async fn append(
        &self,
        _session: usize,
        stream: &str,
        expect: Expect,
        events: &[Bytes],
    ) -> anyhow::Result<Appended> {
        let mut invocation = self.append.key(key(stream));
        invocation.key(ALL);
        invocation.arg(match expect {
            Expect::Any => -1,
            Expect::Exact(n) => n as i64,
        });
        invocation.arg(EVENT_TYPE);
        for data in events {
            invocation.arg(event_id().to_string()).arg(data.as_ref());
        }
        let mut connection = self.connection.clone();
        let (done, length): (i64, u64) = invocation
            .invoke_async(&mut connection)
            .await
            .context("the append script failed")?;
        Ok(if done == 1 {
            Appended::Done { next: length }
        } else {
            Appended::Conflict
        })
    }

    async fn current(&self, _session: usize, stream: &str) -> anyhow::Result<u64> {
        let mut connection = self.connection.clone();
        Ok(connection.xlen(key(stream)).await?)
    }

    async fn read_stream(&self, _session: usize, stream: &str) -> anyhow::Result<Vec<Bytes>> {
        let mut connection = self.connection.clone();
        let reply: StreamRangeReply = connection.xrange_all(key(stream)).await?;
        reply
            .ids
            .iter()
            .map(|entry| Ok(Bytes::copy_from_slice(Self::data(&entry.map)?)))
            .collect()
    }

    async fn read_all(
        &self,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut connection = self.connection.clone();
        let mut start = "-".to_owned();
        let mut read = 0;
        loop {
            let reply: StreamRangeReply = connection.xrange_count(ALL, &start, "+", PAGE).await?;
            for entry in &reply.ids {
                visit(Self::data(&entry.map)?);
            }
            read += reply.ids.len() as u64;
            match reply.ids.last() {
                Some(last) if reply.ids.len() == PAGE => start = format!("({}", last.id),
                _ => return Ok(read),
            }
        }
    }

    async fn catch_up(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut after = "0".to_owned();
        let mut received = 0;
        while received < count {
            let want = PAGE.min((count - received) as usize);
            let reply = self.xread(&after, want).await?;
            let Some(key) = reply.keys.into_iter().next() else {
                break; // blocked for a second and nothing came
            };
            for entry in &key.ids {
                visit(Self::data(&entry.map)?);
            }
            received += key.ids.len() as u64;
            match key.ids.last() {
                Some(last) => after = last.id.clone(),
                None => break,
            }
        }
        Ok(received)
    }
}
