//! A small simulated Trinity deployment on this machine — a temp SQLite database with Trinity's
//! schema, fake agents on loopback whose states cover every verdict, and a redis-server on a free
//! port when one is on PATH — then the real scan, the apply, and a final scan that finds nothing
//! left to do. Run it with `cargo run --example demo`.
#![allow(clippy::print_stdout)] // the demo narrates on stdout

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::*;

fn main() -> std::process::ExitCode {
    let db = TrinityDb::new();
    let fleet = Fleet::start();
    let redis = RedisServer::start();

    // alpha: a current agent image.
    db.add_agent("alpha", Some(1800));
    db.add_schedule("nightly-report", "alpha", Some(600));
    db.add_execution("alpha-healthy", "alpha", "running", &ago(120));
    db.add_execution_on(
        "alpha-slow",
        "alpha",
        "running",
        &ago(1260),
        "nightly-report",
    );
    db.add_execution("alpha-zombie", "alpha", "success", &ago(1500));
    db.add_execution("alpha-queued", "alpha", "running", &ago(300));
    db.add_execution("alpha-finishing", "alpha", "running", &ago(2400));
    db.add_execution("alpha-old-done", "alpha", "cancelled", &ago(3600));
    fleet.set(
        "alpha",
        FakeAgent {
            pending: Some(vec!["alpha-queued".into()]),
            recently_completed: Some(vec!["alpha-finishing".into()]),
            ..FakeAgent::running(&["alpha-healthy", "alpha-slow", "alpha-zombie", "alpha-stray"])
        },
    );
    // beta: an older agent image, without pending_ids / recently_completed_ids.
    db.add_agent("beta", None);
    db.add_execution("beta-orphan", "beta", "running", &ago(900));
    db.add_execution("beta-new", "beta", "running", &ago(20));
    db.add_execution("beta-dispatching", "beta", "running", &ago(300));
    fleet.set(
        "beta",
        FakeAgent {
            recently_completed: None,
            pending: None,
            ..FakeAgent::running(&[])
        },
    );
    // gamma: an agent that answers 500; its long-running row must be left alone.
    db.add_agent("gamma", None);
    db.add_execution("gamma-1", "gamma", "running", &ago(3 * 3600));
    fleet.set("gamma", FakeAgent::answering(Answer::Status(500)));
    // retired: an agent deleted from Trinity (no agent_ownership row) that no longer answers; its
    // row is past its timeout + 300 s, so nothing will ever finish it.
    db.add_execution("retired-1", "retired", "running", &ago(2 * 3600));
    // The dashboard's activity for beta's orphan, which the apply closes with the row.
    db.add_activities_table();
    db.add_activity("activity-1", "beta-orphan", "schedule_start", "started");

    let redis_url = redis.as_ref().map(|server| {
        let mut conn = server.conn();
        add_slot(
            &mut conn,
            "alpha",
            "alpha-old-done",
            unix_ago(3600),
            Some(600),
        );
        add_slot(
            &mut conn,
            "alpha",
            "alpha-healthy",
            unix_ago(120),
            Some(1800),
        );
        add_slot(&mut conn, "alpha", "drain-1", unix_ago(7200), None);
        add_slot(&mut conn, "beta", "beta-orphan", unix_ago(900), Some(900));
        set_key(&mut conn, "agent:running:beta", r#"{"id": "beta-orphan"}"#);
        set_key(&mut conn, "execution:inflight:beta-dispatching", "worker-3");
        // A Trinity with the event bus: its stream exists, so the apply announces its repairs.
        let _: String = redis::cmd("XADD")
            .arg(&[
                "trinity:events",
                "*",
                "payload",
                r#"{"type":"agent_started"}"#,
                "scope",
                "all",
            ])
            .query(&mut conn)
            .expect("XADD");
        server.url()
    });
    if redis_url.is_none() {
        println!(
            "(redis-server is not on PATH: the demo runs without Redis, so capacity is not checked)\n"
        );
    }

    let template = fleet.template();
    let watchdog = |extra: &[&str]| {
        let mut args = vec!["trinity-watchdog"];
        args.extend_from_slice(extra);
        println!("$ {}\n", args.join(" "));
        args.extend(["--db", db.path(), "--agent-url", &template]);
        match &redis_url {
            Some(url) => args.extend(["--redis-url", url]),
            None => args.push("--no-redis"),
        }
        let code = trinity_watchdog::run(args);
        println!("(exit code {})\n", code.code());
        code
    };

    watchdog(&["scan", "--all"]);
    let applied = watchdog(&["scan", "--apply"]);
    let activity = db.activity("activity-1");
    println!(
        "The dashboard's activity of beta-orphan, closed with its row: {} (completed_at {}, error {:?})\n",
        activity.status,
        activity.completed_at.as_deref().unwrap_or("-"),
        activity.error.as_deref().unwrap_or("-")
    );
    if let Some(server) = &redis {
        // What an open dashboard receives: the stream's watchdog_recovery entries.
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&["trinity:events", "-", "+"])
            .query(&mut server.conn())
            .expect("XRANGE");
        println!("A dashboard consuming trinity:events receives:");
        for (_, fields) in entries {
            let payload = fields
                .iter()
                .position(|field| field == "payload")
                .and_then(|at| fields.get(at + 1))
                .cloned()
                .unwrap_or_default();
            if payload.contains("watchdog_recovery") {
                println!("  {payload}");
            }
        }
        println!();
    }
    let after = watchdog(&["scan", "--exit-code"]);
    println!(
        "The final scan plans no action. It exits 4 because some things need a person: gamma does \
         not answer, retired-1 is abandoned (`recover --apply --recover-abandoned` would fail it), \
         and alpha's drain-1 sentinel is stuck (a capacity finding the tool never changes). \
         Everything the demo created is removed on exit."
    );
    if applied == trinity_watchdog::ExitCode::Ok && after != trinity_watchdog::ExitCode::Fatal {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
