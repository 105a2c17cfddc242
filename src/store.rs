//! Trinity's SQLite database: the schema check, the reads gathering needs, and the one guarded
//! write. A dry run opens the file read-only; nothing here ever creates a database.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, bail};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::snapshot::Row;
use crate::timestamp;

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
/// How long a write waits for another writer (Trinity's backend) to let go of the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
    /// The SELECT list and joins, built once from the columns this database has.
    row_query: String,
    has_ownership: bool,
}

impl Store {
    /// Opens Trinity's database, read-only unless `writable`, and checks its schema.
    pub(crate) fn open(path: &Path, writable: bool) -> Result<Store> {
        if !path.is_file() {
            bail!(
                "database {} does not exist or is not a file (set --db or TRINITY_DB_PATH)",
                path.display()
            );
        }
        let mode = if writable {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .wrap_err_with(|| format!("cannot open database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if writable && conn.is_readonly(rusqlite::MAIN_DB)? {
            bail!(
                "database {} is read-only for this user: --apply needs write access",
                path.display()
            );
        }
        let columns = |table: &str| -> Result<HashSet<String>> {
            let mut stmt = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .wrap_err_with(|| {
                    format!("cannot read {} (is it an SQLite database?)", path.display())
                })?;
            let names = stmt.query_map([table], |row| row.get::<_, String>(0))?;
            Ok(names.collect::<rusqlite::Result<_>>()?)
        };
        let executions = columns("schedule_executions")?;
        if executions.is_empty() {
            bail!(
                "{} is not a Trinity database: it has no table schedule_executions",
                path.display()
            );
        }
        let missing: Vec<_> = REQUIRED_COLUMNS
            .iter()
            .filter(|c| !executions.contains(**c))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} is not a Trinity database: schedule_executions lacks column(s) {}",
                path.display(),
                missing
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let schedules = columns("agent_schedules")?;
        let ownership = columns("agent_ownership")?;
        let has_schedules = schedules.contains("id") && schedules.contains("timeout_seconds");
        let has_ownership = ownership.contains("agent_name");
        let has_agent_timeout = has_ownership && ownership.contains("execution_timeout_seconds");
        let row_query = format!(
            "SELECT e.id, e.agent_name, e.status, e.started_at, e.completed_at, {lease}, {schedule}, {agent} \
             FROM schedule_executions e {join_schedule} {join_agent}",
            lease = if executions.contains("lease_expires_at") {
                "e.lease_expires_at IS NOT NULL"
            } else {
                "0"
            },
            schedule = if has_schedules {
                "s.timeout_seconds"
            } else {
                "NULL"
            },
            agent = if has_agent_timeout {
                "o.execution_timeout_seconds"
            } else {
                "NULL"
            },
            join_schedule = if has_schedules {
                "LEFT JOIN agent_schedules s ON s.id = e.schedule_id"
            } else {
                ""
            },
            join_agent = if has_agent_timeout {
                "LEFT JOIN agent_ownership o ON o.agent_name = e.agent_name"
            } else {
                ""
            },
        );
        Ok(Store {
            conn,
            path: path.to_owned(),
            row_query,
            has_ownership,
        })
    }

    /// Which database this is, for saved plans: the file's canonical path.
    pub(crate) fn identity(&self) -> String {
        std::fs::canonicalize(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .display()
            .to_string()
    }

    /// Every `running` row. Rows that cannot be used (no id, no agent) are skipped with a warning.
    pub(crate) fn running_rows(&self, warnings: &mut Vec<String>) -> Result<Vec<Row>> {
        let sql = format!("{} WHERE e.status = 'running'", self.row_query);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([])?;
        let mut result = Vec::new();
        while let Some(row) = rows
            .next()
            .wrap_err_with(|| format!("cannot read {}", self.path.display()))?
        {
            match parse_row(row) {
                Ok(row) => result.push(row),
                Err(problem) => warnings.push(format!(
                    "skipped a running row of {}: {problem}",
                    self.path.display()
                )),
            }
        }
        Ok(result)
    }

    /// The rows of the given ids that exist (any status).
    pub(crate) fn rows_by_id(
        &self,
        ids: &BTreeSet<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Row>> {
        let sql = format!("{} WHERE e.id = ?1", self.row_query);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut result = Vec::new();
        for id in ids {
            let found = stmt.query_row([id], |row| Ok(parse_row(row))).optional()?;
            match found {
                Some(Ok(row)) => result.push(row),
                Some(Err(problem)) => {
                    warnings.push(format!("row {id:?} cannot be used: {problem}"))
                }
                None => {}
            }
        }
        Ok(result)
    }

    /// Agents listed in `agent_ownership`, so that idle agents are asked too.
    pub(crate) fn owned_agents(&self) -> Result<Vec<String>> {
        if !self.has_ownership {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare("SELECT agent_name FROM agent_ownership WHERE agent_name IS NOT NULL AND agent_name != ''")?;
        let names = stmt.query_map([], |row| row.get::<_, String>(0))?;
        Ok(names.collect::<rusqlite::Result<_>>()?)
    }

    /// The only write: marks running rows failed, each guarded by `status = 'running'`.
    ///
    /// The rows are committed together, each inside its own savepoint: a row whose update fails
    /// is rolled back alone and never costs the others. Per row: `Ok(true)` the write won,
    /// `Ok(false)` the guard did not match (someone else got there first), `Err` why it failed —
    /// for every row when the commit itself fails, since then none of them was written.
    pub(crate) fn fail_running(&mut self, rows: &[FailRow<'_>]) -> Vec<Result<bool, String>> {
        let path = self.path.display().to_string();
        let failed = |err: rusqlite::Error| format!("cannot mark it failed in {path}: {err}");
        let completed_at = timestamp::format(chrono::Utc::now());
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(err) => {
                let message = failed(err);
                return rows.iter().map(|_| Err(message.clone())).collect();
            }
        };
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let result = tx.savepoint().and_then(|savepoint| {
                let changed = savepoint
                    .prepare_cached(
                        "UPDATE schedule_executions SET status = 'failed', completed_at = ?1, duration_ms = ?2, error = ?3 \
                         WHERE id = ?4 AND status = 'running'",
                    )?
                    .execute(params![completed_at, row.duration_ms, row.error, row.id])?;
                savepoint.commit()?;
                Ok(changed == 1)
            });
            results.push(result.map_err(failed));
        }
        if let Err(err) = tx.commit() {
            let message = failed(err);
            return results.into_iter().map(|_| Err(message.clone())).collect();
        }
        results
    }
}

/// One guarded write: the row and what to store in it.
pub(crate) struct FailRow<'a> {
    pub id: &'a str,
    pub error: &'a str,
    pub duration_ms: Option<i64>,
}

fn parse_row(row: &rusqlite::Row<'_>) -> std::result::Result<Row, String> {
    let id = text(row.get_ref(0).map_err(|e| e.to_string())?)
        .filter(|id| !id.is_empty())
        .ok_or("id is empty or not text")?;
    let agent = text(row.get_ref(1).map_err(|e| e.to_string())?)
        .filter(|agent| !agent.trim().is_empty())
        .ok_or_else(|| format!("row {id:?} has no agent_name"))?;
    let status = text(row.get_ref(2).map_err(|e| e.to_string())?).unwrap_or_default();
    let started_at = text(row.get_ref(3).map_err(|e| e.to_string())?).unwrap_or_default();
    let completed_at = text(row.get_ref(4).map_err(|e| e.to_string())?);
    let integer = |index| match row.get_ref(index) {
        Ok(ValueRef::Integer(value)) => Some(value),
        Ok(ValueRef::Real(value)) => Some(value as i64),
        Ok(ValueRef::Text(text)) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.trim().parse().ok()),
        _ => None,
    };
    Ok(Row {
        started: timestamp::parse(&started_at),
        completed: completed_at.as_deref().and_then(timestamp::parse),
        leased: integer(5).unwrap_or(0) != 0,
        schedule_timeout: integer(6),
        agent_timeout: integer(7),
        id,
        agent,
        status,
        started_at,
    })
}

/// A column as text; integers are accepted as their decimal form, anything else is `None`.
fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Integer(number) => Some(number.to_string()),
        _ => None,
    }
}
