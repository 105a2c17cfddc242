//! Leaving current Trinity whole (SPEC §3.1): the paired activity closed with the row, rows that
//! nothing will ever finish, `kill --no-terminate`, expired leases, capacity findings and the
//! 3600 s default timeout. Every scenario runs against SQLite and again against PostgreSQL.

use super::*;

/// The paired activity of a won write is closed in the same transaction; a `tool_call` sharing
/// the id, and the activity of a row whose write was lost, are left alone.
fn the_paired_activity_is_closed_with_the_row() {
    let w = World::new();
    w.db.add_activities_table();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.db.add_execution("t-1", "alpha", "running", &ago(600));
    w.db.add_execution("r-1", "alpha", "running", &ago(600));
    w.db.add_activity("act-o", "o-1", "schedule_start", "started");
    w.db.add_activity("act-tool", "o-1", "tool_call", "started");
    w.db.add_activity("act-t", "t-1", "chat_start", "started");
    w.db.add_activity("act-r", "r-1", "schedule_start", "started");
    // r-1 completes between the plan and the apply: its write is lost.
    let hook = Hook::completing_at_recheck(&w.db.handle, "r-1");
    w.fleet.set(
        "alpha",
        FakeAgent {
            hook: Some(hook),
            ..FakeAgent::running(&["t-1"])
        },
    );
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.item("o-1")["outcome"], "applied");
    assert_eq!(out.item("r-1")["outcome"], "race_lost");
    assert_eq!(out.item("o-1")["activities_closed"], 1);
    assert_eq!(out.item("t-1")["activities_closed"], 1);
    assert_eq!(out.item("r-1")["activities_closed"], Value::Null);
    assert_eq!(out.json()["summary"]["activities_closed"], 2);

    for (activity, execution) in [("act-o", "o-1"), ("act-t", "t-1")] {
        let (closed, row) = (w.db.activity(activity), w.db.row(execution));
        assert_eq!(closed.status, "failed", "{activity}");
        assert_eq!(closed.completed_at, row.completed_at, "{activity}");
        assert_eq!(closed.duration_ms, row.duration_ms, "{activity}");
        assert_eq!(closed.error, row.error, "{activity}");
    }
    assert_eq!(
        w.db.row("o-1").duration_ms,
        None,
        "an orphan's duration is unknown"
    );
    assert!(w.db.row("t-1").duration_ms.is_some());
    assert_eq!(
        w.db.activity("act-tool").status,
        "started",
        "a tool_call is never touched"
    );
    assert_eq!(
        w.db.activity("act-r").status,
        "started",
        "a lost write closes nothing"
    );
    w.assert_converged();
}

/// An agent deleted from Trinity that does not answer: its old rows are `abandoned` (and only
/// reported); younger ones, and those of an owned agent, stay `unreachable`.
fn rows_nothing_will_finish_are_abandoned() {
    let w = World::new();
    w.db.add_activities_table();
    w.db.add_agent("kept", None);
    // Default timeout 3600 s: abandoned past 3900 s.
    w.db.add_execution("gone-old", "gone", "running", &ago(3900 + 60));
    w.db.add_execution("gone-young", "gone", "running", &ago(3900 - 10));
    w.db.add_execution("kept-old", "kept", "running", &ago(99_999));
    w.db.add_activity("act-gone", "gone-old", "schedule_start", "started");
    add_slot(
        &mut w.redis(),
        "gone",
        "gone-old",
        unix_ago(4000),
        Some(3600),
    );
    // Neither agent is served: both are unreachable.
    let dry = w.scan_json();
    assert_eq!(
        dry.items(),
        [
            item("gone-old", "abandoned", "none", "null"),
            item("gone-young", "unreachable", "none", "null"),
            item("kept-old", "unreachable", "none", "null"),
        ]
    );
    assert!(
        dry.item("gone-old")["reason"]
            .as_str()
            .unwrap()
            .contains("no longer exists in agent_ownership"),
        "{}",
        dry.stdout
    );
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        w.db.row("gone-old").status,
        "running",
        "nothing changes without the flag"
    );
    assert_eq!(
        w.run(&["scan", "--exit-code"]).code,
        4,
        "an abandoned row needs a person"
    );

    w.fleet.clear_calls();
    let out = w.run(&["recover", "--apply", "--recover-abandoned", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [item("gone-old", "abandoned", "fail", "applied")]
    );
    let row = w.db.row("gone-old");
    assert_eq!(row.status, "failed");
    assert!(
        row.error
            .as_deref()
            .unwrap()
            .contains("agent 'gone' no longer exists"),
        "{row:?}"
    );
    assert_eq!(row.duration_ms, None);
    assert_eq!(w.db.activity("act-gone").status, "failed");
    assert!(slot_members(&mut w.redis(), "gone").is_empty());
    let sent: Vec<_> = w
        .fleet
        .calls()
        .into_iter()
        .filter(|call| call.agent == "gone" && call.method != "GET")
        .collect();
    assert!(sent.is_empty(), "no terminate, no last-error: {sent:?}");
    assert_eq!(w.db.row("gone-young").status, "running");
    assert_eq!(w.db.row("kept-old").status, "running");
}

/// `kill ID --no-terminate`: no HTTP request at all; the row is failed, its slot released, its
/// activity closed.
fn kill_no_terminate_closes_the_row_without_contacting_the_agent() {
    let w = World::new();
    w.db.add_activities_table();
    w.db.add_agent("alpha", None);
    w.db.add_execution("x-1", "alpha", "running", &ago(600));
    w.db.add_execution("done-1", "alpha", "success", &ago(600));
    w.db.add_activity("act-x", "x-1", "schedule_start", "started");
    add_slot(&mut w.redis(), "alpha", "x-1", unix_ago(600), Some(3600));
    w.fleet.set("alpha", FakeAgent::running(&["x-1"]));
    let out = w.run(&[
        "kill",
        "x-1",
        "done-1",
        "--no-terminate",
        "--apply",
        "-o",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(w.fleet.calls().is_empty(), "{:?}", w.fleet.calls());
    assert_eq!(out.item("x-1")["action"], "fail");
    assert_eq!(out.item("x-1")["outcome"], "applied");
    assert_eq!(out.item("done-1")["action"], "none");
    let row = w.db.row("x-1");
    assert_eq!(row.status, "failed");
    assert_eq!(
        row.error.as_deref(),
        Some("Execution closed by operator (trinity-watchdog kill --no-terminate)")
    );
    assert!(row.duration_ms.is_some());
    assert_eq!(w.db.activity("act-x").status, "failed");
    assert!(slot_members(&mut w.redis(), "alpha").is_empty());
    assert_eq!(w.db.row("done-1").status, "success");
}

/// A lease that expired more than the grace ago: `lease_expired`, saying whether the agent
/// still runs the row; never acted on. A lease that expired within the grace, or lies in the
/// future: no item.
fn expired_leases_are_reported_and_never_acted_on() {
    let w = World::without_redis();
    w.db.add_lease_column();
    w.db.add_agent("alpha", Some(60));
    for id in ["l-running", "l-idle", "l-recent", "l-future"] {
        w.db.add_execution(id, "alpha", "running", &ago(99_999));
    }
    w.db.set("l-running", &format!("lease_expires_at = '{}'", ago(600)));
    w.db.set("l-idle", &format!("lease_expires_at = '{}'", ago(600)));
    w.db.set("l-recent", &format!("lease_expires_at = '{}'", ago(10)));
    w.db.set("l-future", &format!("lease_expires_at = '{}'", ago(-600)));
    w.fleet.set("alpha", FakeAgent::running(&["l-running"]));
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.items(),
        [
            item("l-idle", "lease_expired", "none", "null"),
            item("l-running", "lease_expired", "none", "null"),
        ]
    );
    let reason = |id: &str| out.item(id)["reason"].as_str().unwrap().to_owned();
    assert!(
        reason("l-running").contains("still runs it"),
        "{}",
        reason("l-running")
    );
    assert!(
        reason("l-idle").contains("does not run it"),
        "{}",
        reason("l-idle")
    );
    assert!(w.fleet.terminate_calls().is_empty());
    for id in ["l-running", "l-idle", "l-recent", "l-future"] {
        assert_eq!(w.db.row(id).status, "running", "{id}");
    }
    assert_eq!(w.run(&["scan", "--exit-code"]).code, 4);
}

/// `overbooked` and `stuck_drain` are reported per agent, counted by `--exit-code` (each alone)
/// and in the metrics, and never changed.
fn capacity_findings_are_reported_and_never_changed() {
    let w = World::new();
    w.db.add_agent("alpha", None);
    w.db.add_agent("beta", None);
    w.db.execute("UPDATE agent_ownership SET max_parallel_tasks = 2 WHERE agent_name = 'alpha'");
    let mut r = w.redis();
    let ids = ["a-1", "a-2", "a-3"];
    for id in ids {
        w.db.add_execution(id, "alpha", "running", &ago(60));
        add_slot(&mut r, "alpha", id, unix_ago(60), Some(3600));
    }
    w.fleet.set("alpha", FakeAgent::running(&ids));
    w.fleet.set("beta", FakeAgent::running(&[]));

    let out = w.run(&["scan", "--exit-code", "-o", "json"]);
    assert_eq!(out.code, 4, "overbooked alone: {}", out.stdout);
    assert_eq!(out.actions(), 0);
    let alpha = out.json()["agents"][0].clone();
    assert_eq!(alpha["findings"][0]["kind"], "overbooked", "{alpha}");
    assert!(
        alpha["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("3 slots held, max_parallel_tasks is 2")
    );
    assert_eq!(
        out.json()["summary"]["by_finding"],
        serde_json::json!({"overbooked": 1})
    );

    // A stuck drain- sentinel on beta, and alpha back within its capacity.
    w.db.execute("UPDATE agent_ownership SET max_parallel_tasks = 3 WHERE agent_name = 'alpha'");
    add_slot(&mut r, "beta", "drain-1", unix_ago(7200), None);
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.prom");
    let out = w.run(&[
        "scan",
        "--exit-code",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 4, "stuck_drain alone: {}", out.stdout);
    assert!(
        out.stdout
            .contains("beta: stuck_drain: drain-1 held for 2h")
            && out.stdout.contains("capacity findings: 1 stuck_drain"),
        "{}",
        out.stdout
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains(r#"trinity_watchdog_capacity_findings{command="scan",mode="dry_run",finding="stuck_drain"} 1"#),
        "{text}"
    );
    let applied = w.apply_json("scan");
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(slot_members(&mut r, "beta"), ["drain-1"], "never changed");
    assert_eq!(slot_members(&mut r, "alpha").len(), 3);
}

/// Trinity's default timeout is 3600 s; `--default-timeout 900` restores the seed's.
fn the_default_timeout_is_an_hour() {
    let w = World::without_redis();
    w.db.add_agent("alpha", None);
    w.db.add_execution("x-1", "alpha", "running", &ago(20 * 60));
    w.fleet.set("alpha", FakeAgent::running(&["x-1"]));
    let out = w.scan_json();
    assert_eq!(out.items(), [item("x-1", "healthy", "none", "null")]);
    assert_eq!(out.item("x-1")["timeout_seconds"], 3600);
    assert_eq!(out.item("x-1")["timeout_source"], "default");
    let seed = w.run(&["scan", "-o", "json", "--default-timeout", "900"]);
    assert_eq!(
        seed.items(),
        [item("x-1", "timed_out", "terminate_and_fail", "null")]
    );
}

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name();
                }
            )*
        }
        mod on_postgres {
            use super::super::harness::{with_backend, Backend};
            $(
                #[test]
                fn $name() {
                    with_backend(Backend::Postgres, super::$name);
                }
            )*
        }
    };
}

on_both_databases!(
    the_paired_activity_is_closed_with_the_row,
    rows_nothing_will_finish_are_abandoned,
    kill_no_terminate_closes_the_row_without_contacting_the_agent,
    expired_leases_are_reported_and_never_acted_on,
    capacity_findings_are_reported_and_never_changed,
    the_default_timeout_is_an_hour,
);
