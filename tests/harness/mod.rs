//! Real local parts for tests, the demo and the benchmark: a temp SQLite file with Trinity's
//! schema, a fleet of fake agents served over HTTP on 127.0.0.1:0, and a throwaway redis-server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use rusqlite::Connection;

pub const SCHEMA: &str = include_str!("trinity_schema.sql");
/// `agent_activities`, which newer Trinity versions add.
pub const ACTIVITIES_SCHEMA: &str = include_str!("trinity_activities.sql");

/// A time `seconds` ago in the backend's own format.
pub fn ago(seconds: i64) -> String {
    (Utc::now() - chrono::Duration::seconds(seconds))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Unix seconds `seconds` ago, as a slot score.
pub fn unix_ago(seconds: i64) -> f64 {
    (Utc::now().timestamp() - seconds) as f64
}

// ---------------------------------------------------------------------------------------------
// Database

/// Which database a test's Trinity runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
}

/// Runs `test` with every `TrinityDb::new()` on `backend`: the same scenario against both databases.
pub fn with_backend(backend: Backend, test: impl FnOnce()) {
    BACKEND.with(|b| b.set(backend));
    test();
    BACKEND.with(|b| b.set(Backend::Sqlite));
}

/// The PostgreSQL server the tests use (this machine's, trust auth); each test gets its own
/// fresh database there, dropped afterwards.
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Where the database lives; clonable and `Send`, so hooks running inside the fake agents can
/// change rows between plan and apply.
#[derive(Clone, Debug)]
pub enum DbHandle {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DbHandle {
    /// Runs SQL statements (no results).
    pub fn execute(&self, sql: &str) {
        match self {
            DbHandle::Sqlite(path) => {
                let conn = sqlite_conn(path);
                conn.execute_batch(sql)
                    .unwrap_or_else(|err| panic!("{err}: {sql}"));
            }
            DbHandle::Postgres(url) => {
                let (url, sql) = (url.clone(), sql.to_owned());
                // The blocking client must not run on a tokio runtime thread (hooks do): own thread.
                std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls)
                        .expect("connect to postgres");
                    client
                        .batch_execute(&sql)
                        .unwrap_or_else(|err| panic!("{err}: {sql}"));
                })
                .join()
                .expect("postgres statement");
            }
        }
    }

    pub fn row(&self, id: &str) -> RowState {
        match self {
            DbHandle::Sqlite(path) => sqlite_conn(path)
                .query_row(
                    "SELECT status, completed_at, duration_ms, error FROM schedule_executions WHERE id = ?1",
                    [id],
                    |r| Ok(RowState { status: r.get(0)?, completed_at: r.get(1)?, duration_ms: r.get(2)?, error: r.get(3)? }),
                )
                .expect("row exists"),
            DbHandle::Postgres(url) => {
                let (url, id) = (url.clone(), id.to_owned());
                std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect to postgres");
                    let r = client
                        .query_one(
                            "SELECT status, completed_at::text, duration_ms::bigint, error FROM schedule_executions WHERE id = $1",
                            &[&id],
                        )
                        .expect("row exists");
                    RowState { status: r.get(0), completed_at: r.get(1), duration_ms: r.get(2), error: r.get(3) }
                })
                .join()
                .expect("postgres query")
            }
        }
    }
}

fn sqlite_conn(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open db");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    // Trinity declares foreign keys but does not enforce them (bundled SQLite would).
    conn.pragma_update(None, "foreign_keys", false)
        .expect("foreign keys off");
    conn
}

/// Another writer holding an SQLite database's EXCLUSIVE lock for `hold` on a thread of its
/// own: returns once the lock is taken; `released` is set just before it lets go.
pub fn hold_exclusive_lock(
    path: &Path,
    hold: Duration,
    released: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    let holder = std::thread::spawn(move || {
        let conn = Connection::open(&path).expect("open db");
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("exclusive lock");
        tx.send(()).expect("locked");
        std::thread::sleep(hold);
        released.store(true, std::sync::atomic::Ordering::SeqCst);
        conn.execute_batch("COMMIT").expect("commit");
    });
    rx.recv().expect("the holder took the lock");
    holder
}

/// An SQL string literal.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn lit_int(value: Option<i64>) -> String {
    value.map_or("NULL".to_owned(), |v| v.to_string())
}

/// A Trinity database with the real schema: an SQLite file in a temp directory, or (with
/// `with_backend(Backend::Postgres, …)`) a fresh PostgreSQL database.
pub struct TrinityDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub handle: DbHandle,
    pg_name: Option<String>,
}

/// The columns of a row the tests look at after an apply.
#[derive(Debug, Clone, PartialEq)]
pub struct RowState {
    pub status: String,
    pub completed_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

impl TrinityDb {
    pub fn new() -> TrinityDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("trinity.db");
        match BACKEND.with(|b| b.get()) {
            Backend::Sqlite => {
                let conn = Connection::open(&path).expect("create db");
                conn.execute_batch(SCHEMA).expect("schema");
                TrinityDb {
                    dir,
                    path: path.clone(),
                    handle: DbHandle::Sqlite(path),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!(
                    "trinity_test_{}_{:x}",
                    std::process::id(),
                    rand::random::<u64>()
                );
                DbHandle::Postgres(format!("{PG_SERVER}/postgres"))
                    .execute(&format!("CREATE DATABASE {name}"));
                let handle = DbHandle::Postgres(format!("{PG_SERVER}/{name}"));
                handle.execute(&postgres_schema());
                TrinityDb {
                    dir,
                    path,
                    handle,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// The options that point trinity-watchdog at this database.
    pub fn args(&self) -> Vec<String> {
        match &self.handle {
            DbHandle::Sqlite(path) => vec!["--db".into(), path.display().to_string()],
            DbHandle::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
    }

    /// A direct SQLite connection (SQLite-only tests).
    pub fn conn(&self) -> Connection {
        assert!(
            matches!(self.handle, DbHandle::Sqlite(_)),
            "conn() is for SQLite tests"
        );
        sqlite_conn(&self.path)
    }

    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    pub fn execute(&self, sql: &str) {
        self.handle.execute(sql);
    }

    pub fn add_agent(&self, name: &str, timeout_seconds: Option<i64>) {
        self.execute(&format!(
            "INSERT INTO agent_ownership (agent_name, owner_id, created_at, execution_timeout_seconds) VALUES ({}, 1, {}, {})",
            lit(name),
            lit(&ago(86_400)),
            lit_int(timeout_seconds)
        ));
    }

    pub fn add_schedule(&self, id: &str, agent: &str, timeout_seconds: Option<i64>) {
        self.execute(&format!(
            "INSERT INTO agent_schedules (id, agent_name, name, cron_expression, message, owner_id, created_at, updated_at, timeout_seconds) \
             VALUES ({}, {}, 'nightly', '0 * * * *', 'do it', 1, {created}, {created}, {})",
            lit(id),
            lit(agent),
            lit_int(timeout_seconds),
            created = lit(&ago(86_400)),
        ));
    }

    /// A row with every NOT NULL column filled; `started_at` is taken as given.
    pub fn add_execution(&self, id: &str, agent: &str, status: &str, started_at: &str) {
        self.add_execution_on(id, agent, status, started_at, "__manual__");
    }

    pub fn add_execution_on(
        &self,
        id: &str,
        agent: &str,
        status: &str,
        started_at: &str,
        schedule_id: &str,
    ) {
        let completed = (status != "running" && status != "queued").then(|| ago(600));
        self.execute(&format!(
            "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, started_at, completed_at, message, triggered_by, claude_session_id) \
             VALUES ({}, {}, {}, {}, {}, {}, 'run the job', 'schedule', 'dispatched')",
            lit(id),
            lit(schedule_id),
            lit(agent),
            lit(status),
            lit(started_at),
            completed.as_deref().map_or("NULL".to_owned(), lit),
        ));
    }

    /// Adds Trinity's `agent_activities` table (newer versions have it).
    pub fn add_activities_table(&self) {
        match &self.handle {
            DbHandle::Sqlite(_) => self.execute(ACTIVITIES_SCHEMA),
            // Trinity does not enforce foreign keys, and their targets are not in this schema.
            DbHandle::Postgres(_) => {
                let ddl: Vec<&str> = ACTIVITIES_SCHEMA
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("FOREIGN KEY"))
                    .collect();
                self.execute(&ddl.join("\n").replace(
                    "created_at TEXT DEFAULT CURRENT_TIMESTAMP,\n)",
                    "created_at TEXT DEFAULT CURRENT_TIMESTAMP\n)",
                ));
            }
        }
    }

    /// An activity of `activity_type` in `state`, paired with `execution`.
    pub fn add_activity(&self, id: &str, execution: &str, activity_type: &str, state: &str) {
        self.execute(&format!(
            "INSERT INTO agent_activities (id, agent_name, activity_type, activity_state, started_at, triggered_by, related_execution_id) \
             VALUES ({}, 'alpha', {}, {}, {}, 'schedule', {})",
            lit(id),
            lit(activity_type),
            lit(state),
            lit(&ago(600)),
            lit(execution),
        ));
    }

    /// `(activity_state, completed_at, duration_ms, error)` of an activity.
    pub fn activity(&self, id: &str) -> RowState {
        let sql = format!(
            "SELECT activity_state, completed_at, duration_ms, error FROM agent_activities WHERE id = {}",
            lit(id)
        );
        match &self.handle {
            DbHandle::Sqlite(path) => sqlite_conn(path)
                .query_row(&sql, [], |r| {
                    Ok(RowState {
                        status: r.get(0)?,
                        completed_at: r.get(1)?,
                        duration_ms: r.get(2)?,
                        error: r.get(3)?,
                    })
                })
                .expect("activity exists"),
            DbHandle::Postgres(url) => {
                let url = url.clone();
                let sql = sql.replace("duration_ms,", "duration_ms::bigint,");
                std::thread::spawn(move || {
                    let mut client =
                        postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                    let r = client
                        .query_one(sql.as_str(), &[])
                        .expect("activity exists");
                    RowState {
                        status: r.get(0),
                        completed_at: r.get(1),
                        duration_ms: r.get(2),
                        error: r.get(3),
                    }
                })
                .join()
                .expect("postgres query")
            }
        }
    }

    /// Adds the pull-mode lease column of newer versions.
    pub fn add_lease_column(&self) {
        self.execute("ALTER TABLE schedule_executions ADD COLUMN lease_expires_at TEXT");
    }

    pub fn set(&self, id: &str, assignments: &str) {
        self.execute(&format!(
            "UPDATE schedule_executions SET {assignments} WHERE id = {}",
            lit(id)
        ));
    }

    pub fn row(&self, id: &str) -> RowState {
        self.handle.row(id)
    }
}

impl Drop for TrinityDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            DbHandle::Postgres(format!("{PG_SERVER}/postgres"))
                .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Trinity's schema in PostgreSQL's dialect, derived from the SQLite one: the same tables,
/// columns and indexes; foreign keys left out, as Trinity does not enforce them.
pub fn postgres_schema() -> String {
    SCHEMA
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "SERIAL PRIMARY KEY")
        .replace(
            "    fan_out_id TEXT,\n    FOREIGN KEY (schedule_id) REFERENCES agent_schedules(id)\n",
            "    fan_out_id TEXT\n",
        )
}

// ---------------------------------------------------------------------------------------------
// Fake agents

/// How a fake agent answers `GET /api/executions/running`.
#[derive(Clone, Debug, Default)]
pub enum Answer {
    /// Its lists, as JSON.
    #[default]
    Lists,
    /// This HTTP status with an empty body.
    Status(u16),
    /// This body with status 200.
    Raw(String),
    /// Never answers in time.
    Hang,
    /// A 302 to another URL.
    Redirect,
    /// This body with status 200, streamed in 64 KiB chunks without a Content-Length.
    Chunked(String),
    /// Its lists for the first N requests, then 500.
    ListsThenFail(usize),
}

/// How a fake agent answers `POST /api/executions/{id}/terminate`.
#[derive(Clone, Debug, Default)]
pub enum OnTerminate {
    /// Stops the process: removes it from `running`, answers `{"status":"terminated"}`.
    #[default]
    Stop,
    Status(u16),
    Hang,
}

/// Runs inside the fake agent at each request, before it answers, with the request's kind
/// ("running", "terminate" or "last-error") and the agent itself (`requests` counts its `running` requests): a
/// test's way to change the world between plan and apply.
#[derive(Clone)]
pub struct Hook(pub Arc<HookFn>);

pub type HookFn = dyn Fn(&str, &mut FakeAgent) + Send + Sync;

impl Hook {
    /// The backend finishes row `id` (`success`) when the tool re-checks the agent just before
    /// its writes: the world moves between the plan and the apply.
    pub fn completing_at_recheck(db: &DbHandle, id: &str) -> Hook {
        let (db, id) = (db.clone(), id.to_owned());
        Hook(Arc::new(move |kind, agent: &mut FakeAgent| {
            if kind == "running" && agent.requests == 2 {
                db.execute(&format!(
                    "UPDATE schedule_executions SET status = 'success' WHERE id = {}",
                    lit(&id)
                ));
            }
        }))
    }
}

/// `CLIENT PAUSE millis mode` (`ALL` or `WRITE`) on the Redis at `url`: it holds back commands
/// for a while (a hook's way to make Redis stall at a chosen moment).
pub fn pause_redis(url: &str, millis: u64, mode: &str) {
    let mut conn = redis::Client::open(url)
        .expect("client")
        .get_connection()
        .expect("redis connection");
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(millis)
        .arg(mode)
        .query(&mut conn)
        .expect("CLIENT PAUSE");
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

#[derive(Clone, Debug, Default)]
pub struct FakeAgent {
    pub running: Vec<String>,
    /// `None`: an older image without the field.
    pub recently_completed: Option<Vec<String>>,
    pub pending: Option<Vec<String>>,
    pub answer: Answer,
    pub on_terminate: OnTerminate,
    pub latency: Duration,
    /// How long a terminate takes before it answers.
    pub terminate_delay: Duration,
    /// How long `last-error` takes before it answers (on top of `latency`).
    pub last_error_delay: Duration,
    /// `(n, pause)`: the agent's `n`th `running` request waits `pause` before it answers (outside
    /// the fleet's lock, so the test sees the request at once).
    pub stall: Option<(usize, Duration)>,
    /// `GET /api/executions/{id}/last-error` answers: id → (error_type, error_message); others 404.
    pub last_errors: HashMap<String, (String, String)>,
    pub requests: usize,
    pub hook: Option<Hook>,
}

impl FakeAgent {
    /// A current agent image running these ids.
    pub fn running(ids: &[&str]) -> FakeAgent {
        FakeAgent {
            running: ids.iter().map(|s| s.to_string()).collect(),
            recently_completed: Some(vec![]),
            pending: Some(vec![]),
            ..FakeAgent::default()
        }
    }

    /// A current agent image running these ids whose terminates never answer.
    pub fn hanging_terminates(ids: &[&str]) -> FakeAgent {
        FakeAgent {
            on_terminate: OnTerminate::Hang,
            ..FakeAgent::running(ids)
        }
    }

    pub fn answering(answer: Answer) -> FakeAgent {
        FakeAgent {
            answer,
            ..FakeAgent::running(&[])
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub agent: String,
    pub method: String,
    /// The execution id for terminate calls.
    pub execution: Option<String>,
    pub token: Option<String>,
}

#[derive(Default)]
struct FleetState {
    agents: HashMap<String, FakeAgent>,
    calls: Vec<Call>,
}

/// Many fake agents behind one HTTP server: agent `a` lives at `http://127.0.0.1:PORT/a`.
pub struct Fleet {
    pub addr: std::net::SocketAddr,
    scheme: &'static str,
    state: Arc<Mutex<FleetState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Shared = Arc<Mutex<FleetState>>;

/// A certificate authority made by the harness, and a server certificate it signed (for
/// 127.0.0.1 and localhost unless told otherwise).
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM): what a client must trust.
    pub ca_pem: PathBuf,
    /// The server's certificate and key (PEM), for servers that read files.
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        Self::for_names(&["127.0.0.1", "localhost"])
    }

    /// A server certificate valid for exactly these names.
    pub fn for_names(names: &[&str]) -> TestCa {
        Self::make(names, false)
    }

    /// A server certificate for 127.0.0.1 and localhost that expired in 2020.
    pub fn expired() -> TestCa {
        Self::make(&["127.0.0.1", "localhost"], true)
    }

    fn make(names: &[&str], expired: bool) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("trinity-watchdog test CA {:x}", rand::random::<u64>()),
        );
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).expect("write CA");
        let cert_pem = dir.path().join("server.crt");
        std::fs::write(&cert_pem, cert.pem()).expect("write certificate");
        let key_pem = dir.path().join("server.key");
        std::fs::write(&key_pem, key.serialize_pem()).expect("write key");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server TLS config");
        TestCa {
            dir,
            ca_pem,
            cert_pem,
            key_pem,
            server: Arc::new(server),
        }
    }
}

/// A TLS listener for axum: accepts TCP, then the handshake (a failed one is dropped).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Fleet {
    pub fn start() -> Fleet {
        Self::start_with(None, "127.0.0.1:0")
    }

    /// The fleet over https, with a certificate from `ca`; its template is `https://…`.
    pub fn start_tls(ca: &TestCa) -> Fleet {
        Self::start_with(Some(ca.server.clone()), "127.0.0.1:0")
    }

    /// The fleet listening on every address, so that it answers on all of 127.0.0.0/8: agents
    /// can then be hosts of their own (`host_template`).
    pub fn start_on_every_address() -> Fleet {
        Self::start_with(None, "0.0.0.0:0")
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>, bind: &str) -> Fleet {
        let state: Shared = Arc::default();
        let listener = StdListener::bind(bind).expect("bind fleet");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/{agent}/api/executions/running", get(running))
            .route("/{agent}/api/executions/{id}/terminate", post(terminate))
            .route("/{agent}/api/executions/{id}/last-error", get(last_error))
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let shutdown = async move {
                    let _ = rx.await;
                };
                match tls {
                    None => axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                        .expect("serve"),
                    Some(config) => {
                        let listener = TlsListener {
                            tcp: listener,
                            acceptor: tokio_rustls::TlsAcceptor::from(config),
                        };
                        axum::serve(listener, app)
                            .with_graceful_shutdown(shutdown)
                            .await
                            .expect("serve")
                    }
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        Fleet {
            addr,
            scheme,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The `--agent-url` template for this fleet.
    pub fn template(&self) -> String {
        format!("{}://{}/{{agent}}", self.scheme, self.addr)
    }

    /// A template where every agent is a host of its own: agent `7` is `127.0.0.7` (agents named
    /// 1 to 254; the fleet must listen on every address).
    pub fn host_template(&self) -> String {
        format!(
            "{}://127.0.0.{{agent}}:{}/{{agent}}",
            self.scheme,
            self.addr.port()
        )
    }

    pub fn set(&self, name: &str, agent: FakeAgent) {
        self.state
            .lock()
            .unwrap()
            .agents
            .insert(name.to_owned(), agent);
    }

    pub fn agent(&self, name: &str) -> FakeAgent {
        self.state
            .lock()
            .unwrap()
            .agents
            .get(name)
            .cloned()
            .expect("known agent")
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn terminate_calls(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter(|call| call.method == "POST")
            .map(|call| (call.agent, call.execution.unwrap_or_default()))
            .collect()
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-trinity-agent-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn running(
    State(state): State<Shared>,
    UrlPath(agent): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let fake = {
        let mut state = state.lock().unwrap();
        state.calls.push(Call {
            agent: agent.clone(),
            method: "GET".into(),
            execution: None,
            token: token(&headers),
        });
        match state.agents.get_mut(&agent) {
            Some(fake) => {
                fake.requests += 1;
                if let Some(Hook(hook)) = fake.hook.clone() {
                    hook("running", fake);
                }
                fake.clone()
            }
            None => return StatusCode::NOT_FOUND.into_response(),
        }
    };
    if !fake.latency.is_zero() {
        tokio::time::sleep(fake.latency).await;
    }
    if let Some((n, pause)) = fake.stall
        && fake.requests == n
    {
        tokio::time::sleep(pause).await;
    }
    let lists = || {
        let mut body = serde_json::json!({
            "executions": fake.running.iter().map(|id| serde_json::json!({
                "execution_id": id, "started_at": ago(30), "metadata": {"source": "fake"}
            })).collect::<Vec<_>>(),
        });
        if let Some(ids) = &fake.recently_completed {
            body["recently_completed_ids"] = serde_json::json!(ids);
        }
        if let Some(ids) = &fake.pending {
            body["pending_ids"] = serde_json::json!(ids);
        }
        ([("content-type", "application/json")], body.to_string()).into_response()
    };
    match fake.answer {
        Answer::Lists => lists(),
        Answer::ListsThenFail(n) if fake.requests <= n => lists(),
        Answer::ListsThenFail(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Answer::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::IM_A_TEAPOT)
            .into_response(),
        Answer::Raw(body) => Response::new(Body::from(body)),
        Answer::Chunked(body) => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
                .into_bytes()
                .chunks(64 * 1024)
                .map(|chunk| Ok(chunk.to_vec()))
                .collect();
            Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Answer::Redirect => (
            StatusCode::FOUND,
            [("location", "http://127.0.0.1:1/elsewhere")],
        )
            .into_response(),
    }
}

async fn terminate(
    State(state): State<Shared>,
    UrlPath((agent, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let behaviour = {
        let mut state = state.lock().unwrap();
        state.calls.push(Call {
            agent: agent.clone(),
            method: "POST".into(),
            execution: Some(id.clone()),
            token: token(&headers),
        });
        let Some(fake) = state.agents.get_mut(&agent) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if let Some(Hook(hook)) = fake.hook.clone() {
            hook("terminate", fake);
        }
        if let OnTerminate::Stop = fake.on_terminate {
            let before = fake.running.len();
            fake.running.retain(|running| *running != id);
            if fake.running.len() == before {
                return (StatusCode::NOT_FOUND, "{\"detail\":\"not found\"}").into_response();
            }
        }
        (fake.on_terminate.clone(), fake.terminate_delay)
    };
    let (behaviour, delay) = behaviour;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match behaviour {
        OnTerminate::Stop => (
            [("content-type", "application/json")],
            "{\"status\":\"terminated\"}",
        )
            .into_response(),
        OnTerminate::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::IM_A_TEAPOT)
            .into_response(),
        OnTerminate::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

async fn last_error(
    State(state): State<Shared>,
    UrlPath((agent, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (answer, latency) = {
        let mut state = state.lock().unwrap();
        state.calls.push(Call {
            agent: agent.clone(),
            method: "GET last-error".into(),
            execution: Some(id.clone()),
            token: token(&headers),
        });
        if let Some(fake) = state.agents.get_mut(&agent)
            && let Some(Hook(hook)) = fake.hook.clone()
        {
            hook("last-error", fake);
        }
        match state.agents.get(&agent) {
            Some(fake) => (
                fake.last_errors.get(&id).cloned(),
                fake.latency + fake.last_error_delay,
            ),
            None => (None, Duration::ZERO),
        }
    };
    // Answers as slowly as the agent's other endpoints.
    tokio::time::sleep(latency).await;
    match answer {
        Some((kind, message)) => {
            let body = serde_json::json!({"error_type": kind, "error_message": message, "timestamp": ago(5)});
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "{\"detail\":\"no error recorded\"}").into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

/// A redis-server of our own on a free port, stopped when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// The TLS port, when started with `start_tls` (the plain `port` stays open for set-up).
    pub tls_port: Option<u16>,
    pub dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one, or `None` when redis-server is not on PATH.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = StdListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            match spawn_redis(port, dir.path(), extra) {
                Spawned::Up(child) => {
                    return Some(RedisServer {
                        child,
                        port,
                        tls_port: None,
                        dir,
                    });
                }
                Spawned::PortTaken => continue,
                Spawned::NotInstalled => return None,
            }
        }
        None
    }

    /// Saves the data to the server's directory and stops the server (a restart's first half;
    /// `start_again` brings it back with the same data, as a persistent Redis would).
    pub fn stop_saving(&mut self) {
        if let Ok(mut conn) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<()> = redis::cmd("SAVE").query(&mut conn);
        }
        self.stop();
    }

    /// Starts the stopped server again on its port, from the data `stop_saving` left.
    pub fn start_again(&mut self) -> bool {
        match spawn_redis(self.port, self.dir.path(), &[]) {
            Spawned::Up(child) => {
                self.child = child;
                true
            }
            _ => false,
        }
    }

    /// A redis-server that also speaks TLS, with `ca`'s server certificate, on `tls_port`.
    pub fn start_tls(ca: &TestCa) -> Option<RedisServer> {
        let port = StdListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let paths = [&ca.cert_pem, &ca.key_pem, &ca.ca_pem].map(|p| p.display().to_string());
        let mut server = Self::start_with(&[
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &paths[0],
            "--tls-key-file",
            &paths[1],
            "--tls-ca-cert-file",
            &paths[2],
            "--tls-auth-clients",
            "no",
        ])?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server's TLS port did not open"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server.tls_port = Some(port);
        Some(server)
    }

    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}/0",
            self.tls_port.expect("started with TLS")
        )
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("redis connection")
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Spawned {
    Up(Child),
    PortTaken,
    NotInstalled,
}

/// Starts a redis-server on `port` with its data in `dir` and waits until it accepts.
fn spawn_redis(port: u16, dir: &Path, extra: &[&str]) -> Spawned {
    let mut command = Command::new("redis-server");
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = command.spawn() else {
        return Spawned::NotInstalled;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Spawned::PortTaken;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Spawned::Up(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Spawned::PortTaken
}

/// A slot as Trinity acquires it: ZSET member plus metadata hash.
pub fn add_slot(
    redis: &mut redis::Connection,
    agent: &str,
    id: &str,
    acquired: f64,
    timeout_seconds: Option<i64>,
) {
    let _: () = redis::cmd("ZADD")
        .arg(format!("agent:slots:{agent}"))
        .arg(acquired)
        .arg(id)
        .query(redis)
        .expect("zadd");
    if let Some(timeout) = timeout_seconds {
        let key = format!("agent:slot:{agent}:{id}");
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("timeout_seconds")
            .arg(timeout)
            .arg("started_at")
            .arg(acquired)
            .query(redis)
            .expect("hset");
        let _: () = redis::cmd("EXPIRE")
            .arg(&key)
            .arg(timeout + 300)
            .query(redis)
            .expect("expire");
    }
}

pub fn slot_members(redis: &mut redis::Connection, agent: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("agent:slots:{agent}"))
        .arg(0)
        .arg(-1)
        .query(redis)
        .expect("zrange")
}

pub fn exists(redis: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query(redis).expect("exists")
}

pub fn set_key(redis: &mut redis::Connection, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(redis)
        .expect("set");
}

/// A path that is guaranteed not to exist inside `dir`.
pub fn missing_path(dir: &Path) -> PathBuf {
    dir.join("no-such-dir").join("trinity.db")
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL with TLS

/// A private PostgreSQL server of the test's own, on a free port, that accepts only TLS
/// connections (`hostssl … trust`) with `ca`'s server certificate; stopped when dropped. It runs
/// as the `postgres` user (initdb refuses root). `None` when the server binaries are missing.
pub struct PgTlsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PgTlsServer {
    pub fn start(ca: &TestCa) -> Option<PgTlsServer> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let as_postgres = |program: &str| {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(bin.join(program))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        };
        let chown = |path: &Path| {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .expect("chown")
        };
        chown(dir.path());
        let ok = as_postgres("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .status()
            .ok()?
            .success();
        assert!(ok, "initdb failed");
        let port = StdListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        std::fs::copy(&ca.cert_pem, data.join("server.crt")).expect("certificate");
        std::fs::copy(&ca.key_pem, data.join("server.key")).expect("key");
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n",
            dir.path().display()
        );
        let mut postgresql_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        postgresql_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), postgresql_conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        chown(dir.path());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let started = as_postgres("pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-w", "-l"])
            .arg(dir.path().join("log"))
            .arg("start")
            .status()
            .ok()?
            .success();
        assert!(started, "pg_ctl start failed");
        Some(PgTlsServer { port, dir, bin })
    }

    /// Runs SQL through `psql` over the server's Unix socket.
    pub fn execute(&self, sql: &str) {
        let status = Command::new(self.bin.join("psql"))
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .stdout(Stdio::null())
            .status()
            .expect("psql");
        assert!(status.success(), "psql failed: {sql}");
    }
}

impl Drop for PgTlsServer {
    fn drop(&mut self) {
        let _ = Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
