//! Fitting the places operators run it: metrics for cron, the man page, the original error.

use super::*;

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn metrics_file_reports_the_run_and_keeps_the_last_success_when_a_run_fails() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.db.add_execution("h-1", "alpha", "running", &ago(10));
    w.fleet.set("alpha", FakeAgent::running(&["h-1"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trinity_watchdog.prom");
    let metrics = path.to_str().unwrap();

    assert_eq!(
        w.run(&["scan", "--apply", "--metrics-file", metrics]).code,
        0
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let labels = r#"{command="scan",mode="apply""#;
    assert_eq!(
        metric(
            &text,
            &format!(r#"trinity_watchdog_items{labels},verdict="orphaned"}}"#)
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"trinity_watchdog_items{labels},verdict="zombie"}}"#)
        ),
        Some(0.0),
        "absent verdicts are 0, so alerts see them"
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"trinity_watchdog_actions{labels},outcome="applied"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("trinity_watchdog_unreachable_agents{labels}}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, &format!("trinity_watchdog_exit_code{labels}}}")),
        Some(0.0)
    );
    let success =
        metric(&text, "trinity_watchdog_last_success_timestamp_seconds").expect("last success");
    assert!((success - chrono::Utc::now().timestamp() as f64).abs() < 60.0);
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() && series.ends_with('}'),
            "not Prometheus text format: {line}"
        );
    }

    // A failing run (the database is gone) updates the file but keeps the last success.
    std::fs::remove_file(&w.db.path).unwrap();
    assert_eq!(w.run(&["scan", "--metrics-file", metrics]).code, 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        metric(
            &text,
            r#"trinity_watchdog_exit_code{command="scan",mode="dry_run"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trinity_watchdog_last_success_timestamp_seconds"),
        Some(success)
    );
    assert!(
        metric(&text, "trinity_watchdog_items").is_none(),
        "no plan, no item counts"
    );

    // A run whose settings do not validate writes the file too.
    std::fs::remove_file(&path).unwrap();
    let out = w.run(&["kill", "--default-timeout", "0s", "--metrics-file", metrics]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let text = std::fs::read_to_string(&path).expect("written after a configuration error");
    assert_eq!(
        metric(
            &text,
            r#"trinity_watchdog_exit_code{command="kill",mode="dry_run"}"#
        ),
        Some(1.0),
        "{text}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "the write is atomic: no temporary file is left behind: {files:?}"
    );
}

#[test]
fn committed_man_page_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/man/trinity-watchdog.1");
    let generated = trinity_watchdog::man_page();
    assert!(
        generated.contains(".TH trinity-watchdog") && generated.contains("\\-\\-max\\-actions"),
        "{generated}"
    );
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is stale: run UPDATE_GENERATED=1 cargo test committed_"
    );
}

#[test]
fn the_agents_original_error_is_written_before_the_cleanup_reason() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("crashed", "alpha", "running", &ago(600));
    w.db.add_execution("silent", "alpha", "running", &ago(600));
    w.db.add_execution("verbose", "alpha", "running", &ago(600));
    w.db.add_execution("slow", "alpha", "running", &ago(600));
    let mut agent = FakeAgent::running(&["slow"]);
    agent.last_errors.insert(
        "crashed".into(),
        (
            "ProcessError".into(),
            "Claude exited with code 137 (out of memory).".into(),
        ),
    );
    agent
        .last_errors
        .insert("verbose".into(), ("TraceError".into(), "x".repeat(5000)));
    agent
        .last_errors
        .insert("slow".into(), ("Timeout".into(), "tool call hung".into()));
    // Credentials in the agent's text never reach the database (Trinity's scrubbing rules).
    w.db.add_execution("leaky", "alpha", "running", &ago(600));
    let token = format!("ghp_{}", "T0k3n".repeat(8));
    let key = format!("sk-ant-api03-{}", "Zz9_".repeat(8));
    agent.last_errors.insert(
        "leaky".into(),
        (
            "AuthError".into(),
            format!("git push with {token} failed; env ANTHROPIC_API_KEY={key} DB_PASSWORD='p w' MODE=fast; Authorization: Bearer abc.def-ghi"),
        ),
    );
    w.fleet.set("alpha", agent);
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let orphan_reason = "Execution not tracked by agent 'alpha' (not running, not pending, not recently completed) — recovered by watchdog";
    assert_eq!(
        w.db.row("crashed").error.unwrap(),
        format!(
            "[ProcessError] Claude exited with code 137 (out of memory). Cleanup: {orphan_reason}"
        )
    );
    assert_eq!(
        w.db.row("leaky").error.unwrap(),
        format!(
            "[AuthError] git push with ***REDACTED*** failed; env ANTHROPIC_API_KEY=***REDACTED*** DB_PASSWORD=***REDACTED*** MODE=fast; Authorization: ***REDACTED***. Cleanup: {orphan_reason}"
        )
    );
    assert_eq!(
        w.db.row("silent").error.unwrap(),
        orphan_reason,
        "404: just our reason"
    );
    let verbose = w.db.row("verbose").error.unwrap();
    assert_eq!(verbose.chars().count(), 2000);
    assert!(verbose.ends_with(&format!("…. Cleanup: {orphan_reason}")));
    assert_eq!(
        w.db.row("slow").error.unwrap(),
        "[Timeout] tool call hung. Cleanup: Execution auto-terminated after 10 minutes by watchdog (exceeded timeout of 60s)"
    );
    let asked: Vec<_> = w
        .fleet
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET last-error")
        .filter_map(|c| c.execution)
        .collect();
    assert_eq!(
        asked.len(),
        5,
        "asked once per execution it failed: {asked:?}"
    );
}

#[test]
fn a_reviewed_plan_applies_exactly_its_actions_and_skips_those_whose_facts_changed() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    for id in ["o-keep", "o-done", "o-back", "slow"] {
        w.db.add_execution(id, "alpha", "running", &ago(600));
    }
    w.fleet.set("alpha", FakeAgent::running(&["slow"]));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "o-keep", unix_ago(600), Some(60));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    let file = file.to_str().unwrap();

    let saved = w.run(&["scan", "--save", file]);
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    assert!(
        saved.stderr.contains("saved 4 actions") && saved.stderr.contains("--from"),
        "{}",
        saved.stderr
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let keep = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["execution_id"] == "o-keep")
        .unwrap()
        .clone();
    assert_eq!(keep["facts"]["row_status"], "running");
    assert_eq!(keep["facts"]["agent_reported"], "unknown");
    assert!(
        keep["facts"]["slot_score"].is_string(),
        "the score exactly as Redis holds it"
    );
    assert_eq!(
        w.db.row("o-keep").status,
        "running",
        "saving changes nothing"
    );

    // The world moves on: one row completes, one execution is accepted again, a new orphan appears.
    w.db.set("o-done", "status = 'success'");
    w.fleet.set(
        "alpha",
        FakeAgent {
            pending: Some(vec!["o-back".into()]),
            ..FakeAgent::running(&["slow"])
        },
    );
    w.db.add_execution("o-new", "alpha", "running", &ago(600));

    let out = w.run(&["scan", "--from", file, "--apply", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [
            item("o-back", "orphaned", "fail", "skipped"),
            item("o-done", "orphaned", "fail", "skipped"),
            item("o-keep", "orphaned", "fail", "applied"),
            item("slow", "timed_out", "terminate_and_fail", "applied"),
        ]
    );
    assert!(
        out.error("o-done")
            .contains("row status was running, is now success")
    );
    let back = out.error("o-back");
    assert!(
        back.contains("the agent reported it unknown, now pending"),
        "{back}"
    );
    assert_eq!(w.db.row("o-keep").status, "failed");
    assert_eq!(w.db.row("o-done").status, "success");
    assert_eq!(w.db.row("o-back").status, "running");
    assert_eq!(
        w.db.row("o-new").status,
        "running",
        "not in the reviewed plan, not touched"
    );
    assert!(slot_members(&mut r, "alpha").is_empty());
}

#[test]
fn a_plan_from_another_database_or_too_old_is_refused() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    let file = file.to_str().unwrap();
    assert_eq!(w.run(&["scan", "--save", file]).code, 0);

    let other = World::without_redis();
    other.db.add_execution("o-1", "alpha", "running", &ago(600));
    let out = other.run(&["scan", "--from", file, "--apply"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("the plan was made from database"),
        "{}",
        out.stderr
    );
    assert_eq!(other.db.row("o-1").status, "running");

    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    doc["generated_at"] = Value::String(ago(7200));
    std::fs::write(file, doc.to_string()).unwrap();
    let out = w.run(&["scan", "--from", file, "--apply"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("older than --max-plan-age 1h"),
        "{}",
        out.stderr
    );
    assert_eq!(
        w.run(&["scan", "--from", file, "--apply", "--max-plan-age", "3h"])
            .code,
        0
    );
    assert_eq!(w.db.row("o-1").status, "failed");

    std::fs::write(file, "{\"not\": \"a plan\"}").unwrap();
    let out = w.run(&["scan", "--from", file, "--apply"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is not a plan saved by"),
        "{}",
        out.stderr
    );
    assert_eq!(
        w.run(&["scan", "--from", file]).code,
        2,
        "--from needs --apply"
    );
}

// --- PostgreSQL --------------------------------------------------------------------------------

pub(crate) fn on_postgres<T>(test: impl FnOnce() -> T) -> T {
    let mut result = None;
    with_backend(Backend::Postgres, || result = Some(test()));
    result.expect("ran")
}

#[test]
fn postgres_advisory_lock_makes_a_second_apply_busy() {
    let w = on_postgres(World::without_redis);
    assert_eq!(
        w.db.args()[0],
        "--database-url",
        "this world runs on PostgreSQL"
    );
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let DbHandle::Postgres(url) = w.db.handle.clone() else {
        unreachable!()
    };
    let (hold, release) = (
        std::sync::mpsc::channel::<()>(),
        std::sync::mpsc::channel::<()>(),
    );
    let holder = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query_one(
                "SELECT pg_advisory_lock(hashtext('trinity-watchdog:apply'))",
                &[],
            )
            .unwrap();
        hold.0.send(()).unwrap();
        release.1.recv().unwrap();
    });
    hold.1.recv().unwrap();
    let out = w.run(&["scan", "--apply"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("PostgreSQL advisory lock"),
        "{}",
        out.stderr
    );
    assert_eq!(w.db.row("o-1").status, "running");
    assert_eq!(w.run(&["scan"]).code, 0, "a dry run never needs the lock");
    release.0.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        w.run(&["scan", "--apply"]).code,
        0,
        "the session's end released the lock"
    );
    assert_eq!(w.db.row("o-1").status, "failed");
}

#[test]
fn postgres_with_timestamp_typed_columns_reads_and_writes_them() {
    let w = on_postgres(World::without_redis);
    w.db.execute(
        "ALTER TABLE schedule_executions ALTER COLUMN started_at TYPE timestamptz USING started_at::timestamptz, \
         ALTER COLUMN completed_at TYPE timestamptz USING completed_at::timestamptz",
    );
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("slow-1", "alpha", "running", &ago(600));
    w.db.add_execution("new-1", "alpha", "running", &ago(10));
    w.fleet.set("alpha", FakeAgent::running(&["slow-1"]));
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [
            item("new-1", "grace", "none", "null"),
            item("slow-1", "timed_out", "terminate_and_fail", "applied")
        ]
    );
    let row = w.db.row("slow-1");
    assert_eq!(row.status, "failed");
    assert!(
        row.completed_at.is_some_and(|t| t.ends_with("+00")),
        "written into the timestamptz column"
    );
    assert!(
        row.duration_ms
            .is_some_and(|ms| (599_000..=660_000).contains(&ms))
    );
}

#[test]
fn postgres_without_trinitys_tables_or_unreachable_is_a_clear_error() {
    let w = on_postgres(World::without_redis);
    w.db.execute("DROP TABLE schedule_executions");
    let out = w.run(&["scan"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("is not a Trinity database: it has no table schedule_executions"),
        "{}",
        out.stderr
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://trinity:s3cret-pg-pw@127.0.0.1:{closed}/trinity");
    let out = run(&["scan", "--database-url", &url, "--no-redis"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("cannot connect to PostgreSQL at postgres://***@127.0.0.1"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3cret-pg-pw"));
}

#[test]
fn postgres_a_row_whose_update_fails_does_not_stop_the_others() {
    let w = on_postgres(World::without_redis);
    for id in ["o-1", "o-2", "o-3"] {
        w.db.add_execution(id, "alpha", "running", &ago(600));
    }
    w.fleet.set("alpha", FakeAgent::running(&[]));
    w.db.execute(
        "CREATE FUNCTION sacred() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'row o-2 is sacred'; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER no_touch BEFORE UPDATE ON schedule_executions FOR EACH ROW WHEN (OLD.id = 'o-2') EXECUTE FUNCTION sacred();",
    );
    let out = w.apply_json("scan");
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.error("o-2").contains("sacred"), "{}", out.error("o-2"));
    let statuses: Vec<String> = ["o-1", "o-2", "o-3"]
        .iter()
        .map(|id| w.db.row(id).status)
        .collect();
    assert_eq!(statuses, ["failed", "running", "failed"]);
}

#[test]
fn postgres_a_row_locked_past_the_lock_timeout_fails_alone() {
    let w = on_postgres(World::without_redis);
    for id in ["o-1", "o-2"] {
        w.db.add_execution(id, "alpha", "running", &ago(600));
    }
    w.fleet.set("alpha", FakeAgent::running(&[]));
    // Another writer holds o-1's row lock for longer than the tool's 5 s lock_timeout.
    let DbHandle::Postgres(url) = w.db.handle.clone() else {
        unreachable!()
    };
    let (locked, release) = (
        std::sync::mpsc::channel::<()>(),
        std::sync::mpsc::channel::<()>(),
    );
    let holder = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = client.transaction().unwrap();
        tx.query(
            "SELECT 1 FROM schedule_executions WHERE id = 'o-1' FOR UPDATE",
            &[],
        )
        .unwrap();
        locked.0.send(()).unwrap();
        release.1.recv().unwrap();
        tx.rollback().unwrap();
    });
    locked.1.recv().unwrap();
    let out = w.apply_json("scan");
    release.0.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.error("o-1").contains("lock timeout"),
        "{}",
        out.error("o-1")
    );
    assert_eq!(out.item("o-2")["outcome"], "applied");
    assert_eq!(
        (
            w.db.row("o-1").status.as_str(),
            w.db.row("o-2").status.as_str()
        ),
        ("running", "failed")
    );
}
