//! The process limits the router depends on: locked memory for io_uring,
//! and file descriptors for connections.
//!
//! Descriptors: every connection is one, and so is every listener, link,
//! io_uring instance and eventfd. Out of them, accepts would fail and
//! clients wait in the listen backlog, so the start checks `limits.connections_max` plus a headroom for the rest
//! against RLIMIT_NOFILE, raises the soft limit where it can, and says in
//! one line whether the limit covers it, and if not how many connections
//! it can hold: the shards then refuse connections past that many at
//! accept (closed at once, counted in `connections_refused`), and should
//! descriptors run out all the same, each accept loop refuses its next
//! client on a descriptor it keeps in reserve. The headroom is an estimate from what a running router
//! holds (`ls /proc/PID/fd`: 4 descriptors per executor, one per
//! listener, 6 more), doubled where it is cheap to be generous.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors held besides connections, listeners, links and executors:
/// stdio, the signal pipe, the configuration file, the admin endpoint's
/// connection and reserve, and what libraries open.
const BASE_DESCRIPTORS: u64 = 32;
/// Per executor (a shard, or the mesh bridge): io_uring rings and
/// eventfds; 4 are seen, 8 are counted.
const DESCRIPTORS_PER_EXECUTOR: u64 = 8;

/// What the router holds besides its client connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Headroom {
    pub executors: u64,
    pub listeners: u64,
    /// Mesh links up at once (`mesh.links_max`) plus those being dialled.
    pub links: u64,
    /// Rings between executors (`rings::rings_of`): their eventfds.
    pub rings: u64,
}

impl Headroom {
    pub fn descriptors(&self) -> u64 {
        BASE_DESCRIPTORS
            + DESCRIPTORS_PER_EXECUTOR * self.executors
            + super::rings::DESCRIPTORS_PER_RING * self.rings
            + self.listeners
            + self.links
    }
}

/// io_uring registers buffers as locked memory; raise the soft limit to what
/// the shards need when the hard limit (or privilege) allows it.
pub fn raise_memlock(bytes: u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return;
    };
    if soft >= bytes {
        return;
    }
    if setrlimit(Resource::RLIMIT_MEMLOCK, bytes, hard.max(bytes)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard.min(bytes), hard);
    }
}

/// The (soft, hard) limits to try, in order, to hold `needed` descriptors:
/// the soft limit goes up to the hard one (as brokers do, so that
/// `limits.connections_max` is what binds); past the hard limit only a
/// privileged process can go, so that is tried first when it is needed.
fn nofile_attempts(soft: u64, hard: u64, needed: u64) -> Vec<(u64, u64)> {
    let mut attempts = Vec::new();
    if needed > hard {
        attempts.push((needed, needed));
    }
    if soft < hard {
        attempts.push((hard, hard));
    }
    attempts
}

/// The one line about the descriptor limit, and whether it covers the
/// connections.
fn describe(limit: u64, connections_max: u64, headroom: u64) -> (bool, String) {
    let needed = connections_max.saturating_add(headroom);
    if limit >= needed {
        (
            true,
            format!(
                "descriptor limit {limit} covers limits.connections_max {connections_max} \
                 (+{headroom} for listeners, links, executors and files)"
            ),
        )
    } else {
        (
            false,
            format!(
                "descriptor limit {limit} does not cover limits.connections_max {connections_max} \
                 (+{headroom} for listeners, links, executors and files): it holds about {} \
                 connections; raise it (ulimit -n, systemd LimitNOFILE) or lower \
                 limits.connections_max",
                limit.saturating_sub(headroom)
            ),
        )
    }
}

/// Raises RLIMIT_NOFILE toward `connections_max` plus `headroom` where it
/// can, and logs the outcome in one line (a warning when it falls short).
/// Returns how many connections the limit holds: `connections_max` when it
/// covers it, else what is left after the headroom (the shards refuse
/// connections past it at accept, counted, rather than run out of
/// descriptors and leave clients waiting in the backlog).
pub fn check_nofile(connections_max: u64, headroom: Headroom) -> u64 {
    let headroom = headroom.descriptors();
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        tracing::warn!(
            "descriptor limit unknown (getrlimit failed); limits.connections_max unchecked"
        );
        return connections_max;
    };
    let needed = connections_max.saturating_add(headroom);
    let mut limit = soft;
    for (new_soft, new_hard) in nofile_attempts(soft, hard, needed) {
        if setrlimit(Resource::RLIMIT_NOFILE, new_soft, new_hard).is_ok() {
            limit = new_soft;
            break;
        }
    }
    let (covers, line) = describe(limit, connections_max, headroom);
    if covers {
        tracing::info!("{line}");
        connections_max
    } else {
        tracing::warn!("{line}");
        limit.saturating_sub(headroom).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_to_the_hard_one_and_beyond_only_when_needed() {
        assert_eq!(nofile_attempts(1024, 4096, 2000), vec![(4096, 4096)]);
        assert_eq!(
            nofile_attempts(1024, 4096, 9000),
            vec![(9000, 9000), (4096, 4096)]
        );
        assert_eq!(nofile_attempts(4096, 4096, 9000), vec![(9000, 9000)]);
        assert!(nofile_attempts(4096, 4096, 100).is_empty());
    }

    #[test]
    fn the_line_says_whether_the_limit_covers_and_what_it_holds() {
        let (covers, line) = describe(200_000, 100_000, 100);
        assert!(covers, "{line}");
        assert!(line.contains("descriptor limit 200000 covers"), "{line}");
        let (covers, line) = describe(256, 100_000, 56);
        assert!(!covers);
        assert!(
            line.contains("descriptor limit 256 does not cover"),
            "{line}"
        );
        assert!(line.contains("holds about 200 connections"), "{line}");
        assert!(!describe(10, 100, 56).1.contains("holds about -"));
    }

    #[test]
    fn headroom_counts_what_a_router_holds() {
        let h = Headroom {
            executors: 3,
            listeners: 9,
            links: 64,
            rings: 6,
        };
        assert_eq!(h.descriptors(), 32 + 24 + 24 + 9 + 64);
    }
}
