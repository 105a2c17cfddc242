//! One module per subcommand; `reconcile` is the gather → plan → apply → render pipeline they share.

pub(crate) mod completions;
pub(crate) mod kill;
pub(crate) mod recover;
pub(crate) mod scan;

use std::io::Write;

use color_eyre::eyre::Result;

use crate::apply;
use crate::exit_code::ExitCode;
use crate::gather;
use crate::output;
use crate::plan::{self, Scope};
use crate::settings::Settings;

/// Gathers a snapshot, plans, applies when asked, prints the result and picks the exit code.
pub(crate) fn reconcile(settings: &Settings, scope: Scope) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut sources = gather::Sources::open(settings).await?;
        let snapshot = gather::snapshot(&mut sources, settings, &scope).await?;
        for warning in &snapshot.warnings {
            settings.log.warn(warning);
        }
        let now = chrono::Utc::now();
        let mut plan = plan::plan(&snapshot, &settings.policy(scope.clone()), now);
        if settings.apply {
            apply::apply(&mut plan, &mut sources, settings).await;
        }
        let rendered = output::render(&plan, &scope, settings, now);
        write_stdout(&rendered)?;
        Ok(exit_code(&plan, settings))
    })
}

fn exit_code(plan: &plan::Plan, settings: &Settings) -> ExitCode {
    if plan
        .items
        .iter()
        .any(|item| item.outcome == Some(plan::Outcome::Failed))
    {
        ExitCode::ActionFailed
    } else if settings.exit_code && (plan.action_count() > 0 || plan.unreachable_agents() > 0) {
        ExitCode::NeedsAttention
    } else {
        ExitCode::Ok
    }
}

/// Writes the result to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
