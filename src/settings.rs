//! Validated settings built from the command line before any I/O: durations parsed, the agent
//! URL template checked, empty environment values treated as unset.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use color_eyre::eyre::{Result, bail};

use crate::agents::UrlTemplate;
use crate::cli::{ColorChoice, GlobalArgs, OutputFormat};
use crate::plan::{Policy, Scope};
use crate::safety::Limits;

#[derive(Debug)]
pub(crate) struct Settings {
    pub db_path: PathBuf,
    /// A postgres:// URL: PostgreSQL is used instead of `db_path`.
    pub database_url: Option<String>,
    /// `None`: capacity is not checked.
    pub redis_url: Option<String>,
    pub agent_url: UrlTemplate,
    pub agent_secret: Option<String>,
    /// Empty: every agent.
    pub agent_filter: BTreeSet<String>,
    pub grace: Duration,
    pub default_timeout: Duration,
    pub http_timeout: Duration,
    pub terminate_timeout: Duration,
    pub concurrency: usize,
    pub apply: bool,
    pub limits: Limits,
    pub audit_log: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    pub output: OutputFormat,
    pub show_all: bool,
    pub exit_code: bool,
    pub color: bool,
    pub progress: bool,
    pub log: Log,
}

impl Settings {
    pub(crate) fn from_args(args: &GlobalArgs) -> Result<Settings> {
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        if args.db.as_os_str().is_empty() {
            bail!("--db / TRINITY_DB_PATH is empty: name Trinity's SQLite database file");
        }
        if args.default_timeout.is_zero() {
            bail!("--default-timeout must be longer than 0s");
        }
        if args.http_timeout.is_zero() || args.terminate_timeout.is_zero() {
            bail!("--http-timeout and --terminate-timeout must be longer than 0s");
        }
        let agent_url = UrlTemplate::parse(&args.agent_url)?;
        let database_url = non_empty(&args.database_url);
        let database_url = match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(url)
            }
            Some(url) => {
                // Some Trinity versions set DATABASE_URL=sqlite:///data/trinity.db.
                if !args.quiet {
                    eprintln!(
                        "warning: DATABASE_URL {} is not a postgres:// URL; using --db {}",
                        redact_url(&url),
                        args.db.display()
                    );
                }
                None
            }
            None => None,
        };
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let color = match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Ok(Settings {
            db_path: args.db.clone(),
            database_url,
            redis_url: if args.no_redis {
                None
            } else {
                non_empty(&args.redis_url)
            },
            agent_url,
            agent_secret: non_empty(&args.agent_secret),
            agent_filter: args.agents.iter().cloned().collect(),
            grace: args.grace,
            default_timeout: args.default_timeout,
            http_timeout: args.http_timeout,
            terminate_timeout: args.terminate_timeout,
            concurrency: usize::from(args.concurrency),
            apply: args.apply,
            limits: Limits {
                max_actions: args.max_actions,
                force: args.force,
            },
            audit_log: args.audit_log.clone(),
            metrics_file: args.metrics_file.clone(),
            output: args.output,
            show_all: args.all,
            exit_code: args.exit_code,
            color,
            progress: stderr_is_terminal
                && !args.quiet
                && !args.verbose
                && args.output == OutputFormat::Table,
            log: Log {
                quiet: args.quiet,
                verbose: args.verbose,
            },
        })
    }

    pub(crate) fn policy(&self, scope: Scope) -> Policy {
        Policy {
            grace: self.grace,
            default_timeout: self.default_timeout,
            agent_filter: self.agent_filter.clone(),
            scope,
        }
    }
}

/// Messages for stderr: warnings unless `-q`, details only with `-v`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Log {
    pub quiet: bool,
    pub verbose: bool,
}

impl Log {
    pub(crate) fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }

    pub(crate) fn info(&self, message: &str) {
        if self.verbose {
            eprintln!("{message}");
        }
    }
}

/// A Redis URL fit for messages: the password, if any, replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://user:hunter2@host/"),
            "redis://user:***@host/"
        );
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("not a url hunter2"), "<unparseable URL>");
    }
}
