//! File descriptors: the default `--concurrency` comes from how many this process may open.
//!
//! Every agent request in flight holds one socket. Besides those, a run holds a fixed handful:
//! stdio, the database (SQLite's file, journal or WAL and shm; or a PostgreSQL socket), Redis
//! connections, the lock file, the audit log, the runtime's epoll and wake-up descriptors, and
//! the resolver's sockets. So the soft `RLIMIT_NOFILE` is first raised to the hard limit (which
//! any process may do), then the default keeps `RESERVED` descriptors aside and uses half of
//! the rest, at most `MAX_DEFAULT`: half, because a connection that has just closed can hold its
//! descriptor while the next one opens, and because a terminate of an agent opens a new one.

/// Descriptors kept aside for everything that is not an agent request.
const RESERVED: u64 = 64;
/// The largest default: at A = 10 000 on a 2-core machine 1024 was no faster than 512 and took
/// more memory (BENCHMARKS.md), and a backend host need not open more at once.
pub(crate) const MAX_DEFAULT: usize = 512;

/// Raises the soft descriptor limit to the hard limit (as far as the kernel allows) and returns
/// the soft limit in force afterwards; `None` when it cannot be read.
pub(crate) fn raise_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        // An unlimited hard limit cannot be the soft one: the kernel caps descriptors at nr_open.
        let target = libc::rlimit {
            rlim_cur: limit.rlim_max.min(1 << 20),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &target) } == 0 {
            limit.rlim_cur = target.rlim_cur;
        }
    }
    Some(limit.rlim_cur)
}

/// The default `--concurrency` under a soft descriptor limit of `limit`.
pub(crate) fn default_concurrency(limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return 64;
    };
    let share = limit.saturating_sub(RESERVED) / 2;
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_half_of_what_is_left_capped() {
        // A backend host's usual 1024: 480 at once, with 544 to spare.
        assert_eq!(default_concurrency(Some(1024)), 480);
        assert_eq!(default_concurrency(Some(20_000)), MAX_DEFAULT);
        assert_eq!(default_concurrency(Some(256)), 96);
        assert_eq!(default_concurrency(Some(64)), 1);
        assert_eq!(default_concurrency(Some(10)), 1);
        assert_eq!(default_concurrency(None), 64);
    }
}
