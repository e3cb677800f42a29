//! The trie against the spec-worded oracle, and its canonical form.

use super::node::Children;
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

/// Walks the trie, checks its canonical form (`node`'s rules) and
/// returns the number of nodes and leaf edges below the root. `edge`: the
/// node is reached by a literal edge (a `+` or `#` slot's node may hold
/// just one edge).
fn check_canonical(node: &Node, edge: bool) -> usize {
    let mut count = 0;
    if edge {
        assert!(!node.is_empty(), "an empty node was left");
        assert!(
            node.plus.is_some()
                || node.hash.is_some()
                || node.remote != 0
                || node.groups.is_some()
                || !node.local.is_empty()
                || node.children.len() != 1,
            "a pass-through node was left"
        );
    }
    let mut firsts = std::collections::HashSet::new();
    for edge in node.children.iter() {
        assert!(
            edge.label.split('/').all(|l| l != "+" && l != "#"),
            "wildcard in label {:?}",
            edge.label
        );
        assert!(
            firsts.insert(node::first_level(&edge.label).to_string()),
            "two edges share a first level"
        );
        count += 1;
        if let Next::Node(next) = &edge.next {
            assert!(
                !(next.local.len() == 1
                    && next.children.is_empty()
                    && next.plus.is_none()
                    && next.hash.is_none()
                    && next.remote == 0
                    && next.groups.is_none()),
                "a single subscriber kept in a node at {:?}",
                edge.label
            );
            count += check_canonical(next, true);
        }
    }
    if let Children::Small(v) = &node.children {
        assert!(v.len() <= node::SMALL_CHILDREN_MAX);
    }
    for slot in [&node.plus, &node.hash].into_iter().flatten() {
        assert!(!slot.is_empty(), "an empty slot was left");
        count += 1 + check_canonical(slot, false);
    }
    count
}

fn labels(node: &Node) -> Vec<String> {
    let mut out: Vec<String> = node.children.iter().map(|e| e.label.to_string()).collect();
    out.sort();
    out
}

fn child<'a>(node: &'a Node, label: &str) -> &'a Node {
    match &node
        .children
        .iter()
        .find(|e| &*e.label == label)
        .unwrap()
        .next
    {
        Next::Node(n) => n,
        Next::Leaf(_) => panic!("{label} is a leaf"),
    }
}

/// A chain of single-child levels is one edge; a second filter splits it
/// where they part, and removing it merges the chain again.
#[test]
fn compressed_paths_split_on_insert_and_merge_on_remove() {
    let mut t = Trie::new(0);
    t.add_local("site/1/dev/2/temp", 1, 0);
    assert_eq!(labels(&t.root), vec!["site/1/dev/2/temp"]);
    assert_eq!(t.counts().nodes, 1, "one leaf edge");
    assert_eq!(check_canonical(&t.root, false), 1);

    t.add_local("site/1/dev/3/temp", 2, 0);
    assert_eq!(labels(&t.root), vec!["site/1/dev"]);
    assert_eq!(
        labels(child(&t.root, "site/1/dev")),
        vec!["2/temp", "3/temp"]
    );
    assert_eq!(t.counts().nodes, 3);

    // A filter ending inside an edge splits it there.
    t.add_local("site/1", 3, 1);
    assert_eq!(labels(&t.root), vec!["site/1"]);
    assert_eq!(labels(child(&t.root, "site/1")), vec!["dev"]);
    assert_eq!(check_canonical(&t.root, false), t.counts().nodes);
    assert_eq!(sessions(&t.matches("site/1")), vec![(3, 1)]);
    assert_eq!(sessions(&t.matches("site/1/dev/2/temp")), vec![(1, 0)]);
    assert!(t.matches("site/1/dev").is_empty());
    assert!(t.matches("site/1/dev/2").is_empty());
    assert!(t.matches("site/1/dev/2/temp/x").is_empty());

    // Wildcards are slots, never inside a label.
    t.add_local("site/1/dev/+/temp", 4, 0);
    t.add_local("site/1/dev/#", 5, 0);
    assert_eq!(check_canonical(&t.root, false), t.counts().nodes);
    assert_eq!(
        sessions(&t.matches("site/1/dev/2/temp")),
        vec![(1, 0), (4, 0), (5, 0)]
    );
    assert_eq!(sessions(&t.matches("site/1/dev")), vec![(5, 0)]);

    for (f, s) in [("site/1/dev/#", 5), ("site/1/dev/+/temp", 4), ("site/1", 3)] {
        t.remove_local(f, s).unwrap();
        assert_eq!(check_canonical(&t.root, false), t.counts().nodes);
    }
    assert_eq!(labels(&t.root), vec!["site/1/dev"]);
    t.remove_local("site/1/dev/3/temp", 2).unwrap();
    assert_eq!(labels(&t.root), vec!["site/1/dev/2/temp"], "merged again");
    assert_eq!(t.counts().nodes, 1);
    // A removal that ends inside an edge or past a leaf finds nothing.
    assert_eq!(t.remove_local("site/1/dev", 1), None);
    assert_eq!(t.remove_local("site/1/dev/2/temp/x", 1), None);
    assert_eq!(t.remove_local("site/1/dev/2/temp", 9), None);
    assert_eq!(labels(&t.root), vec!["site/1/dev/2/temp"]);
    t.remove_local("site/1/dev/2/temp", 1).unwrap();
    assert_eq!(t.counts(), TrieCounts::default());
    assert!(t.root.is_empty());
}

/// A leaf edge becomes a node for a second subscriber, a remote interest
/// or a group, and a leaf again when they leave.
#[test]
fn leaf_edges_grow_into_nodes_and_back() {
    let mut t = Trie::new(0);
    t.add_local("a/b", 1, 1);
    let is_leaf = |t: &Trie| matches!(t.root.children.find("a").unwrap().next, Next::Leaf(_));
    assert!(is_leaf(&t));
    assert!(
        t.add_local("a/b", 1, 2).replaced,
        "a leaf's QoS is replaced"
    );
    assert!(is_leaf(&t));
    assert_eq!(sessions(&t.matches("a/b")), vec![(1, 2)]);
    t.add_local("a/b", 2, 0);
    assert!(!is_leaf(&t));
    t.remove_local("a/b", 2).unwrap();
    assert!(is_leaf(&t));
    assert!(t.add_remote("a/b", 5));
    assert!(!is_leaf(&t));
    assert_eq!(t.matches("a/b").remote, 1 << 5);
    assert!(t.remove_remote("a/b", 5));
    assert!(is_leaf(&t));
    t.add_local_in("a/b", Some("g"), 3, 0);
    assert!(!is_leaf(&t));
    assert_eq!(t.remove_local_in("a/b", Some("h"), 3), None);
    t.remove_local_in("a/b", Some("g"), 3).unwrap();
    assert!(is_leaf(&t));
    assert_eq!(check_canonical(&t.root, false), t.counts().nodes);
    assert_eq!(t.remove_local("a/b", 1), Some(Removed { last_local: true }));
    assert_eq!(t.counts(), TrieCounts::default());
}

/// Seeded random inserts and removals (plain, grouped, remote) against
/// the naive matcher: after every step the trie is canonical, its node
/// count is right, and a set of topics match exactly what the oracle says.
#[test]
fn random_changes_agree_with_the_naive_matcher() {
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let words = ["a", "b", "c", "", "$s"];
    let random_topic = |next: &mut dyn FnMut(u64) -> u64, filter: bool| {
        let depth = 1 + next(5) as usize;
        let mut levels = Vec::new();
        for i in 0..depth {
            let w = match next(8) {
                6 if filter => "+",
                7 if filter && i + 1 == depth => "#",
                k => words[k as usize % words.len()],
            };
            levels.push(w);
        }
        levels.join("/")
    };
    let limits = crate::topic::TopicLimits::default();
    let mut t = Trie::new(8);
    // (filter, group, session) held, and (filter, shard) interests.
    let mut held: Vec<(String, Option<&str>, u32)> = Vec::new();
    let mut remote: Vec<(String, usize)> = Vec::new();
    for step in 0..2500 {
        match next(10) {
            0..=4 => {
                let f = random_topic(&mut next, true);
                if crate::topic::validate_filter(&f, &limits).is_err() {
                    continue;
                }
                let group = [None, None, None, Some("g")][next(4) as usize];
                let session = next(6) as u32;
                let added = t.add_local_in(&f, group, session, 0);
                let known = held
                    .iter()
                    .any(|(hf, hg, hs)| *hf == f && *hg == group && *hs == session);
                assert_eq!(added.replaced, known, "step {step}: {f}");
                if !known {
                    held.push((f, group, session));
                }
            }
            5..=7 if !held.is_empty() => {
                let (f, g, s) = held.swap_remove(next(held.len() as u64) as usize);
                assert!(t.remove_local_in(&f, g, s).is_some(), "step {step}: {f}");
                assert_eq!(t.remove_local_in(&f, g, s), None);
            }
            8 => {
                let f = random_topic(&mut next, true);
                if crate::topic::validate_filter(&f, &limits).is_err() {
                    continue;
                }
                let shard = next(3) as usize;
                let fresh = t.add_remote(&f, shard);
                assert_eq!(fresh, !remote.contains(&(f.clone(), shard)));
                if fresh {
                    remote.push((f, shard));
                }
            }
            _ if !remote.is_empty() => {
                let (f, shard) = remote.swap_remove(next(remote.len() as u64) as usize);
                assert!(t.remove_remote(&f, shard), "step {step}: {f}");
            }
            _ => {}
        }
        assert_eq!(
            check_canonical(&t.root, false),
            t.counts().nodes,
            "step {step}"
        );
        assert_eq!(t.counts().local_subscriptions, held.len());
        assert_eq!(t.counts().remote_entries, remote.len());
        for _ in 0..4 {
            let topic = random_topic(&mut next, false);
            let m = t.matches(&topic);
            let mut want: Vec<u32> = held
                .iter()
                .filter(|(f, g, _)| g.is_none() && filter_matches(f, &topic))
                .map(|(_, _, s)| *s)
                .collect();
            want.sort_unstable();
            want.dedup();
            let got: Vec<u32> = m.local.iter().map(|s| s.session).collect();
            assert_eq!(got, want, "step {step}: topic {topic:?}");
            let mut members: Vec<u32> = held
                .iter()
                .filter(|(f, g, _)| g.is_some() && filter_matches(f, &topic))
                .map(|(_, _, s)| *s)
                .collect();
            members.sort_unstable();
            members.dedup();
            let got: Vec<u32> = m
                .groups
                .iter()
                .flat_map(|g| g.local.iter().map(|s| s.session))
                .collect();
            assert_eq!(got, members, "step {step}: topic {topic:?} (group)");
            let shards = remote
                .iter()
                .filter(|(f, _)| filter_matches(f, &topic))
                .fold(0, |m, (_, s)| m | 1 << s);
            assert_eq!(m.remote, shards, "step {step}: topic {topic:?} (remote)");
        }
    }
    for (f, g, s) in held.drain(..) {
        t.remove_local_in(&f, g, s).unwrap();
    }
    for (f, shard) in remote.drain(..) {
        assert!(t.remove_remote(&f, shard));
    }
    assert_eq!(t.counts(), TrieCounts::default());
    assert!(t.root.is_empty());
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
