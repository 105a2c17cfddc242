//! One apply at a time: the database's own lock — an OS file lock (flock) beside an SQLite file, or
//! a PostgreSQL session advisory lock, both released by the kernel or the server even when the
//! process is SIGKILLed — plus, when Redis is configured (so that applies on other hosts are
//! excluded too), a Redis lock (`SET NX PX` with a random token, refreshed while held, released by
//! a compare-and-delete script, expiring on its own if the holder dies). A dry run takes none.

use std::time::Duration;

use color_eyre::eyre::Result;

use crate::capacity::Redis;
use crate::store::Store;

/// The Redis key of the apply lock.
pub(crate) const REDIS_LOCK_KEY: &str = "trinity-watchdog:apply-lock";
/// How long the Redis lock outlives a holder that died without releasing it.
pub(crate) const REDIS_LOCK_TTL: Duration = Duration::from_secs(60);
/// A live holder extends its Redis lock this often, so long applies keep it.
const REDIS_LOCK_REFRESH: Duration = Duration::from_secs(20);

/// A held apply lock; `release` lets go of the Redis part. The database's part lives with the
/// store (its file handle or its session) and ends with it.
pub(crate) struct ApplyLock {
    redis_token: Option<String>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) enum Acquired {
    Held(ApplyLock),
    /// Another apply holds it: who, as far as known.
    Busy(String),
}

/// Takes the database's lock (flock beside SQLite, advisory lock on PostgreSQL), then the Redis
/// lock when Redis is configured.
pub(crate) async fn acquire(store: &mut Store, redis: Option<&mut Redis>) -> Result<Acquired> {
    if let Err(holder) = store.try_lock().await? {
        return Ok(Acquired::Busy(holder));
    }
    let Some(redis) = redis else {
        return Ok(Acquired::Held(ApplyLock {
            redis_token: None,
            refresher: None,
        }));
    };
    let token = format!(
        "{}:{}:{:032x}",
        hostname(),
        std::process::id(),
        rand::random::<u128>()
    );
    if let Err(holder) = redis
        .try_lock(REDIS_LOCK_KEY, &token, REDIS_LOCK_TTL)
        .await?
    {
        return Ok(Acquired::Busy(format!(
            "another apply holds the Redis lock {REDIS_LOCK_KEY} (held by {holder})"
        )));
    }
    let mut keeper = redis.clone();
    let kept = token.clone();
    let refresher = tokio::spawn(async move {
        loop {
            tokio::time::sleep(REDIS_LOCK_REFRESH).await;
            if !matches!(
                keeper
                    .refresh_lock(REDIS_LOCK_KEY, &kept, REDIS_LOCK_TTL)
                    .await,
                Ok(true)
            ) {
                eprintln!(
                    "warning: the Redis apply lock could not be extended; another apply may start"
                );
                return;
            }
        }
    });
    Ok(Acquired::Held(ApplyLock {
        redis_token: Some(token),
        refresher: Some(refresher),
    }))
}

impl ApplyLock {
    /// Releases the Redis lock if this run still holds it; the file lock goes with `self`.
    pub(crate) async fn release(self, redis: Option<&mut Redis>) -> Result<()> {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
        if let (Some(token), Some(redis)) = (&self.redis_token, redis) {
            redis.unlock(REDIS_LOCK_KEY, token).await?;
        }
        Ok(())
    }
}

/// This machine's name, for lock tokens and the audit log.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}
