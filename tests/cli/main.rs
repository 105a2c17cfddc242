//! End-to-end tests: the real binary against a real SQLite file, fake agents over HTTP and a
//! throwaway redis-server.

mod events;
#[path = "../harness/mod.rs"]
mod harness;
mod operations;
mod reliability;
mod shards;
mod tls;
mod trust;
mod whole;

use std::process::Command;
use std::sync::Arc;

use harness::*;
use serde_json::Value;

/// The environment variables the tool reads (its own and libpq's): no test's run inherits them.
const TOOL_ENV: [&str; 10] = [
    "TRINITY_CA_CERT",
    "TRINITY_DB_PATH",
    "DATABASE_URL",
    "REDIS_URL",
    "AGENT_AUTH_SECRET",
    "TRINITY_AGENT_URL_TEMPLATE",
    "NO_COLOR",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "SSL_CERT_FILE",
];

/// The binary under test: `TRINITY_WATCHDOG_BIN` when set (a release build, or an older build to
/// show that a test fails there), else the one cargo built for the tests.
fn bin() -> std::path::PathBuf {
    std::env::var_os("TRINITY_WATCHDOG_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_trinity-watchdog").into())
}

/// A command for the binary under test with a clean environment: the one place every test's
/// run gets its environment from.
fn command() -> Command {
    let mut command = Command::new(bin());
    for variable in TOOL_ENV {
        command.env_remove(variable);
    }
    command
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// `(execution_id, verdict, action, outcome)` of every item.
    fn items(&self) -> Vec<(String, String, String, String)> {
        self.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| {
                let s = |key: &str| item[key].as_str().unwrap_or("null").to_owned();
                (s("execution_id"), s("verdict"), s("action"), s("outcome"))
            })
            .collect()
    }

    fn item(&self, id: &str) -> Value {
        self.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["execution_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no item {id}: {}", self.stdout))
    }

    /// The `error` of one item ("" when null).
    fn error(&self, id: &str) -> String {
        self.item(id)["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn actions(&self) -> u64 {
        self.json()["summary"]["actions"]
            .as_u64()
            .expect("summary.actions")
    }
}

impl From<std::process::Output> for Out {
    fn from(output: std::process::Output) -> Out {
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn run(args: &[&str]) -> Out {
    command()
        .args(args)
        .output()
        .expect("run trinity-watchdog")
        .into()
}

/// A Trinity deployment: database, agent fleet and (usually) Redis.
struct World {
    db: TrinityDb,
    fleet: Fleet,
    redis: Option<RedisServer>,
}

impl World {
    fn new() -> World {
        let redis =
            RedisServer::start().expect("redis-server must be on PATH (.ci/run installs it)");
        World {
            db: TrinityDb::new(),
            fleet: Fleet::start(),
            redis: Some(redis),
        }
    }

    fn without_redis() -> World {
        World {
            db: TrinityDb::new(),
            fleet: Fleet::start(),
            redis: None,
        }
    }

    fn redis(&self) -> redis::Connection {
        self.redis.as_ref().expect("world has redis").conn()
    }

    /// Runs `command` with the world's sources given after the subcommand (global options may
    /// stand there too).
    fn run(&self, command: &[&str]) -> Out {
        let template = self.fleet.template();
        let redis_url = self.redis.as_ref().map(|r| r.url());
        let db = self.db.args();
        let mut args: Vec<&str> = command.to_vec();
        args.extend(db.iter().map(String::as_str));
        args.extend(["--agent-url", &template, "--http-timeout", "2s"]);
        match &redis_url {
            Some(url) => args.extend(["--redis-url", url.as_str()]),
            None => args.push("--no-redis"),
        }
        run(&args)
    }

    fn scan_json(&self) -> Out {
        let out = self.run(&["scan", "-o", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    }

    fn apply_json(&self, command: &str) -> Out {
        self.run(&[command, "--apply", "-o", "json"])
    }

    /// After an apply, the next dry run must find nothing to do.
    fn assert_converged(&self) {
        let again = self.scan_json();
        assert_eq!(
            again.actions(),
            0,
            "second run still plans actions: {:?}",
            again.items()
        );
    }
}

fn item(id: &str, verdict: &str, action: &str, outcome: &str) -> (String, String, String, String) {
    (id.into(), verdict.into(), action.into(), outcome.into())
}

#[test]
fn orphaned_row_is_failed_and_its_capacity_released() {
    let w = World::new();
    w.db.add_agent("alpha", Some(900));
    w.db.add_execution("orphan-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "orphan-1", unix_ago(600), Some(900));
    set_key(
        &mut r,
        "agent:running:alpha",
        r#"{"id": "orphan-1", "started_at": "x"}"#,
    );

    let dry = w.scan_json();
    assert_eq!(dry.items(), [item("orphan-1", "orphaned", "fail", "null")]);
    assert_eq!(dry.item("orphan-1")["timeout_source"], "agent");
    assert_eq!(
        w.db.row("orphan-1").status,
        "running",
        "a dry run changes nothing"
    );
    assert!(exists(&mut r, "agent:running:alpha"));

    let applied = w.apply_json("scan");
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(
        applied.items(),
        [item("orphan-1", "orphaned", "fail", "applied")]
    );
    let row = w.db.row("orphan-1");
    assert_eq!(row.status, "failed");
    assert_eq!(
        row.error.as_deref(),
        Some(
            "Execution not tracked by agent 'alpha' (not running, not pending, not recently completed) — recovered by watchdog"
        )
    );
    assert_eq!(row.duration_ms, None, "an orphan's real end is unknown");
    let completed = row.completed_at.expect("completed_at written");
    assert!(
        chrono::NaiveDateTime::parse_from_str(&completed, "%Y-%m-%dT%H:%M:%S%.6fZ").is_ok()
            && completed.len() == 27,
        "{completed}"
    );
    assert!(slot_members(&mut r, "alpha").is_empty());
    assert!(!exists(&mut r, "agent:slot:alpha:orphan-1"));
    assert!(
        !exists(&mut r, "agent:running:alpha"),
        "the queue lock named this execution"
    );
    assert!(
        w.fleet.terminate_calls().is_empty(),
        "an orphan is never terminated"
    );
    w.assert_converged();
}

#[test]
fn timed_out_process_is_terminated_then_failed() {
    let w = World::new();
    w.db.add_agent("alpha", Some(900));
    w.db.add_schedule("sched-1", "alpha", Some(60));
    w.db.add_execution_on("slow-1", "alpha", "running", &ago(300), "sched-1");
    w.fleet.set("alpha", FakeAgent::running(&["slow-1"]));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "slow-1", unix_ago(300), Some(60));
    set_key(&mut r, "agent:running:alpha", r#"{"id": "someone-else"}"#);

    let dry = w.scan_json();
    assert_eq!(
        dry.items(),
        [item("slow-1", "timed_out", "terminate_and_fail", "null")]
    );
    assert_eq!(dry.item("slow-1")["timeout_source"], "schedule");
    assert_eq!(dry.item("slow-1")["timeout_seconds"], 60);
    assert!(w.fleet.terminate_calls().is_empty());

    let applied = w.apply_json("kill");
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(
        applied.items(),
        [item("slow-1", "timed_out", "terminate_and_fail", "applied")]
    );
    assert_eq!(
        w.fleet.terminate_calls(),
        [("alpha".to_string(), "slow-1".to_string())]
    );
    let row = w.db.row("slow-1");
    assert_eq!(row.status, "failed");
    assert_eq!(
        row.error.as_deref(),
        Some("Execution auto-terminated after 5 minutes by watchdog (exceeded timeout of 60s)")
    );
    let duration = row.duration_ms.expect("duration written");
    assert!((299_000..=330_000).contains(&duration), "{duration}");
    assert!(slot_members(&mut r, "alpha").is_empty());
    assert!(
        exists(&mut r, "agent:running:alpha"),
        "another execution's queue lock survives"
    );
    w.assert_converged();
}

#[test]
fn zombie_process_is_terminated_and_its_row_left_alone() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_execution("done-1", "alpha", "success", &ago(900));
    let before = w.db.row("done-1");
    w.fleet
        .set("alpha", FakeAgent::running(&["done-1", "mystery"]));

    let dry = w.scan_json();
    assert_eq!(
        dry.items(),
        [
            item("done-1", "zombie", "terminate", "null"),
            item("mystery", "untracked", "none", "null")
        ]
    );
    assert_eq!(dry.item("mystery")["status"], Value::Null);

    let applied = w.apply_json("scan");
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(applied.item("done-1")["outcome"], "applied");
    assert_eq!(
        applied.item("mystery")["outcome"],
        Value::Null,
        "untracked has no action"
    );
    assert_eq!(
        w.fleet.terminate_calls(),
        [("alpha".to_string(), "done-1".to_string())]
    );
    assert_eq!(
        w.db.row("done-1"),
        before,
        "a terminal row is never written"
    );
    w.assert_converged();
}

#[test]
fn leaked_slots_are_released_and_everything_else_kept() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_execution("done-1", "alpha", "cancelled", &ago(900));
    w.db.add_execution("live-1", "alpha", "running", &ago(30));
    w.db.add_execution("queued-1", "alpha", "queued", &ago(30));
    w.fleet.set("alpha", FakeAgent::running(&["live-1"]));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "done-1", unix_ago(900), Some(900));
    add_slot(&mut r, "alpha", "live-1", unix_ago(30), Some(900));
    add_slot(&mut r, "alpha", "queued-1", unix_ago(9000), Some(60));
    add_slot(&mut r, "alpha", "drain-42", unix_ago(99_999), None);
    add_slot(&mut r, "alpha", "chat-expired", unix_ago(100), None);
    add_slot(&mut r, "alpha", "chat-live", unix_ago(100), Some(900));
    set_key(&mut r, "agent:running:alpha", "not json at all");

    let dry = w.run(&["recover", "-o", "json"]);
    assert_eq!(
        dry.items(),
        [
            item("chat-expired", "leaked_slot", "release_slot", "null"),
            item("done-1", "leaked_slot", "release_slot", "null")
        ]
    );
    let applied = w.apply_json("recover");
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(applied.by_outcome(), [("applied".to_string(), 2)]);
    let mut left = slot_members(&mut r, "alpha");
    left.sort();
    assert_eq!(left, ["chat-live", "drain-42", "live-1", "queued-1"]);
    assert!(!exists(&mut r, "agent:slot:alpha:done-1"));
    assert!(exists(&mut r, "agent:slot:alpha:live-1"));
    assert!(
        exists(&mut r, "agent:running:alpha"),
        "a lock that is not this execution's survives"
    );
    assert_eq!(
        w.db.row("done-1").status,
        "cancelled",
        "a cancelled row is never touched"
    );
    assert!(w.fleet.terminate_calls().is_empty());
    w.assert_converged();
}

impl Out {
    fn by_outcome(&self) -> Vec<(String, u64)> {
        let map = self.json()["summary"]["by_outcome"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        map.into_iter()
            .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
            .collect()
    }
}

#[test]
fn live_work_takes_no_action() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_execution("running-1", "alpha", "running", &ago(100));
    w.db.add_execution("new-1", "alpha", "running", &ago(10));
    w.db.add_execution("dispatching-1", "alpha", "running", &ago(600));
    w.db.add_execution("pending-1", "alpha", "running", &ago(5000));
    w.db.add_execution("finishing-1", "alpha", "running", &ago(5000));
    w.db.add_execution(
        "naive-1",
        "alpha",
        "running",
        &ago(50)[..26].replace('T', " "),
    );
    w.db.add_execution("leased-1", "alpha", "running", &ago(99_999));
    w.db.execute("ALTER TABLE schedule_executions ADD COLUMN lease_expires_at TEXT");
    w.db.set("leased-1", &format!("lease_expires_at = '{}'", ago(-60)));
    let mut agent = FakeAgent::running(&["running-1"]);
    agent.pending = Some(vec!["pending-1".into()]);
    agent.recently_completed = Some(vec!["finishing-1".into()]);
    w.fleet.set("alpha", agent);
    let mut r = w.redis();
    set_key(&mut r, "execution:inflight:dispatching-1", "1");

    let applied = w.apply_json("scan");
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(
        applied.items(),
        [
            item("dispatching-1", "in_flight", "none", "null"),
            item("finishing-1", "healthy", "none", "null"),
            item("naive-1", "grace", "none", "null"),
            item("new-1", "grace", "none", "null"),
            item("pending-1", "healthy", "none", "null"),
            item("running-1", "healthy", "none", "null"),
        ]
    );
    for id in [
        "running-1",
        "new-1",
        "dispatching-1",
        "pending-1",
        "finishing-1",
        "naive-1",
        "leased-1",
    ] {
        assert_eq!(w.db.row(id).status, "running", "{id}");
    }
    assert!(w.fleet.terminate_calls().is_empty());
}

#[test]
fn unreachable_agents_rows_are_untouched() {
    let w = World::new();
    for agent in ["broken", "refusing", "garbled", "slow"] {
        w.db.add_agent(agent, None);
    }
    w.db.add_execution("a-1", "broken", "running", &ago(99_999));
    w.db.add_execution("b-1", "refusing", "running", &ago(99_999));
    w.db.add_execution("c-1", "garbled", "running", &ago(99_999));
    w.db.add_execution("d-1", "slow", "running", &ago(99_999));
    w.fleet
        .set("broken", FakeAgent::answering(Answer::Status(500)));
    w.fleet.set(
        "garbled",
        FakeAgent::answering(Answer::Raw("<html>502 Bad Gateway</html>".into())),
    );
    w.fleet.set("slow", FakeAgent::answering(Answer::Hang));
    // "refusing" is not served: the fleet answers 404 for it.

    let out = w.run(&["scan", "--apply", "--exit-code", "-o", "json"]);
    assert_eq!(
        out.code, 4,
        "unreachable agents make --exit-code fail: {}",
        out.stderr
    );
    assert!(
        out.items()
            .iter()
            .all(|(_, verdict, action, _)| verdict == "unreachable" && action == "none"),
        "{:?}",
        out.items()
    );
    let agents = out.json()["agents"].clone();
    let reason = |name: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(reason("broken").contains("500"), "{}", reason("broken"));
    assert!(
        reason("garbled").contains("not JSON"),
        "{}",
        reason("garbled")
    );
    assert!(
        reason("slow").contains("no answer within 2s"),
        "{}",
        reason("slow")
    );
    assert!(reason("refusing").contains("404"), "{}", reason("refusing"));
    for id in ["a-1", "b-1", "c-1", "d-1"] {
        assert_eq!(w.db.row(id).status, "running");
    }
}

#[test]
fn connection_refused_is_unreachable_not_dead() {
    let w = World::new();
    // An agent Trinity still owns: unknown is never dead, however old the row.
    w.db.add_agent("alpha", None);
    w.db.add_execution("x-1", "alpha", "running", &ago(99_999));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let template = format!("http://127.0.0.1:{closed}/{{agent}}");
    let out = run(&[
        "scan",
        "--apply",
        "-o",
        "json",
        "--db",
        w.db.path(),
        "--agent-url",
        &template,
        "--no-redis",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.items(), [item("x-1", "unreachable", "none", "null")]);
    assert!(
        out.json()["agents"][0]["error"]
            .as_str()
            .unwrap()
            .contains("onnect"),
        "{}",
        out.stdout
    );
    assert_eq!(w.db.row("x-1").status, "running");
}

#[test]
fn terminate_failure_leaves_row_and_slot_alone() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.fleet.set(
        "alpha",
        FakeAgent {
            on_terminate: OnTerminate::Status(500),
            ..FakeAgent::running(&["slow-1"])
        },
    );
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "slow-1", unix_ago(600), Some(60));

    let out = w.apply_json("scan");
    assert_eq!(out.code, 3, "a failed action exits 3: {}", out.stderr);
    assert_eq!(
        out.items(),
        [item("slow-1", "timed_out", "terminate_and_fail", "failed")]
    );
    assert!(out.error("slow-1").contains("500"));
    assert_eq!(w.db.row("slow-1").status, "running");
    assert_eq!(slot_members(&mut r, "alpha"), ["slow-1"]);
}

#[test]
fn terminate_404_is_skipped_and_row_untouched() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.fleet.set(
        "alpha",
        FakeAgent {
            on_terminate: OnTerminate::Status(404),
            ..FakeAgent::running(&["slow-1"])
        },
    );
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [item("slow-1", "timed_out", "terminate_and_fail", "skipped")]
    );
    assert_eq!(w.db.row("slow-1").status, "running");
}

#[test]
fn row_that_completes_between_plan_and_apply_is_race_lost() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_execution("racy-1", "alpha", "running", &ago(600));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "racy-1", unix_ago(600), Some(900));
    // The backend finishes the row while we re-check the agent, just before the guarded write.
    let db = w.db.handle.clone();
    let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 2 {
            db.execute("UPDATE schedule_executions SET status='cancelled', error='by user' WHERE id='racy-1'");
        }
    }));
    w.fleet.set(
        "alpha",
        FakeAgent {
            hook: Some(hook),
            ..FakeAgent::running(&[])
        },
    );

    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "race_lost is not an error: {}", out.stderr);
    assert_eq!(
        out.items(),
        [item("racy-1", "orphaned", "fail", "race_lost")]
    );
    let row = w.db.row("racy-1");
    assert_eq!(
        (row.status.as_str(), row.error.as_deref()),
        ("cancelled", Some("by user"))
    );
    assert_eq!(
        slot_members(&mut r, "alpha"),
        ["racy-1"],
        "capacity is released only after the write won"
    );
}

#[test]
fn orphan_is_skipped_when_the_agent_stops_answering_before_apply() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", FakeAgent::answering(Answer::ListsThenFail(1)));
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.items(), [item("o-1", "orphaned", "fail", "skipped")]);
    assert!(out.error("o-1").contains("re-check"));
    assert_eq!(w.db.row("o-1").status, "running");
}

#[test]
fn orphan_is_skipped_when_the_agent_knows_it_at_the_recheck() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    // The agent accepts the execution (pending) between the plan and the re-check before apply.
    let hook = Hook(Arc::new(|kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 2 {
            agent.pending = Some(vec!["o-1".into()]);
        }
    }));
    w.fleet.set(
        "alpha",
        FakeAgent {
            hook: Some(hook),
            ..FakeAgent::running(&[])
        },
    );
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.items(), [item("o-1", "orphaned", "fail", "skipped")]);
    assert!(out.error("o-1").contains("reports it again"));
    assert_eq!(w.db.row("o-1").status, "running");
}

#[test]
fn kill_terminates_exactly_the_named_executions() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("mine", "alpha", "running", &ago(10));
    w.db.add_execution("also-slow", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", FakeAgent::running(&["mine", "also-slow", "stray"]));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "mine", unix_ago(10), Some(60));

    let out = w.run(&["kill", "mine", "stray", "--apply", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [
            item("mine", "requested", "terminate_and_fail", "applied"),
            item("stray", "requested", "terminate", "applied")
        ]
    );
    let mut calls = w.fleet.terminate_calls();
    calls.sort();
    assert_eq!(
        calls,
        [
            ("alpha".into(), "mine".into()),
            ("alpha".into(), "stray".into())
        ]
    );
    let row = w.db.row("mine");
    assert_eq!(row.status, "failed");
    assert_eq!(
        row.error.as_deref(),
        Some("Execution terminated by operator (trinity-watchdog kill)")
    );
    assert!(row.duration_ms.is_some());
    assert_eq!(
        w.db.row("also-slow").status,
        "running",
        "not named, not touched"
    );
    assert!(slot_members(&mut r, "alpha").is_empty());
}

#[test]
fn recover_never_terminates() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.db.add_execution("done-1", "alpha", "success", &ago(900));
    w.db.add_execution("orphan-1", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", FakeAgent::running(&["slow-1", "done-1"]));
    let out = w.apply_json("recover");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [item("orphan-1", "orphaned", "fail", "applied")]
    );
    assert!(w.fleet.terminate_calls().is_empty());
    assert_eq!(w.db.row("slow-1").status, "running");
}

#[test]
fn json_document_has_the_stable_shape() {
    let w = World::without_redis();
    w.db.add_agent("alpha", None);
    w.db.add_agent("idle", None);
    w.db.add_execution("h-1", "alpha", "running", &ago(5));
    w.fleet.set(
        "alpha",
        FakeAgent {
            recently_completed: None,
            pending: None,
            ..FakeAgent::running(&["h-1"])
        },
    );
    w.fleet.set("idle", FakeAgent::running(&[]));
    let out = w.run(&["-o", "json", "scan"]);
    assert_eq!(out.stdout.lines().count(), 1, "one line to a pipe");
    let doc = out.json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["command"], "scan");
    assert_eq!(doc["mode"], "dry_run");
    assert!(doc["generated_at"].as_str().unwrap().ends_with('Z'));
    // The default concurrency depends on this machine's descriptor limit (tests/cli/shards.rs).
    let concurrency = doc["settings"]["concurrency"]
        .as_u64()
        .expect("concurrency");
    assert!((1..=512).contains(&concurrency), "{concurrency}");
    assert_eq!(
        doc["settings"],
        serde_json::json!({"grace_seconds": 60, "default_timeout_seconds": 3600,
                           "concurrency": concurrency, "redis": false})
    );
    let alpha = &doc["agents"][0];
    assert_eq!(
        (
            alpha["name"].as_str(),
            alpha["reachable"].as_bool(),
            alpha["running"].as_u64()
        ),
        (Some("alpha"), Some(true), Some(1))
    );
    assert_eq!(
        alpha["recently_completed"],
        Value::Null,
        "an old image does not report it"
    );
    assert_eq!(
        doc["agents"][1]["name"], "idle",
        "owned agents are asked even when idle"
    );
    let item = &doc["items"][0];
    for key in [
        "execution_id",
        "agent",
        "verdict",
        "action",
        "reason",
        "status",
        "age_seconds",
        "timeout_seconds",
        "timeout_source",
        "outcome",
        "error",
        "activities_closed",
    ] {
        assert!(item.get(key).is_some(), "item lacks {key}");
    }
    assert_eq!(alpha["findings"], serde_json::json!([]));
    assert_eq!(
        doc["summary"],
        serde_json::json!({"items": 1, "actions": 0, "unreachable_agents": 0, "by_verdict": {"healthy": 1}, "by_outcome": {}, "by_finding": {}, "activities_closed": 0, "events": null, "events_published": 0, "events_failed": 0})
    );
    assert_eq!(
        (doc["refused"].clone(), doc["interrupted"].clone()),
        (Value::Null, Value::Bool(false))
    );
    for phase in ["database_ms", "agents_ms", "redis_ms", "apply_ms"] {
        assert!(
            doc["timings"][phase].is_u64(),
            "timings.{phase}: {}",
            doc["timings"]
        );
    }
}

#[test]
fn table_shows_the_plan_and_a_summary() {
    let w = World::without_redis();
    w.db.add_execution("h-1", "alpha", "running", &ago(5));
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&["h-1"]));
    let out = w.run(&["scan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("o-1") && out.stdout.contains("orphaned"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("h-1"),
        "healthy rows only with --all:\n{}",
        out.stdout
    );
    let summary = out.stdout.lines().last().unwrap();
    assert!(
        summary.contains("2 items (1 healthy, 1 orphaned)")
            && summary.contains("capacity not checked"),
        "{summary}"
    );
    assert!(
        out.stderr.contains("capacity slots are not checked"),
        "{}",
        out.stderr
    );
    let all = w.run(&["scan", "--all"]);
    assert!(all.stdout.contains("h-1"), "{}", all.stdout);
}

#[test]
fn agent_filter_limits_what_is_asked_and_planned() {
    let w = World::without_redis();
    w.db.add_execution("a-1", "alpha", "running", &ago(600));
    w.db.add_execution("b-1", "beta", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    w.fleet.set("beta", FakeAgent::running(&[]));
    let out = w.run(&["scan", "--agent", "beta", "-o", "json", "--apply"]);
    assert_eq!(out.items(), [item("b-1", "orphaned", "fail", "applied")]);
    assert!(w.fleet.calls().iter().all(|call| call.agent == "beta"));
    assert_eq!(w.db.row("a-1").status, "running");
}

#[test]
fn agent_secret_signs_every_call_and_is_never_printed() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&["slow-1"]));
    let secret = "s3cret-value";
    for output in ["json", "table"] {
        let out = w.run(&[
            "scan",
            "--apply",
            "-v",
            "-o",
            output,
            "--agent-secret",
            secret,
        ]);
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    }
    let calls = w.fleet.calls();
    assert!(calls.iter().any(|c| c.method == "POST"));
    for call in calls {
        // hmac-sha256(secret, "trinity-agent-auth:v1:alpha"), computed independently with Python.
        assert_eq!(
            call.token.as_deref(),
            Some("3462f9ed99520431ec5ab8034a30befd1186c5c4b3beea07146b8bd5258e1dc5"),
            "{call:?}"
        );
    }
}

#[test]
fn redis_password_is_never_printed() {
    let w = World::without_redis();
    let redis = RedisServer::start_with(&["--requirepass", "hunter2-pw"]).expect("redis-server");
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let template = w.fleet.template();
    let good = format!("redis://:hunter2-pw@127.0.0.1:{}/0", redis.port);
    let out = run(&[
        "scan",
        "-o",
        "json",
        "--db",
        w.db.path(),
        "--agent-url",
        &template,
        "--redis-url",
        &good,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["settings"]["redis"], true);
    assert!(
        !out.stdout.contains("hunter2-pw") && !out.stderr.contains("hunter2-pw"),
        "a successful run prints no password either"
    );
    let bad = format!("redis://:wrong-pw-123@127.0.0.1:{}/0", redis.port);
    let out = run(&[
        "scan",
        "--db",
        w.db.path(),
        "--agent-url",
        &template,
        "--redis-url",
        &bad,
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("***") && !out.stderr.contains("wrong-pw-123"),
        "{}",
        out.stderr
    );
}

#[test]
fn redis_unreachable_when_configured_is_fatal() {
    let w = World::without_redis();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{closed}");
    let out = run(&["scan", "--db", w.db.path(), "--redis-url", &url]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot connect to Redis"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_database_is_a_clear_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = missing_path(dir.path());
    let flat = dir.path().join("absent.db");
    for (db, extra) in [(&path, None), (&flat, None), (&flat, Some("--apply"))] {
        let mut args = vec!["scan", "--db", db.to_str().unwrap(), "--no-redis"];
        args.extend(extra);
        let out = run(&args);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("does not exist") && out.stderr.contains(db.to_str().unwrap()),
            "{}",
            out.stderr
        );
        assert!(!db.exists(), "no file may be created");
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn a_database_that_is_not_trinitys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    let garbage = "this is not a database, just text that is long enough to look like a header";
    std::fs::write(&text, garbage).unwrap();
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let partial = dir.path().join("partial.db");
    rusqlite::Connection::open(&partial)
        .unwrap()
        .execute_batch("CREATE TABLE schedule_executions (id TEXT, agent_name TEXT, status TEXT)")
        .unwrap();
    for (db, message) in [
        (&text, "not a database"),
        (&other, "no table schedule_executions"),
        (&partial, "lacks column(s) schedule_id, started_at"),
    ] {
        let out = run(&["scan", "--db", db.to_str().unwrap(), "--no-redis"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains(message), "{message}: {}", out.stderr);
    }
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        garbage,
        "the file is left as it was"
    );
}

#[test]
fn garbage_rows_are_skipped_with_a_warning() {
    let w = World::without_redis();
    w.db.add_execution("bad-time", "alpha", "running", "last tuesday");
    w.db.add_execution("empty-agent", "", "running", &ago(600));
    w.db.add_execution("good", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let out = w.run(&["scan", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [
            item("bad-time", "orphaned", "fail", "null"),
            item("good", "orphaned", "fail", "null")
        ]
    );
    assert!(
        out.item("bad-time")["reason"]
            .as_str()
            .unwrap()
            .contains("age is unknown")
    );
    assert!(
        out.stderr.contains("empty-agent") && out.stderr.contains("no agent_name"),
        "{}",
        out.stderr
    );
}

#[test]
fn exit_codes_0_and_2_and_4() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    assert_eq!(w.run(&["scan"]).code, 0);
    assert_eq!(w.run(&["scan", "--exit-code"]).code, 4);
    let usage = run(&["scan", "--no-such-flag"]);
    assert_eq!(usage.code, 2);
    assert!(usage.stderr.contains("--no-such-flag"));
    assert_eq!(run(&["scan", "--grace", "soon"]).code, 2);
    assert_eq!(run(&["--help"]).code, 0);
    // After the apply the plan is empty, so --exit-code is satisfied.
    assert_eq!(w.run(&["scan", "--apply"]).code, 0);
    assert_eq!(w.run(&["scan", "--exit-code"]).code, 0);
}

#[test]
fn bad_agent_url_template_is_a_configuration_error() {
    let w = World::without_redis();
    for template in ["http://agents:8000", "ftp://{agent}", "{agent}"] {
        let out = run(&[
            "scan",
            "--db",
            w.db.path(),
            "--no-redis",
            "--agent-url",
            template,
        ]);
        assert_eq!(out.code, 1, "{template}: {}", out.stderr);
        assert!(out.stderr.contains("agent URL template"), "{}", out.stderr);
    }
}

#[test]
fn help_and_readme_show_the_same_exit_code_table() {
    let help = run(&["--help"]).stdout;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = trinity_watchdog::ExitCode::table();
    assert!(
        help.contains(&table),
        "--help lacks the exit-code table:\n{help}"
    );
    assert!(
        readme.contains(&table),
        "README.md lacks the exact exit-code table:\n{table}"
    );
}

#[test]
fn committed_completions_are_up_to_date() {
    for (shell, file) in [
        ("bash", "trinity-watchdog.bash"),
        ("zsh", "_trinity-watchdog"),
        ("fish", "trinity-watchdog.fish"),
        ("powershell", "_trinity-watchdog.ps1"),
    ] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, 0);
        assert!(out.stdout.contains("trinity-watchdog"));
        let path = format!("{}/completions/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if std::env::var_os("UPDATE_GENERATED").is_some() {
            std::fs::write(&path, &out.stdout).unwrap();
        } else {
            assert!(
                committed == out.stdout,
                "{path} is stale: run UPDATE_GENERATED=1 cargo test committed_"
            );
        }
    }
}

#[test]
fn json_to_a_closed_pipe_is_not_an_error() {
    // The reader is gone before the tool writes a byte, so any output at all meets a closed pipe.
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let template = w.fleet.template();
    for format in ["json", "table"] {
        let mut child = command()
            .args([
                "scan",
                "-o",
                format,
                "--no-redis",
                "--db",
                w.db.path(),
                "--agent-url",
                &template,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("error"),
            "{stderr}"
        );
        assert_eq!(output.status.code(), Some(0), "{format}: {stderr}");
    }
}

/// The core scenarios again, against PostgreSQL (a fresh database per test on the local server).
mod on_postgres {
    use super::*;

    macro_rules! on_postgres {
        ($($name:ident),* $(,)?) => {
            $(
                #[test]
                fn $name() {
                    with_backend(Backend::Postgres, super::$name);
                }
            )*
        };
    }

    on_postgres!(
        orphaned_row_is_failed_and_its_capacity_released,
        timed_out_process_is_terminated_then_failed,
        zombie_process_is_terminated_and_its_row_left_alone,
        leaked_slots_are_released_and_everything_else_kept,
        live_work_takes_no_action,
        unreachable_agents_rows_are_untouched,
        terminate_failure_leaves_row_and_slot_alone,
        terminate_404_is_skipped_and_row_untouched,
        row_that_completes_between_plan_and_apply_is_race_lost,
        orphan_is_skipped_when_the_agent_stops_answering_before_apply,
        orphan_is_skipped_when_the_agent_knows_it_at_the_recheck,
        kill_terminates_exactly_the_named_executions,
        recover_never_terminates,
        json_document_has_the_stable_shape,
        exit_codes_0_and_2_and_4,
    );
}
