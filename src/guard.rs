//! The apply guard: the one owner of everything an apply holds — the apply lock (the database's
//! part and the Redis part, with its refresher), the interrupt flag and its signal listener, and
//! the audit sink. Its `finish` is the way out of every apply that returns, whatever it returns
//! (an error, a refusal, an interrupt); its `Drop` is the way out of a panic; a second signal
//! takes the last-resort way out at once. Every way releases the lock and closes the audit trail
//! with a line saying how the apply ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use color_eyre::eyre::Result;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::audit::AuditLog;
use crate::capacity::Redis;
use crate::exit_code::ExitCode;
use crate::lock::{self, Acquired, REDIS_LOCK_REFRESH, REDIS_LOCK_TTL};
use crate::log::Log;
use crate::plan::{Item, Outcome};
use crate::store::{DatabaseLock, Store};

/// What the guard shares with its signal listener.
struct Shared {
    interrupted: AtomicBool,
    audit: Option<AuditLog>,
    /// The Redis lock: a connection to release it on, its key and this run's token.
    redis_lock: Option<(Redis, String, String)>,
    /// Set once the Redis lock is released (or found gone), so it is released once.
    released: AtomicBool,
    /// Set once the apply ended and its trail is closed: a signal then simply stops the process.
    ended: AtomicBool,
    log: Log,
}

impl Shared {
    fn record_end(&self, ended: &str, error: Option<&str>) {
        if let Some(audit) = &self.audit
            && let Err(err) = audit.record_end(ended, error)
        {
            self.log.warn(&format!("{err:#}"));
        }
    }

    /// Releases the Redis lock without the async runtime, if it is still held.
    fn release_blocking(&self) {
        if let Some((redis, key, token)) = &self.redis_lock
            && !self.released.swap(true, Ordering::SeqCst)
            && let Err(err) = redis.unlock_blocking(key, token)
        {
            crate::log::say!(
                "warning: could not release the Redis apply lock (it expires within {}s): {err:#}",
                REDIS_LOCK_TTL.as_secs()
            );
        }
    }
}

/// A held apply lock, with the interrupt flag and the audit sink.
pub(crate) struct ApplyGuard {
    shared: Arc<Shared>,
    _database_lock: DatabaseLock,
    refresher: Option<tokio::task::JoinHandle<()>>,
    finished: bool,
}

pub(crate) enum Guarded {
    Held(ApplyGuard),
    /// Another apply holds the lock: who, as far as known.
    Busy(String),
}

impl ApplyGuard {
    /// Takes the apply lock and starts listening for interrupts; the audit log (opened before,
    /// so that an unwritable one stops the run before anything) becomes the guard's.
    pub(crate) async fn acquire(
        store: &mut Store,
        mut redis: Option<&mut Redis>,
        audit: Option<AuditLog>,
        lock_suffix: &str,
        log: Log,
    ) -> Result<Guarded> {
        // Caught from before the lock is taken, so that a signal while it is being taken is heard
        // once it is held (and not the default death that would leave the Redis key behind).
        let signals = catch_signals(&log);
        let held = match lock::acquire(store, redis.as_deref_mut(), lock_suffix).await? {
            Acquired::Held(held) => held,
            Acquired::Busy(holder) => return Ok(Guarded::Busy(holder)),
        };
        if let Some(holder) = &held.taken_over_from {
            log.warn(&format!(
                "took the Redis apply lock over from {holder}: that process is gone"
            ));
        }
        let redis_lock = match (redis, &held.redis) {
            (Some(redis), Some((key, token))) => {
                Some((redis.clone(), key.clone(), token.as_str().to_owned()))
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            interrupted: AtomicBool::new(false),
            audit,
            redis_lock,
            released: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            log,
        });
        let refresher = shared.redis_lock.clone().map(|(mut redis, key, token)| {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REDIS_LOCK_REFRESH).await;
                    if !matches!(
                        redis
                            .refresh_lock(&key, &token, REDIS_LOCK_TTL)
                            .await,
                        Ok(true)
                    ) {
                        crate::log::say!(
                            "warning: the Redis apply lock could not be extended; another apply may start"
                        );
                        return;
                    }
                }
            })
        });
        if let Some(signals) = signals {
            listen_for_interrupts(shared.clone(), signals);
        }
        Ok(Guarded::Held(ApplyGuard {
            shared,
            _database_lock: held.database,
            refresher,
            finished: false,
        }))
    }

    /// A signal arrived since the lock was taken: start nothing new.
    pub(crate) fn interrupted(&self) -> bool {
        self.shared.interrupted.load(Ordering::SeqCst)
    }

    /// The flag itself, for the adapters' loops that must stop starting requests.
    pub(crate) fn interrupt_flag(&self) -> &AtomicBool {
        &self.shared.interrupted
    }

    /// Records how an item's action ended, on the item and at once in the audit log.
    pub(crate) fn settle(&self, item: &mut Item, outcome: Outcome, error: Option<String>) {
        item.finish(outcome, error);
        self.record(item);
    }

    /// Writes the audit line of an item that already has its outcome.
    pub(crate) fn record(&self, item: &Item) {
        if let Some(audit) = &self.shared.audit
            && let Err(err) = audit.record(item)
        {
            self.shared.log.warn(&format!("{err:#}"));
        }
    }

    /// Releases the lock and closes the audit trail with how the apply ended: its exit code, or
    /// the error that stopped it.
    pub(crate) async fn finish(
        mut self,
        redis: Option<&mut Redis>,
        ended: &Result<ExitCode, String>,
    ) {
        self.finished = true;
        if let Some(refresher) = self.refresher.take() {
            refresher.abort();
        }
        if let (Some((_, key, token)), Some(redis)) = (&self.shared.redis_lock, redis)
            && !self.shared.released.swap(true, Ordering::SeqCst)
            && let Err(err) = redis.unlock(key, token).await
        {
            self.shared.log.warn(&format!(
                "could not release the Redis apply lock (it expires within {}s): {err:#}",
                REDIS_LOCK_TTL.as_secs()
            ));
        }
        self.shared.ended.store(true, Ordering::SeqCst);
        match ended {
            Ok(ExitCode::Interrupted) => self.shared.record_end("interrupted", None),
            Ok(ExitCode::Refused) => self.shared.record_end("refused", None),
            Ok(_) => self.shared.record_end("finished", None),
            Err(err) => self.shared.record_end("error", Some(err)),
        }
    }
}

impl Drop for ApplyGuard {
    /// The way out of a panic (or of a path that forgot `finish`): release without the runtime.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(refresher) = self.refresher.take() {
            refresher.abort();
        }
        self.shared.release_blocking();
        self.shared.ended.store(true, Ordering::SeqCst);
        let ended = if std::thread::panicking() {
            "panic"
        } else {
            "error"
        };
        self.shared
            .record_end(ended, Some("the apply stopped before it finished"));
    }
}

/// Ctrl-C or SIGTERM: the first sets the flag (the action in progress finishes, nothing new
/// starts); the second exits at once, releasing the lock and closing the audit trail first. Once
/// the apply has ended (only the result is still being printed) a signal stops the process.
/// SIGINT and SIGTERM, caught from now on (their default would end the process at once).
fn catch_signals(log: &Log) -> Option<(Signal, Signal)> {
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
        _ => {
            log.warn("cannot listen for signals: Ctrl-C and SIGTERM stop the apply at once");
            None
        }
    }
}

fn listen_for_interrupts(shared: Arc<Shared>, (mut interrupt, mut terminate): (Signal, Signal)) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if shared.ended.load(Ordering::SeqCst) {
                std::process::exit(i32::from(ExitCode::Interrupted.code()));
            }
            if !shared.interrupted.swap(true, Ordering::SeqCst) {
                crate::log::say!(
                    "interrupted: finishing the action in progress, starting no new one (signal again to stop at once)"
                );
                continue;
            }
            crate::log::say!("interrupted again: stopping now");
            shared.release_blocking();
            shared.record_end("killed", Some("a second signal stopped the apply at once"));
            std::process::exit(i32::from(ExitCode::Interrupted.code()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::RedisConfig;
    use crate::lock::REDIS_LOCK_KEY;
    use crate::redact::Secret;
    use crate::store::Database;

    /// A redis-server of the test's own on a free port, killed on drop.
    struct RedisServer(std::process::Child, u16);

    impl RedisServer {
        fn start() -> RedisServer {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be on PATH (.ci/run installs it)");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            RedisServer(child, port)
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_panic_under_the_guard_releases_the_lock_and_closes_the_trail() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("trinity.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(
                "CREATE TABLE schedule_executions (id TEXT PRIMARY KEY, schedule_id TEXT, agent_name TEXT, \
                 status TEXT, started_at TEXT, completed_at TEXT, duration_ms INTEGER, error TEXT)",
            )
            .unwrap();
        let server = RedisServer::start();
        let audit_path = dir.path().join("audit.jsonl");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let url = format!("redis://127.0.0.1:{}/0", server.1);
        let held = |url: &str| -> bool {
            let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
            redis::cmd("EXISTS")
                .arg(REDIS_LOCK_KEY)
                .query(&mut conn)
                .unwrap()
        };
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                let mut store = Store::open(&Database::Sqlite(db.clone()), true)
                    .await
                    .unwrap();
                let config = RedisConfig {
                    url: Secret::new(url.clone()),
                    ca_certs: Default::default(),
                };
                let mut redis = Redis::connect(&config).await.unwrap();
                let audit = AuditLog::open(&audit_path).unwrap();
                let Guarded::Held(_guard) = ApplyGuard::acquire(
                    &mut store,
                    Some(&mut redis),
                    Some(audit),
                    "",
                    Log::default(),
                )
                .await
                .unwrap() else {
                    panic!("the lock is free");
                };
                assert!(held(&url), "the guard holds the Redis lock");
                panic!("a bug in the middle of an apply");
            })
        }));
        assert!(panicked.is_err());
        assert!(!held(&url), "the panic released the Redis lock");
        let trail = std::fs::read_to_string(&audit_path).unwrap();
        let last: serde_json::Value =
            serde_json::from_str(trail.lines().last().expect("a line")).unwrap();
        assert_eq!(last["event"], "apply_end");
        assert_eq!(last["outcome"], "panic");
    }
}
