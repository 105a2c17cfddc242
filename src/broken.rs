//! Safety rules the soak breaks one at a time, to show that it catches each (issue 10). Only a
//! build with the `soak-broken-rules` feature reads `TRINITY_WATCHDOG_BREAK`; in every other
//! build `broken` is a constant `false`, so the release binary cannot be told to break a rule.

/// A safety rule that the soak can break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `inflight`: an `execution:inflight:{id}` marker no longer keeps a row alive.
    InFlight,
    /// `pending`: an agent's `pending_ids` no longer count as known.
    Pending,
    /// `unguarded`: the write drops its `AND status = 'running'` guard.
    Unguarded,
    /// `unreachable`: an agent that does not answer counts as running nothing.
    Unreachable,
}

#[cfg(feature = "soak-broken-rules")]
pub(crate) fn broken(rule: Rule) -> bool {
    let name = match rule {
        Rule::InFlight => "inflight",
        Rule::Pending => "pending",
        Rule::Unguarded => "unguarded",
        Rule::Unreachable => "unreachable",
    };
    std::env::var("TRINITY_WATCHDOG_BREAK").is_ok_and(|value| value == name)
}

#[cfg(not(feature = "soak-broken-rules"))]
pub(crate) const fn broken(_: Rule) -> bool {
    false
}
