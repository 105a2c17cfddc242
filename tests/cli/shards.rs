//! `--shard K/N` and the descriptor-derived default concurrency, end to end.

use std::os::unix::process::CommandExt;

use super::*;

/// A fleet of 12 agents with every kind of item: orphans, healthy and timed-out work, zombies,
/// untracked processes and leaked slots, spread so that every shard of 2, 3 and 7 holds some.
fn mixed_world() -> World {
    let w = World::new();
    let mut r = w.redis();
    for a in 0..12 {
        let agent = format!("agent-{a:02}");
        w.db.add_agent(&agent, Some(600));
        let mut runs = vec![format!("untracked-{a}")];
        for e in 0..4 {
            let id = format!("{agent}-run-{e}");
            // Ages far from every threshold, so runs a moment apart agree.
            let age = [300, 300, 7200, 600][e];
            w.db.add_execution(&id, &agent, "running", &ago(age));
            add_slot(&mut r, &agent, &id, unix_ago(age), Some(600));
            if e != 3 {
                runs.push(id);
            }
        }
        let zombie = format!("{agent}-zombie");
        w.db.add_execution(&zombie, &agent, "cancelled", &ago(900));
        runs.push(zombie);
        add_slot(
            &mut r,
            &agent,
            &format!("{agent}-leak"),
            unix_ago(7200),
            None,
        );
        let runs: Vec<&str> = runs.iter().map(String::as_str).collect();
        w.fleet.set(&agent, FakeAgent::running(&runs));
    }
    w
}

/// `(execution_id, agent, verdict, action)` of every item, sorted.
fn plan_of(out: &Out) -> Vec<(String, String, String, String)> {
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut items: Vec<_> = out.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            let s = |key: &str| item[key].as_str().unwrap_or("null").to_owned();
            (s("execution_id"), s("agent"), s("verdict"), s("action"))
        })
        .collect();
    items.sort();
    items
}

#[test]
fn the_shards_plans_together_are_the_whole_plan_and_never_overlap() {
    let w = mixed_world();
    let whole = plan_of(&w.run(&["scan", "-o", "json"]));
    assert_eq!(whole.len(), 12 * 7, "every kind of item, on every agent");
    for count in [1, 2, 3, 7] {
        let mut union = Vec::new();
        for index in 0..count {
            let shard = format!("{index}/{count}");
            let part = plan_of(&w.run(&["scan", "-o", "json", "--shard", &shard]));
            assert!(
                count == 1 || part.len() < whole.len(),
                "shard {shard} planned everything"
            );
            union.extend(part);
        }
        union.sort();
        assert_eq!(union, whole, "the {count} shards' plans");
    }
}

#[test]
fn each_shard_has_its_own_apply_lock() {
    let w = World::without_redis();
    for a in 0..8 {
        let agent = format!("agent-{a}");
        w.db.add_agent(&agent, Some(600));
        w.db.add_execution(&format!("o-{a}"), &agent, "running", &ago(600));
        w.fleet.set(&agent, FakeAgent::running(&[]));
    }
    let lock_path = format!("{}.watchdog-lock-shard-0-of-2", w.db.path());
    let held = crate::reliability::hold_lock_file(&lock_path);
    let busy = w.run(&["scan", "--apply", "--shard", "0/2"]);
    assert_eq!(busy.code, 6, "{}", busy.stderr);
    assert!(busy.stderr.contains(&lock_path), "{}", busy.stderr);
    let other = w.run(&["scan", "--apply", "--shard", "1/2", "-o", "json"]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    let failed: Vec<_> = (0..8)
        .filter(|a| w.db.row(&format!("o-{a}")).status == "failed")
        .collect();
    assert!(
        !failed.is_empty() && failed.len() < 8,
        "shard 1/2 failed its own orphans only: {failed:?}"
    );
    drop(held);
    assert_eq!(w.run(&["scan", "--apply", "--shard", "0/2"]).code, 0);
    assert!((0..8).all(|a| w.db.row(&format!("o-{a}")).status == "failed"));
}

#[test]
fn a_shard_that_does_not_exist_or_names_its_ids_is_a_usage_error() {
    let w = World::without_redis();
    for (args, says) in [
        (vec!["scan", "--shard", "2/2"], "does not exist"),
        (vec!["scan", "--shard", "1"], "is not K/N"),
        (vec!["kill", "x-1", "--shard", "0/2"], "kill IDs"),
    ] {
        let out = w.run(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
}

/// The concurrency a dry run reports under a descriptor limit of `soft` / `hard`.
fn concurrency_under(w: &World, soft: u64, hard: u64, extra: &[&str]) -> u64 {
    let out = scan_under(w, &w.fleet.template(), soft, hard, extra);
    out.json()["settings"]["concurrency"]
        .as_u64()
        .expect("settings.concurrency")
}

/// A dry run (JSON) under a descriptor limit of `soft` / `hard`.
fn scan_under(w: &World, template: &str, soft: u64, hard: u64, extra: &[&str]) -> Out {
    let mut command = command();
    command
        .args(["scan", "-o", "json", "--no-redis", "--agent-url", template])
        .args(w.db.args())
        .args(extra);
    // SAFETY: setrlimit is async-signal-safe, and the child only execs after it.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out: Out = command.output().expect("run").into();
    assert_eq!(out.code, 0, "{}", out.stderr);
    out
}

#[test]
fn the_default_concurrency_comes_from_the_descriptor_limit_raised_to_the_hard_one() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(600));
    w.fleet.set("alpha", FakeAgent::running(&[]));
    // A backend host's 1024, soft and hard: half of what is left after 64.
    assert_eq!(concurrency_under(&w, 1024, 1024, &[]), 480);
    // A soft 256 under a hard 4096 is raised first, then capped at 512.
    assert_eq!(concurrency_under(&w, 256, 4096, &[]), 512);
    assert_eq!(
        concurrency_under(&w, 1024, 1024, &["--concurrency", "7"]),
        7
    );
}

#[test]
fn a_fleet_of_hosts_larger_than_the_descriptor_limit_is_asked_whole() {
    // Every agent a host of its own, as with the default `http://agent-{agent}:8000`: a
    // connection kept alive per agent would hold its descriptor to the end of the run, and
    // under a limit of 160 the agents after the first hundred or so could not be asked.
    let w = World {
        db: TrinityDb::new(),
        fleet: Fleet::start_on_every_address(),
        redis: None,
    };
    let names: Vec<String> = (1..=250).map(|n| n.to_string()).collect();
    for name in &names {
        w.db.add_agent(name, Some(600));
        w.fleet.set(name, FakeAgent::running(&[]));
    }
    let out = scan_under(&w, &w.fleet.host_template(), 160, 160, &[]);
    let doc = out.json();
    assert_eq!(doc["settings"]["concurrency"], 48);
    assert_eq!(doc["agents"].as_array().map(Vec::len), Some(250));
    let unreachable: Vec<&serde_json::Value> = doc["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|agent| agent["reachable"] != true)
        .collect();
    assert!(
        unreachable.is_empty(),
        "{} agents unreachable, e.g. {}",
        unreachable.len(),
        unreachable[0]
    );
}

#[test]
fn the_kubernetes_example_runs_one_shard_per_index_and_never_overlaps_runs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/trinity-watchdog-cronjob.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    let value = |key: &str| {
        yaml.lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("{key} is set"))
            .to_owned()
    };
    assert_eq!(value("completionMode"), "Indexed");
    assert_eq!(value("concurrencyPolicy"), "Forbid");
    let shard = yaml
        .lines()
        .find_map(|line| line.trim().strip_prefix("- $(JOB_COMPLETION_INDEX)/"))
        .expect("--shard $(JOB_COMPLETION_INDEX)/N");
    assert_eq!(value("completions"), shard, "one pod per shard");
    assert_eq!(value("parallelism"), shard, "the shards run side by side");
    assert!(yaml.contains("- --shard\n") && yaml.contains("- --apply\n"));
    assert!(yaml.contains("batch.kubernetes.io/job-completion-index"));
}
