//! Link policy: what may cross one link, by topic, in each direction, and
//! which rule refuses what ([`LinkPolicy::export_verdict`],
//! [`LinkPolicy::import_verdict`]): the one place the rules are read, by
//! events, retained messages and route explain alike. Split from
//! `route.rs` by concern (a move, and the verdicts that name the rule).

use super::any_matches;
use crate::topic::filter_matches;

/// What may cross one link, by topic, in each direction. Deny wins over
/// allow; an empty allow list allows everything not denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Topics matching any of these are never sent over the link.
    pub export_deny: Vec<String>,
    /// If not empty, only topics matching one of these are sent.
    pub export_allow: Vec<String>,
    /// Topics matching any of these are dropped when they arrive (matched
    /// against the topic as the peer sent it, before `import_prefix`).
    pub import_deny: Vec<String>,
    /// If not empty, only topics matching one of these are accepted.
    pub import_allow: Vec<String>,
    /// Prepended to the topic of every event that arrives over the link
    /// (empty: none). Ends with `/`, has no wildcard. Interest advertised to
    /// the link has it stripped (filters that cannot match a prefixed topic
    /// are not advertised there).
    pub import_prefix: String,
}

impl LinkPolicy {
    pub(super) fn export_permitted(&self, topic: &str) -> bool {
        self.export_verdict(topic).is_ok()
    }

    /// Whether `topic` may be sent over the link, and if not the rule
    /// that refuses it: the one place the export rules are read (events,
    /// retained messages and route explain all ask here).
    pub fn export_verdict(&self, topic: &str) -> Result<(), Refusal> {
        verdict(
            &self.export_deny,
            &self.export_allow,
            topic,
            Direction::Export,
        )
    }

    /// Whether `topic` (as the peer sent it) is accepted from the link,
    /// and if not the rule that refuses it.
    pub fn import_verdict(&self, topic: &str) -> Result<(), Refusal> {
        verdict(
            &self.import_deny,
            &self.import_allow,
            topic,
            Direction::Import,
        )
    }
}

/// The direction of a link policy rule (the `direction` label of
/// `weft_mesh_policy_denied_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Export,
    Import,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::Export => "export",
            Direction::Import => "import",
        }
    }
}

/// The `rule` of a refusal by an allow list that no filter of matched.
pub const NOT_ALLOWED: &str = "(not allowed)";

/// Which link policy rule refused a topic: a deny filter (the first that
/// matches, in configuration order), or an allow list's miss.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Refusal {
    pub direction: Direction,
    /// True for an allow-list miss (`rule` is [`NOT_ALLOWED`]).
    pub allow_miss: bool,
    /// The deny filter as configured, or [`NOT_ALLOWED`].
    pub rule: String,
}

impl Refusal {
    /// `export_deny`, `export_allow`, `import_deny` or `import_allow`.
    pub fn by(&self) -> &'static str {
        match (self.direction, self.allow_miss) {
            (Direction::Export, false) => "export_deny",
            (Direction::Export, true) => "export_allow",
            (Direction::Import, false) => "import_deny",
            (Direction::Import, true) => "import_allow",
        }
    }
}

/// Deny wins; an empty allow list allows everything not denied.
fn verdict(
    deny: &[String],
    allow: &[String],
    topic: &str,
    direction: Direction,
) -> Result<(), Refusal> {
    if let Some(rule) = deny.iter().find(|f| filter_matches(f, topic)) {
        return Err(Refusal {
            direction,
            allow_miss: false,
            rule: rule.clone(),
        });
    }
    if !allow.is_empty() && !any_matches(allow, topic) {
        return Err(Refusal {
            direction,
            allow_miss: true,
            rule: NOT_ALLOWED.to_owned(),
        });
    }
    Ok(())
}
