//! AMQP link addresses ⇄ weft's internal topics and filters.
//!
//! Owns: reading the address of a link's target (where a client's sender
//! publishes), of a link's source (what a client's receiver subscribes
//! to), of a message's `to` on an anonymous link and of a `reply-to`; and
//! writing an internal topic back as an address (`render`). Must not
//! touch: links, sessions, subscriptions (the session machine calls this
//! at attach; the message mapping for `to` and `reply-to`).
//!
//! The rules (README, "AMQP 1.0"):
//! - a leading `/topic/` or `/exchange/amq.topic/` is stripped: brokers
//!   (ActiveMQ, RabbitMQ) write topic addresses so;
//! - the rest is MQTT when it holds `/`, `+` or `#`, else NATS (`.`, `*`,
//!   `>`; `a.b.*` is `a/b/+`, `a.>` is `a/+/#`), converted with
//!   `topic::subject` as NATS subjects are;
//! - `$share/{group}/{filter}` in a source names a queue group (the
//!   filter in either dialect), as MQTT's shared subscriptions;
//! - `/queue/{name}` is refused: weft has topics, not queues;
//! - sources may use wildcards; targets, `to` and `reply-to` may not.
//!
//! `render` writes the MQTT form (slashes), which reads back as the same
//! topic, except for a one-level topic holding a `.` (MQTT `a.b`): it
//! holds no `/`, so it reads back as the NATS subject `a.b` (`a/b`). No
//! address names such a topic; the README says so.
//!
//! Cost: once per attach, and once per message on an anonymous link or
//! with a `reply-to` (one `String` for the topic, which the event copies).

use std::borrow::Cow;

use crate::topic::{self, subject, TopicLimits};

/// Where a client's sender link publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An internal (MQTT-form) topic name.
    Topic(String),
    /// The null address (the anonymous relay): each message's `to` names
    /// its topic.
    Anonymous,
}

/// What a client's receiver link subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// An internal (MQTT-form) filter, validated as a client's filter.
    pub filter: String,
    /// The queue group of `$share/{group}/{filter}`.
    pub queue: Option<Box<str>>,
}

/// Why an address was refused: the reason goes to the log and into the
/// AMQP error's description (`amqp:invalid-field` / `amqp:not-found`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("{0}")]
    Invalid(String),
}

/// The prefixes brokers write before a topic's name.
const BROKER_PREFIXES: [&str; 2] = ["/topic/", "/exchange/amq.topic/"];
const QUEUE_PREFIX: &str = "/queue/";
const SHARE_PREFIX: &str = "$share/";

/// The topic a sender link's target names, or `Anonymous` for the null
/// address. An empty string is not the null address: it is refused.
pub fn target(address: Option<&str>, limits: &TopicLimits) -> Result<Target, AddressError> {
    match address {
        None => Ok(Target::Anonymous),
        Some(address) => topic(address, limits).map(Target::Topic),
    }
}

/// The filter (and queue group) a receiver link's source names.
pub fn source(address: &str, limits: &TopicLimits) -> Result<Source, AddressError> {
    let rest = strip(address)?;
    let (queue, filter) = match rest.strip_prefix(SHARE_PREFIX) {
        Some(shared) => {
            let (group, filter) = shared
                .split_once('/')
                .ok_or_else(|| invalid(address, "a shared source is $share/{group}/{filter}"))?;
            if group.is_empty() || group.contains(['+', '#', '*', '>']) {
                return Err(invalid(
                    address,
                    "a queue group is a non-empty name free of wildcards",
                ));
            }
            (Some(group), filter)
        }
        None => (None, rest),
    };
    if filter.is_empty() {
        return Err(AddressError::Empty);
    }
    let filter = to_internal(address, filter, true, limits)?;
    match queue {
        Some(group) => {
            let full = format!("{SHARE_PREFIX}{group}/{filter}");
            topic::validate_subscription(&full, limits)
                .map_err(|e| invalid(address, &e.to_string()))?;
        }
        None => {
            topic::validate_client_filter(&filter, limits)
                .map_err(|e| invalid(address, &e.to_string()))?;
        }
    }
    Ok(Source {
        filter,
        queue: queue.map(Into::into),
    })
}

/// A message's `to` on an anonymous link, a target's address or a
/// `reply-to`, as an internal topic name (no wildcards).
pub fn topic(address: &str, limits: &TopicLimits) -> Result<String, AddressError> {
    let rest = strip(address)?;
    if rest.starts_with(SHARE_PREFIX) {
        return Err(invalid(
            address,
            "$share/ names a queue group of a receiver, not a topic to publish to",
        ));
    }
    let name = to_internal(address, rest, false, limits)?;
    topic::validate_name(&name, limits).map_err(|e| invalid(address, &e.to_string()))?;
    Ok(name)
}

/// An internal topic as AMQP writes it in `to` and `reply-to`: the MQTT
/// form, an account's prefix removed (as every protocol's delivery does,
/// `topic::client_topic`). Borrowed: the internal form is the MQTT form.
pub fn render(topic: &str) -> Cow<'_, str> {
    Cow::Borrowed(topic::client_topic(topic))
}

/// The address with a broker's topic prefix removed; empty and queue
/// addresses refused.
fn strip(address: &str) -> Result<&str, AddressError> {
    if address.is_empty() {
        return Err(AddressError::Empty);
    }
    if address.starts_with(QUEUE_PREFIX) {
        return Err(invalid(
            address,
            "weft has no queues; use $share/{group}/{filter}",
        ));
    }
    let rest = BROKER_PREFIXES
        .iter()
        .find_map(|p| address.strip_prefix(p))
        .unwrap_or(address);
    if rest.is_empty() {
        return Err(AddressError::Empty);
    }
    Ok(rest)
}

/// `name` (a topic or filter in either dialect) in the internal form;
/// wildcards in a name are refused by the callers' validation (MQTT) or
/// here (NATS).
fn to_internal(
    address: &str,
    name: &str,
    wildcards: bool,
    limits: &TopicLimits,
) -> Result<String, AddressError> {
    if name.contains(['/', '+', '#']) {
        return Ok(name.to_string());
    }
    subject::to_internal(name, wildcards, limits.topic_bytes_max)
        .map_err(|e| invalid(address, &format!("as a NATS subject: {e}")))
}

#[cold]
fn invalid(address: &str, reason: &str) -> AddressError {
    AddressError::Invalid(format!("address {address:?}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: TopicLimits = TopicLimits {
        topic_bytes_max: 64,
        topic_levels_max: 8,
    };

    fn reason(r: Result<impl std::fmt::Debug, AddressError>) -> String {
        match r {
            Err(AddressError::Invalid(reason)) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn src(filter: &str, queue: Option<&str>) -> Source {
        Source {
            filter: filter.into(),
            queue: queue.map(Into::into),
        }
    }

    #[test]
    fn null_target_is_anonymous_and_empty_is_refused() {
        assert_eq!(target(None, &L), Ok(Target::Anonymous));
        assert_eq!(target(Some(""), &L), Err(AddressError::Empty));
        assert_eq!(source("", &L), Err(AddressError::Empty));
        assert_eq!(topic("", &L), Err(AddressError::Empty));
        assert_eq!(topic("/topic/", &L), Err(AddressError::Empty));
        assert_eq!(source("$share/g/", &L), Err(AddressError::Empty));
    }

    #[test]
    fn mqtt_dialect_when_slash_or_mqtt_wildcards() {
        let t = |a| target(Some(a), &L);
        assert_eq!(t("sensors/t1"), Ok(Target::Topic("sensors/t1".into())));
        assert_eq!(t("a.b/c"), Ok(Target::Topic("a.b/c".into())), "dots stay");
        assert_eq!(t("/a"), Ok(Target::Topic("/a".into())));
        assert_eq!(source("a/+/c", &L), Ok(src("a/+/c", None)));
        assert_eq!(source("a.b/#", &L), Ok(src("a.b/#", None)));
        assert_eq!(source("#", &L), Ok(src("#", None)));
        assert_eq!(source("a/*", &L), Ok(src("a/*", None)), "* is literal");
    }

    #[test]
    fn nats_dialect_otherwise() {
        let t = |a| topic(a, &L);
        assert_eq!(t("sensors.t1"), Ok("sensors/t1".into()));
        assert_eq!(t("single"), Ok("single".into()));
        // A `/` makes it MQTT, even NATS's escape of a `.` (`//`).
        assert_eq!(t("a.b//c"), Ok("a.b//c".into()));
        assert_eq!(t("_INBOX.x1"), Ok("_INBOX/x1".into()));
        assert_eq!(source("a.b.*", &L), Ok(src("a/b/+", None)));
        assert_eq!(source("a.>", &L), Ok(src("a/+/#", None)));
        assert_eq!(source(">", &L), Ok(src("+/#", None)));
        assert!(reason(source("a..b", &L)).contains("empty token"));
        assert!(reason(source("a.>.b", &L)).contains("last token"));
    }

    #[test]
    fn broker_prefixes_are_stripped() {
        for a in ["/topic/a/b", "/topic/a.b", "/exchange/amq.topic/a.b"] {
            assert_eq!(topic(a, &L), Ok("a/b".into()), "{a}");
        }
        assert_eq!(source("/topic/a.*", &L), Ok(src("a/+", None)));
        assert_eq!(source("/exchange/amq.topic/a/#", &L), Ok(src("a/#", None)));
        // Only a leading prefix.
        assert_eq!(topic("x/topic/a", &L), Ok("x/topic/a".into()));
    }

    #[test]
    fn shared_sources_name_a_queue_group() {
        assert_eq!(source("$share/g/a/#", &L), Ok(src("a/#", Some("g"))));
        assert_eq!(source("$share/g/a.*", &L), Ok(src("a/+", Some("g"))));
        assert_eq!(
            source("/topic/$share/g/a.>", &L),
            Ok(src("a/+/#", Some("g")))
        );
        assert!(reason(source("$share/g", &L)).contains("$share/{group}/{filter}"));
        for bad in ["$share//a", "$share/g+/a", "$share/g*/a"] {
            assert!(reason(source(bad, &L)).contains("queue group"), "{bad}");
        }
        assert!(reason(source("$share/g/a/#/b", &L)).contains("'#'"));
        assert!(reason(topic("$share/g/a", &L)).contains("receiver"));
    }

    #[test]
    fn queues_are_refused() {
        for a in ["/queue/q1", "/queue/"] {
            assert_eq!(
                reason(source(a, &L)),
                format!("address {a:?}: weft has no queues; use $share/{{group}}/{{filter}}")
            );
            assert!(reason(target(Some(a), &L)).contains("no queues"));
        }
    }

    #[test]
    fn wildcards_are_refused_in_targets_and_to() {
        for a in ["a/+", "a/#", "#", "a.*", "a.>", "/topic/a.*"] {
            assert!(target(Some(a), &L).is_err(), "{a}");
            assert!(topic(a, &L).is_err(), "{a}");
            assert!(source(a, &L).is_ok(), "{a}");
        }
        assert!(reason(topic("a.*", &L)).contains("wildcard"));
        assert!(reason(topic("a/+", &L)).contains("wildcard"));
    }

    #[test]
    fn topic_rules_and_limits_apply() {
        assert!(reason(topic("$weft/x", &L)).contains("reserved"));
        assert!(reason(source("$weft/#", &L)).contains("reserved"));
        assert!(reason(topic(&"x".repeat(65), &L)).contains("64 bytes"));
        assert!(reason(topic("1/2/3/4/5/6/7/8/9", &L)).contains("8 levels"));
        assert!(reason(topic("a b", &L)).contains("whitespace"));
        assert!(reason(source("a/b+", &L)).contains("'+'"));
    }

    #[test]
    fn render_writes_the_mqtt_form_that_reads_back() {
        for t in [
            "a/b",
            "sensors/t1",
            "a/b.c",
            "/a",
            "a//b",
            "_INBOX/x1",
            "single",
        ] {
            assert_eq!(render(t), t);
            assert_eq!(topic(&render(t), &L).as_deref(), Ok(t), "{t}");
        }
        assert_eq!(render("$weft/acct/A/a/b"), "a/b", "account prefix removed");
        // The one form that does not read back (module doc).
        assert_eq!(topic(&render("a.b"), &L).as_deref(), Ok("a/b"));
    }
}
