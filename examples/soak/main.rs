//! The soak: a simulated live Trinity under chaos, and the real release binary run against it as
//! cron would (`scan --apply -o json`, every few seconds). The simulation holds the ground truth
//! of every execution at every moment and checks every effect of the tool against it; after a
//! quiet period it checks what the tool should have cleaned up. It exits 1 when an invariant is
//! broken, with the seed and the event log to replay it.
//!
//! `cargo run --release --example soak -- --seconds 120 --agents 20 --seed 7`
//!
//! `--break RULE` builds the tool with the test-only `soak-broken-rules` feature and one safety
//! rule broken (`inflight`, `pending`, `unguarded`, `unreachable`): the soak must then fail.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the soak reports on stdout and stderr

#[path = "../../tests/harness/mod.rs"]
mod harness;
mod server;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use world::{GRACE, HTTP_TIMEOUT, Invariant, Shared, TERMINATE_TIMEOUT, World};

#[derive(Parser, Debug)]
#[command(about = "Soak trinity-watchdog against a simulated live Trinity under chaos")]
struct Args {
    /// Seconds of chaos (a quiet period follows).
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Seconds of quiet at the end: no chaos, the tool runs on, then what it missed is counted.
    #[arg(long, default_value_t = 45)]
    quiet: u64,
    /// Agents in the simulated fleet.
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Seed of every random choice (the chaos schedule, the executions, the tool's batches).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// New executions per agent per second.
    #[arg(long, default_value_t = 0.15)]
    rate: f64,
    /// Build the tool with this safety rule broken (test-only feature): the soak must catch it.
    #[arg(long = "break", value_name = "RULE", value_parser = ["inflight", "pending", "unguarded", "unreachable"])]
    broken: Option<String>,
    /// Test this binary instead of building target/release/trinity-watchdog.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Write the event log here (default: trinity-soak-SEED.log in the temporary directory).
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    One,
    /// Two applies started at once.
    Two,
    /// The run is sent SIGTERM in the middle.
    Term,
    /// The run is SIGKILLed in the middle.
    Kill,
}

struct Run {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    hung: bool,
    sent: Option<i32>,
}

/// A run that takes longer than this is a hang.
const HANG: Duration = Duration::from_secs(40);

fn main() {
    let args = Args::parse();
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => build(args.broken.as_deref()),
    };
    println!(
        "soak: {} s of chaos + {} s quiet, {} agents, seed {}, binary {}{}",
        args.seconds,
        args.quiet,
        args.agents,
        args.seed,
        binary.display(),
        args.broken
            .as_deref()
            .map(|rule| format!(", safety rule broken: {rule}"))
            .unwrap_or_default()
    );

    let db = harness::TrinityDb::new();
    db.add_activities_table();
    let mut redis = harness::RedisServer::start().expect("redis-server must be on PATH");
    let conn = rusqlite::Connection::open(&db.path).expect("open the soak database");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    // Trinity does not enforce foreign keys (the activity's targets are not in this schema).
    conn.execute_batch("PRAGMA foreign_keys = OFF")
        .expect("foreign keys off");
    let world: Shared = Arc::new(Mutex::new(World::new(
        args.seed,
        args.agents,
        conn,
        redis.url(),
    )));
    let template = server::start(world.clone());
    let audit = db.dir.path().join("audit.jsonl");
    let log_path = args
        .log
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("trinity-soak-{}.log", args.seed)));

    let stop = Arc::new(AtomicBool::new(false));
    let backend = {
        let (world, stop, rate) = (world.clone(), stop.clone(), args.rate * args.agents as f64);
        std::thread::spawn(move || {
            let dt = Duration::from_millis(50);
            while !stop.load(Ordering::SeqCst) {
                world.lock().unwrap().tick(rate, dt);
                std::thread::sleep(dt);
            }
        })
    };
    let chaos = {
        let (world, stop) = (world.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                world.lock().unwrap().chaos_step();
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let redis_url = redis.url();
    let tool_args = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = ["scan", "--apply", "-o", "json", "-q"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(db.args());
        all.extend([
            "--redis-url".into(),
            redis_url.clone(),
            "--agent-url".into(),
            template.clone(),
            "--grace".into(),
            format!("{}s", GRACE.as_secs()),
            "--http-timeout".into(),
            format!("{}ms", HTTP_TIMEOUT.as_millis()),
            "--terminate-timeout".into(),
            format!("{}s", TERMINATE_TIMEOUT.as_secs()),
            "--audit-log".into(),
            audit.display().to_string(),
        ]);
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };

    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let chaos_end = Instant::now() + Duration::from_secs(args.seconds);
    let end = chaos_end + Duration::from_secs(args.quiet);
    let mut stats = Stats::default();
    let mut last_redis_restart = Instant::now();
    let mut audit_read = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(rng.random_range(800..2500)));
        let chaotic = Instant::now() < chaos_end;
        if !chaotic && world.lock().unwrap().chaos {
            let mut w = world.lock().unwrap();
            w.chaos = false;
            w.event("quiet", "chaos stops; the tool runs on".to_owned());
        }
        let batch = match (chaotic, rng.random_range(0..100)) {
            (false, _) => Batch::One,
            (true, 0..7) => Batch::Two,
            (true, 7..19) => Batch::Term,
            (true, 19..27) => Batch::Kill,
            _ => Batch::One,
        };
        let restart_redis = chaotic
            && last_redis_restart.elapsed() > Duration::from_secs(30)
            && rng.random_bool(0.08);
        if restart_redis {
            last_redis_restart = Instant::now();
            let mut w = world.lock().unwrap();
            w.redis_down();
            redis.stop_saving();
            w.event(
                "redis restart",
                "Redis down (its data saved) for one tool run".to_owned(),
            );
        }
        {
            let mut w = world.lock().unwrap();
            w.effects = world::Effects::default();
            for agent in w.agents.values_mut() {
                agent.gets = 0;
            }
            let detail = format!("{batch:?}");
            w.event("tool batch", detail);
        }
        let copies = if batch == Batch::Two { 2 } else { 1 };
        let signal = match batch {
            Batch::Term => Some(libc::SIGTERM),
            Batch::Kill => Some(libc::SIGKILL),
            _ => None,
        };
        // Most runs take tens of milliseconds, those with terminates up to a second: aim inside.
        let delay = Duration::from_millis(if rng.random_bool(0.6) {
            rng.random_range(2..40)
        } else {
            rng.random_range(40..1200)
        });
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..copies)
                .map(|_| {
                    let argv = tool_args(&[]);
                    let binary = binary.clone();
                    let broken = args.broken.clone();
                    scope.spawn(move || run_tool(&binary, &argv, broken.as_deref(), signal, delay))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("run"))
                .collect()
        });
        if restart_redis {
            assert!(redis.start_again(), "redis-server did not come back");
            world.lock().unwrap().redis_up();
        }
        let mut w = world.lock().unwrap();
        w.observe_rows(None);
        w.observe_slots();
        let trail = std::fs::read_to_string(&audit).unwrap_or_default();
        let new_lines = trail.get(audit_read..).unwrap_or("").to_owned();
        audit_read = trail.len();
        judge(&mut w, &mut stats, batch, restart_redis, &runs, &new_lines);
    }
    {
        let mut w = world.lock().unwrap();
        w.starting = false;
    }
    stop.store(true, Ordering::SeqCst);
    backend.join().expect("backend");
    chaos.join().expect("chaos");
    let mut w = world.lock().unwrap();
    w.observe_rows(None);
    w.observe_slots();
    w.check_missed();
    if w.violations.iter().any(|(i, _)| *i == Invariant::Missed) {
        // What the tool says of the world it left: a dry run, into the event log.
        let mut argv = tool_args(&[]);
        argv.retain(|a| a != "--apply");
        let run = run_tool(&binary, &argv, args.broken.as_deref(), None, Duration::ZERO);
        let json: Value = serde_json::from_str(&run.stdout).unwrap_or_default();
        for item in json["items"].as_array().into_iter().flatten() {
            if item["verdict"] != "healthy" {
                let line = format!(
                    "{} {} {}: {}",
                    item["execution_id"], item["agent"], item["verdict"], item["reason"]
                );
                w.event("final dry run", line);
            }
        }
        for agent in json["agents"].as_array().into_iter().flatten() {
            if agent["reachable"] != true {
                w.event(
                    "final dry run",
                    format!("{} unreachable: {}", agent["name"], agent["error"]),
                );
            }
        }
        let refusal = json["refused"].to_string();
        w.event(
            "final dry run",
            format!(
                "exit {:?}; refused: {refusal}; stderr: {}",
                run.code,
                run.stderr.trim()
            ),
        );
    }
    std::fs::write(&log_path, w.log.join("\n") + "\n").expect("write the event log");
    let broken = report(&w, &stats, &args, &log_path);
    if broken {
        std::process::exit(1);
    }
}

/// Builds the release binary; with a rule to break, the test-only feature build, in its own
/// target directory so that target/release/trinity-watchdog stays the real one.
fn build(broken: Option<&str>) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match broken {
        Some(_) => root.join("target/soak-broken-rules"),
        None => root.join("target"),
    };
    let mut command = Command::new(cargo);
    command.args(["build", "--release", "--quiet", "--bin", "trinity-watchdog"]);
    command.arg("--target-dir").arg(&target);
    if broken.is_some() {
        command.args(["--features", "soak-broken-rules"]);
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    target.join("release/trinity-watchdog")
}

fn run_tool(
    binary: &Path,
    argv: &[String],
    broken: Option<&str>,
    signal: Option<i32>,
    delay: Duration,
) -> Run {
    let started = Instant::now();
    let mut command = Command::new(binary);
    command
        .args(argv)
        .env_remove("REDIS_URL")
        .env_remove("TRINITY_DB_PATH")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(rule) = broken {
        command.env("TRINITY_WATCHDOG_BREAK", rule);
    }
    let mut child = command.spawn().expect("start trinity-watchdog");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let mut sent = None;
    let mut hung = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if let Some(sig) = signal
            && sent.is_none()
            && started.elapsed() >= delay
        {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, sig) };
            sent = Some(sig);
        }
        if started.elapsed() > HANG {
            hung = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        signal: status.signal(),
        stdout: reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed: started.elapsed(),
        hung,
        sent,
    }
}

#[derive(Default)]
struct Stats {
    runs: usize,
    by_exit: BTreeMap<String, usize>,
    times: Vec<Duration>,
    applied: BTreeMap<String, usize>,
}

/// The ids of a run's items that match.
fn ids(json: &Value, keep: impl Fn(&str, &str, &str) -> bool) -> BTreeSet<String> {
    json["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| {
            keep(
                item["action"].as_str().unwrap_or(""),
                item["outcome"].as_str().unwrap_or(""),
                item["error"].as_str().unwrap_or(""),
            )
        })
        .filter_map(|item| item["execution_id"].as_str().map(str::to_owned))
        .collect()
}

/// Checks each run's exit code against its JSON and the batch's effects against the JSON.
fn judge(
    w: &mut World,
    stats: &mut Stats,
    batch: Batch,
    redis_down: bool,
    runs: &[Run],
    audit: &str,
) {
    let effects = std::mem::take(&mut w.effects);
    let mut audited = BTreeSet::new();
    for line in audit.lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(entry) if entry["event"] == "action" => {
                audited.insert(format!("{} {}", entry["execution_id"], entry["outcome"]));
            }
            Ok(_) => {}
            Err(_) => w.violation(
                Invariant::UnreportedOrInvented,
                format!("audit line is not whole JSON: {line:?}"),
            ),
        }
    }
    let mut jsons = Vec::new();
    let mut unattributable = false;
    for run in runs {
        stats.runs += 1;
        stats.times.push(run.elapsed);
        let exit = match (run.code, run.signal) {
            (Some(code), _) => format!("exit {code}"),
            (_, Some(sig)) => format!("signal {sig}"),
            _ => "?".to_owned(),
        };
        *stats.by_exit.entry(exit.clone()).or_default() += 1;
        let json: Option<Value> = serde_json::from_str(&run.stdout).ok();
        let outcomes: Vec<String> = json
            .as_ref()
            .and_then(|j| j["items"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|item| item["outcome"].as_str().map(str::to_owned))
            .collect();
        let failed = outcomes.iter().any(|o| o == "failed");
        let stderr_line = run.stderr.lines().last().unwrap_or("").to_owned();
        let bad = |why: &str| {
            Some(format!(
                "{exit} after {:?}: {why}; stderr: {stderr_line}",
                run.elapsed
            ))
        };
        let verdict = if run.hung {
            unattributable = true;
            bad("hung")
        } else {
            match (run.code, run.signal) {
                (_, Some(libc::SIGKILL)) if run.sent == Some(libc::SIGKILL) => {
                    unattributable = true;
                    None
                }
                // Signalled before the tool installed its handler: nothing had begun.
                (_, Some(libc::SIGTERM)) if run.sent == Some(libc::SIGTERM) => None,
                (_, Some(_)) => bad("crashed"),
                (Some(1), _) if redis_down => None,
                (Some(_), _) if redis_down => bad("Redis was down, yet no fatal error (exit 1)"),
                (Some(0), _) if json.is_none() => bad("no JSON"),
                (Some(0), _) if failed => bad("exit 0 with a failed outcome"),
                (Some(0), _) => None,
                (Some(3), _) if !failed => bad("exit 3 without a failed outcome"),
                (Some(3), _) => None,
                (Some(5), _) if json.as_ref().is_none_or(|j| j["refused"].is_null()) => {
                    bad("exit 5 without a refusal in the JSON")
                }
                (Some(5), _) if outcomes.iter().any(|o| o == "applied") => {
                    bad("refused, yet something was applied")
                }
                (Some(5), _) => None,
                (Some(6), _) if batch == Batch::Two => None,
                (Some(6), _) => bad("busy, with no other apply running"),
                (Some(130), _) if run.sent != Some(libc::SIGTERM) => {
                    bad("interrupted, but no signal was sent")
                }
                (Some(130), _) if json.as_ref().is_none_or(|j| j["interrupted"] != true) => {
                    bad("exit 130 without an interrupted plan on stdout")
                }
                (Some(130), _) => None,
                (Some(1), _) => bad("fatal error"),
                (Some(_), _) => bad("unexpected exit code"),
                _ => bad("no exit status"),
            }
        };
        let failures: Vec<String> = json
            .as_ref()
            .and_then(|j| j["items"].as_array())
            .into_iter()
            .flatten()
            .filter(|item| item["outcome"] == "failed" || item["outcome"] == "skipped")
            .map(|item| {
                format!(
                    "{} {} {}",
                    item["execution_id"], item["outcome"], item["error"]
                )
            })
            .collect();
        w.event(
            "tool run",
            format!(
                "{exit} after {:?}; failed or skipped: {failures:?}",
                run.elapsed
            ),
        );
        if let Some(detail) = verdict {
            w.violation(Invariant::BadRun, detail);
        }
        if let Some(json) = json {
            for item in json["items"].as_array().into_iter().flatten() {
                let agent = item["agent"].as_str().unwrap_or("");
                let answered = w.agents.get(agent).map_or(0, |a| a.gets);
                if runs.len() == 1
                    && item["verdict"] == "orphaned"
                    && item["outcome"] == "applied"
                    && answered < 2
                {
                    let id = item["execution_id"].as_str().unwrap_or("?");
                    w.violation(
                        Invariant::FalseKill,
                        format!("{id} on {agent}: failed as orphaned, but its agent answered {answered} of the plan's and the re-check's requests (unknown is never dead)"),
                    );
                }
                if item["outcome"] == "applied" {
                    let verdict = item["verdict"].as_str().unwrap_or("?").to_owned();
                    *stats.applied.entry(verdict).or_default() += 1;
                }
            }
            jsons.push(json);
        }
    }
    if unattributable {
        let n = effects.rows.len() + effects.slots.len() + effects.terminates.len();
        if n > 0 {
            w.event(
                "effects of a killed run",
                format!("{n} (rows, slots, terminates) not reported by design"),
            );
        }
        return;
    }
    let union = |pick: &dyn Fn(&Value) -> BTreeSet<String>| -> BTreeSet<String> {
        jsons.iter().flat_map(pick).collect()
    };
    let fails = |a: &str| a == "fail" || a == "terminate_and_fail";
    let terminates = |a: &str| a == "terminate" || a == "terminate_and_fail";
    let reported_rows = union(&|j| {
        ids(j, |a, o, e| {
            fails(a) && (o == "applied" || (o == "failed" && e.starts_with("row marked failed")))
        })
    });
    let reported_releases = union(&|j| {
        ids(j, |a, o, _| {
            o == "applied" && (a == "release_slot" || fails(a))
        })
    });
    let claimed_slot_releases = union(&|j| ids(j, |a, o, _| a == "release_slot" && o == "applied"));
    let attempted_terminates = union(&|j| ids(j, |a, o, _| terminates(a) && !o.is_empty()));
    let claimed_terminates = union(&|j| ids(j, |a, o, _| terminates(a) && o == "applied"));
    let mut wrong = Vec::new();
    for id in effects.rows.difference(&reported_rows) {
        wrong.push(format!("{id}: row failed by the tool, not reported"));
    }
    for id in reported_rows.difference(&effects.rows) {
        wrong.push(format!("{id}: reported failed, row not changed"));
    }
    for id in effects.slots.difference(&reported_releases) {
        wrong.push(format!("{id}: slot released, not reported"));
    }
    for id in claimed_slot_releases.difference(&effects.slots) {
        wrong.push(format!("{id}: reported a slot released that was not"));
    }
    for id in effects.terminates.difference(&attempted_terminates) {
        wrong.push(format!("{id}: terminate sent, not reported"));
    }
    for id in claimed_terminates.difference(&effects.terminates) {
        wrong.push(format!(
            "{id}: reported terminated, no terminate reached its agent"
        ));
    }
    let outcomes: BTreeSet<String> = jsons
        .iter()
        .flat_map(|j| j["items"].as_array().cloned().unwrap_or_default())
        .filter(|item| !item["outcome"].is_null())
        .map(|item| format!("{} {}", item["execution_id"], item["outcome"]))
        .collect();
    for line in outcomes.difference(&audited) {
        wrong.push(format!("{line}: in the JSON, no audit line"));
    }
    for line in audited.difference(&outcomes) {
        wrong.push(format!("{line}: an audit line, not in the JSON"));
    }
    for detail in wrong {
        w.violation(Invariant::UnreportedOrInvented, detail);
    }
}

fn report(w: &World, stats: &Stats, args: &Args, log_path: &Path) -> bool {
    println!("\nwhat happened:");
    for (what, n) in &w.counts {
        println!("  {n:6}  {what}");
    }
    println!("\nthe tool: {} runs", stats.runs);
    for (exit, n) in &stats.by_exit {
        println!("  {n:6}  {exit}");
    }
    for (verdict, n) in &stats.applied {
        println!("  {n:6}  applied: {verdict}");
    }
    let mut times = stats.times.clone();
    times.sort();
    if !times.is_empty() {
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "  run time: median {:?}, p95 {:?}, max {:?}",
            at(0.5),
            at(0.95),
            at(1.0)
        );
    }
    println!("\ninvariants:");
    let mut broken = false;
    for invariant in Invariant::ALL {
        let n = w.violations.iter().filter(|(i, _)| *i == invariant).count();
        broken |= n > 0;
        println!("  {n:6}  {}", invariant.label());
    }
    if broken {
        println!("\nviolations:");
        for (invariant, detail) in w.violations.iter().take(40) {
            println!("  {}: {detail}", invariant.label());
        }
        println!(
            "\nBROKEN. Replay with: cargo run --release --example soak -- --seconds {} --quiet {} --agents {} --seed {}{}",
            args.seconds,
            args.quiet,
            args.agents,
            args.seed,
            args.broken
                .as_deref()
                .map(|r| format!(" --break {r}"))
                .unwrap_or_default()
        );
    } else {
        println!("\nevery invariant holds");
    }
    println!("event log: {}", log_path.display());
    broken
}
