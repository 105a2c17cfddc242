//! The plain-data picture of the world that gathering produces and the planner reads: database
//! rows, every asked agent's answer, and the Redis capacity state. No I/O lives here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every `running` row (leased ones too, so their ids are never taken for untracked work),
    /// plus the rows of every other id an agent, a slot or the command line mentioned.
    pub rows: Vec<Row>,
    /// One entry per asked agent, sorted by name.
    pub agents: Vec<AgentReport>,
    /// `None` when Redis is not configured: capacity was not checked.
    pub capacity: Option<Capacity>,
    /// Things gathering skipped or doubted (a garbage row, a missing optional table).
    pub warnings: Vec<String>,
}

/// One `schedule_executions` row, as far as the tool reads it.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    pub agent: String,
    pub status: String,
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
        self.runs(id) || listed(&self.recently_completed) || listed(&self.pending)
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
    /// `agent:slot:{agent}:{id}` exists.
    pub has_metadata: bool,
    /// Its `timeout_seconds` field, when present and numeric.
    pub timeout_seconds: Option<i64>,
}
