//! One module per subcommand; `reconcile` is the gather → plan → apply → render pipeline they share.

pub(crate) mod completions;
pub(crate) mod kill;
pub(crate) mod recover;
pub(crate) mod scan;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use color_eyre::eyre::Result;

use crate::apply;
use crate::audit::AuditLog;
use crate::exit_code::ExitCode;
use crate::gather;
use crate::lock::{self, Acquired};
use crate::metrics;
use crate::output;
use crate::plan::{self, Outcome, Plan, Scope};
use crate::reviewed::SavedPlan;
use crate::safety;
use crate::settings::Settings;

/// Gathers a snapshot, plans, applies when asked (under the lock and the safety limits), prints
/// the result and picks the exit code.
pub(crate) fn reconcile(settings: &Settings, scope: Scope, review: &Review) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut finished_plan = None;
    let result = runtime.block_on(run(settings, &scope, review, &mut finished_plan));
    if let Some(path) = &settings.metrics_file {
        let figures = metrics::RunFigures {
            command: scope.command_name(),
            apply: settings.apply,
            plan: finished_plan.as_ref(),
            exit_code: *result.as_ref().unwrap_or(&ExitCode::Fatal),
            duration_seconds: started.elapsed().as_secs_f64(),
            finished_at: chrono::Utc::now(),
        };
        if let Err(err) = metrics::write(path, &figures) {
            settings.log.warn(&format!("{err:#}"));
        }
    }
    result
}

/// Reviewed plans (`scan --save` / `scan --from`).
#[derive(Debug, Default)]
pub(crate) struct Review {
    pub save: Option<PathBuf>,
    pub from: Option<PathBuf>,
    pub max_plan_age: Duration,
}

/// The run itself; leaves its plan in `finished_plan` for the metrics.
async fn run(
    settings: &Settings,
    scope: &Scope,
    review: &Review,
    finished_plan: &mut Option<Plan>,
) -> Result<ExitCode> {
    let mut sources = gather::Sources::open(settings).await?;
    let database = sources.store.identity();
    let saved = review.from.as_deref().map(SavedPlan::read).transpose()?;
    if let Some(refusal) = saved
        .as_ref()
        .and_then(|saved| saved.refusal(&database, review.max_plan_age, chrono::Utc::now()))
    {
        eprintln!("error: refused: {refusal}");
        return Ok(ExitCode::Refused);
    }
    let mut audit = settings
        .audit_log
        .as_deref()
        .filter(|_| settings.apply)
        .map(AuditLog::open)
        .transpose()?;
    let lock = if settings.apply {
        match lock::acquire(&mut sources.store, sources.redis.as_mut()).await? {
            Acquired::Held(lock) => Some(lock),
            Acquired::Busy(holder) => {
                eprintln!("error: {holder}; nothing was done");
                return Ok(ExitCode::Busy);
            }
        }
    } else {
        None
    };

    let mut look_up: BTreeSet<String> = saved.iter().flat_map(SavedPlan::ids).cloned().collect();
    if let Scope::KillIds(ids) = scope {
        look_up.extend(ids.iter().cloned());
    }
    let (snapshot, mut timings) = gather::snapshot(&mut sources, settings, &look_up).await?;
    for warning in &snapshot.warnings {
        settings.log.warn(warning);
    }
    let now = chrono::Utc::now();
    let mut plan = plan::plan(&snapshot, &settings.policy(scope.clone()), now);
    if let Some(saved) = &saved {
        plan = saved.to_plan(&snapshot, &plan);
    }
    if let Some(path) = &review.save {
        SavedPlan::new(&plan, &snapshot, &database, now).write(path)?;
        settings.log.warn(&format!(
            "saved {} actions to {}; review it, then: trinity-watchdog scan --from {} --apply",
            plan.action_count(),
            path.display(),
            path.display()
        ));
    }
    if settings.apply {
        match safety::check(&plan, settings.limits) {
            Err(reason) => {
                eprintln!("error: refused: {reason}");
                plan.refused = Some(reason);
            }
            Ok(()) => {
                let interrupted = listen_for_interrupts();
                let started = std::time::Instant::now();
                apply::apply(
                    &mut plan,
                    &mut sources,
                    settings,
                    audit.as_mut(),
                    &interrupted,
                )
                .await;
                timings.apply_ms = gather::millis(started.elapsed());
            }
        }
    }
    if let Some(lock) = lock
        && let Err(err) = lock.release(sources.redis.as_mut()).await
    {
        settings.log.warn(&format!(
            "could not release the Redis apply lock (it expires on its own): {err:#}"
        ));
    }
    to_stdout(|out| output::write(out, &plan, scope, settings, now, &timings))?;
    let code = exit_code(&plan, settings);
    *finished_plan = Some(plan);
    Ok(code)
}

/// A flag set by Ctrl-C or SIGTERM; installed only for an apply, so a dry run dies at once.
fn listen_for_interrupts() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        eprintln!("interrupted: finishing the action in progress, starting no new one");
        set.store(true, Ordering::SeqCst);
    });
    flag
}

fn exit_code(plan: &Plan, settings: &Settings) -> ExitCode {
    if plan.refused.is_some() {
        ExitCode::Refused
    } else if plan.interrupted {
        ExitCode::Interrupted
    } else if plan
        .items
        .iter()
        .any(|item| item.outcome == Some(Outcome::Failed))
    {
        ExitCode::ActionFailed
    } else if settings.exit_code && (plan.action_count() > 0 || plan.unreachable_agents() > 0) {
        ExitCode::NeedsAttention
    } else {
        ExitCode::Ok
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
