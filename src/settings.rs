//! Validated settings built from the command line before any I/O: durations checked, the agent
//! URL template parsed, empty environment values treated as unset, the database chosen (the
//! command line always wins over the environment), and every secret wrapped so that it never
//! prints. Each adapter's part comes out typed on its own.

use std::io::IsTerminal;
use std::path::PathBuf;

use color_eyre::eyre::{Result, bail};

use crate::agents::{AgentConfig, UrlTemplate};
use crate::capacity::RedisConfig;
use crate::cli::{ColorChoice, GivenOnCommandLine, GlobalArgs};
use crate::descriptors;
use crate::log::Log;
use crate::output::{OutputFormat, View};
use crate::reconcile::{ApplyConfig, Config};
use crate::redact::{Secret, redact_url};
use crate::safety::Limits;
use crate::shard::AgentScope;
use crate::store::{Database, PostgresConfig};
use crate::tls::CaCerts;

#[derive(Debug)]
pub(crate) struct Settings {
    pub run: Config,
    pub view: View,
    pub metrics_file: Option<PathBuf>,
}

impl Settings {
    pub(crate) fn from_args(
        args: &GlobalArgs,
        given: GivenOnCommandLine,
        command: &'static str,
    ) -> Result<Settings> {
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        if args.default_timeout.is_zero() {
            bail!("--default-timeout must be longer than 0s");
        }
        if args.http_timeout.is_zero() || args.terminate_timeout.is_zero() {
            bail!("--http-timeout and --terminate-timeout must be longer than 0s");
        }
        let log = Log {
            quiet: args.quiet,
            verbose: args.verbose,
        };
        // --ca-cert wins; else TRINITY_CA_CERT, whose empty entries (a compose file's
        // `TRINITY_CA_CERT=`) mean nothing.
        let ca_paths: Vec<PathBuf> = if args.ca_certs.is_empty() {
            std::env::var("TRINITY_CA_CERT")
                .unwrap_or_default()
                .split(':')
                .filter(|path| !path.trim().is_empty())
                .map(PathBuf::from)
                .collect()
        } else {
            args.ca_certs.clone()
        };
        let ca_certs = CaCerts::load(&ca_paths)?;
        // Raised whatever --concurrency says: the terminates and the database need descriptors too.
        let limit = descriptors::raise_limit();
        let concurrency = args
            .concurrency
            .map_or_else(|| descriptors::default_concurrency(limit), usize::from);
        let agents = AgentConfig {
            template: UrlTemplate::parse(&args.agent_url)?,
            secret: non_empty(&args.agent_secret).map(Secret::new),
            timeout: args.http_timeout,
            terminate_timeout: args.terminate_timeout,
            concurrency,
            ca_certs: ca_certs.clone(),
        };
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let color = match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        let run = Config {
            database: database(args, given, &ca_certs, log)?,
            agents,
            redis: if args.no_redis {
                None
            } else {
                non_empty(&args.redis_url).map(|url| RedisConfig {
                    url: Secret::new(url),
                    ca_certs: ca_certs.clone(),
                })
            },
            grace: args.grace,
            default_timeout: args.default_timeout,
            agents_in_scope: AgentScope {
                names: args.agents.iter().cloned().collect(),
                shard: args.shard,
            },
            recover_abandoned: args.recover_abandoned,
            events: args.events,
            apply: args.apply.then(|| ApplyConfig {
                limits: Limits {
                    max_actions: args.max_actions,
                    force: args.force,
                },
                audit_log: args.audit_log.clone(),
            }),
            exit_code: args.exit_code,
            progress: stderr_is_terminal
                && !args.quiet
                && !args.verbose
                && args.output == OutputFormat::Table,
            log,
        };
        Ok(Settings {
            run,
            view: View {
                format: args.output,
                show_all: args.all,
                color,
                command,
                apply: args.apply,
                grace: args.grace,
                default_timeout: args.default_timeout,
                concurrency,
                pretty_json: std::io::stdout().is_terminal(),
            },
            metrics_file: args.metrics_file.clone(),
        })
    }
}

/// The database: what the command line names wins (both at once is a usage error, caught
/// before this), then a postgres:// `DATABASE_URL` from the environment, then `--db`'s
/// environment value or default.
fn database(
    args: &GlobalArgs,
    given: GivenOnCommandLine,
    ca_certs: &CaCerts,
    log: Log,
) -> Result<Database> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let postgres = |url: String| {
        Database::Postgres(PostgresConfig {
            url: Secret::new(url),
            ca_certs: ca_certs.clone(),
            env_sslmode: env("PGSSLMODE"),
            env_sslrootcert: env("PGSSLROOTCERT").map(PathBuf::from),
        })
    };
    let sqlite = || {
        if args.db.as_os_str().is_empty() {
            bail!("--db / TRINITY_DB_PATH is empty: name Trinity's SQLite database file");
        }
        Ok(Database::Sqlite(args.db.clone()))
    };
    if given.db {
        return sqlite();
    }
    let url = args
        .database_url
        .clone()
        .filter(|url| !url.trim().is_empty());
    match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(postgres(url))
        }
        Some(url) if given.database_url => bail!(
            "--database-url {} is not a postgres:// URL (for SQLite, use --db)",
            redact_url(&url)
        ),
        Some(url) => {
            // Some Trinity versions set DATABASE_URL=sqlite:///data/trinity.db.
            log.warn(&format!(
                "DATABASE_URL {} is not a postgres:// URL; using --db {}",
                redact_url(&url),
                args.db.display()
            ));
            sqlite()
        }
        None => sqlite(),
    }
}
