//! The routing core's half of route explain: what this router would do
//! with an event on a topic, told rather than done. An event entering the
//! mesh here ([`Router::explain_publish`]) is planned by `plan_publish`,
//! the function `publish_as` uses; a copy arriving over a link
//! ([`Router::explain_arrival`]) goes through `arrival` (the import rules
//! and prefix, as `on_event`) and `plan` (next hops, export rules, as
//! `forward`). So an explanation can never disagree with a real publish
//! on a rule: there is no second copy of the rules. Nothing is counted and
//! nothing is sent here; the runtime asks the shards for the local
//! subscribers and carries the request on (`mesh::explain`).
//!
//! Also the report's shape, shared with the admin endpoint, the CLI and
//! the link (as JSON in EXPLAIN_REPLY): field names are binding (README,
//! "Route explain").

use serde::{Deserialize, Serialize};

use super::*;

/// One router's part of an explanation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterReport {
    pub router: String,
    /// The topic at this router (after an import prefix).
    pub topic: String,
    /// The router whose link the request arrived over (None: published here).
    pub arrived_from: Option<String>,
    pub import: Option<ImportStep>,
    pub deliveries: Vec<LocalDelivery>,
    pub refused: Vec<LocalRefusal>,
    pub links: Vec<LinkStep>,
    /// The shards' lists were cut at `admin.view_entries_max`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// What the import policy of the link an event arrives over does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportStep {
    pub from: String,
    /// `accepted` or `refused`.
    pub action: String,
    /// `import_deny` or `import_allow` when refused.
    pub by: Option<String>,
    pub rule: Option<String>,
    /// The import prefix prepended, if any.
    pub prefix: Option<String>,
}

/// A copy over a link, or a link the export policy keeps it off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStep {
    pub peer: String,
    /// `forward` or `refused`.
    pub action: String,
    /// The routers the copy is for (forward).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A subscriber of this router that would receive the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalDelivery {
    pub shard: usize,
    pub protocol: String,
    pub client_id: String,
    pub filter: String,
    pub qos: u8,
    /// Set for a queue group's member: one member of the group gets it.
    pub queue_group: Option<String>,
}

/// A subscriber whose filter matches but who would not receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRefusal {
    pub client_id: String,
    pub protocol: String,
    pub filter: String,
    /// `permission`.
    pub by: String,
    pub rule: String,
}

/// A router the explanation did not reach, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreached {
    pub router: String,
    /// `timeout`, `no_route`, `hops_exceeded`, `link_down`, `busy`,
    /// `reply_too_large`, `bad_reply`, `not_found`, `shards_timeout`.
    pub reason: String,
}

/// What this router does with the event, and what the runtime must do
/// next to finish its part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hop {
    /// Links, import and topic filled in; the shards fill the rest.
    pub report: RouterReport,
    /// Whether the event is delivered here (ask the shards).
    pub local: bool,
    /// The request goes on over these links, for these routers, on
    /// `report.topic`.
    pub copies: Vec<(LinkId, Vec<String>)>,
    /// Routers no link leads to, and why.
    pub unreached: Vec<Unreached>,
}

impl Router {
    /// The up (not held) links and their peers, for a request that is
    /// flooded to find a router.
    pub fn live_links(&self) -> Vec<(LinkId, String)> {
        self.links
            .iter()
            .filter(|(_, l)| !l.held)
            .map(|(&id, l)| (id, l.peer.clone()))
            .collect()
    }

    /// An event entering the mesh here on `topic`: the plan `publish_as`
    /// follows (`plan_publish`), described.
    pub fn explain_publish(&self, topic: &str) -> Hop {
        let plan = self.plan_publish(topic);
        let mut hop = self.describe(topic, &plan);
        // The shards deliver their own subscribers' copies before the
        // mesh sees the event: always asked.
        hop.local = true;
        hop
    }

    /// A copy for `dests` arriving over `link` on `topic` (as the peer
    /// sent it) after `hops` links: `on_event`'s import step and
    /// `forward`'s plan, described.
    pub fn explain_arrival(&self, link: LinkId, topic: &str, dests: &[String], hops: u8) -> Hop {
        let peer = self.link_peer(link).unwrap_or("?").to_owned();
        let prefix = self
            .links
            .get(&link)
            .map(|l| l.policy.import_prefix.clone())
            .filter(|p| !p.is_empty());
        let local_topic = match self.arrival(link, topic) {
            Ok(rewritten) => rewritten.unwrap_or_else(|| topic.to_owned()),
            Err(refusal) => {
                return Hop {
                    report: RouterReport {
                        router: self.id.clone(),
                        topic: topic.to_owned(),
                        arrived_from: Some(peer.clone()),
                        import: Some(ImportStep {
                            from: peer,
                            action: "refused".into(),
                            by: Some(refusal.by().into()),
                            rule: Some(refusal.rule),
                            prefix: None,
                        }),
                        ..RouterReport::default()
                    },
                    ..Hop::default()
                };
            }
        };
        let mut rest: Vec<String> = dests.iter().filter(|d| **d != self.id).cloned().collect();
        rest.sort();
        rest.dedup();
        let local = rest.len() < dests.len();
        let mut unreached = Vec::new();
        let plan = if rest.is_empty() {
            Plan::default()
        } else if hops >= HOPS_MAX {
            unreached = rest
                .into_iter()
                .map(|router| Unreached {
                    router,
                    reason: "hops_exceeded".into(),
                })
                .collect();
            Plan::default()
        } else {
            self.plan(&local_topic, rest, Vec::new(), Some(link), true, false)
        };
        let mut hop = self.describe(&local_topic, &plan);
        hop.local = local;
        hop.unreached.extend(unreached);
        hop.report.arrived_from = Some(peer.clone());
        hop.report.import = Some(ImportStep {
            from: peer,
            action: "accepted".into(),
            by: None,
            rule: None,
            prefix,
        });
        hop
    }

    /// A plan as a report: one `forward` step per copy, one `refused` step
    /// per link the export policy kept it off (with the rule), the
    /// destinations no link leads to.
    fn describe(&self, topic: &str, plan: &Plan) -> Hop {
        let peer = |l: &LinkId| self.link_peer(*l).unwrap_or("?").to_owned();
        let mut links = Vec::new();
        let mut copies: Vec<(LinkId, Vec<String>)> = Vec::new();
        for (link, dests, _) in &plan.copies {
            match copies.iter_mut().find(|(l, _)| l == link) {
                // A copy split at dests_max: one step, one request.
                Some((_, all)) => all.extend(dests.iter().cloned()),
                None => copies.push((*link, dests.clone())),
            }
        }
        for (link, dests) in &copies {
            links.push(LinkStep {
                peer: peer(link),
                action: "forward".into(),
                dests: dests.clone(),
                by: None,
                rule: None,
            });
        }
        for link in &plan.denied {
            let refusal = self
                .links
                .get(link)
                .and_then(|l| l.policy.export_verdict(topic).err());
            links.push(LinkStep {
                peer: peer(link),
                action: "refused".into(),
                dests: Vec::new(),
                by: refusal.as_ref().map(|r| r.by().to_owned()),
                rule: refusal.map(|r| r.rule),
            });
        }
        let unreached = plan
            .unrouted
            .0
            .iter()
            .map(|router| Unreached {
                router: router.clone(),
                reason: "no_route".into(),
            })
            .collect();
        Hop {
            report: RouterReport {
                router: self.id.clone(),
                topic: topic.to_owned(),
                links,
                ..RouterReport::default()
            },
            local: false,
            copies,
            unreached,
        }
    }
}

#[cfg(test)]
mod tests;
