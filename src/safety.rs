//! Safety limits checked before an apply changes anything: the blast-radius cap and the
//! systemic-failure brake. Pure: a plan in, a refusal reason out.

use std::collections::BTreeMap;

use crate::plan::{Action, Plan};

/// Fewer orphans than this never trip the brake, whatever the fraction.
const BRAKE_MIN_ORPHANS: usize = 5;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_actions: usize,
    pub force: bool,
}

/// `Err(reason)` when the apply must be refused (exit 5) before anything is changed.
pub(crate) fn check(plan: &Plan, limits: Limits) -> Result<(), String> {
    if limits.force {
        return Ok(());
    }
    let actions = plan.action_count();
    if actions > limits.max_actions {
        let mut by_verdict: BTreeMap<&str, usize> = BTreeMap::new();
        for item in plan.items.iter().filter(|item| item.action != Action::None) {
            *by_verdict.entry(item.verdict.as_str()).or_default() += 1;
        }
        let counts: Vec<_> = by_verdict
            .iter()
            .map(|(verdict, n)| format!("{n} {verdict}"))
            .collect();
        return Err(format!(
            "the plan has {actions} actions ({}), more than --max-actions {}; nothing was changed. \
             Review the plan, then rerun with a higher --max-actions or --force",
            counts.join(", "),
            limits.max_actions
        ));
    }
    let census = plan.census;
    if census.orphaned >= BRAKE_MIN_ORPHANS && census.orphaned * 2 > census.running_on_reachable {
        return Err(format!(
            "{} of {} running rows on reachable agents look orphaned: that points at the fleet or the \
             agents' answers (a restart, a wrong --agent-url, an API change), not at the rows; nothing \
             was changed. Check the agents, then rerun with --force if the rows really are dead",
            census.orphaned, census.running_on_reachable
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Census, Item, Verdict};

    fn plan(actions: usize, census: Census) -> Plan {
        let mut item = Item::new("x", Some("a"), Verdict::Orphaned, String::new());
        item.action = Action::Fail;
        let items = vec![item; actions];
        Plan {
            items,
            agents: vec![],
            capacity_checked: true,
            census,
            refused: None,
            interrupted: false,
            events: None,
        }
    }

    const LIMITS: Limits = Limits {
        max_actions: 50,
        force: false,
    };

    #[test]
    fn cap_refuses_more_than_max_actions_and_names_the_verdicts() {
        let census = Census {
            running_on_reachable: 1000,
            orphaned: 0,
        };
        assert!(check(&plan(50, census), LIMITS).is_ok());
        let err = check(&plan(51, census), LIMITS).unwrap_err();
        assert!(
            err.contains("51 actions (51 orphaned)") && err.contains("--max-actions 50"),
            "{err}"
        );
        assert!(
            check(
                &plan(51, census),
                Limits {
                    force: true,
                    ..LIMITS
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn brake_needs_more_than_half_and_at_least_five() {
        let ok = |running, orphaned| {
            check(
                &plan(
                    0,
                    Census {
                        running_on_reachable: running,
                        orphaned,
                    },
                ),
                LIMITS,
            )
            .is_ok()
        };
        assert!(ok(4, 4), "fewer than five orphans never trip it");
        assert!(ok(10, 5), "exactly half is not more than half");
        assert!(!ok(9, 5));
        assert!(!ok(5, 5));
        assert!(
            check(
                &plan(
                    0,
                    Census {
                        running_on_reachable: 5,
                        orphaned: 5
                    }
                ),
                Limits {
                    force: true,
                    ..LIMITS
                }
            )
            .is_ok()
        );
    }
}
