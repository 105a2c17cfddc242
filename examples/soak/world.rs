//! The simulated Trinity: the ground truth of every execution, the backend that starts and
//! finishes them the way Trinity does, the chaos, and the checks that compare the tool's effects
//! with the truth. Everything here runs under one lock (`Shared`), so the truth, the database and
//! Redis move together as the agents' HTTP handlers and the backend see them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, params};

pub type Shared = Arc<Mutex<World>>;

/// How long a newer agent image lists a finished id in `recently_completed_ids`. Trinity's agents
/// keep 300 s; the soak scales it down with the rest of its clock, so that a lost completion on a
/// new image becomes an orphan inside the quiet period.
pub const RECENT_WINDOW: Duration = Duration::from_secs(20);
/// The grace the tool runs with, and the dispatch and pending times measured against it.
pub const GRACE: Duration = Duration::from_secs(3);
/// The tool's `--http-timeout`; a stalled agent answers later than this.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(1);
/// The tool's `--terminate-timeout`; a stalled agent's terminate answers later than this.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(3);

/// The invariants: the soak fails when any of these is not zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    FalseKill,
    Overwrite,
    LiveSlotRelease,
    TouchedSentinel,
    Missed,
    UnreportedOrInvented,
    BadRun,
}

impl Invariant {
    pub const ALL: [Invariant; 7] = [
        Invariant::FalseKill,
        Invariant::Overwrite,
        Invariant::LiveSlotRelease,
        Invariant::TouchedSentinel,
        Invariant::Missed,
        Invariant::UnreportedOrInvented,
        Invariant::BadRun,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Invariant::FalseKill => "false kills",
            Invariant::Overwrite => "overwrites",
            Invariant::LiveSlotRelease => "live slot releases",
            Invariant::TouchedSentinel => "touched sentinels and markers",
            Invariant::Missed => "missed",
            Invariant::UnreportedOrInvented => "unreported or invented effects",
            Invariant::BadRun => "bad runs",
        }
    }
}

/// How an agent answers right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Restarting: 503, and its work is dead.
    Restarting,
    /// A proxy in front of an agent that refuses connections: 502.
    Refusing,
    Error500,
    /// Answers after the tool's `--http-timeout`.
    Stalling,
}

pub struct Agent {
    pub new_image: bool,
    pub timeout_s: u64,
    pub max_parallel: usize,
    pub schedule: (String, Option<u64>),
    pub mode: Mode,
    pub mode_until: Instant,
    /// Finished ids and when (newer images list them for `RECENT_WINDOW`).
    pub recent: Vec<(String, Instant)>,
    /// `GET running` requests answered with the lists in the current batch of tool runs (the
    /// second is the re-check).
    pub gets: usize,
    /// At the re-check, the backend finally writes this row: a completion between plan and apply.
    pub complete_at_recheck: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A scheduled execution: a row, a slot, an activity.
    Schedule,
    /// A chat execution of an older Trinity: a slot and a process, no row.
    Chat,
    /// A slot nobody holds: no row, past its TTL.
    RowlessLeak,
}

/// What the simulation has in store for an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Normal,
    /// The backend crashes between the agent finishing and the row being written.
    LoseCompletion,
    /// The row is written, the slot is never released.
    LeakSlot,
    /// A cancel that never reached the agent: the row is cancelled, the process goes on.
    Zombie,
    /// Runs far past its timeout.
    Overrun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The backend has taken the slot; the marker and the row follow (`start_step`).
    Starting,
    Dispatching,
    Pending,
    Running,
    Ended,
}

/// What the simulation believes a row holds (it wrote it, or saw the tool write it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowBelief {
    None,
    Running,
    Terminal {
        status: String,
        completed_at: Option<String>,
        error: Option<String>,
    },
}

pub struct Exec {
    pub agent: String,
    pub kind: Kind,
    pub fate: Fate,
    pub phase: Phase,
    pub started: DateTime<Utc>,
    pub timeout_s: u64,
    pub dispatch_at: Instant,
    pub run_at: Instant,
    pub ends_at: Instant,
    /// When the process stopped (finished, killed by a restart, a cancel or the tool).
    pub alive_until: Option<DateTime<Utc>>,
    /// When the backend writes the finished row.
    pub write_at: Option<Instant>,
    pub row: RowBelief,
    pub slot: bool,
    pub marker: bool,
    /// It holds `agent:running:{agent}`.
    pub queue_lock: bool,
    pub zombie_at: Option<Instant>,
    /// How the process stopped: `finished`, `restart`, `cancel` or `tool`.
    pub ended: &'static str,
    pub schedule_id: String,
    /// While `Starting`: 0 = slot taken, 1 = marker set; the row is next.
    pub start_step: u8,
    pub next_at: Instant,
    /// When the backend releases the slot of the row it wrote.
    pub release_at: Option<Instant>,
}

impl Exec {
    pub fn alive(&self) -> bool {
        self.phase != Phase::Ended && self.kind != Kind::RowlessLeak
    }

    /// On the agent's process table (running or pending there).
    pub fn on_agent(&self) -> bool {
        matches!(self.phase, Phase::Pending | Phase::Running)
    }

    fn alive_at(&self, at: DateTime<Utc>) -> bool {
        self.kind != Kind::RowlessLeak
            && self.started <= at
            && self.alive_until.is_none_or(|until| at < until)
    }

    fn age_at(&self, at: DateTime<Utc>) -> f64 {
        (at - self.started).num_milliseconds() as f64 / 1000.0
    }
}

/// What the tool did during one batch of runs, as the world saw it.
#[derive(Default)]
pub struct Effects {
    pub terminates: BTreeSet<String>,
    pub rows: BTreeSet<String>,
    pub slots: BTreeSet<String>,
}

pub struct World {
    pub epoch: Instant,
    pub rng: StdRng,
    pub db: Connection,
    pub redis: Option<redis::Connection>,
    pub redis_url: String,
    pub agents: BTreeMap<String, Agent>,
    pub execs: BTreeMap<String, Exec>,
    /// `drain-` sentinels: (agent, member, score).
    pub sentinels: Vec<(String, String, f64)>,
    pub chaos: bool,
    pub starting: bool,
    pub effects: Effects,
    pub counts: BTreeMap<&'static str, u64>,
    pub violations: Vec<(Invariant, String)>,
    pub log: Vec<String>,
    next_id: u64,
}

fn now_text() -> String {
    format_time(Utc::now())
}

pub fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl World {
    pub fn new(seed: u64, agents: usize, db: Connection, redis_url: String) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let redis = redis::Client::open(redis_url.as_str())
            .and_then(|c| c.get_connection())
            .expect("connect to the soak's redis-server");
        let mut world = World {
            epoch: Instant::now(),
            rng: StdRng::seed_from_u64(rng.random()),
            db,
            redis: Some(redis),
            redis_url,
            agents: BTreeMap::new(),
            execs: BTreeMap::new(),
            sentinels: Vec::new(),
            chaos: true,
            starting: true,
            effects: Effects::default(),
            counts: BTreeMap::new(),
            violations: Vec::new(),
            log: Vec::new(),
            next_id: 0,
        };
        for n in 0..agents {
            let name = format!("agent-{n:02}");
            let timeout_s = rng.random_range(15..=30);
            let max_parallel = rng.random_range(3..=6);
            let schedule_timeout = rng.random_bool(0.5).then(|| rng.random_range(12..=25));
            let schedule = format!("sched-{n:02}");
            world
                .db
                .execute(
                    "INSERT INTO agent_ownership (agent_name, owner_id, created_at, execution_timeout_seconds, max_parallel_tasks) VALUES (?1, 1, ?2, ?3, ?4)",
                    params![name, now_text(), timeout_s as i64, max_parallel as i64],
                )
                .expect("insert agent");
            world
                .db
                .execute(
                    "INSERT INTO agent_schedules (id, agent_name, name, cron_expression, message, owner_id, created_at, updated_at, timeout_seconds) VALUES (?1, ?2, 'soak', '* * * * *', 'work', 1, ?3, ?3, ?4)",
                    params![schedule, name, now_text(), schedule_timeout.map(|t: u64| t as i64)],
                )
                .expect("insert schedule");
            if n % 5 == 0 {
                let member = format!("drain-{n:02}");
                let score = Utc::now().timestamp() as f64;
                world.sentinels.push((name.clone(), member, score));
            }
            world.agents.insert(
                name,
                Agent {
                    new_image: n % 3 != 0,
                    timeout_s,
                    max_parallel,
                    schedule: (schedule, schedule_timeout),
                    mode: Mode::Up,
                    mode_until: Instant::now(),
                    recent: Vec::new(),
                    gets: 0,
                    complete_at_recheck: None,
                },
            );
        }
        for (agent, member, score) in world.sentinels.clone() {
            world.redis_cmd::<()>(
                redis::cmd("ZADD")
                    .arg(format!("agent:slots:{agent}"))
                    .arg(score)
                    .arg(member),
            );
        }
        world
    }

    pub fn t(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    pub fn event(&mut self, what: &'static str, detail: String) {
        *self.counts.entry(what).or_default() += 1;
        let line = format!("{:8.3}s {what}: {detail}", self.t());
        self.log.push(line);
    }

    pub fn violation(&mut self, invariant: Invariant, detail: String) {
        let line = format!(
            "{:8.3}s VIOLATION {}: {detail}",
            self.t(),
            invariant.label()
        );
        self.log.push(line);
        self.violations.push((invariant, detail));
    }

    /// Runs a Redis command; `None` while Redis is down (or the command failed).
    fn redis_cmd<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Option<T> {
        let conn = self.redis.as_mut()?;
        match cmd.query(conn) {
            Ok(value) => Some(value),
            Err(err) => {
                if err.is_io_error() || err.is_connection_dropped() {
                    self.redis = None;
                }
                None
            }
        }
    }

    pub fn redis_down(&mut self) {
        self.redis = None;
    }

    pub fn redis_up(&mut self) {
        self.redis = redis::Client::open(self.redis_url.as_str())
            .and_then(|c| c.get_connection())
            .ok();
    }

    // -----------------------------------------------------------------------------------------
    // The backend

    /// A capacity slot as Trinity takes it: the ZSET member and, with a timeout, the metadata
    /// hash that expires at timeout + 300 s. False when Redis is down.
    fn take_slot(&mut self, agent: &str, id: &str, score: f64, timeout_s: Option<u64>) -> bool {
        let zadd = redis::cmd("ZADD")
            .arg(format!("agent:slots:{agent}"))
            .arg(score)
            .arg(id)
            .clone();
        if self.redis_cmd::<()>(&zadd).is_none() {
            return false;
        }
        if let Some(timeout_s) = timeout_s {
            let key = format!("agent:slot:{agent}:{id}");
            self.redis_cmd::<()>(
                redis::cmd("HSET")
                    .arg(&key)
                    .arg("timeout_seconds")
                    .arg(timeout_s)
                    .arg("started_at")
                    .arg(score),
            );
            self.redis_cmd::<()>(redis::cmd("EXPIRE").arg(&key).arg(timeout_s + 300));
        }
        true
    }

    /// One step of the backend: start work, dispatch it, finish it, write it.
    pub fn tick(&mut self, starts_per_second: f64, dt: Duration) {
        let now = Instant::now();
        for agent in self.agents.values_mut() {
            if agent.mode != Mode::Up && now >= agent.mode_until {
                agent.mode = Mode::Up;
            }
            agent
                .recent
                .retain(|(_, at)| now.duration_since(*at) < RECENT_WINDOW);
        }
        if self.starting
            && self
                .rng
                .random_bool((starts_per_second * dt.as_secs_f64()).min(1.0))
        {
            self.start_execution();
        }
        let ids: Vec<String> = self.execs.keys().cloned().collect();
        for id in ids {
            self.step(&id, now);
        }
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "{prefix}{:05}-{:04x}",
            self.next_id,
            self.rng.random::<u16>()
        )
    }

    fn pick_agent(&mut self) -> String {
        let n = self.rng.random_range(0..self.agents.len());
        self.agents.keys().nth(n).cloned().expect("an agent")
    }

    fn fate(&mut self) -> Fate {
        if !self.chaos {
            return Fate::Normal;
        }
        match self.rng.random_range(0..100) {
            0..4 => Fate::LoseCompletion,
            4..7 => Fate::LeakSlot,
            7..10 => Fate::Zombie,
            10..15 => Fate::Overrun,
            _ => Fate::Normal,
        }
    }

    /// Trinity's order: check capacity, take the slot, set the in-flight marker, insert the row
    /// and its activity; the dispatch follows after a delay.
    fn start_execution(&mut self) {
        let agent = self.pick_agent();
        let Some(held): Option<usize> =
            self.redis_cmd(redis::cmd("ZCARD").arg(format!("agent:slots:{agent}")))
        else {
            return;
        };
        let sentinels = self.sentinels.iter().filter(|s| s.0 == agent).count();
        let (max_parallel, agent_timeout, schedule) = {
            let a = &self.agents[&agent];
            (a.max_parallel, a.timeout_s, a.schedule.clone())
        };
        if held.saturating_sub(sentinels) >= max_parallel {
            *self
                .counts
                .entry("start refused: agent at capacity")
                .or_default() += 1;
            return;
        }
        let id = self.new_id("ex");
        let use_schedule = self.rng.random_bool(0.4);
        let (schedule_id, timeout_s) = match (use_schedule, schedule.1) {
            (true, Some(t)) => (schedule.0.clone(), t),
            (true, None) => (schedule.0.clone(), agent_timeout),
            (false, _) => ("__manual__".to_owned(), agent_timeout),
        };
        let started = Utc::now();
        let score = started.timestamp() as f64;
        if !self.take_slot(&agent, &id, score, Some(timeout_s)) {
            return;
        }
        let now = Instant::now();
        let exec = Exec {
            kind: Kind::Schedule,
            fate: self.fate(),
            phase: Phase::Starting,
            started,
            timeout_s,
            slot: true,
            schedule_id,
            next_at: now + Duration::from_millis(self.rng.random_range(0..150)),
            ..self.blank(&agent)
        };
        self.execs.insert(id, exec);
        *self.counts.entry("executions started").or_default() += 1;
    }

    /// The steps of a start after the slot, each a moment apart so that the tool can see the
    /// world between them: the in-flight marker (and the queue lock, if free), then the row and
    /// its activity; the dispatch follows after a delay.
    fn continue_start(&mut self, id: &str, now: Instant) {
        let exec = &self.execs[id];
        let agent = exec.agent.clone();
        if exec.start_step == 0 {
            let marker = self
                .redis_cmd::<()>(
                    redis::cmd("SET")
                        .arg(format!("execution:inflight:{id}"))
                        .arg("1")
                        .arg("EX")
                        .arg(60),
                )
                .is_some();
            if !marker {
                // Redis went away between the slot and the marker: Trinity gives up the start.
                // The slot stays, row-less with its metadata (inside its TTL: not the tool's).
                let exec = self.execs.get_mut(id).expect("exec");
                (exec.kind, exec.phase, exec.ended) = (Kind::Chat, Phase::Ended, "aborted");
                exec.alive_until = Some(Utc::now());
                self.event(
                    "start aborted",
                    format!("{id} on {agent}: Redis down before its marker"),
                );
                return;
            }
            let queue_lock = self
                .redis_cmd::<Option<String>>(
                    redis::cmd("SET")
                        .arg(format!("agent:running:{agent}"))
                        .arg(serde_json::json!({"id": id}).to_string())
                        .arg("NX"),
                )
                .flatten()
                .is_some();
            let next = now + Duration::from_millis(self.rng.random_range(0..150));
            let exec = self.execs.get_mut(id).expect("exec");
            (exec.marker, exec.queue_lock, exec.start_step, exec.next_at) =
                (marker, queue_lock, 1, next);
            return;
        }
        let (fate, timeout_s, schedule_id) = (exec.fate, exec.timeout_s, exec.schedule_id.clone());
        let started = Utc::now();
        self.db
            .execute(
                "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, started_at, message, triggered_by, claude_session_id) VALUES (?1, ?2, ?3, 'running', ?4, 'work', 'schedule', 'dispatched')",
                params![id, schedule_id, agent, format_time(started)],
            )
            .expect("insert execution");
        self.db
            .execute(
                "INSERT INTO agent_activities (id, agent_name, activity_type, activity_state, started_at, triggered_by, related_execution_id) VALUES (?1, ?2, 'schedule_start', 'started', ?3, 'schedule', ?4)",
                params![format!("act-{id}"), agent, format_time(started), id],
            )
            .expect("insert activity");
        if self.rng.random_bool(0.2) {
            // A tool call that shares the execution's id: never the tool's to close.
            self.db
                .execute(
                    "INSERT INTO agent_activities (id, agent_name, activity_type, activity_state, started_at, triggered_by, related_execution_id) VALUES (?1, ?2, 'tool_call', 'started', ?3, 'schedule', ?4)",
                    params![format!("tool-{id}"), agent, format_time(started), id],
                )
                .expect("insert tool call");
        }
        // Most dispatches are quick; some wait behind a busy backend worker for longer than the
        // grace, so that only the in-flight marker keeps them alive.
        let dispatch = if self.rng.random_bool(0.15) {
            *self
                .counts
                .entry("dispatch slower than the grace")
                .or_default() += 1;
            GRACE + Duration::from_millis(self.rng.random_range(1000..4000))
        } else {
            Duration::from_millis(self.rng.random_range(50..1500))
        };
        let run_time = match fate {
            Fate::Overrun => Duration::from_secs(timeout_s + self.rng.random_range(5..40)),
            Fate::Zombie => Duration::from_secs(self.rng.random_range(30..90)),
            _ if self.rng.random_bool(0.2) => Duration::from_secs(self.rng.random_range(8..14)),
            _ => Duration::from_millis(self.rng.random_range(500..8000)),
        };
        let zombie_at = (fate == Fate::Zombie)
            .then(|| now + dispatch + Duration::from_millis(self.rng.random_range(500..3000)));
        let exec = self.execs.get_mut(id).expect("exec");
        exec.phase = Phase::Dispatching;
        exec.row = RowBelief::Running;
        exec.started = started;
        exec.dispatch_at = now + dispatch;
        exec.run_at = now + dispatch;
        exec.ends_at = now + dispatch + run_time;
        exec.zombie_at = zombie_at;
        if fate != Fate::Normal {
            self.event("fate", format!("{id} on {agent}: {fate:?}"));
        }
    }

    fn step(&mut self, id: &str, now: Instant) {
        let Some(exec) = self.execs.get(id) else {
            return;
        };
        let agent = exec.agent.clone();
        let agent_up = self.agents[&agent].mode == Mode::Up;
        match exec.phase {
            Phase::Starting if now >= exec.next_at => self.continue_start(id, now),
            Phase::Dispatching if now >= exec.dispatch_at && agent_up => {
                let new_image = self.agents[&agent].new_image;
                let pending = new_image && self.rng.random_bool(0.3);
                let wait = if pending && self.rng.random_bool(0.5) {
                    // Accepted, queued behind the agent's own lock past the grace.
                    *self
                        .counts
                        .entry("pending longer than the grace")
                        .or_default() += 1;
                    GRACE + Duration::from_millis(self.rng.random_range(1000..5000))
                } else if pending {
                    Duration::from_millis(self.rng.random_range(100..1500))
                } else {
                    Duration::ZERO
                };
                let marker = exec.marker;
                let exec = self.execs.get_mut(id).expect("exec");
                exec.phase = if pending {
                    Phase::Pending
                } else {
                    Phase::Running
                };
                exec.run_at = now + wait;
                exec.ends_at += wait;
                if let Some(zombie_at) = exec.zombie_at.as_mut() {
                    *zombie_at += wait;
                }
                exec.marker = false;
                if marker {
                    self.redis_cmd::<()>(redis::cmd("DEL").arg(format!("execution:inflight:{id}")));
                }
            }
            Phase::Pending if now >= exec.run_at => {
                self.execs.get_mut(id).expect("exec").phase = Phase::Running;
            }
            Phase::Running if exec.zombie_at.is_some_and(|at| now >= at) => {
                self.execs.get_mut(id).expect("exec").zombie_at = None;
                // A cancel whose terminate never reached the agent.
                if self.write_terminal(id, "cancelled", Some("Cancelled by user")) {
                    self.release(id);
                    self.event(
                        "zombie",
                        format!("{id} on {agent}: row cancelled, process goes on"),
                    );
                }
            }
            Phase::Running if now >= exec.ends_at => {
                self.finish_process(id);
                let exec = self.execs.get_mut(id).expect("exec");
                if exec.kind == Kind::Chat {
                    self.release(id);
                    return;
                }
                if exec.row == RowBelief::Running {
                    if exec.fate == Fate::LoseCompletion {
                        self.event(
                            "backend crash",
                            format!(
                                "{id} on {agent}: completion lost, row stays running, slot held"
                            ),
                        );
                    } else {
                        let gap = Duration::from_millis(self.rng.random_range(0..300));
                        self.execs.get_mut(id).expect("exec").write_at = Some(now + gap);
                    }
                }
            }
            Phase::Ended if exec.write_at.is_some_and(|at| now >= at) => {
                let fate = exec.fate;
                let written = self.write_terminal(id, "success", None);
                self.execs.get_mut(id).expect("exec").write_at = None;
                if written && fate != Fate::LeakSlot {
                    // The release follows the write a moment later, as in Trinity.
                    let at = now + Duration::from_millis(self.rng.random_range(0..200));
                    self.execs.get_mut(id).expect("exec").release_at = Some(at);
                } else if written {
                    self.event(
                        "slot leak",
                        format!("{id} on {agent}: row success, slot never released"),
                    );
                }
            }
            Phase::Ended if exec.release_at.is_some_and(|at| now >= at) => {
                self.execs.get_mut(id).expect("exec").release_at = None;
                self.release(id);
            }
            _ => {}
        }
    }

    /// The process stops on its agent (a newer image remembers it as recently completed).
    fn finish_process(&mut self, id: &str) {
        let exec = self.execs.get_mut(id).expect("exec");
        exec.phase = Phase::Ended;
        exec.alive_until = Some(Utc::now());
        exec.ended = "finished";
        let agent = self.agents.get_mut(&exec.agent).expect("agent");
        if agent.new_image {
            agent.recent.push((id.to_owned(), Instant::now()));
        }
    }

    /// The backend's guarded terminal write, with its activity; false when the row had moved on
    /// (the tool got there first).
    fn write_terminal(&mut self, id: &str, status: &str, error: Option<&str>) -> bool {
        let completed = now_text();
        let exec = &self.execs[id];
        let duration = (Utc::now() - exec.started).num_milliseconds();
        let written = self
            .db
            .execute(
                "UPDATE schedule_executions SET status = ?1, completed_at = ?2, duration_ms = ?3, error = ?4 WHERE id = ?5 AND status = 'running'",
                params![status, completed, duration, error, id],
            )
            .expect("backend write");
        if written == 0 {
            // The tool wrote it first: the check at the end of the batch judges that.
            self.observe_rows(Some(id));
            return false;
        }
        let state = if status == "success" {
            "completed"
        } else {
            "failed"
        };
        self.db
            .execute(
                "UPDATE agent_activities SET activity_state = ?1, completed_at = ?2, duration_ms = ?3 WHERE related_execution_id = ?4 AND activity_state = 'started' AND activity_type = 'schedule_start'",
                params![state, completed, duration, id],
            )
            .expect("activity write");
        self.execs.get_mut(id).expect("exec").row = RowBelief::Terminal {
            status: status.to_owned(),
            completed_at: Some(completed),
            error: error.map(str::to_owned),
        };
        true
    }

    /// The backend releases the execution's capacity (member, metadata, its queue lock).
    fn release(&mut self, id: &str) {
        let (agent, queue_lock, slot) = {
            let exec = &self.execs[id];
            (exec.agent.clone(), exec.queue_lock, exec.slot)
        };
        if !slot {
            return;
        }
        let removed: Option<i64> = self.redis_cmd(
            redis::cmd("ZREM")
                .arg(format!("agent:slots:{agent}"))
                .arg(id),
        );
        let Some(removed) = removed else {
            // Redis is down: the slot leaks, and the tool is to find it.
            self.event(
                "slot leak",
                format!("{id} on {agent}: Redis down at release"),
            );
            return;
        };
        if removed == 0 {
            self.observe_slots();
            return;
        }
        self.redis_cmd::<()>(redis::cmd("DEL").arg(format!("agent:slot:{agent}:{id}")));
        let exec = self.execs.get_mut(id).expect("exec");
        exec.slot = false;
        if queue_lock {
            exec.queue_lock = false;
            self.redis_cmd::<()>(redis::cmd("DEL").arg(format!("agent:running:{agent}")));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Chaos

    /// One chance per call for something to go wrong, from the seed.
    pub fn chaos_step(&mut self) {
        if !self.chaos {
            return;
        }
        let roll = self.rng.random_range(0..1000);
        match roll {
            0..40 => self.restart_agent(),
            40..120 => {
                let agent = self.pick_agent();
                let (mode, what) = match self.rng.random_range(0..3) {
                    0 => (Mode::Refusing, "agent refuses"),
                    1 => (Mode::Error500, "agent answers 500"),
                    _ => (Mode::Stalling, "agent stalls"),
                };
                let lasts = Duration::from_millis(self.rng.random_range(2000..10000));
                let a = self.agents.get_mut(&agent).expect("agent");
                if a.mode == Mode::Up {
                    a.mode = mode;
                    a.mode_until = Instant::now() + lasts;
                    self.event(what, format!("{agent} for {lasts:?}, its work goes on"));
                }
            }
            120..170 => self.rowless_leak(),
            170..220 => self.start_chat(),
            220..300 => self.user_cancel(),
            300..380 => self.arm_completion_at_recheck(),
            _ => {}
        }
    }

    fn restart_agent(&mut self) {
        let agent = self.pick_agent();
        if self.agents[&agent].mode != Mode::Up {
            return;
        }
        let down = Duration::from_millis(self.rng.random_range(500..2500));
        let killed: Vec<String> = self
            .execs
            .iter()
            .filter(|(_, e)| e.agent == agent && e.on_agent())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &killed {
            let exec = self.execs.get_mut(id).expect("exec");
            exec.phase = Phase::Ended;
            exec.alive_until = Some(Utc::now());
            exec.ended = "restart";
        }
        let a = self.agents.get_mut(&agent).expect("agent");
        a.mode = Mode::Restarting;
        a.mode_until = Instant::now() + down;
        a.recent.clear();
        self.event(
            "agent restart",
            format!("{agent} down {down:?}; dead: {}", killed.join(" ")),
        );
    }

    fn rowless_leak(&mut self) {
        let agent = self.pick_agent();
        let id = self.new_id("leak");
        let score = (Utc::now().timestamp() - self.rng.random_range(30..90)) as f64;
        if !self.take_slot(&agent, &id, score, None) {
            return;
        }
        self.execs.insert(
            id.clone(),
            Exec {
                kind: Kind::RowlessLeak,
                row: RowBelief::None,
                phase: Phase::Ended,
                alive_until: Some(Utc::now()),
                ..self.blank(&agent)
            },
        );
        self.event(
            "rowless leak",
            format!("{id} on {agent}: no row, no metadata"),
        );
    }

    fn blank(&self, agent: &str) -> Exec {
        let now = Instant::now();
        Exec {
            agent: agent.to_owned(),
            kind: Kind::Chat,
            fate: Fate::Normal,
            phase: Phase::Running,
            started: Utc::now(),
            timeout_s: 600,
            dispatch_at: now,
            run_at: now,
            ends_at: now,
            alive_until: None,
            write_at: None,
            row: RowBelief::None,
            slot: true,
            marker: false,
            queue_lock: false,
            zombie_at: None,
            ended: "",
            schedule_id: String::new(),
            start_step: 0,
            next_at: now,
            release_at: None,
        }
    }

    /// An older Trinity's chat: a slot inside its TTL and a process, but no row. Live work.
    fn start_chat(&mut self) {
        let agent = self.pick_agent();
        let id = self.new_id("chat");
        let score = Utc::now().timestamp() as f64;
        if !self.take_slot(&agent, &id, score, Some(600)) {
            return;
        }
        let lasts = Duration::from_millis(self.rng.random_range(3000..20000));
        let mut exec = self.blank(&agent);
        exec.ends_at = Instant::now() + lasts;
        self.execs.insert(id.clone(), exec);
        self.event(
            "chat",
            format!("{id} on {agent} for {lasts:?}: slot, process, no row"),
        );
    }

    /// The user cancels a running execution: the backend stops it and writes `cancelled`.
    fn user_cancel(&mut self) {
        let candidates: Vec<String> = self
            .execs
            .iter()
            .filter(|(_, e)| {
                e.kind == Kind::Schedule && e.phase == Phase::Running && e.row == RowBelief::Running
            })
            .map(|(id, _)| id.clone())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let id = candidates[self.rng.random_range(0..candidates.len())].clone();
        let exec = self.execs.get_mut(&id).expect("exec");
        exec.phase = Phase::Ended;
        exec.alive_until = Some(Utc::now());
        exec.ended = "cancel";
        if self.write_terminal(&id, "cancelled", Some("Cancelled by user")) {
            self.release(&id);
        }
        self.event("user cancel", id);
    }

    /// Picks a dead execution whose row is still running (an orphan to be) and has the backend
    /// write it just as the tool re-checks its agent before the writes.
    fn arm_completion_at_recheck(&mut self) {
        let candidates: Vec<(String, String)> = self
            .execs
            .iter()
            .filter(|(_, e)| {
                e.phase == Phase::Ended && e.row == RowBelief::Running && e.write_at.is_none()
            })
            .map(|(id, e)| (id.clone(), e.agent.clone()))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let (id, agent) = candidates[self.rng.random_range(0..candidates.len())].clone();
        let a = self.agents.get_mut(&agent).expect("agent");
        if a.complete_at_recheck.is_none() {
            a.complete_at_recheck = Some(id.clone());
            self.event(
                "armed",
                format!("{id} on {agent}: the backend writes it at the tool's re-check"),
            );
        }
    }

    /// Called by the agent server on each `GET running`: the second one of a batch is the
    /// tool's re-check before its writes.
    pub fn on_get(&mut self, agent: &str) {
        let a = self.agents.get_mut(agent).expect("agent");
        a.gets += 1;
        if a.gets == 2
            && let Some(id) = a.complete_at_recheck.take()
            && self
                .execs
                .get(&id)
                .is_some_and(|e| e.row == RowBelief::Running)
            && self.write_terminal(&id, "success", None)
        {
            self.release(&id);
            self.event(
                "completion at re-check",
                format!("{id} on {agent}: written success between the tool's plan and its apply"),
            );
        }
    }

    /// The agent's lists: (running, pending, recently completed).
    pub fn lists(&self, agent: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut running = Vec::new();
        let mut pending = Vec::new();
        for (id, exec) in &self.execs {
            if exec.agent != agent {
                continue;
            }
            match exec.phase {
                Phase::Running => running.push(id.clone()),
                Phase::Pending => pending.push(id.clone()),
                _ => {}
            }
        }
        let recent = self.agents[agent]
            .recent
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        (running, pending, recent)
    }

    /// The tool asks an agent to terminate `id`: judged against the truth at this instant.
    /// Returns whether the agent ran it.
    pub fn on_terminate(&mut self, agent: &str, id: &str) -> bool {
        self.effects.terminates.insert(id.to_owned());
        let now = Utc::now();
        let Some(exec) = self
            .execs
            .get(id)
            .filter(|e| e.agent == agent && e.on_agent())
        else {
            return false;
        };
        let age = exec.age_at(now);
        let verdict = match (&exec.row, exec.kind) {
            (_, Kind::Chat) => Some(format!(
                "{id} on {agent}: a live chat (no row) was terminated"
            )),
            (RowBelief::Running, _) if age < exec.timeout_s as f64 => Some(format!(
                "{id} on {agent}: terminated at age {age:.1}s, within its timeout of {}s",
                exec.timeout_s
            )),
            (RowBelief::Terminal { completed_at, .. }, _)
                if completed_at
                    .as_deref()
                    .and_then(parse_time)
                    .is_none_or(|at| {
                        now - at < chrono::Duration::from_std(GRACE).expect("grace")
                    }) =>
            {
                Some(format!(
                    "{id} on {agent}: a zombie terminated within the grace of its row's end"
                ))
            }
            _ => None,
        };
        let exec = self.execs.get_mut(id).expect("exec");
        exec.phase = Phase::Ended;
        exec.alive_until = Some(now);
        exec.ended = "tool";
        match verdict {
            Some(detail) => self.violation(Invariant::FalseKill, detail),
            None => self.event(
                "terminated by the tool",
                format!("{id} on {agent} at age {age:.1}s"),
            ),
        }
        true
    }

    // -----------------------------------------------------------------------------------------
    // What the tool did

    /// Compares the rows with what the simulation believes: rows the tool failed are its effects
    /// (judged against the truth when it wrote them), any other change is an overwrite.
    pub fn observe_rows(&mut self, only: Option<&str>) {
        let mut statement = self
            .db
            .prepare_cached("SELECT id, status, completed_at, error FROM schedule_executions")
            .expect("select rows");
        let rows: Vec<(String, String, Option<String>, Option<String>)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query rows")
            .collect::<Result<_, _>>()
            .expect("read rows");
        drop(statement);
        for (id, status, completed_at, error) in rows {
            if only.is_some_and(|only| only != id) {
                continue;
            }
            let Some(exec) = self.execs.get(&id) else {
                continue;
            };
            let seen = RowBelief::Terminal {
                status: status.clone(),
                completed_at: completed_at.clone(),
                error: error.clone(),
            };
            match &exec.row {
                RowBelief::Running if status == "running" => {}
                RowBelief::Running => {
                    let by_tool = status == "failed"
                        && error.as_deref().is_some_and(|e| e.contains("watchdog"));
                    let at = completed_at.as_deref().and_then(parse_time);
                    let alive = at.is_some_and(|at| exec.alive_at(at));
                    // Finished, the backend about to write it: a result the tool took.
                    let finishing = exec.ended == "finished" && exec.write_at.is_some();
                    let new_image = self.agents[&exec.agent].new_image;
                    let detail = format!(
                        "{id} on {}: row written {status} at {} while its work was {} (age {:.1}s, timeout {}s, fate {:?})",
                        exec.agent,
                        completed_at.as_deref().unwrap_or("?"),
                        if alive { "alive" } else { "over" },
                        at.map_or(f64::NAN, |at| exec.age_at(at)),
                        exec.timeout_s,
                        exec.fate
                    );
                    let listed_recent = new_image
                        && self.agents[&exec.agent]
                            .recent
                            .iter()
                            .any(|(r, _)| *r == id);
                    let age = at.map(|at| exec.age_at(at));
                    let well_formed = completed_at.as_deref().is_some_and(|c| {
                        c.len() == 27 && c.ends_with('Z') && parse_time(c).is_some()
                    });
                    self.execs.get_mut(&id).expect("exec").row = seen;
                    self.effects.rows.insert(id.clone());
                    if by_tool && !well_formed {
                        self.violation(
                            Invariant::UnreportedOrInvented,
                            format!(
                                "{detail}: completed_at is not the backend's %Y-%m-%dT%H:%M:%S.%6fZ"
                            ),
                        );
                    } else if by_tool && age.is_some_and(|age| age < GRACE.as_secs_f64()) {
                        self.violation(
                            Invariant::FalseKill,
                            format!("{detail}: failed within its grace"),
                        );
                    } else if by_tool && listed_recent {
                        self.violation(
                            Invariant::FalseKill,
                            format!("{detail}: its agent lists it as recently completed"),
                        );
                    } else if !by_tool {
                        self.violation(
                            Invariant::Overwrite,
                            format!("not the simulation's and not the tool's write: {detail}"),
                        );
                    } else if alive {
                        self.violation(Invariant::FalseKill, detail);
                    } else if finishing {
                        // Not dead: it had succeeded, and the backend was writing it. A result lost.
                        let image = if new_image {
                            "its agent listed it as recently completed"
                        } else {
                            "an older image does not report that moment"
                        };
                        self.violation(
                            Invariant::FalseKill,
                            format!("{detail}; it had finished and the backend was about to write success ({image})"),
                        );
                    } else {
                        self.event("failed by the tool", detail);
                    }
                }
                belief if *belief != seen => {
                    let detail = format!("{id}: {belief:?} became {seen:?}");
                    if error.as_deref().is_some_and(|e| e.contains("watchdog")) {
                        self.effects.rows.insert(id.clone());
                    }
                    self.execs.get_mut(&id).expect("exec").row = seen;
                    self.violation(Invariant::Overwrite, detail);
                }
                _ => {}
            }
        }
    }

    /// Compares Redis with what the simulation believes: members the tool removed are its
    /// effects; removing live work's slot, a sentinel, a marker or a live queue lock is a violation.
    pub fn observe_slots(&mut self) {
        if self.redis.is_none() {
            return;
        }
        let agents: Vec<String> = self.agents.keys().cloned().collect();
        let mut members: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for agent in &agents {
            let Some(list): Option<Vec<(String, f64)>> = self.redis_cmd(
                redis::cmd("ZRANGE")
                    .arg(format!("agent:slots:{agent}"))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            ) else {
                return;
            };
            members.insert(agent.clone(), list.into_iter().collect());
        }
        let held: Vec<String> = self
            .execs
            .iter()
            .filter(|(_, e)| e.slot)
            .map(|(id, _)| id.clone())
            .collect();
        for id in held {
            let exec = &self.execs[&id];
            if members[&exec.agent].contains_key(&id) {
                continue;
            }
            let live = exec.alive() && !matches!(exec.row, RowBelief::Terminal { .. });
            // Rows are observed first: a row still running here had no won write.
            let unwritten = exec.row == RowBelief::Running;
            let detail = format!(
                "{id} on {}: slot released while {} ({:?}, {:?})",
                exec.agent,
                if live {
                    "its work is alive"
                } else {
                    "its work is over"
                },
                exec.kind,
                exec.phase
            );
            self.execs.get_mut(&id).expect("exec").slot = false;
            self.effects.slots.insert(id.clone());
            if live || unwritten {
                self.violation(
                    Invariant::LiveSlotRelease,
                    format!("{detail}; row still running: {unwritten}"),
                );
            } else {
                self.event("released by the tool", detail);
            }
        }
        for (agent, member, score) in self.sentinels.clone() {
            if members[&agent].get(&member) != Some(&score) {
                self.violation(
                    Invariant::TouchedSentinel,
                    format!("{member} on {agent} removed or changed"),
                );
                let _ = self.redis_cmd::<()>(
                    redis::cmd("ZADD")
                        .arg(format!("agent:slots:{agent}"))
                        .arg(score)
                        .arg(&member),
                );
            }
        }
        let watched: Vec<(String, String, bool, bool)> = self
            .execs
            .iter()
            .filter(|(_, e)| e.alive() && (e.marker || e.queue_lock))
            .map(|(id, e)| (id.clone(), e.agent.clone(), e.marker, e.queue_lock))
            .collect();
        for (id, agent, marker, queue_lock) in watched {
            if marker {
                let present: Option<bool> =
                    self.redis_cmd(redis::cmd("EXISTS").arg(format!("execution:inflight:{id}")));
                if present == Some(false) {
                    self.execs.get_mut(&id).expect("exec").marker = false;
                    self.violation(
                        Invariant::TouchedSentinel,
                        format!("in-flight marker of live {id} deleted"),
                    );
                }
            }
            if queue_lock {
                let lock: Option<Option<String>> =
                    self.redis_cmd(redis::cmd("GET").arg(format!("agent:running:{agent}")));
                if lock.is_some_and(|lock| !lock.is_some_and(|l| l.contains(&id))) {
                    self.execs.get_mut(&id).expect("exec").queue_lock = false;
                    self.violation(
                        Invariant::TouchedSentinel,
                        format!("queue lock agent:running:{agent} of live {id} deleted"),
                    );
                }
            }
        }
    }

    /// After the quiet period: what the tool should have cleaned up and did not.
    pub fn check_missed(&mut self) {
        let mut missed = Vec::new();
        for (id, exec) in &self.execs {
            let settling = exec.write_at.is_some()
                || exec.release_at.is_some()
                || exec
                    .alive_until
                    .is_some_and(|until| Utc::now() - until < chrono::Duration::seconds(1));
            if exec.kind == Kind::Schedule
                && exec.phase == Phase::Ended
                && exec.row == RowBelief::Running
                && !settling
            {
                missed.push(format!(
                    "orphan {id} on {} (fate {:?}): row still running, its work is dead",
                    exec.agent, exec.fate
                ));
            }
            // A chat's slot inside its TTL is left alone by design, even when it leaked.
            if exec.slot
                && !exec.alive()
                && exec.kind != Kind::Chat
                && exec.row != RowBelief::Running
                && !settling
            {
                missed.push(format!(
                    "leak {id} on {} ({:?}): slot still held",
                    exec.agent, exec.kind
                ));
            }
            // A zombie is the tool's only once its row has been terminal for the grace.
            let terminal_since = match &exec.row {
                RowBelief::Terminal { completed_at, .. } => {
                    completed_at.as_deref().and_then(parse_time)
                }
                _ => None,
            };
            if exec.on_agent()
                && terminal_since.is_some_and(|at| {
                    Utc::now() - at > chrono::Duration::from_std(GRACE * 3).expect("grace")
                })
            {
                missed.push(format!(
                    "zombie {id} on {}: still running, its row is terminal",
                    exec.agent
                ));
            }
            if exec.phase == Phase::Running
                && exec.row == RowBelief::Running
                && exec.age_at(Utc::now()) > exec.timeout_s as f64 + 10.0
            {
                missed.push(format!(
                    "timeout {id} on {}: running {:.0}s, timeout {}s",
                    exec.agent,
                    exec.age_at(Utc::now()),
                    exec.timeout_s
                ));
            }
        }
        // Whoever wins the terminal write closes the paired activity.
        let open: Vec<String> = self
            .db
            .prepare(
                "SELECT e.id FROM schedule_executions e JOIN agent_activities a ON a.related_execution_id = e.id \
                 WHERE e.status != 'running' AND a.activity_state = 'started' AND a.activity_type = 'schedule_start'",
            )
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("query activities");
        for id in open {
            missed.push(format!("activity of terminal row {id} still started"));
        }
        // A tool call is never closed by anyone here; a lost write closes nothing.
        let wrong: Vec<(String, String, String, String)> = self
            .db
            .prepare(
                "SELECT e.id, e.status, a.activity_type, a.activity_state FROM schedule_executions e \
                 JOIN agent_activities a ON a.related_execution_id = e.id \
                 WHERE (a.activity_type = 'tool_call' AND a.activity_state != 'started') \
                    OR (a.activity_type = 'schedule_start' AND e.status = 'success' AND a.activity_state != 'completed')",
            )
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect())
            .expect("query activities");
        for (id, status, kind, state) in wrong {
            self.violation(
                Invariant::Overwrite,
                format!("{kind} activity of {id} ({status}) is {state}"),
            );
        }
        for detail in missed {
            self.violation(Invariant::Missed, detail);
        }
    }
}
