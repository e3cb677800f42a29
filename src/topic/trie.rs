//! The per-shard subscription trie: local subscriptions *and* the interest
//! of the other shards, in one structure.
//!
//! DESIGN.md describes two levels: a local trie (filter → this shard's
//! sessions) and an interest table (filter → other shards with at least one
//! subscriber). Both are keyed by the same filters and walked by the same
//! publish, so weft keeps them in one trie whose nodes carry both: the local
//! subscriber list and a bitmask of the other shards that want the filter.
//! One walk on the ingress shard yields the local sessions and the set of
//! shards to hand the event to; a receiving shard walks only for its own
//! sessions. This halves memory per subscription and the work per publish
//! compared with two separate tries. Limit: 64 shards per process
//! (`ShardMask = u64`); run one process per NUMA node beyond that.
//!
//! Shape follows nats-server's sublist: literal children in a hash map,
//! dedicated `+` and `#` slots, pruning on removal, and a bounded match cache
//! that any change invalidates; path-compressed ([`node`]): a chain of
//! single-child literal levels is one edge, and an edge to a filter with
//! one plain subscriber holds it without a node of its own. Bytes per
//! subscription: `perf/memory.sh`, and the counting test in `tests.rs`.
//! Bench: `cargo bench --bench trie` before changing anything on the match
//! path.

use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use smallvec::SmallVec;

use node::{common_levels, normalize, prefix_bytes, Edge, Fix, Next, Node};

mod node;
#[cfg(test)]
mod tests;

/// A subscriber in its shard's tables: an MQTT session (one key per
/// session, so overlapping filters deliver once) or a NATS subscription
/// (one key per SUB, as NATS delivers once per subscription).
pub type SessionKey = u32;
/// One bit per shard of the process.
pub type ShardMask = u64;
/// Highest number of shards a [`ShardMask`] can name.
pub const SHARDS_MAX: usize = 64;

/// A session's subscription as the trie stores it. `qos` carries the MQTT
/// 5 subscription options in its upper bits: [`NO_LOCAL`] and
/// [`RETAIN_AS_PUBLISHED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSub {
    pub session: SessionKey,
    pub qos: u8,
}

/// Subscription option: never deliver the session's own publishes.
pub const NO_LOCAL: u8 = 0x04;
/// Subscription option: keep the publisher's retain flag on delivery.
pub const RETAIN_AS_PUBLISHED: u8 = 0x08;
/// Authorization: the subscription's filter reaches topics its session
/// may not read, so each delivery to it is tested
/// (`security::permissions`); unmarked subscriptions pay nothing.
pub const CHECKED: u8 = 0x10;

/// What a topic matched: this shard's plain subscribers (one entry per
/// key, at the highest QoS of its matching filters), the other shards with
/// plain subscribers, and the queue groups (NATS queue groups, MQTT shared
/// subscriptions) with their members here and elsewhere.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Matched {
    pub local: Box<[LocalSub]>,
    pub remote: ShardMask,
    pub groups: Box<[GroupMatch]>,
    /// The topic's NATS subject, converted at its first NATS delivery and
    /// kept as long as this match is cached.
    pub subject: SubjectMemo,
}

/// A topic's NATS subject (`topic::subject`), filled by the router at the
/// first NATS delivery of a topic and kept with its cached match: a
/// subject is converted once per distinct topic while the match cache
/// holds it (bounded by `match_cache_entries_max`; any subscription change
/// empties it), not once per event. A memo, not part of the match: two
/// memos always compare equal.
#[derive(Debug, Default, Clone)]
pub struct SubjectMemo(std::cell::OnceCell<Rc<[u8]>>);

impl SubjectMemo {
    /// The memo's subject, made by `make` the first time.
    #[inline]
    pub fn get_or_init(&self, make: impl FnOnce() -> Rc<[u8]>) -> &Rc<[u8]> {
        self.0.get_or_init(make)
    }
}

impl PartialEq for SubjectMemo {
    fn eq(&self, _: &SubjectMemo) -> bool {
        true
    }
}

impl Eq for SubjectMemo {}

impl Matched {
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote == 0 && self.groups.is_empty()
    }
}

/// One queue group's members for a topic: each event goes to exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMatch {
    pub name: Arc<str>,
    pub local: Box<[LocalSub]>,
    pub remote: ShardMask,
}

static HASH_SEED: AtomicU64 = AtomicU64::new(0x5eed_5eed_5eed_5eed);

/// Sets the process-wide seed of the trie's hash maps. Topic levels come from
/// the network, so the seed is random per process (hash flooding defence);
/// the hasher itself stays zero-sized so that every trie node pays nothing
/// for it.
pub fn seed_hashes(seed: u64) {
    HASH_SEED.store(seed, Ordering::Relaxed);
}

#[derive(Clone, Copy, Default)]
pub struct SeededState;

impl BuildHasher for SeededState {
    type Hasher = foldhash::fast::FoldHasher;
    fn build_hasher(&self) -> Self::Hasher {
        foldhash::fast::FixedState::with_seed(HASH_SEED.load(Ordering::Relaxed)).build_hasher()
    }
}

type Map<K, V> = hashbrown::HashMap<K, V, SeededState>;

/// Result of adding a local subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The session already had this filter: its QoS was replaced.
    pub replaced: bool,
    /// This filter had no local subscriber before: tell the other shards.
    pub first_local: bool,
}

/// Result of removing a local subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// This was the filter's last local subscriber: tell the other shards.
    pub last_local: bool,
}

/// Counts that tests and metrics read; all zero when nobody subscribes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrieCounts {
    pub nodes: usize,
    pub local_subscriptions: usize,
    pub remote_entries: usize,
    pub cached_topics: usize,
}

pub struct Trie {
    root: Node,
    nodes: usize,
    local_subscriptions: usize,
    remote_entries: usize,
    cache: Map<Box<str>, Rc<Matched>>,
    cache_entries_max: usize,
    scratch: Vec<LocalSub>,
}

/// Topics deeper than this are split into a heap vector when matched; the
/// topic validator caps depth well below it by default.
const LEVELS_INLINE: usize = 16;

impl Trie {
    pub fn new(cache_entries_max: usize) -> Self {
        Trie {
            root: Node::default(),
            nodes: 0,
            local_subscriptions: 0,
            remote_entries: 0,
            cache: Map::default(),
            cache_entries_max,
            scratch: Vec::new(),
        }
    }

    pub fn counts(&self) -> TrieCounts {
        TrieCounts {
            nodes: self.nodes,
            local_subscriptions: self.local_subscriptions,
            remote_entries: self.remote_entries,
            cached_topics: self.cache.len(),
        }
    }

    fn invalidate(&mut self) {
        if !self.cache.is_empty() {
            self.cache = Map::default();
        }
    }

    /// Splits a filter into its levels (inline up to `LEVELS_INLINE`).
    fn levels(filter: &str) -> SmallVec<[&str; LEVELS_INLINE]> {
        filter.split('/').collect()
    }

    /// Adds or replaces `session`'s subscription to `filter` (a valid filter).
    pub fn add_local(&mut self, filter: &str, session: SessionKey, qos: u8) -> Added {
        self.add_local_in(filter, None, session, qos)
    }

    /// Adds a subscription, plain (`group` None) or as a member of a queue
    /// group. `first_local` is per (filter, group).
    pub fn add_local_in(
        &mut self,
        filter: &str,
        group: Option<&str>,
        session: SessionKey,
        qos: u8,
    ) -> Added {
        self.invalidate();
        let mut fresh = false;
        let added = update(
            &mut self.root,
            &Self::levels(filter),
            true,
            &mut self.nodes,
            &mut |node| {
                let (local, _) = node.slot_mut(group);
                let first_local = local.is_empty();
                if let Some(existing) = local.iter_mut().find(|s| s.session == session) {
                    existing.qos = qos;
                    return Some(Added {
                        replaced: true,
                        first_local: false,
                    });
                }
                local.push(LocalSub { session, qos });
                fresh = true;
                Some(Added {
                    replaced: false,
                    first_local,
                })
            },
        )
        .expect("created on the way");
        self.local_subscriptions += usize::from(fresh);
        added
    }

    /// Removes `session`'s subscription to `filter`; `None` if it had none.
    pub fn remove_local(&mut self, filter: &str, session: SessionKey) -> Option<Removed> {
        self.remove_local_in(filter, None, session)
    }

    pub fn remove_local_in(
        &mut self,
        filter: &str,
        group: Option<&str>,
        session: SessionKey,
    ) -> Option<Removed> {
        let removed = update(
            &mut self.root,
            &Self::levels(filter),
            false,
            &mut self.nodes,
            &mut |node| {
                if group.is_some() && node.groups.is_none() {
                    return None;
                }
                let (local, _) = node.slot_mut(group);
                let Some(at) = local.iter().position(|s| s.session == session) else {
                    node.prune_groups();
                    return None;
                };
                local.swap_remove(at);
                let last_local = local.is_empty();
                node.prune_groups();
                Some(Removed { last_local })
            },
        )?;
        self.local_subscriptions -= 1;
        self.invalidate();
        Some(removed)
    }

    /// Records that `shard` has at least one subscriber of `filter`.
    /// Returns false if it was already recorded.
    pub fn add_remote(&mut self, filter: &str, shard: usize) -> bool {
        self.add_remote_in(filter, None, shard)
    }

    pub fn add_remote_in(&mut self, filter: &str, group: Option<&str>, shard: usize) -> bool {
        debug_assert!(shard < SHARDS_MAX);
        self.invalidate();
        let bit = 1u64 << shard;
        let fresh = update(
            &mut self.root,
            &Self::levels(filter),
            true,
            &mut self.nodes,
            &mut |node| {
                let (_, remote) = node.slot_mut(group);
                let fresh = *remote & bit == 0;
                *remote |= bit;
                Some(fresh)
            },
        )
        .expect("created on the way");
        if fresh {
            self.remote_entries += 1;
        }
        fresh
    }

    /// Forgets `shard`'s interest in `filter`. Returns false if there was none.
    pub fn remove_remote(&mut self, filter: &str, shard: usize) -> bool {
        self.remove_remote_in(filter, None, shard)
    }

    pub fn remove_remote_in(&mut self, filter: &str, group: Option<&str>, shard: usize) -> bool {
        let bit = 1u64 << shard;
        let had = update(
            &mut self.root,
            &Self::levels(filter),
            false,
            &mut self.nodes,
            &mut |node| {
                if group.is_some() && node.groups.is_none() {
                    return None;
                }
                let (_, remote) = node.slot_mut(group);
                let had = *remote & bit != 0;
                *remote &= !bit;
                node.prune_groups();
                had.then_some(())
            },
        )
        .is_some();
        if had {
            self.remote_entries -= 1;
            self.invalidate();
        }
        had
    }

    /// Matches a (valid) topic name, through the cache.
    pub fn matches(&mut self, topic: &str) -> Rc<Matched> {
        if let Some(hit) = self.cache.get(topic) {
            return hit.clone();
        }
        let matched = Rc::new(self.match_uncached(topic));
        if self.cache_entries_max > 0 {
            if self.cache.len() >= self.cache_entries_max {
                // Bounded: start over rather than track recency; a hot set
                // larger than the cache gains little from any policy.
                self.cache.clear();
            }
            self.cache.insert(topic.into(), matched.clone());
        }
        matched
    }

    /// Matches without touching the cache (benches and the oracle tests).
    pub fn match_uncached(&mut self, topic: &str) -> Matched {
        let levels: SmallVec<[&str; LEVELS_INLINE]> = topic.split('/').collect();
        let mut out = Collected {
            local: std::mem::take(&mut self.scratch),
            remote: 0,
            groups: Vec::new(),
        };
        out.local.clear();
        let dollar = topic.starts_with('$');
        collect(&self.root, &levels, 0, dollar, &mut out);
        let local = dedup(&mut out.local);
        self.scratch = out.local;
        Matched {
            local,
            remote: out.remote,
            groups: out
                .groups
                .into_iter()
                .map(|(name, mut members, remote)| GroupMatch {
                    name,
                    local: dedup(&mut members),
                    remote,
                })
                .collect(),
            subject: SubjectMemo::default(),
        }
    }
}

/// One delivery per key, at the highest QoS granted among its overlapping
/// filters (MQTT-3.3.5-1 allows it; MQTT 5 requires it).
/// Overlapping subscriptions of one key merge: the highest QoS, no-local
/// only if every one says so, retain-as-published if any does, checked
/// only if every one is (a topic that one unchecked filter matches may be
/// read).
fn dedup(subs: &mut Vec<LocalSub>) -> Box<[LocalSub]> {
    subs.sort_unstable_by_key(|s| s.session);
    subs.dedup_by(|next, kept| {
        if next.session != kept.session {
            return false;
        }
        let (a, b) = (kept.qos, next.qos);
        kept.qos =
            (a & 3).max(b & 3) | (a & b & (NO_LOCAL | CHECKED)) | ((a | b) & RETAIN_AS_PUBLISHED);
        true
    });
    subs.as_slice().into()
}

struct Collected {
    local: Vec<LocalSub>,
    remote: ShardMask,
    groups: Vec<(Arc<str>, Vec<LocalSub>, ShardMask)>,
}

impl Collected {
    fn add(&mut self, node: &Node) {
        self.local.extend_from_slice(&node.local);
        self.remote |= node.remote;
        if let Some(groups) = &node.groups {
            for g in groups.iter() {
                match self.groups.iter_mut().find(|(n, _, _)| *n == g.name) {
                    Some((_, members, remote)) => {
                        members.extend_from_slice(&g.local);
                        *remote |= g.remote;
                    }
                    None => self
                        .groups
                        .push((g.name.clone(), g.local.to_vec(), g.remote)),
                }
            }
        }
    }
}

fn collect(node: &Node, levels: &[&str], depth: usize, dollar: bool, out: &mut Collected) {
    // MQTT-4.7.2-1: wildcards at the first level do not match `$` topics.
    let wildcards = !(dollar && depth == 0);
    if wildcards {
        if let Some(hash) = &node.hash {
            // `a/#` matches `a` itself and everything below it.
            out.add(hash);
        }
    }
    let Some(level) = levels.get(depth) else {
        out.add(node);
        return;
    };
    if wildcards {
        if let Some(plus) = &node.plus {
            collect(plus, levels, depth + 1, dollar, out);
        }
    }
    let Some(edge) = node.children.find(level) else {
        return;
    };
    // The edge's first level is `level`; the rest of its label must be
    // the topic's next levels.
    let mut depth = depth + 1;
    if edge.label.len() > level.len() {
        for l in edge.label[level.len() + 1..].split('/') {
            if levels.get(depth) != Some(&l) {
                return;
            }
            depth += 1;
        }
    }
    match &edge.next {
        Next::Leaf(sub) => {
            if depth == levels.len() {
                out.local.push(*sub);
            }
        }
        Next::Node(next) => collect(next, levels, depth, dollar, out),
    }
}

/// Descends along `levels` (creating the path when `create`), runs `edit`
/// on the node at the end, and on the way back brings every edge and slot
/// it passed through back to the canonical form (`node`): empty nodes
/// pruned, pass-through nodes merged into their edge, single subscribers
/// kept in their edge. `nodes` counts the nodes and leaf edges below the
/// root. `None` when the path does not exist (and `!create`) or `edit`
/// said so.
fn update<R>(
    node: &mut Node,
    levels: &[&str],
    create: bool,
    nodes: &mut usize,
    edit: &mut dyn FnMut(&mut Node) -> Option<R>,
) -> Option<R> {
    let Some((&level, _)) = levels.split_first() else {
        return edit(node);
    };
    if level == "+" || level == "#" {
        let slot = if level == "+" {
            &mut node.plus
        } else {
            &mut node.hash
        };
        if slot.is_none() {
            if !create {
                return None;
            }
            *slot = Some(Box::default());
            *nodes += 1;
        }
        let child = slot.as_mut().expect("present");
        let out = update(child, &levels[1..], create, nodes, edit);
        if child.is_empty() {
            *slot = None;
            *nodes -= 1;
        }
        return out;
    }
    if node.children.find(level).is_none() {
        if !create {
            return None;
        }
        // A new edge takes every literal level up to the next wildcard.
        let run = levels
            .iter()
            .take_while(|l| **l != "+" && **l != "#")
            .count();
        node.children.insert(Edge {
            label: levels[..run].join("/").into_boxed_str(),
            next: Next::Node(Box::default()),
        });
        *nodes += 1;
    }
    let edge = node.children.find_mut(level).expect("present");
    let (common, total) = common_levels(&edge.label, levels);
    if common < total {
        if !create {
            return None;
        }
        // Split: the shared levels stay on this edge, the rest moves to
        // an edge of a new node in between.
        let at = prefix_bytes(&edge.label, common);
        let tail = Edge {
            label: edge.label[at + 1..].into(),
            next: std::mem::replace(&mut edge.next, Next::Node(Box::default())),
        };
        edge.label = edge.label[..at].into();
        edge.next.node_mut().children.insert(tail);
        *nodes += 1;
    }
    let out = update(edge.next.node_mut(), &levels[common..], create, nodes, edit);
    match normalize(edge) {
        Fix::Keep => {}
        Fix::Merged => *nodes -= 1,
        Fix::Drop => {
            node.children.remove(level);
            *nodes -= 1;
        }
    }
    out
}
