//! The PostgreSQL sink: the read models and the runtime's tables in one schema of a PostgreSQL
//! database, changed together in one transaction per batch.
//!
//! Readers connect themselves and query the projection's views, in the sink's schema: a view
//! named after each table the projection created, pointing at the live generation's table.
//!
//! # Units of work
//!
//! A projection's handler cannot wait for the server, so [`PostgresUnit`] *queues* statements
//! ([`PostgresUnit::execute`], [`PostgresUnit::statement`]). At commit the sink opens a
//! transaction, locks the checkpoint row (`SELECT ... FOR UPDATE`) and checks the fence, then
//! sends every queued statement at once, in order, without waiting for each answer (tokio-postgres
//! pipelines the requests of one connection), and moves the checkpoint and commits. A batch
//! costs a handful of round trips whatever its size.
//!
//! Each distinct statement is prepared once per connection and cached; the statements a batch
//! has not seen before are prepared together before any of them runs. So a statement queued by
//! `handle` cannot refer to a table created earlier in the same batch: create tables in
//! `setup`, whose statements run one after the other.
//!
//! A failing statement fails its event: permanently for SQLSTATE classes 22 (data exception),
//! 23 (integrity constraint) and 42 (syntax error or undefined object), and for a parameter the
//! statement cannot take; transiently otherwise. Connection errors and SQLSTATEs 08xxx, 40001,
//! 40P01, 53xxx and 57P01-57P03 make the sink unavailable (retried with backoff); the sink
//! reconnects on its next operation when the connection is closed.
//!
//! # Checkpoints
//!
//! A checkpoint is a row of `factlog_checkpoints`: `position`, and `partitions` (NULL for a
//! totally ordered checkpoint), as [`Checkpoint::to_columns`] writes them. The fence compares
//! both columns with the row locked.
//!
//! # Views
//!
//! Swapping generations replaces each view (`CREATE OR REPLACE VIEW`, which keeps its grants) in
//! the transaction that switches the live generation and drops the old generation's tables.
//! When the new generation's columns are not compatible with the view's (a column removed,
//! renamed or of another type), the view is dropped and created again instead, losing its
//! grants.

use std::collections::HashMap;
use std::fmt;
use std::future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use factlog_store::{Checkpoint, EventId, Position, RecordedEvent, Timestamp};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, TryStreamExt};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, Config, GenericClient, NoTls, Row, Statement, Transaction};

use crate::projection::{HandleError, Projection, ProjectionName};
use crate::sink::{
    ApplyError, DeadLetter, DeadLetterStatus, NewDeadLetter, Sink, SinkError, Stored, Target,
};
use crate::sql;

/// The runtime's schema, one migration per version. Version `n` is `MIGRATIONS[n - 1]`; a
/// migration never changes once released (schemas at its version exist).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE factlog_projections (
    name TEXT PRIMARY KEY,
    live_generation BIGINT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL
);
CREATE TABLE factlog_checkpoints (
    projection TEXT NOT NULL,
    generation BIGINT NOT NULL,
    position BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (projection, generation)
);
CREATE TABLE factlog_read_tables (
    projection TEXT NOT NULL,
    generation BIGINT NOT NULL,
    logical TEXT NOT NULL,
    physical TEXT NOT NULL,
    PRIMARY KEY (projection, generation, logical)
);
CREATE TABLE factlog_dead_letters (
    projection TEXT NOT NULL,
    id BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    position BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    first_failed_at BIGINT NOT NULL,
    last_failed_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (projection, id)
);
"#,
    // Per-partition checkpoints (Kafka). The rows already there stay NULL: totally ordered.
    "ALTER TABLE factlog_checkpoints ADD COLUMN partitions TEXT;",
];

/// The first key of the advisory lock that serializes migrations (`"Flog"`); the second is the
/// hash of the schema's name.
const MIGRATION_LOCK_CLASS: i32 = 0x466c_6f67;
/// Used when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection; the cache is emptied when it would hold more.
const STATEMENTS_CACHED_MAX: usize = 512;

const CHECKPOINT_FOR_UPDATE: &str = "SELECT position, partitions FROM factlog_checkpoints \
     WHERE projection = $1 AND generation = $2 FOR UPDATE";
const CHECKPOINT_UPDATE: &str = "UPDATE factlog_checkpoints \
     SET position = $3, partitions = $4, updated_at = $5 \
     WHERE projection = $1 AND generation = $2";
const READ_TABLES: &str = "SELECT logical, physical FROM factlog_read_tables \
     WHERE projection = $1 AND generation = $2 ORDER BY logical";
const DEAD_LETTER_COLUMNS: &str = "id, generation, position, event_id, stream, version, \
     event_type, data, error, attempts, first_failed_at, last_failed_at, status";

/// The PostgreSQL sink. Cheap to clone; every clone shares one connection, on which its
/// operations run one at a time.
#[derive(Clone)]
pub struct PostgresSink {
    config: Config,
    schema: String,
    conn: Arc<Mutex<Option<Conn>>>,
}

impl fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the configuration: it may hold a password.
        f.debug_struct("PostgresSink")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// A connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A parameter of a queued statement.
type Param = Box<dyn ToSql + Sync + Send>;

/// What a projection writes to in PostgreSQL: a queue of statements that run, in order, in the
/// batch's transaction, and the names of the tables of the generation being written.
#[derive(Debug)]
pub struct PostgresUnit<'u> {
    projection: &'u ProjectionName,
    generation: u64,
    /// The event being handled: its index in the batch (`None` in `setup`).
    event: Option<usize>,
    queued: Vec<Queued>,
}

/// A statement waiting for the commit of its unit.
#[derive(Debug)]
struct Queued {
    sql: String,
    params: Vec<Param>,
    origin: Origin,
}

/// Where a statement comes from, which decides what its failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Queued by a projection: by `handle` for the event at this index of the batch, or by
    /// `setup` (`None`).
    Projection(Option<usize>),
    /// The runtime's own bookkeeping (the checkpoint, a dead letter).
    Runtime,
}

/// The parameters of a statement queued by [`PostgresUnit::statement`].
#[derive(Debug)]
pub struct Bind<'a> {
    params: &'a mut Vec<Param>,
}

impl Bind<'_> {
    /// Adds the next parameter (`$1`, `$2`, ... in order). Its Rust type must match the type
    /// PostgreSQL infers for the parameter: `i64` for `BIGINT`, `i32` for `INTEGER`, `String`
    /// or `&'static str` for `TEXT`, `bool`, `Option<T>` for `NULL`, ...
    pub fn bind<T: ToSql + Sync + Send + 'static>(self, value: T) -> Self {
        self.params.push(Box::new(value));
        self
    }
}

impl<'u> PostgresUnit<'u> {
    fn new(projection: &'u ProjectionName, generation: u64) -> Self {
        Self {
            projection,
            generation,
            event: None,
            queued: Vec::new(),
        }
    }

    /// Queues a statement with its parameters (`$1`, `$2`, ...), to run in the unit's
    /// transaction after the statements queued before it.
    pub fn execute(&mut self, sql: impl Into<String>, params: Vec<Box<dyn ToSql + Sync + Send>>) {
        self.queued.push(Queued {
            sql: sql.into(),
            params,
            origin: Origin::Projection(self.event),
        });
    }

    /// Queues a statement and returns a builder for its parameters:
    /// `unit.statement(sql).bind(stream).bind(version);`.
    pub fn statement(&mut self, sql: impl Into<String>) -> Bind<'_> {
        self.execute(sql, Vec::new());
        let queued = self.queued.last_mut().expect("just queued");
        Bind {
            params: &mut queued.params,
        }
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
        self.execute(format!("CREATE TABLE {physical} {columns}"), Vec::new());
        self.execute(
            "INSERT INTO factlog_read_tables (projection, generation, logical, physical) \
             VALUES ($1, $2, $3, $4)",
            vec![
                Box::new(self.projection.as_str().to_owned()),
                Box::new(i64_of(self.generation)),
                Box::new(logical.to_owned()),
                Box::new(physical),
            ],
        );
        Ok(())
    }

    /// The projection being written.
    pub fn projection(&self) -> &ProjectionName {
        self.projection
    }

    /// The generation being written.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Queued {
    fn runtime(sql: &str, params: Vec<Param>) -> Self {
        Self {
            sql: sql.to_owned(),
            params,
            origin: Origin::Runtime,
        }
    }
}

impl Origin {
    /// What the failure of a statement of this origin means.
    fn error(self, error: tokio_postgres::Error) -> ApplyError {
        match self {
            Origin::Runtime => sink_error(error).into(),
            Origin::Projection(index) => statement_error(error, index),
        }
    }
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).expect("positions, versions and generations fit in i64")
}

fn u64_of(value: i64, what: &str) -> Result<u64, SinkError> {
    u64::try_from(value)
        .map_err(|_| SinkError::Invalid(format!("postgres: negative {what} {value} stored")))
}

/// The SQLSTATEs worth retrying with backoff: the connection, the server's resources, a
/// serialization failure or deadlock, a server shutting down.
fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
        }
        // Not an error of the server: the connection failed or is closed.
        None => {
            error.is_closed()
                || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// The error with its server-side details (tokio-postgres's `Display` shows only its kind).
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut message = format!("postgres: {} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            message.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        return message;
    }
    let mut message = format!("postgres: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// An error of the runtime's own statements.
fn sink_error(error: tokio_postgres::Error) -> SinkError {
    if is_unavailable(&error) {
        SinkError::Unavailable(describe(&error))
    } else {
        SinkError::Invalid(describe(&error))
    }
}

/// An error of a statement a projection queued.
fn statement_error(error: tokio_postgres::Error, index: Option<usize>) -> ApplyError {
    if is_unavailable(&error) {
        return SinkError::Unavailable(describe(&error)).into();
    }
    let permanent = match error.code() {
        Some(code) => matches!(&code.code()[..2], "22" | "23" | "42"),
        // A parameter the statement cannot take, or a wrong number of them: failing again.
        None => true,
    };
    ApplyError::Event {
        index,
        message: describe(&error),
        permanent,
    }
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(error: tokio_postgres::Error) -> Self {
        ApplyError::Sink(sink_error(error))
    }
}

/// The checkpoint of `generation` of `name` in `row`, whose columns `first` and `first + 1` are
/// its position and partitions.
fn checkpoint_row(
    row: &Row,
    first: usize,
    name: &ProjectionName,
    generation: u64,
) -> Result<Checkpoint, SinkError> {
    let position = Position::from_raw(u64_of(get(row, first)?, "position")?);
    let partitions: Option<&str> = get(row, first + 1)?;
    sql::checkpoint_from_columns("postgres", name, generation, position, partitions)
}

/// Column `index` of `row`.
fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, SinkError> {
    row.try_get(index)
        .map_err(|e| SinkError::Invalid(format!("reading column {index}: {}", describe(&e))))
}

/// The statement `sql`, prepared on this connection once.
async fn prepared<C: GenericClient + Sync>(
    client: &C,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(statement) = cache.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql).await?;
    cache_statement(cache, sql, &statement);
    Ok(statement)
}

fn cache_statement(cache: &mut HashMap<String, Statement>, sql: &str, statement: &Statement) {
    if cache.len() >= STATEMENTS_CACHED_MAX {
        cache.clear();
    }
    cache.insert(sql.to_owned(), statement.clone());
}

/// A request of a pipeline that failed: the origin of its statement and the error.
type Failure = (Origin, tokio_postgres::Error);

/// Polls each request once, in order: tokio-postgres sends a request when its future is first
/// polled, so the server runs them in this order. Then waits for the answers, in order, and
/// returns the first failure.
async fn pipelined<'a, T: Send + 'a>(
    requests: Vec<BoxFuture<'a, Result<T, Failure>>>,
) -> Result<Vec<T>, Failure> {
    send_in_order(requests).try_collect().await
}

fn send_in_order<'a, T: Send + 'a>(
    requests: Vec<BoxFuture<'a, Result<T, Failure>>>,
) -> FuturesOrdered<BoxFuture<'a, Result<T, Failure>>> {
    // The waker does not matter: the FuturesOrdered polls every request again with its own.
    let mut cx = Context::from_waker(Waker::noop());
    let mut ordered = FuturesOrdered::new();
    for mut request in requests {
        match request.poll_unpin(&mut cx) {
            Poll::Ready(result) => ordered.push_back(future::ready(result).boxed()),
            Poll::Pending => ordered.push_back(request),
        }
    }
    ordered
}

/// Runs `queued` in `tx`: prepares the statements not prepared yet on this connection (together),
/// then runs them all, pipelined, in order. The first failure in order decides the error.
async fn run_queued(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    queued: &[Queued],
) -> Result<(), ApplyError> {
    let result = run_queued_in(tx, cache, queued).await;
    if result.is_err() {
        // A statement whose table changed since it was prepared can fail for that alone
        // ("cached plan must not change result type"): start afresh.
        cache.clear();
    }
    result.map_err(|(origin, error)| origin.error(error))
}

async fn run_queued_in(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    queued: &[Queued],
) -> Result<(), Failure> {
    let mut statements: HashMap<&str, Statement> = HashMap::new();
    let mut unprepared: Vec<(&str, Origin)> = Vec::new();
    for q in queued {
        let sql = q.sql.as_str();
        if statements.contains_key(sql) || unprepared.iter().any(|(s, _)| *s == sql) {
            continue;
        }
        match cache.get(sql) {
            Some(statement) => {
                statements.insert(sql, statement.clone());
            }
            None => unprepared.push((sql, q.origin)),
        }
    }
    if !unprepared.is_empty() {
        let prepares = unprepared
            .iter()
            .map(|&(sql, origin)| {
                async move { tx.prepare(sql).await.map_err(|e| (origin, e)) }.boxed()
            })
            .collect();
        let prepared = pipelined(prepares).await?;
        for ((sql, _), statement) in unprepared.into_iter().zip(prepared) {
            cache_statement(cache, sql, &statement);
            statements.insert(sql, statement);
        }
    }
    let executes = queued
        .iter()
        .map(|q| {
            let statement = statements[q.sql.as_str()].clone();
            let params = q.params.iter().map(|p| &**p as &(dyn ToSql + Sync));
            let origin = q.origin;
            async move {
                tx.execute_raw(&statement, params)
                    .await
                    .map_err(|e| (origin, e))
            }
            .boxed()
        })
        .collect();
    pipelined(executes).await?;
    Ok(())
}

fn handle_events<P: Projection<PostgresSink>>(
    projection: &P,
    unit: &mut PostgresUnit<'_>,
    events: &[RecordedEvent],
) -> Result<(), ApplyError> {
    for (index, event) in events.iter().enumerate() {
        unit.event = Some(index);
        projection
            .handle(event, unit)
            .map_err(|e| ApplyError::event(Some(index), e))?;
    }
    unit.event = None;
    Ok(())
}

async fn read_tables(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    name: &ProjectionName,
    generation: u64,
) -> Result<Vec<(String, String)>, ApplyError> {
    let statement = prepared(tx, cache, READ_TABLES).await?;
    let rows = tx
        .query(&statement, &[&name.as_str(), &i64_of(generation)])
        .await?;
    rows.iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect()
}

/// Points the view of each table of `generation` at it; with `from`, drops the views of the
/// tables of `from` that `generation` does not have.
async fn views(
    tx: &mut Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    name: &ProjectionName,
    from: Option<u64>,
    generation: u64,
) -> Result<(), ApplyError> {
    let tables = read_tables(tx, cache, name, generation).await?;
    if let Some(from) = from {
        for (logical, _) in read_tables(tx, cache, name, from).await? {
            if !tables.iter().any(|(l, _)| *l == logical) {
                tx.batch_execute(&format!("DROP VIEW IF EXISTS \"{logical}\""))
                    .await?;
            }
        }
    }
    for (logical, physical) in tables {
        // Replacing keeps the view's grants, but only works when the columns still fit.
        let savepoint = tx.savepoint("factlog_view").await?;
        let replaced = savepoint
            .batch_execute(&format!(
                "CREATE OR REPLACE VIEW \"{logical}\" AS SELECT * FROM {physical}"
            ))
            .await;
        match replaced {
            Ok(()) => savepoint.commit().await?,
            Err(e) if e.code() == Some(&SqlState::INVALID_TABLE_DEFINITION) => {
                savepoint.rollback().await?;
                tx.batch_execute(&format!(
                    "DROP VIEW IF EXISTS \"{logical}\"; \
                     CREATE VIEW \"{logical}\" AS SELECT * FROM {physical}"
                ))
                .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn drop_generation_in(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    name: &ProjectionName,
    generation: u64,
) -> Result<(), ApplyError> {
    let tables = read_tables(tx, cache, name, generation).await?;
    if !tables.is_empty() {
        let physical: Vec<&str> = tables.iter().map(|(_, p)| p.as_str()).collect();
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", physical.join(", ")))
            .await?;
    }
    for table in [
        "factlog_read_tables",
        "factlog_checkpoints",
        "factlog_dead_letters",
    ] {
        let statement = prepared(
            tx,
            cache,
            &format!("DELETE FROM {table} WHERE projection = $1 AND generation = $2"),
        )
        .await?;
        tx.execute(&statement, &[&name.as_str(), &i64_of(generation)])
            .await?;
    }
    Ok(())
}

fn dead_letter_row(row: &Row) -> Result<DeadLetter, SinkError> {
    let event_id: String = get(row, 3)?;
    let status: String = get(row, 12)?;
    Ok(DeadLetter {
        id: u64_of(get(row, 0)?, "dead letter id")?,
        generation: u64_of(get(row, 1)?, "generation")?,
        position: sql::position_of_column(get(row, 2)?),
        event_id: event_id.parse::<EventId>().map_err(|e| {
            SinkError::Invalid(format!("postgres: invalid event id {event_id:?}: {e}"))
        })?,
        stream: get(row, 4)?,
        version: u64_of(get(row, 5)?, "version")?,
        event_type: get(row, 6)?,
        data: get(row, 7)?,
        error: get(row, 8)?,
        attempts: u32::try_from(get::<i64>(row, 9)?).unwrap_or(u32::MAX),
        first_failed_at: Timestamp::from_unix_micros(get(row, 10)?),
        last_failed_at: Timestamp::from_unix_micros(get(row, 11)?),
        status: DeadLetterStatus::parse(&status).unwrap_or(DeadLetterStatus::Parked),
    })
}

/// The dead letter `id`, which must be parked, locked until the end of the transaction.
async fn parked_in(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Statement>,
    name: &ProjectionName,
    id: u64,
) -> Result<DeadLetter, ApplyError> {
    let statement = prepared(
        tx,
        cache,
        &format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM factlog_dead_letters \
             WHERE projection = $1 AND id = $2 FOR UPDATE"
        ),
    )
    .await?;
    let row = tx
        .query_opt(&statement, &[&name.as_str(), &i64_of(id)])
        .await?
        .ok_or(SinkError::DeadLetterNotFound(id))?;
    let dead_letter = dead_letter_row(&row)?;
    if dead_letter.status != DeadLetterStatus::Parked {
        return Err(SinkError::DeadLetterNotParked {
            id,
            status: dead_letter.status.as_str(),
        }
        .into());
    }
    Ok(dead_letter)
}

impl PostgresSink {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`, without
    /// TLS) and brings the runtime's tables in `schema` up to date, creating the schema when it
    /// is missing. `schema` follows the rules of projection names (a-z, 0-9, _).
    pub async fn connect(url: &str, schema: &str) -> Result<Self, SinkError> {
        if ProjectionName::new(schema).is_err() {
            return Err(SinkError::Invalid(format!(
                "invalid schema name {schema:?}: use 1 to 48 characters of a-z, 0-9 and _, \
                 starting with a letter"
            )));
        }
        let mut config: Config = url
            .parse()
            .map_err(|e| SinkError::Invalid(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("factlog-projection");
        }
        let sink = Self {
            config,
            schema: schema.to_owned(),
            conn: Arc::new(Mutex::new(None)),
        };
        sink.migrate().await?;
        Ok(sink)
    }

    /// The schema holding the runtime's tables, the read models and their views.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection, opened again when it was closed.
    async fn connection(&self) -> Result<MutexGuard<'_, Option<Conn>>, SinkError> {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            *conn = None;
            *conn = Some(self.open().await?);
        }
        Ok(conn)
    }

    async fn open(&self) -> Result<Conn, SinkError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            if e.as_db_error().is_some() {
                sink_error(e)
            } else {
                SinkError::Unavailable(describe(&e))
            }
        })?;
        let schema = self.schema.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(schema, "postgres connection failed: {}", describe(&e));
            }
        });
        // The schema may not exist yet (before the first migration): PostgreSQL allows that.
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
            .await
            .map_err(sink_error)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// In one transaction: locks the checkpoint of `target` and checks that it is
    /// `target.checkpoint`, runs `queued` and moves the checkpoint to `to`.
    async fn fenced(
        &self,
        target: &Target,
        to: &Checkpoint,
        mut queued: Vec<Queued>,
    ) -> Result<(), ApplyError> {
        let (position, partitions) = to.to_columns();
        queued.push(Queued::runtime(
            CHECKPOINT_UPDATE,
            vec![
                Box::new(target.name.as_str().to_owned()),
                Box::new(i64_of(target.generation)),
                Box::new(i64_of(position.raw())),
                Box::new(partitions),
                Box::new(Timestamp::now().unix_micros()),
            ],
        ));
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let statement = prepared(&tx, statements, CHECKPOINT_FOR_UPDATE).await?;
        let row = tx
            .query_opt(
                &statement,
                &[&target.name.as_str(), &i64_of(target.generation)],
            )
            .await?;
        let found = match row {
            Some(row) => Some(checkpoint_row(&row, 0, &target.name, target.generation)?),
            None => None,
        };
        if found.as_ref() != Some(&target.checkpoint) {
            return Err(ApplyError::Fenced {
                name: target.name.clone(),
                generation: target.generation,
                expected: Some(target.checkpoint.clone()),
                found,
            });
        }
        run_queued(&tx, statements, &queued).await?;
        // A deferred constraint fails at the commit: the batch's, not one event's.
        tx.commit()
            .await
            .map_err(|e| Origin::Projection(None).error(e))
    }
}

impl Sink for PostgresSink {
    type Unit<'u> = PostgresUnit<'u>;

    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, .. } = conn.as_mut().expect("connected");
        let tx = client.transaction().await.map_err(sink_error)?;
        let result: Result<(), ApplyError> = async {
            // Two processes migrating the same schema at once: one waits for the other.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&MIGRATION_LOCK_CLASS, &self.schema],
            )
            .await?;
            // Only when missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even
            // when the schema exists.
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                    &[&self.schema],
                )
                .await?
                .is_some();
            if !exists {
                tx.batch_execute(&format!("CREATE SCHEMA \"{}\"", self.schema))
                    .await?;
            }
            tx.batch_execute("CREATE TABLE IF NOT EXISTS factlog_schema (version BIGINT NOT NULL)")
                .await?;
            let row = tx
                .query_one("SELECT MAX(version) FROM factlog_schema", &[])
                .await?;
            let version = get::<Option<i64>>(&row, 0)?.unwrap_or(0);
            let version = usize::try_from(version).map_err(|_| {
                SinkError::Invalid(format!("invalid schema version {version} stored"))
            })?;
            if version > MIGRATIONS.len() {
                return Err(SinkError::Invalid(format!(
                    "the projection tables in schema {} are at schema version {version}, newer \
                     than this Factlog knows ({}); upgrade Factlog",
                    self.schema,
                    MIGRATIONS.len()
                ))
                .into());
            }
            if version < MIGRATIONS.len() {
                for migration in &MIGRATIONS[version..] {
                    tx.batch_execute(migration).await?;
                }
                tx.execute("DELETE FROM factlog_schema", &[]).await?;
                tx.execute(
                    "INSERT INTO factlog_schema (version) VALUES ($1)",
                    &[&(MIGRATIONS.len() as i64)],
                )
                .await?;
            }
            Ok(())
        }
        .await;
        result.map_err(ApplyError::into_sink)?;
        tx.commit().await.map_err(sink_error)
    }

    async fn load(&self, name: &ProjectionName) -> Result<Option<Stored>, SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        // One snapshot for both reads.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(sink_error)?;
        let result: Result<Option<Stored>, ApplyError> = async {
            let statement = prepared(
                &tx,
                statements,
                "SELECT live_generation, paused FROM factlog_projections WHERE name = $1",
            )
            .await?;
            let Some(row) = tx.query_opt(&statement, &[&name.as_str()]).await? else {
                return Ok(None);
            };
            let live = u64_of(get(&row, 0)?, "generation")?;
            let paused: bool = get(&row, 1)?;
            let statement = prepared(
                &tx,
                statements,
                "SELECT generation, position, partitions FROM factlog_checkpoints \
                 WHERE projection = $1",
            )
            .await?;
            let checkpoints = tx
                .query(&statement, &[&name.as_str()])
                .await?
                .iter()
                .map(|row| {
                    let generation = u64_of(get(row, 0)?, "generation")?;
                    Ok((generation, checkpoint_row(row, 1, name, generation)?))
                })
                .collect::<Result<_, SinkError>>()?;
            Ok(Some(Stored {
                live_generation: live,
                paused,
                checkpoints,
            }))
        }
        .await;
        let stored = result.map_err(ApplyError::into_sink)?;
        tx.commit().await.map_err(sink_error)?;
        Ok(stored)
    }

    async fn create_generation<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        live: bool,
    ) -> Result<(), ApplyError> {
        let mut unit = PostgresUnit::new(&target.name, target.generation);
        projection
            .setup(&mut unit)
            .map_err(|e| ApplyError::event(None, e))?;
        let name = target.name.as_str();
        let generation = i64_of(target.generation);
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let mut tx = client.transaction().await?;
        drop_generation_in(&tx, statements, &target.name, target.generation).await?;
        // One after the other, unprepared: a statement may use a table created before it.
        for q in &unit.queued {
            let params = q.params.iter().map(|p| &**p as &(dyn ToSql + Sync));
            tx.execute_raw(q.sql.as_str(), params)
                .await
                .map_err(|e| q.origin.error(e))?;
        }
        let now = Timestamp::now().unix_micros();
        let (position, partitions) = target.checkpoint.to_columns();
        tx.execute(
            "INSERT INTO factlog_checkpoints (projection, generation, position, partitions, \
             updated_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                &name,
                &generation,
                &i64_of(position.raw()),
                &partitions,
                &now,
            ],
        )
        .await?;
        if live {
            tx.execute(
                "INSERT INTO factlog_projections (name, live_generation, paused, updated_at) \
                 VALUES ($1, $2, FALSE, $3)",
                &[&name, &generation, &now],
            )
            .await?;
            views(&mut tx, statements, &target.name, None, target.generation).await?;
        }
        tx.commit()
            .await
            .map_err(|e| Origin::Projection(None).error(e))
    }

    async fn apply<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        events: Vec<RecordedEvent>,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        // The handlers run before anything is sent: their errors change nothing.
        let mut unit = PostgresUnit::new(&target.name, target.generation);
        handle_events(&*projection, &mut unit, &events)?;
        let queued = unit.queued;
        self.fenced(&target, &to, queued).await
    }

    async fn park(
        &self,
        target: Target,
        dead_letter: NewDeadLetter,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        let event = &dead_letter.event;
        let insert = Queued::runtime(
            "INSERT INTO factlog_dead_letters (projection, id, generation, position, event_id, \
             stream, version, event_type, data, error, attempts, first_failed_at, \
             last_failed_at, status) \
             VALUES ($1, (SELECT COALESCE(MAX(id), 0) + 1 FROM factlog_dead_letters \
             WHERE projection = $1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'parked')",
            vec![
                Box::new(target.name.as_str().to_owned()),
                Box::new(i64_of(target.generation)),
                Box::new(sql::position_column(event.position)),
                Box::new(event.id.to_string()),
                Box::new(event.stream.as_str().to_owned()),
                Box::new(i64_of(event.version)),
                Box::new(event.event_type.as_str().to_owned()),
                Box::new(dead_letter.data_text().map(str::to_owned)),
                Box::new(dead_letter.error.clone()),
                Box::new(i64::from(dead_letter.attempts)),
                Box::new(dead_letter.first_failed_at.unix_micros()),
                Box::new(dead_letter.last_failed_at.unix_micros()),
            ],
        );
        self.fenced(&target, &to, vec![insert]).await
    }

    async fn set_checkpoint(&self, target: Target, to: Checkpoint) -> Result<(), ApplyError> {
        self.fenced(&target, &to, Vec::new()).await
    }

    async fn swap(&self, name: &ProjectionName, from: u64, to: u64) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let mut tx = client.transaction().await.map_err(sink_error)?;
        let result: Result<(), ApplyError> = async {
            let updated = tx
                .execute(
                    "UPDATE factlog_projections SET live_generation = $3, updated_at = $4 \
                     WHERE name = $1 AND live_generation = $2",
                    &[
                        &name.as_str(),
                        &i64_of(from),
                        &i64_of(to),
                        &Timestamp::now().unix_micros(),
                    ],
                )
                .await?;
            if updated != 1 {
                return Err(SinkError::Invalid(format!(
                    "cannot swap {name} from generation {from}: it is not the live one"
                ))
                .into());
            }
            views(&mut tx, statements, name, Some(from), to).await?;
            drop_generation_in(&tx, statements, name, from).await?;
            Ok(())
        }
        .await;
        result.map_err(ApplyError::into_sink)?;
        tx.commit().await.map_err(sink_error)
    }

    async fn drop_generation(
        &self,
        name: &ProjectionName,
        generation: u64,
    ) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let tx = client.transaction().await.map_err(sink_error)?;
        drop_generation_in(&tx, statements, name, generation)
            .await
            .map_err(ApplyError::into_sink)?;
        tx.commit().await.map_err(sink_error)
    }

    async fn set_paused(&self, name: &ProjectionName, paused: bool) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let statement = prepared(
            client,
            statements,
            "UPDATE factlog_projections SET paused = $2, updated_at = $3 WHERE name = $1",
        )
        .await
        .map_err(sink_error)?;
        client
            .execute(
                &statement,
                &[&name.as_str(), &paused, &Timestamp::now().unix_micros()],
            )
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    async fn dead_letters(&self, name: &ProjectionName) -> Result<Vec<DeadLetter>, SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let statement = prepared(
            client,
            statements,
            &format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM factlog_dead_letters \
                 WHERE projection = $1 ORDER BY id"
            ),
        )
        .await
        .map_err(sink_error)?;
        client
            .query(&statement, &[&name.as_str()])
            .await
            .map_err(sink_error)?
            .iter()
            .map(dead_letter_row)
            .collect()
    }

    async fn retry_dead_letter<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        name: ProjectionName,
        generation: u64,
        id: u64,
        event: RecordedEvent,
    ) -> Result<(), ApplyError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let tx = client.transaction().await?;
        parked_in(&tx, statements, &name, id).await?;
        let mut unit = PostgresUnit::new(&name, generation);
        handle_events(&*projection, &mut unit, std::slice::from_ref(&event))?;
        let mut queued = unit.queued;
        queued.push(Queued::runtime(
            "UPDATE factlog_dead_letters SET status = 'retried' WHERE projection = $1 AND id = $2",
            vec![Box::new(name.as_str().to_owned()), Box::new(i64_of(id))],
        ));
        run_queued(&tx, statements, &queued).await?;
        tx.commit()
            .await
            .map_err(|e| Origin::Projection(None).error(e))
    }

    async fn fail_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        error: String,
        at: Timestamp,
    ) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let statement = prepared(
            client,
            statements,
            "UPDATE factlog_dead_letters SET error = $3, attempts = attempts + 1, \
             last_failed_at = $4 WHERE projection = $1 AND id = $2",
        )
        .await
        .map_err(sink_error)?;
        client
            .execute(
                &statement,
                &[&name.as_str(), &i64_of(id), &error, &at.unix_micros()],
            )
            .await
            .map_err(sink_error)?;
        Ok(())
    }

    async fn skip_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        _at: Timestamp,
    ) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let Conn { client, statements } = conn.as_mut().expect("connected");
        let tx = client.transaction().await.map_err(sink_error)?;
        let result: Result<(), ApplyError> = async {
            parked_in(&tx, statements, name, id).await?;
            let statement = prepared(
                &tx,
                statements,
                "UPDATE factlog_dead_letters SET status = 'skipped' \
                 WHERE projection = $1 AND id = $2",
            )
            .await?;
            tx.execute(&statement, &[&name.as_str(), &i64_of(id)])
                .await?;
            Ok(())
        }
        .await;
        result.map_err(ApplyError::into_sink)?;
        tx.commit().await.map_err(sink_error)
    }
}
