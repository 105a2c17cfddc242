//! `recover`: only the database and capacity repairs; never terminates a process.

use crate::plan::Scope;
use crate::reconcile::Request;

/// Plan only `orphaned` rows and `leaked_slot`s. Never terminates a process.
///
/// With --apply, marks orphaned rows failed (guarded) and releases their capacity, and releases
/// leaked slots.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

impl Args {
    pub(crate) fn request(&self) -> Request {
        Request::new(Scope::Recover)
    }
}
