//! Giving memory back to the OS after clients leave.
//!
//! Owns: each shard's decision to trim, and the trim itself: the shard drops
//! its spare buffers and asks mimalloc to collect this thread's heap and
//! purge its free pages at once (`mi_collect(true)`).
//!
//! Why: mimalloc purges freed memory lazily, from later allocations and
//! frees; a shard whose clients have left does little of either, so the
//! memory of a wave of idle connections stayed resident (10,000 idle
//! connections on 2 shards: 38 MB at start, 91 MB held, still 93 MB 15 s
//! after they closed; with the trim, 39 MB 1 s after: `perf/memory-curve.sh`,
//! perf/results/2026-12-06-memory-curve.md). Each shard
//! thread owns its heap, and `mi_collect` works on the caller's heap, so
//! every shard trims itself from its housekeeping tick.
//!
//! Cost: `mi_collect(true)` visits the pages of the shard's heap (0.1 to
//! 0.8 ms measured, with up to 4,300 connections left); it runs at most every
//! `runtime.memory_trim_ms`, and only after the shard's connections fell by
//! an eighth of their peak since the last trim, so a steady shard never
//! pays it.
//!
//! Must not touch: sessions or sockets; the pools it shrinks belong to the
//! shard context (`ShardCtx::trim`).

use std::time::{Duration, Instant};

/// When a shard last trimmed, and the most connections it has held since.
#[derive(Debug)]
pub struct Trimmer {
    peak: u64,
    last: Instant,
}

impl Trimmer {
    pub fn new(now: Instant) -> Trimmer {
        Trimmer { peak: 0, last: now }
    }

    /// Called on every tick with the shard's open connections: true when
    /// the shard should trim now (and the trim is then counted as done).
    /// `interval` zero: never.
    pub fn due(&mut self, connections: u64, now: Instant, interval: Duration) -> bool {
        self.peak = self.peak.max(connections);
        if interval.is_zero() || now.saturating_duration_since(self.last) < interval {
            return false;
        }
        let fell = self.peak - connections;
        if fell == 0 || fell < self.peak.div_ceil(8) {
            return false;
        }
        self.peak = connections;
        self.last = now;
        true
    }
}

/// Frees what this thread's mimalloc heap holds without using: empty pages,
/// blocks freed by other threads, and the purge of free memory to the OS
/// that mimalloc would otherwise delay until its next allocations.
pub fn return_to_os() {
    // SAFETY: mi_collect takes no pointers; it works on the calling
    // thread's heap, which mimalloc makes safe to call at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn trims_after_a_fall_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(t0);
        // Growing, then steady: nothing to give back.
        for (i, n) in [10, 1000, 8000, 8000].into_iter().enumerate() {
            assert!(!t.due(n, t0 + SECOND * (i as u32 + 1), SECOND));
        }
        // A fall of less than an eighth of the peak: not yet.
        assert!(!t.due(7001, t0 + 6 * SECOND, SECOND));
        // An eighth: trim, and not again within the interval.
        assert!(t.due(7000, t0 + 7 * SECOND, SECOND));
        assert!(!t.due(0, t0 + 7 * SECOND + SECOND / 2, SECOND));
        // The rest of the fall is seen after the interval.
        assert!(t.due(0, t0 + 8 * SECOND, SECOND));
        assert!(!t.due(0, t0 + 9 * SECOND, SECOND));
        // One client leaving a shard that had one.
        assert!(!t.due(1, t0 + 10 * SECOND, SECOND));
        assert!(t.due(0, t0 + 11 * SECOND, SECOND));
    }

    #[test]
    fn a_fall_within_the_first_interval_waits_for_it() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(t0);
        assert!(!t.due(100, t0, SECOND));
        assert!(!t.due(0, t0 + SECOND / 2, SECOND));
        assert!(t.due(0, t0 + SECOND, SECOND));
    }

    #[test]
    fn zero_interval_never_trims() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(t0);
        assert!(!t.due(100, t0, Duration::ZERO));
        assert!(!t.due(0, t0 + 100 * SECOND, Duration::ZERO));
    }

    #[test]
    fn return_to_os_is_callable_from_any_thread() {
        let data: Vec<Vec<u8>> = (0..1000).map(|i| vec![0; 100 + i]).collect();
        std::thread::spawn(move || drop(data)).join().unwrap();
        return_to_os();
    }
}
