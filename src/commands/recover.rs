//! `recover`: only the database and capacity repairs; never terminates a process.

use color_eyre::eyre::Result;

use crate::cli::GlobalArgs;
use crate::exit_code::ExitCode;
use crate::plan::Scope;
use crate::settings::Settings;

/// Plan only `orphaned` rows and `leaked_slot`s. Never terminates a process.
///
/// With --apply, marks orphaned rows failed (guarded) and releases their capacity, and releases
/// leaked slots.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: &Args, global: &GlobalArgs) -> Result<ExitCode> {
    super::reconcile(
        &Settings::from_args(global)?,
        Scope::Recover,
        &super::Review::default(),
    )
}
