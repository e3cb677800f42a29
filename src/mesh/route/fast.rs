//! The routing core's allocation-free paths for the events that make up
//! nearly all of a mesh's traffic, on borrowed topics and router ids:
//! - [`Router::publish_planned`]: an event entering the mesh here for
//!   plain subscribers elsewhere. The copies are the cached plan's; the
//!   runtime sends them from it (as [`CopyRef`]s) instead of receiving an
//!   owned [`EventCopy`] per copy.
//! - [`Router::on_event_for_me`]: a copy arriving over a link with this
//!   router as its only destination and no queue group: checked,
//!   de-duplicated and matched without building an [`EventCopy`].
//!
//! Each does exactly what the general path does for such an event (same
//! counters, same decision; the tests compare them on twin routers), and
//! says when an event is not its kind, before changing anything, so the
//! runtime takes the general path (`publish_as`, `on_message`) then.
//! Bounds: none of their own (the plans and local-interest caches are
//! `Router`'s, bounded there).

use super::*;

/// A borrowed event copy: an [`EventCopy`] the runtime holds, or one
/// copy of a cached plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRef<'a> {
    pub origin: &'a str,
    pub id: u64,
    pub hops: u8,
    pub dests: &'a [String],
    pub groups: &'a [(String, String)],
    pub topic: &'a str,
    pub retain: bool,
}

impl EventCopy {
    /// An owned copy of an EVENT frame as decoded from a link: what the
    /// general path (`Router::on_message`) takes.
    pub fn from_frame(e: &crate::mesh::link::Event<'_>) -> EventCopy {
        EventCopy {
            origin: e.origin.to_owned(),
            id: e.id,
            hops: e.hops,
            dests: e.dests.iter().map(str::to_owned).collect(),
            groups: e
                .groups
                .iter()
                .map(|(d, g)| (d.to_owned(), g.to_owned()))
                .collect(),
            topic: e.topic.to_owned(),
            retain: e.retain,
        }
    }

    pub fn borrowed(&self) -> CopyRef<'_> {
        CopyRef {
            origin: &self.origin,
            id: self.id,
            hops: self.hops,
            dests: &self.dests,
            groups: &self.groups,
            topic: &self.topic,
            retain: self.retain,
        }
    }
}

impl CopyRef<'_> {
    pub fn to_copy(self) -> EventCopy {
        EventCopy {
            origin: self.origin.to_owned(),
            id: self.id,
            hops: self.hops,
            dests: self.dests.to_vec(),
            groups: self.groups.to_vec(),
            topic: self.topic.to_owned(),
            retain: self.retain,
        }
    }
}

impl Plan {
    /// The copies to send: (next hop, plain destinations, (router, group)
    /// destinations).
    pub fn copies(&self) -> impl Iterator<Item = (LinkId, &[String], &[(String, String)])> {
        self.copies
            .iter()
            .map(|(l, d, g)| (*l, d.as_slice(), g.as_slice()))
    }

    /// A retained message's plan.
    pub fn retain(&self) -> bool {
        self.retain
    }
}

/// What [`Router::on_event_for_me`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not a copy this path takes: nothing was changed; hand the owned
    /// copy to [`Router::on_message`].
    Other,
    /// Taken and counted; nothing to deliver (a duplicate, refused by the
    /// link's import policy, or no subscriber here).
    Dropped,
    /// Deliver it here (to the plain subscribers if `plain`; else it is
    /// a retained copy to store).
    Deliver { plain: bool },
}

impl Router {
    /// `publish_as(topic, event_id, false, &[], _, out)` without the
    /// copies: they are the returned plan's ([`Plan::copies`]), each to be
    /// sent as a copy from this router at hop 0 (the counters, the copies'
    /// `events_out` included, are updated here; unroutable destinations
    /// go into `out` as there).
    pub fn publish_planned(
        &mut self,
        topic: &str,
        event_id: u64,
        out: &mut Vec<Action>,
    ) -> Rc<Plan> {
        let plan = self.cached_plan(topic);
        self.emit_counted(None, event_id, 0, topic, &plan, None, out);
        plan
    }

    /// `on_message(link, LinkMsg::Event(copy))` for a copy whose only
    /// destination is `dest` and that has no group destinations. Takes it
    /// when `dest` is this router, the link is up, the copy is not this
    /// router's own event back, and the link has no import prefix (the
    /// topic would change); else [`Arrival::Other`], nothing changed.
    pub fn on_event_for_me(
        &mut self,
        link: LinkId,
        origin: &str,
        id: u64,
        dest: &str,
        topic: &str,
        retain: bool,
    ) -> Arrival {
        let Some(l) = self.links.get_mut(&link) else {
            return Arrival::Other;
        };
        if l.held || dest != self.id || origin == self.id || !l.policy.import_prefix.is_empty() {
            return Arrival::Other;
        }
        l.counters.events_in += 1;
        if let Err(refusal) = l.policy.import_verdict(topic) {
            self.count_refusal(link, refusal);
            return Arrival::Dropped;
        }
        let first = self.first_delivery(origin, id);
        let plain = first && self.wants_locally(topic);
        if plain || (first && retain) {
            Arrival::Deliver { plain }
        } else {
            Arrival::Dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two routers, r0 - r1, interest `t/#` at r1 and (some tests) a
    /// policy on r1's link.
    fn pair(policy: LinkPolicy) -> (Router, Router) {
        let mut a = Router::new("r0", RouterConfig::default());
        let mut b = Router::new("r1", RouterConfig::default());
        let mut out = Vec::new();
        a.link_up(LinkId(1), "r1", &mut out);
        b.link_up_with_policy(LinkId(1), "r0", policy, &mut out);
        b.local_subscribe("t/#", &mut out).unwrap();
        let mut learned = Vec::new();
        for action in out {
            if let Action::Send { msg, .. } = action {
                if matches!(msg, LinkMsg::InterestAdd { .. }) {
                    learned.push(msg);
                }
            }
        }
        for msg in learned {
            let mut ignored = Vec::new();
            a.on_message(LinkId(1), msg, &mut ignored);
        }
        (a, b)
    }

    fn copy(origin: &str, id: u64, topic: &str, retain: bool) -> EventCopy {
        EventCopy {
            origin: origin.into(),
            id,
            hops: 0,
            dests: vec!["r1".into()],
            groups: Vec::new(),
            topic: topic.into(),
            retain,
        }
    }

    /// The general path's decision, as an [`Arrival`].
    fn general(r: &mut Router, c: EventCopy) -> Arrival {
        let mut out = Vec::new();
        r.on_message(LinkId(1), LinkMsg::Event(c), &mut out);
        match out.as_slice() {
            [] => Arrival::Dropped,
            [Action::Deliver { plain, groups, .. }] if groups.is_empty() => {
                Arrival::Deliver { plain: *plain }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn arrival_matches_the_general_path() {
        let deny = LinkPolicy {
            import_deny: vec!["t/secret".into()],
            ..LinkPolicy::default()
        };
        for policy in [LinkPolicy::default(), deny] {
            let (_, mut fast) = pair(policy.clone());
            let (_, mut slow) = pair(policy);
            let cases = [
                copy("r0", 1, "t/a", false),
                copy("r0", 1, "t/a", false),      // duplicate
                copy("r0", 2, "other", false),    // no subscriber
                copy("r0", 3, "other", true),     // retained: stored
                copy("r0", 4, "t/secret", false), // import policy
                copy("r9", 1, "t/a", false),      // another origin
            ];
            for c in cases {
                let want = general(&mut slow, c.clone());
                let got =
                    fast.on_event_for_me(LinkId(1), &c.origin, c.id, "r1", &c.topic, c.retain);
                assert_eq!(got, want, "{c:?}");
            }
            assert_eq!(fast.counters(), slow.counters());
            assert_eq!(fast.link_counters(LinkId(1)), slow.link_counters(LinkId(1)));
            assert_eq!(
                fast.policy_denied().collect::<Vec<_>>(),
                slow.policy_denied().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn arrival_leaves_other_copies_alone() {
        let prefixed = LinkPolicy {
            import_prefix: "from/r0/".into(),
            ..LinkPolicy::default()
        };
        let (_, mut b) = pair(prefixed);
        let before = (b.counters(), b.link_counters(LinkId(1)));
        // An import prefix rewrites the topic: the general path's.
        assert_eq!(
            b.on_event_for_me(LinkId(1), "r0", 1, "r1", "t/a", false),
            Arrival::Other
        );
        let (_, mut b2) = pair(LinkPolicy::default());
        // Not for this router (to be forwarded), its own event back, an
        // unknown link.
        assert_eq!(
            b2.on_event_for_me(LinkId(1), "r0", 1, "r7", "t/a", false),
            Arrival::Other
        );
        assert_eq!(
            b2.on_event_for_me(LinkId(1), "r1", 1, "r1", "t/a", false),
            Arrival::Other
        );
        assert_eq!(
            b2.on_event_for_me(LinkId(9), "r0", 1, "r1", "t/a", false),
            Arrival::Other
        );
        assert_eq!((b.counters(), b.link_counters(LinkId(1))), before);
        assert_eq!(b2.counters(), RouterCounters::default());
        assert_eq!(b2.link_counters(LinkId(1)).unwrap().events_in, 0);
    }

    #[test]
    fn planned_publish_matches_the_general_path() {
        let deny = LinkPolicy {
            export_deny: vec!["t/secret".into()],
            ..LinkPolicy::default()
        };
        for policy in [LinkPolicy::default(), deny] {
            let (mut fast, _) = pair(LinkPolicy::default());
            let (mut slow, _) = pair(LinkPolicy::default());
            let mut ignored = Vec::new();
            // The export policy is r0's, on its link to r1.
            fast.link_up_with_policy(LinkId(1), "r1", policy.clone(), &mut ignored);
            slow.link_up_with_policy(LinkId(1), "r1", policy, &mut ignored);
            // Relearn r1's interest after the link came up again.
            for r in [&mut fast, &mut slow] {
                let msg = LinkMsg::InterestAdd {
                    filter: "t/#".into(),
                    origin: "r1".into(),
                    distance: 0,
                };
                r.on_message(LinkId(1), msg, &mut ignored);
            }
            for (id, topic) in [(1, "t/a"), (2, "t/a"), (3, "t/secret"), (4, "other")] {
                let mut want = Vec::new();
                slow.publish_as(topic, id, false, &[], 0, &mut want);
                let mut got = Vec::new();
                let plan = fast.publish_planned(topic, id, &mut got);
                for (link, dests, groups) in plan.copies() {
                    got.push(Action::Send {
                        link,
                        msg: LinkMsg::Event(
                            CopyRef {
                                origin: fast.router_id(),
                                id,
                                hops: 0,
                                dests,
                                groups,
                                topic,
                                retain: plan.retain(),
                            }
                            .to_copy(),
                        ),
                    });
                }
                assert_eq!(got, want, "{topic}");
            }
            assert_eq!(fast.counters(), slow.counters());
            assert_eq!(fast.link_counters(LinkId(1)), slow.link_counters(LinkId(1)));
        }
    }
}
