//! The projections `factlog serve` runs from its configuration (`[[projections]]` and
//! `[projection-sinks]`): checked as a whole before anything is opened (a mistake is a usage
//! error that names the field), then each sink in use is opened once and every projection is
//! started through one [`Projections`], which the server lists, controls, measures and stops.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use factlog_projection::{
    Interest, OnError, PostgresSink, ProjectionName, ProjectionOptions, Projections, RedisSink,
    SqliteSink, StreamSummary,
};
use factlog_server::Secret;
use factlog_store::EventStore;
use serde_json::{Value, json};

use crate::UsageError;
use crate::config::{FileConfig, ProjectionKind, SinkKind};

/// PostgreSQL's limit on identifiers, less what the sink adds to a table's name
/// (`<projection>__<table>__g<generation>`, generations of up to six digits).
const NAME_AND_TABLE_BYTES_MAX: usize = 63 - 11;
/// The longest Redis key prefix the sink takes.
const REDIS_PREFIX_BYTES_MAX: usize = 256;

pub const POSTGRES_URL_ENV: &str = "FACTLOG_PROJECTION_POSTGRES_URL";
pub const REDIS_URL_ENV: &str = "FACTLOG_PROJECTION_REDIS_URL";

/// The projections to run, checked, with every default filled in.
#[derive(Debug, Clone)]
pub struct Plan {
    projections: Vec<Planned>,
    /// Set when a projection uses the sink.
    sqlite_path: Option<PathBuf>,
    postgres: Option<(Secret, String)>,
    redis: Option<(Secret, String)>,
}

#[derive(Debug, Clone)]
struct Planned {
    kind: ProjectionKind,
    table: String,
    sink: SinkKind,
    interest: Interest,
    options: ProjectionOptions,
}

impl Plan {
    /// Checks the projections of `file` (the SQLite path from `sqlite_path` when given, which
    /// comes from the flag or its variable) against the data directory `dir`.
    pub fn resolve(
        file: &FileConfig,
        sqlite_path: Option<&Path>,
        dir: &Path,
    ) -> Result<Self, UsageError> {
        let sinks = &file.projection_sinks;
        let mut projections: Vec<Planned> = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        // The views of the SQL sinks are named after the tables: one table per sink.
        let mut views: BTreeMap<(SinkKind, String), usize> = BTreeMap::new();
        for (index, p) in file.projections.iter().enumerate() {
            let field = |name: &str| format!("projections[{index}].{name}");
            let name = ProjectionName::new(p.name.clone())
                .map_err(|e| UsageError(format!("{}: {e}", field("name"))))?;
            if let Some(other) = names.insert(p.name.clone(), index) {
                return Err(UsageError(format!(
                    "{}: {:?} is the name of projections[{other}] too; names must be unique",
                    field("name"),
                    p.name
                )));
            }
            let table = p.table.clone().unwrap_or_else(|| p.name.clone());
            if let Err(e) = ProjectionName::new(table.clone()) {
                return Err(UsageError(format!(
                    "{}: {}",
                    field("table"),
                    e.to_string().replacen("projection name", "table name", 1)
                )));
            }
            if name.as_str().len() + table.len() > NAME_AND_TABLE_BYTES_MAX {
                return Err(UsageError(format!(
                    "{}: {table:?} is too long for projection {name}: the names of the \
                     projection and its table together must be at most {NAME_AND_TABLE_BYTES_MAX} \
                     bytes",
                    field("table")
                )));
            }
            if p.sink != SinkKind::Redis
                && let Some(other) = views.insert((p.sink, table.clone()), index)
            {
                return Err(UsageError(format!(
                    "{}: projections[{other}] writes the table {table:?} in the same {} sink \
                     (readers see one view per table); give one of them another table",
                    field("table"),
                    p.sink.as_str()
                )));
            }
            for (list, what) in [
                (&p.categories, "categories"),
                (&p.event_types, "event-types"),
            ] {
                if list.iter().any(|item| item.trim().is_empty()) {
                    return Err(UsageError(format!(
                        "{}: an empty entry matches nothing; leave the list out to take all",
                        field(what)
                    )));
                }
            }
            let defaults = ProjectionOptions::new(name.clone());
            let batch_events_max = p.batch_events_max.unwrap_or(defaults.batch_events_max);
            if batch_events_max == 0 {
                return Err(UsageError(format!(
                    "{}: must be at least 1",
                    field("batch-events-max")
                )));
            }
            let options = ProjectionOptions {
                batch_events_max,
                batch_linger: p
                    .batch_linger_ms
                    .map_or(defaults.batch_linger, Duration::from_millis),
                on_error: p.on_error.unwrap_or(OnError::Park),
                ..defaults
            };
            projections.push(Planned {
                kind: p.kind,
                table,
                sink: p.sink,
                interest: Interest {
                    event_types: p.event_types.clone(),
                    categories: p.categories.clone(),
                },
                options,
            });
        }
        let used = |kind: SinkKind| projections.iter().find(|p| p.sink == kind);
        let missing = |index: usize, sink: SinkKind, setting: &str, env: &str| {
            UsageError(format!(
                "projections[{index}].sink is {}, but [projection-sinks] {setting} is not set \
                 (nor {env})",
                sink.as_str()
            ))
        };
        let index_of = |p: &Planned| {
            file.projections
                .iter()
                .position(|f| f.name == p.options.name.as_str())
                .unwrap_or(0)
        };

        let sqlite_path = match used(SinkKind::Sqlite) {
            None => None,
            Some(_) => Some(sqlite_path_beside(
                sqlite_path.or(sinks.sqlite_path.as_deref()),
                dir,
            )?),
        };
        let postgres = match used(SinkKind::Postgres) {
            None => None,
            Some(p) => {
                let url = secret_from_env(POSTGRES_URL_ENV)
                    .or_else(|| sinks.postgres_url.clone())
                    .ok_or_else(|| {
                        missing(
                            index_of(p),
                            SinkKind::Postgres,
                            "postgres-url",
                            POSTGRES_URL_ENV,
                        )
                    })?;
                let schema = sinks
                    .postgres_schema
                    .clone()
                    .unwrap_or_else(|| "public".to_owned());
                if ProjectionName::new(schema.clone()).is_err() {
                    return Err(UsageError(format!(
                        "[projection-sinks] postgres-schema: {schema:?} is not a schema name: \
                         use 1 to 48 of a-z, 0-9 and _, starting with a letter"
                    )));
                }
                Some((url, schema))
            }
        };
        let redis = match used(SinkKind::Redis) {
            None => None,
            Some(p) => {
                let url = secret_from_env(REDIS_URL_ENV)
                    .or_else(|| sinks.redis_url.clone())
                    .ok_or_else(|| {
                        missing(index_of(p), SinkKind::Redis, "redis-url", REDIS_URL_ENV)
                    })?;
                let prefix = sinks
                    .redis_key_prefix
                    .clone()
                    .unwrap_or_else(|| "factlog:".to_owned());
                let valid = !prefix.is_empty()
                    && prefix.len() <= REDIS_PREFIX_BYTES_MAX
                    && prefix.bytes().all(|b| b.is_ascii_graphic());
                if !valid {
                    return Err(UsageError(format!(
                        "[projection-sinks] redis-key-prefix: {prefix:?}: use 1 to \
                         {REDIS_PREFIX_BYTES_MAX} printable ASCII characters without spaces"
                    )));
                }
                Some((url, prefix))
            }
        };
        Ok(Self {
            projections,
            sqlite_path,
            postgres,
            redis,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.projections.is_empty()
    }

    /// The effective configuration, for `--print-config`: `(projections, projection-sinks)`,
    /// with the URLs masked.
    pub fn to_json(&self) -> (Value, Value) {
        let projections = self
            .projections
            .iter()
            .map(|p| {
                json!({
                    "name": p.options.name.as_str(),
                    "kind": p.kind,
                    "table": p.table,
                    "sink": p.sink,
                    "categories": p.interest.categories,
                    "event-types": p.interest.event_types,
                    "on-error": p.options.on_error,
                    "batch-events-max": p.options.batch_events_max,
                    "batch-linger-ms": p.options.batch_linger.as_millis() as u64,
                })
            })
            .collect();
        let mut sinks = serde_json::Map::new();
        if let Some(path) = &self.sqlite_path {
            sinks.insert("sqlite-path".into(), json!(path));
        }
        if let Some((url, schema)) = &self.postgres {
            sinks.insert("postgres-url".into(), json!(url));
            sinks.insert("postgres-schema".into(), json!(schema));
        }
        if let Some((url, prefix)) = &self.redis {
            sinks.insert("redis-url".into(), json!(url));
            sinks.insert("redis-key-prefix".into(), json!(prefix));
        }
        (Value::Array(projections), Value::Object(sinks))
    }

    /// One line per projection, for the startup message.
    pub fn describe(&self) -> Vec<String> {
        self.projections
            .iter()
            .map(|p| {
                let place = match p.sink {
                    SinkKind::Sqlite => self
                        .sqlite_path
                        .as_ref()
                        .map(|path| path.display().to_string())
                        .unwrap_or_default(),
                    SinkKind::Postgres => self
                        .postgres
                        .as_ref()
                        .map(|(_, schema)| format!("schema {schema}"))
                        .unwrap_or_default(),
                    SinkKind::Redis => self
                        .redis
                        .as_ref()
                        .map(|(_, prefix)| format!("keys {prefix}*"))
                        .unwrap_or_default(),
                };
                format!(
                    "projection {}: {} into {} {place} (table {})",
                    p.options.name,
                    match p.kind {
                        ProjectionKind::StreamSummary => "stream-summary",
                    },
                    p.sink.as_str(),
                    p.table
                )
            })
            .collect()
    }

    /// The names, for `--json` output.
    pub fn names(&self) -> Vec<&str> {
        self.projections
            .iter()
            .map(|p| p.options.name.as_str())
            .collect()
    }

    /// [`Plan::start`], when there is a projection to run.
    pub async fn start_if_any(
        &self,
        store: Arc<dyn EventStore>,
    ) -> anyhow::Result<Option<Projections>> {
        if self.is_empty() {
            return Ok(None);
        }
        self.start(store).await.map(Some)
    }

    /// Opens each sink in use once, then starts every projection over `store`.
    pub async fn start(&self, store: Arc<dyn EventStore>) -> anyhow::Result<Projections> {
        let sqlite = match &self.sqlite_path {
            Some(path) => Some(Arc::new(SqliteSink::open(path).await.with_context(
                || {
                    format!(
                        "could not open the projections' SQLite file {}",
                        path.display()
                    )
                },
            )?)),
            None => None,
        };
        let postgres = match &self.postgres {
            Some((url, schema)) => Some(Arc::new(
                PostgresSink::connect(url.expose(), schema)
                    .await
                    .with_context(|| {
                        format!("could not open the projections' PostgreSQL sink (schema {schema})")
                    })?,
            )),
            None => None,
        };
        let redis = match &self.redis {
            Some((url, prefix)) => Some(Arc::new(
                RedisSink::connect(url.expose(), prefix)
                    .await
                    .with_context(|| {
                        format!("could not open the projections' Redis sink (key prefix {prefix})")
                    })?,
            )),
            None => None,
        };
        let projections = Projections::new();
        for p in &self.projections {
            let summary = match p.kind {
                ProjectionKind::StreamSummary => {
                    Arc::new(StreamSummary::new(p.table.clone(), p.interest.clone()))
                }
            };
            let options = p.options.clone();
            let store = store.clone();
            let started = match p.sink {
                SinkKind::Sqlite => {
                    let sink = sqlite.clone().expect("opened: a projection uses it");
                    projections.start(store, sink, summary, options)
                }
                SinkKind::Postgres => {
                    let sink = postgres.clone().expect("opened: a projection uses it");
                    projections.start(store, sink, summary, options)
                }
                SinkKind::Redis => {
                    let sink = redis.clone().expect("opened: a projection uses it");
                    projections.start(store, sink, summary, options)
                }
            };
            if let Err(e) = started {
                projections.stop().await;
                return Err(e.into());
            }
        }
        Ok(projections)
    }
}

fn secret_from_env(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

/// The SQLite file: `configured`, or `<data-dir>.projections.sqlite` beside the data directory;
/// never inside it (only the store opens files there).
fn sqlite_path_beside(configured: Option<&Path>, dir: &Path) -> Result<PathBuf, UsageError> {
    let absolute = |path: &Path| {
        std::path::absolute(path)
            .map(|p| normalize(&p))
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))
    };
    let dir = absolute(dir)?;
    let path = match configured {
        Some(path) => absolute(path)?,
        None => {
            let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
                return Err(UsageError(format!(
                    "the data directory {} has no parent to put the projections' SQLite file \
                     beside it; set [projection-sinks] sqlite-path",
                    dir.display()
                )));
            };
            let mut file = name.to_os_string();
            file.push(".projections.sqlite");
            parent.join(file)
        }
    };
    // Lexically, and through symbolic links for what exists already.
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let inside = path.starts_with(&dir)
        || match (path.parent().and_then(canonical), canonical(&dir)) {
            (Some(parent), Some(dir)) => parent.starts_with(dir),
            _ => false,
        };
    if inside {
        return Err(UsageError(format!(
            "[projection-sinks] sqlite-path: {} is inside the data directory {}, where only the \
             store keeps files; put it beside the data directory",
            path.display(),
            dir.display()
        )));
    }
    Ok(path)
}

/// `path` without `.` and `..` components (lexically).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml: &str, dir: &str) -> Result<Plan, String> {
        let file: FileConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        Plan::resolve(&file, None, Path::new(dir)).map_err(|e| e.0)
    }

    const ONE: &str = "[[projections]]\nname = \"orders\"\nkind = \"stream-summary\"\n";

    #[test]
    fn defaults_are_filled_in() {
        let plan = resolve(ONE, "/srv/factlog-data").unwrap();
        assert_eq!(
            plan.sqlite_path.as_deref(),
            Some(Path::new("/srv/factlog-data.projections.sqlite"))
        );
        let (projections, sinks) = plan.to_json();
        assert_eq!(projections[0]["table"], "orders");
        assert_eq!(projections[0]["sink"], "sqlite");
        assert_eq!(projections[0]["on-error"], "park");
        assert_eq!(projections[0]["batch-events-max"], 1000);
        assert_eq!(sinks["sqlite-path"], "/srv/factlog-data.projections.sqlite");
        // A trailing slash, `.` and `..` do not change where the file goes.
        let plan = resolve(ONE, "/srv/x/../factlog-data/./").unwrap();
        assert_eq!(
            plan.sqlite_path.as_deref(),
            Some(Path::new("/srv/factlog-data.projections.sqlite"))
        );
        assert!(resolve("", "/srv/d").unwrap().is_empty());
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (
                "[[projections]]\nname = \"Orders\"\nkind = \"stream-summary\"\n",
                "projections[0].name",
            ),
            (&format!("{ONE}{ONE}"), "projections[1].name"),
            (&format!("{ONE}table = \"a-b\"\n"), "projections[0].table"),
            (
                &format!("{ONE}table = \"{}\"\n", "t".repeat(48)),
                "projections[0].table",
            ),
            (
                &format!(
                    "{ONE}[[projections]]\nname = \"other\"\nkind = \"stream-summary\"\ntable = \"orders\"\n"
                ),
                "projections[1].table",
            ),
            (
                &format!("{ONE}categories = [\"\"]\n"),
                "projections[0].categories",
            ),
            (
                &format!("{ONE}batch-events-max = 0\n"),
                "projections[0].batch-events-max",
            ),
            (&format!("{ONE}sink = \"postgres\"\n"), "postgres-url"),
            (&format!("{ONE}sink = \"redis\"\n"), "redis-url"),
            (
                &format!(
                    "{ONE}sink = \"postgres\"\n[projection-sinks]\npostgres-url = \"postgres://x\"\npostgres-schema = \"Public\"\n"
                ),
                "postgres-schema",
            ),
            (
                &format!(
                    "{ONE}sink = \"redis\"\n[projection-sinks]\nredis-url = \"redis://x\"\nredis-key-prefix = \"a b\"\n"
                ),
                "redis-key-prefix",
            ),
            (
                &format!("{ONE}[projection-sinks]\nsqlite-path = \"/srv/data/read.sqlite\"\n"),
                "inside the data directory",
            ),
        ];
        for (toml, expected) in cases {
            let error = resolve(toml, "/srv/data").unwrap_err();
            assert!(error.contains(expected), "{toml}: {error}");
        }
        // The same table in different sinks, or in Redis (keys per projection), is fine.
        let two = format!(
            "{ONE}[[projections]]\nname = \"other\"\nkind = \"stream-summary\"\ntable = \"orders\"\nsink = \"redis\"\n[projection-sinks]\nredis-url = \"redis://x\"\n"
        );
        assert!(resolve(&two, "/srv/data").is_ok());
    }
}
