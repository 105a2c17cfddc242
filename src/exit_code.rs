//! The process exit codes: one documented enum, rendered into `--help` and README from here.

/// How a run of trinity-watchdog ended. The numbers are a stable interface for cron and CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Done: a dry run printed its plan, or an apply finished with every action `applied`,
    /// `race_lost` or `skipped`.
    Ok,
    /// Fatal error: configuration, database unreadable or not a Trinity schema, Redis unreachable
    /// when configured.
    Fatal,
    /// Usage error: the command line did not parse.
    Usage,
    /// An apply finished, but at least one action `failed`.
    ActionFailed,
    /// `--exit-code` was given and the plan has at least one action, an unreachable agent, or an
    /// item or finding that needs a person (`abandoned`, `lease_expired`, `overbooked`,
    /// `stuck_drain`).
    NeedsAttention,
    /// A safety limit (blast-radius cap, systemic-failure brake) refused the apply before it
    /// changed anything.
    Refused,
    /// Another apply holds the lock; nothing was done.
    Busy,
    /// Ctrl-C or SIGTERM during an apply: the action in progress finished, the rest did not start.
    Interrupted,
}

impl ExitCode {
    /// Every exit code, in numeric order.
    pub const ALL: [ExitCode; 8] = [
        ExitCode::Ok,
        ExitCode::Fatal,
        ExitCode::Usage,
        ExitCode::ActionFailed,
        ExitCode::NeedsAttention,
        ExitCode::Refused,
        ExitCode::Busy,
        ExitCode::Interrupted,
    ];

    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Fatal => 1,
            ExitCode::Usage => 2,
            ExitCode::ActionFailed => 3,
            ExitCode::NeedsAttention => 4,
            ExitCode::Refused => 5,
            ExitCode::Busy => 6,
            ExitCode::Interrupted => 130,
        }
    }

    /// One line saying what the code means, as `--help` and README show it.
    pub fn meaning(self) -> &'static str {
        // Kept under ~90 characters so that `--help` never wraps a row of the table.
        match self {
            ExitCode::Ok => {
                "done: a dry run printed its plan, or an apply ended with no action failed"
            }
            ExitCode::Fatal => {
                "fatal: bad configuration, database unreadable or not Trinity's, Redis unreachable"
            }
            ExitCode::Usage => "usage error: the command line did not parse",
            ExitCode::ActionFailed => "apply finished, but at least one action failed",
            ExitCode::NeedsAttention => {
                "--exit-code: an action, an unreachable agent, or something that needs a person"
            }
            ExitCode::Refused => {
                "refused: a safety limit stopped the apply before it changed anything"
            }
            ExitCode::Busy => "busy: another apply holds the lock; nothing was done",
            ExitCode::Interrupted => {
                "interrupted during an apply: the action in progress finished, the rest did not start"
            }
        }
    }

    /// The table of exit codes as Markdown; README embeds exactly this text.
    pub fn table() -> String {
        let mut table = String::from("| code | meaning |\n|---|---|\n");
        for code in Self::ALL {
            table.push_str(&format!("| {} | {} |\n", code.code(), code.meaning()));
        }
        table
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}
