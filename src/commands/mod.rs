//! One module per subcommand, each with its `Args` and the request it makes; the reconciling
//! commands differ only in that request (the scope of the plan, the reviewed-plan files), so they
//! share one path here: settings → reconcile → print → metrics.

pub(crate) mod completions;
pub(crate) mod kill;
pub(crate) mod recover;
pub(crate) mod scan;

use std::io::Write;
use std::time::Instant;

use color_eyre::eyre::Result;

use crate::cli::{Cli, Command, GivenOnCommandLine};
use crate::exit_code::ExitCode;
use crate::metrics;
use crate::output;
use crate::reconcile::{self, Report, Request};
use crate::settings::Settings;

/// Runs the parsed command line and returns the exit code. The metrics file, when asked for, is
/// written after every run whose command line parsed, a run that failed on its settings included.
pub(crate) fn run(cli: &Cli, given: GivenOnCommandLine) -> ExitCode {
    let request = match &cli.command {
        Command::Completions(args) => return completions::run(args),
        Command::Scan(args) => args.request(),
        Command::Recover(args) => args.request(),
        Command::Kill(args) => args.request(),
    };
    if let Some(shard) = cli.global.shard
        && let Some(what) = unsharded(&request)
    {
        crate::log::say!(
            "error: --shard {shard} cannot be combined with {what}: it names its executions itself"
        );
        return ExitCode::Usage;
    }
    let started = Instant::now();
    let settings = Settings::from_args(&cli.global, given, request.scope.command_name());
    let (code, report) = match &settings {
        Ok(settings) => run_settled(settings, &request),
        Err(err) => {
            crate::log::say!("error: {err:#}");
            (ExitCode::Fatal, None)
        }
    };
    let metrics_file = match &settings {
        Ok(settings) => settings.metrics_file.as_ref(),
        Err(_) => cli.global.metrics_file.as_ref(),
    };
    if let Some(path) = metrics_file {
        let figures = metrics::RunFigures {
            command: request.scope.command_name(),
            apply: cli.global.apply,
            plan: report.as_ref().map(|report| &report.plan),
            exit_code: code,
            duration_seconds: started.elapsed().as_secs_f64(),
            finished_at: chrono::Utc::now(),
        };
        if let Err(err) = metrics::write(path, &figures)
            && !cli.global.quiet
        {
            crate::log::say!("warning: {err:#}");
        }
    }
    code
}

/// What a request names that a shard must not narrow: executions named by id (whatever agent
/// runs them) or a reviewed plan's actions.
fn unsharded(request: &Request) -> Option<&'static str> {
    if matches!(request.scope, crate::plan::Scope::KillIds(_)) {
        Some("kill IDs")
    } else if request.from.is_some() {
        Some("--from")
    } else {
        None
    }
}

fn run_settled(settings: &Settings, request: &Request) -> (ExitCode, Option<Report>) {
    match reconcile::reconcile(&settings.run, request) {
        Ok(run) => {
            if let Some(report) = &run.report
                && let Err(err) = to_stdout(|out| output::write(out, report, &settings.view))
            {
                crate::log::say!("error: cannot write the result: {err:#}");
                return (ExitCode::Fatal, run.report);
            }
            (run.code, run.report)
        }
        Err(err) => {
            crate::log::say!("error: {err:#}");
            (ExitCode::Fatal, None)
        }
    }
}

/// Writes the result to stdout, buffered; a reader that went away (`| head`) is not an error.
pub(crate) fn to_stdout(
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
