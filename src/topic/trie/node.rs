//! The trie's nodes and edges, path-compressed.
//!
//! Owns: the shape of one node (its literal edges, `+` and `#` slots,
//! subscribers and shard interest) and the canonical form the trie keeps
//! after every change:
//! - a literal edge carries a *label* of one or more literal levels joined
//!   by `/` (a chain of single-child levels in one edge); two edges of a
//!   node never share their first level, and labels hold no wildcard;
//! - no node below the root is a pass-through (nothing but one literal
//!   edge): it is merged into its parent's edge;
//! - an edge whose node would hold exactly one plain local subscriber and
//!   nothing else stores that subscriber in the edge itself
//!   ([`Next::Leaf`]), without a node: the common case of a million
//!   distinct device filters costs one edge each;
//! - no empty node remains (pruned on the way back from a removal).
//!
//! Bounds: none of its own; every node exists for a subscription or an
//! interest entry, which `limits.subscriptions_max` and the shard count
//! bound. Hand-written: the crates of radix trees key on bytes, not on
//! levels with `+`/`#` slots, and none keeps the leaf-in-edge form.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use smallvec::SmallVec;

use super::{LocalSub, SeededState, ShardMask};

/// A literal edge: its levels and what is below them.
pub(super) struct Edge {
    pub label: Box<str>,
    pub next: Next,
}

pub(super) enum Next {
    /// One plain local subscriber of exactly this filter, nothing else.
    Leaf(LocalSub),
    Node(Box<Node>),
}

/// The first level of a label (or of a topic's rest).
#[inline]
pub(super) fn first_level(label: &str) -> &str {
    label.split_once('/').map_or(label, |(first, _)| first)
}

/// Whether `label` starts with the whole level `level`.
#[inline]
fn starts_with_level(label: &str, level: &str) -> bool {
    label.starts_with(level) && label.as_bytes().get(level.len()).is_none_or(|&b| b == b'/')
}

#[inline]
fn hash_level(level: &str) -> u64 {
    SeededState.hash_one(level)
}

/// Literal edges of a node. Most nodes have one or a few: those keep an
/// exact-size slice searched linearly; past `SMALL_CHILDREN_MAX` a hash
/// table of edges keyed by their first level (and back to a slice when
/// it shrinks to half that).
pub(super) enum Children {
    Small(Box<[Edge]>),
    Large(Box<HashTable<Edge>>),
}

pub(super) const SMALL_CHILDREN_MAX: usize = 8;

impl Default for Children {
    fn default() -> Self {
        Children::Small(Box::default())
    }
}

impl Children {
    pub fn len(&self) -> usize {
        match self {
            Children::Small(v) => v.len(),
            Children::Large(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The edge whose first level is `level`.
    #[inline]
    pub fn find(&self, level: &str) -> Option<&Edge> {
        match self {
            Children::Small(v) => v.iter().find(|e| starts_with_level(&e.label, level)),
            Children::Large(m) => m.find(hash_level(level), |e| starts_with_level(&e.label, level)),
        }
    }

    pub fn find_mut(&mut self, level: &str) -> Option<&mut Edge> {
        match self {
            Children::Small(v) => v.iter_mut().find(|e| starts_with_level(&e.label, level)),
            Children::Large(m) => {
                m.find_mut(hash_level(level), |e| starts_with_level(&e.label, level))
            }
        }
    }

    /// Adds an edge whose first level no other edge has.
    pub fn insert(&mut self, edge: Edge) {
        match self {
            Children::Small(v) if v.len() < SMALL_CHILDREN_MAX => {
                let mut grown = std::mem::take(v).into_vec();
                grown.reserve_exact(1);
                grown.push(edge);
                *v = grown.into_boxed_slice();
            }
            Children::Small(v) => {
                let old = std::mem::take(v).into_vec();
                let mut table = HashTable::with_capacity(old.len() + 1);
                for e in old.into_iter().chain(std::iter::once(edge)) {
                    table.insert_unique(hash_level(first_level(&e.label)), e, |e| {
                        hash_level(first_level(&e.label))
                    });
                }
                *self = Children::Large(Box::new(table));
            }
            Children::Large(m) => {
                m.insert_unique(hash_level(first_level(&edge.label)), edge, |e| {
                    hash_level(first_level(&e.label))
                });
            }
        }
    }

    /// Removes the edge whose first level is `level`.
    pub fn remove(&mut self, level: &str) -> Option<Edge> {
        match self {
            Children::Small(v) => {
                let at = v.iter().position(|e| starts_with_level(&e.label, level))?;
                let mut kept = std::mem::take(v).into_vec();
                let edge = kept.swap_remove(at);
                *v = kept.into_boxed_slice();
                Some(edge)
            }
            Children::Large(m) => {
                let edge = m
                    .find_entry(hash_level(level), |e| starts_with_level(&e.label, level))
                    .ok()?
                    .remove()
                    .0;
                if m.len() <= SMALL_CHILDREN_MAX / 2 {
                    let edges: Vec<Edge> = m.drain().collect();
                    *self = Children::Small(edges.into_boxed_slice());
                } else if m.len() * 4 < m.capacity() {
                    // Give the slack back once three quarters are gone.
                    m.shrink_to_fit(|e| hash_level(first_level(&e.label)));
                }
                Some(edge)
            }
        }
    }

    /// The only edge, taken out (the node is merged into its parent).
    pub fn take_only(&mut self) -> Edge {
        debug_assert_eq!(self.len(), 1);
        let edges: Vec<Edge> = match std::mem::take(self) {
            Children::Small(v) => v.into_vec(),
            Children::Large(mut m) => m.drain().collect(),
        };
        edges.into_iter().next().expect("one edge")
    }

    #[cfg(test)]
    pub fn iter(&self) -> Box<dyn Iterator<Item = &Edge> + '_> {
        match self {
            Children::Small(v) => Box::new(v.iter()),
            Children::Large(m) => Box::new(m.iter()),
        }
    }
}

#[derive(Default)]
pub(super) struct Node {
    pub children: Children,
    pub plus: Option<Box<Node>>,
    pub hash: Option<Box<Node>>,
    pub local: SmallVec<[LocalSub; 1]>,
    pub remote: ShardMask,
    /// Queue groups on this filter; boxed, as most filters have none: 8
    /// bytes per node instead of a Vec's 24.
    #[allow(clippy::box_collection)]
    pub groups: Option<Box<Vec<GroupEntry>>>,
}

pub(super) struct GroupEntry {
    pub name: Arc<str>,
    pub local: SmallVec<[LocalSub; 1]>,
    pub remote: ShardMask,
}

impl Node {
    /// Nothing below and nothing here besides the literal edges.
    fn bare(&self) -> bool {
        self.plus.is_none() && self.hash.is_none() && self.remote == 0 && self.groups.is_none()
    }

    pub fn is_empty(&self) -> bool {
        self.bare() && self.children.is_empty() && self.local.is_empty()
    }

    /// The subscriber of a node that only holds it: it fits in the edge.
    fn leaf(&self) -> Option<LocalSub> {
        match self.local.as_slice() {
            [only] if self.bare() && self.children.is_empty() => Some(*only),
            _ => None,
        }
    }

    /// A node with one literal edge and nothing else: merged upwards.
    fn pass_through(&self) -> bool {
        self.bare() && self.local.is_empty() && self.children.len() == 1
    }

    /// The subscriber list and shard mask of the plain filter or of one
    /// of its groups, created on demand.
    pub fn slot_mut(
        &mut self,
        group: Option<&str>,
    ) -> (&mut SmallVec<[LocalSub; 1]>, &mut ShardMask) {
        let Some(name) = group else {
            return (&mut self.local, &mut self.remote);
        };
        let groups = self.groups.get_or_insert_with(Default::default);
        let at = match groups.iter().position(|g| &*g.name == name) {
            Some(at) => at,
            None => {
                groups.push(GroupEntry {
                    name: name.into(),
                    local: SmallVec::new(),
                    remote: 0,
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        (&mut g.local, &mut g.remote)
    }

    /// Drops group entries left empty.
    pub fn prune_groups(&mut self) {
        if let Some(groups) = &mut self.groups {
            groups.retain(|g| !g.local.is_empty() || g.remote != 0);
            if groups.is_empty() {
                self.groups = None;
            }
        }
    }
}

impl Next {
    /// The node behind the edge, a leaf made a node first.
    pub fn node_mut(&mut self) -> &mut Node {
        if let Next::Leaf(sub) = *self {
            let mut node = Box::<Node>::default();
            node.local.push(sub);
            *self = Next::Node(node);
        }
        match self {
            Next::Node(node) => node,
            Next::Leaf(_) => unreachable!("made a node above"),
        }
    }
}

/// How many levels `label` shares with the start of `levels`, and how many
/// levels `label` has.
pub(super) fn common_levels(label: &str, levels: &[&str]) -> (usize, usize) {
    let mut common = 0;
    let mut total = 0;
    let mut diverged = false;
    for (i, l) in label.split('/').enumerate() {
        total += 1;
        if !diverged && levels.get(i) == Some(&l) {
            common += 1;
        } else {
            diverged = true;
        }
    }
    (common, total)
}

/// The byte length of the first `n` levels of `label` (n ≥ 1, fewer than
/// its levels).
pub(super) fn prefix_bytes(label: &str, n: usize) -> usize {
    label
        .match_indices('/')
        .nth(n - 1)
        .map(|(at, _)| at)
        .expect("label has more than n levels")
}

/// What the trie does to an edge after a change below it.
pub(super) enum Fix {
    Keep,
    /// Its node is empty: the edge goes.
    Drop,
    /// Its node was a pass-through: merged, one node fewer.
    Merged,
}

/// Brings `edge` back to the canonical form after a change below it.
pub(super) fn normalize(edge: &mut Edge) -> Fix {
    let Next::Node(node) = &mut edge.next else {
        return Fix::Keep;
    };
    if node.is_empty() {
        return Fix::Drop;
    }
    if node.pass_through() {
        let child = node.children.take_only();
        let mut label = String::with_capacity(edge.label.len() + 1 + child.label.len());
        label.push_str(&edge.label);
        label.push('/');
        label.push_str(&child.label);
        edge.label = label.into_boxed_str();
        edge.next = child.next;
        return Fix::Merged;
    }
    if let Some(sub) = node.leaf() {
        edge.next = Next::Leaf(sub);
    }
    Fix::Keep
}
