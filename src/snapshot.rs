//! The plain-data picture of the world that gathering produces and the planner reads: database
//! rows, every asked agent's answer, and the Redis capacity state. No I/O lives here.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::broken::{Rule, broken};

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every `running` row (leased ones too, so their ids are never taken for untracked work),
    /// plus the rows of every other id an agent, a slot or the command line mentioned.
    pub rows: Vec<Row>,
    /// One entry per asked agent, sorted by name.
    pub agents: Vec<AgentReport>,
    /// `None` when Redis is not configured: capacity was not checked.
    pub capacity: Option<Capacity>,
    /// The agents in `agent_ownership`, with their `max_parallel_tasks` when set; `None` when the
    /// database has no such table (then no agent counts as deleted).
    pub owned: Option<OwnedAgents>,
    /// Things gathering skipped or doubted (a garbage row, a missing optional table).
    pub warnings: Vec<String>,
}

/// The agents in `agent_ownership`, each with its `max_parallel_tasks` when set.
pub type OwnedAgents = BTreeMap<String, Option<i64>>;

/// An execution's `status`, as Trinity writes it; unknown values are kept as they are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Running,
    Success,
    Failed,
    Cancelled,
    Skipped,
    /// Newer versions: admitted, waiting for capacity.
    Queued,
    /// Newer versions: failed, to be retried.
    PendingRetry,
    /// A value this version does not know: neither running nor terminal, so never acted on.
    Other(String),
}

impl Status {
    pub fn parse(text: &str) -> Status {
        match text {
            "running" => Status::Running,
            "success" => Status::Success,
            "failed" => Status::Failed,
            "cancelled" => Status::Cancelled,
            "skipped" => Status::Skipped,
            "queued" => Status::Queued,
            "pending_retry" => Status::PendingRetry,
            other => Status::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Skipped => "skipped",
            Status::Queued => "queued",
            Status::PendingRetry => "pending_retry",
            Status::Other(other) => other,
        }
    }

    /// The execution ended: nothing will write this row again.
    pub fn is_terminal(&self) -> bool {
        match self {
            Status::Success | Status::Failed | Status::Cancelled | Status::Skipped => true,
            Status::Running | Status::Queued | Status::PendingRetry | Status::Other(_) => false,
        }
    }
}

impl From<&str> for Status {
    fn from(text: &str) -> Status {
        Status::parse(text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One `schedule_executions` row, as far as the tool reads it.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    pub agent: String,
    pub status: Status,
    /// `started_at` as stored, for messages.
    pub started_at: String,
    /// `None` when `started_at` does not parse.
    pub started: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    /// `agent_schedules.timeout_seconds` of the row's schedule.
    pub schedule_timeout: Option<i64>,
    /// `agent_ownership.execution_timeout_seconds` of the row's agent.
    pub agent_timeout: Option<i64>,
    /// `lease_expires_at` is set: another reaper owns the row.
    pub leased: bool,
    /// When the lease expires, if it is set and parses.
    pub lease_expires: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct AgentReport {
    pub name: String,
    pub latency_ms: Option<u64>,
    /// The agent's valid answer, or why there is none (it is unreachable).
    pub answer: Result<AgentAnswer, String>,
}

/// What an agent said it runs. `None` lists mean an older agent image without that field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentAnswer {
    pub running: Vec<String>,
    pub recently_completed: Option<Vec<String>>,
    pub pending: Option<Vec<String>>,
}

impl AgentAnswer {
    pub fn runs(&self, id: &str) -> bool {
        self.running.iter().any(|known| known == id)
    }

    /// Known = running, recently completed or pending.
    pub fn knows(&self, id: &str) -> bool {
        let listed = |list: &Option<Vec<String>>| list.iter().flatten().any(|known| known == id);
        self.runs(id)
            || listed(&self.recently_completed)
            || (listed(&self.pending) && !broken(Rule::Pending))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Capacity {
    pub slots: Vec<Slot>,
    /// Execution ids whose `execution:inflight:{id}` marker is present.
    pub in_flight: BTreeSet<String>,
}

/// One member of `agent:slots:{agent}`.
#[derive(Clone, Debug)]
pub struct Slot {
    pub agent: String,
    pub execution_id: String,
    /// ZSET score: unix seconds when the slot was acquired.
    pub acquired_at: f64,
    /// The score exactly as Redis holds it (Trinity writes `time.time()` floats), for comparisons
    /// that must not depend on a float's round trip through text.
    pub score: String,
    /// `agent:slot:{agent}:{id}` exists.
    pub has_metadata: bool,
    /// Its `timeout_seconds` field, when present and numeric.
    pub timeout_seconds: Option<i64>,
}
