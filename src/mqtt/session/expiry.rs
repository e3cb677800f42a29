//! Deadlines of kept sessions, earliest first, whatever order they were
//! set in: the shard parks MQTT sessions with their own expiry (MQTT 5
//! Session Expiry Interval, from seconds to the configured hour), so the
//! first parked is not the first due.
//!
//! Why this exists: the shard used to keep them in a FIFO and expire from
//! its front, which held a 5 s session behind an earlier 3600 s one (seen
//! as sessions and wills outliving their expiry in long runs of mixed
//! clients). A binary heap: O(log n) per park and expiry; entries of
//! sessions resumed since are skipped when due, or compacted by the owner
//! (`retain`). Time is an argument: tests run in virtual time.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

struct Entry<T> {
    at: Instant,
    /// Ties keep the order of parking.
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub struct ExpiryQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> Default for ExpiryQueue<T> {
    fn default() -> Self {
        ExpiryQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> ExpiryQueue<T> {
    pub fn push(&mut self, at: Instant, item: T) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            item,
        });
    }

    /// The earliest entry due at `now` (its deadline at or before `now`).
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|e| e.item)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Keeps the entries whose item passes `keep` (drops stale ones).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.heap.retain(|e| keep(&e.item));
    }
}
