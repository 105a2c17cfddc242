//! The planner: a pure function from a snapshot, a policy and `now` to a plan. It decides every
//! verdict of SPEC §3 and never performs I/O, so every rule is unit-tested here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::broken::{Rule, broken};
use crate::shard::AgentScope;
use crate::snapshot::{AgentAnswer, AgentReport, Row, Slot, Snapshot, Status};
use crate::timestamp::human_duration;

/// A slot younger than this is never called leaked: its row may not be written yet.
const SLOT_MIN_AGE_SECONDS: f64 = 15.0;
/// Trinity lets slot metadata expire this long after the execution's timeout.
const SLOT_TTL_MARGIN_SECONDS: f64 = 300.0;

/// The reason written for executions terminated by `kill ID`.
pub(crate) const OPERATOR_KILL_MESSAGE: &str =
    "Execution terminated by operator (trinity-watchdog kill)";
/// The reason written for executions closed by `kill ID --no-terminate`.
pub(crate) const OPERATOR_CLOSE_MESSAGE: &str =
    "Execution closed by operator (trinity-watchdog kill --no-terminate)";
/// An abandoned row is past its timeout by this much more before it is called abandoned.
const ABANDONED_MARGIN_SECONDS: u64 = 300;
/// A `drain-` sentinel older than this is stuck.
const STUCK_DRAIN_SECONDS: f64 = 3600.0;

#[derive(Clone, Debug)]
pub struct Policy {
    pub grace: Duration,
    pub default_timeout: Duration,
    /// `--agent` and `--shard`: the agents whose rows, slots, processes and findings are planned.
    pub agents: AgentScope,
    pub scope: Scope,
    /// `--recover-abandoned`: abandoned rows get `fail` instead of no action.
    pub recover_abandoned: bool,
    /// `kill ID… --no-terminate`: close the named running rows without contacting their agent.
    pub no_terminate: bool,
}

/// Which part of the plan a command looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every verdict.
    Scan,
    /// `orphaned` and `leaked_slot` only.
    Recover,
    /// `timed_out` and `zombie` only.
    Kill,
    /// Exactly these executions, as `requested`.
    KillIds(Vec<String>),
}

impl Scope {
    /// The subcommand that plans this scope.
    pub fn command_name(&self) -> &'static str {
        match self {
            Scope::Scan => "scan",
            Scope::Recover => "recover",
            Scope::Kill | Scope::KillIds(_) => "kill",
        }
    }
}

/// What is true of one execution or slot. `VARIANTS` lists every verdict (the compiler keeps it
/// whole), for the metrics and the README table.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Verdict {
    Healthy,
    Grace,
    InFlight,
    Unreachable,
    Orphaned,
    TimedOut,
    LeakedSlot,
    Zombie,
    Untracked,
    Requested,
    /// Row running, its agent deleted (no `agent_ownership` row) and unreachable, past its
    /// timeout + 300 s: nothing will ever finish it.
    Abandoned,
    /// A lease that expired more than the grace ago: the lease reaper is not doing its job.
    LeaseExpired,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The `action` of the recovery event a won write of this verdict publishes (the seed
    /// watchdog's names, and two for what it did not do).
    pub fn recovery_event(self) -> Option<&'static str> {
        match self {
            Verdict::Orphaned => Some("orphan_recovered"),
            Verdict::TimedOut => Some("auto_terminated"),
            Verdict::Requested => Some("operator_killed"),
            Verdict::Abandoned => Some("abandoned_recovered"),
            _ => None,
        }
    }

    /// The item needs a person, whatever the plan does about it (exit 4 with `--exit-code`).
    pub fn needs_a_person(self) -> bool {
        matches!(self, Verdict::Abandoned | Verdict::LeaseExpired)
    }
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    None,
    Fail,
    TerminateAndFail,
    Terminate,
    ReleaseSlot,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The action starts by terminating the process on its agent.
    pub fn terminates(self) -> bool {
        matches!(self, Action::TerminateAndFail | Action::Terminate)
    }

    /// The action marks the running row failed (guarded), then releases its capacity.
    pub fn fails(self) -> bool {
        matches!(self, Action::Fail | Action::TerminateAndFail)
    }
}

/// How an action ended. `VARIANTS` lists every outcome (the compiler keeps it whole).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    Applied,
    RaceLost,
    Skipped,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutSource {
    Schedule,
    Agent,
    Default,
}

/// The timeout that applies to a running row, and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub seconds: u64,
    pub source: TimeoutSource,
}

/// Schedule's `timeout_seconds`, else the agent's `execution_timeout_seconds`, else the default;
/// a stored 0, negative or NULL value falls through.
pub fn effective_timeout(schedule: Option<i64>, agent: Option<i64>, default: Duration) -> Timeout {
    let positive =
        |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
    if let Some(seconds) = positive(schedule) {
        Timeout {
            seconds,
            source: TimeoutSource::Schedule,
        }
    } else if let Some(seconds) = positive(agent) {
        Timeout {
            seconds,
            source: TimeoutSource::Agent,
        }
    } else {
        Timeout {
            seconds: default.as_secs(),
            source: TimeoutSource::Default,
        }
    }
}

/// Why an item has its verdict: a fixed text or one made for it.
pub type Reason = std::borrow::Cow<'static, str>;

/// One line of the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    pub execution_id: String,
    pub agent: Option<String>,
    pub verdict: Verdict,
    pub action: Action,
    /// Most reasons are fixed texts, not copied per item (97 000 of them at A = 10 000).
    pub reason: Reason,
    /// The row's status; `None` when there is no row.
    pub status: Option<Status>,
    /// `started_at` as stored.
    pub started_at: Option<String>,
    pub age_seconds: Option<i64>,
    pub timeout_seconds: Option<u64>,
    pub timeout_source: Option<TimeoutSource>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    /// How many of the execution's open `schedule_start` / `chat_start` activities the won write
    /// closed; `None` when no write won.
    pub activities_closed: Option<u64>,
    /// Whether the recovery event of its won write was published; `None` when it had none to
    /// publish (no won write, events off, no stream, no Redis).
    pub event_published: Option<bool>,
    /// The `completed_at` its won write stored.
    #[serde(skip)]
    pub completed_at: Option<String>,
    #[serde(skip)]
    pub started: Option<DateTime<Utc>>,
    /// What the guarded write stores in `error`, for actions that fail the row.
    #[serde(skip)]
    pub fail_message: Option<String>,
}

impl Item {
    pub(crate) fn new(
        execution_id: &str,
        agent: Option<&str>,
        verdict: Verdict,
        reason: impl Into<Reason>,
    ) -> Item {
        Item {
            execution_id: execution_id.to_owned(),
            agent: agent.map(str::to_owned),
            verdict,
            action: Action::None,
            reason: reason.into(),
            status: None,
            started_at: None,
            age_seconds: None,
            timeout_seconds: None,
            timeout_source: None,
            outcome: None,
            error: None,
            activities_closed: None,
            event_published: None,
            completed_at: None,
            started: None,
            fail_message: None,
        }
    }

    fn with_row(mut self, row: &Row, now: DateTime<Utc>) -> Item {
        self.status = Some(row.status.clone());
        self.started_at = Some(row.started_at.clone());
        self.started = row.started;
        self.age_seconds = row.started.map(|started| age(now, started).num_seconds());
        self
    }

    fn with_action(mut self, action: Action) -> Item {
        self.action = action;
        self
    }

    /// Records how applying this item ended.
    pub fn finish(&mut self, outcome: Outcome, error: Option<String>) {
        self.outcome = Some(outcome);
        self.error = error;
    }
}

/// A capacity finding: report-only, never changed by the tool. `VARIANTS` lists every kind.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FindingKind {
    /// More non-`drain-` slots than `max_parallel_tasks`.
    Overbooked,
    /// A `drain-` sentinel older than 1 h.
    StuckDrain,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub detail: String,
}

/// What an agent said, summarised for the output, with its capacity findings.
#[derive(Clone, Debug, Serialize)]
pub struct AgentSummary {
    pub name: String,
    pub reachable: bool,
    pub error: Option<String>,
    pub latency_ms: Option<u64>,
    pub running: Option<usize>,
    pub recently_completed: Option<usize>,
    pub pending: Option<usize>,
    pub findings: Vec<Finding>,
}

impl AgentSummary {
    fn of(report: &AgentReport) -> AgentSummary {
        let answer = report.answer.as_ref().ok();
        let count = |list: Option<&Vec<String>>| list.map(Vec::len);
        AgentSummary {
            name: report.name.clone(),
            reachable: answer.is_some(),
            error: report.answer.as_ref().err().cloned(),
            latency_ms: report.latency_ms,
            running: answer.map(|a| a.running.len()),
            recently_completed: answer.and_then(|a| count(a.recently_completed.as_ref())),
            pending: answer.and_then(|a| count(a.pending.as_ref())),
            findings: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub items: Vec<Item>,
    pub agents: Vec<AgentSummary>,
    /// Redis was read: capacity slots were checked.
    pub capacity_checked: bool,
    /// Counts over every running row, before the command's scope narrowed the items.
    pub census: Census,
    /// Why a safety limit refused the apply, if one did.
    pub refused: Option<String>,
    /// An interrupt stopped the apply before every action had started.
    pub interrupted: bool,
    /// What became of the recovery events of an apply: `published` (to Trinity's event stream),
    /// `none` (no won write to announce), `off`, `no_stream` (`--events auto` found none) or
    /// `no_redis`; `None` for a dry run.
    pub events: Option<String>,
}

/// What the systemic-failure brake looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Running rows (not leased) whose agent answered.
    pub running_on_reachable: usize,
    /// Of those, the ones that look orphaned.
    pub orphaned: usize,
}

impl Plan {
    pub fn action_count(&self) -> usize {
        self.items
            .iter()
            .filter(|item| item.action != Action::None)
            .count()
    }

    pub fn unreachable_agents(&self) -> usize {
        self.agents.iter().filter(|agent| !agent.reachable).count()
    }

    /// Capacity findings of every agent.
    pub fn findings(&self) -> impl Iterator<Item = (&AgentSummary, &Finding)> {
        self.agents
            .iter()
            .flat_map(|agent| agent.findings.iter().map(move |finding| (agent, finding)))
    }

    /// The plan asks for attention (`--exit-code` exits 4): an action, an unreachable agent, an
    /// item that needs a person, or a capacity finding.
    pub fn needs_attention(&self) -> bool {
        self.action_count() > 0
            || self.unreachable_agents() > 0
            || self.items.iter().any(|item| item.verdict.needs_a_person())
            || self.findings().next().is_some()
    }

    /// Recovery events published, and those whose publish failed.
    pub fn events_published(&self) -> (usize, usize) {
        let count = |published| {
            self.items
                .iter()
                .filter(|item| item.event_published == Some(published))
                .count()
        };
        (count(true), count(false))
    }

    /// Activities closed by the apply's won writes.
    pub fn activities_closed(&self) -> u64 {
        self.items
            .iter()
            .filter_map(|item| item.activities_closed)
            .sum()
    }

    pub fn by_verdict(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for item in &self.items {
            *counts.entry(item.verdict.as_str()).or_default() += 1;
        }
        counts
    }

    pub fn by_outcome(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for outcome in self.items.iter().filter_map(|item| item.outcome) {
            *counts.entry(outcome.as_str()).or_default() += 1;
        }
        counts
    }

    pub fn by_finding(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for (_, finding) in self.findings() {
            *counts.entry(finding.kind.as_str()).or_default() += 1;
        }
        counts
    }
}

/// Builds the plan. Pure: everything it knows comes from its arguments.
pub fn plan(snapshot: &Snapshot, policy: &Policy, now: DateTime<Utc>) -> Plan {
    let planner = Planner::new(snapshot, policy, now);
    let mut census = Census::default();
    let mut items = match &policy.scope {
        Scope::KillIds(ids) => {
            let unique: BTreeSet<&String> = ids.iter().collect();
            unique.into_iter().map(|id| planner.requested(id)).collect()
        }
        scope => {
            let mut items = planner.running_rows();
            // Only rows whose agent answered: an abandoned row's agent did not.
            for item in items
                .iter()
                .filter(|item| !matches!(item.verdict, Verdict::Unreachable | Verdict::Abandoned))
            {
                census.running_on_reachable += 1;
                census.orphaned += usize::from(item.verdict == Verdict::Orphaned);
            }
            items.extend(planner.agent_processes());
            items.extend(planner.leaked_slots());
            items.extend(planner.expired_leases());
            items.retain(|item| match scope {
                Scope::Recover => matches!(
                    item.verdict,
                    Verdict::Orphaned | Verdict::LeakedSlot | Verdict::Abandoned
                ),
                Scope::Kill => matches!(item.verdict, Verdict::TimedOut | Verdict::Zombie),
                _ => true,
            });
            items
        }
    };
    // Unstable: no scratch copy of the items (13 MB at 100 000 of them). Items that share a key
    // are one item twice (an agent listing an id twice), so the order is still determined.
    items.sort_unstable_by(|a, b| {
        (&a.agent, &a.execution_id, a.verdict).cmp(&(&b.agent, &b.execution_id, b.verdict))
    });
    let agents = snapshot
        .agents
        .iter()
        .map(|report| {
            let mut summary = AgentSummary::of(report);
            if !matches!(policy.scope, Scope::KillIds(_)) && planner.in_scope(&report.name) {
                summary.findings = planner.capacity_findings(&report.name);
            }
            summary
        })
        .collect();
    Plan {
        items,
        agents,
        capacity_checked: snapshot.capacity.is_some(),
        census,
        refused: None,
        interrupted: false,
        events: None,
    }
}

struct Planner<'a> {
    snapshot: &'a Snapshot,
    policy: &'a Policy,
    now: DateTime<Utc>,
    rows: HashMap<&'a str, &'a Row>,
    agents: HashMap<&'a str, &'a AgentReport>,
    /// Each agent's slots, so its capacity findings never scan the whole fleet's.
    slots: HashMap<&'a str, Vec<&'a Slot>>,
}

impl<'a> Planner<'a> {
    fn new(snapshot: &'a Snapshot, policy: &'a Policy, now: DateTime<Utc>) -> Self {
        Planner {
            snapshot,
            policy,
            now,
            rows: snapshot
                .rows
                .iter()
                .map(|row| (row.id.as_str(), row))
                .collect(),
            agents: snapshot
                .agents
                .iter()
                .map(|agent| (agent.name.as_str(), agent))
                .collect(),
            slots: snapshot
                .capacity
                .iter()
                .flat_map(|capacity| &capacity.slots)
                .fold(HashMap::new(), |mut slots, slot| {
                    slots
                        .entry(slot.agent.as_str())
                        .or_insert_with(Vec::new)
                        .push(slot);
                    slots
                }),
        }
    }

    fn in_scope(&self, agent: &str) -> bool {
        self.policy.agents.contains(agent)
    }

    fn grace_ms(&self) -> i64 {
        i64::try_from(self.policy.grace.as_millis()).unwrap_or(i64::MAX)
    }

    fn is_in_flight(&self, id: &str) -> bool {
        self.snapshot
            .capacity
            .as_ref()
            .is_some_and(|c| c.in_flight.contains(id))
    }

    /// A verdict for every running row that is not leased.
    fn running_rows(&self) -> Vec<Item> {
        self.snapshot
            .rows
            .iter()
            .filter(|row| row.status == Status::Running && !row.leased && self.in_scope(&row.agent))
            .map(|row| self.running_row(row))
            .collect()
    }

    fn running_row(&self, row: &Row) -> Item {
        let timeout = effective_timeout(
            row.schedule_timeout,
            row.agent_timeout,
            self.policy.default_timeout,
        );
        let age_ms = row
            .started
            .map(|started| age(self.now, started).num_milliseconds());
        let item = |verdict, reason: Reason| {
            let mut item =
                Item::new(&row.id, Some(&row.agent), verdict, reason).with_row(row, self.now);
            item.timeout_seconds = Some(timeout.seconds);
            item.timeout_source = Some(timeout.source);
            item
        };
        let unparseable = || {
            format!(
                "started_at {:?} does not parse, so its age is unknown",
                row.started_at
            )
        };
        let answer = match self
            .agents
            .get(row.agent.as_str())
            .map(|report| &report.answer)
        {
            Some(Ok(answer)) => answer,
            Some(Err(reason)) => {
                return self.unreachable_row(
                    row,
                    item,
                    timeout,
                    age_ms,
                    format!("agent unreachable: {reason}").into(),
                );
            }
            None => {
                return self.unreachable_row(
                    row,
                    item,
                    timeout,
                    age_ms,
                    "agent was not queried".into(),
                );
            }
        };
        if answer.runs(&row.id) {
            let timeout_ms =
                i64::try_from(timeout.seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            return match age_ms {
                None => item(
                    Verdict::Healthy,
                    format!("agent runs it; warning: {}", unparseable()).into(),
                ),
                Some(age_ms) if age_ms > timeout_ms => {
                    let minutes = age_ms / 60_000;
                    let mut timed_out = item(
                        Verdict::TimedOut,
                        format!(
                            "agent runs it {} past its timeout of {}",
                            human_duration((age_ms - timeout_ms) / 1000),
                            human_duration(timeout.seconds as i64)
                        )
                        .into(),
                    )
                    .with_action(Action::TerminateAndFail);
                    timed_out.fail_message = Some(format!(
                        "Execution auto-terminated after {minutes} minutes by watchdog (exceeded timeout of {}s)",
                        timeout.seconds
                    ));
                    timed_out
                }
                Some(_) => item(Verdict::Healthy, "agent runs it within its timeout".into()),
            };
        }
        if answer.knows(&row.id) {
            let list = if answer.pending.iter().flatten().any(|id| *id == row.id) {
                "pending"
            } else {
                "recently completed"
            };
            return item(Verdict::Healthy, format!("agent lists it as {list}").into());
        }
        if age_ms.is_some_and(|age_ms| age_ms < self.grace_ms()) {
            return item(
                Verdict::Grace,
                "agent does not know it yet; still within the grace period".into(),
            );
        }
        if self.is_in_flight(&row.id) && !broken(Rule::InFlight) {
            return item(
                Verdict::InFlight,
                "a backend worker is still dispatching it (in-flight marker present)".into(),
            );
        }
        let reason = match age_ms {
            Some(_) => format!("agent '{}' does not know it", row.agent),
            None => format!("agent '{}' does not know it; {}", row.agent, unparseable()),
        };
        let mut orphaned = item(Verdict::Orphaned, reason.into()).with_action(Action::Fail);
        orphaned.fail_message = Some(orphan_message(&row.agent, answer));
        orphaned
    }

    /// A running row whose agent gave no answer: `unreachable` (unknown is never dead), unless the
    /// agent was deleted from Trinity and the row is past its timeout + 300 s: `abandoned`.
    fn unreachable_row(
        &self,
        row: &Row,
        item: impl Fn(Verdict, Reason) -> Item,
        timeout: Timeout,
        age_ms: Option<i64>,
        reason: Reason,
    ) -> Item {
        let deleted = self
            .snapshot
            .owned
            .as_ref()
            .is_some_and(|owned| !owned.contains_key(&row.agent));
        let limit_ms = i64::try_from(
            timeout
                .seconds
                .saturating_add(ABANDONED_MARGIN_SECONDS)
                .saturating_mul(1000),
        )
        .unwrap_or(i64::MAX);
        if !deleted || age_ms.is_none_or(|age_ms| age_ms <= limit_ms) {
            return item(Verdict::Unreachable, reason);
        }
        let mut abandoned = item(
            Verdict::Abandoned,
            format!(
                "{reason}; agent '{}' no longer exists in agent_ownership and the row is {} past its timeout: nothing will finish it{}",
                row.agent,
                human_duration((age_ms.unwrap_or_default() - limit_ms + 300_000) / 1000),
                if self.policy.recover_abandoned {
                    ""
                } else {
                    " (--recover-abandoned fails it)"
                }
            )
            .into(),
        );
        if self.policy.recover_abandoned {
            abandoned.action = Action::Fail;
            abandoned.fail_message = Some(format!(
                "Execution abandoned: agent '{}' no longer exists and does not answer — recovered by watchdog",
                row.agent
            ));
        }
        abandoned
    }

    /// Leased rows whose lease expired more than the grace ago: the reaper has not reclaimed them.
    fn expired_leases(&self) -> Vec<Item> {
        self.snapshot
            .rows
            .iter()
            .filter(|row| row.status == Status::Running && self.in_scope(&row.agent))
            .filter(|row| row.leased)
            .filter_map(|row| {
                let expired = match row.lease_expires {
                    Some(expires) => {
                        let expired_ms = age(self.now, expires).num_milliseconds();
                        if expired_ms <= self.grace_ms() {
                            return None;
                        }
                        format!("lease expired {} ago", human_duration(expired_ms / 1000))
                    }
                    // Nobody can tell when it ends, the lease reaper included.
                    None => "lease_expires_at does not parse".to_owned(),
                };
                let runs = match self.agents.get(row.agent.as_str()).map(|r| &r.answer) {
                    Some(Ok(answer)) if answer.runs(&row.id) => {
                        "its agent still runs it: a re-delivery would run it twice"
                    }
                    Some(Ok(_)) => "its agent does not run it",
                    Some(Err(_)) | None => {
                        "whether its agent still runs it is unknown (unreachable)"
                    }
                };
                Some(
                    Item::new(
                        &row.id,
                        Some(&row.agent),
                        Verdict::LeaseExpired,
                        format!("{expired} and the lease reaper has not reclaimed it; {runs}"),
                    )
                    .with_row(row, self.now),
                )
            })
            .collect()
    }

    /// `overbooked` and `stuck_drain` for one agent (report-only).
    fn capacity_findings(&self, agent: &str) -> Vec<Finding> {
        let slots = self.slots.get(agent).map_or(&[][..], Vec::as_slice);
        let mut findings = Vec::new();
        let held = slots
            .iter()
            .filter(|slot| !slot.execution_id.starts_with("drain-"))
            .count();
        let limit = self
            .snapshot
            .owned
            .as_ref()
            .and_then(|owned| owned.get(agent).copied().flatten());
        if let Some(limit) = limit
            && i64::try_from(held).unwrap_or(i64::MAX) > limit
        {
            findings.push(Finding {
                kind: FindingKind::Overbooked,
                detail: format!("{held} slots held, max_parallel_tasks is {limit}"),
            });
        }
        let now = self.now.timestamp_millis() as f64 / 1000.0;
        for slot in slots
            .iter()
            .filter(|slot| slot.execution_id.starts_with("drain-"))
        {
            let held = now - slot.acquired_at;
            if held > STUCK_DRAIN_SECONDS {
                findings.push(Finding {
                    kind: FindingKind::StuckDrain,
                    detail: format!(
                        "{} held for {}",
                        slot.execution_id,
                        human_duration(held as i64)
                    ),
                });
            }
        }
        findings
    }

    /// Zombies and untracked processes: ids an agent runs that have no running row.
    fn agent_processes(&self) -> Vec<Item> {
        let mut items = Vec::new();
        for report in &self.snapshot.agents {
            let Ok(answer) = &report.answer else { continue };
            if !self.in_scope(&report.name) {
                continue;
            }
            for id in &answer.running {
                match self.rows.get(id.as_str()) {
                    None => items.push(Item::new(
                        id,
                        Some(&report.name),
                        Verdict::Untracked,
                        "agent runs it, but it has no row (`kill ID` can end it)",
                    )),
                    Some(row) if row.status.is_terminal() && !row.leased => {
                        items.push(self.terminal_process(row, &report.name));
                    }
                    Some(_) => {}
                }
            }
        }
        items
    }

    fn terminal_process(&self, row: &Row, agent: &str) -> Item {
        // Without completed_at, started_at is the best (earliest) evidence of when it ended.
        let (ended, known) = match row.completed {
            Some(completed) => (Some(completed), "completed"),
            None => (row.started, "started (completed_at unknown)"),
        };
        let since_ms = ended.map(|ended| age(self.now, ended).num_milliseconds());
        let item = |verdict, reason: String| {
            Item::new(&row.id, Some(agent), verdict, reason).with_row(row, self.now)
        };
        match since_ms {
            Some(since_ms) if since_ms > self.grace_ms() => item(
                Verdict::Zombie,
                format!(
                    "agent still runs it; row is {} and {known} {} ago",
                    row.status,
                    human_duration(since_ms / 1000)
                ),
            )
            .with_action(Action::Terminate),
            _ => item(
                Verdict::Grace,
                format!(
                    "agent still lists it; row became {} within the grace period",
                    row.status
                ),
            ),
        }
    }

    fn leaked_slots(&self) -> Vec<Item> {
        let Some(capacity) = &self.snapshot.capacity else {
            return Vec::new();
        };
        capacity
            .slots
            .iter()
            .filter(|slot| self.in_scope(&slot.agent))
            .filter_map(|slot| self.leaked_slot(slot))
            .collect()
    }

    fn leaked_slot(&self, slot: &Slot) -> Option<Item> {
        if slot.execution_id.starts_with("drain-") {
            return None;
        }
        let held = self.now.timestamp_millis() as f64 / 1000.0 - slot.acquired_at;
        if held <= SLOT_MIN_AGE_SECONDS {
            return None;
        }
        let reason = match self.rows.get(slot.execution_id.as_str()) {
            Some(row) if row.status.is_terminal() && !row.leased => {
                format!(
                    "slot held {} by an execution whose row is {}",
                    human_duration(held as i64),
                    row.status
                )
            }
            Some(_) => return None,
            None if !slot.has_metadata => {
                format!(
                    "slot held {}; no row, and its metadata has expired",
                    human_duration(held as i64)
                )
            }
            None => {
                let timeout = slot
                    .timeout_seconds
                    .unwrap_or(self.policy.default_timeout.as_secs() as i64);
                if held <= timeout as f64 + SLOT_TTL_MARGIN_SECONDS {
                    return None;
                }
                format!(
                    "slot held {}; no row, and past its timeout of {timeout}s + 300s",
                    human_duration(held as i64)
                )
            }
        };
        let mut item = Item::new(
            &slot.execution_id,
            Some(&slot.agent),
            Verdict::LeakedSlot,
            reason,
        )
        .with_action(Action::ReleaseSlot);
        item.age_seconds = Some(held as i64);
        item.status = self
            .rows
            .get(slot.execution_id.as_str())
            .map(|row| row.status.clone());
        Some(item)
    }

    fn requested(&self, id: &str) -> Item {
        let row = self.rows.get(id).copied();
        let runner = self
            .snapshot
            .agents
            .iter()
            .find(|report| report.answer.as_ref().is_ok_and(|answer| answer.runs(id)));
        let agent = row
            .map(|row| row.agent.as_str())
            .or(runner.map(|report| report.name.as_str()));
        let Some(agent) = agent else {
            let reason = if self.policy.no_terminate {
                "named with --no-terminate, but it has no row: nothing to close"
            } else {
                "no row and no agent runs it: nothing to terminate"
            };
            return Item::new(id, None, Verdict::Requested, reason);
        };
        let mut item = Item::new(id, Some(agent), Verdict::Requested, "");
        if self.policy.no_terminate {
            // (A row-less id got no agent above: with --no-terminate no agent is asked.)
            return match row {
                Some(row) if row.status == Status::Running && !row.leased => {
                    let mut item = item.with_row(row, self.now).with_action(Action::Fail);
                    item.reason =
                        "named on the command line with --no-terminate; its row is running".into();
                    item.fail_message = Some(OPERATOR_CLOSE_MESSAGE.to_owned());
                    item
                }
                Some(row) => {
                    let mut item = item.with_row(row, self.now);
                    item.reason = format!(
                        "named with --no-terminate, but its row is {}{}: nothing to close",
                        row.status,
                        if row.leased { " and leased" } else { "" }
                    )
                    .into();
                    item
                }
                None => {
                    item.reason =
                        "named with --no-terminate, but it has no row: nothing to close".into();
                    item
                }
            };
        }
        match row {
            Some(row) if row.status == Status::Running && !row.leased => {
                item = item
                    .with_row(row, self.now)
                    .with_action(Action::TerminateAndFail);
                item.reason = "named on the command line; its row is running".into();
                item.fail_message = Some(OPERATOR_KILL_MESSAGE.to_owned());
            }
            Some(row) => {
                item = item.with_row(row, self.now).with_action(Action::Terminate);
                item.reason = if row.leased {
                    "named on the command line; its row is leased by another reaper, so only the process is ended".into()
                } else {
                    format!("named on the command line; its row is {}", row.status).into()
                };
            }
            None => {
                item = item.with_action(Action::Terminate);
                item.reason = "named on the command line; it has no row".into();
            }
        }
        item
    }
}

/// Trinity's orphan message, naming only the lists the agent actually reported.
fn orphan_message(agent: &str, answer: &AgentAnswer) -> String {
    let mut checked = vec!["not running"];
    if answer.pending.is_some() {
        checked.push("not pending");
    }
    if answer.recently_completed.is_some() {
        checked.push("not recently completed");
    }
    format!(
        "Execution not tracked by agent '{agent}' ({}) — recovered by watchdog",
        checked.join(", ")
    )
}

/// Time since `then`; a time in the future counts as zero.
fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> chrono::Duration {
    (now - then).max(chrono::Duration::zero())
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
