//! `scan`: the full plan, every verdict.

use std::path::PathBuf;
use std::time::Duration;

use color_eyre::eyre::Result;

use crate::cli::GlobalArgs;
use crate::exit_code::ExitCode;
use crate::plan::Scope;
use crate::settings::Settings;

use super::Review;

/// Show the full plan: every running execution, agent process and leaked slot, with its verdict.
///
/// With --apply, carries out every action: fails orphaned rows, terminates timed-out and zombie
/// processes, releases leaked capacity slots. For a reviewed change: `scan --save plan.json`,
/// review the file, then `scan --from plan.json --apply` applies exactly those actions, skipping
/// each one whose facts changed in the meantime.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Save the plan's actions, with the facts each depends on, to this file for review.
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
    pub save: Option<PathBuf>,

    /// Apply exactly the actions saved in this file (with --apply); each is re-checked first.
    #[arg(long, value_name = "FILE", requires = "apply")]
    pub from: Option<PathBuf>,

    /// Refuse a saved plan older than this.
    #[arg(long, default_value = "1h", value_parser = crate::cli::parse_duration, requires = "from")]
    pub max_plan_age: Duration,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> Result<ExitCode> {
    let review = Review {
        save: args.save.clone(),
        from: args.from.clone(),
        max_plan_age: args.max_plan_age,
    };
    super::reconcile(&Settings::from_args(global)?, Scope::Scan, &review)
}
