//! The PostgreSQL backend (`DATABASE_URL=postgres://…`): same table and column names as SQLite.
//! A dry run's session is read-only; the guarded writes run in one transaction with a savepoint
//! per row; the database's part of the apply lock is a session advisory lock, which the server
//! releases when the session ends, however it ends.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use tokio_postgres::{Client, NoTls};

use crate::snapshot::OwnedAgents;

use crate::tls::{self, CaCerts, Verify};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    CLOSE_ACTIVITIES_SQL, DatabaseLock, FailRow, PostgresConfig, RawRow, Schema, Tables, fail_sql,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every session, dry runs included, gives up on a statement after this long…
const STATEMENT_TIMEOUT: &str = "30s";
/// … and on waiting for a lock (another session's row or table lock) after this long.
const LOCK_TIMEOUT: &str = "5s";
/// TCP keepalives, so that a server that vanished (a failover, a dropped NAT entry) is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// Key of the advisory lock: `hashtext` of this name (of a shard: with `-shard-K-of-N`
/// appended), the same for every run on any host.
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
    /// The same for `agent_activities.completed_at`.
    activity_completed_cast: String,
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => bail!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ),
        })
    }
}

/// The URL without `sslmode` and `sslrootcert` (tokio-postgres knows only some modes), and the
/// TLS they ask for: the URL's values, else `PGSSLMODE` / `PGSSLROOTCERT`, else `prefer`. The
/// other query parameters are passed on exactly as written.
fn tls_settings(
    database: &PostgresConfig,
    shown: &str,
) -> Result<(String, SslMode, Option<PathBuf>)> {
    let mut url = url::Url::parse(database.url.expose())
        .map_err(|_| eyre!("invalid PostgreSQL URL {shown}"))?;
    let (mut mode, mut root) = (None, None);
    let query = url.query().unwrap_or_default().to_owned();
    let mut kept = Vec::new();
    for part in query.split('&').filter(|part| !part.is_empty()) {
        match url::form_urlencoded::parse(part.as_bytes()).next() {
            Some((key, value)) if key == "sslmode" => mode = Some(value.into_owned()),
            Some((key, value)) if key == "sslrootcert" => {
                root = Some(PathBuf::from(value.as_ref()));
            }
            _ => kept.push(part),
        }
    }
    let kept = kept.join("&");
    url.set_query(Some(kept.as_str()).filter(|query| !query.is_empty()));
    let mode = match mode.or_else(|| database.env_sslmode.clone()) {
        Some(mode) => SslMode::parse(&mode)?,
        None => SslMode::Prefer,
    };
    Ok((
        url.to_string(),
        mode,
        root.or_else(|| database.env_sslrootcert.clone()),
    ))
}

impl Postgres {
    pub(crate) async fn open(database: &PostgresConfig, writable: bool) -> Result<Postgres> {
        let shown = database.url.shown();
        let (url, mode, root_cert) = tls_settings(database, &shown)?;
        // The parser's message may quote the URL: only say that it did not parse.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| eyre!("invalid PostgreSQL URL {shown}"))?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .application_name("trinity-watchdog");
        let failed = |err: tokio_postgres::Error| {
            // The server's message may name the user ("role … does not exist"): userinfo is
            // never shown.
            let mut reason = describe(&err);
            if let Some(user) = config.get_user().filter(|user| !user.is_empty()) {
                reason = reason.replace(&format!("\"{user}\""), "\"***\"");
            }
            eyre!(
                "cannot connect to PostgreSQL at {shown} (sslmode {}): {reason}",
                mode.name()
            )
        };
        // The connection ends with the client; a broken one shows up as the next query's error.
        let client = if mode == SslMode::Disable {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(connection);
            client
        } else {
            let roots = match &root_cert {
                Some(path) => {
                    CaCerts::load(std::slice::from_ref(path))
                        .wrap_err("sslrootcert / PGSSLROOTCERT")?
                        .certs
                }
                None => Vec::new(),
            };
            // As in libpq, `require` with a root certificate verifies the chain.
            let verify = match mode {
                SslMode::Prefer => Verify::Nothing,
                SslMode::Require if root_cert.is_none() => Verify::Nothing,
                SslMode::Require | SslMode::VerifyCa => Verify::Chain,
                SslMode::VerifyFull | SslMode::Disable => Verify::Full,
            };
            let tls =
                MakeRustlsConnect::new(tls::client_config(verify, &roots, &database.ca_certs)?);
            let (client, connection) = config.connect(tls).await.map_err(failed)?;
            tokio::spawn(connection);
            client
        };
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
        const TABLES: [&str; 4] = [
            "schedule_executions",
            "agent_schedules",
            "agent_ownership",
            "agent_activities",
        ];
        let mut tables = [(); 4].map(|()| HashSet::new());
        // The type of each table's completed_at: a text parameter is cast to it.
        let mut completed_types = [(); 4].map(|()| String::from("text"));
        let rows = client
            .query(
                "SELECT table_name::text, column_name::text, udt_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = ANY($1)",
                &[&TABLES.as_slice()],
            )
            .await
            .map_err(|err| eyre!("cannot read the schema of {shown}: {}", describe(&err)))?;
        for row in rows {
            let (table, column, udt): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let Some(index) = TABLES.iter().position(|name| *name == table) else {
                continue;
            };
            if column == "completed_at" {
                if !udt.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    bail!("{table}.completed_at has an unexpected type {udt:?} in {shown}");
                }
                completed_types[index] = udt;
            }
            tables[index].insert(column);
        }
        let [executions, schedules, ownership, activities] = &tables;
        let schema = Schema::check(
            &shown,
            &Tables {
                executions,
                schedules,
                ownership,
                activities,
            },
            |c| format!("{c}::text"),
            |c| format!("{c}::bigint"),
        )?;
        Ok(Postgres {
            client,
            shown,
            schema,
            completed_cast: format!("$1::text::{}", completed_types[0]),
            activity_completed_cast: format!("$1::text::{}", completed_types[3]),
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
                lease_expires_at: row.get(5),
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

    pub(crate) async fn owned_agents(&self) -> Result<Option<OwnedAgents>> {
        let Some(sql) = &self.schema.owned_select else {
            return Ok(None);
        };
        let rows = self.client.query(sql.as_str(), &[]).await.map_err(|err| {
            eyre!(
                "cannot read agent_ownership in {}: {}",
                self.shown,
                describe(&err)
            )
        })?;
        Ok(Some(
            rows.iter()
                .filter_map(|row| Some((row.get::<_, Option<String>>(0)?, row.get(1))))
                .collect(),
        ))
    }

    /// See `Store::fail_running`; `Err` is the failed transaction.
    pub(crate) async fn fail_running(
        &mut self,
        rows: &[FailRow<'_>],
        completed_at: &str,
    ) -> Result<Vec<Result<Option<u64>, String>>, String> {
        let shown = self.shown.clone();
        let failed = |err: tokio_postgres::Error| {
            format!("cannot mark it failed in {shown}: {}", describe(&err))
        };
        let bind = |sql: &str, completed: &str| {
            sql.replace("{completed}", completed)
                .replace("{duration}", "$2::bigint")
                .replace("{error}", "$3::text")
                .replace("{id}", "$4::text")
        };
        let mut tx = self.client.transaction().await.map_err(failed)?;
        let statement = tx
            .prepare(&bind(&fail_sql(), &self.completed_cast))
            .await
            .map_err(failed)?;
        let close = match self.schema.has_activities {
            true => Some(
                tx.prepare(&bind(CLOSE_ACTIVITIES_SQL, &self.activity_completed_cast))
                    .await
                    .map_err(failed)?,
            ),
            false => None,
        };
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let savepoint = tx.savepoint("trinity_watchdog_row").await.map_err(failed)?;
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&completed_at, &row.duration_ms, &row.error, &row.id];
            let written = async {
                if savepoint.execute(&statement, &values).await? != 1 {
                    return Ok(None);
                }
                match &close {
                    Some(close) => savepoint.execute(close, &values).await.map(Some),
                    None => Ok(Some(0)),
                }
            }
            .await;
            let result = match written {
                Ok(won) => savepoint.commit().await.map(|()| won),
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
    pub(crate) async fn try_lock(&mut self, suffix: &str) -> Result<Result<DatabaseLock, String>> {
        let name = format!("{LOCK_NAME}{suffix}");
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&name])
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
                "another apply holds the PostgreSQL advisory lock {name:?} on {}",
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
            ca_certs: CaCerts::default(),
            env_sslmode: None,
            env_sslrootcert: None,
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
            Ok(vec![Ok(Some(0))])
        );
        drop((dry, writable));
        drop_database(&name).await;
    }
}
