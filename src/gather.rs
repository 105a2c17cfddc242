//! Gathering: reads the database, asks every agent (concurrently) and reads Redis, producing a
//! plain `Snapshot` for the planner. An agent's failure is data in the snapshot, never an abort.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use color_eyre::eyre::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::agents::{AgentClient, AgentConfig};
use crate::capacity::{Redis, RedisConfig};
use crate::log::Log;
use crate::shard::AgentScope;
use crate::snapshot::{OwnedAgents, Snapshot, Status};
use crate::store::{Database, Store};

/// The three sources, opened once and shared by gathering and applying.
pub(crate) struct Sources {
    pub store: Store,
    pub agents: AgentClient,
    pub redis: Option<Redis>,
}

impl Sources {
    /// Opens the database (read-only unless `writable`), the HTTP client and Redis when configured.
    pub(crate) async fn open(
        database: &Database,
        writable: bool,
        agents: &AgentConfig,
        redis: Option<&RedisConfig>,
        log: Log,
    ) -> Result<Sources> {
        let store = Store::open(database, writable).await?;
        let agents = AgentClient::new(agents)?;
        let redis = match redis {
            Some(config) => Some(Redis::connect(config).await?),
            None => {
                log.warn(
                    "no Redis configured (REDIS_URL / --redis-url): capacity slots are not checked",
                );
                None
            }
        };
        Ok(Sources {
            store,
            agents,
            redis,
        })
    }
}

/// Where a run spent its time, reported in the JSON output.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Timings {
    pub database_ms: u64,
    pub agents_ms: u64,
    pub redis_ms: u64,
    pub apply_ms: u64,
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What to gather.
pub(crate) struct Request<'a> {
    /// `--agent` and `--shard`: only these agents.
    pub agents: &'a AgentScope,
    /// Ids whose rows are read whatever their status.
    pub look_up: &'a BTreeSet<String>,
    /// Ask the agents (false: `kill --no-terminate`, which contacts none).
    pub ask_agents: bool,
    /// Once set (an interrupted apply), no new agent request starts.
    pub stop: &'a std::sync::atomic::AtomicBool,
    /// Show a progress bar while the agents are asked.
    pub progress: bool,
    pub log: Log,
}

/// Reads all three sources into one snapshot.
pub(crate) async fn snapshot(
    sources: &mut Sources,
    request: &Request<'_>,
) -> Result<(Snapshot, Timings)> {
    let Request {
        agents: scope,
        look_up,
        ask_agents,
        stop,
        progress,
        log,
    } = *request;
    let mut warnings = Vec::new();
    let database = Instant::now();
    let mut rows = sources.store.running_rows(&mut warnings).await?;
    let owned = sources.store.owned_agents().await?;
    let agents = if ask_agents {
        agents_to_ask(&rows, owned.as_ref(), scope)
    } else {
        Vec::new()
    };
    let mut database_time = database.elapsed();
    let running_ids: HashSet<&str> = rows
        .iter()
        .filter(|row| scope.contains(&row.agent))
        .map(|row| row.id.as_str())
        .collect();

    let progress = if progress {
        let bar = ProgressBar::new(agents.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} asking agents {pos}/{len} {wide_bar} {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut redis_warnings = Vec::new();
    let ((reports, agents_time), (capacity, redis_time)) = tokio::join!(
        async {
            let started = Instant::now();
            (
                sources.agents.running_all(&agents, &progress, stop).await,
                started.elapsed(),
            )
        },
        async {
            let started = Instant::now();
            let capacity = match &mut sources.redis {
                Some(redis) => redis
                    .read(&agents, &running_ids, &mut redis_warnings)
                    .await
                    .map(Some),
                None => Ok(None),
            };
            (capacity, started.elapsed())
        }
    );
    progress.finish_and_clear();
    if !agents.is_empty() {
        sources.agents.close_idle();
    }
    let capacity = capacity?;
    warnings.append(&mut redis_warnings);
    for report in &reports {
        let state = match &report.answer {
            Ok(answer) => format!("{} running", answer.running.len()),
            Err(reason) => format!("unreachable: {reason}"),
        };
        log.info(&format!(
            "agent {} ({} ms): {state}",
            report.name,
            report.latency_ms.unwrap_or(0)
        ));
    }

    // Rows of every other id something mentioned: processes agents run, slot holders, named ids.
    let known: HashSet<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let answered = reports
        .iter()
        .filter_map(|report| report.answer.as_ref().ok())
        .flat_map(|answer| &answer.running);
    let holders = capacity
        .iter()
        .flat_map(|capacity| &capacity.slots)
        .map(|slot| &slot.execution_id);
    let mentioned: BTreeSet<String> = answered
        .chain(holders)
        .chain(look_up)
        .filter(|id| !known.contains(id.as_str()))
        .cloned()
        .collect();
    drop(known);
    let lookups = Instant::now();
    rows.extend(sources.store.rows_by_id(&mentioned, &mut warnings).await?);
    database_time += lookups.elapsed();

    let timings = Timings {
        database_ms: millis(database_time),
        agents_ms: millis(agents_time),
        redis_ms: millis(redis_time),
        apply_ms: 0,
    };
    Ok((
        Snapshot {
            rows,
            agents: reports,
            capacity,
            owned,
            warnings,
        },
        timings,
    ))
}

/// Every agent with running rows plus every owned agent, limited by `--agent` and `--shard`;
/// agents named with `--agent` are asked even when the database does not mention them.
fn agents_to_ask(
    rows: &[crate::snapshot::Row],
    owned: Option<&OwnedAgents>,
    scope: &AgentScope,
) -> Vec<String> {
    let agents: BTreeSet<&str> = if scope.names.is_empty() {
        let running = rows
            .iter()
            .filter(|row| row.status == Status::Running)
            .map(|row| row.agent.as_str());
        owned
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
            .chain(running)
            .collect()
    } else {
        scope.names.iter().map(String::as_str).collect()
    };
    agents
        .into_iter()
        .filter(|agent| scope.contains(agent))
        .map(str::to_owned)
        .collect()
}
