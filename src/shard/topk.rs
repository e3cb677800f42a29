//! A bounded top-k sketch of the busiest topics: the Space-Saving
//! algorithm (Metwally, Agrawal, El Abbadi, 2005) over at most `capacity`
//! entries, fed by the shard while the web console is open (see
//! `ctx::console`).
//!
//! Model: each entry is (topic, count, error). A topic already held adds
//! one; a new one takes a free slot, or replaces the entry with the
//! smallest count, inheriting that count as its error (its count then
//! over-estimates by at most `error`). Any topic with a true count above
//! N / capacity (N: all offers) is guaranteed to be held.
//!
//! Bounds: `capacity` entries (`admin.console_topics_max`), each topic as
//! long as the topic limits allow; an offer costs one scan of at most
//! `capacity` entries (16 by default: a linear scan beats a hash map
//! there, and never allocates but to replace an entry).
//!
//! Why hand-written: the algorithm is 40 lines; the crates that provide it
//! allocate per offer (hash map plus heap) or count integers, not strings.

/// One held topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub topic: String,
    /// Offers counted (an over-estimate by at most `error`).
    pub count: u64,
    /// The count inherited from the entry this one replaced.
    pub error: u64,
}

#[derive(Debug, Default)]
pub struct TopK {
    entries: Vec<Entry>,
    capacity: usize,
}

impl TopK {
    pub fn new(capacity: usize) -> Self {
        TopK {
            entries: Vec::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts one occurrence of `topic` with weight `n`.
    pub fn offer(&mut self, topic: &str, n: u64) {
        if self.capacity == 0 {
            return;
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.topic == topic) {
            e.count += n;
            return;
        }
        if self.entries.len() < self.capacity {
            self.entries.push(Entry {
                topic: topic.to_owned(),
                count: n,
                error: 0,
            });
            return;
        }
        // Full: the smallest entry makes room (its count becomes the
        // newcomer's error). The scan is the price of no index.
        let min = self
            .entries
            .iter_mut()
            .min_by_key(|e| e.count)
            .expect("capacity > 0 and full");
        min.error = min.count;
        min.count += n;
        min.topic.clear();
        min.topic.push_str(topic);
    }

    /// The entries, busiest first (ties by topic, for a stable order).
    pub fn top(&self) -> Vec<Entry> {
        let mut out = self.entries.clone();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.topic.cmp(&b.topic)));
        out
    }

    /// Forgets every entry (keeps the capacity).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_while_there_is_room() {
        let mut k = TopK::new(4);
        for (t, n) in [("a", 5), ("b", 3), ("c", 1)] {
            for _ in 0..n {
                k.offer(t, 1);
            }
        }
        let top = k.top();
        assert_eq!(
            top.iter()
                .map(|e| (e.topic.as_str(), e.count, e.error))
                .collect::<Vec<_>>(),
            [("a", 5, 0), ("b", 3, 0), ("c", 1, 0)]
        );
    }

    #[test]
    fn bounded_and_keeps_the_heavy_hitters() {
        // Two heavy topics among a long tail of one-off topics: both above
        // N / capacity (2500 / 8), so both are guaranteed held.
        let mut k = TopK::new(8);
        for i in 0..1000 {
            k.offer("heavy/1", 1);
            if i % 2 == 0 {
                k.offer("heavy/2", 1);
            }
            k.offer(&format!("tail/{i}"), 1);
            assert!(k.len() <= 8);
        }
        let top = k.top();
        assert_eq!(top[0].topic, "heavy/1");
        assert_eq!(top[1].topic, "heavy/2");
        // Space-Saving's guarantee: count - error <= true count <= count.
        for e in &top {
            let truth = match e.topic.as_str() {
                "heavy/1" => 1000,
                "heavy/2" => 500,
                _ => 1,
            };
            assert!(e.count - e.error <= truth && truth <= e.count, "{e:?}");
        }
        // Offers: 2500 in all; every entry counts at most that.
        assert_eq!(top.iter().map(|e| e.count).max(), Some(top[0].count));
    }

    #[test]
    fn weights_zero_capacity_and_clear() {
        let mut k = TopK::new(2);
        k.offer("a", 4);
        k.offer("b", 1);
        k.offer("c", 2); // replaces b (count 1): count 3, error 1
        let top = k.top();
        assert_eq!((top[0].topic.as_str(), top[0].count), ("a", 4));
        assert_eq!(
            (top[1].topic.as_str(), top[1].count, top[1].error),
            ("c", 3, 1)
        );
        k.clear();
        assert!(k.is_empty());
        assert_eq!(k.capacity(), 2);
        let mut none = TopK::new(0);
        none.offer("a", 1);
        assert!(none.top().is_empty());
    }
}
