//! What a shard measures and how loudly it logs: the router-internal
//! latency histogram and the log rate limiter.
//!
//! Owns: the shard-local histogram (merged into the shared one on the
//! housekeeping tick, so the event path never takes a lock) and the
//! limiter's window. The counters themselves are `stats::Counters`, owned
//! by the context; this part only feeds them.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::shard::stats::{self, Counters, ShardStats};

/// Lets through at most `per_second` log lines of one kind, counts the rest.
pub struct LogLimiter {
    window: Cell<Option<Instant>>,
    count: Cell<u32>,
    suppressed: Cell<u64>,
    per_second: u32,
}

impl LogLimiter {
    pub fn new(per_second: u32) -> Self {
        LogLimiter {
            window: Cell::new(None),
            count: Cell::new(0),
            suppressed: Cell::new(0),
            per_second,
        }
    }

    /// True if a line may be logged now; otherwise counts it as suppressed.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        match self.window.get() {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                let suppressed = self.suppressed.replace(0);
                if suppressed > 0 {
                    tracing::warn!(suppressed, "log lines suppressed by rate limit");
                }
                self.window.set(Some(now));
                self.count.set(0);
            }
        }
        if self.count.get() < self.per_second {
            self.count.set(self.count.get() + 1);
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }
}

/// Receive → hand-off to the socket, in ns.
pub(super) struct Latency {
    histogram: RefCell<hdrhistogram::Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            histogram: RefCell::new(stats::latency_histogram()),
        }
    }
}

impl Latency {
    /// Records the latency of events just handed to a socket in one write:
    /// each with the latency of the write's oldest event (an upper bound
    /// for the others, which waited at most as long), one histogram update
    /// per write instead of one per event; the summary's count stays one
    /// per event. Replays (`event::REPLAY_NS`: retained messages, a stored
    /// session's backlog) are only counted, since their age is not routing
    /// time.
    pub(super) fn record(&self, born: &[u64], counters: &Counters) {
        if born.is_empty() {
            return;
        }
        let mut oldest = u64::MAX;
        let mut replays = 0;
        for &b in born {
            if b == crate::event::REPLAY_NS {
                replays += 1;
            } else {
                oldest = oldest.min(b);
            }
        }
        let live = born.len() as u64 - replays;
        if live > 0 {
            let now = crate::event::now_ns();
            self.histogram
                .borrow_mut()
                .saturating_record_n(now.saturating_sub(oldest).max(1), live);
        }
        Counters::add(&counters.replays_out, replays);
    }

    /// Merges the local histogram into the shared one and resets it.
    pub(super) fn publish(&self, stats: &ShardStats) {
        let mut local = self.histogram.borrow_mut();
        if !local.is_empty() {
            if let Ok(mut shared) = stats.latency.lock() {
                let _ = shared.add(&*local);
            }
            local.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One write: each live event counted once, all with the write's
    /// oldest latency; replays only counted.
    #[test]
    fn a_write_records_its_oldest_for_each_event() {
        let latency = Latency::default();
        let counters = Counters::default();
        latency.record(&[2, crate::event::REPLAY_NS, 1, 3], &counters);
        let h = latency.histogram.borrow();
        assert_eq!(h.len(), 3);
        // One value (the oldest's): min and max in one bucket.
        assert!(h.equivalent(h.min(), h.max()), "{} {}", h.min(), h.max());
        assert_eq!(counters.replays_out.get(), 1);
        drop(h);
        latency.record(&[crate::event::REPLAY_NS], &counters);
        assert_eq!(latency.histogram.borrow().len(), 3);
        assert_eq!(counters.replays_out.get(), 2);
    }
}
