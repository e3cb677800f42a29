//! AMQP receiver links on the shard: each link is a subscription of its
//! own in the trie and the table (as a NATS SUB is), delivered as
//! `DeliverAs::Amqp`; what a link leaves behind when it goes (its
//! unsettled deliveries and its queue) is handed on to another member of
//! its queue group, or dropped and counted (topic semantics: the
//! subscriber left). A durable link (`Subscribe::durable`) that goes
//! without closing is kept instead: its subscription and leftovers go to
//! a held session in the directory (`directory::amqp_durable_park`),
//! which the next attach of its name takes (`amqp_durable_take`).
//!
//! Owns: the link's subscription and its leftovers' fate. Must not touch:
//! credit, windows and the unsettled map (`amqp::outbound`, through the
//! mailbox), AMQP rules (the machine).

use std::rc::Rc;
use std::sync::Arc;

use super::groups::Member;
use super::table::AmqpLink;
use super::{ShardCtx, ShardMsg};
use crate::amqp::outbound::Leftover;
use crate::shard::mailbox::Mailbox as Session;
use crate::shard::stats::Counters;
use crate::topic::trie::{GroupMatch, LocalSub, SessionKey, CHECKED};

impl ShardCtx {
    /// Subscribes a receiver link (weft's `channel` and `handle` for it) to
    /// `filter`, in queue group `group` if any; `checked`: each delivery is
    /// tested against the session's rights; `durable`: the link's durable
    /// name (kept when it goes without closing). False if the link is
    /// known already.
    #[allow(clippy::too_many_arguments)]
    pub fn amqp_subscribe(
        &self,
        session: &Rc<Session>,
        channel: u16,
        handle: u32,
        filter: String,
        group: Option<&str>,
        qos: u8,
        checked: bool,
        durable: Option<Box<str>>,
    ) -> bool {
        if session.amqp_links.borrow().contains_key(&(channel, handle)) {
            return false;
        }
        let group: Option<Arc<str>> = group.map(Arc::from);
        let link = Rc::new(AmqpLink {
            session: session.clone(),
            channel,
            handle,
            qos,
            filter: filter.into(),
            group: group.clone(),
            durable,
            checked,
        });
        session.amqp_attach(channel, handle, qos);
        let key = self.table.insert_amqp_link(link.clone());
        session
            .amqp_links
            .borrow_mut()
            .insert((channel, handle), key);
        if self.routing.add_local(
            &link.filter,
            group.as_deref(),
            key,
            if checked { CHECKED } else { 0 },
        ) {
            self.control.announce(true, Arc::from(&*link.filter), group);
        }
        true
    }

    /// A receiver link went away: its subscription ends, and what it left
    /// (unsettled first, then queued) goes to another member of its group,
    /// or is dropped and counted. A durable link that went without
    /// `closed` is kept instead (subscription and leftovers, in a held
    /// session of its name). False if the link was unknown.
    pub fn amqp_unsubscribe(
        &self,
        session: &Session,
        channel: u16,
        handle: u32,
        closed: bool,
    ) -> bool {
        let Some(key) = session.amqp_links.borrow_mut().remove(&(channel, handle)) else {
            return false;
        };
        let kept = match self.table.amqp_link(key) {
            Some(link) if !closed && link.durable.is_some() => {
                // Subscribed before the link lets go of the filter: the
                // other shards see no interest change, and (all of this
                // being synchronous) no event falls between.
                Some(self.amqp_durable_park(&link))
            }
            _ => None,
        };
        let group = self.remove_amqp_link(key);
        let left = session.amqp_detach(channel, handle);
        match kept {
            Some(kept) => kept.restore_backlog(crate::shard::mailbox::amqp::held(left)),
            None => self.amqp_leftover(session, group.as_deref(), left),
        }
        true
    }

    /// Deliveries a receiver called undeliverable here (modified): to
    /// another member of the link's group, never back to the refusing
    /// link (review 2.4: a one-member group passed it round forever);
    /// with none other, dropped and counted.
    pub fn amqp_undeliverable(
        &self,
        session: &Session,
        channel: u16,
        events: Vec<(u32, crate::event::Event)>,
    ) {
        for (handle, event) in events {
            let link = session
                .amqp_links
                .borrow()
                .get(&(channel, handle))
                .and_then(|key| Some((*key, self.table.amqp_link(*key)?.group.clone()?)));
            let Some((refusing, group)) = link else {
                Counters::add(&self.counters.amqp_dropped_unsettled, 1);
                continue;
            };
            let matched = self.routing.matches(event.topic());
            let other = matched
                .groups
                .iter()
                .find(|g| *g.name == *group)
                .and_then(|g| {
                    let live = |key| {
                        self.table
                            .live_member(
                                &[LocalSub {
                                    session: key,
                                    qos: 0,
                                }],
                                0,
                            )
                            .is_some()
                    };
                    other_member(g, refusing, live, |n| self.groups.below(n), self.mesh_bit())
                });
            match other {
                Some(Member::Here(sub)) => {
                    self.deliver_local(&[sub], &matched.subject, event, None)
                }
                Some(Member::Shard(peer)) => self.control.push(
                    Some(peer),
                    ShardMsg::Event {
                        event,
                        plain: false,
                        groups: std::iter::once(group).collect(),
                        handed: 0,
                    },
                ),
                None => Counters::add(&self.counters.amqp_dropped_unsettled, 1),
            }
        }
    }

    /// Hands a gone link's deliveries on to its group, or drops and counts
    /// them.
    fn amqp_leftover(&self, session: &Session, group: Option<&str>, left: Leftover) {
        match group {
            Some(group) => {
                for (event, _, _) in left.events {
                    self.deliver_to_group(event, group, 0);
                }
            }
            None => {
                let queued = (left.events.len() - left.unsettled) as u64;
                Counters::add(&self.counters.amqp_dropped_unsettled, left.unsettled as u64);
                session.dropped.set(session.dropped.get() + queued);
            }
        }
    }

    /// Removes a link's subscription from the trie and the table; its
    /// group, if it had one.
    fn remove_amqp_link(&self, key: crate::topic::trie::SessionKey) -> Option<Arc<str>> {
        let Some(link) = self.table.remove_amqp_link(key) else {
            debug_assert!(false, "key {key} is not an AMQP link");
            return None;
        };
        let removed = self
            .routing
            .remove_local(&link.filter, link.group.as_deref(), key);
        debug_assert!(removed.is_some(), "link and trie agree");
        if removed == Some(true) {
            self.control
                .announce(false, Arc::from(&*link.filter), link.group.clone());
        }
        link.group.clone()
    }

    /// Every link of a session that ends (`unregister`): durable ones are
    /// kept (the connection went, not the links).
    pub(super) fn drop_amqp_links(&self, session: &Session) {
        let links: Vec<(u16, u32)> = session.amqp_links.borrow().keys().copied().collect();
        for (channel, handle) in links {
            self.amqp_unsubscribe(session, channel, handle, false);
        }
    }
}

/// A member of group `g` other than the `refusing` link: uniformly among
/// this process's live members (here, less the refusing one, and the
/// shards that have members; the refusing link is on this shard), else
/// the mesh (`mesh_bit`), else none. `below(n)` picks in `0..n`.
fn other_member(
    g: &GroupMatch,
    refusing: SessionKey,
    live: impl Fn(SessionKey) -> bool,
    below: impl FnOnce(usize) -> usize,
    mesh_bit: u64,
) -> Option<Member> {
    let others = || {
        g.local
            .iter()
            .filter(|sub| sub.session != refusing && live(sub.session))
    };
    let here = others().count();
    let shards = g.remote & !mesh_bit;
    let members = here + shards.count_ones() as usize;
    if members > 0 {
        let pick = below(members);
        return Some(match others().nth(pick) {
            Some(sub) => Member::Here(*sub),
            None => Member::Shard(super::groups::nth_bit(shards, pick - here)),
        });
    }
    (g.remote & mesh_bit != 0).then(|| Member::Shard(mesh_bit.trailing_zeros() as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(local: &[SessionKey], remote: u64) -> GroupMatch {
        GroupMatch {
            name: Arc::from("g"),
            local: local
                .iter()
                .map(|&session| LocalSub { session, qos: 1 })
                .collect(),
            remote,
        }
    }

    fn picks(g: &GroupMatch, refusing: SessionKey, mesh_bit: u64) -> Vec<String> {
        let members = g.local.len() + (g.remote & !mesh_bit).count_ones() as usize;
        (0..members.max(1))
            .map(
                |i| match other_member(g, refusing, |_| true, |n| i % n, mesh_bit) {
                    Some(Member::Here(sub)) => format!("here {}", sub.session),
                    Some(Member::Shard(s)) => format!("shard {s}"),
                    None => "none".into(),
                },
            )
            .collect()
    }

    /// Review 2.4: an undeliverable-here delivery never goes back to the
    /// link that refused it; a group of that link alone leaves none.
    #[test]
    fn undeliverable_here_never_goes_back_to_the_refusing_link() {
        assert_eq!(picks(&group(&[7], 0), 7, 0), ["none"]);
        assert_eq!(picks(&group(&[7, 9], 0), 7, 0), ["here 9", "here 9"]);
        assert_eq!(picks(&group(&[7], 0b100), 7, 0), ["shard 2", "shard 2"]);
        // Only the mesh besides: there.
        assert_eq!(picks(&group(&[7], 0b1000), 7, 0b1000), ["shard 3"]);
        // A member that is leaving is no member.
        let g = group(&[7, 9], 0);
        assert!(other_member(&g, 7, |k| k != 9, |_| 0, 0).is_none());
    }
}
