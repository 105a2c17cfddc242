//! The command line as clap parses it: raw flags, validated into `Settings` before any I/O.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::capacity::EventsMode;
use crate::commands;
use crate::exit_code::ExitCode;
use crate::output::OutputFormat;
use crate::shard::Shard;

/// Reconcile Trinity's execution records with what its agents and Redis really hold.
///
/// trinity-watchdog reads three sources — the `schedule_executions` table, every agent's own list
/// of what it runs, and Redis capacity slots — and prints a plan: for every execution and slot,
/// what is true and what should change. It changes nothing unless `--apply` is given.
#[derive(Debug, Parser)]
#[command(name = "trinity-watchdog", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Scan(commands::scan::Args),
    Recover(commands::recover::Args),
    Kill(commands::kill::Args),
    Completions(commands::completions::Args),
}

/// Options shared by every command; they may stand before or after the subcommand.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Trinity's SQLite database.
    #[arg(
        long,
        env = "TRINITY_DB_PATH",
        default_value = "/data/trinity.db",
        global = true,
        help_heading = "Sources"
    )]
    pub db: PathBuf,

    /// Trinity's PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true,
        help_heading = "Sources"
    )]
    pub database_url: Option<String>,

    /// Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked.
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        global = true,
        help_heading = "Sources"
    )]
    pub redis_url: Option<String>,

    /// Publish a recovery event per won write to Trinity's event stream (trinity:events), so
    /// that open dashboards update at once: auto (when the stream exists), on, or off.
    #[arg(long, value_enum, default_value_t = EventsMode::Auto, global = true, help_heading = "Apply")]
    pub events: EventsMode,

    /// Do not use Redis even if REDIS_URL is set.
    #[arg(long, global = true, help_heading = "Sources")]
    pub no_redis: bool,

    /// Agent base URL; {agent} is replaced by the percent-encoded agent name.
    #[arg(
        long,
        env = "TRINITY_AGENT_URL_TEMPLATE",
        // It may carry userinfo: --help never shows the environment's value.
        hide_env_values = true,
        default_value = "http://agent-{agent}:8000",
        global = true,
        help_heading = "Sources"
    )]
    pub agent_url: String,

    /// Shared secret for the X-Trinity-Agent-Token header (never printed).
    #[arg(
        long,
        env = "AGENT_AUTH_SECRET",
        hide_env_values = true,
        global = true,
        help_heading = "Sources"
    )]
    pub agent_secret: Option<String>,

    /// A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the
    /// system's roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list).
    #[arg(
        long = "ca-cert",
        value_name = "PATH",
        global = true,
        help_heading = "Sources"
    )]
    pub ca_certs: Vec<PathBuf>,

    /// Only look at this agent (repeatable).
    #[arg(
        long = "agent",
        value_name = "NAME",
        global = true,
        help_heading = "Sources"
    )]
    pub agents: Vec<String>,

    /// Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name's
    /// 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock.
    #[arg(long, value_name = "K/N", value_parser = clap::value_parser!(Shard), global = true, help_heading = "Sources")]
    pub shard: Option<Shard>,

    /// How long a row the agent does not know is left alone after it started.
    #[arg(long, default_value = "60s", value_parser = parse_duration, global = true, help_heading = "Policy")]
    pub grace: Duration,

    /// Timeout of a running row whose schedule and agent set none (Trinity's own default; 900s
    /// for deployments of the seed era).
    #[arg(long, default_value = "3600s", value_parser = parse_duration, global = true, help_heading = "Policy")]
    pub default_timeout: Duration,

    /// Fail `abandoned` rows (their agent was deleted and does not answer) instead of only
    /// reporting them: guarded write, capacity release, activity close; no terminate.
    #[arg(long, global = true, help_heading = "Policy")]
    pub recover_abandoned: bool,

    /// Time limit for each request to an agent.
    #[arg(long, default_value = "15s", value_parser = parse_duration, global = true, help_heading = "Policy")]
    pub http_timeout: Duration,

    /// How many agents are queried at once [default: half of the descriptor limit (the soft
    /// RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..), global = true, help_heading = "Policy")]
    pub concurrency: Option<u16>,

    /// Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL).
    #[arg(long, default_value = "15s", value_parser = parse_duration, global = true, help_heading = "Policy")]
    pub terminate_timeout: Duration,

    /// Carry out the plan's actions (without it nothing is changed).
    #[arg(long, global = true, help_heading = "Apply")]
    pub apply: bool,

    /// Refuse an apply whose plan has more actions than this (exit 5) unless --force.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        global = true,
        help_heading = "Apply"
    )]
    pub max_actions: usize,

    /// Apply even past --max-actions or the systemic-failure brake.
    #[arg(long, global = true, help_heading = "Apply")]
    pub force: bool,

    /// Append one JSON line per applied action to this file.
    #[arg(long, value_name = "PATH", global = true, help_heading = "Apply")]
    pub audit_log: Option<PathBuf>,

    /// Output format of the result on stdout.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table, global = true, help_heading = "Output")]
    pub output: OutputFormat,

    /// Show healthy executions in the table too.
    #[arg(long, global = true, help_heading = "Output")]
    pub all: bool,

    /// Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity
    /// finding that needs a person.
    #[arg(long, global = true, help_heading = "Output")]
    pub exit_code: bool,

    /// When to color the table.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, help_heading = "Output")]
    pub color: ColorChoice,

    /// Print nothing on stderr but errors.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Output"
    )]
    pub quiet: bool,

    /// Write the run's figures here in the Prometheus text format (node_exporter textfile collector).
    #[arg(long, value_name = "PATH", global = true, help_heading = "Output")]
    pub metrics_file: Option<PathBuf>,

    /// Say more on stderr (per-agent timings).
    #[arg(short, long, global = true, help_heading = "Output")]
    pub verbose: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// `90s`, `15m`, `2h` (humantime), or a plain number of seconds (`900`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|err| format!("{err} (write e.g. 900, 90s, 15m or 2h)"))
}

/// Which of the database options were given on the command line (not taken from the
/// environment or a default).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GivenOnCommandLine {
    pub db: bool,
    pub database_url: bool,
}

/// Which database options the command line itself gave (global options may stand before or
/// after the subcommand, so both levels are asked).
pub(crate) fn given_on_command_line(matches: &ArgMatches) -> GivenOnCommandLine {
    let given = |id: &str| {
        let here = |m: &ArgMatches| m.value_source(id) == Some(ValueSource::CommandLine);
        here(matches) || matches.subcommand().is_some_and(|(_, sub)| here(sub))
    };
    GivenOnCommandLine {
        db: given("db"),
        database_url: given("database_url"),
    }
}

/// The full clap command, with the exit-code table appended to `--help`.
pub(crate) fn command() -> clap::Command {
    Cli::command().after_long_help(format!("Exit codes:\n\n{}", ExitCode::table()))
}

/// The man page (roff), generated from the same clap definitions as `--help`.
pub fn man_page() -> String {
    let mut buffer = Vec::new();
    // Rendering into memory cannot fail.
    let _ = clap_mangen::Man::new(command()).render(&mut buffer);
    String::from_utf8_lossy(&buffer).into_owned()
}
