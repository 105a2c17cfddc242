//! Applying a plan: per execution, terminate → guarded write → release capacity, with the
//! re-check of orphans just before their writes. Every action ends with an outcome on its item.

use std::collections::{BTreeSet, HashMap};

use futures_util::StreamExt;

use crate::agents::Terminated;
use crate::gather::Sources;
use crate::plan::{Action, Item, Outcome, Plan, Verdict};
use crate::settings::Settings;
use crate::snapshot::AgentReport;

/// Carries out every action of the plan and records each outcome on its item.
pub(crate) async fn apply(plan: &mut Plan, sources: &mut Sources, settings: &Settings) {
    recheck_orphans(plan, sources).await;
    let terminations = terminate_all(plan, sources, settings.concurrency).await;
    let now = chrono::Utc::now();
    for (index, item) in plan.items.iter_mut().enumerate() {
        if item.action == Action::None || item.outcome.is_some() {
            continue;
        }
        if item.action.terminates() {
            match terminations.get(&index) {
                Some(Ok(Terminated::Yes)) => {}
                Some(Ok(Terminated::NotRunning)) => {
                    item.finish(
                        Outcome::Skipped,
                        Some(
                            "agent no longer runs it (terminate answered 404); row left as it is"
                                .to_owned(),
                        ),
                    );
                    continue;
                }
                Some(Err(reason)) => {
                    item.finish(Outcome::Failed, Some(reason.clone()));
                    continue;
                }
                None => {
                    item.finish(
                        Outcome::Failed,
                        Some("no agent to terminate it on".to_owned()),
                    );
                    continue;
                }
            }
        }
        if item.action.fails() {
            let message = item.fail_message.clone().unwrap_or_default();
            let duration_ms = match item.verdict {
                Verdict::Orphaned => None,
                _ => item.started.and_then(|started| {
                    let ms = (now - started).num_milliseconds();
                    (0..=i64::from(i32::MAX)).contains(&ms).then_some(ms)
                }),
            };
            match sources
                .store
                .fail_running(&item.execution_id, &message, duration_ms)
            {
                Err(err) => {
                    item.finish(Outcome::Failed, Some(format!("{err:#}")));
                    continue;
                }
                Ok(false) => {
                    item.finish(
                        Outcome::RaceLost,
                        Some("row was no longer running; left as it is".to_owned()),
                    );
                    continue;
                }
                Ok(true) => {}
            }
        }
        if item.action.fails() || item.action == Action::ReleaseSlot {
            release(item, sources).await;
        } else {
            item.finish(Outcome::Applied, None);
        }
        settings.log.info(&format!(
            "{} {} on {}: {}",
            item.action.as_str(),
            item.execution_id,
            item.agent.as_deref().unwrap_or("-"),
            item.outcome.map_or("-", Outcome::as_str)
        ));
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

/// Terminates every item that needs it, `concurrency` at a time; keyed by item index.
async fn terminate_all(
    plan: &Plan,
    sources: &Sources,
    concurrency: usize,
) -> HashMap<usize, Result<Terminated, String>> {
    let jobs: Vec<(usize, &str, &str)> = plan
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.action.terminates() && item.outcome.is_none())
        .filter_map(|(index, item)| {
            Some((index, item.agent.as_deref()?, item.execution_id.as_str()))
        })
        .collect();
    futures_util::stream::iter(jobs)
        .map(|(index, agent, id)| async move { (index, sources.agents.terminate(agent, id).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await
}
