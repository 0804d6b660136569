//! SQLite as an event store: the same `events` table as the PostgreSQL peer (a global sequence
//! in the rowid, a unique `(stream_id, version)`, a unique event id), in WAL mode with
//! `synchronous=FULL`, so a commit is acknowledged after the WAL is fsynced. An append is one
//! `BEGIN IMMEDIATE` transaction (SQLite has one writer at a time) that reads the stream's last
//! version, checks the expectation and inserts the events. Each session has its own connection;
//! the calls run on tokio's blocking threads, as an application using rusqlite would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Appended, EVENT_TYPE, Expect, Peer, event_id};

/// Rows per page of `read_all` and `catch_up`.
const PAGE: i64 = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (stream_id, version)
);
";

pub struct SqlitePeer {
    path: PathBuf,
    sessions: Vec<Arc<Mutex<Connection>>>,
}

impl std::fmt::Debug for SqlitePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlitePeer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    let connection =
        Connection::open(path).with_context(|| format!("could not open {}", path.display()))?;
    connection.busy_timeout(Duration::from_secs(60))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    Ok(connection)
}

impl SqlitePeer {
    /// A database file at `path` with `sessions` connections.
    pub fn open(path: &Path, sessions: usize) -> anyhow::Result<Self> {
        let first = open(path)?;
        first.execute_batch(SCHEMA)?;
        let mut connections = vec![Arc::new(Mutex::new(first))];
        for _ in 1..sessions.max(1) {
            connections.push(Arc::new(Mutex::new(open(path)?)));
        }
        Ok(Self {
            path: path.to_path_buf(),
            sessions: connections,
        })
    }

    /// Reads events in global order, a page at a time, until `count` or the end. Pages are
    /// read on this thread: `visit` is borrowed, not 'static.
    fn pages(&self, count: u64, visit: &mut dyn FnMut(&[u8])) -> anyhow::Result<u64> {
        let connection = self.sessions[0].lock().expect("not poisoned");
        let mut after = 0;
        let mut read = 0;
        while read < count {
            let limit = PAGE.min((count - read).min(i64::MAX as u64) as i64);
            let (last, n) = page(&connection, after, limit, visit)?;
            read += n;
            after = last;
            if (n as i64) < limit {
                break;
            }
        }
        Ok(read)
    }

    /// Runs `f` on a session's connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        session: usize,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let connection = self.sessions[session % self.sessions.len()].clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .expect("a connection's lock is not poisoned");
            f(&mut connection)
        })
        .await
        .context("a SQLite call panicked")?
    }
}

fn count(connection: &Connection, stream: &str) -> rusqlite::Result<u64> {
    let last: Option<i64> = connection
        .query_row(
            "SELECT max(version) FROM events WHERE stream_id = ?1",
            [stream],
            |row| row.get(0),
        )
        .optional()?
        .flatten();
    Ok(last.map_or(0, |v| v as u64 + 1))
}

/// Reads up to `limit` events after `after` into `visit`; the last position read.
fn page(
    connection: &Connection,
    after: i64,
    limit: i64,
    visit: &mut dyn FnMut(&[u8]),
) -> anyhow::Result<(i64, u64)> {
    let mut statement = connection.prepare_cached(
        "SELECT global_position, data FROM events WHERE global_position > ?1
         ORDER BY global_position LIMIT ?2",
    )?;
    let mut rows = statement.query(params![after, limit])?;
    let mut last = after;
    let mut read = 0;
    while let Some(row) = rows.next()? {
        last = row.get(0)?;
        visit(row.get_ref(1)?.as_bytes()?);
        read += 1;
    }
    Ok((last, read))
}

#[async_trait]
impl Peer for SqlitePeer {
    async fn about(&self) -> anyhow::Result<String> {
        self.with(0, |c| {
            let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let sync = match sync {
                0 => "OFF",
                1 => "NORMAL",
                2 => "FULL",
                3 => "EXTRA",
                _ => "?",
            };
            Ok(format!(
                "SQLite {} (rusqlite, bundled): journal_mode={mode}, synchronous={sync}",
                rusqlite::version()
            ))
        })
        .await
    }

    async fn reset(&self) -> anyhow::Result<()> {
        self.with(0, |c| {
            c.execute_batch("DELETE FROM events; DELETE FROM sqlite_sequence;")?;
            Ok(())
        })
        .await
    }

    async fn append(
        &self,
        session: usize,
        stream: &str,
        expect: Expect,
        events: &[Bytes],
    ) -> anyhow::Result<Appended> {
        let stream = stream.to_owned();
        let events = events.to_vec();
        self.with(session, move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current = count(&tx, &stream)?;
            if let Expect::Exact(expected) = expect
                && expected != current
            {
                return Ok(Appended::Conflict);
            }
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (stream_id, version, event_id, event_type, data)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (i, data) in events.iter().enumerate() {
                    let data = std::str::from_utf8(data).context("event data is not UTF-8")?;
                    insert.execute(params![
                        stream,
                        (current + i as u64) as i64,
                        event_id().to_string(),
                        EVENT_TYPE,
                        data
                    ])?;
                }
            }
            tx.commit()?;
            Ok(Appended::Done {
                next: current + events.len() as u64,
            })
        })
        .await
    }

    async fn current(&self, session: usize, stream: &str) -> anyhow::Result<u64> {
        let stream = stream.to_owned();
        self.with(session, move |c| Ok(count(c, &stream)?)).await
    }

    async fn read_stream(&self, session: usize, stream: &str) -> anyhow::Result<Vec<Bytes>> {
        let stream = stream.to_owned();
        self.with(session, move |c| {
            let mut statement =
                c.prepare_cached("SELECT data FROM events WHERE stream_id = ?1 ORDER BY version")?;
            let mut rows = statement.query([stream])?;
            let mut data = Vec::new();
            while let Some(row) = rows.next()? {
                data.push(Bytes::copy_from_slice(row.get_ref(0)?.as_bytes()?));
            }
            Ok(data)
        })
        .await
    }

    async fn read_all(
        &self,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        self.pages(u64::MAX, visit)
    }

    async fn catch_up(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        // SQLite has no subscription: an application polls by global position, as here.
        self.pages(count, visit)
    }
}
