//! The audit trail (`--audit-log`): one JSON line per action as soon as the action ends, and one
//! line when the apply ends, however it ends. Each line is one `write` to a file opened with
//! `O_APPEND` and no buffer of ours, so it is in the file the moment the call returns (a crash
//! right after loses nothing) and concurrent writers never interleave within a line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use color_eyre::eyre::{Result, WrapErr};
use serde_json::json;

use crate::plan::Item;
use crate::timestamp;

pub(crate) struct AuditLog {
    file: File,
    path: PathBuf,
    host: String,
}

impl AuditLog {
    /// Opens (creating if needed) the log for appending; done before anything is changed.
    pub(crate) fn open(path: &Path) -> Result<AuditLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .wrap_err_with(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(AuditLog {
            file,
            path: path.to_owned(),
            host: crate::host::hostname(),
        })
    }

    /// Appends the line of an item whose action has ended.
    pub(crate) fn record(&self, item: &Item) -> Result<()> {
        self.append(json!({
            "time": timestamp::format(chrono::Utc::now()),
            "event": "action",
            "execution_id": item.execution_id,
            "agent": item.agent,
            "verdict": item.verdict,
            "action": item.action,
            "outcome": item.outcome,
            "error": item.error,
            "tool_version": env!("CARGO_PKG_VERSION"),
            "host": self.host,
        }))
    }

    /// Appends the line that closes an apply: how it ended (`finished`, `interrupted`, `refused`,
    /// `error`, `panic`, `killed`) and, unless it finished, why.
    pub(crate) fn record_end(&self, ended: &str, error: Option<&str>) -> Result<()> {
        self.append(json!({
            "time": timestamp::format(chrono::Utc::now()),
            "event": "apply_end",
            "outcome": ended,
            "error": error,
            "tool_version": env!("CARGO_PKG_VERSION"),
            "host": self.host,
        }))
    }

    fn append(&self, line: serde_json::Value) -> Result<()> {
        let mut line = line.to_string();
        line.push('\n');
        // One write of the whole line (a regular file takes it whole): with O_APPEND, lines from
        // concurrent runs never interleave.
        (&self.file)
            .write_all(line.as_bytes())
            .wrap_err_with(|| format!("cannot append to the audit log {}", self.path.display()))
    }
}
