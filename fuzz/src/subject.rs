//! NATS subjects and their mapping to internal (MQTT-shaped) topics,
//! `weft::nats::subject`.
//!
//! Input: strings separated by the byte 0xff (see [`crate::strings`]).
//!
//! Properties:
//! - NATS → internal → NATS is the identity for every subject accepted as
//!   a name (`to_nats`, with `nats_len` its exact length) and as a filter
//!   (`filter_to_nats`); a name is accepted as a filter with the same
//!   internal form; what comes out is a valid MQTT filter (but for NUL and
//!   the empty topic, left to the topic rules);
//! - internal → NATS → internal is the identity for every valid MQTT name
//!   that NATS can spell (no level that is `*` or `>`, no blank);
//! - matching commutes with the mapping: a NATS pattern matches a NATS
//!   subject (nats-server's rules, written here, plus the documented `$`
//!   rule) exactly when the mapped filter matches the mapped topic.

use weft::nats::subject::{filter_to_nats, nats_len, to_internal, to_nats};
use weft::topic::{filter_matches, validate_filter, validate_name, TopicLimits};

const BYTES_MAX: usize = 256;

/// Validation limits that never bind here: mapping can add a few bytes.
const LOOSE: TopicLimits = TopicLimits {
    topic_bytes_max: 4 * BYTES_MAX,
    topic_levels_max: 4 * BYTES_MAX,
};

/// nats-server's subject matching: `*` is one token, `>` one or more
/// trailing tokens; as documented in weft, a `$` first token is not
/// matched by a wildcard in first position.
fn nats_matches(pattern: &str, subject: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    if subject.starts_with('$') && matches!(p[0], "*" | ">") {
        return false;
    }
    for (i, token) in p.iter().enumerate() {
        match *token {
            ">" => return s.len() > i,
            "*" if i < s.len() => {}
            literal if s.get(i) == Some(&literal) => {}
            _ => return false,
        }
    }
    p.len() == s.len()
}

/// Whether every level of an internal name has a NATS spelling.
fn nats_can_spell(topic: &str) -> bool {
    topic.split('/').all(|level| level != "*" && level != ">")
        && !topic
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c'))
}

pub fn check(data: &[u8]) {
    let pieces = crate::strings(data);
    let mut names = Vec::new();
    let mut filters = Vec::new();
    for &s in pieces.iter().take(16) {
        let name = to_internal(s, false, BYTES_MAX);
        let filter = to_internal(s, true, BYTES_MAX);
        if let Ok(topic) = &name {
            assert_eq!(to_nats(topic), s, "name {s:?} maps to {topic:?}");
            assert_eq!(nats_len(topic), s.len(), "nats_len({topic:?})");
            assert_eq!(filter.as_ref(), Ok(topic), "a name is a filter: {s:?}");
            names.push((s, topic.clone()));
        }
        if let Ok(internal) = &filter {
            assert_eq!(
                filter_to_nats(internal),
                s,
                "filter {s:?} maps to {internal:?}"
            );
            // The mapping leaves NUL and the empty topic (subject `/`) to
            // the topic rules, which the NATS session applies next.
            assert_eq!(
                validate_filter(internal, &LOOSE).is_ok(),
                !internal.is_empty() && !internal.contains('\0'),
                "{s:?} maps to {internal:?}"
            );
            filters.push((s, internal.clone()));
        }
        // The other way: an MQTT name NATS can spell comes back unchanged.
        if validate_name(s, &LOOSE).is_ok() && nats_can_spell(s) {
            let subject = to_nats(s);
            assert_eq!(nats_len(s), subject.len(), "nats_len({s:?})");
            assert_eq!(
                to_internal(&subject, false, usize::MAX).as_deref(),
                Ok(s),
                "MQTT name {s:?} maps to {subject:?}"
            );
        }
    }
    for (pattern, filter) in &filters {
        for (subject, topic) in &names {
            assert_eq!(
                filter_matches(filter, topic),
                nats_matches(pattern, subject),
                "NATS {pattern:?} vs {subject:?}, internal {filter:?} vs {topic:?}"
            );
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    [
        &["a.b.c", "a.*.c", "a.>", ">", "*"][..],
        &["a.b//c", "/.a", "a./", "a./.b", "_INBOX.x1"],
        &["$SYS.x", "*.x", ">", "$SYS.>"],
        &["a..b", "a b", "a.>.b", "a.b+c", "a.b/c", "a/b.c", "a//b"],
    ]
    .iter()
    .map(|pieces| crate::join(pieces))
    .collect()
}
