//! The session table: what each [`SessionKey`] of this shard names (an
//! MQTT session, a NATS connection, or one NATS subscription), the keys
//! free for reuse, and the count of sessions.
//!
//! Owns: the table only. A key is what the trie stores, so every delivery
//! looks its subscriber up here; the table never touches the trie, the
//! directory or the rings (who subscribes is `routing`'s, who hosts a client
//! id is `directory`'s). Bounded by the connections and their
//! subscriptions (`limits.connections_max`, `limits.subscriptions_max`).

use std::cell::{Cell, Ref, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::shard::mailbox::{Mailbox as Session, Protocol};
use crate::shard::stats;
use crate::topic::trie::{LocalSub, SessionKey};

/// A NATS subscription (one SUB): its own key in the trie, since NATS
/// delivers once per subscription.
pub struct NatsSub {
    pub session: Rc<Session>,
    pub sid: Rc<str>,
    pub filter: Box<str>,
    pub group: Option<Arc<str>>,
    /// UNSUB with a maximum: deliveries left before it unsubscribes.
    pub max: Cell<Option<u64>>,
    pub delivered: Cell<u64>,
}

/// An AMQP receiver link: its own key in the trie, as a NATS SUB has, since
/// AMQP delivers once per link. (channel, handle) are weft's for the link.
pub struct AmqpLink {
    pub session: Rc<Session>,
    pub channel: u16,
    pub handle: u32,
    /// 0: sent pre-settled; 1: unsettled.
    pub qos: u8,
    pub filter: Box<str>,
    pub group: Option<Arc<str>>,
    /// A durable receiver's name ("{container-id}/{link name}"): its
    /// subscription is kept when the link goes without closing it.
    pub durable: Option<Box<str>>,
    /// Each delivery is tested against the session's rights.
    pub checked: bool,
}

/// What a key of the shard's table (and of the trie) names.
pub(super) enum Slot {
    /// An MQTT session: its connection and its one subscriber key.
    Mqtt(Rc<Session>),
    /// A NATS or AMQP connection (its key is the origin of its publishes;
    /// its subscriptions have keys of their own).
    NatsConn(Rc<Session>),
    NatsSub(Rc<NatsSub>),
    AmqpLink(Rc<AmqpLink>),
}

#[derive(Default)]
struct Slots {
    slots: Vec<Option<Slot>>,
    free: Vec<SessionKey>,
    sessions: usize,
}

#[derive(Default)]
pub(super) struct Table {
    slots: RefCell<Slots>,
}

impl Table {
    fn insert(&self, make: impl FnOnce(SessionKey) -> Slot) -> SessionKey {
        let mut s = self.slots.borrow_mut();
        let key = match s.free.pop() {
            Some(k) => k,
            None => {
                s.slots.push(None);
                (s.slots.len() - 1) as SessionKey
            }
        };
        s.slots[key as usize] = Some(make(key));
        key
    }

    fn remove(&self, key: SessionKey) -> Option<Slot> {
        let mut s = self.slots.borrow_mut();
        let slot = s.slots.get_mut(key as usize)?.take();
        if slot.is_some() {
            s.free.push(key);
        }
        slot
    }

    /// Every slot by key, to look subscribers up (not held across an await).
    pub(super) fn slots(&self) -> Ref<'_, [Option<Slot>]> {
        Ref::map(self.slots.borrow(), |s| s.slots.as_slice())
    }

    /// A new session's key and slot.
    pub(super) fn register(&self, protocol: Protocol, client_id: Box<str>) -> Rc<Session> {
        let mut session = None;
        self.insert(|key| {
            let s = Rc::new(Session::new(key, protocol, client_id));
            session = Some(s.clone());
            match protocol {
                // An HTTP subscriber's subscriptions are MQTT-shaped.
                Protocol::Mqtt | Protocol::Http => Slot::Mqtt(s),
                Protocol::Nats | Protocol::Amqp => Slot::NatsConn(s),
            }
        });
        self.slots.borrow_mut().sessions += 1;
        session.expect("made by insert")
    }

    /// Frees a session's key (its subscriptions were released before).
    pub(super) fn remove_session(&self, key: SessionKey) {
        self.remove(key);
        self.slots.borrow_mut().sessions -= 1;
    }

    /// An offline session takes its connection's slot (same key: its
    /// subscriptions stay in the trie).
    pub(super) fn replace_session(&self, key: SessionKey, kept: Rc<Session>) {
        self.slots.borrow_mut().slots[key as usize] = Some(Slot::Mqtt(kept));
    }

    pub(super) fn insert_nats_sub(&self, sub: Rc<NatsSub>) -> SessionKey {
        self.insert(|_| Slot::NatsSub(sub))
    }

    /// Takes a NATS subscription out of the table.
    pub(super) fn remove_nats_sub(&self, key: SessionKey) -> Option<Rc<NatsSub>> {
        match self.remove(key) {
            Some(Slot::NatsSub(sub)) => Some(sub),
            _ => None,
        }
    }

    pub(super) fn insert_amqp_link(&self, link: Rc<AmqpLink>) -> SessionKey {
        self.insert(|_| Slot::AmqpLink(link))
    }

    /// Takes an AMQP receiver link out of the table.
    pub(super) fn remove_amqp_link(&self, key: SessionKey) -> Option<Rc<AmqpLink>> {
        match self.remove(key) {
            Some(Slot::AmqpLink(link)) => Some(link),
            _ => None,
        }
    }

    pub(super) fn amqp_link(&self, key: SessionKey) -> Option<Rc<AmqpLink>> {
        match self.slots.borrow().slots.get(key as usize) {
            Some(Some(Slot::AmqpLink(link))) => Some(link.clone()),
            _ => None,
        }
    }

    pub(super) fn nats_sub(&self, key: SessionKey) -> Option<Rc<NatsSub>> {
        match self.slots.borrow().slots.get(key as usize) {
            Some(Some(Slot::NatsSub(sub))) => Some(sub.clone()),
            _ => None,
        }
    }

    /// The MQTT session or NATS connection of `key`, if it is one.
    pub(super) fn session(&self, key: SessionKey) -> Option<Rc<Session>> {
        match self.slots.borrow().slots.get(key as usize) {
            Some(Some(Slot::Mqtt(s) | Slot::NatsConn(s))) => Some(s.clone()),
            _ => None,
        }
    }

    pub(super) fn live_sessions(&self) -> usize {
        self.slots.borrow().sessions
    }

    pub(super) fn all_sessions(&self) -> Vec<Rc<Session>> {
        self.slots
            .borrow()
            .slots
            .iter()
            .filter_map(|s| match s {
                Some(Slot::Mqtt(s)) | Some(Slot::NatsConn(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// A member of `local` whose session still takes deliveries, trying
    /// `start` first: a member whose connection is closing has left the
    /// group already, though its subscriptions go only once it is gone.
    pub(super) fn live_member(&self, local: &[LocalSub], start: usize) -> Option<LocalSub> {
        let slots = self.slots.borrow();
        let leaving = |key: SessionKey| match slots.slots.get(key as usize) {
            Some(Some(Slot::Mqtt(s))) | Some(Some(Slot::NatsConn(s))) => s.leaving(),
            Some(Some(Slot::NatsSub(ns))) => ns.session.leaving(),
            Some(Some(Slot::AmqpLink(link))) => link.session.leaving(),
            _ => true,
        };
        (0..local.len())
            .map(|i| local[(start + i) % local.len()])
            .find(|sub| !leaving(sub.session))
    }

    /// This shard's admin view, bounded to `max` entries a list.
    pub(super) fn view(&self, shard: usize, max: usize) -> stats::ShardView {
        let mut v = stats::ShardView {
            shard,
            ..Default::default()
        };
        let slots = self.slots.borrow();
        for slot in slots.slots.iter().flatten() {
            match slot {
                Slot::Mqtt(s) | Slot::NatsConn(s) => {
                    let (queued_messages, queued_bytes) = s.queued();
                    v.queued_messages += queued_messages as u64;
                    v.queued_bytes += queued_bytes as u64;
                    let protocol = protocol_label(s.protocol);
                    if v.connections.len() == max {
                        v.truncated = true;
                    } else {
                        v.connections.push(stats::ConnectionInfo {
                            shard,
                            protocol,
                            client_id: s.client_id.to_string(),
                            peer: s.peer.get().map(|a| a.to_string()),
                            user: s
                                .identity
                                .borrow()
                                .as_ref()
                                .and_then(|i| i.user.as_deref().map(str::to_string)),
                            account: s.identity.borrow().as_ref().map(|i| i.account.to_string()),
                            online: !s.offline.get(),
                            subscriptions: s.subscriptions.borrow().len()
                                + s.nats_subs.borrow().len()
                                + s.amqp_links.borrow().len(),
                            queued_messages,
                            queued_bytes,
                            dropped: s.dropped.get(),
                        });
                    }
                    if !matches!(s.protocol, Protocol::Nats | Protocol::Amqp) {
                        for (filter, qos) in s.subscriptions.borrow().iter() {
                            if v.subscriptions.len() == max {
                                v.truncated = true;
                                break;
                            }
                            v.subscriptions.push(stats::SubscriptionInfo {
                                shard,
                                protocol,
                                client_id: s.client_id.to_string(),
                                filter: filter.to_string(),
                                qos,
                                sid: None,
                                queue_group: None,
                            });
                        }
                    }
                }
                Slot::AmqpLink(link) => {
                    if v.subscriptions.len() == max {
                        v.truncated = true;
                        continue;
                    }
                    v.subscriptions.push(stats::SubscriptionInfo {
                        shard,
                        protocol: "amqp",
                        client_id: link.session.client_id.to_string(),
                        filter: link.filter.to_string(),
                        qos: link.qos,
                        sid: Some(format!("{}/{}", link.channel, link.handle)),
                        queue_group: link.group.as_ref().map(|g| g.to_string()),
                    });
                }
                Slot::NatsSub(sub) => {
                    if v.subscriptions.len() == max {
                        v.truncated = true;
                        continue;
                    }
                    v.subscriptions.push(stats::SubscriptionInfo {
                        shard,
                        protocol: "nats",
                        client_id: sub.session.client_id.to_string(),
                        filter: crate::nats::subject::filter_to_nats(&sub.filter),
                        qos: 0,
                        sid: Some(sub.sid.to_string()),
                        queue_group: sub.group.as_ref().map(|g| g.to_string()),
                    });
                }
            }
        }
        v
    }

    /// The web console's part of the table: total queue depth and the
    /// `max` sessions with the most queued (then dropped) messages, among
    /// those with some queued or dropped. One pass; the kept list stays at
    /// `max` entries.
    pub(super) fn slow_consumers(
        &self,
        shard: usize,
        max: usize,
    ) -> (u64, u64, Vec<stats::SlowConsumer>) {
        let (mut messages, mut bytes) = (0u64, 0u64);
        let mut top: Vec<stats::SlowConsumer> = Vec::with_capacity(max + 1);
        let slots = self.slots.borrow();
        for slot in slots.slots.iter().flatten() {
            let (Slot::Mqtt(s) | Slot::NatsConn(s)) = slot else {
                continue;
            };
            let (queued_messages, queued_bytes) = s.queued();
            messages += queued_messages as u64;
            bytes += queued_bytes as u64;
            let dropped = s.dropped.get();
            if (queued_messages == 0 && dropped == 0) || max == 0 {
                continue;
            }
            let key = (queued_messages as u64, dropped);
            if top.len() == max
                && top
                    .last()
                    .is_some_and(|l| (l.queued_messages, l.dropped) >= key)
            {
                continue;
            }
            top.push(stats::SlowConsumer {
                shard,
                protocol: protocol_label(s.protocol),
                client_id: s.client_id.to_string(),
                queued_messages: key.0,
                queued_bytes: queued_bytes as u64,
                dropped,
                truncated: false,
            });
            top.sort_by_key(|c| std::cmp::Reverse((c.queued_messages, c.dropped)));
            top.truncate(max);
        }
        (messages, bytes, top)
    }
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Mqtt => "mqtt",
        Protocol::Nats => "nats",
        Protocol::Http => "http",
        Protocol::Amqp => "amqp",
    }
}
