//! `kill`: timed-out and zombie processes, or exactly the executions named.

use color_eyre::eyre::Result;

use crate::cli::GlobalArgs;
use crate::exit_code::ExitCode;
use crate::plan::Scope;
use crate::settings::Settings;

/// Plan `timed_out` and `zombie` processes, or terminate exactly the executions named.
///
/// With IDs, each named execution is terminated on its agent and, if its row is still running,
/// marked failed ("terminated by operator"). Nothing happens without --apply.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Execution ids to terminate.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> Result<ExitCode> {
    let scope = if args.ids.is_empty() {
        Scope::Kill
    } else {
        Scope::KillIds(args.ids.clone())
    };
    super::reconcile(
        &Settings::from_args(global)?,
        scope,
        &super::Review::default(),
    )
}
