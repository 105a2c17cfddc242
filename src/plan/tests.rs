use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::snapshot::{AgentAnswer, AgentReport, Capacity, Row, Slot, Snapshot};

pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

pub(super) fn policy(scope: Scope) -> Policy {
    Policy {
        grace: Duration::from_secs(60),
        default_timeout: Duration::from_secs(900),
        agents: AgentScope::default(),
        scope,
        recover_abandoned: false,
        no_terminate: false,
    }
}

/// A row that started `age` seconds before `now()`.
fn row(id: &str, agent: &str, status: &str, age: i64) -> Row {
    let started = now() - chrono::Duration::seconds(age);
    Row {
        id: id.into(),
        agent: agent.into(),
        status: status.into(),
        started_at: crate::timestamp::format(started),
        started: Some(started),
        completed: (status != "running").then_some(started),
        schedule_timeout: None,
        agent_timeout: None,
        leased: false,
        lease_expires: None,
    }
}

fn answer(running: &[&str]) -> AgentAnswer {
    AgentAnswer {
        running: running.iter().map(|s| s.to_string()).collect(),
        recently_completed: Some(vec![]),
        pending: Some(vec![]),
    }
}

fn agent(name: &str, answer: AgentAnswer) -> AgentReport {
    AgentReport {
        name: name.into(),
        latency_ms: Some(1),
        answer: Ok(answer),
    }
}

fn snapshot(rows: Vec<Row>, agents: Vec<AgentReport>) -> Snapshot {
    Snapshot {
        rows,
        agents,
        capacity: None,
        owned: None,
        warnings: vec![],
    }
}

fn slot(agent: &str, id: &str, held: f64, has_metadata: bool, timeout: Option<i64>) -> Slot {
    Slot {
        agent: agent.into(),
        execution_id: id.into(),
        acquired_at: now().timestamp() as f64 - held,
        score: (now().timestamp() as f64 - held).to_string(),
        has_metadata,
        timeout_seconds: timeout,
    }
}

fn verdicts(snapshot: &Snapshot, scope: Scope) -> Vec<(String, Verdict, Action)> {
    plan(snapshot, &policy(scope), now())
        .items
        .into_iter()
        .map(|item| (item.execution_id, item.verdict, item.action))
        .collect()
}

fn only(snapshot: &Snapshot) -> Item {
    let mut items = plan(snapshot, &policy(Scope::Scan), now()).items;
    assert_eq!(items.len(), 1, "{items:#?}");
    items.remove(0)
}

#[test]
fn effective_timeout_falls_through_zero_and_null() {
    let default = Duration::from_secs(900);
    let t = |s, a| effective_timeout(s, a, default);
    assert_eq!(
        t(Some(120), Some(300)),
        Timeout {
            seconds: 120,
            source: TimeoutSource::Schedule
        }
    );
    assert_eq!(
        t(Some(0), Some(300)),
        Timeout {
            seconds: 300,
            source: TimeoutSource::Agent
        }
    );
    assert_eq!(
        t(None, Some(300)),
        Timeout {
            seconds: 300,
            source: TimeoutSource::Agent
        }
    );
    assert_eq!(
        t(None, Some(0)),
        Timeout {
            seconds: 900,
            source: TimeoutSource::Default
        }
    );
    assert_eq!(
        t(Some(-5), None),
        Timeout {
            seconds: 900,
            source: TimeoutSource::Default
        }
    );
}

#[test]
fn healthy_when_agent_runs_it_within_timeout_and_exactly_at_it() {
    for age in [0, 899, 900] {
        let item = only(&snapshot(
            vec![row("x", "a", "running", age)],
            vec![agent("a", answer(&["x"]))],
        ));
        assert_eq!(
            (item.verdict, item.action),
            (Verdict::Healthy, Action::None),
            "age {age}"
        );
        assert_eq!(item.timeout_source, Some(TimeoutSource::Default));
    }
}

#[test]
fn timed_out_one_second_past_timeout_with_trinitys_message() {
    let mut r = row("x", "a", "running", 901);
    r.agent_timeout = Some(300);
    r.schedule_timeout = Some(0);
    r.started = Some(now() - chrono::Duration::seconds(301));
    let item = only(&snapshot(vec![r], vec![agent("a", answer(&["x"]))]));
    assert_eq!(
        (item.verdict, item.action),
        (Verdict::TimedOut, Action::TerminateAndFail)
    );
    assert_eq!(item.timeout_source, Some(TimeoutSource::Agent));
    assert_eq!(
        item.fail_message.as_deref(),
        Some("Execution auto-terminated after 5 minutes by watchdog (exceeded timeout of 300s)")
    );
}

#[test]
fn only_in_recently_completed_or_pending_is_healthy_even_past_timeout() {
    for field in ["recently_completed", "pending"] {
        let mut a = answer(&[]);
        let list = Some(vec!["x".to_string()]);
        if field == "pending" {
            a.pending = list
        } else {
            a.recently_completed = list
        }
        let item = only(&snapshot(
            vec![row("x", "a", "running", 5000)],
            vec![agent("a", a)],
        ));
        assert_eq!(
            (item.verdict, item.action),
            (Verdict::Healthy, Action::None),
            "{field}"
        );
        assert!(
            item.reason.contains(&field.replace('_', " ")),
            "{}",
            item.reason
        );
    }
}

#[test]
fn grace_below_and_orphaned_exactly_at_grace() {
    let s = |age| {
        snapshot(
            vec![row("x", "a", "running", age)],
            vec![agent("a", answer(&[]))],
        )
    };
    assert_eq!(only(&s(59)).verdict, Verdict::Grace);
    let item = only(&s(60));
    assert_eq!(
        (item.verdict, item.action),
        (Verdict::Orphaned, Action::Fail)
    );
    assert_eq!(
        item.fail_message.as_deref(),
        Some(
            "Execution not tracked by agent 'a' (not running, not pending, not recently completed) — recovered by watchdog"
        )
    );
}

#[test]
fn orphan_message_names_only_what_an_old_agent_reported() {
    let mut old = answer(&[]);
    old.pending = None;
    let item = only(&snapshot(
        vec![row("x", "a", "running", 600)],
        vec![agent("a", old.clone())],
    ));
    assert_eq!(
        item.fail_message.as_deref(),
        Some(
            "Execution not tracked by agent 'a' (not running, not recently completed) — recovered by watchdog"
        )
    );
    old.recently_completed = None;
    let item = only(&snapshot(
        vec![row("x", "a", "running", 600)],
        vec![agent("a", old)],
    ));
    assert_eq!(
        item.fail_message.as_deref(),
        Some("Execution not tracked by agent 'a' (not running) — recovered by watchdog")
    );
}

#[test]
fn in_flight_marker_protects_an_unknown_row() {
    let mut s = snapshot(
        vec![row("x", "a", "running", 600)],
        vec![agent("a", answer(&[]))],
    );
    s.capacity = Some(Capacity {
        in_flight: ["x".to_string()].into(),
        ..Capacity::default()
    });
    assert_eq!(
        (only(&s).verdict, only(&s).action),
        (Verdict::InFlight, Action::None)
    );
}

#[test]
fn unreachable_agent_rows_get_no_action() {
    let report = AgentReport {
        name: "a".into(),
        latency_ms: None,
        answer: Err("connection refused".into()),
    };
    let item = only(&snapshot(
        vec![row("x", "a", "running", 99_999)],
        vec![report],
    ));
    assert_eq!(
        (item.verdict, item.action),
        (Verdict::Unreachable, Action::None)
    );
    assert!(item.reason.contains("connection refused"));
}

#[test]
fn abandoned_rows_do_not_dilute_the_systemic_brake() {
    // Five orphans and five abandoned rows: the brake sees five of five rows on reachable agents.
    let mut rows: Vec<Row> = (0..5)
        .map(|i| row(&format!("o{i}"), "a", "running", 600))
        .collect();
    rows.extend((0..5).map(|i| row(&format!("g{i}"), "gone", "running", 99_999)));
    let mut s = snapshot(rows, vec![agent("a", answer(&[]))]);
    s.agents.push(AgentReport {
        name: "gone".into(),
        latency_ms: None,
        answer: Err("HTTP 500".into()),
    });
    s.owned = Some([("a".to_owned(), None)].into());
    let plan = plan(&s, &policy(Scope::Scan), now());
    assert_eq!(plan.by_verdict().get("abandoned"), Some(&5));
    assert_eq!(
        plan.census,
        Census {
            running_on_reachable: 5,
            orphaned: 5
        }
    );
}

#[test]
fn a_lease_that_does_not_parse_is_reported() {
    let mut leased = row("l", "a", "running", 99_999);
    leased.leased = true;
    let s = snapshot(vec![leased], vec![agent("a", answer(&[]))]);
    let items = plan(&s, &policy(Scope::Scan), now()).items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].verdict, Verdict::LeaseExpired);
    assert_eq!(items[0].action, Action::None);
    assert!(
        items[0].reason.contains("does not parse"),
        "{}",
        items[0].reason
    );
}

#[test]
fn leased_and_non_running_rows_are_not_items() {
    let mut leased = row("l", "a", "running", 99_999);
    leased.leased = true;
    leased.lease_expires = Some(now() + chrono::Duration::seconds(600));
    let rows = vec![
        leased,
        row("q", "a", "queued", 9999),
        row("r", "a", "pending_retry", 9999),
        row("s", "a", "success", 9999),
    ];
    assert!(
        verdicts(
            &snapshot(rows, vec![agent("a", answer(&["l"]))]),
            Scope::Scan
        )
        .is_empty()
    );
}

#[test]
fn unparseable_started_at_is_orphaned_when_unknown_and_healthy_when_known() {
    let mut r = row("x", "a", "running", 0);
    r.started_at = "garbage".into();
    r.started = None;
    let item = only(&snapshot(vec![r.clone()], vec![agent("a", answer(&[]))]));
    assert_eq!(item.verdict, Verdict::Orphaned);
    assert!(item.reason.contains("age is unknown"), "{}", item.reason);
    assert_eq!(item.age_seconds, None);
    let item = only(&snapshot(vec![r], vec![agent("a", answer(&["x"]))]));
    assert_eq!(item.verdict, Verdict::Healthy);
    assert!(item.reason.contains("warning"), "{}", item.reason);
}

#[test]
fn future_started_at_counts_as_age_zero() {
    let item = only(&snapshot(
        vec![row("x", "a", "running", -3600)],
        vec![agent("a", answer(&[]))],
    ));
    assert_eq!((item.verdict, item.age_seconds), (Verdict::Grace, Some(0)));
}

#[test]
fn zombie_after_grace_since_completion_untracked_without_row() {
    let mut done = row("z", "a", "success", 600);
    done.completed = Some(now() - chrono::Duration::seconds(61));
    let mut fresh = row("f", "a", "failed", 600);
    fresh.completed = Some(now() - chrono::Duration::seconds(60));
    let s = snapshot(
        vec![done, fresh],
        vec![agent("a", answer(&["z", "f", "u"]))],
    );
    assert_eq!(
        verdicts(&s, Scope::Scan),
        vec![
            ("f".into(), Verdict::Grace, Action::None),
            ("u".into(), Verdict::Untracked, Action::None),
            ("z".into(), Verdict::Zombie, Action::Terminate),
        ]
    );
}

#[test]
fn leaked_slots_follow_the_row_and_the_ttl() {
    let rows = vec![
        row("done", "a", "cancelled", 100),
        row("run", "a", "running", 10),
        row("queued", "a", "queued", 100),
    ];
    let slots = vec![
        slot("a", "done", 16.0, true, Some(900)), // terminal row, past 15 s: leaked
        slot("a", "done-young", 15.0, false, None), // no row, metadata gone, but only 15 s old
        slot("a", "run", 5000.0, true, Some(60)), // running row: never leaked
        slot("a", "queued", 5000.0, true, Some(60)), // queued row: never leaked
        slot("a", "drain-1", 99_999.0, false, None), // sentinel: never touched
        slot("a", "chat-expired", 100.0, false, None), // no row, metadata gone: leaked
        slot("a", "chat-live", 1000.0, true, Some(900)), // no row, inside timeout + 300: live
        slot("a", "chat-old", 1201.0, true, Some(900)), // no row, past timeout + 300: leaked
    ];
    let mut s = snapshot(rows, vec![agent("a", answer(&["run"]))]);
    s.capacity = Some(Capacity {
        slots,
        ..Capacity::default()
    });
    let leaked: Vec<_> = verdicts(&s, Scope::Recover)
        .into_iter()
        .map(|(id, v, a)| {
            assert_eq!((v, a), (Verdict::LeakedSlot, Action::ReleaseSlot));
            id
        })
        .collect();
    assert_eq!(leaked, ["chat-expired", "chat-old", "done"]);
}

#[test]
fn scopes_limit_the_verdicts() {
    let mut done = row("z", "a", "success", 600);
    done.completed = Some(now() - chrono::Duration::seconds(600));
    let rows = vec![
        row("o", "a", "running", 600),
        row("t", "a", "running", 1000),
        row("h", "a", "running", 10),
        done,
    ];
    let s = snapshot(rows, vec![agent("a", answer(&["t", "h", "z"]))]);
    let ids = |scope| {
        verdicts(&s, scope)
            .into_iter()
            .map(|(id, _, _)| id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(Scope::Scan), ["h", "o", "t", "z"]);
    assert_eq!(ids(Scope::Recover), ["o"]);
    assert_eq!(ids(Scope::Kill), ["t", "z"]);
}

#[test]
fn agent_filter_limits_rows_processes_and_slots() {
    let rows = vec![row("x", "a", "running", 600), row("y", "b", "running", 600)];
    let mut s = snapshot(
        rows,
        vec![agent("a", answer(&["ua"])), agent("b", answer(&["ub"]))],
    );
    s.capacity = Some(Capacity {
        slots: vec![slot("b", "gone", 100.0, false, None)],
        ..Capacity::default()
    });
    let mut p = policy(Scope::Scan);
    p.agents.names = ["a".to_string()].into();
    let ids: Vec<_> = plan(&s, &p, now())
        .items
        .into_iter()
        .map(|i| i.execution_id)
        .collect();
    assert_eq!(ids, ["ua", "x"]);
}

#[test]
fn requested_ids_pick_their_action_from_the_row() {
    let mut leased = row("l", "a", "running", 10);
    leased.leased = true;
    let rows = vec![
        row("r", "a", "running", 10),
        row("s", "a", "success", 10),
        leased,
    ];
    let s = snapshot(rows, vec![agent("b", answer(&["norow"]))]);
    let ids = ["r", "s", "norow", "nothing", "l", "r"]
        .map(String::from)
        .to_vec();
    let items = plan(&s, &policy(Scope::KillIds(ids)), now()).items;
    let got: Vec<_> = items
        .iter()
        .map(|i| (i.execution_id.as_str(), i.agent.as_deref(), i.action))
        .collect();
    assert_eq!(
        got,
        [
            ("nothing", None, Action::None),
            ("l", Some("a"), Action::Terminate),
            ("r", Some("a"), Action::TerminateAndFail),
            ("s", Some("a"), Action::Terminate),
            ("norow", Some("b"), Action::Terminate),
        ]
    );
    assert!(items.iter().all(|i| i.verdict == Verdict::Requested));
    let r = items.iter().find(|i| i.execution_id == "r").unwrap();
    assert_eq!(r.fail_message.as_deref(), Some(OPERATOR_KILL_MESSAGE));
}

#[test]
fn summary_counts() {
    let s = snapshot(
        vec![row("o", "a", "running", 600), row("h", "a", "running", 1)],
        vec![
            agent("a", answer(&["h"])),
            AgentReport {
                name: "b".into(),
                latency_ms: None,
                answer: Err("x".into()),
            },
        ],
    );
    let p = plan(&s, &policy(Scope::Scan), now());
    assert_eq!(p.action_count(), 1);
    assert_eq!(p.unreachable_agents(), 1);
    assert_eq!(p.by_verdict(), [("healthy", 1), ("orphaned", 1)].into());
}

#[test]
fn census_counts_running_rows_on_reachable_agents_before_the_scope() {
    let rows = vec![
        row("o1", "a", "running", 600),
        row("o2", "a", "running", 600),
        row("h", "a", "running", 1),
        row("u", "b", "running", 600),
    ];
    let down = AgentReport {
        name: "b".into(),
        latency_ms: None,
        answer: Err("down".into()),
    };
    let s = snapshot(rows, vec![agent("a", answer(&["h"])), down]);
    let p = plan(&s, &policy(Scope::Kill), now());
    assert!(p.items.is_empty());
    assert_eq!(
        p.census,
        Census {
            running_on_reachable: 3,
            orphaned: 2
        }
    );
}

#[test]
fn leased_terminal_rows_get_no_zombie_and_no_slot_release() {
    let mut done = row("z", "a", "success", 600);
    done.completed = Some(now() - chrono::Duration::seconds(600));
    done.leased = true;
    let mut s = snapshot(vec![done], vec![agent("a", answer(&["z"]))]);
    s.capacity = Some(Capacity {
        slots: vec![slot("a", "z", 600.0, true, Some(60))],
        ..Capacity::default()
    });
    assert!(verdicts(&s, Scope::Scan).is_empty());
}
