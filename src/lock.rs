//! One apply at a time: the database's own lock — an OS file lock (flock) beside an SQLite file, or
//! a PostgreSQL session advisory lock, both released by the kernel or the server even when the
//! process is SIGKILLed — plus, when Redis is configured (so that applies on other hosts are
//! excluded too), a Redis lock: `SET NX PX` with a token that names its holder precisely, refreshed
//! while held, released by a compare-and-delete script. A holder that died without releasing it is
//! taken over at once from the same host (its process is gone, or its pid now names another
//! process); from another host the lock expires `REDIS_LOCK_TTL` after the holder's last refresh.
//! A dry run takes none. `guard::ApplyGuard` owns a held lock.

use std::time::Duration;

use color_eyre::eyre::Result;

use crate::capacity::Redis;
use crate::host::ProcessIdentity;
use crate::store::{DatabaseLock, Store};

/// The Redis key of the apply lock (of a shard: with `-shard-K-of-N` appended).
pub(crate) const REDIS_LOCK_KEY: &str = "trinity-watchdog:apply-lock";
/// How long the Redis lock outlives a holder on another host that died without releasing it.
pub(crate) const REDIS_LOCK_TTL: Duration = Duration::from_secs(15);
/// A live holder extends its Redis lock this often, so long applies keep it.
pub(crate) const REDIS_LOCK_REFRESH: Duration = Duration::from_secs(5);

/// What a Redis lock holds: `{host}:{pid}:{start}:{pid namespace}:{boot id}:{random}`, enough for
/// a run on the same host to tell whether the holder still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    holder: Option<ProcessIdentity>,
    text: String,
}

impl Token {
    fn new() -> Token {
        let holder = ProcessIdentity::current();
        let random = format!("{:032x}", rand::random::<u128>());
        let text = match &holder {
            Some(me) => format!(
                "{}:{}:{}:{}:{}:{random}",
                me.host, me.pid, me.started, me.pid_namespace, me.boot
            ),
            // Without /proc nobody can check us: the TTL is the only way out.
            None => format!(
                "{}:{}:{random}",
                crate::host::hostname(),
                std::process::id()
            ),
        };
        Token { holder, text }
    }

    /// A token as another run wrote it; one this version cannot read names no checkable holder.
    fn parse(text: &str) -> Token {
        let parts: Vec<&str> = text.split(':').collect();
        let holder = match parts.as_slice() {
            [host, pid, started, pid_namespace, boot, _random] => (|| {
                Some(ProcessIdentity {
                    host: (*host).to_owned(),
                    pid: pid.parse().ok()?,
                    started: started.parse().ok()?,
                    pid_namespace: (*pid_namespace).to_owned(),
                    boot: (*boot).to_owned(),
                })
            })(),
            _ => None,
        };
        Token {
            holder,
            text: text.to_owned(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The holder is a process on this host that is gone.
    fn holder_is_gone(&self) -> bool {
        match (&self.holder, ProcessIdentity::current()) {
            (Some(holder), Some(me)) => me.can_check(holder) && holder.is_gone(),
            _ => false,
        }
    }
}

/// A lock that this run holds.
pub(crate) struct Held {
    pub database: DatabaseLock,
    /// The Redis lock's key and token, when Redis is configured.
    pub redis: Option<(String, Token)>,
    /// Set when the lock was taken over from a dead holder: who that was.
    pub taken_over_from: Option<String>,
}

pub(crate) enum Acquired {
    Held(Held),
    /// Another apply holds it: who, as far as known.
    Busy(String),
}

/// Takes the database's lock (flock beside SQLite, advisory lock on PostgreSQL), then the Redis
/// lock when Redis is configured, taking it over from a dead holder on this host. `suffix` is
/// appended to every name of the lock (`AgentScope::lock_suffix`: one lock per shard).
pub(crate) async fn acquire(
    store: &mut Store,
    redis: Option<&mut Redis>,
    suffix: &str,
) -> Result<Acquired> {
    let database = match store.try_lock(suffix).await? {
        Ok(lock) => lock,
        Err(holder) => return Ok(Acquired::Busy(holder)),
    };
    let Some(redis) = redis else {
        return Ok(Acquired::Held(Held {
            database,
            redis: None,
            taken_over_from: None,
        }));
    };
    let key = format!("{REDIS_LOCK_KEY}{suffix}");
    let token = Token::new();
    let taken_over_from = match redis.try_lock(&key, token.as_str(), REDIS_LOCK_TTL).await? {
        Ok(()) => None,
        Err(holder) => {
            let holder = Token::parse(&holder);
            let taken = holder.holder_is_gone()
                && redis
                    .take_over_lock(&key, holder.as_str(), token.as_str(), REDIS_LOCK_TTL)
                    .await?;
            if !taken {
                return Ok(Acquired::Busy(format!(
                    "another apply holds the Redis lock {key} (held by {}; a holder on another host that died lets go within {}s)",
                    holder.as_str(),
                    REDIS_LOCK_TTL.as_secs()
                )));
            }
            Some(holder.as_str().to_owned())
        }
    };
    Ok(Acquired::Held(Held {
        database,
        redis: Some((key, token)),
        taken_over_from,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_this_process_and_parses_back() {
        let token = Token::new();
        let parsed = Token::parse(token.as_str());
        assert_eq!(parsed, token);
        assert!(!parsed.holder_is_gone(), "this process runs");
        let foreign = Token::parse("otherhost:42:abc");
        assert!(
            !foreign.holder_is_gone(),
            "unknown holders are never taken for dead"
        );
        let mut dead = token.clone();
        if let Some(holder) = &mut dead.holder {
            holder.started += 1;
        }
        assert!(dead.holder_is_gone(), "a reused pid is not the holder");
    }
}
