//! Trinity's database, SQLite or PostgreSQL, behind one interface: the schema check, the reads
//! gathering needs, the one guarded write, and the database's share of the apply lock. The
//! planner and apply never know which database they talk to. A dry run never writes: SQLite is
//! opened read-only (and never created), PostgreSQL sessions are read-only.

mod postgres;
mod sqlite;

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::PathBuf;

use color_eyre::eyre::{Result, bail};

use crate::broken::{Rule, broken};
use crate::redact::Secret;
use crate::snapshot::{OwnedAgents, Row, Status};
use crate::timestamp;
use crate::tls::CaCerts;

/// Which database is Trinity's.
#[derive(Clone, Debug)]
pub(crate) enum Database {
    /// The SQLite file (Trinity's default).
    Sqlite(PathBuf),
    Postgres(PostgresConfig),
}

#[derive(Clone, Debug)]
pub(crate) struct PostgresConfig {
    /// `postgres://…`; may carry a password, `sslmode` and `sslrootcert`.
    pub url: Secret,
    /// `--ca-cert`: roots trusted next to the system's (or `sslrootcert`'s).
    pub ca_certs: CaCerts,
    /// `PGSSLMODE` and `PGSSLROOTCERT`, which the URL's values override (as in libpq).
    pub env_sslmode: Option<String>,
    pub env_sslrootcert: Option<PathBuf>,
}

/// The database's part of a held apply lock: the locked file beside an SQLite database (unlocked
/// when dropped, or by the kernel when the process dies), or the PostgreSQL session that holds
/// the advisory lock (unlocked by the server when the session ends, however it ends).
#[derive(Debug)]
pub(crate) enum DatabaseLock {
    File(#[allow(dead_code)] File),
    Session,
}

/// Columns of `schedule_executions` the tool cannot work without.
const REQUIRED_COLUMNS: [&str; 8] = [
    "id",
    "schedule_id",
    "agent_name",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "error",
];

/// The guarded write, both dialects: `{completed}` is how the completion time is bound.
const FAIL_SQL: &str = "UPDATE schedule_executions SET status = 'failed', completed_at = {completed}, \
     duration_ms = {duration}, error = {error} WHERE id = {id} AND status = 'running'";

/// The guarded write, or (only in a soak build told to break that rule) the write without its guard.
fn fail_sql() -> String {
    if broken(Rule::Unguarded) {
        FAIL_SQL.replace(" AND status = 'running'", "")
    } else {
        FAIL_SQL.to_owned()
    }
}

/// Closing the execution's paired activity, in the same transaction as a won guarded write
/// (Trinity's #1804/#1863: whoever wins the terminal write closes it); a `tool_call` that
/// shares the id is never touched.
const CLOSE_ACTIVITIES_SQL: &str = "UPDATE agent_activities SET activity_state = 'failed', \
     completed_at = {completed}, duration_ms = {duration}, error = {error} \
     WHERE related_execution_id = {id} AND activity_state = 'started' \
     AND activity_type IN ('schedule_start', 'chat_start')";
/// Columns of `agent_activities` the close needs; without them (or the table) nothing is closed.
const ACTIVITY_COLUMNS: [&str; 6] = [
    "related_execution_id",
    "activity_state",
    "activity_type",
    "completed_at",
    "duration_ms",
    "error",
];

pub(crate) enum Store {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Store {
    /// Opens the database, writable only when applying, and checks its schema.
    pub(crate) async fn open(database: &Database, writable: bool) -> Result<Store> {
        match database {
            Database::Postgres(config) => Ok(Store::Postgres(
                postgres::Postgres::open(config, writable).await?,
            )),
            Database::Sqlite(path) => Ok(Store::Sqlite(sqlite::Sqlite::open(path, writable)?)),
        }
    }

    /// Which database this is, for saved plans: the SQLite file's canonical path, or the
    /// PostgreSQL URL without its credentials.
    pub(crate) fn identity(&self) -> String {
        match self {
            Store::Sqlite(db) => db.identity(),
            Store::Postgres(db) => db.identity(),
        }
    }

    /// Every `running` row. Rows that cannot be used (no id, no agent) are skipped with a warning.
    pub(crate) async fn running_rows(&mut self, warnings: &mut Vec<String>) -> Result<Vec<Row>> {
        let raw = match self {
            Store::Sqlite(db) => db.running_rows()?,
            Store::Postgres(db) => db.running_rows().await?,
        };
        Ok(collect_rows(raw, warnings, |problem| {
            format!("skipped a running row: {problem}")
        }))
    }

    /// The rows of the given ids that exist (any status).
    pub(crate) async fn rows_by_id(
        &mut self,
        ids: &BTreeSet<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Row>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw = match self {
            Store::Sqlite(db) => db.rows_by_id(ids)?,
            Store::Postgres(db) => db.rows_by_id(ids).await?,
        };
        Ok(collect_rows(raw, warnings, |problem| {
            format!("a row cannot be used: {problem}")
        }))
    }

    /// Agents listed in `agent_ownership` with their `max_parallel_tasks`, so that idle agents
    /// are asked too and deleted ones are known; `None` when the table does not exist.
    pub(crate) async fn owned_agents(&mut self) -> Result<Option<OwnedAgents>> {
        match self {
            Store::Sqlite(db) => db.owned_agents(),
            Store::Postgres(db) => db.owned_agents().await,
        }
    }

    /// Marks running rows failed, each guarded by `status = 'running'`, committed together with a
    /// savepoint per row: a row whose update fails is rolled back alone and never costs the
    /// others. A won write closes the execution's open paired activity in the same savepoint.
    /// Per row: `Ok(Some(activities closed))` the write won, `Ok(None)` the guard did not match
    /// (someone else got there first), `Err` why it failed — for every row when the transaction
    /// itself fails, since then none of them was written. The flag says whether the batch
    /// committed.
    pub(crate) async fn fail_running(
        &mut self,
        rows: &[FailRow<'_>],
        completed_at: &str,
    ) -> (Vec<Result<Option<u64>, String>>, bool) {
        let results = match self {
            Store::Sqlite(db) => db.fail_running(rows, completed_at),
            Store::Postgres(db) => db.fail_running(rows, completed_at).await,
        };
        match results {
            Ok(results) => (results, true),
            Err(failed) => {
                let message = format!(
                    "{failed}; the batch of {} rows was rolled back, none written",
                    rows.len()
                );
                (rows.iter().map(|_| Err(message.clone())).collect(), false)
            }
        }
    }

    /// The database's part of the apply lock: a flock on a file beside the SQLite database, or a
    /// PostgreSQL session advisory lock. Both are released by the OS or the server when the
    /// process dies, however it dies. `Ok(Err(why))` when another apply holds it. `suffix` is
    /// appended to the lock's name (one lock per shard).
    pub(crate) async fn try_lock(&mut self, suffix: &str) -> Result<Result<DatabaseLock, String>> {
        match self {
            Store::Sqlite(db) => db.try_lock(suffix),
            Store::Postgres(db) => db.try_lock(suffix).await,
        }
    }
}

/// One guarded write: the row and what to store in it.
pub(crate) struct FailRow<'a> {
    pub id: &'a str,
    pub error: &'a str,
    pub duration_ms: Option<i64>,
}

/// A row as read, before it is checked.
pub(crate) struct RawRow {
    pub id: Option<String>,
    pub agent: Option<String>,
    pub status: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// `lease_expires_at` as text; set means leased.
    pub lease_expires_at: Option<String>,
    pub schedule_timeout: Option<i64>,
    pub agent_timeout: Option<i64>,
}

impl RawRow {
    fn check(self) -> std::result::Result<Row, String> {
        let id = self
            .id
            .filter(|id| !id.is_empty())
            .ok_or("id is empty or not text")?;
        let agent = self
            .agent
            .filter(|agent| !agent.trim().is_empty())
            .ok_or_else(|| format!("row {id:?} has no agent_name"))?;
        let started_at = self.started_at.unwrap_or_default();
        Ok(Row {
            started: timestamp::parse(&started_at),
            completed: self.completed_at.as_deref().and_then(timestamp::parse),
            leased: self.lease_expires_at.is_some(),
            lease_expires: self.lease_expires_at.as_deref().and_then(timestamp::parse),
            schedule_timeout: self.schedule_timeout,
            agent_timeout: self.agent_timeout,
            status: Status::parse(self.status.as_deref().unwrap_or_default()),
            id,
            agent,
            started_at,
        })
    }
}

fn collect_rows(
    raw: Vec<RawRow>,
    warnings: &mut Vec<String>,
    warn: impl Fn(String) -> String,
) -> Vec<Row> {
    raw.into_iter()
        .filter_map(|raw| match raw.check() {
            Ok(row) => Some(row),
            Err(problem) => {
                warnings.push(warn(problem));
                None
            }
        })
        .collect()
}

/// Which optional parts of Trinity's schema a database has, and the queries they allow.
struct Schema {
    select: String,
    /// `SELECT agent_name, max_parallel_tasks FROM agent_ownership`, when the table exists.
    owned_select: Option<String>,
    /// `agent_activities` has the columns the paired-activity close needs.
    has_activities: bool,
}

/// The columns of the tables the tool reads, by table.
struct Tables<'a> {
    executions: &'a HashSet<String>,
    schedules: &'a HashSet<String>,
    ownership: &'a HashSet<String>,
    activities: &'a HashSet<String>,
}

impl Schema {
    /// Checks the columns of the tables; `name` says which database, for messages.
    /// `cast_text` / `cast_int` wrap a column for reading (PostgreSQL casts, SQLite reads as is).
    fn check(
        name: &str,
        tables: &Tables<'_>,
        cast_text: fn(&str) -> String,
        cast_int: fn(&str) -> String,
    ) -> Result<Schema> {
        let Tables {
            executions,
            schedules,
            ownership,
            activities,
        } = *tables;
        if executions.is_empty() {
            bail!("{name} is not a Trinity database: it has no table schedule_executions");
        }
        let missing: Vec<_> = REQUIRED_COLUMNS
            .iter()
            .filter(|c| !executions.contains(**c))
            .copied()
            .collect();
        if !missing.is_empty() {
            bail!(
                "{name} is not a Trinity database: schedule_executions lacks column(s) {}",
                missing.join(", ")
            );
        }
        let has_schedules = schedules.contains("id") && schedules.contains("timeout_seconds");
        let has_ownership = ownership.contains("agent_name");
        let has_agent_timeout = has_ownership && ownership.contains("execution_timeout_seconds");
        let mut select = format!(
            "SELECT {}, {}, {}, {}, {}, {lease}, {schedule}, {agent} FROM schedule_executions e",
            cast_text("e.id"),
            cast_text("e.agent_name"),
            cast_text("e.status"),
            cast_text("e.started_at"),
            cast_text("e.completed_at"),
            lease = if executions.contains("lease_expires_at") {
                cast_text("e.lease_expires_at")
            } else {
                cast_text("NULL")
            },
            schedule = if has_schedules {
                cast_int("s.timeout_seconds")
            } else {
                cast_int("NULL")
            },
            agent = if has_agent_timeout {
                cast_int("o.execution_timeout_seconds")
            } else {
                cast_int("NULL")
            },
        );
        if has_schedules {
            select.push_str(" LEFT JOIN agent_schedules s ON s.id = e.schedule_id");
        }
        if has_agent_timeout {
            select.push_str(" LEFT JOIN agent_ownership o ON o.agent_name = e.agent_name");
        }
        let owned_select = has_ownership.then(|| {
            format!(
                "SELECT {}, {} FROM agent_ownership WHERE agent_name IS NOT NULL AND agent_name <> ''",
                cast_text("agent_name"),
                cast_int(if ownership.contains("max_parallel_tasks") {
                    "max_parallel_tasks"
                } else {
                    "NULL"
                })
            )
        });
        Ok(Schema {
            select,
            owned_select,
            has_activities: ACTIVITY_COLUMNS.iter().all(|c| activities.contains(*c)),
        })
    }
}
