//! PostgreSQL as an event store, the way common Postgres event stores do it: one `events`
//! table with a global sequence (an identity column), a unique `(stream_id, version)`, a unique
//! event id and the data as `jsonb`; an append is one transaction that reads the stream's last
//! version, checks the expectation, and inserts every event in one multi-row `INSERT`. Two
//! writers racing for the same version both pass the check, and the unique constraint lets one
//! commit (the other gets a unique violation: a conflict). An append without expectation
//! retries that race. The server runs with `fsync=on` and `synchronous_commit=on`, so a commit
//! is acknowledged after its WAL is flushed (group commit across sessions).
//!
//! Reading everything and the catch-up subscription page by the global sequence (`WHERE
//! global_position > $1 ORDER BY global_position LIMIT n`): PostgreSQL has no subscription of
//! its own, and polling is what these stores do. (Identity values are taken before commit, so
//! a poller can skip an event committed late; the benchmark only reads a quiet table.)

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use super::{Appended, EVENT_TYPE, Expect, Peer, event_id};

/// Rows per page of `read_all` and `catch_up`.
const PAGE: i64 = 4096;

const SCHEMA: &str = "
DROP TABLE IF EXISTS events;
CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    event_id uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);
";

/// One connection per session, with its statements prepared.
struct Session {
    client: Client,
    last_version: Statement,
    insert: Statement,
    read_stream: Statement,
    read_page: Statement,
}

pub struct PostgresPeer {
    sessions: Vec<Session>,
}

impl std::fmt::Debug for PostgresPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresPeer")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl PostgresPeer {
    /// Connects `sessions` connections to `url` and (re)creates the table.
    pub async fn connect(url: &str, sessions: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(sessions);
        for _ in 0..sessions.max(1) {
            let (client, connection) = tokio_postgres::connect(url, NoTls)
                .await
                .with_context(|| format!("could not connect to PostgreSQL at {url}"))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("PostgreSQL connection ended: {e}");
                }
            });
            clients.push(client);
        }
        clients[0]
            .batch_execute(SCHEMA)
            .await
            .context("could not create the events table")?;
        let mut prepared = Vec::with_capacity(clients.len());
        for client in clients {
            prepared.push(Session::prepare(client).await?);
        }
        Ok(Self { sessions: prepared })
    }

    fn session(&self, session: usize) -> &Session {
        &self.sessions[session % self.sessions.len()]
    }
}

impl Session {
    async fn prepare(client: Client) -> anyhow::Result<Self> {
        let last_version = client
            .prepare("SELECT max(version) FROM events WHERE stream_id = $1")
            .await?;
        let insert = client
            .prepare(
                "INSERT INTO events (stream_id, version, event_id, event_type, data)
                 SELECT $1, $2::bigint + t.n - 1, t.id::uuid, $3, t.data::jsonb
                 FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS t(id, data, n)",
            )
            .await?;
        let read_stream = client
            .prepare("SELECT data::text FROM events WHERE stream_id = $1 ORDER BY version")
            .await?;
        let read_page = client
            .prepare(
                "SELECT global_position, data::text FROM events
                 WHERE global_position > $1 ORDER BY global_position LIMIT $2",
            )
            .await?;
        Ok(Self {
            client,
            last_version,
            insert,
            read_stream,
            read_page,
        })
    }

    /// Reads events in global order, a page at a time, until `count` or the end.
    async fn pages(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        let mut after = 0i64;
        let mut read = 0;
        while read < count {
            let limit = PAGE.min((count - read).min(i64::MAX as u64) as i64);
            let rows = self
                .client
                .query(&self.read_page, &[&after, &limit])
                .await?;
            for row in &rows {
                after = row.get(0);
                visit(row.get::<_, &str>(1).as_bytes());
            }
            read += rows.len() as u64;
            if (rows.len() as i64) < limit {
                break;
            }
        }
        Ok(read)
    }

    /// Events of the stream now (its last version + 1), in the open transaction.
    async fn count(&self, stream: &str) -> anyhow::Result<u64> {
        let row = self
            .client
            .query_one(&self.last_version, &[&stream])
            .await?;
        let last: Option<i64> = row.get(0);
        Ok(last.map_or(0, |v| v as u64 + 1))
    }

    /// One attempt: `Ok(None)` when the expectation failed or another writer took the version.
    async fn try_append(
        &self,
        stream: &str,
        expect: Expect,
        ids: &[String],
        data: &[String],
    ) -> anyhow::Result<Option<u64>> {
        self.client.batch_execute("BEGIN").await?;
        let result = async {
            let count = self.count(stream).await?;
            if let Expect::Exact(expected) = expect
                && expected != count
            {
                return Ok(None);
            }
            let inserted = self
                .client
                .execute(
                    &self.insert,
                    &[&stream, &(count as i64), &EVENT_TYPE, &ids, &data],
                )
                .await;
            match inserted {
                Ok(_) => Ok(Some(count + data.len() as u64)),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(None),
                Err(e) => Err(anyhow::Error::new(e).context("INSERT failed")),
            }
        }
        .await;
        match result {
            Ok(Some(next)) => {
                match self.client.batch_execute("COMMIT").await {
                    Ok(()) => Ok(Some(next)),
                    // A unique violation can also surface at commit (deferred checks are not
                    // used here, but a serialization failure would come back the same way).
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(None),
                    Err(e) => Err(anyhow::Error::new(e).context("COMMIT failed")),
                }
            }
            other => {
                self.client.batch_execute("ROLLBACK").await?;
                other
            }
        }
    }
}

#[async_trait]
impl Peer for PostgresPeer {
    async fn about(&self) -> anyhow::Result<String> {
        let client = &self.session(0).client;
        let mut settings = Vec::new();
        for name in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
        ] {
            let row = client.query_one(&format!("SHOW {name}"), &[]).await?;
            settings.push(format!("{name}={}", row.get::<_, String>(0)));
        }
        Ok(format!("PostgreSQL: {}", settings.join(", ")))
    }

    async fn reset(&self) -> anyhow::Result<()> {
        self.sessions[0]
            .client
            .batch_execute("TRUNCATE events RESTART IDENTITY")
            .await
            .context("could not empty the events table")
    }

    async fn append(
        &self,
        session: usize,
        stream: &str,
        expect: Expect,
        events: &[Bytes],
    ) -> anyhow::Result<Appended> {
        let session = self.session(session);
        let ids: Vec<String> = events.iter().map(|_| event_id().to_string()).collect();
        let data: Vec<String> = events
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        loop {
            match session.try_append(stream, expect, &ids, &data).await? {
                Some(next) => return Ok(Appended::Done { next }),
                None if expect == Expect::Any => continue,
                None => return Ok(Appended::Conflict),
            }
        }
    }

    async fn current(&self, session: usize, stream: &str) -> anyhow::Result<u64> {
        self.session(session).count(stream).await
    }

    async fn read_stream(&self, session: usize, stream: &str) -> anyhow::Result<Vec<Bytes>> {
        let session = self.session(session);
        let rows = session
            .client
            .query(&session.read_stream, &[&stream])
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Bytes::from(row.get::<_, String>(0)))
            .collect())
    }

    async fn read_all(
        &self,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        self.session(0).pages(u64::MAX, visit).await
    }

    async fn catch_up(
        &self,
        count: u64,
        visit: &mut (dyn for<'d> FnMut(&'d [u8]) + Send),
    ) -> anyhow::Result<u64> {
        // Polling by global position is the subscription of a PostgreSQL event store.
        self.session(0).pages(count, visit).await
    }
}
