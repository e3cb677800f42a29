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
//! that any change invalidates. Bench: `cargo bench --bench trie` before
//! changing anything on the match path.

use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use smallvec::SmallVec;

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

/// Literal children of a node. Most nodes have one or a few: those keep an
/// exact-size slice searched linearly (24 bytes for one child, where a hash
/// map allocates a 4-bucket table); past `SMALL_CHILDREN_MAX` a hash map.
enum Children {
    Small(Box<[(Box<str>, Box<Node>)]>),
    Large(Box<Map<Box<str>, Box<Node>>>),
}

const SMALL_CHILDREN_MAX: usize = 8;

impl Default for Children {
    fn default() -> Self {
        Children::Small(Box::default())
    }
}

impl Children {
    fn is_empty(&self) -> bool {
        match self {
            Children::Small(v) => v.is_empty(),
            Children::Large(m) => m.is_empty(),
        }
    }

    fn get(&self, level: &str) -> Option<&Node> {
        match self {
            Children::Small(v) => v.iter().find(|(k, _)| &**k == level).map(|(_, n)| &**n),
            Children::Large(m) => m.get(level).map(|n| &**n),
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node> {
        match self {
            Children::Small(v) => v
                .iter_mut()
                .find(|(k, _)| &**k == level)
                .map(|(_, n)| &mut **n),
            Children::Large(m) => m.get_mut(level).map(|n| &mut **n),
        }
    }

    /// The child for `level`, created if missing; true if it was created.
    fn get_or_insert(&mut self, level: &str) -> (&mut Node, bool) {
        let created = self.get(level).is_none();
        if created {
            match self {
                Children::Small(v) if v.len() < SMALL_CHILDREN_MAX => {
                    let mut grown = std::mem::take(v).into_vec();
                    grown.reserve_exact(1);
                    grown.push((level.into(), Box::default()));
                    *v = grown.into_boxed_slice();
                }
                Children::Small(v) => {
                    let mut map: Map<Box<str>, Box<Node>> = Map::default();
                    map.extend(std::mem::take(v).into_vec());
                    map.insert(level.into(), Box::default());
                    *self = Children::Large(Box::new(map));
                }
                Children::Large(m) => {
                    m.insert(level.into(), Box::default());
                }
            }
        }
        (self.get_mut(level).expect("present"), created)
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Small(v) => {
                let mut kept = std::mem::take(v).into_vec();
                kept.retain(|(k, _)| &**k != level);
                *v = kept.into_boxed_slice();
            }
            Children::Large(m) => {
                m.remove(level);
            }
        }
    }
}

#[derive(Default)]
struct Node {
    children: Children,
    plus: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    local: SmallVec<[LocalSub; 1]>,
    remote: ShardMask,
    /// Queue groups on this filter; boxed, as most filters have none: 8
    /// bytes per node instead of a Vec's 24.
    #[allow(clippy::box_collection)]
    groups: Option<Box<Vec<GroupEntry>>>,
}

struct GroupEntry {
    name: Arc<str>,
    local: SmallVec<[LocalSub; 1]>,
    remote: ShardMask,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.local.is_empty()
            && self.remote == 0
            && self.groups.is_none()
    }

    /// The subscriber list and shard mask of the plain filter or of one
    /// of its groups, created on demand.
    fn slot_mut(&mut self, group: Option<&str>) -> (&mut SmallVec<[LocalSub; 1]>, &mut ShardMask) {
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
    fn prune_groups(&mut self) {
        if let Some(groups) = &mut self.groups {
            groups.retain(|g| !g.local.is_empty() || g.remote != 0);
            if groups.is_empty() {
                self.groups = None;
            }
        }
    }
}

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

    /// Walks to (creating) the node of `filter`.
    fn node_mut(&mut self, filter: &str) -> &mut Node {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            let slot = match level {
                "+" => &mut node.plus,
                "#" => &mut node.hash,
                _ => {
                    let (child, created) = node.children.get_or_insert(level);
                    if created {
                        self.nodes += 1;
                    }
                    node = child;
                    continue;
                }
            };
            if slot.is_none() {
                self.nodes += 1;
            }
            node = slot.get_or_insert_with(Box::default);
        }
        node
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
        let (local, _) = self.node_mut(filter).slot_mut(group);
        let first_local = local.is_empty();
        if let Some(existing) = local.iter_mut().find(|s| s.session == session) {
            existing.qos = qos;
            return Added {
                replaced: true,
                first_local: false,
            };
        }
        local.push(LocalSub { session, qos });
        self.local_subscriptions += 1;
        Added {
            replaced: false,
            first_local,
        }
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
        let mut last_local = None;
        let pruned = Self::remove_at(&mut self.root, filter.split('/'), &mut |node| {
            if group.is_some() && node.groups.is_none() {
                return None;
            }
            let (local, _) = node.slot_mut(group);
            let Some(at) = local.iter().position(|s| s.session == session) else {
                node.prune_groups();
                return None;
            };
            local.swap_remove(at);
            last_local = Some(local.is_empty());
            node.prune_groups();
            Some(())
        })?;
        self.nodes -= pruned;
        self.local_subscriptions -= 1;
        self.invalidate();
        Some(Removed {
            last_local: last_local.expect("set by the visitor"),
        })
    }

    /// Records that `shard` has at least one subscriber of `filter`.
    /// Returns false if it was already recorded.
    pub fn add_remote(&mut self, filter: &str, shard: usize) -> bool {
        self.add_remote_in(filter, None, shard)
    }

    pub fn add_remote_in(&mut self, filter: &str, group: Option<&str>, shard: usize) -> bool {
        debug_assert!(shard < SHARDS_MAX);
        self.invalidate();
        let (_, remote) = self.node_mut(filter).slot_mut(group);
        let bit = 1u64 << shard;
        let fresh = *remote & bit == 0;
        *remote |= bit;
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
        let pruned = Self::remove_at(&mut self.root, filter.split('/'), &mut |node| {
            if group.is_some() && node.groups.is_none() {
                return None;
            }
            let (_, remote) = node.slot_mut(group);
            let had = *remote & bit != 0;
            *remote &= !bit;
            node.prune_groups();
            had.then_some(())
        });
        match pruned {
            Some(pruned) => {
                self.nodes -= pruned;
                self.remote_entries -= 1;
                self.invalidate();
                true
            }
            None => false,
        }
    }

    /// Descends along `levels`, applies `edit` at the end node, and prunes
    /// nodes left empty on the way back. Returns the number of nodes pruned,
    /// or `None` when the path or the entry does not exist.
    fn remove_at<'a>(
        node: &mut Node,
        mut levels: impl Iterator<Item = &'a str>,
        edit: &mut dyn FnMut(&mut Node) -> Option<()>,
    ) -> Option<usize> {
        let Some(level) = levels.next() else {
            edit(node)?;
            return Some(0);
        };
        let (pruned, child_empty) = match level {
            "+" | "#" => {
                let slot = if level == "+" {
                    &mut node.plus
                } else {
                    &mut node.hash
                };
                let child = slot.as_mut()?;
                let pruned = Self::remove_at(child, levels, edit)?;
                let empty = child.is_empty();
                if empty {
                    *slot = None;
                }
                (pruned, empty)
            }
            _ => {
                let child = node.children.get_mut(level)?;
                let pruned = Self::remove_at(child, levels, edit)?;
                let empty = child.is_empty();
                if empty {
                    node.children.remove(level);
                }
                (pruned, empty)
            }
        };
        Some(pruned + usize::from(child_empty))
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
    if let Some(child) = node.children.get(level) {
        collect(child, levels, depth + 1, dollar, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::filter_matches;

    fn sessions(m: &Matched) -> Vec<(u32, u8)> {
        m.local.iter().map(|s| (s.session, s.qos)).collect()
    }

    #[test]
    fn add_match_remove_leaves_nothing() {
        let mut t = Trie::new(16);
        let filters = ["a/b/c", "a/+/c", "a/#", "#", "+/+/+", "$SYS/#", "a//c", "/"];
        for (i, f) in filters.iter().enumerate() {
            let added = t.add_local(f, i as u32, 1);
            assert!(added.first_local && !added.replaced);
        }
        assert!(t.add_remote("a/b/c", 3));
        assert!(!t.add_remote("a/b/c", 3));
        let m = t.matches("a/b/c");
        assert_eq!(sessions(&m), vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]);
        assert_eq!(m.remote, 1 << 3);
        assert_eq!(t.counts().cached_topics, 1);
        let m2 = t.matches("a/b/c");
        assert!(Rc::ptr_eq(&m, &m2), "second match is a cache hit");
        for (i, f) in filters.iter().enumerate() {
            assert_eq!(
                t.remove_local(f, i as u32),
                Some(Removed { last_local: true })
            );
        }
        assert!(t.remove_remote("a/b/c", 3));
        assert!(!t.remove_remote("a/b/c", 3));
        assert_eq!(t.counts(), TrieCounts::default());
        assert!(t.root.is_empty());
    }

    #[test]
    fn replace_and_overlap_dedup() {
        let mut t = Trie::new(0);
        assert!(!t.add_local("a/b", 7, 0).replaced);
        assert!(t.add_local("a/b", 7, 1).replaced);
        t.add_local("a/+", 7, 0);
        t.add_local("a/+", 8, 0);
        let added = t.add_local("a/+", 9, 1);
        assert!(!added.first_local, "second subscriber of a filter");
        assert_eq!(sessions(&t.matches("a/b")), vec![(7, 1), (8, 0), (9, 1)]);
        assert_eq!(t.counts().local_subscriptions, 4);
        assert_eq!(
            t.remove_local("a/+", 8),
            Some(Removed { last_local: false })
        );
        assert_eq!(t.remove_local("a/+", 8), None);
        assert_eq!(t.remove_local("x/y", 8), None);
    }

    #[test]
    fn overlapping_options_merge() {
        let mut t = Trie::new(0);
        t.add_local("a/+", 1, NO_LOCAL);
        t.add_local("a/b", 1, 1 | NO_LOCAL | RETAIN_AS_PUBLISHED);
        t.add_local("#", 2, NO_LOCAL);
        t.add_local("a/#", 2, 0);
        assert_eq!(
            sessions(&t.matches("a/b")),
            vec![(1, 1 | NO_LOCAL | RETAIN_AS_PUBLISHED), (2, 0)]
        );
    }

    #[test]
    fn dollar_and_parent_level() {
        let mut t = Trie::new(0);
        t.add_local("#", 1, 0);
        t.add_local("+/x", 2, 0);
        t.add_local("$SYS/#", 3, 0);
        t.add_local("sport/#", 4, 0);
        assert_eq!(sessions(&t.matches("$SYS/x")), vec![(3, 0)]);
        assert_eq!(sessions(&t.matches("sport")), vec![(1, 0), (4, 0)]);
        assert_eq!(sessions(&t.matches("a/x")), vec![(1, 0), (2, 0)]);
    }

    /// The trie agrees with the spec-worded oracle on a grid of filters and
    /// topics, including empty levels and `$` topics.
    #[test]
    fn agrees_with_oracle() {
        let parts = ["a", "b", "", "$x", "+", "#"];
        let mut filters = Vec::new();
        for &p in &parts {
            filters.push(p.to_string());
            for &q in &parts {
                filters.push(format!("{p}/{q}"));
                for &r in &parts {
                    filters.push(format!("{p}/{q}/{r}"));
                }
            }
        }
        let limits = crate::topic::TopicLimits::default();
        filters.retain(|f| crate::topic::validate_filter(f, &limits).is_ok());
        let topics: Vec<String> = filters
            .iter()
            .filter(|f| crate::topic::validate_name(f, &limits).is_ok())
            .cloned()
            .collect();
        let mut t = Trie::new(8);
        for (i, f) in filters.iter().enumerate() {
            t.add_local(f, i as u32, 0);
        }
        for topic in &topics {
            let got: Vec<u32> = t.matches(topic).local.iter().map(|s| s.session).collect();
            let want: Vec<u32> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| filter_matches(f, topic))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(got, want, "topic {topic:?}");
        }
        for (i, f) in filters.iter().enumerate() {
            t.remove_local(f, i as u32).expect("present");
        }
        assert_eq!(t.counts().nodes, 0);
    }

    #[test]
    fn queue_groups() {
        let mut t = Trie::new(8);
        assert!(t.add_local_in("a/+", Some("g"), 1, 0).first_local);
        assert!(!t.add_local_in("a/+", Some("g"), 2, 0).first_local);
        assert!(t.add_local_in("a/b", Some("g"), 3, 0).first_local);
        assert!(t.add_local_in("a/b", Some("h"), 4, 0).first_local);
        t.add_local("a/b", 5, 0);
        assert!(t.add_remote_in("a/#", Some("g"), 2));
        let m = t.matches("a/b");
        assert_eq!(sessions(&m), vec![(5, 0)]);
        assert_eq!(m.groups.len(), 2);
        let g = m.groups.iter().find(|g| &*g.name == "g").unwrap();
        let members: Vec<u32> = g.local.iter().map(|s| s.session).collect();
        assert_eq!(members, vec![1, 2, 3], "one group across its filters");
        assert_eq!(g.remote, 1 << 2);
        assert_eq!(t.remove_local_in("a/+", Some("h"), 1), None);
        assert_eq!(t.remove_local_in("a/+", Some("g"), 9), None);
        t.remove_local_in("a/+", Some("g"), 1).unwrap();
        assert_eq!(
            t.remove_local_in("a/+", Some("g"), 2),
            Some(Removed { last_local: true })
        );
        t.remove_local_in("a/b", Some("g"), 3).unwrap();
        t.remove_local_in("a/b", Some("h"), 4).unwrap();
        t.remove_local("a/b", 5).unwrap();
        assert!(t.remove_remote_in("a/#", Some("g"), 2));
        assert!(!t.remove_remote_in("a/#", Some("g"), 2));
        assert_eq!(t.counts(), TrieCounts::default());
        assert!(t.matches("a/b").is_empty());
    }

    #[test]
    fn many_children_switch_to_a_map_and_back_to_nothing() {
        let mut t = Trie::new(0);
        for i in 0..20u32 {
            t.add_local(&format!("a/{i}/x"), i, 0);
        }
        for i in 0..20u32 {
            assert_eq!(sessions(&t.matches(&format!("a/{i}/x"))), vec![(i, 0)]);
        }
        assert!(t.matches("a/20/x").is_empty());
        for i in 0..20u32 {
            t.remove_local(&format!("a/{i}/x"), i).unwrap();
        }
        assert_eq!(t.counts(), TrieCounts::default());
        assert!(t.root.is_empty());
    }

    #[test]
    fn cache_is_bounded() {
        let mut t = Trie::new(4);
        t.add_local("#", 1, 0);
        for i in 0..100 {
            t.matches(&format!("t/{i}"));
            assert!(t.counts().cached_topics <= 4);
        }
    }

    /// A topic's NATS subject is made once while its match stays cached,
    /// again after a subscription change empties the cache.
    #[test]
    fn subject_memo_lives_with_the_cached_match() {
        let mut t = Trie::new(4);
        t.add_local("a/#", 1, 0);
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Rc::from(&b"a.b"[..])
        };
        for _ in 0..3 {
            let m = t.matches("a/b");
            assert_eq!(&**m.subject.get_or_init(make), b"a.b");
        }
        assert_eq!(made.get(), 1);
        t.add_local("x", 2, 0);
        t.matches("a/b").subject.get_or_init(make);
        assert_eq!(made.get(), 2);
        assert_eq!(SubjectMemo::default(), t.matches("a/b").subject);
        assert_eq!(
            t.match_uncached("a/b"),
            *t.matches("a/b"),
            "a memo is not a match"
        );
    }
}
