//! The PostgreSQL backend (`DATABASE_URL=postgres://…`): same table and column names as SQLite.
//! A dry run's session is read-only; the guarded writes run in one transaction with a savepoint
//! per row; the database's part of the apply lock is a session advisory lock, which the server
//! releases when the session ends, however it ends.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use color_eyre::eyre::{Result, bail, eyre};
use tokio_postgres::{Client, NoTls};

use super::{DatabaseLock, FAIL_SQL, FailRow, PostgresConfig, RawRow, Schema};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every session, dry runs included, gives up on a statement after this long…
const STATEMENT_TIMEOUT: &str = "30s";
/// … and on waiting for a lock (another session's row or table lock) after this long.
const LOCK_TIMEOUT: &str = "5s";
/// TCP keepalives, so that a server that vanished (a failover, a dropped NAT entry) is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// Key of the advisory lock: `hashtext` of this name, the same for every run on any host.
const LOCK_NAME: &str = "trinity-watchdog:apply";

/// A PostgreSQL error with the server's own message (the error's `Display` says only "db error"),
/// and what a timeout was waiting for.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) if *db.code() == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => format!(
            "{} ({}): waited longer than lock_timeout {LOCK_TIMEOUT} for a lock that another session holds",
            db.message(),
            db.code().code()
        ),
        Some(db) if *db.code() == tokio_postgres::error::SqlState::QUERY_CANCELED => format!(
            "{} ({}): the statement ran longer than statement_timeout {STATEMENT_TIMEOUT}",
            db.message(),
            db.code().code()
        ),
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

pub(crate) struct Postgres {
    client: Client,
    shown: String,
    schema: Schema,
    /// How `completed_at` is bound: a text parameter cast to the column's own type.
    completed_cast: String,
}

impl Postgres {
    pub(crate) async fn open(database: &PostgresConfig, writable: bool) -> Result<Postgres> {
        let shown = database.url.shown();
        // The parser's message may quote the URL: only say that it did not parse.
        let mut config: tokio_postgres::Config = database
            .url
            .expose()
            .parse()
            .map_err(|_| eyre!("invalid PostgreSQL URL {shown}"))?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .application_name("trinity-watchdog");
        let (client, connection) = config.connect(NoTls).await.map_err(|err| {
            let hint = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                " (TLS to PostgreSQL is not supported yet: connect without sslmode=require)"
            } else {
                ""
            };
            eyre!(
                "cannot connect to PostgreSQL at {shown}: {}{hint}",
                describe(&err)
            )
        })?;
        tokio::spawn(async move {
            // The connection ends with the client; a broken one shows up as the next query's error.
            let _ = connection.await;
        });
        // No statement waits forever, dry runs included; a dry run cannot write.
        let mut session = format!(
            "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '{LOCK_TIMEOUT}'"
        );
        if !writable {
            session.push_str("; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
        }
        client
            .batch_execute(&session)
            .await
            .map_err(|err| eyre!("cannot set up the session on {shown}: {}", describe(&err)))?;
        let mut tables = [HashSet::new(), HashSet::new(), HashSet::new()];
        let mut completed_type = String::from("text");
        let rows = client
            .query(
                "SELECT table_name::text, column_name::text, udt_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() \
                   AND table_name IN ('schedule_executions', 'agent_schedules', 'agent_ownership')",
                &[],
            )
            .await
            .map_err(|err| eyre!("cannot read the schema of {shown}: {}", describe(&err)))?;
        for row in rows {
            let (table, column, udt): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let index = match table.as_str() {
                "schedule_executions" => 0,
                "agent_schedules" => 1,
                _ => 2,
            };
            if index == 0 && column == "completed_at" {
                completed_type = udt;
            }
            tables[index].insert(column);
        }
        if !completed_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            bail!(
                "schedule_executions.completed_at has an unexpected type {completed_type:?} in {shown}"
            );
        }
        let [executions, schedules, ownership] = &tables;
        let schema = Schema::check(
            &shown,
            executions,
            schedules,
            ownership,
            |c| format!("{c}::text"),
            |c| format!("{c}::bigint"),
        )?;
        Ok(Postgres {
            client,
            shown,
            schema,
            completed_cast: format!("$1::text::{completed_type}"),
        })
    }

    pub(crate) fn identity(&self) -> String {
        self.shown.clone()
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RawRow>> {
        let rows = self
            .client
            .query(sql, params)
            .await
            .map_err(|err| eyre!("cannot read {}: {}", self.shown, describe(&err)))?;
        Ok(rows
            .iter()
            .map(|row| RawRow {
                id: row.get(0),
                agent: row.get(1),
                status: row.get(2),
                started_at: row.get(3),
                completed_at: row.get(4),
                leased: row.get::<_, Option<bool>>(5).unwrap_or(false),
                schedule_timeout: row.get(6),
                agent_timeout: row.get(7),
            })
            .collect())
    }

    pub(crate) async fn running_rows(&self) -> Result<Vec<RawRow>> {
        self.query(
            &format!("{} WHERE e.status = 'running'", self.schema.select),
            &[],
        )
        .await
    }

    pub(crate) async fn rows_by_id(&self, ids: &BTreeSet<String>) -> Result<Vec<RawRow>> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.query(
            &format!("{} WHERE e.id::text = ANY($1)", self.schema.select),
            &[&ids],
        )
        .await
    }

    pub(crate) async fn owned_agents(&self) -> Result<Vec<String>> {
        if !self.schema.has_ownership {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query("SELECT agent_name::text FROM agent_ownership WHERE agent_name IS NOT NULL AND agent_name <> ''", &[])
            .await
            .map_err(|err| eyre!("cannot read agent_ownership in {}: {}", self.shown, describe(&err)))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// See `Store::fail_running`; `Err` is the failed transaction.
    pub(crate) async fn fail_running(
        &mut self,
        rows: &[FailRow<'_>],
        completed_at: &str,
    ) -> Result<Vec<Result<bool, String>>, String> {
        let shown = self.shown.clone();
        let failed = |err: tokio_postgres::Error| {
            format!("cannot mark it failed in {shown}: {}", describe(&err))
        };
        let sql = FAIL_SQL
            .replace("{completed}", &self.completed_cast)
            .replace("{duration}", "$2::bigint")
            .replace("{error}", "$3::text")
            .replace("{id}", "$4::text");
        let mut tx = self.client.transaction().await.map_err(failed)?;
        let statement = tx.prepare(&sql).await.map_err(failed)?;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let savepoint = tx.savepoint("trinity_watchdog_row").await.map_err(failed)?;
            let result = match savepoint
                .execute(
                    &statement,
                    &[&completed_at, &row.duration_ms, &row.error, &row.id],
                )
                .await
            {
                Ok(changed) => savepoint.commit().await.map(|()| changed == 1),
                Err(err) => {
                    let _ = savepoint.rollback().await;
                    Err(err)
                }
            };
            results.push(result.map_err(failed));
        }
        tx.commit().await.map_err(failed)?;
        Ok(results)
    }

    /// `pg_try_advisory_lock` on this session.
    pub(crate) async fn try_lock(&mut self) -> Result<Result<DatabaseLock, String>> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&LOCK_NAME])
            .await
            .map_err(|err| {
                eyre!(
                    "cannot take the apply lock on {}: {}",
                    self.shown,
                    describe(&err)
                )
            })?;
        Ok(if row.get::<_, bool>(0) {
            Ok(DatabaseLock::Session)
        } else {
            Err(format!(
                "another apply holds the PostgreSQL advisory lock {LOCK_NAME:?} on {}",
                self.shown
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database on the local server (trust auth), dropped by `drop_database`.
    async fn create_database() -> (String, String) {
        let name = format!(
            "trinity_unit_{}_{:x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let (admin, connection) =
            tokio_postgres::connect("postgres://postgres@127.0.0.1:5432/postgres", NoTls)
                .await
                .expect("the local PostgreSQL server (see .ci/run)");
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute(
                "CREATE TABLE schedule_executions (id TEXT PRIMARY KEY, schedule_id TEXT NOT NULL, agent_name TEXT NOT NULL, \
                 status TEXT NOT NULL, started_at TEXT NOT NULL, completed_at TEXT, duration_ms INTEGER, error TEXT); \
                 INSERT INTO schedule_executions VALUES ('x', '__manual__', 'a', 'running', '2026-11-28T12:00:00Z', NULL, NULL, NULL)",
            )
            .await
            .expect("schema");
        (name, url)
    }

    async fn drop_database(name: &str) {
        let (admin, connection) =
            tokio_postgres::connect("postgres://postgres@127.0.0.1:5432/postgres", NoTls)
                .await
                .expect("connect");
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop database");
    }

    #[tokio::test]
    async fn a_dry_run_session_cannot_write_even_through_the_write_path() {
        let (name, url) = create_database().await;
        let config = PostgresConfig {
            url: crate::redact::Secret::new(url.clone()),
        };
        let mut dry = Postgres::open(&config, false).await.expect("open");
        let rows = [FailRow {
            id: "x",
            error: "should never land",
            duration_ms: None,
        }];
        let refused = dry.fail_running(&rows, "2026-11-28T12:00:00.000000Z").await;
        let message = match refused {
            Err(message) => message,
            Ok(results) => format!("{results:?}"),
        };
        assert!(message.contains("read-only transaction"), "{message}");
        let mut writable = Postgres::open(&config, true).await.expect("open");
        assert_eq!(
            writable
                .fail_running(&rows, "2026-11-28T12:00:00.000000Z")
                .await,
            Ok(vec![Ok(true)])
        );
        drop((dry, writable));
        drop_database(&name).await;
    }
}
