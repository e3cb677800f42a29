//! Accounts: separate topic spaces in one router (NATS accounts, Solace
//! message VPNs, EMQX mountpoints), crossing only by an explicit export
//! (by one account) and import (by another).
//!
//! The model: every account but the default one lives in the router under
//! an internal prefix, `$weft/acct/<name>/<client topic>`. The trie, the
//! retained store, the rings and the mesh see only internal topics, so
//! isolation needs nothing from them: two accounts' `a/b` are two topics,
//! retained messages are per account for free, and an event keeps its
//! account across the mesh because its topic travels as is. The first
//! level `$weft` starts with `$`, so the default account's root wildcards
//! (`#`, `+/…`) never match another account's topics (MQTT-4.7.2-1, kept
//! by `topic::trie` and `topic::retained`), and clients may not write it
//! (`topic::validate_name`, `topic::validate_client_filter`): no client
//! reaches another account by spelling its prefix.
//!
//! The default account keeps the single namespace it always had, at zero
//! cost: its sessions carry no [`Space`] (unless it exports), so their
//! publishes and subscriptions are not touched. A delivery strips the
//! prefix before its frame is written ([`client_topic`], a slice).
//!
//! Exports and imports: an event a local client publishes in account A on
//! a topic that A exports and B imports (B's import filter lies within one
//! of A's exports, checked at config time) is also published in B's space:
//! one extra publish per importing account, computed only for sessions of
//! accounts that export. Imports are applied by the glue of the client's
//! connection, never to events from the mesh or from other shards, so an
//! event is copied once, where it entered, and a mesh never duplicates it.
//! Only streams are imported: a NATS reply subject or an MQTT 5 Response
//! Topic stays in the requester's terms (services across accounts are not
//! mapped).
//!
//! Owns: the compiled `[[security.accounts]]` (names, prefixes, the import
//! routes of each exporter) and the mapping between client and internal
//! topics. Must not touch: sockets, sessions, routing state.
//!
//! Limits: account names are at most [`ACCOUNT_NAME_BYTES_MAX`] bytes of
//! `[A-Za-z0-9_-]`; a client topic whose internal form would exceed MQTT's
//! 65,535-byte string is not published ([`Space::spread`] gives nothing).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::event::Event;
use crate::security::config::SecurityConfig;
use crate::security::InvalidConfig;
use crate::topic::{self, TopicLimits};

pub use crate::topic::{client_topic, ACCOUNT_PREFIX};

/// Longest account name, in bytes (its prefix is added to every topic).
pub const ACCOUNT_NAME_BYTES_MAX: usize = 64;

/// The topic space of one account, as its sessions' glues use it.
#[derive(Debug)]
pub struct Space {
    pub account: Arc<str>,
    /// `$weft/acct/<name>/`, or empty for the default account.
    prefix: Box<str>,
    /// Where this account's events also go: one entry per importing
    /// account, with the import filters (MQTT form, client terms).
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Route {
    /// The importer's prefix (empty: the default account).
    into: Box<str>,
    filters: Vec<Box<str>>,
}

impl Space {
    /// The internal prefix (empty for the default account).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The internal form of a topic or filter taken literally (NATS, whose
    /// queue groups are not in the filter).
    pub fn topic<'a>(&self, topic: &'a str) -> Cow<'a, str> {
        if self.prefix.is_empty() {
            return Cow::Borrowed(topic);
        }
        Cow::Owned(format!("{}{topic}", self.prefix))
    }

    /// The internal form of an MQTT client's topic filter, the filter
    /// inside `$share/{group}/…` included.
    pub fn filter<'a>(&self, full: &'a str) -> Cow<'a, str> {
        if self.prefix.is_empty() {
            return Cow::Borrowed(full);
        }
        Cow::Owned(match topic::split_share(full) {
            (Some(group), filter) => format!("$share/{group}/{}{filter}", self.prefix),
            (None, filter) => format!("{}{filter}", self.prefix),
        })
    }

    /// The events a client's publish makes, in order: the event in this
    /// account's space, then one copy per account that imports its topic.
    /// Empty when the internal topic would be too long. Out of line: the
    /// glues' publish path, which calls it only outside the default
    /// account, keeps its size.
    #[inline(never)]
    pub fn spread(&self, event: Event) -> SmallVec<[Event; 2]> {
        let mut out = SmallVec::new();
        let client = event.topic();
        for route in &self.routes {
            if route
                .filters
                .iter()
                .any(|f| topic::filter_matches(f, client))
            {
                if let Some(copy) = with_prefix(&event, &route.into) {
                    out.push(copy);
                }
            }
        }
        let own = if self.prefix.is_empty() {
            Some(event)
        } else {
            with_prefix(&event, &self.prefix)
        };
        if let Some(own) = own {
            out.insert(0, own);
        }
        out
    }

    /// The event in this account's space only (router events on a
    /// client's behalf: a NATS no-responders reply).
    pub fn own(&self, event: Event) -> Option<Event> {
        if self.prefix.is_empty() {
            return Some(event);
        }
        with_prefix(&event, &self.prefix)
    }
}

/// `event` with `prefix` before its topic (a new buffer: the cost of a
/// non-default account's publish).
fn with_prefix(event: &Event, prefix: &str) -> Option<Event> {
    if prefix.is_empty() {
        return Some(event.clone());
    }
    let client = event.topic();
    if prefix.len() + client.len() > usize::from(u16::MAX) {
        return None;
    }
    let mut internal = String::with_capacity(prefix.len() + client.len());
    internal.push_str(prefix);
    internal.push_str(client);
    let mut copy = Event::new(&internal, event.payload(), event.qos, event.retain);
    copy.origin = event.origin;
    copy.meta = event.meta.clone();
    copy.born_ns = event.born_ns;
    Some(copy)
}

/// The compiled accounts of one `[security]` generation.
#[derive(Debug, Default)]
pub struct Accounts {
    /// Accounts whose sessions need a [`Space`]: every non-default
    /// account, and the default one when it exports.
    spaces: HashMap<Arc<str>, Arc<Space>>,
    /// Every account name (the default one included).
    names: HashMap<Arc<str>, ()>,
    /// Configured users' accounts.
    users: HashMap<Box<str>, Arc<str>>,
    default: Arc<str>,
}

impl Accounts {
    /// Compiles and links `[[security.accounts]]`; every error names its
    /// key and the account's place in the list.
    pub fn from_config(c: &SecurityConfig) -> Result<Accounts, InvalidConfig> {
        let default: Arc<str> = c.default_account.as_str().into();
        check_name("security.default_account", &default)?;
        let mut names: HashMap<Arc<str>, ()> = HashMap::new();
        names.insert(default.clone(), ());
        for (i, a) in c.accounts.iter().enumerate() {
            check_name("security.accounts.name", &a.name).map_err(|e| at(e, i))?;
            if a.name != c.default_account && names.insert(a.name.as_str().into(), ()).is_some() {
                return Err(invalid(
                    "security.accounts.name",
                    format!("accounts[{i}]: '{}' is named twice", a.name),
                ));
            }
        }
        let prefix_of = |name: &str| -> Box<str> {
            if name == c.default_account {
                "".into()
            } else {
                format!("{ACCOUNT_PREFIX}{name}/").into()
            }
        };
        // Each account's exports (MQTT form), to check imports against.
        let mut exports: HashMap<&str, Vec<String>> = HashMap::new();
        for (i, a) in c.accounts.iter().enumerate() {
            let list = exports.entry(a.name.as_str()).or_default();
            for (j, f) in a.exports.iter().enumerate() {
                let filter = dialect_filter(f).map_err(|why| {
                    invalid(
                        "security.accounts.exports",
                        format!("accounts[{i}] ('{}'): exports[{j}] '{f}': {why}", a.name),
                    )
                })?;
                list.push(filter);
            }
        }
        // Routes by exporter: (importer's prefix, its filters).
        let mut routes: HashMap<&str, Vec<Route>> = HashMap::new();
        for (i, a) in c.accounts.iter().enumerate() {
            for (j, import) in a.imports.iter().enumerate() {
                let fail = |why: String| {
                    invalid(
                        "security.accounts.imports",
                        format!("accounts[{i}] ('{}'): imports[{j}]: {why}", a.name),
                    )
                };
                if !names.contains_key(import.account.as_str()) {
                    return Err(fail(format!("unknown account '{}'", import.account)));
                }
                if import.account == a.name {
                    return Err(fail("an account does not import from itself".into()));
                }
                let filter = dialect_filter(&import.filter)
                    .map_err(|why| fail(format!("filter '{}': {why}", import.filter)))?;
                let within = exports
                    .get(import.account.as_str())
                    .is_some_and(|e| e.iter().any(|x| filter_within(&filter, x)));
                if !within {
                    return Err(fail(format!(
                        "filter '{}' is not within any export of account '{}'",
                        import.filter, import.account
                    )));
                }
                let list = routes.entry(import.account.as_str()).or_default();
                let into = prefix_of(&a.name);
                match list.iter_mut().find(|r| r.into == into) {
                    Some(r) => r.filters.push(filter.into()),
                    None => list.push(Route {
                        into,
                        filters: vec![filter.into()],
                    }),
                }
            }
        }
        let mut spaces = HashMap::new();
        for name in names.keys() {
            let prefix = prefix_of(name);
            let routes = routes.remove(&**name).unwrap_or_default();
            if prefix.is_empty() && routes.is_empty() {
                continue; // the default account, untouched
            }
            spaces.insert(
                name.clone(),
                Arc::new(Space {
                    account: name.clone(),
                    prefix,
                    routes,
                }),
            );
        }
        let mut users = HashMap::new();
        for u in &c.users {
            let account: Arc<str> = if u.account.is_empty() {
                default.clone()
            } else {
                match names.get_key_value(u.account.as_str()) {
                    Some((name, _)) => name.clone(),
                    None => {
                        return Err(invalid(
                            "security.users.account",
                            format!("user '{}': unknown account '{}'", u.name, u.account),
                        ))
                    }
                }
            };
            users.insert(u.name.as_str().into(), account);
        }
        Ok(Accounts {
            spaces,
            names,
            users,
            default,
        })
    }

    /// The account of a user (configured or not): its `account` key, empty
    /// = `security.default_account`; anonymous clients are in the default
    /// account.
    pub fn account_of(&self, user: Option<&str>) -> Arc<str> {
        user.and_then(|u| self.users.get(u))
            .unwrap_or(&self.default)
            .clone()
    }

    /// The space of `account`'s sessions; None for the default account
    /// when it exports nothing (its sessions map nothing).
    pub fn space(&self, account: &str) -> Option<Arc<Space>> {
        self.spaces.get(account).cloned()
    }

    /// Whether `account` is configured (or is the default one).
    pub fn exists(&self, account: &str) -> bool {
        self.names.contains_key(account)
    }
}

fn invalid(key: &'static str, reason: String) -> InvalidConfig {
    InvalidConfig { key, reason }
}

/// Adds the account's place to an error about its name.
fn at(e: InvalidConfig, i: usize) -> InvalidConfig {
    invalid(e.key, format!("accounts[{}]: {}", i, e.reason))
}

fn check_name(key: &'static str, name: &str) -> Result<(), InvalidConfig> {
    let ok = !name.is_empty()
        && name.len() <= ACCOUNT_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "'{name}' must be 1 to {ACCOUNT_NAME_BYTES_MAX} characters of A-Z, a-z, 0-9, '_', '-'"
            ),
        ))
    }
}

/// An export or import filter in either dialect (the rules' reader,
/// `permissions::dialect_filter`), in MQTT form; neither the reserved
/// first level nor a shared subscription.
fn dialect_filter(f: &str) -> Result<String, String> {
    let (mqtt, nats) = super::permissions::dialect_filter(f)?;
    // Stricter than a SUB: a `*` or `>` inside a token (a literal there)
    // is refused as the likely typo it is in an export.
    if nats && f.split('.').any(|t| t.len() > 1 && t.contains(['*', '>'])) {
        return Err("a NATS wildcard must be a whole token".into());
    }
    let limits = TopicLimits {
        topic_bytes_max: usize::from(u16::MAX),
        topic_levels_max: usize::from(u16::MAX),
    };
    topic::validate_client_filter(&mqtt, &limits).map_err(|e| e.to_string())?;
    if mqtt.starts_with("$share/") {
        return Err("a shared subscription is not a filter to export or import".into());
    }
    Ok(mqtt)
}

/// Whether every topic `inner` matches is matched by `outer` (MQTT form).
/// (`a` is within `a/#`: the `#` matches its parent level.)
pub fn filter_within(inner: &str, outer: &str) -> bool {
    // MQTT-4.7.2-1: a root wildcard does not match a `$` level.
    if inner.starts_with('$') && outer.starts_with(['+', '#']) {
        return false;
    }
    let mut i = inner.split('/');
    let mut o = outer.split('/');
    loop {
        match (i.next(), o.next()) {
            (_, Some("#")) => return true,
            (Some("#"), _) => return false,
            (Some(_), Some("+")) => {}
            (Some(a), Some(b)) if a == b && a != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccountConfig, ImportConfig, UserConfig};

    fn account(name: &str, exports: &[&str], imports: &[(&str, &str)]) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            exports: exports.iter().map(|s| s.to_string()).collect(),
            imports: imports
                .iter()
                .map(|(a, f)| ImportConfig {
                    account: a.to_string(),
                    filter: f.to_string(),
                })
                .collect(),
        }
    }

    fn config(accounts: Vec<AccountConfig>) -> SecurityConfig {
        SecurityConfig {
            accounts,
            ..SecurityConfig::default()
        }
    }

    #[test]
    fn client_topics_are_slices() {
        assert_eq!(client_topic("a/b"), "a/b");
        assert_eq!(client_topic("$weft/acct/A/a/b"), "a/b");
        assert_eq!(client_topic("$weft/acct/A//"), "/");
        assert_eq!(client_topic("$SYS/x"), "$SYS/x");
        assert_eq!(client_topic("$weft/retained"), "$weft/retained");
        let t = "$weft/acct/A/x";
        assert!(std::ptr::eq(client_topic(t).as_ptr(), t[13..].as_ptr()));
    }

    #[test]
    fn dialects() {
        for (f, mqtt) in [
            ("a.*.c", "a/+/c"),
            ("a.>", "a/+/#"),
            ("a/+/c", "a/+/c"),
            ("a/#", "a/#"),
            ("a", "a"),
            (">", "+/#"),
        ] {
            assert_eq!(dialect_filter(f).unwrap(), mqtt, "{f}");
        }
        for bad in [
            "a..b",
            "a.>.b",
            "a.b*",
            "$weft.acct.A.>",
            "a/#/b",
            "$share/g/a",
        ] {
            assert!(dialect_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn within() {
        for (inner, outer) in [
            ("a/b", "a/b"),
            ("a/b", "a/+"),
            ("a/+", "a/+"),
            ("a/+/c", "a/#"),
            ("a/#", "a/#"),
            ("a", "a/#"),
            ("a/b/#", "#"),
            ("a/b/#", "a/+/#"),
        ] {
            assert!(filter_within(inner, outer), "{inner} within {outer}");
        }
        for (inner, outer) in [
            ("a/+", "a/b"),
            ("a/#", "a/+"),
            ("a/b/c", "a/b"),
            ("a", "a/+"),
            ("#", "a/#"),
            ("b/c", "a/#"),
            ("$x/y", "#"),
        ] {
            assert!(!filter_within(inner, outer), "{inner} not within {outer}");
        }
    }

    /// `filter_within` agrees with the matcher: a filter within another
    /// matches no topic the other does not.
    #[test]
    fn within_agrees_with_matching() {
        let filters = [
            "$x/#", "$x/b", "a/b", "a/+", "a/#", "#", "+/b", "a", "+", "a/+/c", "+/#",
        ];
        let topics = [
            "$x", "$x/b", "a", "a/b", "a/c", "a/b/c", "b", "b/b", "a/x/c", "x/y/z",
        ];
        for inner in filters {
            for outer in filters {
                if filter_within(inner, outer) {
                    for t in topics {
                        if topic::filter_matches(inner, t) {
                            assert!(topic::filter_matches(outer, t), "{inner} ⊂ {outer}: {t}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn spaces_map_filters_and_events() {
        let accounts = Accounts::from_config(&config(vec![
            account("A", &["sensors.>"], &[]),
            account("B", &[], &[("A", "sensors/+/temp")]),
        ]))
        .unwrap();
        assert!(accounts.space("default").is_none(), "default: zero cost");
        let a = accounts.space("A").unwrap();
        let b = accounts.space("B").unwrap();
        assert_eq!(a.filter("x/#"), "$weft/acct/A/x/#");
        assert_eq!(a.filter("$share/g/x/+"), "$share/g/$weft/acct/A/x/+");
        assert_eq!(a.topic("$share/g/x"), "$weft/acct/A/$share/g/x");
        let e = Event::new("sensors/1/temp", b"20", 1, true);
        let out: Vec<_> = a.spread(e).into_iter().collect();
        let topics: Vec<_> = out.iter().map(|e| e.topic()).collect();
        assert_eq!(
            topics,
            ["$weft/acct/A/sensors/1/temp", "$weft/acct/B/sensors/1/temp"]
        );
        assert!(out
            .iter()
            .all(|e| e.payload() == b"20" && e.qos == 1 && e.retain));
        let other = a.spread(Event::new("sensors/1/hum", b"", 0, false));
        assert_eq!(other.len(), 1, "not imported: one publish");
        let back = b.spread(Event::new("sensors/1/temp", b"", 0, false));
        assert_eq!(back.len(), 1, "imports go one way");
        assert_eq!(back[0].topic(), "$weft/acct/B/sensors/1/temp");
    }

    #[test]
    fn default_account_exports_without_prefix() {
        let accounts = Accounts::from_config(&config(vec![
            account("default", &["pub/#"], &[]),
            account("B", &[], &[("default", "pub/x")]),
        ]))
        .unwrap();
        let d = accounts.space("default").expect("it exports");
        assert_eq!(d.filter("a"), "a");
        let out = d.spread(Event::new("pub/x", b"", 0, false));
        let topics: Vec<_> = out.iter().map(|e| e.topic()).collect();
        assert_eq!(topics, ["pub/x", "$weft/acct/B/pub/x"]);
    }

    #[test]
    fn config_errors_name_their_key() {
        let err = |accounts, users: Vec<UserConfig>| {
            let c = SecurityConfig {
                users,
                ..config(accounts)
            };
            Accounts::from_config(&c).unwrap_err().to_string()
        };
        let e = err(vec![account("B", &[], &[("X", "a")])], vec![]);
        assert!(
            e.starts_with(
                "security.accounts.imports: accounts[0] ('B'): imports[0]: unknown account 'X'"
            ),
            "{e}"
        );
        let e = err(
            vec![
                account("A", &["a/+"], &[]),
                account("B", &[], &[("A", "a/#")]),
            ],
            vec![],
        );
        assert!(
            e.starts_with("security.accounts.imports: accounts[1] ('B')"),
            "{e}"
        );
        assert!(e.contains("not within any export"), "{e}");
        let e = err(vec![account("A", &["$weft/#"], &[])], vec![]);
        assert!(
            e.starts_with("security.accounts.exports: accounts[0]"),
            "{e}"
        );
        let e = err(vec![account("a/b", &[], &[])], vec![]);
        assert!(e.starts_with("security.accounts.name: accounts[0]"), "{e}");
        let e = err(vec![account("A", &[], &[]), account("A", &[], &[])], vec![]);
        assert!(e.contains("named twice"), "{e}");
        let user = UserConfig {
            name: "u".into(),
            account: "nope".into(),
            ..UserConfig::default()
        };
        let e = err(vec![], vec![user]);
        assert!(e.starts_with("security.users.account: user 'u'"), "{e}");
    }

    #[test]
    fn users_pick_their_account() {
        let c = SecurityConfig {
            users: vec![
                UserConfig {
                    name: "ann".into(),
                    account: "A".into(),
                    ..UserConfig::default()
                },
                UserConfig {
                    name: "dan".into(),
                    ..UserConfig::default()
                },
            ],
            ..config(vec![account("A", &[], &[])])
        };
        let accounts = Accounts::from_config(&c).unwrap();
        assert_eq!(&*accounts.account_of(Some("ann")), "A");
        assert_eq!(&*accounts.account_of(Some("dan")), "default");
        assert_eq!(&*accounts.account_of(None), "default");
        assert_eq!(&*accounts.account_of(Some("stranger")), "default");
    }
}
