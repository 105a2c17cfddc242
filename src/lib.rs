//! trinity-watchdog reconciles Trinity's execution records with what its agents and Redis really
//! hold: gather a snapshot, plan (pure), apply when asked, render. `run` is the whole program; the
//! binary and the demo both call it.

mod agents;
mod apply;
mod audit;
mod capacity;
mod cli;
mod commands;
mod exit_code;
mod gather;
mod lock;
mod metrics;
mod output;
mod plan;
mod reviewed;
mod safety;
mod settings;
mod snapshot;
mod store;
mod timestamp;

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
    let parsed = cli::command()
        .try_get_matches_from(args)
        .and_then(|matches| cli::Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    let result = match &cli.command {
        cli::Command::Scan(args) => commands::scan::run(args, &cli.global),
        cli::Command::Recover(args) => commands::recover::run(args, &cli.global),
        cli::Command::Kill(args) => commands::kill::run(args, &cli.global),
        cli::Command::Completions(args) => commands::completions::run(args),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::Fatal
    })
}
