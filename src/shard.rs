//! Which agents a run owns: the `--agent` names and the `--shard K/N` split. Every row, slot,
//! process and finding belongs to its agent, so one predicate on agent names scopes a whole run.
//!
//! An agent belongs to shard `fnv1a64(name) mod N`, where `fnv1a64` is 64-bit FNV-1a over the
//! name's UTF-8 bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3). The hash is written
//! down here and in README so that any tool, in any language, can tell which instance owns an
//! agent; it never changes between versions.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// `--shard K/N`: this run is instance K (from 0, as Kubernetes' `JOB_COMPLETION_INDEX`) of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The shard an agent belongs to, out of `count`.
    pub fn of(agent: &str, count: u64) -> u64 {
        fnv1a64(agent.as_bytes()) % count
    }

    pub fn owns(self, agent: &str) -> bool {
        Shard::of(agent, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let usage = || format!("{text:?} is not K/N (K counts from 0 to N-1, e.g. 0/4)");
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let (index, count): (u64, u64) = (
            index.trim().parse().map_err(|_| usage())?,
            count.trim().parse().map_err(|_| usage())?,
        );
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count} does not exist: K counts from 0 to N-1 and N is at least 1"
            ));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The agents a run looks at: those named with `--agent` (none named: every agent), and of
/// those only the ones its shard owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentScope {
    pub names: BTreeSet<String>,
    pub shard: Option<Shard>,
}

impl AgentScope {
    pub fn contains(&self, agent: &str) -> bool {
        (self.names.is_empty() || self.names.contains(agent))
            && self.shard.is_none_or(|shard| shard.owns(agent))
    }

    /// What every name of the apply lock gets appended for this run (`-shard-K-of-N`, or
    /// nothing): one lock per shard, so that the N instances of one split apply side by side and
    /// two runs of the same shard never do.
    pub fn lock_suffix(&self) -> String {
        match self.shard {
            Some(shard) => format!("-shard-{}-of-{}", shard.index, shard.count),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_as_written_down() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        // What README's example says.
        assert_eq!(Shard::of("agent-00042", 4), fnv1a64(b"agent-00042") % 4);
    }

    #[test]
    fn every_agent_has_exactly_one_shard() {
        for count in 1..=7 {
            for n in 0..200 {
                let agent = format!("agent-{n}");
                let owners = (0..count)
                    .filter(|&index| Shard { index, count }.owns(&agent))
                    .count();
                assert_eq!(owners, 1, "{agent} of {count}");
            }
        }
    }

    #[test]
    fn k_of_n_parses_from_zero_and_rejects_what_does_not_exist() {
        assert_eq!("3/4".parse::<Shard>(), Ok(Shard { index: 3, count: 4 }));
        assert_eq!(
            "0/1".parse::<Shard>().map(|s| s.to_string()),
            Ok("0/1".to_owned())
        );
        for bad in ["4/4", "0/0", "1", "-1/4", "a/b", "1/2/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_scope_is_the_named_agents_within_the_shard() {
        let shard = Shard { index: 1, count: 3 };
        let mine = (0..100)
            .map(|n| format!("a{n}"))
            .find(|name| shard.owns(name))
            .unwrap();
        let other = (0..100)
            .map(|n| format!("a{n}"))
            .find(|name| !shard.owns(name))
            .unwrap();
        let scope = AgentScope {
            names: BTreeSet::new(),
            shard: Some(shard),
        };
        assert!(scope.contains(&mine) && !scope.contains(&other));
        let named = AgentScope {
            names: [other.clone()].into(),
            shard: Some(shard),
        };
        assert!(!named.contains(&other) && !named.contains(&mine));
        assert!(AgentScope::default().contains(&other));
        assert_eq!(scope.lock_suffix(), "-shard-1-of-3");
        assert_eq!(AgentScope::default().lock_suffix(), "");
    }
}
