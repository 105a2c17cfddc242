//! Reviewed plans: `scan --save FILE` writes the plan's actions with the facts each depends on;
//! `scan --from FILE --apply` applies exactly those actions, skipping each one whose facts changed
//! since (saying which fact). Unlike Terraform's saved plans, which are refused wholesale when the
//! world moved, a reviewed plan is checked per action. Pure apart from reading and writing the file.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, WrapErr, bail};
use serde::{Deserialize, Serialize};

use crate::plan::{Action, Item, Outcome, Plan, Verdict};
use crate::snapshot::Snapshot;
use crate::timestamp;

const KIND: &str = "trinity-watchdog-reviewed-plan";
/// 2: slot scores are kept as the exact text Redis holds (1 stored floats, which do not survive
/// the round trip through JSON exactly).
const VERSION: u32 = 2;

/// What an action depends on. Read from a snapshot when the plan is saved and again just before
/// it is applied; any difference means the world moved on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The row's status; `None`: no row.
    pub row_status: Option<String>,
    /// The row's `started_at` as stored.
    pub started_at: Option<String>,
    /// What the agent said of the id: `running`, `pending`, `recently_completed`, `unknown`, or
    /// `unreachable`.
    pub agent_reported: String,
    /// The score of the execution's slot on its agent, exactly as Redis holds it; `None`: no
    /// slot (or no Redis).
    pub slot_score: Option<String>,
    /// The row has a lease: it belongs to the lease reaper.
    #[serde(default)]
    pub leased: bool,
    /// The agent is in `agent_ownership`; `None`: the database has no such table.
    #[serde(default)]
    pub agent_owned: Option<bool>,
}

impl Facts {
    pub fn of(snapshot: &Snapshot, id: &str, agent: Option<&str>) -> Facts {
        let row = snapshot.rows.iter().find(|row| row.id == id);
        let report =
            agent.and_then(|agent| snapshot.agents.iter().find(|report| report.name == agent));
        let agent_reported = match report.map(|report| &report.answer) {
            None => "not asked",
            Some(Err(_)) => "unreachable",
            Some(Ok(answer)) if answer.runs(id) => "running",
            Some(Ok(answer)) if answer.pending.iter().flatten().any(|known| known == id) => {
                "pending"
            }
            Some(Ok(answer)) if answer.knows(id) => "recently_completed",
            Some(Ok(_)) => "unknown",
        };
        let slot_score = snapshot.capacity.as_ref().and_then(|capacity| {
            capacity
                .slots
                .iter()
                .find(|slot| slot.execution_id == id && Some(slot.agent.as_str()) == agent)
                .map(|slot| slot.score.clone())
        });
        Facts {
            leased: row.is_some_and(|row| row.leased),
            agent_owned: snapshot
                .owned
                .as_ref()
                .zip(agent)
                .map(|(owned, agent)| owned.contains_key(agent)),
            row_status: row.map(|row| row.status.as_str().to_owned()),
            started_at: row.map(|row| row.started_at.clone()),
            agent_reported: agent_reported.to_owned(),
            slot_score,
        }
    }

    /// The facts that differ, worded for an operator.
    fn changes(&self, now: &Facts) -> Vec<String> {
        let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "absent".to_owned());
        let mut changes = Vec::new();
        if self.row_status != now.row_status {
            changes.push(format!(
                "row status was {}, is now {}",
                show(&self.row_status),
                show(&now.row_status)
            ));
        }
        if self.started_at != now.started_at {
            changes.push(format!(
                "started_at was {}, is now {}",
                show(&self.started_at),
                show(&now.started_at)
            ));
        }
        if self.agent_reported != now.agent_reported {
            changes.push(format!(
                "the agent reported it {}, now {}",
                self.agent_reported, now.agent_reported
            ));
        }
        if self.leased != now.leased {
            changes.push(if now.leased {
                "the row is now leased (it belongs to the lease reaper)".to_owned()
            } else {
                "the row's lease is gone".to_owned()
            });
        }
        if self.agent_owned != now.agent_owned {
            let show = |owned: Option<bool>| match owned {
                Some(true) => "owned",
                Some(false) => "not owned (deleted)",
                None => "unknown",
            };
            changes.push(format!(
                "the agent was {}, is now {}",
                show(self.agent_owned),
                show(now.agent_owned)
            ));
        }
        if self.slot_score != now.slot_score {
            changes.push(format!(
                "slot score was {}, is now {}",
                show(&self.slot_score),
                show(&now.slot_score)
            ));
        }
        changes
    }
}

/// One saved action.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedAction {
    pub execution_id: String,
    pub agent: Option<String>,
    pub verdict: Verdict,
    pub action: Action,
    pub reason: String,
    /// What the guarded write will store in `error` (before the agent's original error is added).
    pub fail_message: Option<String>,
    pub facts: Facts,
}

/// The file `--save` writes and `--from` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub kind: String,
    pub version: u32,
    pub generated_at: String,
    /// Which database the plan was made from (`--from` refuses another).
    pub database: String,
    pub actions: Vec<SavedAction>,
}

impl SavedPlan {
    /// The actions of `plan`, with the facts they depend on read from `snapshot`.
    pub fn new(plan: &Plan, snapshot: &Snapshot, database: &str, now: DateTime<Utc>) -> SavedPlan {
        let actions = plan
            .items
            .iter()
            .filter(|item| item.action != Action::None)
            .map(|item| SavedAction {
                execution_id: item.execution_id.clone(),
                agent: item.agent.clone(),
                verdict: item.verdict,
                action: item.action,
                reason: item.reason.to_string(),
                fail_message: item.fail_message.clone(),
                facts: Facts::of(snapshot, &item.execution_id, item.agent.as_deref()),
            })
            .collect();
        SavedPlan {
            kind: KIND.to_owned(),
            version: VERSION,
            generated_at: timestamp::format(now),
            database: database.to_owned(),
            actions,
        }
    }

    pub fn read(path: &Path) -> Result<SavedPlan> {
        let text = std::fs::read(path)
            .wrap_err_with(|| format!("cannot read the plan file {}", path.display()))?;
        let saved: SavedPlan = serde_json::from_slice(&text).wrap_err_with(|| {
            format!(
                "{} is not a plan saved by `trinity-watchdog scan --save`",
                path.display()
            )
        })?;
        if saved.kind != KIND || saved.version != VERSION {
            bail!(
                "{} is a {} version {} file, not a {KIND} version {VERSION}",
                path.display(),
                saved.kind,
                saved.version
            );
        }
        Ok(saved)
    }

    /// Why this plan must not be applied here and now, if it must not.
    pub fn refusal(&self, database: &str, max_age: Duration, now: DateTime<Utc>) -> Option<String> {
        if self.database != database {
            return Some(format!(
                "the plan was made from database {}, not {database}; nothing was changed",
                self.database
            ));
        }
        let Some(generated) = timestamp::parse(&self.generated_at) else {
            return Some(format!(
                "the plan's generated_at {:?} does not parse; nothing was changed",
                self.generated_at
            ));
        };
        let age = (now - generated).to_std().unwrap_or_default();
        if age > max_age {
            return Some(format!(
                "the plan is {} old, older than --max-plan-age {}; make and review a new one; nothing was changed",
                timestamp::human_duration(age.as_secs() as i64),
                timestamp::human_duration(max_age.as_secs() as i64)
            ));
        }
        None
    }

    /// The ids the plan acts on, so that gathering reads their rows.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.actions.iter().map(|action| &action.execution_id)
    }

    /// The plan to apply: exactly the saved actions; each whose facts changed in `snapshot` is
    /// already `skipped`, naming what changed.
    pub fn to_plan(&self, snapshot: &Snapshot, fresh: &Plan) -> Plan {
        let rows: HashMap<&str, _> = snapshot
            .rows
            .iter()
            .map(|row| (row.id.as_str(), row))
            .collect();
        let items = self
            .actions
            .iter()
            .map(|saved| {
                let mut item = Item::new(
                    &saved.execution_id,
                    saved.agent.as_deref(),
                    saved.verdict,
                    saved.reason.clone(),
                );
                item.action = saved.action;
                item.fail_message = saved.fail_message.clone();
                if let Some(row) = rows.get(saved.execution_id.as_str()) {
                    item.status = Some(row.status.clone());
                    item.started_at = Some(row.started_at.clone());
                    item.started = row.started;
                }
                let changes = saved.facts.changes(&Facts::of(
                    snapshot,
                    &saved.execution_id,
                    saved.agent.as_deref(),
                ));
                if !changes.is_empty() {
                    item.finish(
                        Outcome::Skipped,
                        Some(format!(
                            "the world moved on since the plan was saved: {}",
                            changes.join("; ")
                        )),
                    );
                }
                item
            })
            .collect();
        Plan {
            items,
            agents: fresh.agents.clone(),
            capacity_checked: fresh.capacity_checked,
            // The brake is about the fleet as it is now.
            census: fresh.census,
            refused: None,
            interrupted: false,
            events: None,
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        crate::atomic_file::write_atomically(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{AgentAnswer, AgentReport, Capacity, Row, Slot, Status};

    fn snapshot(status: &str, running: &[&str], score: &str) -> Snapshot {
        Snapshot {
            rows: vec![Row {
                id: "x".into(),
                agent: "a".into(),
                status: Status::parse(status),
                started_at: "2026-11-28T11:00:00Z".into(),
                started: timestamp::parse("2026-11-28T11:00:00Z"),
                completed: None,
                schedule_timeout: None,
                agent_timeout: None,
                leased: false,
                lease_expires: None,
            }],
            agents: vec![AgentReport {
                name: "a".into(),
                latency_ms: None,
                answer: Ok(AgentAnswer {
                    running: running.iter().map(|s| s.to_string()).collect(),
                    recently_completed: None,
                    pending: Some(vec![]),
                }),
            }],
            capacity: Some(Capacity {
                slots: vec![Slot {
                    agent: "a".into(),
                    execution_id: "x".into(),
                    acquired_at: score.parse().unwrap(),
                    score: score.into(),
                    has_metadata: true,
                    timeout_seconds: None,
                }],
                ..Capacity::default()
            }),
            owned: None,
            warnings: vec![],
        }
    }

    #[test]
    fn facts_name_every_change() {
        let before = Facts::of(
            &snapshot("running", &[], "1796167191.9857397"),
            "x",
            Some("a"),
        );
        assert_eq!(before.agent_reported, "unknown");
        assert!(before.changes(&before).is_empty());
        let after = Facts::of(
            &snapshot("success", &["x"], "1796167191.9857395"),
            "x",
            Some("a"),
        );
        assert_eq!(
            before.changes(&after),
            [
                "row status was running, is now success",
                "the agent reported it unknown, now running",
                "slot score was 1796167191.9857397, is now 1796167191.9857395"
            ]
        );
    }

    #[test]
    fn a_lease_or_an_owner_that_appeared_since_is_a_change() {
        let mut world = snapshot("running", &[], "100");
        world.owned = Some([].into());
        let before = Facts::of(&world, "x", Some("a"));
        world.rows[0].leased = true;
        world.owned = Some([("a".to_owned(), Some(3))].into());
        let after = Facts::of(&world, "x", Some("a"));
        assert_eq!(
            before.changes(&after),
            [
                "the row is now leased (it belongs to the lease reaper)",
                "the agent was not owned (deleted), is now owned"
            ]
        );
    }

    #[test]
    fn refuses_another_database_and_an_old_plan() {
        let now = timestamp::parse("2026-11-28T12:00:00Z").unwrap();
        let saved = SavedPlan {
            kind: KIND.into(),
            version: 1,
            generated_at: "2026-11-28T10:30:00Z".into(),
            database: "/data/trinity.db".into(),
            actions: vec![],
        };
        let hour = Duration::from_secs(3600);
        assert!(
            saved
                .refusal("/other.db", Duration::from_secs(99_999), now)
                .unwrap()
                .contains("not /other.db")
        );
        assert!(
            saved
                .refusal("/data/trinity.db", hour, now)
                .unwrap()
                .contains("1h30m old")
        );
        assert_eq!(saved.refusal("/data/trinity.db", 2 * hour, now), None);
    }
}
