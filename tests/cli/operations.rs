//! Fitting the places operators run it: metrics for cron, the man page, the original error.

use super::*;

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn metrics_file_reports_the_run_and_keeps_the_last_success_when_a_run_fails() {
    let w = World::without_redis();
    w.db.add_execution("o-1", "alpha", "running", &ago(600));
    w.db.add_execution("h-1", "alpha", "running", &ago(10));
    w.fleet.set("alpha", FakeAgent::running(&["h-1"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trinity_watchdog.prom");
    let metrics = path.to_str().unwrap();

    assert_eq!(
        w.run(&["scan", "--apply", "--metrics-file", metrics]).code,
        0
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let labels = r#"{command="scan",mode="apply""#;
    assert_eq!(
        metric(
            &text,
            &format!(r#"trinity_watchdog_items{labels},verdict="orphaned"}}"#)
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"trinity_watchdog_items{labels},verdict="zombie"}}"#)
        ),
        Some(0.0),
        "absent verdicts are 0, so alerts see them"
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"trinity_watchdog_actions{labels},outcome="applied"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("trinity_watchdog_unreachable_agents{labels}}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, &format!("trinity_watchdog_exit_code{labels}}}")),
        Some(0.0)
    );
    let success =
        metric(&text, "trinity_watchdog_last_success_timestamp_seconds").expect("last success");
    assert!((success - chrono::Utc::now().timestamp() as f64).abs() < 60.0);
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() && series.ends_with('}'),
            "not Prometheus text format: {line}"
        );
    }

    // A failing run (the database is gone) updates the file but keeps the last success.
    std::fs::remove_file(&w.db.path).unwrap();
    assert_eq!(w.run(&["scan", "--metrics-file", metrics]).code, 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        metric(
            &text,
            r#"trinity_watchdog_exit_code{command="scan",mode="dry_run"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "trinity_watchdog_last_success_timestamp_seconds"),
        Some(success)
    );
    assert!(
        metric(&text, "trinity_watchdog_items").is_none(),
        "no plan, no item counts"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "the write is atomic: no temporary file is left behind: {files:?}"
    );
}

#[test]
fn committed_man_page_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/man/trinity-watchdog.1");
    let generated = trinity_watchdog::man_page();
    assert!(
        generated.contains(".TH trinity-watchdog") && generated.contains("\\-\\-max\\-actions"),
        "{generated}"
    );
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is stale: run UPDATE_GENERATED=1 cargo test committed_"
    );
}

#[test]
fn the_agents_original_error_is_written_before_the_cleanup_reason() {
    let w = World::without_redis();
    w.db.add_agent("alpha", Some(60));
    w.db.add_execution("crashed", "alpha", "running", &ago(600));
    w.db.add_execution("silent", "alpha", "running", &ago(600));
    w.db.add_execution("verbose", "alpha", "running", &ago(600));
    w.db.add_execution("slow", "alpha", "running", &ago(600));
    let mut agent = FakeAgent::running(&["slow"]);
    agent.last_errors.insert(
        "crashed".into(),
        (
            "ProcessError".into(),
            "Claude exited with code 137 (out of memory).".into(),
        ),
    );
    agent
        .last_errors
        .insert("verbose".into(), ("TraceError".into(), "x".repeat(5000)));
    agent.last_errors.insert(
        "slow".into(),
        ("Timeout".into(), "Timeout: tool call hung".into()),
    );
    w.fleet.set("alpha", agent);
    let out = w.apply_json("scan");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let orphan_reason = "Execution not tracked by agent 'alpha' (not running, not pending, not recently completed) — recovered by watchdog";
    assert_eq!(
        w.db.row("crashed").error.unwrap(),
        format!(
            "ProcessError: Claude exited with code 137 (out of memory). Cleanup: {orphan_reason}"
        )
    );
    assert_eq!(
        w.db.row("silent").error.unwrap(),
        orphan_reason,
        "404: just our reason"
    );
    let verbose = w.db.row("verbose").error.unwrap();
    assert_eq!(verbose.chars().count(), 2000);
    assert!(verbose.ends_with(&format!("…. Cleanup: {orphan_reason}")));
    assert_eq!(
        w.db.row("slow").error.unwrap(),
        "Timeout: tool call hung. Cleanup: Execution auto-terminated after 10 minutes by watchdog (exceeded timeout of 60s)"
    );
    let asked: Vec<_> = w
        .fleet
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET last-error")
        .filter_map(|c| c.execution)
        .collect();
    assert_eq!(
        asked.len(),
        4,
        "asked once per execution it failed: {asked:?}"
    );
}
