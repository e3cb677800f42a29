//! The web console's part of a shard: the busiest-topics sketch, and the
//! answer to the admin thread's console request ([`stats::ConsoleView`]).
//!
//! Owns: the sketch ([`TopK`], `admin.console_topics_max` entries) and its
//! window's start. Fed by `publish_now` only while
//! `Global::console_active` is set (one relaxed atomic load per publish
//! otherwise), and then only one publish in [`SAMPLE_ONE_IN`], chosen by a
//! xorshift so that a periodic pattern of topics is not aliased. Answered
//! on the housekeeping tick: the sketch's entries become rates over the
//! window since the last answer, and the window restarts. With the flag
//! off, the sketch is emptied on the next tick. Must not touch: sessions
//! (the slowest consumers are the table's `slow_consumers`).

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::ShardCtx;
use crate::shard::stats;
use crate::shard::topk::TopK;

/// One publish in this many feeds the sketch (with this weight).
pub const SAMPLE_ONE_IN: u64 = 4;

pub(super) struct Console {
    sketch: RefCell<TopK>,
    /// Start of the sketch's window; None while the console is off.
    since: Cell<Option<Instant>>,
    rng: Cell<u64>,
}

impl Console {
    pub(super) fn new(seed: usize) -> Self {
        Console {
            sketch: RefCell::new(TopK::new(0)),
            since: Cell::new(None),
            // xorshift's state must not be 0.
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (seed as u64).wrapping_mul(0x100_0000_01B3) | 1),
        }
    }

    /// Counts a publish to `topic`, sampled.
    #[inline]
    pub(super) fn offer(&self, topic: &str) {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        if !x.is_multiple_of(SAMPLE_ONE_IN) || self.since.get().is_none() {
            return;
        }
        self.sketch.borrow_mut().offer(topic, SAMPLE_ONE_IN);
    }

    fn start(&self, now: Instant, capacity: usize) {
        if self.sketch.borrow().capacity() != capacity {
            *self.sketch.borrow_mut() = TopK::new(capacity);
        }
        if self.since.get().is_none() {
            self.since.set(Some(now));
        }
    }

    fn stop(&self) {
        if self.since.take().is_some() {
            *self.sketch.borrow_mut() = TopK::new(0);
        }
    }

    /// The window's topics as rates, and a new window from `now`.
    fn take(&self, now: Instant) -> Vec<stats::TopicRate> {
        let Some(since) = self.since.get() else {
            return Vec::new();
        };
        self.since.set(Some(now));
        let secs = now.duration_since(since).as_secs_f64();
        let mut sketch = self.sketch.borrow_mut();
        let top = sketch.top();
        sketch.clear();
        if secs <= 0.0 {
            return Vec::new();
        }
        top.into_iter()
            .map(|e| stats::TopicRate {
                topic: e.topic,
                events_per_s: e.count as f64 / secs,
            })
            .collect()
    }
}

impl ShardCtx {
    /// Counts a publish for the console's busiest topics, if it is open.
    #[inline]
    pub(super) fn console_offer(&self, topic: &str) {
        if self.global.console_active.load(Ordering::Relaxed) {
            self.console.offer(topic);
        }
    }

    /// The housekeeping tick's console chores: start or stop the sketch
    /// with the flag, answer a console request.
    pub(super) fn console_tick(&self) {
        let now = Instant::now();
        if self.global.console_active.load(Ordering::Relaxed) {
            self.console
                .start(now, self.config().admin.console_topics_max);
        } else {
            self.console.stop();
        }
        if !self.stats.console_requested.swap(false, Ordering::AcqRel) {
            return;
        }
        let (queued_messages, queued_bytes, slow_consumers) = self
            .table
            .slow_consumers(self.id, stats::SLOW_CONSUMERS_MAX);
        let view = stats::ConsoleView {
            shard: self.id,
            queued_messages,
            queued_bytes,
            slow_consumers,
            topics: self.console.take(now),
        };
        if let Ok(mut slot) = self.stats.console.lock() {
            *slot = Some(view);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Offers count only inside a window; a window's counts become rates
    /// (scaled back by the sampling) and the next window starts empty.
    #[test]
    fn windows_sampled_counts_into_rates() {
        let c = Console::new(0);
        let t0 = Instant::now();
        c.offer("before");
        c.start(t0, 4);
        for i in 0..4000 {
            c.offer("hot");
            if i % 10 == 0 {
                c.offer("cold");
            }
        }
        let top = c.take(t0 + Duration::from_secs(2));
        assert_eq!(top[0].topic, "hot");
        assert_eq!(top[1].topic, "cold");
        assert_eq!(top.len(), 2, "offers before the window are not counted");
        // 4000 offers in 2 s, one in 4 sampled with weight 4: about 2000/s
        // (the xorshift is seeded: the same numbers every run).
        assert!((1600.0..2400.0).contains(&top[0].events_per_s), "{top:?}");
        assert!(
            c.take(t0 + Duration::from_secs(3)).is_empty(),
            "a new window"
        );
        c.stop();
        c.offer("hot");
        assert!(c.take(t0 + Duration::from_secs(4)).is_empty());
        c.offer("hot");
        assert!(
            c.take(t0 + Duration::from_secs(5)).is_empty(),
            "a take does not start a window"
        );
    }
}
