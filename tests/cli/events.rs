//! Recovery events on Trinity's event stream (`trinity:events`): one per won write, in the seed
//! watchdog's payload shape, published with the releases; never for lost writes, slot-only
//! releases or dry runs; `--events auto|on|off`; a failed publish is a warning, not a failure.

use super::*;

const STREAM: &str = "trinity:events";

/// Every entry of the stream: `(id, [field, value, …])`.
fn entries(r: &mut redis::Connection) -> Vec<(String, Vec<String>)> {
    redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query(r)
        .expect("XRANGE")
}

/// A stream that exists, as on a Trinity with the event bus: one entry of its own.
fn create_stream(r: &mut redis::Connection) {
    let _: String = redis::cmd("XADD")
        .arg(&[
            STREAM,
            "*",
            "payload",
            "{\"type\":\"agent_status\"}",
            "scope",
            "all",
        ])
        .query(r)
        .expect("XADD");
}

fn one_event_per_won_write_in_the_seeds_shape() {
    let w = World::new();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.db.add_execution("t-1", "alpha", "running", &ago(600));
    w.db.add_execution("r-1", "alpha", "running", &ago(600));
    w.db.add_execution("done-1", "alpha", "success", &ago(900));
    let mut r = w.redis();
    add_slot(&mut r, "alpha", "done-1", unix_ago(900), Some(60));
    create_stream(&mut r);
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
    assert_eq!(out.item("r-1")["outcome"], "race_lost");
    assert_eq!(out.item("o-1")["event_published"], true);
    assert_eq!(out.item("t-1")["event_published"], true);
    assert_eq!(out.item("r-1")["event_published"], Value::Null);
    assert_eq!(out.item("done-1")["event_published"], Value::Null);
    let summary = &out.json()["summary"];
    assert_eq!(
        (
            &summary["events"],
            &summary["events_published"],
            &summary["events_failed"]
        ),
        (&Value::from("published"), &Value::from(2), &Value::from(0))
    );

    let new: Vec<_> = entries(&mut r).into_iter().skip(1).collect();
    assert_eq!(new.len(), 2, "exactly one entry per won write: {new:?}");
    let mut seen = Vec::new();
    for (_, fields) in &new {
        let field = |name: &str| {
            let at = fields.iter().position(|f| f == name).expect(name);
            fields[at + 1].clone()
        };
        assert_eq!(field("scope"), "all");
        assert_eq!(field("agent_name"), "alpha");
        let payload: Value = serde_json::from_str(&field("payload")).unwrap();
        let id = payload["execution_id"].as_str().unwrap().to_owned();
        assert_eq!(payload["type"], "watchdog_recovery");
        assert_eq!(payload["agent_name"], "alpha");
        assert_eq!(
            payload["reason"].as_str(),
            w.db.row(&id).error.as_deref(),
            "reason is exactly what was written to the row"
        );
        let timestamp = payload["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
            "{timestamp}"
        );
        seen.push((id, payload["action"].as_str().unwrap().to_owned()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("o-1".to_owned(), "orphan_recovered".to_owned()),
            ("t-1".to_owned(), "auto_terminated".to_owned())
        ]
    );
    // A dry run never publishes.
    assert_eq!(w.scan_json().code, 0);
    assert_eq!(entries(&mut r).len(), 3);
}

fn auto_publishes_only_to_a_stream_that_exists() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.db.add_execution("o-2", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let mut r = w.redis();
    let out = w.run(&["scan", "--apply", "--agent", "alpha", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["summary"]["events"], "no_stream");
    assert_eq!(out.item("o-1")["event_published"], Value::Null);
    assert!(
        !exists(&mut r, STREAM),
        "a seed-era deployment gets no new key"
    );

    w.db.set("o-1", "status = 'running'");
    let out = w.run(&["scan", "--apply", "--events", "on", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["summary"]["events_published"], 1);
    let all = entries(&mut r);
    assert_eq!(all.len(), 1, "{all:?}");

    w.db.set("o-1", "status = 'running'");
    let out = w.run(&["scan", "--apply", "--events", "off", "-o", "json"]);
    assert_eq!(out.json()["summary"]["events"], "off");
    assert_eq!(entries(&mut r).len(), 1, "off never publishes");
}

fn a_failed_publish_is_a_warning_never_a_failed_action() {
    let w = World::new();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.db.add_execution("o-2", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let mut r = w.redis();
    set_key(&mut r, STREAM, "not a stream");
    // auto sees that the key is not a stream and publishes nothing.
    let out = w.run(&["recover", "--apply", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["summary"]["events"], "no_stream");

    w.db.set("o-1", "status = 'running'");
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.prom");
    let out = w.run(&[
        "recover",
        "--apply",
        "--events",
        "on",
        "-o",
        "json",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "the writes are done: {}", out.stderr);
    assert_eq!(w.db.row("o-1").status, "failed");
    assert_eq!(out.item("o-1")["outcome"], "applied");
    assert_eq!(out.item("o-1")["event_published"], false);
    assert_eq!(out.json()["summary"]["events_failed"], 1);
    assert!(
        out.stderr
            .contains("recovery events could not be published")
            && out.stderr.contains("WRONGTYPE"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains(
            r#"trinity_watchdog_events{command="recover",mode="apply",result="failed"} 1"#
        ),
        "{text}"
    );
    let kept: String = redis::cmd("GET").arg(STREAM).query(&mut r).unwrap();
    assert_eq!(kept, "not a stream");
}

fn no_redis_means_no_events_and_the_plan_says_so() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    let out = w.run(&["scan", "--apply", "--events", "on", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["summary"]["events"], "no_redis");
    let table = w.run(&["kill", "o-1", "--apply"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
}

mod on_sqlite {
    #[test]
    fn one_event_per_won_write_in_the_seeds_shape() {
        super::one_event_per_won_write_in_the_seeds_shape();
    }
    #[test]
    fn auto_publishes_only_to_a_stream_that_exists() {
        super::auto_publishes_only_to_a_stream_that_exists();
    }
    #[test]
    fn a_failed_publish_is_a_warning_never_a_failed_action() {
        super::a_failed_publish_is_a_warning_never_a_failed_action();
    }
    #[test]
    fn no_redis_means_no_events_and_the_plan_says_so() {
        super::no_redis_means_no_events_and_the_plan_says_so();
    }
}

mod on_postgres {
    use super::super::harness::{Backend, with_backend};

    #[test]
    fn one_event_per_won_write_in_the_seeds_shape() {
        with_backend(
            Backend::Postgres,
            super::one_event_per_won_write_in_the_seeds_shape,
        );
    }
    #[test]
    fn auto_publishes_only_to_a_stream_that_exists() {
        with_backend(
            Backend::Postgres,
            super::auto_publishes_only_to_a_stream_that_exists,
        );
    }
    #[test]
    fn a_failed_publish_is_a_warning_never_a_failed_action() {
        with_backend(
            Backend::Postgres,
            super::a_failed_publish_is_a_warning_never_a_failed_action,
        );
    }
}
