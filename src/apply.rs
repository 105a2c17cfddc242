//! Applying a plan: per execution, terminate → guarded write → release capacity, with the
//! re-check of orphans just before their writes. Every action ends with an outcome on its item;
//! an interrupt lets the action in progress finish and starts no new one.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;

use crate::agents::Terminated;
use crate::audit::AuditLog;
use crate::gather::Sources;
use crate::plan::{Action, Item, Outcome, Plan, Verdict};
use crate::settings::Settings;
use crate::snapshot::AgentReport;

const NOT_STARTED: &str = "not started: the apply was interrupted";

/// Carries out every action of the plan and records each outcome on its item (and in the audit
/// log). Stops starting new actions once `interrupted` is set.
pub(crate) async fn apply(
    plan: &mut Plan,
    sources: &mut Sources,
    settings: &Settings,
    mut audit: Option<&mut AuditLog>,
    interrupted: &AtomicBool,
) {
    recheck_orphans(plan, sources).await;
    let mut terminations = terminate_all(plan, sources, settings.concurrency, interrupted).await;
    for item in plan.items.iter_mut() {
        if item.action == Action::None || item.outcome.is_some() {
            continue;
        }
        // Let the signal listener run between actions, whatever this loop awaits.
        tokio::task::yield_now().await;
        let termination = terminations.remove(&item.execution_id);
        if interrupted.load(Ordering::SeqCst) && termination.is_none() {
            item.finish(Outcome::Skipped, Some(NOT_STARTED.to_owned()));
        } else {
            act(item, termination, sources).await;
        }
        settings.log.info(&format!(
            "{} {} on {}: {}",
            item.action.as_str(),
            item.execution_id,
            item.agent.as_deref().unwrap_or("-"),
            item.outcome.map_or("-", Outcome::as_str)
        ));
        if let Some(Err(err)) = audit.as_deref_mut().map(|audit| audit.record(item)) {
            settings.log.warn(&format!("{err:#}"));
        }
    }
    plan.interrupted = interrupted.load(Ordering::SeqCst);
}

/// One item's action, after its terminate (if it needs one) has run.
async fn act(
    item: &mut Item,
    termination: Option<Result<Terminated, String>>,
    sources: &mut Sources,
) {
    if item.action.terminates() {
        match termination {
            Some(Ok(Terminated::Yes)) => {}
            Some(Ok(Terminated::NotRunning)) => {
                return item.finish(
                    Outcome::Skipped,
                    Some(
                        "agent no longer runs it (terminate answered 404); row left as it is"
                            .to_owned(),
                    ),
                );
            }
            Some(Err(reason)) => return item.finish(Outcome::Failed, Some(reason)),
            None => {
                return item.finish(
                    Outcome::Failed,
                    Some("no agent to terminate it on".to_owned()),
                );
            }
        }
    }
    if item.action.fails() {
        let message = item.fail_message.clone().unwrap_or_default();
        let duration_ms = match item.verdict {
            Verdict::Orphaned => None,
            _ => item.started.and_then(|started| {
                let ms = (chrono::Utc::now() - started).num_milliseconds();
                (0..=i64::from(i32::MAX)).contains(&ms).then_some(ms)
            }),
        };
        match sources
            .store
            .fail_running(&item.execution_id, &message, duration_ms)
        {
            Err(err) => return item.finish(Outcome::Failed, Some(format!("{err:#}"))),
            Ok(false) => {
                return item.finish(
                    Outcome::RaceLost,
                    Some("row was no longer running; left as it is".to_owned()),
                );
            }
            Ok(true) => {}
        }
    }
    if item.action.fails() || item.action == Action::ReleaseSlot {
        release(item, sources).await;
    } else {
        item.finish(Outcome::Applied, None);
    }
}

/// Releases the item's capacity (after its guarded write won, or for a leaked slot).
async fn release(item: &mut Item, sources: &mut Sources) {
    let (Some(redis), Some(agent)) = (&mut sources.redis, &item.agent) else {
        item.finish(Outcome::Applied, None);
        return;
    };
    match redis.release(agent, &item.execution_id).await {
        Ok(released) if item.action == Action::ReleaseSlot && !released.slot => {
            item.finish(
                Outcome::RaceLost,
                Some("slot was already released".to_owned()),
            );
        }
        Ok(_) => item.finish(Outcome::Applied, None),
        Err(err) if item.action.fails() => item.finish(
            Outcome::Failed,
            Some(format!(
                "row marked failed, but its capacity was not released: {err:#}"
            )),
        ),
        Err(err) => item.finish(Outcome::Failed, Some(format!("{err:#}"))),
    }
}

/// Asks each agent with orphans once more; an orphan is skipped when its agent now knows it or
/// no longer answers: the world moved on since the plan was built.
async fn recheck_orphans(plan: &mut Plan, sources: &Sources) {
    let agents: BTreeSet<String> = plan
        .items
        .iter()
        .filter(|item| item.verdict == Verdict::Orphaned && item.action == Action::Fail)
        .filter_map(|item| item.agent.clone())
        .collect();
    if agents.is_empty() {
        return;
    }
    let agents: Vec<String> = agents.into_iter().collect();
    let reports = sources
        .agents
        .running_all(&agents, &indicatif::ProgressBar::hidden())
        .await;
    let reports: HashMap<&str, &AgentReport> = reports
        .iter()
        .map(|report| (report.name.as_str(), report))
        .collect();
    for item in plan
        .items
        .iter_mut()
        .filter(|item| item.verdict == Verdict::Orphaned)
    {
        let Some(report) = item.agent.as_deref().and_then(|agent| reports.get(agent)) else {
            continue;
        };
        match &report.answer {
            Err(reason) => item.finish(
                Outcome::Skipped,
                Some(format!(
                    "agent did not answer the re-check before apply: {reason}"
                )),
            ),
            Ok(answer) if answer.knows(&item.execution_id) => {
                item.finish(
                    Outcome::Skipped,
                    Some("agent reports it again at the re-check before apply".to_owned()),
                );
            }
            Ok(_) => {}
        }
    }
}

/// Terminates every item that needs it, `concurrency` at a time, keyed by execution id. None
/// starts once `interrupted` is set; those already running finish.
async fn terminate_all(
    plan: &Plan,
    sources: &Sources,
    concurrency: usize,
    interrupted: &AtomicBool,
) -> HashMap<String, Result<Terminated, String>> {
    let jobs: Vec<(&str, &str)> = plan
        .items
        .iter()
        .filter(|item| item.action.terminates() && item.outcome.is_none())
        .filter_map(|item| Some((item.agent.as_deref()?, item.execution_id.as_str())))
        .collect();
    futures_util::stream::iter(jobs)
        .map(|(agent, id)| async move {
            if interrupted.load(Ordering::SeqCst) {
                return None;
            }
            Some((id.to_owned(), sources.agents.terminate(agent, id).await))
        })
        .buffer_unordered(concurrency)
        .filter_map(std::future::ready)
        .collect()
        .await
}
