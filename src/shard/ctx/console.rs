//! The web console's part of a shard: the busiest-topics sketch, and the
//! answer to the admin thread's console request ([`stats::ConsoleView`]).
//!
//! Owns: the sketch ([`TopK`], `admin.console_topics_max` entries) and its
//! window's start. Fed by `publish_now` only while
//! `Global::console_active` is set (one relaxed atomic load per publish
//! otherwise), and then only one publish in [`SAMPLE_ONE_IN`], chosen by a
//! xorshift so that a periodic pattern of topics is not aliased. Answered
//! on the housekeeping tick: the sketch's entries become rates over the
//! window since the last answer, and the window restarts. A rate is the
//! entry's guaranteed lower bound (`count - error`: the count inherited
//! from an evicted topic is not this topic's), so a long tail of rare
//! topics does not show as busy. With the flag off, the sketch is emptied
//! on the next tick. Must not touch: sessions
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
        let mut rates: Vec<stats::TopicRate> = top
            .into_iter()
            .filter(|e| e.count > e.error)
            .map(|e| stats::TopicRate {
                events_per_s: (e.count - e.error) as f64 / secs,
                topic: e.topic,
                truncated: false,
            })
            .collect();
        rates.sort_by(|a, b| {
            b.events_per_s
                .total_cmp(&a.events_per_s)
                .then_with(|| a.topic.cmp(&b.topic))
        });
        rates
    }

    /// Follows the console flag: a sketch while it is set, none (emptied,
    /// offers dropped) once it drops.
    fn follow(&self, active: bool, now: Instant, capacity: usize) {
        if active {
            self.start(now, capacity);
        } else {
            self.stop();
        }
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
        self.console.follow(
            self.global.console_active.load(Ordering::Relaxed),
            now,
            self.config().admin.console_topics_max,
        );
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
            // Published on this tick just before (`publish_stats`).
            counters: Some((now, self.stats.snapshot())),
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

    /// Many distinct rare topics churn the sketch: each newcomer inherits
    /// the evicted count as its error. Rates are the lower bound: no rare
    /// topic shows more than it had, and the hot one is still first.
    #[test]
    fn rare_topics_are_not_inflated() {
        let c = Console::new(0);
        let t0 = Instant::now();
        c.follow(true, t0, 4);
        // Unsampled, to know the truth: 1000 topics once each, "hot"
        // 2000 times, in one second.
        for i in 0..1000 {
            c.sketch.borrow_mut().offer(&format!("rare/{i}"), 1);
            c.sketch.borrow_mut().offer("hot", 1);
            c.sketch.borrow_mut().offer("hot", 1);
        }
        let top = c.take(t0 + Duration::from_secs(1));
        assert_eq!(top[0].topic, "hot");
        assert!(top[0].events_per_s <= 2000.0, "{top:?}");
        assert!(top[0].events_per_s >= 1000.0, "{top:?}");
        for t in &top[1..] {
            assert!(t.events_per_s <= 1.0, "a rare topic inflated: {t:?}");
        }
    }

    /// The flag every publish reads has a cache line to itself (no false
    /// sharing with the connection counts written beside it).
    #[test]
    fn the_flag_has_its_own_cache_line() {
        let g = super::super::Global::default();
        assert!(std::mem::align_of_val(&g.console_active) >= 64);
        assert!(std::mem::size_of_val(&g.console_active) >= 64);
    }

    /// With the flag dropped, the sketch is emptied at once and offers
    /// are no longer counted; raised again, a fresh window.
    #[test]
    fn the_flag_dropping_stops_and_empties_the_sketch() {
        let c = Console::new(0);
        let t0 = Instant::now();
        c.follow(true, t0, 4);
        for _ in 0..100 {
            c.offer("a");
        }
        assert!(!c.sketch.borrow().is_empty());
        c.follow(false, t0 + Duration::from_millis(50), 4);
        assert!(c.sketch.borrow().is_empty(), "emptied");
        assert_eq!(c.sketch.borrow().capacity(), 0, "its memory released");
        for _ in 0..100 {
            c.offer("a");
        }
        assert!(c.sketch.borrow().is_empty(), "no longer fed");
        assert!(c.take(t0 + Duration::from_secs(1)).is_empty());
        c.follow(true, t0 + Duration::from_secs(2), 4);
        for _ in 0..100 {
            c.offer("b");
        }
        let top = c.take(t0 + Duration::from_secs(3));
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].topic, "b");
    }

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
