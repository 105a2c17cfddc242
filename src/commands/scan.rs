//! `scan`: the full plan, every verdict.

use std::path::PathBuf;
use std::time::Duration;

use crate::plan::Scope;
use crate::reconcile::Request;

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

impl Args {
    pub(crate) fn request(&self) -> Request {
        Request {
            save: self.save.clone(),
            from: self.from.clone().map(|path| (path, self.max_plan_age)),
            ..Request::new(Scope::Scan)
        }
    }
}
