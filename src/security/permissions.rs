//! Authorization: publish and subscribe rules, compiled once per
//! configuration, turned into one session's [`Grants`] at CONNECT, and
//! asked per PUBLISH, per SUBSCRIBE and per delivery to a subscription
//! that needs it.
//!
//! The model (README, "Permissions"):
//! - a rule is a topic filter in either dialect. Its dialect is read from
//!   the rule itself: one that holds `/`, `+` or `#` is MQTT; otherwise one
//!   that holds `.`, `*` or `>` is NATS (`sensors.*.temp` is
//!   `sensors/+/temp`, `sensors.>` is `sensors/+/#`, as
//!   `topic::subject` maps subjects); one plain word is the same in both.
//!   A `mqtt:` or `nats:` prefix forces the dialect (an MQTT rule whose one
//!   level holds a `.`, say `mqtt:v1.2`). Rules are compiled to the
//!   internal (MQTT) form, so one rule holds whatever protocol the client
//!   speaks.
//! - `%u` (user name) and `%c` (client id; NATS: the CONNECT `name`, else
//!   the id the router assigned) are substituted per session, inside one
//!   level. A value that would widen the rule is refused, not escaped: a
//!   value that is empty or holds `/`, `+`, `#` or NUL (for a rule written
//!   in the NATS dialect also `.`, `*` or `>`) makes the session's CONNECT
//!   refused as not authorized ([`Substitution`]). `%u` in
//!   `security.anonymous` is a configuration error.
//! - a user's rules are its own plus its groups'; anonymous clients (and
//!   an identity naming no configured user) get `security.anonymous`, for
//!   both directions. An empty `allow` allows everything not denied; deny
//!   wins.
//! - a SUBSCRIBE is refused when nothing it could receive is readable (its
//!   filter lies wholly inside a deny filter, or overlaps no allow filter);
//!   granted and *checked* when it overlaps a deny filter or is not wholly
//!   inside one allow filter (each delivery to it is tested against the
//!   read rules); granted plainly otherwise (deliveries pay nothing).
//!
//! Owns: the rule trees and the containment and overlap tests on MQTT
//! filters (with the `$` rule: a wildcard in first position matches no
//! `$` topic). Pure: no IO, no clock, no shard state. Must not touch:
//! protocol codes (each session maps a denial to its own), topic spaces
//! of accounts (rules see topics as the client sees them).
//!
//! Costs: a user with no rules shares one allow-all [`Grants`] (an `Arc`
//! clone per session, one branch per event); a rule set without `%u`/`%c`
//! is compiled once per configuration and shared; with them, per session.
//! A check walks the tree level by level (one hash lookup per level and
//! rule wildcard), whatever the number of rules: `benches/authz.rs`.

use std::sync::Arc;

use hashbrown::HashMap;

use crate::security::config::{RulesConfig, SecurityConfig};
use crate::security::InvalidConfig;

/// What a SUBSCRIBE may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Nothing it could receive may be read: refused.
    Denied,
    /// Every topic it matches may be read: deliveries are not tested.
    Granted,
    /// Some topics it matches may not be read: each delivery is tested.
    Checked,
}

/// What a denial refused: the `action` label of
/// `weft_authz_denied_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Publish,
    Subscribe,
    /// An event (or a retained message) not delivered to a checked
    /// subscription.
    Deliver,
}

impl Denied {
    pub fn label(self) -> &'static str {
        match self {
            Denied::Publish => "publish",
            Denied::Subscribe => "subscribe",
            Denied::Deliver => "deliver",
        }
    }
}

/// A session's compiled rights. See the module doc.
#[derive(Debug, Default)]
pub struct Grants {
    publish: Rules,
    subscribe: Rules,
    /// No rule at all: every check answers yes at once.
    allow_all: bool,
}

impl Grants {
    /// The rights of a session with no rules.
    pub fn allow_all() -> Grants {
        Grants {
            allow_all: true,
            ..Grants::default()
        }
    }

    pub fn is_allow_all(&self) -> bool {
        self.allow_all
    }

    /// Whether the session may publish to `topic` (internal form).
    #[inline]
    pub fn may_publish(&self, topic: &str) -> bool {
        self.allow_all || self.publish.permits(topic)
    }

    /// Whether the session may read `topic` (internal form): the test of
    /// a delivery to a checked subscription, and of a retained message.
    #[inline]
    pub fn may_read(&self, topic: &str) -> bool {
        self.allow_all || self.subscribe.permits(topic)
    }

    /// What a subscription to `filter` (internal form, no `$share/`
    /// prefix) may have.
    pub fn subscription(&self, filter: &str) -> Subscription {
        if self.allow_all {
            return Subscription::Granted;
        }
        self.subscribe.subscription(filter)
    }
}

/// One direction's allow and deny trees.
#[derive(Debug, Default)]
struct Rules {
    /// None: everything not denied.
    allow: Option<FilterTree>,
    deny: FilterTree,
}

impl Rules {
    fn permits(&self, topic: &str) -> bool {
        !self.deny.matches(topic) && self.allow.as_ref().is_none_or(|a| a.matches(topic))
    }

    fn subscription(&self, filter: &str) -> Subscription {
        if self.deny.covers(filter) {
            return Subscription::Denied;
        }
        let inside_allow = match &self.allow {
            None => true,
            Some(allow) if !allow.overlaps(filter) => return Subscription::Denied,
            Some(allow) => allow.covers(filter),
        };
        if inside_allow && !self.deny.overlaps(filter) {
            Subscription::Granted
        } else {
            Subscription::Checked
        }
    }
}

/// MQTT filters (internal form) in a trie: one node per level, literal
/// children in a map, the `+` child in its own slot, `#` and "a filter
/// ends here" as flags. Built once, never shrunk: every node lies on the
/// path of some filter.
#[derive(Debug, Default)]
struct FilterTree {
    root: Node,
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// A filter `<path>/#` (matches `<path>` and everything below).
    hash: bool,
    /// A filter `<path>`.
    end: bool,
}

/// The first level of `filter` and what follows it (None: it was the
/// last).
fn split(filter: &str) -> (&str, Option<&str>) {
    match filter.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (filter, None),
    }
}

/// A wildcard in first position matches no topic whose first level starts
/// with `$` (MQTT-4.7.2-1).
fn shielded(root: bool, level: &str) -> bool {
    root && level.starts_with('$')
}

impl FilterTree {
    fn insert(&mut self, filter: &str) {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = match level {
                "#" => {
                    node.hash = true;
                    self.len += 1;
                    return;
                }
                "+" => node.plus.get_or_insert_with(Box::default),
                literal => node.literal.entry(literal.into()).or_default(),
            };
        }
        node.end = true;
        self.len += 1;
    }

    /// Whether some filter matches `topic`.
    fn matches(&self, topic: &str) -> bool {
        self.len > 0 && matches(&self.root, topic, true)
    }

    /// Whether one filter matches every topic `filter` matches.
    fn covers(&self, filter: &str) -> bool {
        self.len > 0 && covers(&self.root, Some(filter), true)
    }

    /// Whether some filter matches a topic `filter` matches.
    fn overlaps(&self, filter: &str) -> bool {
        self.len > 0 && overlaps(&self.root, Some(filter), true)
    }
}

fn matches(node: &Node, topic: &str, root: bool) -> bool {
    let (level, rest) = split(topic);
    let shielded = shielded(root, level);
    if node.hash && !shielded {
        return true;
    }
    let next = |child: &Node| match rest {
        None => child.end || child.hash,
        Some(rest) => matches(child, rest, false),
    };
    node.literal.get(level).is_some_and(next)
        || (!shielded && node.plus.as_deref().is_some_and(next))
}

fn covers(node: &Node, filter: Option<&str>, root: bool) -> bool {
    let Some(filter) = filter else {
        return node.end || node.hash;
    };
    let (level, rest) = split(filter);
    // A `+` or `#` in first position is itself shielded from `$` topics,
    // so a `#` rule covers it.
    if node.hash && !shielded(root, level) {
        return true;
    }
    match level {
        // Only a `#` rule (above) covers a `#`.
        "#" => false,
        "+" => node.plus.as_deref().is_some_and(|c| covers(c, rest, false)),
        literal => {
            node.literal
                .get(literal)
                .is_some_and(|c| covers(c, rest, false))
                || (!shielded(root, literal)
                    && node.plus.as_deref().is_some_and(|c| covers(c, rest, false)))
        }
    }
}

fn overlaps(node: &Node, filter: Option<&str>, root: bool) -> bool {
    let Some(filter) = filter else {
        return node.end || node.hash;
    };
    let (level, rest) = split(filter);
    if node.hash && !shielded(root, level) {
        return true;
    }
    match level {
        // `<path>/#` matches `<path>` and anything below it: any rule
        // ending here or going on from here (not to a `$` first level).
        "#" => {
            (node.end && !root)
                || node.plus.is_some()
                || node.literal.keys().any(|k| !shielded(root, k))
        }
        "+" => {
            node.plus
                .as_deref()
                .is_some_and(|c| overlaps(c, rest, false))
                || node
                    .literal
                    .iter()
                    .any(|(k, c)| !shielded(root, k) && overlaps(c, rest, false))
        }
        literal => {
            node.literal
                .get(literal)
                .is_some_and(|c| overlaps(c, rest, false))
                || (!shielded(root, literal)
                    && node
                        .plus
                        .as_deref()
                        .is_some_and(|c| overlaps(c, rest, false)))
        }
    }
}

// ------------------------------------------------------------- compiling

/// A substituted value that would widen its rule: the session is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    /// `%u` or `%c`.
    pub placeholder: &'static str,
    pub value: Box<str>,
}

impl std::fmt::Display for Substitution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {:?} is empty or holds a separator or wildcard character, which would widen a rule",
            self.placeholder, self.value
        )
    }
}

/// One rule in internal form; `%u`/`%c` left in place when `template`.
#[derive(Debug, Clone)]
struct Rule {
    filter: Box<str>,
    /// Written in the NATS dialect: `.`, `*` and `>` also separate or
    /// match there, so a substituted value may not hold them.
    nats: bool,
    template: bool,
}

/// One direction's rules as configured (for a user: with its groups').
#[derive(Debug, Clone, Default)]
struct RuleList {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

/// Both directions' rules of one user (or of anonymous clients).
#[derive(Debug, Clone, Default)]
struct Policy {
    publish: RuleList,
    subscribe: RuleList,
}

impl Policy {
    fn is_empty(&self) -> bool {
        self.publish.allow.is_empty()
            && self.publish.deny.is_empty()
            && self.subscribe.allow.is_empty()
            && self.subscribe.deny.is_empty()
    }

    fn templated(&self) -> bool {
        [
            &self.publish.allow,
            &self.publish.deny,
            &self.subscribe.allow,
            &self.subscribe.deny,
        ]
        .iter()
        .any(|rules| rules.iter().any(|r| r.template))
    }

    fn build(&self, user: &str, client_id: &str) -> Result<Grants, Substitution> {
        Ok(Grants {
            publish: build_rules(&self.publish, user, client_id)?,
            subscribe: build_rules(&self.subscribe, user, client_id)?,
            allow_all: false,
        })
    }
}

fn build_rules(list: &RuleList, user: &str, client_id: &str) -> Result<Rules, Substitution> {
    let tree = |rules: &[Rule]| -> Result<FilterTree, Substitution> {
        let mut tree = FilterTree::default();
        for rule in rules {
            if rule.template {
                tree.insert(&substitute(rule, user, client_id)?);
            } else {
                tree.insert(&rule.filter);
            }
        }
        Ok(tree)
    };
    Ok(Rules {
        allow: if list.allow.is_empty() {
            None
        } else {
            Some(tree(&list.allow)?)
        },
        deny: tree(&list.deny)?,
    })
}

fn substitute(rule: &Rule, user: &str, client_id: &str) -> Result<String, Substitution> {
    for (placeholder, value) in [("%u", user), ("%c", client_id)] {
        let widens = value.is_empty()
            || value.contains(['/', '+', '#', '\0'])
            || (rule.nats && value.contains(['.', '*', '>']));
        if widens && rule.filter.contains(placeholder) {
            return Err(Substitution {
                placeholder,
                value: value.into(),
            });
        }
    }
    Ok(rule.filter.replace("%u", user).replace("%c", client_id))
}

/// A filter as the operator wrote it (a rule, an account's export or
/// import), in internal form, and whether it was written in the NATS
/// dialect. The dialect: `mqtt:` or `nats:` in front says it; else a `/`,
/// `+` or `#` means MQTT, and a `.`, `*` or `>` with none of those means
/// NATS (read as `topic::subject` reads a SUB).
pub(crate) fn dialect_filter(text: &str) -> Result<(String, bool), String> {
    let (nats, body) = if let Some(body) = text.strip_prefix("mqtt:") {
        (false, body)
    } else if let Some(body) = text.strip_prefix("nats:") {
        (true, body)
    } else {
        let mqtt = text.contains(['/', '+', '#']);
        (!mqtt && text.contains(['.', '*', '>']), text)
    };
    let filter = if nats {
        crate::topic::subject::to_internal(body, true, usize::MAX)
            .map_err(|e| format!("{text:?} is not a NATS subject filter: {e}"))?
    } else {
        body.to_string()
    };
    let limits = crate::topic::TopicLimits {
        topic_bytes_max: usize::MAX,
        topic_levels_max: usize::MAX,
    };
    crate::topic::validate_filter(&filter, &limits)
        .map_err(|e| format!("{text:?} is not a topic filter: {e}"))?;
    Ok((filter, nats))
}

/// A rule as the operator wrote it, in internal form; its dialect said.
fn compile_rule(text: &str) -> Result<Rule, String> {
    let (filter, nats) = dialect_filter(text)?;
    Ok(Rule {
        template: filter.contains("%u") || filter.contains("%c"),
        filter: filter.into(),
        nats,
    })
}

/// Compiles one allow/deny pair; an error names `key` (the section),
/// whose rules (`whose`, empty for anonymous clients) and which list.
fn compile_list(
    rules: &RulesConfig,
    into: &mut RuleList,
    key: &'static str,
    whose: &str,
    direction: &str,
) -> Result<(), InvalidConfig> {
    let bad = |list: &str, reason: String| InvalidConfig {
        key,
        reason: format!("{whose}{direction}{list}: {reason}"),
    };
    for text in &rules.allow {
        into.allow
            .push(compile_rule(text).map_err(|r| bad("allow", r))?);
    }
    for text in &rules.deny {
        into.deny
            .push(compile_rule(text).map_err(|r| bad("deny", r))?);
    }
    Ok(())
}

/// How one user's (or anonymous clients') grants are made.
#[derive(Debug)]
enum Prepared {
    /// No rules: the shared allow-all grants.
    AllowAll,
    /// No substitution: compiled once, shared by its sessions.
    Fixed(Arc<Grants>),
    /// With `%u`/`%c`: compiled per session.
    PerSession(Policy),
}

impl Prepared {
    fn new(policy: Policy) -> Prepared {
        if policy.is_empty() {
            Prepared::AllowAll
        } else if policy.templated() {
            Prepared::PerSession(policy)
        } else {
            Prepared::Fixed(Arc::new(
                policy.build("", "").expect("no substitution, no refusal"),
            ))
        }
    }
}

/// The compiled rules of one configuration generation.
#[derive(Debug)]
pub struct Permissions {
    allow_all: Arc<Grants>,
    anonymous: Prepared,
    users: HashMap<Box<str>, Prepared>,
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions {
            allow_all: Arc::new(Grants::allow_all()),
            anonymous: Prepared::AllowAll,
            users: HashMap::new(),
        }
    }
}

impl Permissions {
    /// Compiles every rule of `[security]`; an error names the rule.
    pub fn from_config(c: &SecurityConfig) -> Result<Permissions, InvalidConfig> {
        let mut anonymous = Policy::default();
        let rules = &c.anonymous;
        if rules
            .allow
            .iter()
            .chain(&rules.deny)
            .any(|r| r.contains("%u"))
        {
            return Err(InvalidConfig {
                key: "security.anonymous",
                reason: "%u (the user name) in a rule of anonymous clients, who have none".into(),
            });
        }
        let key = "security.anonymous";
        compile_list(rules, &mut anonymous.publish, key, "", "")?;
        compile_list(rules, &mut anonymous.subscribe, key, "", "")?;
        let mut groups: HashMap<&str, Policy> = HashMap::new();
        for g in &c.groups {
            let mut policy = Policy::default();
            let (key, whose) = ("security.groups", format!("group {:?} ", g.name));
            compile_list(&g.publish, &mut policy.publish, key, &whose, "publish.")?;
            compile_list(
                &g.subscribe,
                &mut policy.subscribe,
                key,
                &whose,
                "subscribe.",
            )?;
            groups.insert(&g.name, policy);
        }
        let mut users = HashMap::new();
        for u in &c.users {
            let mut policy = Policy::default();
            let (key, whose) = ("security.users", format!("user {:?} ", u.name));
            compile_list(&u.publish, &mut policy.publish, key, &whose, "publish.")?;
            compile_list(
                &u.subscribe,
                &mut policy.subscribe,
                key,
                &whose,
                "subscribe.",
            )?;
            for name in &u.groups {
                let Some(group) = groups.get(name.as_str()) else {
                    return Err(InvalidConfig {
                        key: "security.users",
                        reason: format!("{whose}names group {name:?}, which is not configured"),
                    });
                };
                for (into, from) in [
                    (&mut policy.publish, &group.publish),
                    (&mut policy.subscribe, &group.subscribe),
                ] {
                    into.allow.extend(from.allow.iter().cloned());
                    into.deny.extend(from.deny.iter().cloned());
                }
            }
            users.insert(u.name.as_str().into(), Prepared::new(policy));
        }
        Ok(Permissions {
            allow_all: Arc::new(Grants::allow_all()),
            anonymous: Prepared::new(anonymous),
            users,
        })
    }

    /// The grants of a session of `user` (None: anonymous; a name no user
    /// has: anonymous too) with `client_id`.
    pub fn grants(&self, user: Option<&str>, client_id: &str) -> Result<Arc<Grants>, Substitution> {
        let prepared = user
            .and_then(|u| self.users.get(u))
            .unwrap_or(&self.anonymous);
        match prepared {
            Prepared::AllowAll => Ok(self.allow_all.clone()),
            Prepared::Fixed(grants) => Ok(grants.clone()),
            Prepared::PerSession(policy) => {
                Ok(Arc::new(policy.build(user.unwrap_or(""), client_id)?))
            }
        }
    }
}

#[cfg(test)]
mod tests;
