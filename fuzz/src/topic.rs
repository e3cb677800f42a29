//! Topic names and filters, `weft::topic`: validation, the reference
//! matcher and the subscription trie.
//!
//! Input: strings separated by the byte 0xff (see [`crate::strings`]);
//! every string is tried as a name and as a filter; the valid filters are
//! subscribed, and every valid name is matched against them.
//!
//! Properties:
//! - `validate_name` / `validate_filter` accept exactly what the spec's
//!   wording accepts (an independent oracle written here, level by level),
//!   and never anything over the limits;
//! - a valid name is a valid filter that matches itself;
//! - `validate_subscription` of `$share/{group}/{filter}` implies a valid
//!   `filter`, and is `validate_filter` for anything else;
//! - `filter_matches` agrees with a second matcher written here
//!   recursively;
//! - the trie matches exactly the sessions whose filter `filter_matches`
//!   the topic (and the shards whose remote interest does), through its
//!   cache and without; after every subscription is removed it is empty.

use weft::topic::trie::Trie;
use weft::topic::{
    filter_matches, validate_filter, validate_name, validate_subscription, TopicLimits,
};

/// Small limits, so the fuzzer reaches them within its input size.
const LIMITS: TopicLimits = TopicLimits {
    topic_bytes_max: 64,
    topic_levels_max: 8,
};

fn common_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= LIMITS.topic_bytes_max
        && !s.contains('\0')
        && s.split('/').count() <= LIMITS.topic_levels_max
}

/// MQTT-4.7.3-1, MQTT-3.3.2-2: no wildcard character in a name.
fn name_ok(s: &str) -> bool {
    common_ok(s) && !s.contains(['+', '#'])
}

/// MQTT-4.7.1-2, -3: `#` alone and last, `+` alone in its level.
fn filter_ok(s: &str) -> bool {
    let levels: Vec<&str> = s.split('/').collect();
    common_ok(s)
        && levels.iter().enumerate().all(|(i, level)| {
            (!level.contains('#') || (*level == "#" && i + 1 == levels.len()))
                && (!level.contains('+') || *level == "+")
        })
}

/// A second matcher, recursive over levels (the library's is iterative).
fn matches(filter: &[&str], topic: &[&str]) -> bool {
    match (filter.split_first(), topic.split_first()) {
        (Some((&"#", _)), _) => true,
        (Some((&"+", f)), Some((_, t))) => matches(f, t),
        (Some((fl, f)), Some((tl, t))) => fl == tl && matches(f, t),
        (None, None) => true,
        _ => false,
    }
}

fn oracle_matches(filter: &str, topic: &str) -> bool {
    // MQTT-4.7.2-1: a leading wildcard does not match a leading '$'.
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    matches(&f, &t)
}

pub fn check(data: &[u8]) {
    let pieces = crate::strings(data);
    let mut filters = Vec::new();
    let mut names = Vec::new();
    // At most 16 strings: filter i is session i and shard i.
    for &s in pieces.iter().take(16) {
        let name = validate_name(s, &LIMITS).is_ok();
        let filter = validate_filter(s, &LIMITS).is_ok();
        assert_eq!(name, name_ok(s), "validate_name({s:?})");
        assert_eq!(filter, filter_ok(s), "validate_filter({s:?})");
        if name {
            assert!(filter, "a name is a filter: {s:?}");
            assert!(filter_matches(s, s), "a name matches itself: {s:?}");
            names.push(s);
        }
        if filter {
            filters.push(s);
        }
        let subscription = validate_subscription(s, &LIMITS).is_ok();
        match s.strip_prefix("$share/") {
            Some(rest) => {
                if subscription {
                    let (group, filter) = rest.split_once('/').expect("accepted");
                    assert!(!group.is_empty() && !group.contains(['+', '#']), "{s:?}");
                    assert!(validate_filter(filter, &LIMITS).is_ok(), "{s:?}");
                    assert!(filter_ok(s), "{s:?}");
                }
            }
            None if s == "$share" => assert!(!subscription),
            None => assert_eq!(subscription, filter, "{s:?}"),
        }
    }

    let mut trie = Trie::new(4);
    for (i, f) in filters.iter().enumerate() {
        trie.add_local(f, i as u32, (i % 3) as u8);
        trie.add_remote(f, i);
    }
    for &t in &names {
        let want: Vec<u32> = (0..filters.len() as u32)
            .filter(|&i| {
                let f = filters[i as usize];
                let got = filter_matches(f, t);
                assert_eq!(got, oracle_matches(f, t), "{f:?} vs {t:?}");
                got
            })
            .collect();
        let want_remote = want.iter().fold(0u64, |m, &i| m | 1 << i);
        let matched = trie.match_uncached(t);
        let mut got: Vec<u32> = matched.local.iter().map(|s| s.session).collect();
        got.sort_unstable();
        assert_eq!(got, want, "trie sessions for {t:?} among {filters:?}");
        for sub in matched.local.iter() {
            assert_eq!(sub.qos, (sub.session % 3) as u8);
        }
        assert_eq!(matched.remote, want_remote, "trie shards for {t:?}");
        assert_eq!(*trie.matches(t), matched, "cached match of {t:?}");
        assert_eq!(*trie.matches(t), matched, "cache hit of {t:?}");
    }
    for (i, f) in filters.iter().enumerate() {
        assert!(trie.remove_local(f, i as u32).is_some(), "{f:?}");
        assert!(trie.remove_remote(f, i), "{f:?}");
    }
    let counts = trie.counts();
    assert_eq!(counts.nodes, 0, "every node pruned: {filters:?}");
    assert_eq!(counts.local_subscriptions, 0);
    assert_eq!(counts.remote_entries, 0);
}

pub fn seeds() -> Vec<Vec<u8>> {
    [
        &["a/b/c", "a/+/c", "a/#", "#", "+/+/+"][..],
        &["$SYS/x", "#", "+/x", "$SYS/#", "$share/g/+/x"],
        &["/", "//", "+/", "/+", "+", "a//b", "a/+/#"],
        &[
            "sport/tennis/player1",
            "sport/tennis/player1/#",
            "sport/+",
            "sport/",
        ],
        &["a+", "a/#/b", "$share/g", "$share//a", "a\0b", "é/ü/+"],
    ]
    .iter()
    .map(|pieces| crate::join(pieces))
    .collect()
}
