//! The fault suite: safety limits, the apply lock, interrupts, the audit trail, and every kind of
//! bad input from agents, Redis and the database. Each test names the behaviour it proves; the
//! README's "Reliability" table points here.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// `n` orphans on `alpha` and `healthy` rows the agent runs.
fn fleet_with(w: &World, orphans: usize, healthy: usize) {
    let mut running = Vec::new();
    for i in 0..orphans {
        w.db.add_execution(&format!("o-{i:02}"), "alpha", "running", &ago(600));
    }
    for i in 0..healthy {
        let id = format!("h-{i:02}");
        w.db.add_execution(&id, "alpha", "running", &ago(30));
        running.push(id);
    }
    let running: Vec<&str> = running.iter().map(String::as_str).collect();
    w.fleet.set("alpha", FakeAgent::running(&running));
}

fn statuses(w: &World, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| w.db.row(&format!("{prefix}-{i:02}")).status)
        .collect()
}

/// Holds the apply's flock file, as another apply would.
pub(crate) fn hold_lock_file(path: &str) -> std::fs::File {
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    held.try_lock().unwrap();
    held
}

pub(crate) fn spawn(args: &[&str]) -> std::process::Child {
    command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trinity-watchdog")
}

pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn finish(child: std::process::Child) -> Out {
    let output = child.wait_with_output().expect("wait");
    Out::from(output)
}

// --- Safety limits ---------------------------------------------------------------------------

#[test]
fn blast_radius_cap_refuses_with_exit_5_and_changes_nothing() {
    let w = World::without_redis();
    fleet_with(&w, 3, 10);
    let out = w.run(&["scan", "--apply", "--max-actions", "2", "-o", "json"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("3 actions (3 orphaned)") && out.stderr.contains("--max-actions 2"),
        "{}",
        out.stderr
    );
    assert!(
        out.json()["refused"]
            .as_str()
            .unwrap()
            .contains("--max-actions")
    );
    assert_eq!(statuses(&w, "o", 3), ["running"; 3]);

    let forced = w.run(&[
        "scan",
        "--apply",
        "--max-actions",
        "2",
        "--force",
        "-o",
        "json",
    ]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(statuses(&w, "o", 3), ["failed"; 3]);
}

#[test]
fn systemic_failure_brake_refuses_when_most_rows_look_orphaned() {
    let w = World::without_redis();
    fleet_with(&w, 6, 5);
    let out = w.run(&["scan", "--apply"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("6 of 11 running rows on reachable agents look orphaned"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("REFUSED"), "{}", out.stdout);
    assert_eq!(statuses(&w, "o", 6), ["running"; 6]);
    // A dry run is never refused: it changes nothing anyway.
    assert_eq!(w.run(&["scan"]).code, 0);
    assert_eq!(w.run(&["scan", "--apply", "--force"]).code, 0);
    assert_eq!(statuses(&w, "o", 6), ["failed"; 6]);
}

// --- One apply at a time ---------------------------------------------------------------------

#[test]
fn second_apply_is_busy_while_the_file_lock_is_held() {
    let w = World::without_redis();
    fleet_with(&w, 1, 3);
    let held = hold_lock_file(&format!("{}.watchdog-lock", w.db.path()));
    let out = w.run(&["scan", "--apply"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("another apply holds the lock file")
            && out.stderr.contains("nothing was done"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    assert_eq!(w.db.row("o-00").status, "running");
    assert_eq!(w.run(&["scan"]).code, 0, "a dry run never needs the lock");
    drop(held);
    assert_eq!(w.run(&["scan", "--apply"]).code, 0);
    assert_eq!(w.db.row("o-00").status, "failed");
}

#[test]
fn a_sigkilled_apply_never_blocks_the_next_one() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", FakeAgent::hanging_terminates(&["slow-1"]));
    let template = w.fleet.template();
    let child = spawn(&[
        "scan",
        "--apply",
        "--no-redis",
        "--db",
        w.db.path(),
        "--agent-url",
        &template,
        "--terminate-timeout",
        "30s",
    ]);
    wait_until("the terminate call", || {
        !w.fleet.terminate_calls().is_empty()
    });
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let killed = finish(child);
    assert_eq!(killed.code, -1, "killed by a signal");
    w.fleet.set("alpha", FakeAgent::running(&["slow-1"]));
    let next = w.run(&["scan", "--apply"]);
    assert_eq!(
        next.code, 0,
        "the kernel released the flock: {}",
        next.stderr
    );
    assert_eq!(w.db.row("slow-1").status, "failed");
}

#[test]
fn redis_lock_is_exclusive_expiring_and_released() {
    let w = World::new();
    fleet_with(&w, 1, 3);
    let mut r = w.redis();
    set_key(&mut r, "trinity-watchdog:apply-lock", "otherhost:42:abc");
    let out = w.run(&["scan", "--apply"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("held by otherhost:42:abc"),
        "{}",
        out.stderr
    );
    assert_eq!(w.db.row("o-00").status, "running");

    let _: () = redis::cmd("DEL")
        .arg("trinity-watchdog:apply-lock")
        .query(&mut r)
        .unwrap();
    // While the apply runs (at its re-check), the lock exists and expires on its own.
    let url = w.redis.as_ref().unwrap().url();
    let seen_ttl = Arc::new(std::sync::Mutex::new(None::<i64>));
    let seen = seen_ttl.clone();
    let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 2 {
            let mut conn = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let ttl: i64 = redis::cmd("PTTL")
                .arg("trinity-watchdog:apply-lock")
                .query(&mut conn)
                .unwrap();
            *seen.lock().unwrap() = Some(ttl);
        }
    }));
    let mut agent = w.fleet.agent("alpha");
    agent.hook = Some(hook);
    w.fleet.set("alpha", agent);
    let out = w.run(&["scan", "--apply"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ttl = seen_ttl.lock().unwrap().expect("hook ran");
    assert!(
        (1..=60_000).contains(&ttl),
        "the lock has an expiry while held: {ttl}"
    );
    assert!(
        !exists(&mut r, "trinity-watchdog:apply-lock"),
        "released at the end"
    );
    assert_eq!(w.db.row("o-00").status, "failed");
}

// --- Interrupts ------------------------------------------------------------------------------

#[test]
fn sigterm_during_apply_finishes_the_action_in_progress_and_exits_130() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(60));
    for id in ["slow-1", "slow-2", "slow-3"] {
        w.db.add_execution(id, "alpha", "running", &ago(600));
    }
    let agent = FakeAgent {
        terminate_delay: Duration::from_millis(1500),
        ..FakeAgent::running(&["slow-1", "slow-2", "slow-3"])
    };
    w.fleet.set("alpha", agent);
    let template = w.fleet.template();
    let child = spawn(&[
        "scan",
        "--apply",
        "-o",
        "json",
        "--no-redis",
        "--concurrency",
        "1",
        "--db",
        w.db.path(),
        "--agent-url",
        &template,
    ]);
    wait_until("the first terminate", || {
        !w.fleet.terminate_calls().is_empty()
    });
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = finish(child);
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert_eq!(
        w.fleet.terminate_calls().len(),
        1,
        "no new terminate after the signal"
    );
    let outcomes: Vec<String> = out
        .items()
        .into_iter()
        .map(|(_, _, _, outcome)| outcome)
        .collect();
    assert_eq!(
        outcomes,
        ["applied", "skipped", "skipped"],
        "{}",
        out.stdout
    );
    assert_eq!(out.json()["interrupted"], true);
    let failed = ["slow-1", "slow-2", "slow-3"]
        .iter()
        .filter(|id| w.db.row(id).status == "failed")
        .count();
    assert_eq!(failed, 1, "the action in progress completed, row included");

    w.fleet.set(
        "alpha",
        FakeAgent {
            terminate_delay: Duration::ZERO,
            ..w.fleet.agent("alpha")
        },
    );
    assert_eq!(
        w.run(&["scan", "--apply"]).code,
        0,
        "a rerun finishes the job"
    );
    w.assert_converged();
}

// --- Audit trail -----------------------------------------------------------------------------

#[test]
fn audit_log_gets_one_whole_line_per_action_even_from_concurrent_runs() {
    // Four applies released at the same instant (a barrier at their re-check), each writing 100
    // lines of 4 KiB and more: anything but one write per line (a buffered writer, a serializer
    // writing piecemeal) interleaves them.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let pad = "x".repeat(4096);
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let worlds: Vec<World> = (0..4)
        .map(|n| {
            let w = World::without_redis();
            let mut running = Vec::new();
            for i in 0..100 {
                w.db.add_execution(
                    &format!("o-{n}-{i:02}-{pad}"),
                    "alpha",
                    "running",
                    &ago(600),
                );
            }
            for i in 0..30 {
                let id = format!("h-{i:02}");
                w.db.add_execution(&id, "alpha", "running", &ago(30));
                running.push(id);
            }
            let running: Vec<&str> = running.iter().map(String::as_str).collect();
            let barrier = barrier.clone();
            let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
                if kind == "running" && agent.requests == 2 {
                    barrier.wait();
                }
            }));
            w.fleet.set(
                "alpha",
                FakeAgent {
                    hook: Some(hook),
                    ..FakeAgent::running(&running)
                },
            );
            w
        })
        .collect();
    let children: Vec<_> = worlds
        .iter()
        .map(|w| {
            let template = w.fleet.template();
            spawn(&[
                "scan",
                "--apply",
                "--force",
                "--max-actions",
                "1000",
                "--no-redis",
                "--db",
                w.db.path(),
                "--agent-url",
                &template,
                "--audit-log",
                log.to_str().unwrap(),
            ])
        })
        .collect();
    for child in children {
        let out = finish(child);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{e}: {}…", &line[..line.len().min(200)]))
        })
        .collect();
    let actions: Vec<&Value> = lines.iter().filter(|l| l["event"] == "action").collect();
    assert_eq!(actions.len(), 400);
    let ends: Vec<&Value> = lines.iter().filter(|l| l["event"] == "apply_end").collect();
    assert_eq!(ends.len(), 4, "each apply closes its trail");
    assert!(ends.iter().all(|end| end["outcome"] == "finished"));
    for action in &actions {
        let id = action["execution_id"].as_str().unwrap();
        assert!(
            id.ends_with(&pad),
            "a whole id: {}…",
            &id[..id.len().min(40)]
        );
    }
    let first = actions[0];
    for key in [
        "time",
        "execution_id",
        "agent",
        "verdict",
        "action",
        "outcome",
        "error",
        "tool_version",
        "host",
    ] {
        assert!(first.get(key).is_some(), "audit line lacks {key}: {first}");
    }
    assert_eq!(
        (
            first["verdict"].as_str(),
            first["action"].as_str(),
            first["outcome"].as_str()
        ),
        (Some("orphaned"), Some("fail"), Some("applied"))
    );
    // A dry run never writes to it.
    worlds[0].fleet.set("alpha", FakeAgent::running(&[]));
    worlds[0].run(&["scan", "--audit-log", log.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), text);
}

// --- Agents ----------------------------------------------------------------------------------

#[test]
fn every_bad_agent_answer_makes_the_agent_unreachable_and_its_rows_safe() {
    let w = World::without_redis();
    let huge = format!(
        "{{\"executions\":[],\"pad\":\"{}\"}}",
        "x".repeat(5 * 1024 * 1024)
    );
    let cases: Vec<(&str, Answer, &str)> = vec![
        (
            "unauthorized",
            Answer::Status(401),
            "401 Unauthorized (check --agent-secret / AGENT_AUTH_SECRET)",
        ),
        (
            "html",
            Answer::Raw("<!doctype html><p>hi".into()),
            "not JSON",
        ),
        (
            "truncated",
            Answer::Raw("{\"executions\": [".into()),
            "not JSON",
        ),
        (
            "not-a-list",
            Answer::Raw("{\"executions\": {\"a\": 1}}".into()),
            "executions: invalid type: map, expected a sequence",
        ),
        (
            "id-not-string",
            Answer::Raw("{\"executions\": [{\"execution_id\": 5}]}".into()),
            "executions[0].execution_id: invalid type: integer `5`, expected a string",
        ),
        (
            "pending-bad",
            Answer::Raw("{\"executions\": [], \"pending_ids\": [null]}".into()),
            "pending_ids[0]: invalid type: null, expected a string",
        ),
        ("huge", Answer::Raw(huge.clone()), "larger than"),
        ("huge-chunked", Answer::Chunked(huge), "larger than"),
        ("redirect", Answer::Redirect, "redirects are not followed"),
        ("slow", Answer::Hang, "no answer within 2s"),
    ];
    for (agent, answer, _) in &cases {
        w.db.add_agent(agent, None);
        w.db.add_execution(&format!("{agent}-1"), agent, "running", &ago(99_999));
        w.fleet.set(agent, FakeAgent::answering(answer.clone()));
    }
    let out = w.run(&["scan", "--apply", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let agents = out.json()["agents"].as_array().unwrap().clone();
    for (agent, _, why) in &cases {
        let report = agents.iter().find(|a| a["name"] == *agent).unwrap();
        assert_eq!(report["reachable"], false, "{agent}");
        assert!(
            report["error"].as_str().unwrap().contains(why),
            "{agent}: {} should contain {why}",
            report["error"]
        );
        assert_eq!(out.item(&format!("{agent}-1"))["verdict"], "unreachable");
        assert_eq!(w.db.row(&format!("{agent}-1")).status, "running", "{agent}");
    }
    // Empty ids are skipped, not fatal: the agent stays reachable.
    w.fleet.set(
        "html",
        FakeAgent::answering(Answer::Raw(
            "{\"executions\": [{\"execution_id\": \"\"}, {}]}".into(),
        )),
    );
    assert_eq!(
        w.run(&["scan", "-o", "json", "--agent", "html"]).json()["agents"][0]["reachable"],
        true
    );
}

#[test]
fn terminate_that_times_out_is_failed_and_touches_nothing() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", FakeAgent::hanging_terminates(&["slow-1"]));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "slow-1", unix_ago(600), Some(60));
    let out = w.run(&["kill", "--apply", "-o", "json", "--terminate-timeout", "1s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.item("slow-1")["outcome"], "failed");
    assert!(out.error("slow-1").contains("no answer within 1s"));
    assert_eq!(w.db.row("slow-1").status, "running");
    assert_eq!(slot_members(&mut r, "alpha"), ["slow-1"]);
}

#[test]
fn names_and_ids_never_change_the_host_or_the_path() {
    let w = World::without_redis();
    let weird_agent = "we/ird?#@ ..name-é";
    let weird_id = "../x/../y?z#@ é";
    w.db.add_agent(weird_agent, Some(60));
    w.db.add_execution(weird_id, weird_agent, "running", &ago(600));
    w.fleet.set(weird_agent, FakeAgent::running(&[weird_id]));
    let out = w.run(&["kill", "--apply", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [item(weird_id, "timed_out", "terminate_and_fail", "applied")]
    );
    let calls = w.fleet.calls();
    assert!(
        calls.len() >= 3,
        "the agent was asked, re-asked and sent a terminate: {calls:?}"
    );
    for call in calls {
        assert_eq!(
            call.agent, weird_agent,
            "the fleet saw exactly the agent name as one path segment"
        );
    }
    assert_eq!(
        w.fleet.terminate_calls(),
        [(weird_agent.to_string(), weird_id.to_string())]
    );

    // With the name in the host part, anything but a plain DNS label is refused before any request.
    w.db.add_execution("dot-1", "evil.example.com", "running", &ago(600));
    let out = run(&[
        "scan",
        "-o",
        "json",
        "--no-redis",
        "--db",
        w.db.path(),
        "--agent-url",
        "http://agent-{agent}:8000",
        "--agent",
        "evil.example.com",
        "--agent",
        "x@127.0.0.1",
    ]);
    let agents = out.json()["agents"].as_array().unwrap().clone();
    assert_eq!(
        agents.len(),
        2,
        "both named agents were considered: {agents:?}"
    );
    for agent in &agents {
        assert!(
            agent["error"]
                .as_str()
                .unwrap()
                .contains("cannot be used in a URL"),
            "{agent}"
        );
    }
}

#[test]
fn https_agent_urls_are_spoken_with_tls() {
    // A real TLS agent with a certificate from the harness's own CA: trusted through
    // SSL_CERT_FILE it answers over TLS; without that trust the handshake fails and the agent is
    // unreachable, with the reason, and its row is left alone.
    let ca = TestCa::new();
    let db = TrinityDb::new();
    let fleet = Fleet::start_tls(&ca);
    db.add_execution("x-1", "alpha", "running", &ago(600));
    fleet.set("alpha", FakeAgent::running(&["x-1"]));
    let template = fleet.template();
    assert!(template.starts_with("https://"), "{template}");
    let args = [
        "scan",
        "-o",
        "json",
        "--no-redis",
        "--db",
        db.path(),
        "--agent-url",
        &template,
    ];
    let trusted = command()
        .args(args)
        .env("SSL_CERT_FILE", &ca.ca_pem)
        .output()
        .unwrap();
    let out: Value = serde_json::from_slice(&trusted.stdout).unwrap();
    assert_eq!(out["agents"][0]["reachable"], true, "{out}");
    assert_eq!(out["items"][0]["verdict"], "healthy");
    assert_eq!(fleet.calls().len(), 1, "the request went over TLS");

    // --ca-cert (or TRINITY_CA_CERT) adds the CA next to the system's roots.
    let ca = ca.ca_pem.to_str().unwrap();
    let with_flag = run(&[&args[..], &["--ca-cert", ca]].concat());
    assert_eq!(
        with_flag.json()["agents"][0]["reachable"],
        true,
        "{}",
        with_flag.stdout
    );
    let with_env = command()
        .args(args)
        .env("TRINITY_CA_CERT", ca)
        .output()
        .unwrap();
    let out: Value = serde_json::from_slice(&with_env.stdout).unwrap();
    assert_eq!(out["agents"][0]["reachable"], true, "{out}");
    assert_eq!(fleet.calls().len(), 3);

    let untrusted = run(&args);
    let error = untrusted.json()["agents"][0]["error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        error.contains("https://") && error.contains("certificate"),
        "{error}"
    );
    assert_eq!(untrusted.item("x-1")["verdict"], "unreachable");

    // An expired certificate, even from a trusted CA, says so.
    let expired = TestCa::expired();
    let stale = Fleet::start_tls(&expired);
    stale.set("alpha", FakeAgent::running(&["x-1"]));
    let stale_template = stale.template();
    let out = run(&[
        "scan",
        "-o",
        "json",
        "--no-redis",
        "--db",
        db.path(),
        "--agent-url",
        &stale_template,
        "--ca-cert",
        expired.ca_pem.to_str().unwrap(),
    ]);
    let error = out.json()["agents"][0]["error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(error.contains("expired"), "{error}");
    assert_eq!(
        fleet.calls().len(),
        3,
        "no request without a trusted handshake"
    );
}

// --- Redis -----------------------------------------------------------------------------------

#[test]
fn redis_dying_mid_apply_keeps_the_writes_reports_releases_failed_and_converges() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    add_slot(&mut w.redis(), "alpha", "o-1", unix_ago(600), Some(900));
    // At the re-check just before the writes, Redis stops answering for 7 s (longer than the
    // tool's 5 s reply timeout), then comes back with its data.
    let url = w.redis.as_ref().unwrap().url();
    let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 2 {
            pause_redis(&url, 7000, "ALL");
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
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        w.db.row("o-1").status,
        "failed",
        "the database write stands"
    );
    assert_eq!(out.item("o-1")["outcome"], "failed");
    let error = out.error("o-1");
    assert!(error.contains("capacity was not released"), "{error}");
    // Redis is back (with its data) once the pause ends; the rerun finds the slot leaked.
    std::thread::sleep(Duration::from_secs(3));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let rerun = w.apply_json("recover");
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(
        rerun.items(),
        [item("o-1", "leaked_slot", "release_slot", "applied")]
    );
    assert!(slot_members(&mut w.redis(), "alpha").is_empty());
    w.assert_converged();
}

// --- Database --------------------------------------------------------------------------------

#[test]
fn a_database_locked_longer_than_the_busy_timeout_fails_the_whole_batch() {
    // Three rows: the lock is the batch's, so all three fail together and none is written.
    let w = World::without_redis();
    for id in ["o-1", "o-2", "o-3"] {
        w.db.add_execution(id, "alpha", "running", &ago(600));
    }
    let path = w.db.path.clone();
    let holder: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    let slot = holder.clone();
    let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 2 {
            *slot.lock().unwrap() = Some(hold_exclusive_lock(
                &path,
                Duration::from_secs(7),
                Arc::default(),
            ));
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
    assert_eq!(out.code, 3, "{}", out.stderr);
    for id in ["o-1", "o-2", "o-3"] {
        assert_eq!(out.item(id)["outcome"], "failed");
        let error = out.error(id);
        assert!(
            error.contains("locked") && error.contains("batch of 3 rows was rolled back"),
            "{error}"
        );
    }
    holder.lock().unwrap().take().unwrap().join().unwrap();
    for id in ["o-1", "o-2", "o-3"] {
        assert_eq!(w.db.row(id).status, "running");
    }
}

#[test]
fn a_read_only_database_with_apply_is_a_clear_error() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let template = w.fleet.template();
    let args = [
        "scan",
        "--apply",
        "--no-redis",
        "--db",
        w.db.path(),
        "--agent-url",
        &template,
    ];
    let output = if unsafe_is_root() {
        // root ignores file modes: run as nobody, who may read but not write the file.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w.db.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&w.db.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut setpriv = Command::new("setpriv");
        for variable in TOOL_ENV {
            setpriv.env_remove(variable);
        }
        setpriv
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args(args)
            .output()
            .unwrap()
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&w.db.path, std::fs::Permissions::from_mode(0o444)).unwrap();
        command().args(args).output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("read-only") && stderr.contains("--apply needs write access"),
        "{stderr}"
    );
    assert_eq!(w.db.row("o-1").status, "running");
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn a_row_whose_update_fails_does_not_stop_the_others() {
    let w = World::without_redis();
    fleet_with(&w, 3, 10);
    w.db.conn()
        .execute_batch("CREATE TRIGGER no_touch BEFORE UPDATE ON schedule_executions WHEN old.id = 'o-01' BEGIN SELECT RAISE(ABORT, 'row o-01 is sacred'); END")
        .unwrap();
    let out = w.apply_json("scan");
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.item("o-01")["outcome"], "failed");
    assert!(out.error("o-01").contains("sacred"));
    assert_eq!(statuses(&w, "o", 3), ["failed", "running", "failed"]);
}

#[test]
fn empty_and_future_started_at_are_handled() {
    let w = World::without_redis();
    w.db.add_execution("empty", "alpha", "running", "");
    w.db.add_execution("future", "alpha", "running", &ago(-7200));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let out = w.run(&["scan", "-o", "json"]);
    assert_eq!(
        out.items(),
        [
            item("empty", "orphaned", "fail", "null"),
            item("future", "grace", "none", "null")
        ]
    );
    assert_eq!(out.item("future")["age_seconds"], 0);
    assert_eq!(out.item("empty")["age_seconds"], Value::Null);
}

#[test]
fn a_hundred_thousand_history_rows_do_not_confuse_the_plan() {
    let w = World::without_redis();
    {
        let mut conn = w.db.conn();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare("INSERT INTO schedule_executions (id, schedule_id, agent_name, status, started_at, completed_at, message, triggered_by) VALUES (?1, '__manual__', ?2, ?3, ?4, ?4, 'm', 'schedule')")
                .unwrap();
            let statuses = ["success", "failed", "cancelled", "skipped"];
            for i in 0..100_000 {
                insert
                    .execute(rusqlite::params![
                        format!("hist-{i}"),
                        format!("agent-{}", i % 7),
                        statuses[i % 4],
                        ago(90_000 + i as i64)
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    w.db.add_execution("o-1", "agent-1", "running", &ago(600));
    w.db.add_execution("h-1", "agent-2", "running", &ago(60));
    for i in 0..7 {
        let running: &[&str] = if i == 2 { &["h-1"] } else { &[] };
        w.fleet
            .set(&format!("agent-{i}"), FakeAgent::running(running));
    }
    let out = w.run(&["scan", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [
            item("o-1", "orphaned", "fail", "null"),
            item("h-1", "healthy", "none", "null")
        ]
    );
    assert_eq!(
        out.json()["agents"].as_array().unwrap().len(),
        2,
        "only agents with running rows are asked"
    );
}

#[test]
fn redis_keys_of_the_wrong_type_are_warned_about_and_the_rest_goes_on() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_agent("beta", None);
    w.db.add_execution("done-1", "beta", "cancelled", &ago(900));
    w.db.add_execution("done-2", "beta", "success", &ago(900));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    w.fleet.set("beta", FakeAgent::running(&[]));
    let mut r = w.redis();
    set_key(&mut r, "agent:slots:alpha", "not a sorted set");
    add_slot(&mut r, "beta", "done-1", unix_ago(900), Some(60));
    add_slot(&mut r, "beta", "done-2", unix_ago(900), None);
    set_key(
        &mut r,
        "agent:slot:beta:done-2",
        "metadata that is not a hash",
    );

    let out = w.apply_json("recover");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("agent:slots:alpha cannot be read") && out.stderr.contains("WRONGTYPE"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.items(),
        [
            item("done-1", "leaked_slot", "release_slot", "applied"),
            item("done-2", "leaked_slot", "release_slot", "applied")
        ]
    );
    assert!(slot_members(&mut r, "beta").is_empty());
    assert!(
        exists(&mut r, "agent:slots:alpha"),
        "the unreadable key is left as it is"
    );
}
