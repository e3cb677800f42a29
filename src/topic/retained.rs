//! The retained-message store of one shard: the last retained event of
//! each topic, found by topic filter when a subscription arrives.
//!
//! Every shard keeps its own copy (kept in step through the ordered control
//! queue), so a SUBSCRIBE matches retained events without leaving its
//! shard; the events themselves are reference-counted, so the payloads are
//! stored once per process, the tree once per shard. Bounded by
//! `retained_messages_max` and `retained_bytes_max` (payload bytes): past
//! them a new topic is refused (and counted) while replacing or deleting
//! stays possible.
//!
//! With the mesh on, each retained message carries a *stamp*: the wall
//! clock (ns) of its publish at the router where it entered. A write older
//! than what the store knows of its topic (its message, or the tombstone a
//! deletion left) is refused as stale, so that the stores of routers that
//! were apart converge on the last writer when they exchange their
//! contents, and a deletion is not undone by an older copy. Tombstones are
//! bounded (`tombstones_max`, oldest forgotten first); stamp 0 means
//! unversioned and always applies (the mesh off).

use crate::event::Event;

#[derive(Default)]
struct Node {
    children: hashbrown::HashMap<Box<str>, Node, super::trie::SeededState>,
    event: Option<Event>,
    stamp: u64,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.event.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Set,
    Replaced,
    Deleted,
    /// Nothing to delete.
    Absent,
    /// Over `retained_messages_max` or `retained_bytes_max`.
    Refused,
    /// Older than what the store knows of the topic (a newer message or
    /// deletion): ignored.
    Stale,
}

impl Stored {
    /// The store's content (or its knowledge of a deletion) changed.
    pub fn changed(self) -> bool {
        matches!(self, Stored::Set | Stored::Replaced | Stored::Deleted)
    }
}

pub struct RetainedStore {
    root: Node,
    count: usize,
    bytes: usize,
    messages_max: usize,
    bytes_max: usize,
    /// Deleted topics and the stamp of their deletion, with their order of
    /// insertion (oldest first) to forget beyond `tombstones_max`.
    tombs: hashbrown::HashMap<Box<str>, (u64, u64), super::trie::SeededState>,
    /// Tombstones by (stamp, seq): the oldest deletion is forgotten first.
    tomb_order: std::collections::BTreeMap<(u64, u64), Box<str>>,
    tomb_seq: u64,
    tombstones_max: usize,
    /// The newest stamp of a forgotten tombstone: a deletion of an unknown
    /// topic stamped no later than this is stale (else two stores with more
    /// tombstones between them than either keeps would hand the same ones
    /// back and forth for ever).
    forgotten: u64,
}

impl RetainedStore {
    pub fn new(messages_max: usize, bytes_max: usize) -> Self {
        RetainedStore {
            root: Node::default(),
            count: 0,
            bytes: 0,
            messages_max,
            bytes_max,
            tombs: Default::default(),
            tomb_order: Default::default(),
            tomb_seq: 0,
            tombstones_max: 0,
            forgotten: 0,
        }
    }

    /// Keeps up to `max` tombstones of stamped deletions (0 = none).
    pub fn with_tombstones(mut self, max: usize) -> Self {
        self.tombstones_max = max;
        self
    }

    pub fn set_limits(&mut self, messages_max: usize, bytes_max: usize) {
        if self.tombstones_max > 0 {
            self.tombstones_max = messages_max.max(1);
        }
        self.messages_max = messages_max;
        self.bytes_max = bytes_max;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Applies an unversioned retained publish: an empty payload deletes
    /// (MQTT-3.3.1-10).
    pub fn apply(&mut self, event: &Event) -> Stored {
        self.apply_stamped(event, 0)
    }

    /// The stamp for a retained publish on `topic` entering here now: the
    /// wall clock, or just past what the store knows of the topic if that
    /// is later (a clock stepped back must not make a new publish stale).
    pub fn next_stamp(&self, topic: &str, wall_ns: u64) -> u64 {
        let known = self
            .find_node(topic)
            .filter(|n| n.event.is_some())
            .map(|n| n.stamp)
            .or_else(|| self.tombs.get(topic).map(|t| t.0))
            .unwrap_or(0);
        wall_ns.max(known + 1)
    }

    /// The stamp of `topic`'s retained message (0: unversioned), if it has
    /// one: the HTTP edge's event ids for a replay.
    pub fn stamp(&self, topic: &str) -> Option<u64> {
        self.find_node(topic)
            .filter(|n| n.event.is_some())
            .map(|n| n.stamp)
    }

    /// Applies a retained publish stamped `stamp` (see the module comment).
    pub fn apply_stamped(&mut self, event: &Event, stamp: u64) -> Stored {
        let topic = event.topic();
        if stamp != 0 {
            // A total order, the same on every router: the stamp, then the
            // payload (a deletion's is empty), so that two writes stamped
            // alike cannot leave two stores disagreeing.
            let known = match self.find_node(topic).filter(|n| n.event.is_some()) {
                Some(n) => Some((n.stamp, n.event.as_ref().map_or(&[][..], |e| e.payload()))),
                None => self.tombs.get(topic).map(|t| (t.0, &[][..])),
            };
            if known.is_some_and(|k| k >= (stamp, event.payload())) {
                return Stored::Stale;
            }
            if known.is_none() && event.payload().is_empty() && stamp <= self.forgotten {
                return Stored::Stale;
            }
        }
        if event.payload().is_empty() {
            let removed = self.remove(topic);
            if stamp != 0 && self.tombstones_max > 0 && self.bury(topic, stamp) {
                return Stored::Deleted;
            }
            if stamp != 0 && removed == Stored::Absent {
                return Stored::Stale; // nothing here, and not worth a tombstone
            }
            return removed;
        }
        self.unbury(topic);
        let size = event.payload().len();
        // Check the bounds before creating any node.
        let existing = self.find(event.topic()).map(|e| e.payload().len());
        let (count_after, bytes_after) = match existing {
            Some(old) => (self.count, self.bytes - old + size),
            None => (self.count + 1, self.bytes + size),
        };
        if count_after > self.messages_max || bytes_after > self.bytes_max {
            return Stored::Refused;
        }
        let mut node = &mut self.root;
        for level in event.topic().split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let replaced = node.event.replace(event.clone()).is_some();
        node.stamp = stamp;
        self.count = count_after;
        self.bytes = bytes_after;
        if replaced {
            Stored::Replaced
        } else {
            Stored::Set
        }
    }

    fn find(&self, topic: &str) -> Option<&Event> {
        self.find_node(topic)?.event.as_ref()
    }

    fn find_node(&self, topic: &str) -> Option<&Node> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    /// Keeps a tombstone; false (and counted as forgotten at once) when the
    /// tombstones are full of newer ones.
    fn bury(&mut self, topic: &str, stamp: u64) -> bool {
        self.unbury(topic);
        if self.tombs.len() >= self.tombstones_max
            && self
                .tomb_order
                .first_key_value()
                .is_some_and(|((oldest, _), _)| *oldest > stamp)
        {
            self.forgotten = self.forgotten.max(stamp);
            return false;
        }
        while self.tombs.len() >= self.tombstones_max {
            let Some(((oldest_stamp, _), oldest)) = self.tomb_order.pop_first() else {
                break;
            };
            self.tombs.remove(&oldest);
            self.forgotten = self.forgotten.max(oldest_stamp);
        }
        self.tomb_seq += 1;
        self.tombs.insert(topic.into(), (stamp, self.tomb_seq));
        self.tomb_order.insert((stamp, self.tomb_seq), topic.into());
        true
    }

    fn unbury(&mut self, topic: &str) {
        if let Some((stamp, seq)) = self.tombs.remove(topic) {
            self.tomb_order.remove(&(stamp, seq));
        }
    }

    pub fn tombstones(&self) -> usize {
        self.tombs.len()
    }

    /// Every stamped message and tombstone (as an empty-payload event),
    /// with its stamp: what this store tells a peer router that (re)joins.
    pub fn snapshot(&self) -> Vec<(Event, u64)> {
        fn walk(node: &Node, out: &mut Vec<(Event, u64)>) {
            if let Some(e) = &node.event {
                if node.stamp != 0 {
                    out.push((e.clone(), node.stamp));
                }
            }
            for child in node.children.values() {
                walk(child, out);
            }
        }
        let mut out = Vec::with_capacity(self.count + self.tombs.len());
        walk(&self.root, &mut out);
        for (topic, (stamp, _)) in &self.tombs {
            out.push((Event::new(topic, b"", 0, true), *stamp));
        }
        out
    }

    fn remove(&mut self, topic: &str) -> Stored {
        fn walk<'a>(node: &mut Node, mut levels: impl Iterator<Item = &'a str>) -> Option<Event> {
            let Some(level) = levels.next() else {
                return node.event.take();
            };
            let child = node.children.get_mut(level)?;
            let removed = walk(child, levels);
            if child.is_empty() {
                node.children.remove(level);
            }
            removed
        }
        match walk(&mut self.root, topic.split('/')) {
            Some(old) => {
                self.count -= 1;
                self.bytes -= old.payload().len();
                Stored::Deleted
            }
            None => Stored::Absent,
        }
    }

    /// Appends the retained events whose topics match `filter` (a valid
    /// filter), following the `$` rule of MQTT-4.7.2-1.
    pub fn matching(&self, filter: &str, out: &mut Vec<Event>) {
        let levels: Vec<&str> = filter.split('/').collect();
        collect(&self.root, &levels, 0, out);
    }
}

fn collect(node: &Node, filter: &[&str], depth: usize, out: &mut Vec<Event>) {
    let Some(&level) = filter.get(depth) else {
        out.extend(node.event.iter().cloned());
        return;
    };
    match level {
        "#" => {
            // `a/#` also matches `a` itself.
            out.extend(node.event.iter().cloned());
            for (name, child) in &node.children {
                if depth == 0 && name.starts_with('$') {
                    continue;
                }
                everything(child, out);
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if depth == 0 && name.starts_with('$') {
                    continue;
                }
                collect(child, filter, depth + 1, out);
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                collect(child, filter, depth + 1, out);
            }
        }
    }
}

fn everything(node: &Node, out: &mut Vec<Event>) {
    out.extend(node.event.iter().cloned());
    for child in node.children.values() {
        everything(child, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::filter_matches;

    fn ev(topic: &str, payload: &str) -> Event {
        Event::new(topic, payload.as_bytes(), 0, true)
    }

    fn topics(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.matching(filter, &mut out);
        let mut t: Vec<String> = out.iter().map(|e| e.topic().to_string()).collect();
        t.sort();
        t
    }

    #[test]
    fn set_replace_delete_and_match() {
        let mut s = RetainedStore::new(10, 1000);
        let all = ["a", "a/b", "a/b/c", "a//c", "$SYS/x", "x/y"];
        for t in all {
            assert_eq!(s.apply(&ev(t, "1")), Stored::Set);
        }
        assert_eq!(s.apply(&ev("a/b", "22")), Stored::Replaced);
        assert_eq!((s.len(), s.bytes()), (6, 7));
        for filter in [
            "#", "a/#", "a/+", "+/+", "+/+/c", "$SYS/#", "+", "a/b", "nope/#",
        ] {
            let want: Vec<String> = {
                let mut w: Vec<String> = all
                    .iter()
                    .filter(|t| filter_matches(filter, t))
                    .map(|t| t.to_string())
                    .collect();
                w.sort();
                w
            };
            assert_eq!(topics(&s, filter), want, "filter {filter}");
        }
        assert_eq!(s.apply(&ev("a/b", "")), Stored::Deleted);
        assert_eq!(s.apply(&ev("a/b", "")), Stored::Absent);
        assert_eq!(topics(&s, "a/b"), Vec::<String>::new());
        assert_eq!(topics(&s, "a/b/c"), vec!["a/b/c"], "children survive");
        for t in all {
            s.apply(&ev(t, ""));
        }
        assert!(s.is_empty());
        assert!(s.root.is_empty(), "pruned");
    }

    #[test]
    fn stamps_keep_the_last_writer_and_deletions() {
        let mut s = RetainedStore::new(10, 1000).with_tombstones(2);
        assert_eq!(s.apply_stamped(&ev("t", "new"), 20), Stored::Set);
        assert_eq!(s.apply_stamped(&ev("t", "old"), 10), Stored::Stale);
        assert_eq!(
            s.apply_stamped(&ev("t", "new"), 20),
            Stored::Stale,
            "a copy"
        );
        assert_eq!(topics(&s, "t"), vec!["t"]);
        let mut out = Vec::new();
        s.matching("t", &mut out);
        assert_eq!(out[0].payload(), b"new");
        // A deletion leaves a tombstone: an older copy does not return.
        assert_eq!(s.apply_stamped(&ev("t", ""), 30), Stored::Deleted);
        assert_eq!(s.apply_stamped(&ev("t", "new"), 20), Stored::Stale);
        assert!(s.is_empty());
        assert_eq!(s.snapshot().len(), 1, "the tombstone");
        assert_eq!(s.snapshot()[0].1, 30);
        // A newer write wins over the tombstone and removes it.
        assert_eq!(s.apply_stamped(&ev("t", "newest"), 40), Stored::Set);
        assert_eq!(s.tombstones(), 0);
        // A deletion of an unknown topic is news too (its tombstone).
        assert_eq!(s.apply_stamped(&ev("u", ""), 5), Stored::Deleted);
        assert_eq!(s.apply_stamped(&ev("u", ""), 5), Stored::Stale);
        // Bounded: the oldest tombstones go first, and a deletion no newer
        // than a forgotten one is stale (two full stores cannot trade
        // tombstones for ever).
        s.apply_stamped(&ev("v", ""), 6);
        s.apply_stamped(&ev("w", ""), 7);
        assert_eq!(s.tombstones(), 2);
        assert_eq!(s.apply_stamped(&ev("u", ""), 5), Stored::Stale, "forgotten");
        assert_eq!(
            s.apply_stamped(&ev("o", ""), 4),
            Stored::Stale,
            "older than all kept"
        );
        assert_eq!(s.tombstones(), 2);
        assert_eq!(
            s.apply_stamped(&ev("u", "back"), 1),
            Stored::Set,
            "forgotten"
        );
        // Equal stamps: the larger payload wins, the same everywhere.
        assert_eq!(s.apply_stamped(&ev("e", "b"), 50), Stored::Set);
        assert_eq!(s.apply_stamped(&ev("e", "a"), 50), Stored::Stale);
        assert_eq!(s.apply_stamped(&ev("e", "c"), 50), Stored::Replaced);
        assert_eq!(s.apply_stamped(&ev("e", ""), 50), Stored::Stale);
        let snap: Vec<(String, u64)> = s
            .snapshot()
            .iter()
            .map(|(e, st)| (e.topic().to_string(), *st))
            .collect();
        assert!(snap.contains(&("t".into(), 40)) && snap.contains(&("u".into(), 1)));
        // A local publish always wins, even when the clock went back.
        let stamp = s.next_stamp("t", 39);
        assert_eq!(stamp, 41);
        assert_eq!(s.apply_stamped(&ev("t", "later"), stamp), Stored::Replaced);
        assert_eq!(s.next_stamp("nope", 39), 39);
        // Unversioned writes (the mesh off) always apply, and keep no
        // tombstones.
        let mut plain = RetainedStore::new(10, 1000);
        assert_eq!(plain.apply(&ev("t", "")), Stored::Absent);
        assert_eq!(plain.tombstones(), 0);
    }

    #[test]
    fn bounded() {
        let mut s = RetainedStore::new(2, 10);
        assert_eq!(s.apply(&ev("a", "12345")), Stored::Set);
        assert_eq!(s.apply(&ev("b", "12345")), Stored::Set);
        assert_eq!(s.apply(&ev("c", "1")), Stored::Refused, "count");
        assert_eq!(s.apply(&ev("a", "123456")), Stored::Refused, "bytes");
        assert_eq!(s.apply(&ev("a", "1")), Stored::Replaced);
        assert_eq!(s.apply(&ev("b", "")), Stored::Deleted);
        assert_eq!(s.apply(&ev("c", "1")), Stored::Set);
    }
}
