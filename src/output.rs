//! Renderers: the table for people and the JSON document (version 1) for programs, both from the
//! same `Plan` value.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use serde::Serialize;

use crate::gather::Timings;
use crate::plan::{AgentSummary, Item, Outcome, Plan, Verdict};
use crate::reconcile::Report;
use crate::timestamp::{self, human_duration};

/// The version of the JSON document; bumped only when a field is renamed or removed.
pub(crate) const JSON_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Json,
}

/// How to show a run, and the settings the JSON document repeats.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub format: OutputFormat,
    /// The table shows healthy executions too.
    pub show_all: bool,
    pub color: bool,
    pub command: &'static str,
    pub apply: bool,
    pub grace: std::time::Duration,
    pub default_timeout: std::time::Duration,
    pub concurrency: usize,
    /// stdout is a terminal: JSON is indented.
    pub pretty_json: bool,
}

/// Writes the result in the chosen format. JSON is streamed from the plan, never built whole in
/// memory first (10 000 items stay cheap).
pub(crate) fn write(
    out: &mut dyn std::io::Write,
    report: &Report,
    view: &View,
) -> std::io::Result<()> {
    match view.format {
        OutputFormat::Json => {
            let document = Document::new(&report.plan, view, report.now, &report.timings);
            // Indented for a person at a terminal; one line for a program (a 100 000-item
            // document is 48 MB indented).
            if view.pretty_json {
                serde_json::to_writer_pretty(&mut *out, &document)?;
            } else {
                serde_json::to_writer(&mut *out, &document)?;
            }
            out.write_all(b"\n")
        }
        OutputFormat::Table => out.write_all(table(&report.plan, view).as_bytes()),
    }
}

/// The JSON document, version 1 (README "JSON output").
#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    command: &'static str,
    mode: &'static str,
    generated_at: String,
    settings: DocumentSettings,
    refused: &'a Option<String>,
    interrupted: bool,
    agents: &'a [AgentSummary],
    items: &'a [Item],
    summary: Summary<'a>,
    timings: &'a Timings,
}

#[derive(Serialize)]
struct DocumentSettings {
    grace_seconds: u64,
    default_timeout_seconds: u64,
    concurrency: usize,
    redis: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    items: usize,
    actions: usize,
    unreachable_agents: usize,
    by_verdict: BTreeMap<&'static str, usize>,
    by_outcome: BTreeMap<&'static str, usize>,
    /// Capacity findings of every agent, by kind.
    by_finding: BTreeMap<&'static str, usize>,
    /// Paired activities the apply's won writes closed.
    activities_closed: u64,
    /// What became of the recovery events (`null` in a dry run).
    events: Option<&'a str>,
    events_published: usize,
    events_failed: usize,
}

impl<'a> Document<'a> {
    fn new(plan: &'a Plan, view: &View, now: DateTime<Utc>, timings: &'a Timings) -> Self {
        Document {
            version: JSON_VERSION,
            command: view.command,
            mode: if view.apply { "apply" } else { "dry_run" },
            generated_at: timestamp::format(now),
            settings: DocumentSettings {
                grace_seconds: view.grace.as_secs(),
                default_timeout_seconds: view.default_timeout.as_secs(),
                concurrency: view.concurrency,
                redis: plan.capacity_checked,
            },
            refused: &plan.refused,
            interrupted: plan.interrupted,
            agents: &plan.agents,
            items: &plan.items,
            summary: Summary {
                items: plan.items.len(),
                actions: plan.action_count(),
                unreachable_agents: plan.unreachable_agents(),
                by_verdict: plan.by_verdict(),
                by_outcome: plan.by_outcome(),
                by_finding: plan.by_finding(),
                activities_closed: plan.activities_closed(),
                events: plan.events.as_deref(),
                events_published: plan.events_published().0,
                events_failed: plan.events_published().1,
            },
            timings,
        }
    }
}

fn table(plan: &Plan, view: &View) -> String {
    let shown: Vec<_> = plan
        .items
        .iter()
        .filter(|item| view.show_all || item.verdict != Verdict::Healthy)
        .collect();
    let mut out = String::new();
    if !shown.is_empty() {
        let mut table = Table::new();
        table
            .load_style(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic);
        if view.color {
            table.enforce_styling();
        } else {
            table.force_no_tty();
        }
        let mut header = vec![
            "EXECUTION",
            "AGENT",
            "VERDICT",
            "ACTION",
            "AGE",
            "TIMEOUT",
            "REASON",
        ];
        if view.apply {
            header.push("OUTCOME");
        }
        table.set_header(header);
        for item in shown {
            let mut row = vec![
                Cell::new(&item.execution_id),
                Cell::new(item.agent.as_deref().unwrap_or("-")),
                paint(
                    Cell::new(item.verdict.as_str()),
                    verdict_color(item.verdict),
                    view.color,
                ),
                Cell::new(item.action.as_str()),
                Cell::new(item.age_seconds.map_or("-".to_owned(), human_duration)),
                Cell::new(
                    item.timeout_seconds
                        .map_or("-".to_owned(), |t| human_duration(t as i64)),
                ),
                Cell::new(&item.reason),
            ];
            if view.apply {
                let outcome = match (item.outcome, &item.error) {
                    (Some(outcome), Some(error)) => format!("{}: {error}", outcome.as_str()),
                    (Some(outcome), None) => outcome.as_str().to_owned(),
                    (None, _) => "-".to_owned(),
                };
                row.push(paint(
                    Cell::new(outcome),
                    item.outcome.map(outcome_color),
                    view.color,
                ));
            }
            table.add_row(row);
        }
        let _ = writeln!(out, "{}", table.trim_fmt());
    }
    let unreachable: Vec<_> = plan
        .agents
        .iter()
        .filter(|agent| !agent.reachable)
        .collect();
    if !unreachable.is_empty() {
        let _ = writeln!(
            out,
            "Unreachable agents (their executions are left alone, unless the agent was deleted and --recover-abandoned is given):"
        );
        for agent in unreachable {
            let _ = writeln!(
                out,
                "  {}: {}",
                agent.name,
                agent.error.as_deref().unwrap_or("unknown")
            );
        }
    }
    let findings: Vec<_> = plan.findings().collect();
    if !findings.is_empty() {
        let _ = writeln!(
            out,
            "Capacity findings (report-only; the tool never changes them):"
        );
        for (agent, finding) in findings {
            let _ = writeln!(
                out,
                "  {}: {}: {}",
                agent.name,
                finding.kind.as_str(),
                finding.detail
            );
        }
    }
    let _ = writeln!(out, "{}", summary_line(plan, view));
    out
}

/// One line: counts per verdict, actions, unreachable agents, and what was applied.
fn summary_line(plan: &Plan, view: &View) -> String {
    let verdicts = plan.by_verdict();
    let mut parts = vec![if verdicts.is_empty() {
        "nothing to report".to_owned()
    } else {
        let counts: Vec<_> = verdicts
            .iter()
            .map(|(verdict, count)| format!("{count} {verdict}"))
            .collect();
        format!("{} items ({})", plan.items.len(), counts.join(", "))
    }];
    parts.push(format!(
        "{} agents asked, {} unreachable",
        plan.agents.len(),
        plan.unreachable_agents()
    ));
    let findings = plan.by_finding();
    if !findings.is_empty() {
        let counts: Vec<_> = findings
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        parts.push(format!("capacity findings: {}", counts.join(", ")));
    }
    let actions = plan.action_count();
    if view.apply && plan.refused.is_some() {
        parts.push(format!("{actions} actions planned"));
    } else if view.apply {
        let outcomes: Vec<_> = plan
            .by_outcome()
            .iter()
            .map(|(outcome, count)| format!("{count} {outcome}"))
            .collect();
        parts.push(format!(
            "applied {actions} actions: {}",
            if outcomes.is_empty() {
                "none".to_owned()
            } else {
                outcomes.join(", ")
            }
        ));
        let closed = plan.activities_closed();
        if closed > 0 {
            parts.push(format!("{closed} activities closed"));
        }
        match (plan.events.as_deref(), plan.events_published()) {
            (Some("published"), (published, 0)) if published > 0 => {
                parts.push(format!("{published} events published"));
            }
            (Some("published"), (published, failed)) if failed > 0 => {
                parts.push(format!("{published} events published, {failed} failed"));
            }
            (Some("no_redis"), _) => parts.push("no events (no Redis)".to_owned()),
            _ => {}
        }
    } else {
        parts.push(format!(
            "{actions} actions planned; dry run, nothing changed (add --apply to act)"
        ));
    }
    if !plan.capacity_checked {
        parts.push("capacity not checked (no Redis)".to_owned());
    }
    if plan.interrupted {
        parts.push(
            "INTERRUPTED: actions not started are marked skipped; rerun to finish".to_owned(),
        );
    }
    if plan.refused.is_some() {
        parts.push("REFUSED: nothing was changed (see the message on stderr)".to_owned());
    }
    let healthy = plan
        .items
        .iter()
        .filter(|item| item.verdict == Verdict::Healthy)
        .count();
    if healthy > 0 && !view.show_all {
        parts.push(format!("{healthy} healthy not shown (--all)"));
    }
    parts.join("; ")
}

fn verdict_color(verdict: Verdict) -> Option<Color> {
    match verdict {
        Verdict::Healthy => Some(Color::Green),
        Verdict::Grace | Verdict::InFlight | Verdict::Untracked => Some(Color::Yellow),
        Verdict::Unreachable | Verdict::Abandoned | Verdict::LeaseExpired => Some(Color::Magenta),
        Verdict::Orphaned
        | Verdict::TimedOut
        | Verdict::LeakedSlot
        | Verdict::Zombie
        | Verdict::Requested => Some(Color::Red),
    }
}

fn outcome_color(outcome: Outcome) -> Color {
    match outcome {
        Outcome::Applied => Color::Green,
        Outcome::RaceLost | Outcome::Skipped => Color::Yellow,
        Outcome::Failed => Color::Red,
    }
}

fn paint(cell: Cell, color: Option<Color>, enabled: bool) -> Cell {
    match color {
        Some(color) if enabled => cell.fg(color),
        _ => cell,
    }
}
