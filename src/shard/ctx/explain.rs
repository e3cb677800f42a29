//! Route explain on one shard: which of this shard's subscribers an event
//! on a topic would reach, and which matching ones its rights keep from it
//! (README, "Route explain"). Answered on the housekeeping tick from the
//! questions on `Global::explain` (`shard::explain_board`).
//!
//! Owns nothing: it reads the trie's match (the one `publish` uses, so the
//! same subscribers), the table's sessions and their grants (the test
//! `readable` makes at delivery). Bounded: at most
//! `admin.view_entries_max` entries per list, the rest cut and flagged.

use crate::mesh::route::explain::{LocalDelivery, LocalRefusal};
use crate::shard::explain_board::LocalAnswer;
use crate::shard::mailbox::{Mailbox as Session, Protocol};
use crate::topic::trie::{LocalSub, CHECKED};
use crate::topic::{client_topic, filter_matches};

use super::table::Slot;
use super::ShardCtx;

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Mqtt => "mqtt",
        Protocol::Nats => "nats",
        Protocol::Http => "http",
        Protocol::Amqp => "amqp",
    }
}

impl ShardCtx {
    /// Answers the open explain questions (housekeeping tick).
    pub(super) fn answer_explains(&self) {
        if self.id >= self.global.client_shards {
            return; // the bridge: no subscribers of its own
        }
        let board = &self.global.explain;
        for (id, topic) in board.questions(self.id) {
            let answer = self.explain_local(&topic, self.config().admin.view_entries_max);
            board.answer(self.id, id, answer);
        }
    }

    /// This shard's subscribers for an event on `topic` (internal form).
    pub fn explain_local(&self, topic: &str, max: usize) -> LocalAnswer {
        let matched = self.routing.matches(topic);
        let mut answer = LocalAnswer::default();
        let slots = self.table.slots();
        let add = |sub: &LocalSub, group: Option<&str>, answer: &mut LocalAnswer| {
            let Some(Some(slot)) = slots.get(sub.session as usize) else {
                return;
            };
            let (session, filter, qos): (&Session, String, u8) = match slot {
                Slot::Mqtt(s) | Slot::NatsConn(s) => {
                    let subs = s.subscriptions.borrow();
                    let filter = subs
                        .keys()
                        .map(|f| f.to_string())
                        .find(|full| {
                            let (g, f) = crate::topic::split_share(full);
                            g == group && filter_matches(f, topic)
                        })
                        .unwrap_or_default();
                    (s, filter, sub.qos & 3)
                }
                Slot::NatsSub(ns) => (
                    &ns.session,
                    crate::nats::subject::filter_to_nats(&ns.filter),
                    0,
                ),
                Slot::AmqpLink(link) => (&link.session, link.filter.to_string(), link.qos),
            };
            let filter = client_topic(&filter).to_owned();
            let readable = sub.qos & CHECKED == 0
                || session
                    .grants
                    .borrow()
                    .as_ref()
                    .is_none_or(|g| g.may_read(topic));
            let protocol = protocol_name(session.protocol).to_owned();
            if readable {
                if answer.deliveries.len() >= max {
                    answer.truncated = true;
                    return;
                }
                answer.deliveries.push(LocalDelivery {
                    shard: self.id,
                    protocol,
                    client_id: session.client_id.to_string(),
                    filter,
                    qos,
                    queue_group: group.map(str::to_owned),
                });
            } else {
                if answer.refused.len() >= max {
                    answer.truncated = true;
                    return;
                }
                let user = session
                    .identity
                    .borrow()
                    .as_ref()
                    .and_then(|i| i.user.as_deref().map(str::to_owned));
                answer.refused.push(LocalRefusal {
                    client_id: session.client_id.to_string(),
                    protocol,
                    filter,
                    by: "permission".into(),
                    rule: match user {
                        Some(u) => format!("subscribe rules of user '{u}'"),
                        None => "subscribe rules of anonymous clients".into(),
                    },
                });
            }
        };
        for sub in matched.local.iter() {
            add(sub, None, &mut answer);
        }
        for g in matched.groups.iter() {
            for sub in g.local.iter() {
                add(sub, Some(&g.name), &mut answer);
            }
        }
        answer
    }
}
