//! The fleet-scale benchmark: builds a synthetic Trinity deployment (A agents, R running rows, H
//! rows of history, agent latency L, a share of orphans and timeouts, a Redis slot for every running
//! row), runs the real release binary against it as a separate process, and reports wall time, CPU
//! time and peak RSS (median of several runs) next to the ideal bound ceil(A / concurrency) × L +
//! the database time. Run with `cargo run --release --example bench -- --help`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the benchmark reports on stdout and stderr

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use harness::*;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark trinity-watchdog against a synthetic fleet")]
struct Args {
    /// Agents.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Running executions, spread evenly over the agents.
    #[arg(long, default_value_t = 100_000)]
    running: usize,
    /// Terminal rows of history.
    #[arg(long, default_value_t = 1_000_000)]
    history: usize,
    /// Latency of every agent answer, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Share of running rows that are orphaned.
    #[arg(long, default_value_t = 0.02)]
    orphans: f64,
    /// Share of running rows past their timeout.
    #[arg(long, default_value_t = 0.01)]
    timeouts: f64,
    /// --concurrency passed to the tool (unset: the tool's default, from its descriptor limit).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Run this many instances at once, `--shard 0/N` … `--shard N-1/N`, on the same world
    /// (wall: until the last ends; CPU: their sum; peak RSS: the largest).
    #[arg(long, default_value_t = 1)]
    shards: u64,
    /// Measured runs per case (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also measure an --apply of this many orphans on a fresh copy (0: skip).
    #[arg(long, default_value_t = 1000)]
    apply_orphans: usize,
    /// Measure this trinity-watchdog binary instead of building the checkout's (to compare a
    /// build of an earlier commit under the same benchmark).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Pass -v to the tool (its phase timings go to stderr) instead of -q.
    #[arg(long)]
    verbose: bool,
    /// Instead of measuring: build the deployment, print the tool's command line (for a profiler)
    /// and keep the deployment up this many seconds.
    #[arg(long, value_name = "SECONDS")]
    serve: Option<u64>,
    /// Instead of one case: the growth table (A = 10 … 20 000), the history comparison
    /// (H = 10 000 vs the given H), the concurrency sweep and the shards side by side.
    #[arg(long)]
    sweep: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
    database_ms: u64,
    agents_ms: u64,
    apply_ms: u64,
    /// The concurrency the tool used (its JSON `settings.concurrency`).
    concurrency: u64,
}

fn main() {
    let mut raw = std::env::args_os().skip(1);
    if raw.next().is_some_and(|first| first == "--measure-rusage") {
        measure_rusage(raw);
    }
    let args = Args::parse();
    let binary = args.binary.clone().unwrap_or_else(build_binary);
    println!(
        "machine: {} cores; binary: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        binary.display()
    );
    if let Some(seconds) = args.serve {
        let deployment = Deployment::build(&args);
        let command = deployment.command(&binary, &args, &[]);
        let words: Vec<_> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        println!("{}", words.join(" "));
        std::thread::sleep(Duration::from_secs(seconds));
        return;
    }
    if args.sweep {
        sweep(&binary, &args);
    } else {
        let deployment = Deployment::build(&args);
        println!("{}", Report::header());
        println!("{}", deployment.measure_scan(&binary, &args).row(&args));
        if args.apply_orphans > 0 {
            apply(&binary, &args);
        }
    }
}

/// Builds the release binary the benchmark runs (the examples do not depend on it), in a target
/// directory of its own: the binary alone resolves features without the dev-dependencies, so
/// sharing `target/release` with the examples would rebuild both in turn on every run.
fn build_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-binary");
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "trinity-watchdog"])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    target.join("release/trinity-watchdog")
}

struct Deployment {
    db: TrinityDb,
    fleet: Fleet,
    redis: RedisServer,
    agents: usize,
    running: usize,
    /// Every slot as (agent, execution id, score), to restore Redis for the next apply run.
    slots: Vec<(String, String, f64)>,
}

impl Deployment {
    fn build(args: &Args) -> Deployment {
        let started = Instant::now();
        let db = TrinityDb::new();
        let fleet = Fleet::start();
        let redis = RedisServer::start().expect("redis-server must be on PATH");
        let mut conn = db.conn();
        let tx = conn.transaction().expect("transaction");
        {
            let mut agent = tx
                .prepare("INSERT INTO agent_ownership (agent_name, owner_id, created_at, execution_timeout_seconds) VALUES (?1, 1, ?2, 900)")
                .expect("prepare");
            for a in 0..args.agents {
                agent
                    .execute(rusqlite::params![agent_name(a), ago(86_400)])
                    .expect("agent");
            }
            let mut history = tx
                .prepare("INSERT INTO schedule_executions (id, schedule_id, agent_name, status, started_at, completed_at, duration_ms, message, triggered_by) VALUES (?1, '__manual__', ?2, ?3, ?4, ?4, 1000, 'job', 'schedule')")
                .expect("prepare");
            let statuses = [
                "success",
                "success",
                "success",
                "failed",
                "cancelled",
                "skipped",
            ];
            let old = ago(2 * 86_400);
            for h in 0..args.history {
                history
                    .execute(rusqlite::params![
                        format!("hist-{h:07}"),
                        agent_name(h % args.agents),
                        statuses[h % statuses.len()],
                        old
                    ])
                    .expect("history");
            }
        }
        tx.commit().expect("commit");
        drop(conn);

        let orphan_every = share_to_stride(args.orphans);
        let timeout_every = share_to_stride(args.timeouts);
        let mut per_agent: Vec<Vec<String>> = vec![Vec::new(); args.agents];
        let mut slots = Vec::new();
        let mut conn = db.conn();
        let tx = conn.transaction().expect("transaction");
        {
            let mut running = tx
                .prepare("INSERT INTO schedule_executions (id, schedule_id, agent_name, status, started_at, message, triggered_by, claude_session_id) VALUES (?1, '__manual__', ?2, 'running', ?3, 'job', 'schedule', 'dispatched')")
                .expect("prepare");
            for r in 0..args.running {
                let id = format!("run-{r:06}");
                let agent = r % args.agents;
                let orphan = orphan_every.is_some_and(|every| r % every == 0);
                let timed_out = !orphan && timeout_every.is_some_and(|every| r % every == 1);
                let age = if timed_out { 3600 } else { 300 };
                running
                    .execute(rusqlite::params![id, agent_name(agent), ago(age)])
                    .expect("running");
                if !orphan {
                    per_agent[agent].push(id.clone());
                }
                slots.push((agent_name(agent), id, unix_ago(age)));
            }
        }
        tx.commit().expect("commit");
        seed_slots(&redis, &slots);
        for (a, ids) in per_agent.iter().enumerate() {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            fleet.set(
                &agent_name(a),
                FakeAgent {
                    latency: Duration::from_millis(args.latency_ms),
                    ..FakeAgent::running(&ids)
                },
            );
        }
        eprintln!(
            "built A={} R={} H={} in {:.1}s",
            args.agents,
            args.running,
            args.history,
            started.elapsed().as_secs_f64()
        );
        Deployment {
            db,
            fleet,
            redis,
            agents: args.agents,
            running: args.running,
            slots,
        }
    }

    /// A copy of the database and freshly seeded Redis slots, so an apply starts from the same state.
    fn reset_for_apply(&self, pristine: &Path) {
        std::fs::copy(pristine, &self.db.path).expect("copy database");
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.redis.conn())
            .expect("flushall");
        seed_slots(&self.redis, &self.slots);
    }

    fn command(&self, binary: &Path, args: &Args, extra: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command
            .args(["scan", "-o", "json", if args.verbose { "-v" } else { "-q" }])
            .args(extra)
            .args([
                "--db",
                self.db.path(),
                "--agent-url",
                &self.fleet.template(),
                "--redis-url",
                &self.redis.url(),
            ])
            .env_remove("REDIS_URL");
        if let Some(concurrency) = args.concurrency {
            command.args(["--concurrency", &concurrency.to_string()]);
        }
        command
    }

    fn measure_scan(&self, binary: &Path, args: &Args) -> Report {
        let runs: Vec<Measured> = (0..args.runs.max(1))
            .map(|run| {
                let measured = self.measure_shards(binary, args);
                eprintln!(
                    "run {run}: wall {} ms, CPU {} ms, peak RSS {:.1} MB",
                    measured.wall.as_millis(),
                    measured.cpu.as_millis(),
                    measured.max_rss_kb as f64 / 1024.0
                );
                measured
            })
            .collect();
        Report {
            agents: self.agents,
            runs,
        }
    }
}

impl Deployment {
    /// One dry run, or `args.shards` at once (one per shard) whose figures are combined.
    fn measure_shards(&self, binary: &Path, args: &Args) -> Measured {
        let parts: Vec<(Measured, serde_json::Value)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..args.shards)
                .map(|index| {
                    let shard = format!("{index}/{}", args.shards);
                    let extra = if args.shards > 1 {
                        vec!["--shard", shard.as_str()]
                    } else {
                        Vec::new()
                    };
                    let command = self.command(binary, args, &extra);
                    scope.spawn(move || run_measured(command))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("shard run"))
                .collect()
        });
        let mut items = 0;
        for (_, doc) in &parts {
            items += doc["summary"]["items"].as_u64().unwrap_or(0) as usize;
            assert_eq!(
                doc["summary"]["unreachable_agents"], 0,
                "every fake agent answers"
            );
        }
        assert!(
            items >= self.running,
            "the plans have {items} items for {} running rows",
            self.running
        );
        let each = parts.iter().map(|(m, _)| m);
        Measured {
            // They start together: the last one's end is the longest one's wall.
            wall: each.clone().map(|m| m.wall).max().unwrap_or_default(),
            cpu: each.clone().map(|m| m.cpu).sum(),
            max_rss_kb: each.clone().map(|m| m.max_rss_kb).max().unwrap_or(0),
            database_ms: each.clone().map(|m| m.database_ms).max().unwrap_or(0),
            agents_ms: each.clone().map(|m| m.agents_ms).max().unwrap_or(0),
            apply_ms: each.clone().map(|m| m.apply_ms).max().unwrap_or(0),
            concurrency: each.map(|m| m.concurrency).max().unwrap_or(0),
        }
    }
}

/// A Redis slot (member and metadata) for every running row, in one pipeline.
fn seed_slots(redis: &RedisServer, slots: &[(String, String, f64)]) {
    let mut pipe = redis::pipe();
    for (agent, id, score) in slots {
        pipe.cmd("ZADD")
            .arg(format!("agent:slots:{agent}"))
            .arg(*score)
            .arg(id)
            .ignore();
        pipe.cmd("HSET")
            .arg(format!("agent:slot:{agent}:{id}"))
            .arg("timeout_seconds")
            .arg(900)
            .ignore();
    }
    let _: () = pipe.query(&mut redis.conn()).expect("slots");
}

fn agent_name(index: usize) -> String {
    format!("agent-{index:05}")
}

fn share_to_stride(share: f64) -> Option<usize> {
    (share > 0.0).then(|| (1.0 / share).round().max(1.0) as usize)
}

/// Runs a command to completion and measures it: wall time from its spawn to its exit, CPU time
/// and peak RSS from its rusage (not this process's reading and parsing of the document, which
/// used to be counted in the wall time: 0.5 to 0.8 s of it at A = 10 000), and the parsed
/// document. All three figures are read by a small helper process (this program, re-executed in
/// `--measure-rusage` mode) that forks the command: Linux carries a process's peak RSS over from
/// the process it was forked from, so forking the tool straight from this large process would
/// report this process's size, not the tool's.
fn run_measured(command: Command) -> (Measured, serde_json::Value) {
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let mut wrapped = Command::new(std::env::current_exe().expect("own path"));
    wrapped
        .arg("--measure-rusage")
        .arg(report.path())
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    // The document goes to a file, not a pipe: this process also serves the fake agents, and a
    // pipe it drains would make the tool wait on the benchmark's own scheduling.
    let mut document = tempfile::tempfile().expect("temp file");
    let status = wrapped
        .stdout(document.try_clone().expect("clone the temp file"))
        .stderr(Stdio::inherit())
        .status()
        .expect("run the measuring helper");
    assert!(status.success(), "trinity-watchdog failed: {status}");
    let mut stdout = Vec::new();
    document.seek(SeekFrom::Start(0)).expect("rewind");
    document
        .read_to_end(&mut stdout)
        .expect("read the document");
    let usage = std::fs::read_to_string(report.path()).expect("rusage report");
    let fields: Vec<i64> = usage
        .split_whitespace()
        .map(|f| f.parse().expect("number"))
        .collect();
    let doc: serde_json::Value = serde_json::from_slice(&stdout).expect("JSON output");
    let ms = |key: &str| doc["timings"][key].as_u64().unwrap_or(0);
    let wall = Duration::from_micros(fields[0] as u64);
    let measured = Measured {
        wall,
        cpu: Duration::from_micros((fields[1] + fields[2]) as u64),
        max_rss_kb: fields[3],
        database_ms: ms("database_ms"),
        agents_ms: ms("agents_ms"),
        apply_ms: ms("apply_ms"),
        concurrency: doc["settings"]["concurrency"].as_u64().unwrap_or(0),
    };
    (measured, doc)
}

/// The helper: `bench --measure-rusage REPORT PROGRAM ARGS…` runs PROGRAM with inherited stdio,
/// writes "wall_us user_us system_us max_rss_kb" of it to REPORT and exits with its code.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also reports its rusage
fn measure_rusage(mut args: impl Iterator<Item = std::ffi::OsString>) -> ! {
    let report = args.next().expect("report path");
    let program = args.next().expect("program");
    let started = Instant::now();
    let child = Command::new(program).args(args).spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which has not been reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let wall = started.elapsed();
    let micros = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    std::fs::write(
        report,
        format!(
            "{} {} {} {}",
            wall.as_micros(),
            micros(usage.ru_utime),
            micros(usage.ru_stime),
            usage.ru_maxrss
        ),
    )
    .expect("write report");
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    });
}

struct Report {
    agents: usize,
    runs: Vec<Measured>,
}

fn median<T: Copy + Ord>(mut values: Vec<T>) -> T {
    values.sort();
    values[values.len() / 2]
}

impl Report {
    fn header() -> String {
        "| A | R | H | L ms | shards | conc. | wall ms | CPU ms | peak RSS MB | db ms | agents ms | ideal ms | wall / ideal | µs / agent |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_owned()
    }

    fn wall(&self) -> Duration {
        median(self.runs.iter().map(|m| m.wall).collect())
    }

    fn row(&self, args: &Args) -> String {
        let wall = self.wall();
        let cpu = median(self.runs.iter().map(|m| m.cpu).collect());
        let rss = median(self.runs.iter().map(|m| m.max_rss_kb).collect());
        let db = median(self.runs.iter().map(|m| m.database_ms).collect());
        let agents = median(self.runs.iter().map(|m| m.agents_ms).collect());
        let concurrency = median(self.runs.iter().map(|m| m.concurrency).collect()).max(1);
        // The shards ask their agents side by side: each has about A / N of them.
        let per_shard = self.agents.div_ceil(args.shards.max(1) as usize);
        let rounds = per_shard.div_ceil(concurrency as usize) as u64;
        let ideal = rounds * args.latency_ms + db;
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {:.2} | {:.0} |",
            self.agents,
            args.running,
            args.history,
            args.latency_ms,
            args.shards,
            concurrency,
            wall.as_millis(),
            cpu.as_millis(),
            rss as f64 / 1024.0,
            db,
            agents,
            ideal,
            wall.as_millis() as f64 / ideal.max(1) as f64,
            wall.as_micros() as f64 / self.agents.max(1) as f64
        )
    }
}

/// An --apply of `apply_orphans` orphans (guarded writes, slot releases, queue-lock scripts) on a
/// fresh deployment per run.
fn apply(binary: &Path, args: &Args) {
    let running = args.running.max(args.apply_orphans * 2);
    let case = Args {
        running,
        orphans: args.apply_orphans as f64 / running as f64,
        timeouts: 0.0,
        ..args.clone()
    };
    let deployment = Deployment::build(&case);
    let pristine = deployment.db.dir.path().join("pristine.db");
    std::fs::copy(&deployment.db.path, &pristine).expect("keep a pristine copy");
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        deployment.reset_for_apply(&pristine);
        let (measured, doc) =
            run_measured(deployment.command(binary, &case, &["--apply", "--force"]));
        let applied = doc["summary"]["by_outcome"]["applied"]
            .as_u64()
            .unwrap_or(0) as usize;
        assert_eq!(
            applied, args.apply_orphans,
            "every orphan applied: {}",
            doc["summary"]
        );
        runs.push(measured);
    }
    let wall = median(runs.iter().map(|m| m.wall).collect());
    let apply_ms = median(runs.iter().map(|m| m.apply_ms).collect());
    let cpu = median(runs.iter().map(|m| m.cpu).collect());
    println!(
        "\napply of {} orphans (A={}, R={running}, H={}): wall {} ms, of which apply phase {} ms; CPU {} ms",
        args.apply_orphans,
        case.agents,
        case.history,
        wall.as_millis(),
        apply_ms,
        cpu.as_millis()
    );
}

fn sweep(binary: &Path, args: &Args) {
    println!(
        "\nGrowth with A (R = 10 × A, H = 10 000):\n\n{}",
        Report::header()
    );
    for agents in [10, 100, 1000, 5000, 10_000, 20_000] {
        let case = Args {
            agents,
            running: agents * 10,
            history: 10_000,
            ..args.clone()
        };
        println!("{}", measure_case(binary, &case));
    }
    println!(
        "\nHistory does not matter (A = {}, R = {}):\n\n{}",
        args.agents,
        args.running,
        Report::header()
    );
    for history in [10_000, args.history] {
        let case = Args {
            history,
            ..args.clone()
        };
        println!("{}", measure_case(binary, &case));
    }
    println!(
        "\nConcurrency (A = {}, R = {}, H = 10 000, L = {} ms):\n\n{}",
        args.agents,
        args.running,
        args.latency_ms,
        Report::header()
    );
    let deployment = Deployment::build(&Args {
        history: 10_000,
        ..args.clone()
    });
    for concurrency in [64, 128, 256, 512, 1024] {
        let case = Args {
            concurrency: Some(concurrency),
            history: 10_000,
            ..args.clone()
        };
        println!("{}", deployment.measure_scan(binary, &case).row(&case));
    }
    println!(
        "\nShards side by side on this machine (A = {}, R = {}, H = 10 000, default concurrency):\n\n{}",
        args.agents,
        args.running,
        Report::header()
    );
    for shards in [1, 2, 4] {
        let case = Args {
            shards,
            history: 10_000,
            ..args.clone()
        };
        println!("{}", deployment.measure_scan(binary, &case).row(&case));
    }
    fleet_capacity(&deployment);
}

/// One table row: a fresh deployment for `case`, measured.
fn measure_case(binary: &Path, case: &Args) -> String {
    Deployment::build(case).measure_scan(binary, case).row(case)
}

/// Shows that the fake fleet is not the bottleneck: requests per second it serves to a client
/// far more concurrent than the tool.
fn fleet_capacity(deployment: &Deployment) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The tool's reqwest has no default TLS provider; it installs ring, and so does this client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let requests = 4000;
    let concurrency = 512;
    let started = Instant::now();
    runtime.block_on(async {
        use futures_util::StreamExt;
        futures_util::stream::iter(0..requests)
            .map(|i| {
                let url = format!(
                    "http://{}/{}/api/executions/running",
                    deployment.fleet.addr,
                    agent_name(i % deployment.agents)
                );
                let client = client.clone();
                async move {
                    client
                        .get(url)
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false)
                }
            })
            .buffer_unordered(concurrency)
            .filter(|ok| std::future::ready(!ok))
            .count()
            .await
    });
    let elapsed = started.elapsed();
    println!(
        "\nfake fleet capacity: {requests} requests at concurrency {concurrency} in {} ms = {:.0} requests/s (with its latency)",
        elapsed.as_millis(),
        requests as f64 / elapsed.as_secs_f64()
    );
}
