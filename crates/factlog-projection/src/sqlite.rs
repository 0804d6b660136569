//! The SQLite sink, the embedded default: one database file (WAL, `synchronous=FULL`) holding the
//! read models and the runtime's tables, changed together in one transaction per batch.
//!
//! Readers open the file themselves and query the projection's views: a view named after each
//! table the projection created, pointing at the live generation's table.
//!
//! A checkpoint is a row of `factlog_checkpoints`: `position`, and `partitions` (NULL for a
//! totally ordered checkpoint), as [`Checkpoint::to_columns`] writes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use factlog_store::{Checkpoint, EventId, Position, RecordedEvent, Timestamp};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::projection::{HandleError, Projection, ProjectionName};
use crate::sink::{
    ApplyError, DeadLetter, DeadLetterStatus, NewDeadLetter, Sink, SinkError, Stored, Target,
};
use crate::sql;

/// The runtime's schema, one migration per version. Version `n` is `MIGRATIONS[n - 1]`; a
/// migration never changes once released (databases at its version exist).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE factlog_projections (
    name TEXT PRIMARY KEY,
    live_generation INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE TABLE factlog_checkpoints (
    projection TEXT NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (projection, generation)
);
CREATE TABLE factlog_read_tables (
    projection TEXT NOT NULL,
    generation INTEGER NOT NULL,
    logical TEXT NOT NULL,
    physical TEXT NOT NULL,
    PRIMARY KEY (projection, generation, logical)
);
CREATE TABLE factlog_dead_letters (
    projection TEXT NOT NULL,
    id INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (projection, id)
);
"#,
    // Per-partition checkpoints (Kafka). The rows already there stay NULL: totally ordered.
    "ALTER TABLE factlog_checkpoints ADD COLUMN partitions TEXT;",
];

/// The SQLite sink. Cheap to clone; every clone shares one connection.
#[derive(Debug, Clone)]
pub struct SqliteSink {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

/// What a projection writes to in SQLite: the batch's transaction, and the names of the tables
/// of the generation being written.
#[derive(Debug)]
pub struct SqliteUnit<'u> {
    tx: &'u Connection,
    projection: &'u ProjectionName,
    generation: u64,
}

impl<'u> SqliteUnit<'u> {
    /// The open transaction (a `Connection` inside `BEGIN IMMEDIATE`). Use `prepare_cached` for
    /// statements run once per event.
    pub fn tx(&self) -> &'u Connection {
        self.tx
    }

    /// The name of the table `logical` in the generation being written, quoted for SQL.
    pub fn table(&self, logical: &str) -> String {
        sql::physical_table(self.projection, self.generation, logical)
    }

    /// Creates the table `logical` (for `setup`): `columns` is the part of `CREATE TABLE` in
    /// parentheses. Readers will see it as the view `logical`.
    pub fn create_table(&mut self, logical: &str, columns: &str) -> Result<(), HandleError> {
        sql::check_logical_in(self.projection, logical)?;
        let physical = self.table(logical);
        self.tx
            .execute_batch(&format!("CREATE TABLE {physical} {columns}"))?;
        self.tx.execute(
            "INSERT INTO factlog_read_tables (projection, generation, logical, physical) VALUES (?1, ?2, ?3, ?4)",
            params![self.projection.as_str(), self.generation as i64, logical, physical],
        )?;
        Ok(())
    }
}

impl From<rusqlite::Error> for HandleError {
    fn from(error: rusqlite::Error) -> Self {
        if is_busy(&error) {
            HandleError::Transient(error.to_string())
        } else {
            HandleError::Permanent(error.to_string())
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn sink_error(error: rusqlite::Error) -> SinkError {
    if is_busy(&error) {
        SinkError::Unavailable(format!("sqlite: {error}"))
    } else {
        SinkError::Invalid(format!("sqlite: {error}"))
    }
}

impl From<rusqlite::Error> for ApplyError {
    fn from(error: rusqlite::Error) -> Self {
        ApplyError::Sink(sink_error(error))
    }
}

impl SqliteSink {
    /// Opens (or creates) the database file and brings the runtime's tables up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, SinkError> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let conn = blocking(move || {
            let conn = Connection::open(&opened).map_err(sink_error)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sink_error)?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sink_error)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(sink_error)?;
            conn.set_prepared_statement_cache_capacity(256);
            Ok(conn)
        })
        .await?;
        let sink = Self {
            path,
            conn: Arc::new(Mutex::new(conn)),
        };
        sink.migrate().await?;
        Ok(sink)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the sink's connection, off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ApplyError> + Send + 'static,
    ) -> Result<T, ApplyError> {
        let conn = self.conn.clone();
        blocking(move || f(&mut conn.lock())).await
    }
}

async fn blocking<T: Send + 'static, E: From<SinkError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(SinkError::Invalid(format!("sqlite task failed: {e}"))))?
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).expect("positions, versions and generations fit in i64")
}

/// The checkpoint of `generation`, or `None` when the generation has none.
fn checkpoint_of(
    tx: &Connection,
    name: &ProjectionName,
    generation: u64,
) -> Result<Option<Checkpoint>, ApplyError> {
    let row: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT position, partitions FROM factlog_checkpoints WHERE projection = ?1 AND generation = ?2",
            params![name.as_str(), i64_of(generation)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((position, partitions)) = row else {
        return Ok(None);
    };
    let checkpoint = sql::checkpoint_from_columns(
        "sqlite",
        name,
        generation,
        Position::from_raw(position as u64),
        partitions.as_deref(),
    )?;
    Ok(Some(checkpoint))
}

/// Checks the fence of `target` (both columns of its checkpoint), then runs `f` and moves the
/// checkpoint to `to`, all in one `BEGIN IMMEDIATE` transaction.
fn fenced(
    conn: &mut Connection,
    target: &Target,
    to: &Checkpoint,
    f: impl FnOnce(&Connection) -> Result<(), ApplyError>,
) -> Result<(), ApplyError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = checkpoint_of(&tx, &target.name, target.generation)?;
    if found.as_ref() != Some(&target.checkpoint) {
        return Err(ApplyError::Fenced {
            name: target.name.clone(),
            generation: target.generation,
            expected: Some(target.checkpoint.clone()),
            found,
        });
    }
    f(&tx)?;
    let (position, partitions) = to.to_columns();
    tx.execute(
        "UPDATE factlog_checkpoints SET position = ?3, partitions = ?4, updated_at = ?5 WHERE projection = ?1 AND generation = ?2",
        params![
            target.name.as_str(),
            i64_of(target.generation),
            i64_of(position.raw()),
            partitions,
            Timestamp::now().unix_micros()
        ],
    )?;
    tx.commit()?;
    Ok(())
}

fn handle_events<P: Projection<SqliteSink>>(
    projection: &P,
    unit: &mut SqliteUnit<'_>,
    events: &[RecordedEvent],
) -> Result<(), ApplyError> {
    for (index, event) in events.iter().enumerate() {
        projection
            .handle(event, unit)
            .map_err(|e| ApplyError::event(Some(index), e))?;
    }
    Ok(())
}

fn views(tx: &Connection, name: &ProjectionName, generation: u64) -> rusqlite::Result<()> {
    let tables = read_tables(tx, name, generation)?;
    for (logical, physical) in tables {
        tx.execute_batch(&format!(
            "DROP VIEW IF EXISTS \"{logical}\"; CREATE VIEW \"{logical}\" AS SELECT * FROM {physical};"
        ))?;
    }
    Ok(())
}

fn read_tables(
    tx: &Connection,
    name: &ProjectionName,
    generation: u64,
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut statement = tx.prepare(
        "SELECT logical, physical FROM factlog_read_tables WHERE projection = ?1 AND generation = ?2 ORDER BY logical",
    )?;
    let rows = statement
        .query_map(params![name.as_str(), i64_of(generation)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn drop_generation_in(
    tx: &Connection,
    name: &ProjectionName,
    generation: u64,
) -> rusqlite::Result<()> {
    for (_, physical) in read_tables(tx, name, generation)? {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {physical}"))?;
    }
    for table in [
        "factlog_read_tables",
        "factlog_checkpoints",
        "factlog_dead_letters",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE projection = ?1 AND generation = ?2"),
            params![name.as_str(), i64_of(generation)],
        )?;
    }
    Ok(())
}

const DEAD_LETTER_COLUMNS: &str = "id, generation, position, event_id, stream, version, \
     event_type, data, error, attempts, first_failed_at, last_failed_at, status";

fn dead_letter_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    let event_id: String = row.get(3)?;
    let status: String = row.get(12)?;
    Ok(DeadLetter {
        id: row.get::<_, i64>(0)? as u64,
        generation: row.get::<_, i64>(1)? as u64,
        position: sql::position_of_column(row.get(2)?),
        event_id: event_id.parse::<EventId>().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        stream: row.get(4)?,
        version: row.get::<_, i64>(5)? as u64,
        event_type: row.get(6)?,
        data: row.get(7)?,
        error: row.get(8)?,
        attempts: row.get::<_, i64>(9)? as u32,
        first_failed_at: Timestamp::from_unix_micros(row.get(10)?),
        last_failed_at: Timestamp::from_unix_micros(row.get(11)?),
        status: DeadLetterStatus::parse(&status).unwrap_or(DeadLetterStatus::Parked),
    })
}

fn dead_letter_in(
    tx: &Connection,
    name: &ProjectionName,
    id: u64,
) -> rusqlite::Result<Option<DeadLetter>> {
    tx.query_row(
        &format!("SELECT {DEAD_LETTER_COLUMNS} FROM factlog_dead_letters WHERE projection = ?1 AND id = ?2"),
        params![name.as_str(), i64_of(id)],
        dead_letter_row,
    )
    .optional()
}

/// The dead letter `id`, which must be parked.
fn parked_in(tx: &Connection, name: &ProjectionName, id: u64) -> Result<DeadLetter, ApplyError> {
    let dead_letter = dead_letter_in(tx, name, id)?.ok_or(SinkError::DeadLetterNotFound(id))?;
    if dead_letter.status != DeadLetterStatus::Parked {
        return Err(SinkError::DeadLetterNotParked {
            id,
            status: dead_letter.status.as_str(),
        }
        .into());
    }
    Ok(dead_letter)
}

impl Sink for SqliteSink {
    type Unit<'u> = SqliteUnit<'u>;

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), SinkError> {
        self.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS factlog_schema (version INTEGER NOT NULL)",
            )?;
            let version: Option<i64> = tx
                .query_row("SELECT version FROM factlog_schema", [], |row| row.get(0))
                .optional()?;
            let version = version.unwrap_or(0) as usize;
            if version > MIGRATIONS.len() {
                return Err(SinkError::Invalid(format!(
                    "the projection tables are at schema version {version}, newer than this \
                     Factlog knows ({}); upgrade Factlog",
                    MIGRATIONS.len()
                ))
                .into());
            }
            for migration in &MIGRATIONS[version..] {
                tx.execute_batch(migration)?;
            }
            tx.execute("DELETE FROM factlog_schema", [])?;
            tx.execute(
                "INSERT INTO factlog_schema (version) VALUES (?1)",
                params![MIGRATIONS.len() as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(ApplyError::into_sink)
    }

    async fn load(&self, name: &ProjectionName) -> Result<Option<Stored>, SinkError> {
        let name = name.clone();
        self.run(move |conn| {
            let row: Option<(i64, bool)> = conn
                .query_row(
                    "SELECT live_generation, paused FROM factlog_projections WHERE name = ?1",
                    params![name.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let Some((live, paused)) = row else {
                return Ok(None);
            };
            let mut statement = conn.prepare(
                "SELECT generation, position, partitions FROM factlog_checkpoints WHERE projection = ?1",
            )?;
            let rows = statement
                .query_map(params![name.as_str()], |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        Position::from_raw(row.get::<_, i64>(1)? as u64),
                        row.get::<_, Option<String>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let checkpoints = rows
                .into_iter()
                .map(|(generation, position, partitions)| {
                    let checkpoint = sql::checkpoint_from_columns(
                        "sqlite",
                        &name,
                        generation,
                        position,
                        partitions.as_deref(),
                    )?;
                    Ok((generation, checkpoint))
                })
                .collect::<Result<_, SinkError>>()?;
            Ok(Some(Stored {
                live_generation: live as u64,
                paused,
                checkpoints,
            }))
        })
        .await
        .map_err(ApplyError::into_sink)
    }

    async fn create_generation<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        live: bool,
    ) -> Result<(), ApplyError> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            drop_generation_in(&tx, &target.name, target.generation)?;
            let mut unit = SqliteUnit {
                tx: &tx,
                projection: &target.name,
                generation: target.generation,
            };
            projection
                .setup(&mut unit)
                .map_err(|e| ApplyError::event(None, e))?;
            let now = Timestamp::now().unix_micros();
            let (position, partitions) = target.checkpoint.to_columns();
            tx.execute(
                "INSERT INTO factlog_checkpoints (projection, generation, position, partitions, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![target.name.as_str(), i64_of(target.generation), i64_of(position.raw()), partitions, now],
            )?;
            if live {
                tx.execute(
                    "INSERT INTO factlog_projections (name, live_generation, paused, updated_at) VALUES (?1, ?2, 0, ?3)",
                    params![target.name.as_str(), i64_of(target.generation), now],
                )?;
                views(&tx, &target.name, target.generation)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn apply<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        events: Vec<RecordedEvent>,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        self.run(move |conn| {
            fenced(conn, &target, &to, |tx| {
                let mut unit = SqliteUnit {
                    tx,
                    projection: &target.name,
                    generation: target.generation,
                };
                handle_events(&*projection, &mut unit, &events)
            })
        })
        .await
    }

    async fn park(
        &self,
        target: Target,
        dead_letter: NewDeadLetter,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        self.run(move |conn| {
            fenced(conn, &target, &to, |tx| {
                let event = &dead_letter.event;
                tx.execute(
                    "INSERT INTO factlog_dead_letters (projection, id, generation, position, event_id, \
                     stream, version, event_type, data, error, attempts, first_failed_at, \
                     last_failed_at, status) \
                     VALUES (?1, (SELECT COALESCE(MAX(id), 0) + 1 FROM factlog_dead_letters WHERE projection = ?1), \
                     ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'parked')",
                    params![
                        target.name.as_str(),
                        i64_of(target.generation),
                        sql::position_column(event.position),
                        event.id.to_string(),
                        event.stream.as_str(),
                        i64_of(event.version),
                        event.event_type.as_str(),
                        dead_letter.data_text(),
                        dead_letter.error,
                        i64::from(dead_letter.attempts),
                        dead_letter.first_failed_at.unix_micros(),
                        dead_letter.last_failed_at.unix_micros(),
                    ],
                )?;
                Ok(())
            })
        })
        .await
    }

    async fn set_checkpoint(&self, target: Target, to: Checkpoint) -> Result<(), ApplyError> {
        self.run(move |conn| fenced(conn, &target, &to, |_| Ok(())))
            .await
    }

    async fn swap(&self, name: &ProjectionName, from: u64, to: u64) -> Result<(), SinkError> {
        let name = name.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let updated = tx.execute(
                "UPDATE factlog_projections SET live_generation = ?3, updated_at = ?4 WHERE name = ?1 AND live_generation = ?2",
                params![name.as_str(), i64_of(from), i64_of(to), Timestamp::now().unix_micros()],
            )?;
            if updated != 1 {
                return Err(SinkError::Invalid(format!(
                    "cannot swap {name} from generation {from}: it is not the live one"
                ))
                .into());
            }
            for (logical, _) in read_tables(&tx, &name, from)? {
                tx.execute_batch(&format!("DROP VIEW IF EXISTS \"{logical}\""))?;
            }
            views(&tx, &name, to)?;
            drop_generation_in(&tx, &name, from)?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(ApplyError::into_sink)
    }

    async fn drop_generation(
        &self,
        name: &ProjectionName,
        generation: u64,
    ) -> Result<(), SinkError> {
        let name = name.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            drop_generation_in(&tx, &name, generation)?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(ApplyError::into_sink)
    }

    async fn set_paused(&self, name: &ProjectionName, paused: bool) -> Result<(), SinkError> {
        let name = name.clone();
        self.run(move |conn| {
            conn.execute(
                "UPDATE factlog_projections SET paused = ?2, updated_at = ?3 WHERE name = ?1",
                params![name.as_str(), paused, Timestamp::now().unix_micros()],
            )?;
            Ok(())
        })
        .await
        .map_err(ApplyError::into_sink)
    }

    async fn dead_letters(&self, name: &ProjectionName) -> Result<Vec<DeadLetter>, SinkError> {
        let name = name.clone();
        self.run(move |conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM factlog_dead_letters WHERE projection = ?1 ORDER BY id"
            ))?;
            let rows = statement
                .query_map(params![name.as_str()], dead_letter_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
        .map_err(ApplyError::into_sink)
    }

    async fn retry_dead_letter<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        name: ProjectionName,
        generation: u64,
        id: u64,
        event: RecordedEvent,
    ) -> Result<(), ApplyError> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            parked_in(&tx, &name, id)?;
            let mut unit = SqliteUnit {
                tx: &tx,
                projection: &name,
                generation,
            };
            handle_events(&*projection, &mut unit, std::slice::from_ref(&event))?;
            tx.execute(
                "UPDATE factlog_dead_letters SET status = 'retried' WHERE projection = ?1 AND id = ?2",
                params![name.as_str(), i64_of(id)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn fail_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        error: String,
        at: Timestamp,
    ) -> Result<(), SinkError> {
        let name = name.clone();
        self.run(move |conn| {
            conn.execute(
                "UPDATE factlog_dead_letters SET error = ?3, attempts = attempts + 1, last_failed_at = ?4 WHERE projection = ?1 AND id = ?2",
                params![name.as_str(), i64_of(id), error, at.unix_micros()],
            )?;
            Ok(())
        })
        .await
        .map_err(ApplyError::into_sink)
    }

    async fn skip_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        _at: Timestamp,
    ) -> Result<(), SinkError> {
        let name = name.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            parked_in(&tx, &name, id)?;
            tx.execute(
                "UPDATE factlog_dead_letters SET status = 'skipped' WHERE projection = ?1 AND id = ?2",
                params![name.as_str(), i64_of(id)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(ApplyError::into_sink)
    }
}
