//! Property tests: for arbitrary snapshots, the planner never acts on what it must leave alone,
//! and applying its plan to a model of the world, then planning again, finds nothing to do.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{now, policy};
use super::*;
use crate::shard::Shard;
use crate::snapshot::{AgentAnswer, AgentReport, Capacity, Row, Slot, Snapshot, Status};

const AGENTS: [&str; 3] = ["a", "b", "c"];
const STATUSES: [&str; 7] = [
    "running",
    "running",
    "success",
    "failed",
    "cancelled",
    "queued",
    "pending_retry",
];

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..12u8).prop_map(|n| format!("x{n}")),
        Just("drain-1".to_owned())
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        id(),
        0..3usize,
        0..7usize,
        -100i64..5000,
        prop::option::of(0..5000i64),
        any::<bool>(),
        prop::option::of(0i64..2000),
        prop::option::of(0i64..2000),
        any::<bool>(),
    )
        .prop_map(
            |(
                id,
                agent,
                status,
                age,
                completed_ago,
                parseable,
                schedule_timeout,
                agent_timeout,
                leased,
            )| {
                let started = now() - chrono::Duration::seconds(age);
                Row {
                    id,
                    agent: AGENTS[agent].to_owned(),
                    status: STATUSES[status].into(),
                    started_at: if parseable {
                        crate::timestamp::format(started)
                    } else {
                        "garbage".to_owned()
                    },
                    started: parseable.then_some(started),
                    completed: completed_ago.map(|ago| now() - chrono::Duration::seconds(ago)),
                    schedule_timeout,
                    agent_timeout,
                    leased,
                    lease_expires: leased.then(|| now() - chrono::Duration::seconds(age - 100)),
                }
            },
        )
}

fn ids() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(id(), 0..5)
}

fn answer() -> impl Strategy<Value = Result<AgentAnswer, String>> {
    prop_oneof![
        1 => Just(Err("unreachable".to_owned())),
        4 => (ids(), prop::option::of(ids()), prop::option::of(ids())).prop_map(|(running, recently_completed, pending)| {
            Ok(AgentAnswer { running, recently_completed, pending })
        }),
    ]
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        0..3usize,
        id(),
        0.0f64..5000.0,
        any::<bool>(),
        prop::option::of(0i64..2000),
    )
        .prop_map(
            |(agent, execution_id, held, has_metadata, timeout_seconds)| Slot {
                agent: AGENTS[agent].to_owned(),
                execution_id,
                acquired_at: now().timestamp() as f64 - held,
                score: (now().timestamp() as f64 - held).to_string(),
                has_metadata,
                timeout_seconds,
            },
        )
}

prop_compose! {
    fn world()(
        mut rows in prop::collection::vec(row(), 0..12),
        answers in prop::collection::vec(answer(), 3),
        slots in prop::option::of(prop::collection::vec(slot(), 0..8)),
        in_flight in prop::collection::btree_set(id(), 0..3),
        owned in prop::option::of(prop::collection::btree_map(prop::sample::select(AGENTS.to_vec()).prop_map(str::to_owned), prop::option::of(0i64..4), 0..3)),
    ) -> Snapshot {
        // One row per id, as the primary key guarantees.
        let mut seen = BTreeSet::new();
        rows.retain(|row| seen.insert(row.id.clone()));
        let agents = AGENTS.iter().zip(answers).map(|(name, answer)| AgentReport { name: (*name).to_owned(), latency_ms: Some(1), answer }).collect();
        // A slot lives on its execution's own agent, as Trinity acquires it.
        let capacity = slots.map(|slots| Capacity {
            slots: slots.into_iter().map(|mut slot| {
                if let Some(row) = rows.iter().find(|row| row.id == slot.execution_id) {
                    slot.agent = row.agent.clone();
                }
                slot
            }).collect(),
            in_flight,
        });
        Snapshot { rows, agents, capacity, owned, warnings: vec![] }
    }
}

/// Applies every action to the model, as a successful apply would.
fn apply_to_model(snapshot: &mut Snapshot, plan: &Plan) {
    for item in plan.items.iter().filter(|item| item.action != Action::None) {
        let agent = item.agent.clone().unwrap_or_default();
        let on_agent = |name: &str| name == agent;
        if item.action.terminates() {
            let answers = snapshot
                .agents
                .iter_mut()
                .filter(|report| on_agent(&report.name));
            for answer in answers.filter_map(|report| report.answer.as_mut().ok()) {
                answer.running.retain(|id| *id != item.execution_id);
            }
        }
        let running = snapshot
            .rows
            .iter_mut()
            .find(|row| row.id == item.execution_id && row.status == Status::Running);
        if let Some(row) = running.filter(|_| item.action.fails()) {
            row.status = Status::Failed;
            row.completed = Some(now());
        }
        let releases = item.action.fails() || item.action == Action::ReleaseSlot;
        if let Some(capacity) = snapshot.capacity.as_mut().filter(|_| releases) {
            capacity
                .slots
                .retain(|slot| !(on_agent(&slot.agent) && slot.execution_id == item.execution_id));
        }
    }
}

/// Every command's scope: the three plans and `kill ID…` with named ids.
fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Scan),
        Just(Scope::Recover),
        Just(Scope::Kill),
        ids().prop_map(Scope::KillIds),
    ]
}

/// `--agent`: none (every agent), or some of them.
fn agent_filter() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(
        prop::sample::select(AGENTS.to_vec()).prop_map(str::to_owned),
        0..=2,
    )
}

fn policy_for(scope: Scope, agent_filter: BTreeSet<String>) -> Policy {
    Policy {
        agents: AgentScope {
            names: agent_filter,
            shard: None,
        },
        ..policy(scope)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_acts_on_what_it_must_leave_alone(snapshot in world(), scope in scope(), filter in agent_filter()) {
        let plan = plan(&snapshot, &policy_for(scope.clone(), filter.clone()), now());
        let row = |id: &str| snapshot.rows.iter().find(|row| row.id == id);
        let report = |agent: &str| snapshot.agents.iter().find(|report| report.name == agent);
        for item in &plan.items {
            prop_assert!(!(item.verdict == Verdict::LeakedSlot && item.execution_id.starts_with("drain-")), "drain- member is an item");
            match &scope {
                Scope::KillIds(ids) => {
                    prop_assert!(ids.contains(&item.execution_id), "kill planned an id it was not given: {item:?}");
                    prop_assert_eq!(item.verdict, Verdict::Requested);
                }
                Scope::Recover => {
                    prop_assert!(matches!(item.verdict, Verdict::Orphaned | Verdict::LeakedSlot | Verdict::Abandoned), "{item:?}");
                    prop_assert!(!item.action.terminates(), "recover terminates: {item:?}");
                }
                Scope::Kill => prop_assert!(matches!(item.verdict, Verdict::TimedOut | Verdict::Zombie), "{item:?}"),
                Scope::Scan => {}
            }
            if !filter.is_empty() && !matches!(scope, Scope::KillIds(_)) {
                let agent = item.agent.clone().unwrap_or_default();
                prop_assert!(filter.contains(&agent), "item of an agent outside --agent: {item:?}");
            }
        }
        for item in plan.items.iter().filter(|item| item.action != Action::None) {
            let Some(row) = row(&item.execution_id) else { continue };
            if item.action.fails() {
                prop_assert_eq!(&row.status, &Status::Running, "only running rows are failed");
                prop_assert!(!row.leased, "leased row failed: {item:?}");
            }
            if matches!(scope, Scope::KillIds(_)) {
                // The operator named it: terminating is asked for, whatever its agent said.
                continue;
            }
            prop_assert!(!row.leased, "leased row acted on: {item:?}");
            if item.action.fails() {
                let answer = &report(&row.agent).expect("every agent reports").answer;
                prop_assert!(answer.is_ok(), "acted on an unreachable agent's row: {:?}", item);
                let answer = answer.as_ref().expect("checked");
                let timeout = effective_timeout(row.schedule_timeout, row.agent_timeout, Duration::from_secs(900)).seconds as i64;
                let within = row.started.is_none_or(|started| (now() - started).num_seconds() <= timeout);
                prop_assert!(!(answer.knows(&row.id) && within), "acted on a row its agent knows within its timeout: {:?}", item);
                prop_assert!(!answer.knows(&row.id) || answer.runs(&row.id), "acted on a pending / recently completed row: {:?}", item);
            }
        }
    }

    #[test]
    fn applying_the_plan_then_planning_again_finds_nothing_to_do(
        mut snapshot in world(),
        scope in prop_oneof![Just(Scope::Scan), Just(Scope::Recover), Just(Scope::Kill)],
        filter in agent_filter(),
    ) {
        let policy = policy_for(scope, filter);
        let first = plan(&snapshot, &policy, now());
        apply_to_model(&mut snapshot, &first);
        let second = plan(&snapshot, &policy, now());
        let left: Vec<_> = second.items.iter().filter(|item| item.action != Action::None).collect();
        prop_assert!(left.is_empty(), "second plan still acts: {:?}", left);
    }
}

/// What gathering for `scope` would hand the planner: only the agents the scope owns are asked,
/// and only their slots and their running rows' in-flight markers are read (the rows are read
/// whole, as the database query does).
fn gathered_for(snapshot: &Snapshot, scope: &AgentScope) -> Snapshot {
    let running_in_scope: BTreeSet<&str> = snapshot
        .rows
        .iter()
        .filter(|row| row.status == Status::Running && scope.contains(&row.agent))
        .map(|row| row.id.as_str())
        .collect();
    Snapshot {
        rows: snapshot.rows.clone(),
        agents: snapshot
            .agents
            .iter()
            .filter(|report| scope.contains(&report.name))
            .cloned()
            .collect(),
        capacity: snapshot.capacity.as_ref().map(|capacity| Capacity {
            slots: capacity
                .slots
                .iter()
                .filter(|slot| scope.contains(&slot.agent))
                .cloned()
                .collect(),
            in_flight: capacity
                .in_flight
                .iter()
                .filter(|id| running_in_scope.contains(id.as_str()))
                .cloned()
                .collect(),
        }),
        owned: snapshot.owned.clone(),
        warnings: Vec::new(),
    }
}

/// An item, whole, as the JSON output shows it.
fn shown(item: &Item) -> String {
    serde_json::to_string(item).expect("an item serializes")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn the_shards_plans_together_are_the_unsharded_plan(
        snapshot in world(),
        scope in prop_oneof![Just(Scope::Scan), Just(Scope::Recover), Just(Scope::Kill)],
        count in prop::sample::select(vec![1u64, 2, 3, 7]),
    ) {
        let whole = plan(&snapshot, &policy(scope.clone()), now());
        let mut items = Vec::new();
        let mut findings = Vec::new();
        let mut census = Census::default();
        for index in 0..count {
            let agents = AgentScope { names: BTreeSet::new(), shard: Some(Shard { index, count }) };
            let part = plan(&gathered_for(&snapshot, &agents), &Policy { agents: agents.clone(), ..policy(scope.clone()) }, now());
            for item in &part.items {
                prop_assert!(agents.contains(item.agent.as_deref().unwrap_or_default()), "shard {}/{} planned another shard's item: {:?}", index, count, item);
            }
            items.extend(part.items.iter().map(shown));
            findings.extend(part.agents.iter().flat_map(|a| a.findings.iter().map(move |f| (a.name.clone(), serde_json::to_string(f).unwrap()))));
            census.running_on_reachable += part.census.running_on_reachable;
            census.orphaned += part.census.orphaned;
        }
        let mut expected: Vec<String> = whole.items.iter().map(shown).collect();
        expected.sort();
        items.sort();
        prop_assert_eq!(items, expected, "items of N = {}", count);
        let mut expected: Vec<_> = whole.agents.iter().flat_map(|a| a.findings.iter().map(move |f| (a.name.clone(), serde_json::to_string(f).unwrap()))).collect();
        expected.sort();
        findings.sort();
        prop_assert_eq!(findings, expected, "findings of N = {}", count);
        prop_assert_eq!(census, whole.census);
    }
}
