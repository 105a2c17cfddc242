//! The SQLite backend (Trinity's default): read-only for a dry run, never created, a 5 s busy
//! timeout for writes, and a flock beside the file as the database's part of the apply lock.

use std::collections::{BTreeSet, HashSet};
use std::fs::{OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, bail};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use crate::snapshot::OwnedAgents;

use super::{CLOSE_ACTIVITIES_SQL, DatabaseLock, FailRow, RawRow, Schema, Tables, fail_sql};

/// How long a write waits for another writer (Trinity's backend) to let go of the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Sqlite {
    conn: Connection,
    path: PathBuf,
    schema: Schema,
}

impl Sqlite {
    pub(crate) fn open(path: &Path, writable: bool) -> Result<Sqlite> {
        if !path.is_file() {
            bail!(
                "database {} does not exist or is not a file (set --db / TRINITY_DB_PATH, or --database-url / DATABASE_URL for PostgreSQL)",
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
        let same = |column: &str| column.to_owned();
        let schema = Schema::check(
            &path.display().to_string(),
            &Tables {
                executions: &columns("schedule_executions")?,
                schedules: &columns("agent_schedules")?,
                ownership: &columns("agent_ownership")?,
                activities: &columns("agent_activities")?,
            },
            same,
            same,
        )?;
        Ok(Sqlite {
            conn,
            path: path.to_owned(),
            schema,
        })
    }

    pub(crate) fn identity(&self) -> String {
        std::fs::canonicalize(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .display()
            .to_string()
    }

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<RawRow>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut result = Vec::new();
        while let Some(row) = rows
            .next()
            .wrap_err_with(|| format!("cannot read {}", self.path.display()))?
        {
            let get = |index| row.get_ref(index).ok();
            result.push(RawRow {
                id: get(0).and_then(text),
                agent: get(1).and_then(text),
                status: get(2).and_then(text),
                started_at: get(3).and_then(text),
                completed_at: get(4).and_then(text),
                lease_expires_at: get(5).and_then(text),
                schedule_timeout: get(6).and_then(integer),
                agent_timeout: get(7).and_then(integer),
            });
        }
        Ok(result)
    }

    pub(crate) fn running_rows(&self) -> Result<Vec<RawRow>> {
        self.query(
            &format!("{} WHERE e.status = 'running'", self.schema.select),
            [],
        )
    }

    pub(crate) fn rows_by_id(&self, ids: &BTreeSet<String>) -> Result<Vec<RawRow>> {
        let sql = format!("{} WHERE e.id = ?1", self.schema.select);
        let mut rows = Vec::new();
        for id in ids {
            rows.extend(self.query(&sql, [id])?);
        }
        Ok(rows)
    }

    pub(crate) fn owned_agents(&self) -> Result<Option<OwnedAgents>> {
        let Some(sql) = &self.schema.owned_select else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let mut owned = OwnedAgents::new();
        while let Some(row) = rows.next()? {
            let get = |index| row.get_ref(index).ok();
            if let Some(name) = get(0).and_then(text) {
                owned.insert(name, get(1).and_then(integer));
            }
        }
        Ok(Some(owned))
    }

    /// See `Store::fail_running`; `Err` is the failed commit.
    pub(crate) fn fail_running(
        &mut self,
        rows: &[FailRow<'_>],
        completed_at: &str,
    ) -> Result<Vec<Result<Option<u64>, String>>, String> {
        let path = self.path.display().to_string();
        let failed = |err: rusqlite::Error| format!("cannot mark it failed in {path}: {err}");
        let bind = |sql: &str| {
            sql.replace("{completed}", "?1")
                .replace("{duration}", "?2")
                .replace("{error}", "?3")
                .replace("{id}", "?4")
        };
        let (sql, close) = (bind(&fail_sql()), bind(CLOSE_ACTIVITIES_SQL));
        let closes = self.schema.has_activities;
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let result = tx.savepoint().and_then(|savepoint| {
                let values = params![completed_at, row.duration_ms, row.error, row.id];
                let changed = savepoint.prepare_cached(&sql)?.execute(values)?;
                let won = if changed != 1 {
                    None
                } else if closes {
                    Some(savepoint.prepare_cached(&close)?.execute(values)? as u64)
                } else {
                    Some(0)
                };
                savepoint.commit()?;
                Ok(won)
            });
            results.push(result.map_err(failed));
        }
        tx.commit().map_err(failed)?;
        Ok(results)
    }

    /// A flock on `<db>.watchdog-lock{suffix}`, beside the database; the database's canonical
    /// path names it, so a symlink to the database takes the same lock.
    pub(crate) fn try_lock(&mut self, suffix: &str) -> Result<Result<DatabaseLock, String>> {
        let path = lock_path(
            &std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone()),
            suffix,
        );
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .wrap_err_with(|| format!("cannot create the apply lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Ok(DatabaseLock::File(file))),
            Err(TryLockError::WouldBlock) => Ok(Err(format!(
                "another apply holds the lock file {}",
                path.display()
            ))),
            Err(TryLockError::Error(err)) => {
                Err(err).wrap_err_with(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// The lock file for a database: `<db>.watchdog-lock{suffix}`, beside it.
fn lock_path(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".watchdog-lock");
    name.push(suffix);
    db.with_file_name(name)
}

/// A column as text; integers are accepted as their decimal form, anything else is `None`.
fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Integer(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A column as an integer; numeric text counts, anything else is `None`.
fn integer(value: ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Integer(value) => Some(value),
        ValueRef::Real(value) => Some(value as i64),
        ValueRef::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.trim().parse().ok()),
        _ => None,
    }
}
