//! The application flow every reconciling command shares: open the sources, gather a snapshot,
//! plan, and — for an apply — take the guard (lock, interrupts, audit), check the saved plan and
//! the safety limits, apply. It returns what happened as a value; rendering it and writing the
//! metrics are the caller's. Everything an apply holds is owned by `guard::ApplyGuard`, whose
//! `finish` runs on every path that returns.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use color_eyre::eyre::Result;

use crate::agents::AgentConfig;
use crate::apply;
use crate::audit::AuditLog;
use crate::capacity::{EventsMode, RedisConfig};
use crate::exit_code::ExitCode;
use crate::gather::{self, Sources, Timings};
use crate::guard::{ApplyGuard, Guarded};
use crate::log::Log;
use crate::plan::{self, Outcome, Plan, Policy, Scope};
use crate::reviewed::SavedPlan;
use crate::safety::{self, Limits};
use crate::shard::AgentScope;
use crate::store::Database;

/// Everything a run needs, each adapter's part typed on its own.
#[derive(Debug)]
pub(crate) struct Config {
    pub database: Database,
    pub agents: AgentConfig,
    /// `None`: capacity is not checked.
    pub redis: Option<RedisConfig>,
    pub grace: Duration,
    pub default_timeout: Duration,
    /// `--agent` and `--shard`.
    pub agents_in_scope: AgentScope,
    /// `--recover-abandoned`: fail abandoned rows instead of only reporting them.
    pub recover_abandoned: bool,
    /// `--events`: announce won writes on Trinity's event stream.
    pub events: EventsMode,
    /// `None`: a dry run.
    pub apply: Option<ApplyConfig>,
    /// `--exit-code`: exit 4 when the plan needs attention.
    pub exit_code: bool,
    pub progress: bool,
    pub log: Log,
}

#[derive(Debug)]
pub(crate) struct ApplyConfig {
    pub limits: Limits,
    pub audit_log: Option<PathBuf>,
}

/// What a command asks for: which part of the plan, and the reviewed-plan files.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub scope: Scope,
    /// `scan --save FILE`.
    pub save: Option<PathBuf>,
    /// `scan --from FILE`, and the oldest plan it takes.
    pub from: Option<(PathBuf, Duration)>,
    /// `kill ID… --no-terminate`: close the rows without contacting any agent.
    pub no_terminate: bool,
}

impl Request {
    pub(crate) fn new(scope: Scope) -> Request {
        Request {
            scope,
            save: None,
            from: None,
            no_terminate: false,
        }
    }
}

/// How a run ended, and its plan when it got that far.
pub(crate) struct Run {
    pub code: ExitCode,
    pub report: Option<Report>,
}

/// A finished plan: what to print.
pub(crate) struct Report {
    pub plan: Plan,
    pub now: DateTime<Utc>,
    pub timings: Timings,
}

/// Runs one reconcile on its own runtime. Only a fatal error (a source that cannot be read) is
/// an `Err`; everything else, refusals and busy locks included, is a `Run`.
pub(crate) fn reconcile(config: &Config, request: &Request) -> Result<Run> {
    // Blocking database calls run on this thread; the signal listener and the lock refresher
    // run on the workers, so neither waits for a busy database.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(config, request))
}

async fn run(config: &Config, request: &Request) -> Result<Run> {
    let mut sources = Sources::open(
        &config.database,
        config.apply.is_some(),
        &config.agents,
        config.redis.as_ref(),
        config.log,
    )
    .await?;
    let database = sources.store.identity();
    let saved = match &request.from {
        Some((path, _)) => Some(SavedPlan::read(path)?),
        None => None,
    };
    let Some(apply_config) = &config.apply else {
        let report = gather_and_plan(
            &mut sources,
            config,
            request,
            saved.as_ref(),
            &database,
            None,
        )
        .await?;
        return Ok(Run {
            code: exit_code(&report.plan, config.exit_code),
            report: Some(report),
        });
    };

    let audit = apply_config
        .audit_log
        .as_deref()
        .map(AuditLog::open)
        .transpose()?;
    let guard = match ApplyGuard::acquire(
        &mut sources.store,
        sources.redis.as_mut(),
        audit,
        &config.agents_in_scope.lock_suffix(),
        config.log,
    )
    .await?
    {
        Guarded::Held(guard) => guard,
        Guarded::Busy(holder) => {
            crate::log::say!("error: {holder}; nothing was done");
            return Ok(Run {
                code: ExitCode::Busy,
                report: None,
            });
        }
    };
    // A saved plan from another database, or too old, is refused before anything changes.
    let refusal = saved
        .as_ref()
        .zip(request.from.as_ref())
        .and_then(|(saved, (_, max_age))| saved.refusal(&database, *max_age, Utc::now()));
    let result = match refusal {
        Some(refusal) => {
            crate::log::say!("error: refused: {refusal}");
            Ok(None)
        }
        None => guarded(
            &mut sources,
            &guard,
            config,
            apply_config,
            request,
            saved.as_ref(),
            &database,
        )
        .await
        .map(Some),
    };
    let code = |report: &Option<Report>| match report {
        Some(report) => exit_code(&report.plan, config.exit_code),
        None => ExitCode::Refused,
    };
    let ended = result.as_ref().map(code).map_err(|err| format!("{err:#}"));
    guard.finish(sources.redis.as_mut(), &ended).await;
    let report = result?;
    Ok(Run {
        code: code(&report),
        report,
    })
}

/// The part of an apply that runs under the guard.
async fn guarded(
    sources: &mut Sources,
    guard: &ApplyGuard,
    config: &Config,
    apply_config: &ApplyConfig,
    request: &Request,
    saved: Option<&SavedPlan>,
    database: &str,
) -> Result<Report> {
    let mut report =
        gather_and_plan(sources, config, request, saved, database, Some(guard)).await?;
    let planned = Instant::now();
    let plan = &mut report.plan;
    if guard.interrupted() {
        apply::skip_all(plan, guard);
    } else if let Err(reason) = safety::check(plan, apply_config.limits) {
        crate::log::say!("error: refused: {reason}");
        plan.refused = Some(reason);
    } else {
        let started = Instant::now();
        let options = apply::Options {
            concurrency: config.agents.concurrency,
            events: config.events,
            log: config.log,
            planned,
        };
        apply::apply(plan, sources, guard, options).await;
        report.timings.apply_ms = gather::millis(started.elapsed());
    }
    report.plan.interrupted = guard.interrupted();
    Ok(report)
}

/// Gathers a snapshot and plans it (a saved plan: exactly its actions, re-checked); writes the
/// plan for review when asked. Under an apply's guard the agents' requests stop at an interrupt.
async fn gather_and_plan(
    sources: &mut Sources,
    config: &Config,
    request: &Request,
    saved: Option<&SavedPlan>,
    database: &str,
    guard: Option<&ApplyGuard>,
) -> Result<Report> {
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut look_up: BTreeSet<String> = saved.iter().flat_map(|s| s.ids()).cloned().collect();
    if let Scope::KillIds(ids) = &request.scope {
        look_up.extend(ids.iter().cloned());
    }
    let (snapshot, timings) = gather::snapshot(
        sources,
        &gather::Request {
            agents: &config.agents_in_scope,
            look_up: &look_up,
            ask_agents: !request.no_terminate,
            stop: guard.map_or(&never, ApplyGuard::interrupt_flag),
            progress: config.progress,
            log: config.log,
        },
    )
    .await?;
    for warning in &snapshot.warnings {
        config.log.warn(warning);
    }
    let now = Utc::now();
    let policy = Policy {
        grace: config.grace,
        default_timeout: config.default_timeout,
        agents: config.agents_in_scope.clone(),
        scope: request.scope.clone(),
        recover_abandoned: config.recover_abandoned,
        no_terminate: request.no_terminate,
    };
    let mut plan = plan::plan(&snapshot, &policy, now);
    if let Some(saved) = saved {
        plan = saved.to_plan(&snapshot, &plan);
    }
    if let Some(path) = &request.save {
        SavedPlan::new(&plan, &snapshot, database, now).write(path)?;
        config.log.warn(&format!(
            "saved {} actions to {}; review it, then: trinity-watchdog scan --from {} --apply",
            plan.action_count(),
            path.display(),
            path.display()
        ));
    }
    Ok(Report { plan, now, timings })
}

fn exit_code(plan: &Plan, attention: bool) -> ExitCode {
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
    } else if attention && plan.needs_attention() {
        ExitCode::NeedsAttention
    } else {
        ExitCode::Ok
    }
}
