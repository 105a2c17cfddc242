//! Applying a plan. Per execution the order is terminate → guarded write → release capacity, and
//! capacity is released only after the write won; across executions the work is batched: every
//! terminate runs concurrently, the guarded writes follow in plan order (one transaction per row),
//! and the releases go to Redis in one pipeline. Orphans are re-checked with their agents just
//! before the writes. Every action ends with an outcome on its item; an interrupt lets the work in
//! progress finish and starts no new write or terminate.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::StreamExt;

use crate::agents::Terminated;
use crate::audit::AuditLog;
use crate::gather::{Sources, millis};
use crate::plan::{Action, Item, Outcome, Plan, Verdict};
use crate::settings::Settings;
use crate::snapshot::AgentReport;
use crate::store::FailRow;

const NOT_STARTED: &str = "not started: the apply was interrupted";
/// Guarded writes committed together (each in its own savepoint): short enough to hold the write
/// lock only briefly, long enough to spare a commit per row.
const WRITE_BATCH: usize = 200;

/// Carries out every action of the plan, records each outcome on its item and in the audit log.
pub(crate) async fn apply(
    plan: &mut Plan,
    sources: &mut Sources,
    settings: &Settings,
    audit: Option<&mut AuditLog>,
    interrupted: &AtomicBool,
) {
    let log = settings.log;
    let started = Instant::now();
    recheck_orphans(plan, sources).await;
    log.info(&format!(
        "apply: re-checked agents of orphans in {} ms",
        millis(started.elapsed())
    ));

    let started = Instant::now();
    let mut terminations = terminate_all(plan, sources, settings.concurrency, interrupted).await;
    log.info(&format!(
        "apply: {} terminate calls in {} ms",
        terminations.len(),
        millis(started.elapsed())
    ));

    let mut to_write = Vec::new();
    let mut to_release = Vec::new();
    for (index, item) in plan.items.iter_mut().enumerate() {
        if item.action == Action::None || item.outcome.is_some() {
            continue;
        }
        let termination = terminations.remove(&item.execution_id);
        if interrupted.load(Ordering::SeqCst) && termination.is_none() {
            item.finish(Outcome::Skipped, Some(NOT_STARTED.to_owned()));
        } else if !terminated(item, termination) {
            // The item has its outcome.
        } else if item.action.fails() {
            to_write.push(index);
        } else if item.action == Action::ReleaseSlot {
            to_release.push(index);
        } else {
            item.finish(Outcome::Applied, None);
        }
    }
    let fetched = Instant::now();
    let originals = last_errors(plan, &to_write, sources, settings.concurrency).await;
    log.info(&format!(
        "apply: {} original errors fetched in {} ms",
        originals.len(),
        millis(fetched.elapsed())
    ));
    let started = Instant::now();
    for &index in &to_write {
        let item = &mut plan.items[index];
        if let (Some(original), Some(reason)) =
            (originals.get(&item.execution_id), &item.fail_message)
        {
            item.fail_message = Some(with_original(original, reason));
        }
    }
    for chunk in to_write.chunks(WRITE_BATCH) {
        to_release.extend(write_all(plan, chunk, sources).await);
        // Let the signal listener run between batches.
        tokio::task::yield_now().await;
    }
    to_release.sort_unstable();
    log.info(&format!(
        "apply: {} guarded writes in {} ms",
        to_write.len(),
        millis(started.elapsed())
    ));

    let started = Instant::now();
    release_all(plan, &to_release, sources).await;
    log.info(&format!(
        "apply: {} releases in {} ms",
        to_release.len(),
        millis(started.elapsed())
    ));

    if let Some(audit) = audit {
        for item in plan.items.iter().filter(|item| item.outcome.is_some()) {
            if let Err(err) = audit.record(item) {
                log.warn(&format!("{err:#}"));
            }
        }
    }
    // Interrupted means work was left undone, not merely that a signal came after the last action.
    plan.interrupted = plan
        .items
        .iter()
        .any(|item| item.error.as_deref() == Some(NOT_STARTED));
}

/// The longest `error` the tool writes, in characters.
const MAX_ERROR_CHARS: usize = 2000;

/// `"{original}. Cleanup: {reason}"`, at most `MAX_ERROR_CHARS` characters: the original is
/// shortened (marked with `…`) so that the cleanup reason, which alerts match on, always survives.
pub(crate) fn with_original(original: &str, reason: &str) -> String {
    let original = original.trim().trim_end_matches('.');
    let suffix = format!(". Cleanup: {reason}");
    let room = MAX_ERROR_CHARS.saturating_sub(suffix.chars().count());
    let original: String = if original.chars().count() > room {
        original
            .chars()
            .take(room.saturating_sub(1))
            .chain(['…'])
            .collect()
    } else {
        original.to_owned()
    };
    let mut message = original + &suffix;
    if message.chars().count() > MAX_ERROR_CHARS {
        message = message.chars().take(MAX_ERROR_CHARS).collect();
    }
    message
}

/// Fetches the agents' own last error for every execution about to be failed, concurrently.
async fn last_errors(
    plan: &Plan,
    indices: &[usize],
    sources: &Sources,
    concurrency: usize,
) -> HashMap<String, String> {
    futures_util::stream::iter(indices.iter().map(|&index| &plan.items[index]))
        .filter_map(|item| {
            std::future::ready(
                item.agent
                    .as_deref()
                    .map(|agent| (agent, item.execution_id.as_str())),
            )
        })
        .map(|(agent, id)| async move {
            sources
                .agents
                .last_error(agent, id)
                .await
                .map(|error| (id.to_owned(), error))
        })
        .buffer_unordered(concurrency)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// Settles an item's terminate, if it needs one: `true` when the action goes on (no terminate
/// needed, or it succeeded); otherwise the item has its outcome.
fn terminated(item: &mut Item, termination: Option<Result<Terminated, String>>) -> bool {
    if !item.action.terminates() {
        return true;
    }
    let (outcome, error) = match termination {
        Some(Ok(Terminated::Yes)) => return true,
        Some(Ok(Terminated::NotRunning)) => (
            Outcome::Skipped,
            "agent no longer runs it (terminate answered 404); row left as it is".to_owned(),
        ),
        Some(Err(reason)) => (Outcome::Failed, reason),
        None => (Outcome::Failed, "no agent to terminate it on".to_owned()),
    };
    item.finish(outcome, Some(error));
    false
}

/// The guarded writes of these items, committed together; returns the items whose write won and
/// whose capacity is now to be released. The others have their outcome.
async fn write_all(plan: &mut Plan, indices: &[usize], sources: &mut Sources) -> Vec<usize> {
    let now = chrono::Utc::now();
    let rows: Vec<FailRow<'_>> = indices
        .iter()
        .map(|&index| {
            let item = &plan.items[index];
            FailRow {
                id: &item.execution_id,
                error: item.fail_message.as_deref().unwrap_or_default(),
                // An orphan's real end is unknown; otherwise now − started_at, if it fits.
                duration_ms: match item.verdict {
                    Verdict::Orphaned => None,
                    _ => item.started.and_then(|started| {
                        let ms = (now - started).num_milliseconds();
                        (0..=i64::from(i32::MAX)).contains(&ms).then_some(ms)
                    }),
                },
            }
        })
        .collect();
    let results = sources.store.fail_running(&rows).await;
    let mut won = Vec::new();
    for (&index, result) in indices.iter().zip(results) {
        let item = &mut plan.items[index];
        match result {
            Ok(true) => won.push(index),
            Ok(false) => item.finish(
                Outcome::RaceLost,
                Some("row was no longer running; left as it is".to_owned()),
            ),
            Err(err) => item.finish(Outcome::Failed, Some(err)),
        }
    }
    won
}

/// Releases the capacity of the given items in one Redis pipeline and settles their outcomes.
async fn release_all(plan: &mut Plan, indices: &[usize], sources: &mut Sources) {
    let Some(redis) = &mut sources.redis else {
        for &index in indices {
            plan.items[index].finish(Outcome::Applied, None);
        }
        return;
    };
    let targets: Vec<(&str, &str)> = indices
        .iter()
        .map(|&index| {
            let item = &plan.items[index];
            (
                item.agent.as_deref().unwrap_or_default(),
                item.execution_id.as_str(),
            )
        })
        .collect();
    let results = redis.release_many(&targets).await;
    for (&index, result) in indices.iter().zip(results) {
        let item = &mut plan.items[index];
        match result {
            Ok(false) if item.action == Action::ReleaseSlot => {
                item.finish(
                    Outcome::RaceLost,
                    Some("slot was already released".to_owned()),
                );
            }
            Ok(_) => item.finish(Outcome::Applied, None),
            Err(err) if item.action.fails() => item.finish(
                Outcome::Failed,
                Some(format!(
                    "row marked failed, but its capacity was not released: {err}"
                )),
            ),
            Err(err) => item.finish(Outcome::Failed, Some(err)),
        }
    }
}

/// Asks each agent with orphans once more; an orphan is skipped when its agent now knows it or
/// no longer answers: the world moved on since the plan was built.
async fn recheck_orphans(plan: &mut Plan, sources: &Sources) {
    let agents: BTreeSet<String> = plan
        .items
        .iter()
        .filter(|item| {
            item.verdict == Verdict::Orphaned
                && item.action == Action::Fail
                && item.outcome.is_none()
        })
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
        .filter(|item| item.verdict == Verdict::Orphaned && item.outcome.is_none())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_error_comes_first_and_the_reason_always_survives() {
        assert_eq!(
            with_original("boom: out of memory.", "Recovered"),
            "boom: out of memory. Cleanup: Recovered"
        );
        let reason = "Execution not tracked by agent 'a' (not running) — recovered by watchdog";
        let long = with_original(&"é".repeat(5000), reason);
        assert_eq!(long.chars().count(), MAX_ERROR_CHARS);
        assert!(long.ends_with(&format!("…. Cleanup: {reason}")), "{long}");
        let huge_reason = "r".repeat(3000);
        assert_eq!(
            with_original("x", &huge_reason).chars().count(),
            MAX_ERROR_CHARS
        );
    }
}
