//! Topics: validation of MQTT topic names and filters, and the subscription
//! trie (see [`trie`]).
//!
//! Owns: the rules of what a topic name / filter is (MQTT 3.1.1 §4.7) and the
//! per-shard subscription structure. Must not touch: sockets, sessions,
//! executors. Everything here is pure and single-threaded.
//!
//! Internally a topic is a sequence of levels split on `/`. NATS subjects
//! (`.`, `*`, `>`) are converted at the edge (`nats::subject`), so the trie
//! only ever sees MQTT-shaped levels.

pub mod filter_set;
pub mod retained;
pub mod subject;
pub mod trie;

use thiserror::Error;

/// Why a topic name or filter was refused. Each variant is one precise
/// reason for the log line and the protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than {0} bytes")]
    TooLong(usize),
    #[error("topic has more than {0} levels")]
    TooDeep(usize),
    #[error("topic contains the NUL character")]
    Nul,
    #[error("wildcard character in a topic name")]
    WildcardInName,
    #[error("'+' must occupy a whole level")]
    BadSingleWildcard,
    #[error("'#' must be the whole last level")]
    BadMultiWildcard,
    #[error("a shared subscription is $share/{{group}}/{{filter}} with a group free of wildcards")]
    BadShare,
    #[error("the first level $weft is reserved for the router")]
    Reserved,
}

/// The first level weft keeps for itself (accounts' spaces,
/// `security::accounts`; the mesh's retained key): no client writes it.
pub const RESERVED_LEVEL: &str = "$weft";

/// The internal prefix of every account's topics but the default
/// account's (`security::accounts`).
pub const ACCOUNT_PREFIX: &str = "$weft/acct/";

/// `topic` as its client wrote it: an account's prefix removed, as a
/// slice (`security::accounts`; here so that the protocols' delivery forms
/// use it without depending on `security`). Per delivery: one byte
/// compared for topics outside `$`.
#[inline]
pub fn client_topic(topic: &str) -> &str {
    if topic.as_bytes().first() != Some(&b'$') {
        return topic;
    }
    topic
        .strip_prefix(ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .map_or(topic, |(_, client)| client)
}

/// Whether `topic`'s first level is [`RESERVED_LEVEL`] (one byte compared
/// for topics outside `$`).
/// The rest out of line: `validate_name` is inlined into the MQTT
/// machine's publish path, which must keep its size.
#[inline]
pub fn reserved(topic: &str) -> bool {
    topic.as_bytes().first() == Some(&b'$') && reserved_level(topic)
}

#[cold]
#[inline(never)]
fn reserved_level(topic: &str) -> bool {
    topic
        .strip_prefix(RESERVED_LEVEL)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Limits that apply to every topic name and filter.
#[derive(Debug, Clone, Copy)]
pub struct TopicLimits {
    pub topic_bytes_max: usize,
    pub topic_levels_max: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            topic_bytes_max: 1024,
            topic_levels_max: 32,
        }
    }
}

fn check_common(topic: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > limits.topic_bytes_max {
        return Err(TopicError::TooLong(limits.topic_bytes_max));
    }
    if topic.as_bytes().contains(&0) {
        return Err(TopicError::Nul);
    }
    // Levels = separators + 1; counted on bytes, '/' is never part of a
    // multi-byte UTF-8 sequence.
    let levels = topic.bytes().filter(|&b| b == b'/').count() + 1;
    if levels > limits.topic_levels_max {
        return Err(TopicError::TooDeep(limits.topic_levels_max));
    }
    Ok(())
}

/// Validates a topic name used in PUBLISH (no wildcards; MQTT-4.7.3-1,
/// MQTT-3.3.2-2). UTF-8 validity is checked by the codec, which only hands
/// out `&str`. One pass over the bytes: this runs for every publish
/// (`cargo bench --bench mqtt_codec` before changing it).
pub fn validate_name(topic: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > limits.topic_bytes_max {
        return Err(TopicError::TooLong(limits.topic_bytes_max));
    }
    let mut levels = 1;
    let mut wildcard = false;
    let mut nul = false;
    for &b in topic.as_bytes() {
        levels += usize::from(b == b'/');
        wildcard |= b == b'+' || b == b'#';
        nul |= b == 0;
    }
    if nul {
        return Err(TopicError::Nul);
    }
    if levels > limits.topic_levels_max {
        return Err(TopicError::TooDeep(limits.topic_levels_max));
    }
    if wildcard {
        return Err(TopicError::WildcardInName);
    }
    if reserved(topic) {
        return Err(TopicError::Reserved);
    }
    Ok(())
}

/// Validates a topic filter used in SUBSCRIBE/UNSUBSCRIBE (MQTT-4.7.1).
pub fn validate_filter(filter: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    check_common(filter, limits)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" {
                return Err(TopicError::BadMultiWildcard);
            }
            if levels.peek().is_some() {
                return Err(TopicError::BadMultiWildcard);
            }
        } else if level.contains('+') && level != "+" {
            return Err(TopicError::BadSingleWildcard);
        }
    }
    Ok(())
}

/// Validates a filter a client wrote: [`validate_filter`], and not in the
/// router's reserved first level (the mesh's own interest is in it, so
/// `validate_filter` itself accepts it).
pub fn validate_client_filter(filter: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    validate_filter(filter, limits)?;
    if reserved(filter) {
        return Err(TopicError::Reserved);
    }
    Ok(())
}

/// Validates a SUBSCRIBE filter, including the shared form
/// `$share/{group}/{filter}` (MQTT 5 §4.8.2, accepted for 3.1.1 too).
pub fn validate_subscription(full: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    match full.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest.split_once('/').ok_or(TopicError::BadShare)?;
            if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                return Err(TopicError::BadShare);
            }
            validate_client_filter(filter, limits)?;
            validate_filter(full, limits)
        }
        None if full == "$share" => Err(TopicError::BadShare),
        None => validate_client_filter(full, limits),
    }
}

/// Splits `$share/{group}/{filter}` (MQTT shared subscription) into its
/// group and filter; other filters have no group.
pub fn split_share(full: &str) -> (Option<&str>, &str) {
    match full
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((group, filter)) => (Some(group), filter),
        None => (None, full),
    }
}

/// Reference matcher, straight from the spec's wording. The trie is the
/// fast path; this one is the oracle its tests compare against.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    // MQTT-4.7.2-1: a filter starting with a wildcard does not match a
    // topic starting with '$'.
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: TopicLimits = TopicLimits {
        topic_bytes_max: 64,
        topic_levels_max: 8,
    };

    #[test]
    fn names() {
        assert!(validate_name("a/b/c", &L).is_ok());
        assert!(validate_name("/", &L).is_ok(), "empty levels are legal");
        assert!(validate_name("a//b", &L).is_ok());
        assert!(validate_name("$SYS/x", &L).is_ok());
        assert_eq!(validate_name("", &L), Err(TopicError::Empty));
        assert_eq!(validate_name("a/+/b", &L), Err(TopicError::WildcardInName));
        assert_eq!(validate_name("a/#", &L), Err(TopicError::WildcardInName));
        assert_eq!(validate_name("a\0b", &L), Err(TopicError::Nul));
        assert_eq!(
            validate_name(&"x".repeat(65), &L),
            Err(TopicError::TooLong(64))
        );
        assert_eq!(
            validate_name("1/2/3/4/5/6/7/8/9", &L),
            Err(TopicError::TooDeep(8))
        );
    }

    #[test]
    fn filters() {
        for ok in [
            "#", "+", "+/+", "a/#", "a/+/c", "/+", "+/", "$SYS/#", "a//#",
        ] {
            assert!(validate_filter(ok, &L).is_ok(), "{ok}");
        }
        assert_eq!(
            validate_filter("a/#/c", &L),
            Err(TopicError::BadMultiWildcard)
        );
        assert_eq!(validate_filter("a#", &L), Err(TopicError::BadMultiWildcard));
        assert_eq!(
            validate_filter("a/b#", &L),
            Err(TopicError::BadMultiWildcard)
        );
        assert_eq!(
            validate_filter("a+", &L),
            Err(TopicError::BadSingleWildcard)
        );
        assert_eq!(
            validate_filter("a/+b/c", &L),
            Err(TopicError::BadSingleWildcard)
        );
        assert_eq!(validate_filter("", &L), Err(TopicError::Empty));
    }

    #[test]
    fn shared_subscriptions() {
        assert!(validate_subscription("$share/g/a/#", &L).is_ok());
        assert!(validate_subscription("$share/g/+", &L).is_ok());
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
            "$share/g/a/#/b",
            "$share",
        ] {
            assert!(validate_subscription(bad, &L).is_err(), "{bad}");
        }
    }

    /// Clients never write the router's first level (accounts' spaces);
    /// the mesh's own filters still validate.
    #[test]
    fn reserved_first_level() {
        for t in ["$weft", "$weft/acct/A/x", "$weft/retained"] {
            assert_eq!(validate_name(t, &L), Err(TopicError::Reserved), "{t}");
            assert_eq!(validate_client_filter(t, &L), Err(TopicError::Reserved));
            assert!(validate_filter(t, &L).is_ok(), "the mesh's interest");
        }
        for f in ["$weft/#", "$share/g/$weft/acct/A/#"] {
            assert_eq!(
                validate_subscription(f, &L),
                Err(TopicError::Reserved),
                "{f}"
            );
        }
        for ok in ["$weftx/a", "a/$weft", "$SYS/x", "weft/a"] {
            assert!(validate_name(ok, &L).is_ok(), "{ok}");
            assert!(validate_subscription(ok, &L).is_ok(), "{ok}");
        }
    }

    /// The examples of MQTT 3.1.1 §4.7.1.2, §4.7.1.3 and §4.7.2.
    #[test]
    fn spec_matching_table() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "sport/tennis", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/x", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/b", "a/b", true),
            ("a/b", "a/B", false),
        ];
        for (f, t, want) in cases {
            assert_eq!(filter_matches(f, t), want, "{f} vs {t}");
        }
    }
}
