//! `kill`: timed-out and zombie processes, or exactly the executions named.

use crate::plan::Scope;
use crate::reconcile::Request;

/// Plan `timed_out` and `zombie` processes, or terminate exactly the executions named.
///
/// With IDs, each named execution is terminated on its agent and, if its row is still running,
/// marked failed ("terminated by operator"). Nothing happens without --apply.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Execution ids to terminate.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,

    /// Close exactly the named running rows without contacting their agent (for an agent that is
    /// gone but still owned): guarded write, capacity release, activity close; no HTTP request.
    #[arg(long, requires = "ids")]
    pub no_terminate: bool,
}

impl Args {
    pub(crate) fn request(&self) -> Request {
        Request {
            no_terminate: self.no_terminate,
            ..Request::new(if self.ids.is_empty() {
                Scope::Kill
            } else {
                Scope::KillIds(self.ids.clone())
            })
        }
    }
}
