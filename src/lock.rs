//! One apply at a time: an OS file lock (flock) on a file beside the database, released by the
//! kernel even when the process is SIGKILLed, plus — when Redis is configured, so that applies on
//! other hosts are excluded too — a Redis lock (`SET NX PX` with a random token, released by a
//! compare-and-delete script, expiring on its own if the holder dies). A dry run takes neither.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr};

use crate::capacity::Redis;

/// The Redis key of the apply lock.
pub(crate) const REDIS_LOCK_KEY: &str = "trinity-watchdog:apply-lock";
/// How long the Redis lock outlives a holder that died without releasing it.
pub(crate) const REDIS_LOCK_TTL: Duration = Duration::from_secs(60);
/// A live holder extends its Redis lock this often, so long applies keep it.
const REDIS_LOCK_REFRESH: Duration = Duration::from_secs(20);

/// A held apply lock; `release` lets go of the Redis part, dropping lets go of the file.
pub(crate) struct ApplyLock {
    _file: File,
    redis_token: Option<String>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) enum Acquired {
    Held(ApplyLock),
    /// Another apply holds it: who, as far as known.
    Busy(String),
}

/// The lock file for a database: `<db>.watchdog-lock`, beside it.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".watchdog-lock");
    db.with_file_name(name)
}

pub(crate) async fn acquire(db: &Path, redis: Option<&mut Redis>) -> Result<Acquired> {
    let path = lock_path(db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .wrap_err_with(|| format!("cannot create the apply lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Ok(Acquired::Busy(format!(
                "another apply holds the lock file {}",
                path.display()
            )));
        }
        Err(TryLockError::Error(err)) => {
            return Err(err).wrap_err_with(|| format!("cannot lock {}", path.display()));
        }
    }
    let Some(redis) = redis else {
        return Ok(Acquired::Held(ApplyLock {
            _file: file,
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
        _file: file,
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
