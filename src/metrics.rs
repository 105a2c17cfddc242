//! `--metrics-file`: the run's figures in the Prometheus text format, for node_exporter's textfile
//! collector. Written atomically (temp file + rename), so the collector never reads half a file.

use std::fmt::Write as _;
use std::path::Path;

use color_eyre::eyre::Result;
use strum::VariantArray;

use crate::exit_code::ExitCode;
use crate::plan::{FindingKind, Outcome, Plan, Verdict};
const LAST_SUCCESS: &str = "trinity_watchdog_last_success_timestamp_seconds";

/// What a run reports; `plan` is `None` when the run failed before it had one.
pub(crate) struct RunFigures<'a> {
    pub command: &'a str,
    pub apply: bool,
    pub plan: Option<&'a Plan>,
    pub exit_code: ExitCode,
    pub duration_seconds: f64,
    pub finished_at: chrono::DateTime<chrono::Utc>,
}

/// Writes the metrics file. The last-success time is carried over from the previous file when
/// this run did not succeed, so an alert on its age fires when runs keep failing.
pub(crate) fn write(path: &Path, run: &RunFigures<'_>) -> Result<()> {
    let now = run.finished_at.timestamp_millis() as f64 / 1000.0;
    let succeeded = matches!(run.exit_code, ExitCode::Ok | ExitCode::NeedsAttention);
    let last_success = if succeeded {
        Some(now)
    } else {
        previous_last_success(path)
    };
    let text = render(run, now, last_success);
    crate::atomic_file::write_atomically(path, text.as_bytes())
}

fn render(run: &RunFigures<'_>, now: f64, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let labels = format!(
        "command=\"{}\",mode=\"{}\"",
        run.command,
        if run.apply { "apply" } else { "dry_run" }
    );
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (extra, value) in samples {
            let sep = if extra.is_empty() { "" } else { "," };
            let _ = writeln!(out, "{name}{{{labels}{sep}{extra}}} {value}");
        }
    };
    if let Some(plan) = run.plan {
        let verdicts = plan.by_verdict();
        let samples: Vec<_> = Verdict::VARIANTS
            .iter()
            .map(|v| {
                (
                    format!("verdict=\"{}\"", v.as_str()),
                    *verdicts.get(v.as_str()).unwrap_or(&0) as f64,
                )
            })
            .collect();
        metric(
            "trinity_watchdog_items",
            "gauge",
            "Plan items of the last run, by verdict.",
            &samples,
        );
        let outcomes = plan.by_outcome();
        let samples: Vec<_> = Outcome::VARIANTS
            .iter()
            .map(|o| {
                (
                    format!("outcome=\"{}\"", o.as_str()),
                    *outcomes.get(o.as_str()).unwrap_or(&0) as f64,
                )
            })
            .collect();
        metric(
            "trinity_watchdog_actions",
            "gauge",
            "Actions of the last run, by outcome (all zero in a dry run).",
            &samples,
        );
        let findings = plan.by_finding();
        let samples: Vec<_> = FindingKind::VARIANTS
            .iter()
            .map(|f| {
                (
                    format!("finding=\"{}\"", f.as_str()),
                    *findings.get(f.as_str()).unwrap_or(&0) as f64,
                )
            })
            .collect();
        metric(
            "trinity_watchdog_capacity_findings",
            "gauge",
            "Capacity findings of the last run (report-only), by kind.",
            &samples,
        );
        let (published, failed) = plan.events_published();
        metric(
            "trinity_watchdog_events",
            "gauge",
            "Recovery events of the last run, by result.",
            &[
                ("result=\"published\"".to_owned(), published as f64),
                ("result=\"failed\"".to_owned(), failed as f64),
            ],
        );
        metric(
            "trinity_watchdog_activities_closed",
            "gauge",
            "Paired activities the last run's won writes closed.",
            &[(String::new(), plan.activities_closed() as f64)],
        );
        metric(
            "trinity_watchdog_planned_actions",
            "gauge",
            "Actions the last run's plan asked for.",
            &[(String::new(), plan.action_count() as f64)],
        );
        metric(
            "trinity_watchdog_agents",
            "gauge",
            "Agents asked by the last run.",
            &[(String::new(), plan.agents.len() as f64)],
        );
        metric(
            "trinity_watchdog_unreachable_agents",
            "gauge",
            "Agents that gave no valid answer in the last run.",
            &[(String::new(), plan.unreachable_agents() as f64)],
        );
    }
    metric(
        "trinity_watchdog_exit_code",
        "gauge",
        "Exit code of the last run (see trinity-watchdog --help).",
        &[(String::new(), f64::from(run.exit_code.code()))],
    );
    metric(
        "trinity_watchdog_run_duration_seconds",
        "gauge",
        "How long the last run took.",
        &[(String::new(), run.duration_seconds)],
    );
    metric(
        "trinity_watchdog_last_run_timestamp_seconds",
        "gauge",
        "When the last run ended (unix time).",
        &[(String::new(), now)],
    );
    if let Some(last_success) = last_success {
        metric(
            LAST_SUCCESS,
            "gauge",
            "When a run last ended with exit code 0 or 4 (unix time).",
            &[(String::new(), last_success)],
        );
    }
    out
}

/// The last-success time in an earlier metrics file, if there is one.
fn previous_last_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|line| line.starts_with(LAST_SUCCESS) && !line.starts_with('#'))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
