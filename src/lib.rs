//! trinity-watchdog reconciles Trinity's execution records with what its agents and Redis really
//! hold: gather a snapshot, plan (pure), apply when asked, render. `run` is the whole program; the
//! binary and the demo both call it.
//!
//! The modules form layers, and imports point down (only the clap pair `cli` ↔ `commands` points
//! both ways):
//! - helpers: `atomic_file`, `exit_code`, `host`, `log`, `redact`, `timestamp`;
//! - the pure domain: `snapshot`, `plan`, `safety`, `reviewed`;
//! - adapters: `store`, `agents`, `capacity` (Redis), `audit`;
//! - orchestration: `gather`, `lock`, `guard`, `apply`, `reconcile`;
//! - output: `output`, `metrics`;
//! - the command line: `cli`, `settings`, `commands`.

// Helpers.
mod atomic_file;
mod exit_code;
mod host;
mod log;
mod redact;
mod timestamp;
// The pure domain.
mod plan;
mod reviewed;
mod safety;
mod snapshot;
// Adapters.
mod agents;
mod audit;
mod capacity;
mod store;
// Orchestration.
mod apply;
mod gather;
mod guard;
mod lock;
mod reconcile;
// Output.
mod metrics;
mod output;
// The command line.
mod cli;
mod commands;
mod settings;

use std::ffi::OsString;

use clap::FromArgMatches;

pub use cli::man_page;
pub use exit_code::ExitCode;

/// Runs trinity-watchdog with these arguments (the first is the program name): prints the result
/// on stdout, everything else on stderr, and returns the exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut command = cli::command();
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|matches| Ok((cli::Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    let given = cli::given_on_command_line(&matches);
    if given.db && given.database_url {
        let _ = command
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--db and --database-url name two databases: give one",
            )
            .print();
        return ExitCode::Usage;
    }
    commands::run(&cli, given)
}
