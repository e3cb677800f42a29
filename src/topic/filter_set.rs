//! A session's set of filters with their granted QoS, compact.
//!
//! Owns: what a session holds (to answer "has it this filter", to list
//! them, and to release them all when it ends). A hash map of owned
//! strings costs a 24-byte slot (at the table's load, ~32), and a heap
//! block per filter (rounded up by the allocator) on top of its bytes:
//! ~57 bytes for a 21-byte filter. Here the filters live one after the
//! other in one byte arena (`[len varint][qos][bytes]`), and a hash table
//! of 4-byte offsets indexes them: ~35 bytes for the same filter. Removal
//! marks a record dead; the arena is compacted once dead bytes outweigh
//! live ones, and its slack given back when it shrinks.
//!
//! Bounds: none of its own: its callers bound the filters per session
//! (`limits.subscriptions_per_session_max`) and their length
//! (`limits.topic_bytes_max`); offsets are u32, so one session's filters
//! total at most 4 GiB. Hand-written: no crate keeps a string set in an
//! arena with an offset index and a QoS per entry.
//!
//! Iteration is in insertion order (a QoS replaced in place keeps its
//! place).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::trie::SeededState;

/// Marks a dead record in place of its QoS byte.
const DEAD: u8 = 0xff;

#[derive(Default)]
pub struct FilterSet {
    arena: Vec<u8>,
    index: HashTable<u32>,
    /// Bytes of dead records in `arena`.
    dead: usize,
}

fn hash(filter: &str) -> u64 {
    SeededState.hash_one(filter)
}

/// Reads the record at `at`: (filter, qos offset, end).
fn record(arena: &[u8], at: u32) -> (&str, usize, usize) {
    let mut at = at as usize;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = arena[at];
        at += 1;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let qos_at = at;
    let bytes = &arena[qos_at + 1..qos_at + 1 + len];
    let filter = std::str::from_utf8(bytes).expect("written from a str");
    (filter, qos_at, qos_at + 1 + len)
}

impl FilterSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn find(&self, filter: &str) -> Option<u32> {
        let arena = &self.arena;
        self.index
            .find(hash(filter), |&at| record(arena, at).0 == filter)
            .copied()
    }

    pub fn contains_key(&self, filter: &str) -> bool {
        self.find(filter).is_some()
    }

    pub fn get(&self, filter: &str) -> Option<u8> {
        let at = self.find(filter)?;
        let (_, qos_at, _) = record(&self.arena, at);
        Some(self.arena[qos_at])
    }

    /// Adds `filter` with `qos` (< 0xff), or replaces its QoS: the old one.
    pub fn insert(&mut self, filter: &str, qos: u8) -> Option<u8> {
        debug_assert_ne!(qos, DEAD);
        if let Some(at) = self.find(filter) {
            let (_, qos_at, _) = record(&self.arena, at);
            return Some(std::mem::replace(&mut self.arena[qos_at], qos));
        }
        let at = u32::try_from(self.arena.len()).expect("filters of a session under 4 GiB");
        let mut len = filter.len();
        loop {
            let low = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                self.arena.push(low);
                break;
            }
            self.arena.push(low | 0x80);
        }
        self.arena.push(qos);
        self.arena.extend_from_slice(filter.as_bytes());
        let arena = &self.arena;
        self.index
            .insert_unique(hash(filter), at, |&at| hash(record(arena, at).0));
        None
    }

    /// Removes `filter`: its QoS, `None` if the set had none.
    pub fn remove(&mut self, filter: &str) -> Option<u8> {
        let arena = &self.arena;
        let at = self
            .index
            .find_entry(hash(filter), |&at| record(arena, at).0 == filter)
            .ok()?
            .remove()
            .0;
        let (_, qos_at, end) = record(&self.arena, at);
        let qos = std::mem::replace(&mut self.arena[qos_at], DEAD);
        self.dead += end - at as usize;
        if self.index.is_empty() {
            *self = Self::default();
        } else if self.dead > self.arena.len() / 2 {
            self.compact();
        }
        Some(qos)
    }

    /// Rewrites the arena without its dead records, and sizes the arena and
    /// the index to what is left.
    fn compact(&mut self) {
        let kept: Vec<(Box<str>, u8)> = self.iter().map(|(f, q)| (f.into(), q)).collect();
        *self = Self::default();
        self.arena
            .reserve_exact(kept.iter().map(|(f, _)| f.len() + 3).sum());
        self.index
            .reserve(kept.len(), |_| unreachable!("reserved empty"));
        for (f, q) in kept {
            self.insert(&f, q);
        }
    }

    /// The filters and their QoS, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || loop {
            if at >= self.arena.len() {
                return None;
            }
            let (filter, qos_at, end) = record(&self.arena, at as u32);
            at = end;
            let qos = self.arena[qos_at];
            if qos != DEAD {
                return Some((filter, qos));
            }
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(f, _)| f)
    }

    /// Empties the set (its memory given back): what it held.
    pub fn drain(&mut self) -> Vec<(Box<str>, u8)> {
        let out = self.iter().map(|(f, q)| (f.into(), q)).collect();
        *self = Self::default();
        out
    }

    /// Heap bytes held (arena and index), for the memory tests.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.index.allocation_size()
    }
}

impl std::fmt::Debug for FilterSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replace_remove_iterate() {
        let mut s = FilterSet::new();
        assert!(s.is_empty());
        assert_eq!(s.insert("a/b", 1), None);
        assert_eq!(s.insert("$share/g/a/#", 0), None);
        assert_eq!(s.insert("", 2), None, "any string is kept as given");
        assert_eq!(s.insert("a/b", 2), Some(1), "QoS replaced in place");
        assert_eq!(s.len(), 3);
        assert!(s.contains_key("a/b") && !s.contains_key("a"));
        assert_eq!(s.get("a/b"), Some(2));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![("a/b", 2), ("$share/g/a/#", 0), ("", 2)]
        );
        assert_eq!(s.remove("a/b"), Some(2));
        assert_eq!(s.remove("a/b"), None);
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["$share/g/a/#", ""]);
        assert_eq!(s.drain(), vec![("$share/g/a/#".into(), 0), ("".into(), 2)]);
        assert!(s.is_empty() && s.heap_bytes() == 0);
    }

    /// Long filters (multi-byte lengths), many removals (compaction), and
    /// a model map agreeing at every step.
    #[test]
    fn agrees_with_a_map_through_compactions() {
        let mut s = FilterSet::new();
        let mut model = std::collections::BTreeMap::<String, u8>::new();
        let mut x: u64 = 7;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = match (x >> 33) % 5 {
                0 => format!("long/{}/{}", (x >> 40) % 300, "x".repeat(200)),
                _ => format!("site/{}/dev/{}", (x >> 40) % 30, (x >> 50) % 30),
            };
            let qos = ((x >> 20) % 3) as u8;
            if (x >> 30).is_multiple_of(3) {
                assert_eq!(s.remove(&key), model.remove(&key), "step {step}");
            } else {
                assert_eq!(s.insert(&key, qos), model.insert(key.clone(), qos));
            }
            assert_eq!(s.len(), model.len());
            if step % 997 == 0 {
                let mut got: Vec<(String, u8)> =
                    s.iter().map(|(f, q)| (f.to_string(), q)).collect();
                got.sort();
                let want: Vec<(String, u8)> = model.iter().map(|(f, q)| (f.clone(), *q)).collect();
                assert_eq!(got, want);
                let live: usize = s.iter().map(|(f, _)| f.len() + 4).sum();
                assert!(s.arena.len() <= 2 * live + 4096, "compacted");
            }
        }
        for k in model.keys() {
            assert!(s.remove(k).is_some());
        }
        assert!(s.is_empty() && s.heap_bytes() == 0);
    }
}
