//! The failed-attempt limiter: after `auth_failures_max` failed
//! authentications from one source IP within `auth_failure_window_ms`,
//! further attempts from it are refused without checking their
//! credentials until that window (which starts at the first failure) has
//! passed. A refusal costs a table lookup, so an attacker who guesses
//! passwords from one address gets `auth_failures_max` slow checks a
//! window, not one per connection.
//!
//! Owns: one shard's table (each shard keeps its own: a source whose
//! connections the kernel spreads over N shards gets up to N times the
//! attempts; no cross-shard traffic on the login path). Bounded by
//! `auth_sources_max` addresses: when full, expired entries go first, then
//! the one whose window started earliest. Must not touch: credentials,
//! clocks (time comes in as `now`, so tests drive it).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// One source's failures in its current window.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
}

#[derive(Debug)]
pub struct FailureLimiter {
    failures_max: u32,
    window: Duration,
    sources_max: usize,
    table: HashMap<IpAddr, Entry>,
}

impl FailureLimiter {
    /// `failures_max` 0 = no limit.
    pub fn new(failures_max: u32, window_ms: u64, sources_max: usize) -> FailureLimiter {
        FailureLimiter {
            failures_max,
            window: Duration::from_millis(window_ms),
            sources_max: sources_max.max(1),
            table: HashMap::new(),
        }
    }

    /// Whether `ip` is refused now, without a check of its credentials.
    pub fn blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.failures_max == 0 {
            return false;
        }
        match self.table.get(&ip) {
            Some(e) if now.saturating_duration_since(e.window_start) >= self.window => {
                self.table.remove(&ip);
                false
            }
            Some(e) => e.failures >= self.failures_max,
            None => false,
        }
    }

    /// Counts a failed authentication from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.failures_max == 0 {
            return;
        }
        let window = self.window;
        if let Some(e) = self.table.get_mut(&ip) {
            if now.saturating_duration_since(e.window_start) >= window {
                *e = Entry {
                    failures: 1,
                    window_start: now,
                };
            } else {
                e.failures = e.failures.saturating_add(1);
            }
            return;
        }
        if self.table.len() >= self.sources_max {
            self.make_room(now);
        }
        self.table.insert(
            ip,
            Entry {
                failures: 1,
                window_start: now,
            },
        );
        debug_assert!(self.table.len() <= self.sources_max);
    }

    /// Forgets expired windows, and if none had expired, the oldest one.
    /// O(table): only when the table is full, on the failure path.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.table
            .retain(|_, e| now.saturating_duration_since(e.window_start) < window);
        if self.table.len() >= self.sources_max {
            if let Some(oldest) = self
                .table
                .iter()
                .min_by_key(|(_, e)| e.window_start)
                .map(|(ip, _)| *ip)
            {
                self.table.remove(&oldest);
            }
        }
    }

    /// Sources remembered (for tests and metrics).
    pub fn sources(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(3, 1000, 10);
        for _ in 0..2 {
            l.failed(ip(1), t0);
        }
        assert!(!l.blocked(ip(1), t0));
        l.failed(ip(1), t0 + Duration::from_millis(10));
        assert!(l.blocked(ip(1), t0 + Duration::from_millis(20)));
        // Another source is not affected.
        assert!(!l.blocked(ip(2), t0 + Duration::from_millis(20)));
        // The window started at the first failure.
        assert!(l.blocked(ip(1), t0 + Duration::from_millis(999)));
        assert!(!l.blocked(ip(1), t0 + Duration::from_millis(1000)));
        assert_eq!(l.sources(), 0);
    }

    #[test]
    fn a_failure_after_the_window_starts_a_new_one() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(2, 100, 10);
        l.failed(ip(1), t0);
        l.failed(ip(1), t0 + Duration::from_millis(150));
        assert!(!l.blocked(ip(1), t0 + Duration::from_millis(160)));
        l.failed(ip(1), t0 + Duration::from_millis(170));
        assert!(l.blocked(ip(1), t0 + Duration::from_millis(171)));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(1, 10_000, 3);
        for n in 1..=3 {
            l.failed(ip(n), t0 + Duration::from_millis(n.into()));
        }
        assert_eq!(l.sources(), 3);
        l.failed(ip(9), t0 + Duration::from_millis(20));
        assert_eq!(l.sources(), 3);
        assert!(
            !l.blocked(ip(1), t0 + Duration::from_millis(21)),
            "oldest forgotten"
        );
        assert!(l.blocked(ip(2), t0 + Duration::from_millis(21)));
        assert!(l.blocked(ip(9), t0 + Duration::from_millis(21)));
    }

    #[test]
    fn zero_max_never_blocks() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(0, 10_000, 3);
        for _ in 0..100 {
            l.failed(ip(1), t0);
        }
        assert!(!l.blocked(ip(1), t0));
        assert_eq!(l.sources(), 0);
    }
}
