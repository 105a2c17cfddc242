//! Applying a plan. Per execution the order is terminate → guarded write → release capacity, and
//! capacity is released only after the write won; across executions the work is batched: every
//! terminate runs concurrently, the guarded writes follow in plan order, committed `WRITE_BATCH`
//! at a time with a savepoint per row (a row whose update fails rolls back alone; a failed commit
//! fails its whole batch), and the releases go to Redis in one pipeline. Orphans are re-checked
//! with their agents just before the writes. Every action ends with an outcome on its item, and
//! in the audit log at once. Results belong to items (by their index in the plan), never to ids:
//! one id can be two items (a zombie whose slot leaked, a process on two agents).
//!
//! The interrupt flag is checked before every step. Once it is set nothing new starts; an action
//! whose first effect happened (its process was terminated, its row written) is carried to its
//! end; everything else is `skipped` ("not started").

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::agents::Terminated;
use crate::capacity::{EventsMode, Release};
use crate::gather::{Sources, millis};
use crate::guard::ApplyGuard;
use crate::log::Log;
use crate::plan::{Action, Item, Outcome, Plan, Verdict};
use crate::redact::scrub;
use crate::snapshot::AgentReport;
use crate::store::FailRow;

const NOT_STARTED: &str = "not started: the apply was interrupted";
/// Guarded writes committed together (each in its own savepoint): short enough to hold the write
/// lock only briefly, long enough to spare a commit per row.
const WRITE_BATCH: usize = 200;
/// An agent unregisters a finished process a moment before the backend writes `success`; an older
/// image (no `recently_completed_ids`) does not report that moment. Its orphans are re-checked
/// only once they have been unknown this long, so that a finished execution's own write wins.
const SETTLE: Duration = Duration::from_secs(5);

/// How an apply goes about its work.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Requests to agents in flight at once.
    pub concurrency: usize,
    /// `--events`: whether won writes are announced on Trinity's event stream.
    pub events: EventsMode,
    pub log: Log,
    /// When the plan was made: its agents' answers are at least this old.
    pub planned: Instant,
}

/// Carries out every action of the plan; each outcome lands on its item and in the audit log.
pub(crate) async fn apply(
    plan: &mut Plan,
    sources: &mut Sources,
    guard: &ApplyGuard,
    options: Options,
) {
    let Options {
        concurrency,
        events,
        log,
        planned,
    } = options;
    // Actions a saved plan already skipped (their facts changed) are in the trail too.
    for item in plan.items.iter().filter(|item| item.outcome.is_some()) {
        guard.record(item);
    }
    if !guard.interrupted() {
        let started = Instant::now();
        recheck_orphans(plan, sources, guard, planned).await;
        log.info(&format!(
            "apply: re-checked agents of orphans in {} ms",
            millis(started.elapsed())
        ));
    }

    let started = Instant::now();
    let mut terminations = terminate_all(plan, sources, concurrency, guard).await;
    log.info(&format!(
        "apply: terminates done in {} ms ({} processes terminated whose rows are to be failed)",
        millis(started.elapsed()),
        terminations.len()
    ));

    let mut to_write = Vec::new();
    let mut to_release = Vec::new();
    for (index, item) in plan.items.iter_mut().enumerate() {
        if item.action == Action::None || item.outcome.is_some() {
            continue;
        }
        if item.action.terminates() {
            match terminations.remove(&index) {
                None if guard.interrupted() => {
                    guard.settle(item, Outcome::Skipped, Some(NOT_STARTED.to_owned()));
                    continue;
                }
                termination => {
                    if !terminated(item, termination, guard) {
                        continue;
                    }
                }
            }
        } else if guard.interrupted() {
            guard.settle(item, Outcome::Skipped, Some(NOT_STARTED.to_owned()));
            continue;
        }
        if item.action.fails() {
            to_write.push(index);
        } else if item.action == Action::ReleaseSlot {
            to_release.push(index);
        }
    }

    if !to_write.is_empty() && !guard.interrupted() {
        let fetched = Instant::now();
        let originals = last_errors(plan, &to_write, sources, concurrency, guard).await;
        log.info(&format!(
            "apply: {} original errors fetched in {} ms",
            originals.len(),
            millis(fetched.elapsed())
        ));
        for (index, original) in originals {
            let item = &mut plan.items[index];
            if let Some(reason) = &item.fail_message {
                item.fail_message = Some(with_original(&original, reason));
            }
        }
    }

    let started = Instant::now();
    let mut won = Vec::new();
    for chunk in to_write.chunks(WRITE_BATCH) {
        // After an interrupt only the rows whose process was already terminated are written.
        let mut batch = Vec::with_capacity(chunk.len());
        for &index in chunk {
            let item = &mut plan.items[index];
            if guard.interrupted() && !item.action.terminates() {
                guard.settle(item, Outcome::Skipped, Some(NOT_STARTED.to_owned()));
            } else {
                batch.push(index);
            }
        }
        let before = guard.interrupted();
        let (batch_won, committed) = write_batch(plan, &batch, sources, guard).await;
        if !before && !batch.is_empty() && guard.interrupted() {
            crate::log::say!(
                "interrupted during a write batch of {} rows: it {}",
                batch.len(),
                if committed {
                    "committed whole"
                } else {
                    "was rolled back whole (see the items' errors)"
                }
            );
        }
        won.extend(batch_won);
    }
    log.info(&format!(
        "apply: {} guarded writes in {} ms",
        to_write.len(),
        millis(started.elapsed())
    ));

    // A won write's release finishes its action; a slot-only release not begun is not started.
    if guard.interrupted() {
        for &index in &to_release {
            guard.settle(
                &mut plan.items[index],
                Outcome::Skipped,
                Some(NOT_STARTED.to_owned()),
            );
        }
        to_release.clear();
    }
    to_release.extend(won);
    to_release.sort_unstable();
    let started = Instant::now();
    release_all(plan, &to_release, sources, guard, events, log).await;
    log.info(&format!(
        "apply: {} releases in {} ms",
        to_release.len(),
        millis(started.elapsed())
    ));
}

/// Marks every action of the plan `skipped` ("not started"): an interrupt came before the apply.
pub(crate) fn skip_all(plan: &mut Plan, guard: &ApplyGuard) {
    for item in plan
        .items
        .iter_mut()
        .filter(|item| item.action != Action::None && item.outcome.is_none())
    {
        guard.settle(item, Outcome::Skipped, Some(NOT_STARTED.to_owned()));
    }
}

/// The longest `error` the tool writes, in characters.
const MAX_ERROR_CHARS: usize = 2000;

/// `"{original}. Cleanup: {reason}"`, at most `MAX_ERROR_CHARS` characters. The original is the
/// agent's text: it is scrubbed of credentials first (as Trinity's backend scrubs what it
/// persists), then shortened (marked with `…`) so that the cleanup reason, which alerts match
/// on, always survives.
pub(crate) fn with_original(original: &str, reason: &str) -> String {
    let original = scrub(original);
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

/// Fetches the agents' own last error for every item about to be failed whose agent answers (an
/// orphan's, or a terminated process's; never an abandoned row's or a `--no-terminate` close's),
/// concurrently; none starts once the apply is interrupted. Keyed by item index.
async fn last_errors(
    plan: &Plan,
    indices: &[usize],
    sources: &Sources,
    concurrency: usize,
    guard: &ApplyGuard,
) -> HashMap<usize, String> {
    let jobs: Vec<(usize, &str, &str)> = indices
        .iter()
        .filter_map(|&index| {
            let item = &plan.items[index];
            (item.verdict == Verdict::Orphaned || item.action.terminates()).then_some((
                index,
                item.agent.as_deref()?,
                item.execution_id.as_str(),
            ))
        })
        .collect();
    futures_util::stream::iter(jobs)
        .map(|(index, agent, id)| async move {
            if guard.interrupted() {
                return None;
            }
            sources
                .agents
                .last_error(agent, id)
                .await
                .map(|error| (index, error))
        })
        .buffer_unordered(concurrency)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// Settles an item's terminate: `true` when it succeeded and the action goes on; otherwise the
/// item has its outcome.
fn terminated(
    item: &mut Item,
    termination: Option<Result<Terminated, String>>,
    guard: &ApplyGuard,
) -> bool {
    let (outcome, error) = match termination {
        Some(Ok(Terminated::Yes)) => return true,
        Some(Ok(Terminated::NotRunning)) => (
            Outcome::Skipped,
            "agent no longer runs it (terminate answered 404); row left as it is".to_owned(),
        ),
        Some(Err(reason)) => (Outcome::Failed, reason),
        None => (Outcome::Failed, "no agent to terminate it on".to_owned()),
    };
    guard.settle(item, outcome, Some(error));
    false
}

/// The guarded writes of these items, committed together. Returns the items whose write won
/// (their capacity is to be released next; the others have their outcome) and whether the batch
/// committed.
async fn write_batch(
    plan: &mut Plan,
    indices: &[usize],
    sources: &mut Sources,
    guard: &ApplyGuard,
) -> (Vec<usize>, bool) {
    if indices.is_empty() {
        return (Vec::new(), true);
    }
    let now = chrono::Utc::now();
    let completed_at = crate::timestamp::format(now);
    let rows: Vec<FailRow<'_>> = indices
        .iter()
        .map(|&index| {
            let item = &plan.items[index];
            FailRow {
                id: &item.execution_id,
                error: item.fail_message.as_deref().unwrap_or_default(),
                // An orphan's (or abandoned row's) real end is unknown; otherwise now −
                // started_at, if it fits.
                duration_ms: match item.verdict {
                    Verdict::Orphaned | Verdict::Abandoned => None,
                    _ => item.started.and_then(|started| {
                        let ms = (now - started).num_milliseconds();
                        (0..=i64::from(i32::MAX)).contains(&ms).then_some(ms)
                    }),
                },
            }
        })
        .collect();
    let (results, committed) = sources.store.fail_running(&rows, &completed_at).await;
    let mut won = Vec::new();
    for (&index, result) in indices.iter().zip(results) {
        let item = &mut plan.items[index];
        match result {
            Ok(Some(closed)) => {
                item.activities_closed = Some(closed);
                item.completed_at = Some(completed_at.clone());
                won.push(index);
            }
            Ok(None) => guard.settle(
                item,
                Outcome::RaceLost,
                Some("row was no longer running; left as it is".to_owned()),
            ),
            Err(err) => guard.settle(item, Outcome::Failed, Some(err)),
        }
    }
    (won, committed)
}

/// Releases the capacity of the given items in one Redis pipeline, publishing the recovery event
/// of each won write in the same round trip (never before the write: the writes are done), and
/// settles their outcomes. A failed publish is a warning, never a failed action.
async fn release_all(
    plan: &mut Plan,
    indices: &[usize],
    sources: &mut Sources,
    guard: &ApplyGuard,
    events: EventsMode,
    log: Log,
) {
    let Some(redis) = &mut sources.redis else {
        plan.events = Some("no_redis".to_owned());
        for &index in indices {
            guard.settle(&mut plan.items[index], Outcome::Applied, None);
        }
        return;
    };
    let payloads: Vec<Option<String>> = indices
        .iter()
        .map(|&index| {
            let item = &plan.items[index];
            let action = item.verdict.recovery_event()?;
            (events != EventsMode::Off && item.completed_at.is_some()).then(|| {
                serde_json::json!({
                    "type": "watchdog_recovery",
                    "agent_name": item.agent,
                    "execution_id": item.execution_id,
                    "action": action,
                    "reason": item.fail_message,
                    "timestamp": item.completed_at,
                })
                .to_string()
            })
        })
        .collect();
    plan.events = Some(
        if events == EventsMode::Off {
            "off"
        } else if payloads.iter().all(Option::is_none) {
            "none"
        } else {
            "published"
        }
        .to_owned(),
    );
    let targets: Vec<Release<'_>> = indices
        .iter()
        .zip(&payloads)
        .map(|(&index, payload)| {
            let item = &plan.items[index];
            Release {
                agent: item.agent.as_deref().unwrap_or_default(),
                id: item.execution_id.as_str(),
                event: payload.as_deref(),
            }
        })
        .collect();
    let results = redis.release_many(&targets, events).await;
    let mut failed_events = Vec::new();
    for (&index, released) in indices.iter().zip(results) {
        let item = &mut plan.items[index];
        match &released.event {
            Some(Ok(true)) => item.event_published = Some(true),
            // --events auto, and the stream does not exist: a deployment without the event bus.
            Some(Ok(false)) => plan.events = Some("no_stream".to_owned()),
            Some(Err(err)) => {
                item.event_published = Some(false);
                failed_events.push(format!("{}: {err}", item.execution_id));
            }
            None => {}
        }
        let (outcome, error) = match released.slot {
            Ok(false) if item.action == Action::ReleaseSlot => (
                Outcome::RaceLost,
                Some("slot was already released".to_owned()),
            ),
            Ok(_) => (Outcome::Applied, None),
            Err(err) if item.action.fails() => (
                Outcome::Failed,
                Some(format!(
                    "row marked failed, but its capacity was not released: {err}"
                )),
            ),
            Err(err) => (Outcome::Failed, Some(err)),
        };
        guard.settle(item, outcome, error);
    }
    if let Some(first) = failed_events.first() {
        log.warn(&format!(
            "{} recovery events could not be published to {} (the rows and slots are right; dashboards update on reload): {first}",
            failed_events.len(),
            crate::capacity::EVENTS_KEY
        ));
    }
}

/// Asks each agent with orphans once more; an orphan is skipped when its agent now knows it or
/// no longer answers: the world moved on since the plan was built. When an agent of an older image
/// (no `recently_completed_ids`) has orphans, the re-check waits until `SETTLE` after the plan.
async fn recheck_orphans(plan: &mut Plan, sources: &Sources, guard: &ApplyGuard, planned: Instant) {
    let is_orphan = |item: &Item| {
        item.verdict == Verdict::Orphaned && item.action == Action::Fail && item.outcome.is_none()
    };
    let agents: BTreeSet<String> = plan
        .items
        .iter()
        .filter(|item| is_orphan(item))
        .filter_map(|item| item.agent.clone())
        .collect();
    if agents.is_empty() {
        return;
    }
    let old_image = plan
        .agents
        .iter()
        .any(|agent| agent.recently_completed.is_none() && agents.contains(&agent.name));
    if old_image {
        // Interruptible: a signal is heard within a tick.
        while !guard.interrupted() && planned.elapsed() < SETTLE {
            let left = SETTLE.saturating_sub(planned.elapsed());
            tokio::time::sleep(left.min(Duration::from_millis(50))).await;
        }
    }
    let agents: Vec<String> = agents.into_iter().collect();
    let reports = sources
        .agents
        .running_all(
            &agents,
            &indicatif::ProgressBar::hidden(),
            guard.interrupt_flag(),
        )
        .await;
    let reports: HashMap<&str, &AgentReport> = reports
        .iter()
        .map(|report| (report.name.as_str(), report))
        .collect();
    for item in plan.items.iter_mut().filter(|item| is_orphan(item)) {
        let Some(report) = item.agent.as_deref().and_then(|agent| reports.get(agent)) else {
            continue;
        };
        match &report.answer {
            Err(reason) => guard.settle(
                item,
                Outcome::Skipped,
                Some(format!(
                    "agent did not answer the re-check before apply: {reason}"
                )),
            ),
            Ok(answer) if answer.knows(&item.execution_id) => guard.settle(
                item,
                Outcome::Skipped,
                Some("agent reports it again at the re-check before apply".to_owned()),
            ),
            Ok(_) => {}
        }
    }
}

/// Terminates every item that needs it, `concurrency` at a time. An action that is only a
/// terminate ends with it and is settled at once (its audit line written); the others' results
/// come back keyed by item index. None starts once the apply is interrupted; those already
/// running finish.
async fn terminate_all(
    plan: &mut Plan,
    sources: &Sources,
    concurrency: usize,
    guard: &ApplyGuard,
) -> HashMap<usize, Result<Terminated, String>> {
    let jobs: Vec<(usize, String, String)> = plan
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.action.terminates() && item.outcome.is_none())
        .filter_map(|(index, item)| Some((index, item.agent.clone()?, item.execution_id.clone())))
        .collect();
    let mut results = futures_util::stream::iter(jobs)
        .map(|(index, agent, id)| async move {
            if guard.interrupted() {
                return None;
            }
            Some((index, sources.agents.terminate(&agent, &id).await))
        })
        .buffer_unordered(concurrency)
        .filter_map(std::future::ready);
    let mut pending = HashMap::new();
    while let Some((index, result)) = results.next().await {
        let item = &mut plan.items[index];
        if item.action.fails() {
            pending.insert(index, result);
        } else if terminated(item, Some(result), guard) {
            guard.settle(item, Outcome::Applied, None);
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_error_is_scrubbed_before_it_is_shortened() {
        let key = format!("sk-ant-api03-{}", "k".repeat(40));
        let original = format!("[AuthError] upstream said {key}; ANTHROPIC_API_KEY={key}");
        let message = with_original(&original, "Recovered");
        assert_eq!(
            message,
            "[AuthError] upstream said ***REDACTED***; ANTHROPIC_API_KEY=***REDACTED***. Cleanup: Recovered"
        );
        // A secret that straddles the cut is scrubbed before the cut, never half kept.
        let long = format!("{}{key}", "x".repeat(1950));
        let message = with_original(&long, "Recovered");
        assert!(!message.contains("sk-ant"), "{message}");
    }

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
