//! The promises an operator running `--apply` from cron relies on, on their unhappy paths: results
//! that belong to the right item, saved plans that compare exactly, the command line over the
//! environment, secrets that never print, interrupts in every phase, an apply lock that every way
//! out releases, an audit trail written as the actions end, and sessions that never hang.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::reliability::{finish, spawn, wait_until};
use super::*;

const LOCK_KEY: &str = "trinity-watchdog:apply-lock";

fn signal(child: &Child, name: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// The arguments that point the binary at a world, for runs spawned in the background.
fn world_args(w: &World) -> Vec<String> {
    let mut args = w.db.args();
    args.extend(["--agent-url".into(), w.fleet.template()]);
    match &w.redis {
        Some(redis) => args.extend(["--redis-url".into(), redis.url()]),
        None => args.push("--no-redis".into()),
    }
    args
}

fn spawn_on(w: &World, command: &[&str]) -> Child {
    let args = world_args(w);
    let mut all: Vec<&str> = command.to_vec();
    all.extend(args.iter().map(String::as_str));
    spawn(&all)
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

// --- Results belong to items ------------------------------------------------------------------

#[test]
fn a_zombie_whose_slot_leaked_is_terminated_and_its_slot_released() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_agent("beta", Some(60));
    w.db.add_execution("z-1", "alpha", "success", &ago(900));
    // One id, two agents: each runs a process of it.
    w.db.add_execution("z-2", "alpha", "failed", &ago(900));
    w.fleet.set("alpha", FakeAgent::running(&["z-1", "z-2"]));
    w.fleet.set("beta", FakeAgent::running(&["z-2"]));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "z-1", unix_ago(900), Some(60));

    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        out.items(),
        [
            item("z-1", "leaked_slot", "release_slot", "applied"),
            item("z-1", "zombie", "terminate", "applied"),
            item("z-2", "zombie", "terminate", "applied"),
            item("z-2", "zombie", "terminate", "applied"),
        ]
    );
    let mut terminated = w.fleet.terminate_calls();
    terminated.sort();
    assert_eq!(
        terminated,
        [
            ("alpha".to_string(), "z-1".to_string()),
            ("alpha".to_string(), "z-2".to_string()),
            ("beta".to_string(), "z-2".to_string())
        ]
    );
    assert!(slot_members(&mut r, "alpha").is_empty());
    w.assert_converged();
}

// --- Saved plans compare exactly ----------------------------------------------------------------

#[test]
fn saved_plans_compare_fractional_slot_scores_exactly() {
    // Trinity writes slot scores as time.time() floats; none may look changed after the plan file.
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let mut r = w.redis();
    let base = unix_ago(900);
    for i in 0..150 {
        let id = format!("done-{i:03}");
        w.db.add_execution(&id, "alpha", "success", &ago(900));
        let score = base + 0.123_456_789_012_3 + f64::from(i) * 0.001_371_7;
        add_slot(&mut r, "alpha", &id, score, Some(60));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    let file = file.to_str().unwrap();
    assert_eq!(w.run(&["scan", "--save", file]).code, 0);
    let out = w.run(&[
        "scan",
        "--from",
        file,
        "--apply",
        "--max-actions",
        "1000",
        "-o",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let skipped: Vec<String> = out
        .items()
        .into_iter()
        .filter(|(_, _, _, outcome)| outcome != "applied")
        .map(|(id, ..)| format!("{id}: {}", out.error(&id)))
        .collect();
    assert!(skipped.is_empty(), "{skipped:#?}");
    assert_eq!(out.items().len(), 150);
    assert!(slot_members(&mut r, "alpha").is_empty());
}

// --- The command line wins over the environment --------------------------------------------------

#[test]
fn the_command_line_wins_over_the_environment() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let template = w.fleet.template();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let elsewhere = format!("postgres://trinity@127.0.0.1:{closed}/trinity");
    let scan = |env: &[(&str, &str)], args: &[&str]| {
        let mut command = command();
        command.args(["scan", "-o", "json", "--no-redis", "--agent-url", &template]);
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        Out::from(output)
    };
    let out = scan(&[("DATABASE_URL", &elsewhere)], &["--db", w.db.path()]);
    assert_eq!(out.code, 0, "--db beats DATABASE_URL: {}", out.stderr);
    assert_eq!(out.items(), [item("o-1", "orphaned", "fail", "null")]);

    // Without --db, DATABASE_URL is used (and here unreachable).
    let out = scan(&[("DATABASE_URL", &elsewhere)], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot connect to PostgreSQL"),
        "{}",
        out.stderr
    );

    // --database-url beats TRINITY_DB_PATH (here it names the unreachable server).
    let out = scan(
        &[("TRINITY_DB_PATH", w.db.path())],
        &["--database-url", &elsewhere],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot connect to PostgreSQL"),
        "{}",
        out.stderr
    );

    // Both on the command line is a usage error, before anything is opened.
    let out = scan(&[], &["--db", w.db.path(), "--database-url", &elsewhere]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--db") && out.stderr.contains("--database-url"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
}

// --- Secrets --------------------------------------------------------------------------------

#[test]
fn no_secret_reaches_output_plans_audit_or_metrics() {
    const MARK: &str = "7f3aSEKRIT";
    let agent_secret = format!("agent-{MARK}");
    let redis_password = format!("redis-{MARK}");
    let url_password = format!("url-{MARK}");
    let pg_password = format!("pg-{MARK}");

    let db = TrinityDb::new();
    let fleet = Fleet::start();
    let redis = RedisServer::start_with(&["--requirepass", &redis_password]).expect("redis-server");
    db.add_agent("alpha", Some(60));
    db.add_agent("broken", Some(60));
    db.add_execution("o-1", "alpha", "running", &ago(600));
    db.add_execution("b-1", "broken", "running", &ago(600));
    fleet.set("alpha", FakeAgent::running(&[]));
    fleet.set("broken", FakeAgent::answering(Answer::Hang));
    let template = format!("http://watchdog:{url_password}@{}/{{agent}}", fleet.addr);
    let redis_url = format!("redis://:{redis_password}@127.0.0.1:{}/0", redis.port);
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let audit = dir.path().join("audit.jsonl");
    let metrics = dir.path().join("watchdog.prom");
    let with = |extra: &[&str], template: &str, redis_url: &str| {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(
            [
                "--db",
                db.path(),
                "--agent-url",
                template,
                "--redis-url",
                redis_url,
                "--agent-secret",
                &agent_secret,
                "--http-timeout",
                "1s",
                "-v",
            ]
            .map(String::from),
        );
        args
    };
    let with_sources = |extra: &[&str]| with(extra, &template, &redis_url);
    let mut printed = String::new();
    let mut record = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        printed.push_str(&out.stdout);
        printed.push_str(&out.stderr);
        out
    };
    let saved = record(with_sources(&[
        "scan",
        "-o",
        "json",
        "--save",
        plan.to_str().unwrap(),
    ]));
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    let agents = saved.json()["agents"].as_array().unwrap().clone();
    let broken = agents.iter().find(|a| a["name"] == "broken").unwrap();
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("http://***@127.0.0.1"),
        "the unreachable agent's error names its URL, redacted: {}",
        saved.stdout
    );
    let applied = record(with_sources(&[
        "scan",
        "--apply",
        "--audit-log",
        audit.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]));
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(db.row("o-1").status, "failed");
    record(with_sources(&["scan", "--all", "--color", "always"]));
    // Errors: a wrong Redis password, a template without {agent}, an unparseable URL.
    let wrong_password = format!("redis://:wrong-{MARK}@127.0.0.1:{}/0", redis.port);
    assert_eq!(record(with(&["scan"], &template, &wrong_password)).code, 1);
    let no_placeholder = format!("http://u:{url_password}@agents.example/");
    assert_eq!(record(with(&["scan"], &no_placeholder, &redis_url)).code, 1);
    let unparseable = format!("http://u:{url_password}@[::1/{{agent}}");
    assert_eq!(record(with(&["scan"], &unparseable, &redis_url)).code, 1);

    // PostgreSQL: a password in the query string, on a run that works (trust auth ignores it)
    // and on one that cannot connect.
    let mut pg_plan_text = String::new();
    with_backend(Backend::Postgres, || {
        let pg = TrinityDb::new();
        pg.add_execution("o-1", "alpha", "running", &ago(600));
        let url = format!("{}?password={pg_password}&sslmode=disable", pg.args()[1]);
        let pg_plan = dir.path().join("pg-plan.json");
        let out = record(vec![
            "scan".into(),
            "--database-url".into(),
            url,
            "--no-redis".into(),
            "--agent-url".into(),
            fleet.template(),
            "--save".into(),
            pg_plan.to_str().unwrap().into(),
            "-o".into(),
            "json".into(),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        pg_plan_text = std::fs::read_to_string(&pg_plan).unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = record(vec![
            "scan".into(),
            "--database-url".into(),
            format!("postgres://trinity:{pg_password}@127.0.0.1:{closed}/x?password={pg_password}"),
            "--no-redis".into(),
        ]);
        assert_eq!(out.code, 1);
    });

    // --help shows the environment's values of none of the secret-bearing variables.
    let help = command()
        .arg("--help")
        .env("TRINITY_AGENT_URL_TEMPLATE", &template)
        .env("REDIS_URL", &redis_url)
        .env("AGENT_AUTH_SECRET", &agent_secret)
        .env("DATABASE_URL", format!("postgres://u:{pg_password}@db/x"))
        .output()
        .unwrap();
    printed.push_str(&String::from_utf8_lossy(&help.stdout));
    // The server's own message names the user: userinfo is redacted there too.
    let out = run(&[
        "scan",
        "--no-redis",
        "--database-url",
        &format!("postgres://user-{MARK}:{pg_password}@127.0.0.1:5432/postgres"),
    ]);
    assert_eq!(out.code, 1);
    printed.push_str(&out.stderr);
    for (what, text) in [
        ("stdout and stderr", printed.clone()),
        ("the PostgreSQL plan", pg_plan_text),
        ("the saved plan", std::fs::read_to_string(&plan).unwrap()),
        ("the audit log", std::fs::read_to_string(&audit).unwrap()),
        ("the metrics", std::fs::read_to_string(&metrics).unwrap()),
    ] {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(MARK), "a secret in {what}:\n{text}");
    }
    assert!(printed.contains("***"), "redacted values are shown as ***");
}

// --- Interrupts in every phase ------------------------------------------------------------------

/// An agent whose `n`th `running` request answers only after `pause`.
fn stalling_at(n: usize, pause: Duration) -> FakeAgent {
    FakeAgent {
        stall: Some((n, pause)),
        ..FakeAgent::running(&[])
    }
}

/// After an interrupted apply: what it reports, and that a rerun converges.
fn assert_interrupted_then_converges(w: &World, out: &Out, expected: &[(&str, &str)]) {
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert_eq!(out.json()["interrupted"], true);
    for (id, outcome) in expected {
        assert_eq!(out.item(id)["outcome"], *outcome, "{id}: {}", out.stdout);
        if *outcome == "skipped" {
            assert!(out.error(id).contains("not started"), "{}", out.error(id));
        }
    }
    if let Some(redis) = &w.redis {
        assert!(!exists(&mut redis.conn(), LOCK_KEY), "the lock is released");
    }
    let mut agent = w.fleet.agent("alpha");
    agent.hook = None;
    agent.stall = None;
    agent.last_error_delay = Duration::ZERO;
    w.fleet.set("alpha", agent);
    w.fleet.clear_calls();
    let rerun = w.apply_json("scan");
    assert_eq!(rerun.code, 0, "a rerun finishes the job: {}", rerun.stderr);
    w.assert_converged();
}

#[test]
fn a_signal_while_gathering_starts_nothing() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    add_slot(&mut w.redis(), "alpha", "o-1", unix_ago(600), Some(900));
    w.fleet
        .set("alpha", stalling_at(1, Duration::from_millis(1500)));
    // Three more agents, asked one at a time after alpha: none is asked after the signal.
    for agent in ["beta", "gamma", "zeta"] {
        w.db.add_agent(agent, None);
        w.fleet.set(agent, FakeAgent::running(&[]));
    }
    let child = spawn_on(&w, &["scan", "--apply", "-o", "json", "--concurrency", "1"]);
    wait_until("the scan's request", || !w.fleet.calls().is_empty());
    signal(&child, "TERM");
    let out = finish(child);
    let asked: Vec<String> = w.fleet.calls().into_iter().map(|c| c.agent).collect();
    assert_eq!(
        asked,
        ["alpha"],
        "no agent request starts after the signal: {}",
        out.stderr
    );
    assert_eq!(w.db.row("o-1").status, "running");
    assert_eq!(slot_members(&mut w.redis(), "alpha"), ["o-1"]);
    assert_interrupted_then_converges(&w, &out, &[("o-1", "skipped")]);
}

#[test]
fn a_signal_during_the_recheck_starts_no_write() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", stalling_at(2, Duration::from_millis(1500)));
    let child = spawn_on(&w, &["scan", "--apply", "-o", "json"]);
    wait_until("the re-check", || w.fleet.calls().len() >= 2);
    signal(&child, "INT");
    let out = finish(child);
    assert_eq!(w.db.row("o-1").status, "running");
    assert_interrupted_then_converges(&w, &out, &[("o-1", "skipped")]);
}

#[test]
fn a_signal_during_the_original_error_requests_writes_only_what_was_terminated() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.db.add_execution("t-1", "alpha", "running", &ago(600));
    w.fleet.set(
        "alpha",
        FakeAgent {
            last_error_delay: Duration::from_millis(1500),
            ..FakeAgent::running(&["t-1"])
        },
    );
    let child = spawn_on(&w, &["scan", "--apply", "-o", "json"]);
    wait_until("a last-error request", || {
        w.fleet.calls().iter().any(|c| c.method == "GET last-error")
    });
    signal(&child, "TERM");
    let out = finish(child);
    assert_eq!(
        w.db.row("t-1").status,
        "failed",
        "its process was terminated: its row is failed"
    );
    assert_eq!(w.db.row("o-1").status, "running");
    assert_interrupted_then_converges(&w, &out, &[("t-1", "applied"), ("o-1", "skipped")]);
}

#[test]
fn a_signal_during_a_write_batch_is_heard_at_once_and_the_batch_commits_whole() {
    // 250 orphans: a batch of 200, then 50. The database is locked by another writer when the
    // first batch begins; the signal comes while the tool waits for it.
    let w = World::without_redis();
    for i in 0..250 {
        w.db.add_execution(&format!("o-{i:03}"), "alpha", "running", &ago(600));
    }
    let path = w.db.path.clone();
    let released = Arc::new(AtomicBool::new(false));
    let holder: Arc<Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    let (hook_released, hook_holder) = (released.clone(), holder.clone());
    let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 2 {
            *hook_holder.lock().unwrap() = Some(hold_exclusive_lock(
                &path,
                Duration::from_secs(3),
                hook_released.clone(),
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
    let args = world_args(&w);
    let mut child = command()
        .args([
            "scan",
            "--apply",
            "--force",
            "--max-actions",
            "1000",
            "-o",
            "json",
        ])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    wait_until("the re-check", || holder.lock().unwrap().is_some());
    std::thread::sleep(Duration::from_millis(800));
    signal(&child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the signal is acknowledged within a second");
        if line.starts_with("interrupted:") {
            break;
        }
    }
    assert!(
        !released.load(Ordering::SeqCst),
        "heard while the database was still locked: the listener does not wait for SQLite"
    );
    let output = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    holder.lock().unwrap().take().unwrap().join().unwrap();
    let out = Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    };
    assert!(
        out.stderr
            .contains("interrupted during a write batch of 200 rows: it committed whole"),
        "{}",
        out.stderr
    );
    let outcomes = out.items();
    let applied = outcomes.iter().filter(|i| i.3 == "applied").count();
    let skipped = outcomes.iter().filter(|i| i.3 == "skipped").count();
    assert_eq!((applied, skipped), (200, 50), "{}", out.stderr);
    let failed = (0..250)
        .filter(|i| w.db.row(&format!("o-{i:03}")).status == "failed")
        .count();
    assert_eq!(failed, 200, "the batch in flight committed whole, no more");
    assert_eq!(out.code, 130);
    let mut agent = w.fleet.agent("alpha");
    agent.hook = None;
    w.fleet.set("alpha", agent);
    assert_eq!(w.run(&["scan", "--apply", "--force"]).code, 0);
    w.assert_converged();
}

#[test]
fn a_signal_during_the_releases_finishes_them() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    add_slot(&mut w.redis(), "alpha", "o-1", unix_ago(600), Some(900));
    let url = w.redis.as_ref().unwrap().url();
    // While the original error is fetched, Redis holds back writes for 2.5 s: the releases wait.
    let hook = Hook(Arc::new(move |kind, _agent: &mut FakeAgent| {
        if kind == "last-error" {
            pause_redis(&url, 2500, "WRITE");
        }
    }));
    w.fleet.set(
        "alpha",
        FakeAgent {
            hook: Some(hook),
            ..FakeAgent::running(&[])
        },
    );
    let child = spawn_on(&w, &["scan", "--apply", "-o", "json"]);
    wait_until("the last-error request", || {
        w.fleet.calls().iter().any(|c| c.method == "GET last-error")
    });
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, "TERM");
    let out = finish(child);
    assert_eq!(w.db.row("o-1").status, "failed");
    assert!(
        slot_members(&mut w.redis(), "alpha").is_empty(),
        "the won write's release is part of the action in progress"
    );
    assert_interrupted_then_converges(&w, &out, &[("o-1", "applied")]);
}

#[test]
fn a_second_signal_stops_at_once_and_still_releases_the_lock() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", FakeAgent::hanging_terminates(&["slow-1"]));
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let child = spawn_on(
        &w,
        &[
            "scan",
            "--apply",
            "--terminate-timeout",
            "30s",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    wait_until("the terminate", || !w.fleet.terminate_calls().is_empty());
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    signal(&child, "TERM");
    let out = finish(child);
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "it stopped at once"
    );
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert!(!exists(&mut w.redis(), LOCK_KEY), "the lock is released");
    let lines = audit_lines(&audit);
    let last = lines.last().expect("the trail is closed");
    assert_eq!(
        (last["event"].as_str(), last["outcome"].as_str()),
        (Some("apply_end"), Some("killed"))
    );
    assert_eq!(w.db.row("slow-1").status, "running");
    let next = w.run(&["scan", "--apply", "--terminate-timeout", "1s"]);
    assert_ne!(
        next.code, 6,
        "the next apply is not blocked: {}",
        next.stderr
    );
}

#[test]
fn a_stderr_that_cannot_be_written_never_aborts_an_apply() {
    // A cron pipe whose reader died, a full disk: warnings are lost, the apply is not.
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let args = world_args(&w);
    let output = command()
        .args(["scan", "--apply", "-o", "json"])
        .args(&args)
        .stderr(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(w.db.row("o-1").status, "failed");
}

// --- The apply lock ---------------------------------------------------------------------------

#[test]
fn a_symlink_to_the_database_takes_the_same_lock() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{}.watchdog-lock", w.db.path()))
        .unwrap();
    held.try_lock().unwrap();
    let link = w.db.dir.path().join("link.db");
    std::os::unix::fs::symlink(&w.db.path, &link).unwrap();
    let out = run(&[
        "scan",
        "--apply",
        "--no-redis",
        "--db",
        link.to_str().unwrap(),
        "--agent-url",
        &w.fleet.template(),
    ]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert_eq!(w.db.row("o-1").status, "running");
}

#[test]
fn the_lock_is_released_when_a_later_step_fails() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&["untracked-1"]));
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let audit_arg = audit.to_str().unwrap();

    // The --save write fails after the lock was taken.
    let nowhere = dir.path().join("no-such-dir").join("plan.json");
    let out = w.run(&[
        "scan",
        "--apply",
        "--save",
        nowhere.to_str().unwrap(),
        "--audit-log",
        audit_arg,
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        !exists(&mut w.redis(), LOCK_KEY),
        "released after the --save error"
    );

    // Gathering fails after the lock was taken: a table vanishes while the agents are asked.
    let db = w.db.handle.clone();
    w.fleet.set(
        "alpha",
        FakeAgent {
            hook: Some(Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
                if kind == "running" && agent.requests == 1 {
                    db.execute("DROP TABLE agent_schedules");
                }
            }))),
            ..FakeAgent::running(&["untracked-1"])
        },
    );
    let out = w.run(&["scan", "--apply", "--audit-log", audit_arg]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("agent_schedules"), "{}", out.stderr);
    assert!(
        !exists(&mut w.redis(), LOCK_KEY),
        "released after the gather error"
    );
    let ends: Vec<Value> = audit_lines(&audit)
        .into_iter()
        .filter(|line| line["event"] == "apply_end")
        .collect();
    assert_eq!(ends.len(), 2, "both failed applies closed the trail");
    assert!(ends.iter().all(|end| end["outcome"] == "error"), "{ends:?}");
    assert!(ends[0]["error"].as_str().unwrap().contains("no-such-dir"));
}

#[test]
fn a_sigkilled_holder_on_this_host_is_taken_over_at_once() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.fleet
        .set("alpha", FakeAgent::hanging_terminates(&["slow-1"]));
    let child = spawn_on(&w, &["scan", "--apply", "--terminate-timeout", "30s"]);
    wait_until("the terminate", || !w.fleet.terminate_calls().is_empty());
    signal(&child, "KILL");
    assert_eq!(finish(child).code, -1, "killed by a signal");
    assert!(
        exists(&mut w.redis(), LOCK_KEY),
        "the dead holder left its Redis lock"
    );
    w.fleet.set("alpha", FakeAgent::running(&["slow-1"]));
    let started = Instant::now();
    let next = w.run(&["scan", "--apply"]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr.contains("took the Redis apply lock over")
            && started.elapsed() < Duration::from_secs(10),
        "{}",
        next.stderr
    );
    assert_eq!(w.db.row("slow-1").status, "failed");
    assert!(!exists(&mut w.redis(), LOCK_KEY));
}

/// This host's identity as a lock token writes it, with `pid` and `started`.
fn local_token(pid: u32, started: u64) -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap().trim().to_owned();
    let namespace: String = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!(
        "{}:{pid}:{started}:{namespace}:{}:feedface",
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/random/boot_id")
    )
}

#[test]
fn a_holder_whose_pid_was_reused_is_taken_over_and_another_hosts_is_waited_for() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let mut r = w.redis();
    let set_lock = |r: &mut redis::Connection, token: &str| {
        let _: () = redis::cmd("SET")
            .arg(LOCK_KEY)
            .arg(token)
            .arg("PX")
            .arg(15_000)
            .query(r)
            .unwrap();
    };
    // Another host: its holder cannot be checked; the lock is busy until its TTL runs out.
    set_lock(&mut r, "otherhost:42:1:4026531836:boot:abc");
    let out = w.run(&["scan", "--apply"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("within 15s"), "{}", out.stderr);
    // This host, a live pid (the test itself) with another start time: a reused pid.
    set_lock(&mut r, &local_token(std::process::id(), 1));
    let out = w.run(&["scan", "--apply"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("took the Redis apply lock over"),
        "{}",
        out.stderr
    );
    assert_eq!(w.db.row("o-1").status, "failed");
}

#[test]
fn the_redis_lock_lives_at_most_fifteen_seconds_past_its_last_refresh() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    let url = w.redis.as_ref().unwrap().url();
    let seen = Arc::new(Mutex::new(None::<i64>));
    let seen_in_hook = seen.clone();
    let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 2 {
            let mut conn = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let ttl: i64 = redis::cmd("PTTL").arg(LOCK_KEY).query(&mut conn).unwrap();
            *seen_in_hook.lock().unwrap() = Some(ttl);
        }
    }));
    w.fleet.set(
        "alpha",
        FakeAgent {
            hook: Some(hook),
            ..FakeAgent::running(&[])
        },
    );
    assert_eq!(w.apply_json("scan").code, 0);
    let ttl = seen.lock().unwrap().expect("hook ran");
    assert!((1..=15_000).contains(&ttl), "PTTL while held: {ttl}");
}

// --- The audit trail ----------------------------------------------------------------------------

#[test]
fn each_audit_line_is_written_as_its_action_ends() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_agent("beta", Some(60));
    w.db.add_execution("z-fast", "alpha", "success", &ago(900));
    w.db.add_execution("z-slow", "beta", "success", &ago(900));
    w.fleet.set("alpha", FakeAgent::running(&["z-fast"]));
    w.fleet
        .set("beta", FakeAgent::hanging_terminates(&["z-slow"]));
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let child = spawn_on(
        &w,
        &[
            "kill",
            "--apply",
            "--terminate-timeout",
            "30s",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    // The slow terminate is still running when the fast one's line must already be there.
    wait_until("the fast terminate's audit line", || {
        audit_lines(&audit)
            .iter()
            .any(|line| line["execution_id"] == "z-fast")
    });
    signal(&child, "KILL");
    finish(child);
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "applied");
}

// --- Nothing hangs ------------------------------------------------------------------------------

#[test]
fn a_dry_run_behind_an_exclusive_lock_on_postgres_ends_and_names_the_wait() {
    let w = super::operations::on_postgres(World::without_redis);
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let DbHandle::Postgres(url) = w.db.handle.clone() else {
        unreachable!("a PostgreSQL world")
    };
    let (locked_tx, locked) = mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = client.transaction().unwrap();
        tx.batch_execute("LOCK TABLE schedule_executions IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(9));
        tx.rollback().unwrap();
    });
    locked.recv().unwrap();
    let started = Instant::now();
    let out = w.run(&["scan"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("lock_timeout") && out.stderr.contains("another session"),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "it gave up on its own"
    );
    holder.join().unwrap();
}

#[test]
fn the_systemd_unit_has_a_start_timeout() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/systemd/trinity-watchdog.service"
    ))
    .unwrap();
    assert!(
        unit.lines()
            .any(|line| line.starts_with("TimeoutStartSec=")),
        "{unit}"
    );
}

/// The soak breaks one safety rule at a time through `TRINITY_WATCHDOG_BREAK`, but only in a
/// build with the test-only `soak-broken-rules` feature (src/broken.rs): a normal build keeps
/// every rule whatever the variable says. (Run against a build with the feature, this test fails,
/// as it should.)
#[test]
fn the_soaks_switch_to_break_a_safety_rule_does_nothing_in_a_normal_build() {
    for rule in ["inflight", "pending", "unguarded", "unreachable"] {
        let w = World::new();
        w.db.add_agent("alpha", None);
        w.db.add_agent("beta", None);
        w.db.add_execution("dispatching-1", "alpha", "running", &ago(600));
        w.db.add_execution("pending-1", "alpha", "running", &ago(600));
        w.db.add_execution("finishing-1", "alpha", "running", &ago(600));
        w.db.add_execution("beta-1", "beta", "running", &ago(600));
        set_key(&mut w.redis(), "execution:inflight:dispatching-1", "1");
        w.fleet.set(
            "alpha",
            FakeAgent {
                pending: Some(vec!["pending-1".into()]),
                hook: Some(Hook::completing_at_recheck(&w.db.handle, "finishing-1")),
                ..FakeAgent::running(&[])
            },
        );
        w.fleet
            .set("beta", FakeAgent::answering(Answer::Status(500)));
        let mut args = vec!["scan", "--apply", "-o", "json", "--http-timeout", "2s"];
        let (db, template) = (w.db.args(), w.fleet.template());
        let redis = w.redis.as_ref().expect("redis").url();
        args.extend(db.iter().map(String::as_str));
        args.extend(["--agent-url", &template, "--redis-url", &redis]);
        let out = Out::from(
            command()
                .args(&args)
                .env("TRINITY_WATCHDOG_BREAK", rule)
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 0, "{rule}: {}", out.stderr);
        assert_eq!(
            out.items(),
            [
                item("dispatching-1", "in_flight", "none", "null"),
                item("finishing-1", "orphaned", "fail", "race_lost"),
                item("pending-1", "healthy", "none", "null"),
                item("beta-1", "unreachable", "none", "null"),
            ],
            "{rule}"
        );
        assert_eq!(w.db.row("finishing-1").status, "success", "{rule}");
        for id in ["dispatching-1", "pending-1", "beta-1"] {
            assert_eq!(w.db.row(id).status, "running", "{rule}: {id}");
        }
    }
}

/// Found by the soak: an agent unregisters a finished process a moment before the backend writes
/// `success`, and an older image (no `recently_completed_ids`) does not say so. An apply that
/// re-checked such an agent at once failed the finished execution (its result lost) whenever it
/// ran inside that moment. Now the orphans of such an agent are re-checked only once they have been
/// unknown for the settle time, so the backend's write lands first and the tool's is `race_lost`.
#[test]
fn an_old_images_orphan_is_failed_only_after_the_completion_gap() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_execution("done-1", "alpha", "running", &ago(600));
    let db = w.db.handle.clone();
    let hook = Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
        if kind == "running" && agent.requests == 1 {
            // The tool's scan saw the agent without the finished id; the backend writes it 1 s later.
            let db = db.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                db.execute(
                    "UPDATE schedule_executions SET status = 'success', completed_at = '2026-01-01T00:00:00Z' \
                     WHERE id = 'done-1' AND status = 'running'",
                );
            });
        }
    }));
    w.fleet.set(
        "alpha",
        FakeAgent {
            recently_completed: None,
            pending: None,
            hook: Some(hook),
            ..FakeAgent::running(&[])
        },
    );
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [item("done-1", "orphaned", "fail", "race_lost")],
        "{}",
        out.stderr
    );
    assert_eq!(w.db.row("done-1").status, "success");
}

/// Found in review: the signal listener started only once the lock was held, so a SIGTERM while
/// the apply waited for its Redis lock killed the process the default way, leaving the Redis key
/// behind and the trail without its end. Now the signals are caught from before the lock is taken.
#[test]
fn a_signal_while_the_lock_is_taken_releases_it_and_closes_the_trail() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let trail = w.db.dir.path().join("audit.jsonl");
    let redis_url = w.redis.as_ref().expect("redis").url();
    // Writes wait 3 s: the apply's SET of its lock key hangs until then.
    pause_redis(&redis_url, 3000, "WRITE");
    let trail_arg = trail.display().to_string();
    let child = spawn_on(
        &w,
        &["scan", "--apply", "-o", "json", "--audit-log", &trail_arg],
    );
    // The database lock comes first: once it is held, the apply is taking its Redis lock.
    let lock_file = format!("{}.watchdog-lock", w.db.path());
    wait_until("the database lock", || {
        std::fs::File::open(&lock_file).is_ok_and(|file| {
            use std::os::fd::AsRawFd;
            // SAFETY: flock(2) on a descriptor this closure owns.
            let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            !free
        })
    });
    signal(&child, "TERM");
    let out = finish(child);
    assert_eq!(w.db.row("o-1").status, "running");
    let ends: Vec<Value> = audit_lines(&trail)
        .into_iter()
        .filter(|line| line["event"] == "apply_end")
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}: {}", out.stderr);
    assert_eq!(ends[0]["outcome"], "interrupted");
    // Heard before the gathering: no agent was asked, so nothing was planned to change.
    assert_eq!(out.item("o-1")["verdict"], "unreachable", "{}", out.stdout);
    assert!(w.fleet.calls().is_empty());
    assert_interrupted_then_converges(&w, &out, &[]);
}
