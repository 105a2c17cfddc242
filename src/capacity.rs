//! Redis capacity state: reading slots, their metadata and in-flight markers with pipelines, and
//! releasing one execution's capacity through `release.lua`.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use color_eyre::eyre::{Result, eyre};
use redis::aio::MultiplexedConnection;

use crate::redact::{REDACTED, Secret};
use crate::snapshot::{Capacity, Slot};
use crate::tls::CaCerts;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one Redis reply; a local Redis answers in well under a millisecond.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
static RELEASE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("release.lua")));
static UNLOCK_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("unlock.lua")));
static REFRESH_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("refresh.lua")));
static PUBLISH_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("publish.lua")));
static TAKEOVER_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("takeover.lua")));
/// How long the last-resort release (a panic, a second signal) may take.
const BLOCKING_UNLOCK_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) fn slots_key(agent: &str) -> String {
    format!("agent:slots:{agent}")
}

pub(crate) fn slot_key(agent: &str, id: &str) -> String {
    format!("agent:slot:{agent}:{id}")
}

pub(crate) fn queue_lock_key(agent: &str) -> String {
    format!("agent:running:{agent}")
}

pub(crate) fn in_flight_key(id: &str) -> String {
    format!("execution:inflight:{id}")
}

/// `--events`: whether recovery events are published to Trinity's event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EventsMode {
    /// Only when the stream `trinity:events` already exists (a Trinity with the event bus).
    Auto,
    /// Always (the stream is created if need be).
    On,
    /// Never.
    Off,
}

/// Trinity's event stream: every backend fans its entries out to the dashboards' WebSockets.
pub(crate) const EVENTS_KEY: &str = "trinity:events";
/// Producers trim the stream to about this many entries.
const EVENTS_MAXLEN: u32 = 10_000;

/// One execution's capacity to release, and the event to publish with it (its JSON payload).
pub(crate) struct Release<'a> {
    pub agent: &'a str,
    pub id: &'a str,
    pub event: Option<&'a str>,
}

/// How one release went: whether a slot member was removed, and whether its event was published
/// (`Ok(false)`: `--events auto` found no stream).
pub(crate) struct Released {
    pub slot: Result<bool, String>,
    pub event: Option<Result<bool, String>>,
}

/// Where the capacity slots live.
#[derive(Clone, Debug)]
pub(crate) struct RedisConfig {
    /// `redis://…` or `rediss://…` (TLS); may carry a password.
    pub url: Secret,
    /// `--ca-cert`: roots trusted for `rediss://` next to the system's.
    pub ca_certs: CaCerts,
}

#[derive(Clone)]
pub(crate) struct Redis {
    conn: MultiplexedConnection,
    client: redis::Client,
    shown: String,
}

impl Redis {
    /// Connects and pings; an unreachable Redis is a fatal error (it was configured).
    pub(crate) async fn connect(config: &RedisConfig) -> Result<Redis> {
        let url = config.url.expose();
        let shown = config.url.shown();
        crate::tls::install_provider();
        // Extra roots matter only to rediss://; the crate takes them in place of the system's,
        // so both go in.
        let client = if config.ca_certs.is_empty() || !url.starts_with("rediss://") {
            redis::Client::open(url)
        } else {
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(config.ca_certs.pem_with_system_roots()),
                },
            )
        }
        .map_err(|err| eyre!("invalid Redis URL {shown}: {}", without_secret(&err, url)))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|err| {
                eyre!(
                    "cannot connect to Redis at {shown}: {}",
                    without_secret(&err, url)
                )
            })?;
        let mut redis = Redis {
            conn,
            client,
            shown,
        };
        let _: String = redis::cmd("PING")
            .query_async(&mut redis.conn)
            .await
            .map_err(|err| redis.error(err))?;
        Ok(redis)
    }

    fn error(&self, err: redis::RedisError) -> color_eyre::Report {
        eyre!("Redis at {}: {err}", self.shown)
    }

    /// Slots of the given agents, and the in-flight markers of `running` (the running rows' ids).
    /// Only a slot whose execution has no running row gets its metadata read: the planner
    /// consults metadata only for a slot without a row, and a running row's slot is never leaked.
    ///
    /// A key of the wrong type is bad input, not a reason to stop: an agent whose slot set cannot
    /// be read gets no slot verdicts (with a warning), and a slot whose metadata cannot be read
    /// counts as having metadata of unknown timeout.
    pub(crate) async fn read(
        &mut self,
        agents: &[String],
        running: &HashSet<&str>,
        warnings: &mut Vec<String>,
    ) -> Result<Capacity> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for agent in agents {
            pipe.cmd("ZRANGE")
                .arg(slots_key(agent))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES");
        }
        // Scores as Redis prints them: the planner reads the number, saved plans the exact text.
        let members: Vec<redis::RedisResult<Vec<(String, String)>>> = if agents.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn)
                .await
                .map_err(|err| self.error(err))?
        };
        let mut slots = Vec::new();
        for (agent, members) in agents.iter().zip(members) {
            match members {
                Ok(members) => {
                    for (execution_id, score) in members {
                        let Ok(acquired_at) = score.parse::<f64>() else {
                            warnings.push(format!(
                                "{} member {execution_id:?} has a score that is not a number ({score:?}); it is not checked",
                                slots_key(agent)
                            ));
                            continue;
                        };
                        slots.push(Slot {
                            agent: agent.clone(),
                            execution_id,
                            acquired_at,
                            score,
                            has_metadata: false,
                            timeout_seconds: None,
                        });
                    }
                }
                Err(err) => warnings.push(format!(
                    "{} cannot be read ({err}); the capacity slots of agent {agent} are not checked",
                    slots_key(agent)
                )),
            }
        }

        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut rowless: Vec<&mut Slot> = slots
            .iter_mut()
            .filter(|slot| !running.contains(slot.execution_id.as_str()))
            .collect();
        for slot in &rowless {
            let key = slot_key(&slot.agent, &slot.execution_id);
            pipe.cmd("EXISTS")
                .arg(&key)
                .cmd("HGET")
                .arg(&key)
                .arg("timeout_seconds");
        }
        let replies: Vec<redis::RedisResult<redis::Value>> = if rowless.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn)
                .await
                .map_err(|err| self.error(err))?
        };
        for (slot, pair) in rowless.iter_mut().zip(replies.chunks(2)) {
            let value = |reply: &redis::RedisResult<redis::Value>| reply.as_ref().ok().cloned();
            slot.has_metadata = value(&pair[0])
                .and_then(|v| redis::from_redis_value::<bool>(v).ok())
                .unwrap_or(true);
            slot.timeout_seconds = value(&pair[1])
                .and_then(|v| redis::from_redis_value::<Option<String>>(v).ok().flatten())
                .and_then(|t| t.trim().parse().ok());
        }

        let ids: Vec<&str> = running.iter().copied().collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("EXISTS").arg(in_flight_key(id));
        }
        let present: Vec<bool> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn)
                .await
                .map_err(|err| self.error(err))?
        };
        let in_flight: BTreeSet<String> = ids
            .iter()
            .zip(present)
            .filter(|(_, present)| *present)
            .map(|(id, _)| (*id).to_owned())
            .collect();
        Ok(Capacity { slots, in_flight })
    }

    /// Releases many executions' capacity in one pipeline of `release.lua` calls — each removes
    /// the slot member and its metadata, and the queue lock if that execution holds it — with
    /// each target's event, if it has one, published right after its release in the same round
    /// trip by `publish.lua` (`XADD trinity:events MAXLEN ~ 10000 * payload … scope all
    /// agent_name …`; with `EventsMode::Auto` only to a stream that exists). One result per
    /// target, in order; a failure of the whole pipeline is every target's error.
    pub(crate) async fn release_many(
        &mut self,
        targets: &[Release<'_>],
        events: EventsMode,
    ) -> Vec<Released> {
        let all_failed = |message: String| {
            targets
                .iter()
                .map(|target| Released {
                    slot: Err(message.clone()),
                    event: target.event.map(|_| Err(message.clone())),
                })
                .collect()
        };
        if targets.is_empty() {
            return Vec::new();
        }
        for script in [&*RELEASE_SCRIPT, &*PUBLISH_SCRIPT] {
            if let Err(err) = script.load_async(&mut self.conn).await {
                return all_failed(format!("{:#}", self.error(err)));
            }
        }
        let mode = if events == EventsMode::On {
            "on"
        } else {
            "auto"
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for target in targets {
            let mut invocation = RELEASE_SCRIPT.prepare_invoke();
            invocation
                .key(slots_key(target.agent))
                .key(slot_key(target.agent, target.id))
                .key(queue_lock_key(target.agent))
                .arg(target.id);
            pipe.invoke_script(&invocation);
            if let Some(payload) = target.event {
                let mut publish = PUBLISH_SCRIPT.prepare_invoke();
                publish
                    .key(EVENTS_KEY)
                    .arg(mode)
                    .arg(payload)
                    .arg(target.agent)
                    .arg(EVENTS_MAXLEN);
                pipe.invoke_script(&publish);
            }
        }
        let replies: Vec<redis::RedisResult<redis::Value>> =
            match pipe.query_async(&mut self.conn).await {
                Ok(replies) => replies,
                Err(err) => return all_failed(format!("{:#}", self.error(err))),
            };
        let mut replies = replies.into_iter();
        let mut next = || {
            replies
                .next()
                .unwrap_or_else(|| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "missing reply",
                    )))
                })
                .map_err(|err| format!("{:#}", self.error(err)))
        };
        targets
            .iter()
            .map(|target| Released {
                slot: next().and_then(|value| {
                    redis::from_redis_value::<(i64, i64)>(value)
                        .map(|(slot, _queue_lock)| slot == 1)
                        .map_err(|err| format!("Redis at {}: {err}", self.shown))
                }),
                event: target.event.map(|_| {
                    next().and_then(|value| {
                        redis::from_redis_value::<i64>(value)
                            .map(|published| published == 1)
                            .map_err(|err| format!("Redis at {}: {err}", self.shown))
                    })
                }),
            })
            .collect()
    }
}

impl Redis {
    /// `SET key token NX PX ttl`: `Ok(Err(holder))` when someone else holds the key.
    pub(crate) async fn try_lock(
        &mut self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Result<(), String>> {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut self.conn)
            .await
            .map_err(|err| self.error(err))?;
        if set.is_some() {
            return Ok(Ok(()));
        }
        let holder: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn)
            .await
            .map_err(|err| self.error(err))?;
        Ok(Err(holder.unwrap_or_else(|| {
            "a run whose lock just expired".to_owned()
        })))
    }

    /// Extends `key`'s time to live only if it still holds `token`; `false` when it does not.
    pub(crate) async fn refresh_lock(
        &mut self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let extended: i64 = REFRESH_SCRIPT
            .key(key)
            .arg(token)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut self.conn)
            .await
            .map_err(|err| self.error(err))?;
        Ok(extended == 1)
    }

    /// Replaces the token `dead` with `token` only if `key` still holds `dead`; `false` when it
    /// does not.
    pub(crate) async fn take_over_lock(
        &mut self,
        key: &str,
        dead: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let taken: i64 = TAKEOVER_SCRIPT
            .key(key)
            .arg(dead)
            .arg(token)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut self.conn)
            .await
            .map_err(|err| self.error(err))?;
        Ok(taken == 1)
    }

    /// Deletes `key` only if it still holds `token`.
    pub(crate) async fn unlock(&mut self, key: &str, token: &str) -> Result<()> {
        let _: i64 = UNLOCK_SCRIPT
            .key(key)
            .arg(token)
            .invoke_async(&mut self.conn)
            .await
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// `unlock` without the async runtime, on a connection of its own, within a second: the last
    /// resort of a run that is going down (a panic, a second signal).
    pub(crate) fn unlock_blocking(&self, key: &str, token: &str) -> Result<()> {
        let mut conn = self
            .client
            .get_connection_with_timeout(BLOCKING_UNLOCK_TIMEOUT)
            .map_err(|err| self.error(err))?;
        conn.set_read_timeout(Some(BLOCKING_UNLOCK_TIMEOUT))
            .and_then(|()| conn.set_write_timeout(Some(BLOCKING_UNLOCK_TIMEOUT)))
            .map_err(|err| self.error(err))?;
        let _: i64 = UNLOCK_SCRIPT
            .key(key)
            .arg(token)
            .invoke(&mut conn)
            .map_err(|err| self.error(err))?;
        Ok(())
    }
}

/// A Redis error's text with the URL's credentials removed, in case the client echoes them.
fn without_secret(err: &redis::RedisError, url: &str) -> String {
    let mut text = err.to_string();
    if let Ok(parsed) = url::Url::parse(url) {
        for part in [parsed.password().unwrap_or_default(), parsed.username()] {
            if !part.is_empty() {
                text = text.replace(part, REDACTED);
            }
        }
    }
    text
}
