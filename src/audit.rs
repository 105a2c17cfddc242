//! The audit trail (`--audit-log`): one JSON line per action an apply carried out, appended whole
//! so that concurrent writers never interleave within a line.

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
            host: crate::lock::hostname(),
        })
    }

    /// Appends one line for an item whose action has an outcome.
    pub(crate) fn record(&mut self, item: &Item) -> Result<()> {
        let mut line = json!({
            "time": timestamp::format(chrono::Utc::now()),
            "execution_id": item.execution_id,
            "agent": item.agent,
            "verdict": item.verdict,
            "action": item.action,
            "outcome": item.outcome,
            "error": item.error,
            "tool_version": env!("CARGO_PKG_VERSION"),
            "host": self.host,
        })
        .to_string();
        line.push('\n');
        // One write of the whole line: with O_APPEND, lines from concurrent runs never interleave.
        self.file
            .write_all(line.as_bytes())
            .wrap_err_with(|| format!("cannot append to the audit log {}", self.path.display()))
    }
}
