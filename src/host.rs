//! This machine and this process, as other runs see them: the hostname (lock tokens, the audit
//! log) and a process identity that tells a live process from a dead one whose pid was reused.

/// This machine's name.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Who a process is, precisely enough to tell whether it still runs: the host, the kernel boot
/// and pid namespace it lives in (so a pid is comparable at all), its pid, and the time it
/// started after boot (so a reused pid is a different process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pub host: String,
    pub boot: String,
    pub pid_namespace: String,
    pub pid: u32,
    pub started: u64,
}

impl ProcessIdentity {
    /// This process; `None` where `/proc` does not tell.
    pub(crate) fn current() -> Option<ProcessIdentity> {
        let pid = std::process::id();
        Some(ProcessIdentity {
            host: hostname(),
            boot: boot_id()?,
            pid_namespace: pid_namespace()?,
            pid,
            started: start_time(pid)?,
        })
    }

    /// Whether `other` is a process this one can check: same host, same boot, same pid namespace.
    pub(crate) fn can_check(&self, other: &ProcessIdentity) -> bool {
        self.host == other.host
            && self.boot == other.boot
            && self.pid_namespace == other.pid_namespace
    }

    /// Whether this process (on this host, boot and pid namespace) is gone: no such pid, a pid
    /// that now belongs to a process that started at another time, or one that has exited and
    /// waits only to be reaped.
    pub(crate) fn is_gone(&self) -> bool {
        start_time(self.pid) != Some(self.started)
    }
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}

fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    // `pid:[4026531836]`: the namespace's inode number.
    let text = link.to_string_lossy();
    let inode: String = text.chars().filter(char::is_ascii_digit).collect();
    Some(inode).filter(|inode| !inode.is_empty())
}

/// Field 22 of `/proc/{pid}/stat`: when the process started, in clock ticks after boot; `None`
/// when there is no such process, or it has exited (a zombie, state `Z`, or dead, `X`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessIdentity::current().expect("/proc is there on Linux");
        assert!(!me.is_gone());
        assert!(me.can_check(&me));
        let reused = ProcessIdentity {
            started: me.started + 1,
            ..me.clone()
        };
        assert!(
            reused.is_gone(),
            "same pid, other start time: another process"
        );
        let elsewhere = ProcessIdentity {
            host: format!("{}-other", me.host),
            ..me.clone()
        };
        assert!(!me.can_check(&elsewhere));
    }
}
