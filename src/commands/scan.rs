//! `scan`: the full plan, every verdict.

use color_eyre::eyre::Result;

use crate::cli::GlobalArgs;
use crate::exit_code::ExitCode;
use crate::plan::Scope;
use crate::settings::Settings;

/// Show the full plan: every running execution, agent process and leaked slot, with its verdict.
///
/// With --apply, carries out every action: fails orphaned rows, terminates timed-out and zombie
/// processes, releases leaked capacity slots.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: &Args, global: &GlobalArgs) -> Result<ExitCode> {
    super::reconcile(&Settings::from_args(global)?, Scope::Scan)
}
