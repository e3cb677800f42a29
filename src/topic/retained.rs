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

use crate::event::Event;

#[derive(Default)]
struct Node {
    children: hashbrown::HashMap<Box<str>, Node, super::trie::SeededState>,
    event: Option<Event>,
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
}

pub struct RetainedStore {
    root: Node,
    count: usize,
    bytes: usize,
    messages_max: usize,
    bytes_max: usize,
}

impl RetainedStore {
    pub fn new(messages_max: usize, bytes_max: usize) -> Self {
        RetainedStore {
            root: Node::default(),
            count: 0,
            bytes: 0,
            messages_max,
            bytes_max,
        }
    }

    pub fn set_limits(&mut self, messages_max: usize, bytes_max: usize) {
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

    /// Applies a retained publish: an empty payload deletes (MQTT-3.3.1-10).
    pub fn apply(&mut self, event: &Event) -> Stored {
        if event.payload().is_empty() {
            return self.remove(event.topic());
        }
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
        self.count = count_after;
        self.bytes = bytes_after;
        if replaced {
            Stored::Replaced
        } else {
            Stored::Set
        }
    }

    fn find(&self, topic: &str) -> Option<&Event> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.event.as_ref()
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
