//! Routing on one shard: the trie (this shard's subscriptions and the
//! other peers' interest), subscribing and unsubscribing, and moving an
//! event from the publisher's shard to every subscriber: matched once
//! here, handed to the shards (and the mesh) with interest over the rings,
//! delivered to this shard's subscribers.
//!
//! Owns: the [`Trie`]. Loop prevention lives here, in one place: an event
//! that arrived from a ring is delivered locally and never forwarded
//! again. Reads the table to find a key's session and queue-group picks
//! from `groups`; announces interest changes through `control`. Must not
//! touch: the directory (who hosts a client id) or the retained store.
//!
//! Authorization at delivery: a subscription marked `CHECKED` (its filter
//! reaches topics its session may not read) has each event tested by
//! [`ShardCtx::readable`] on the topic as the client sees it; unmarked
//! subscriptions pay nothing.
//!
//! Hot path: `publish` and `deliver_local` run per event; rerun
//! `weft bench` (README, perf) before changing them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use smallvec::SmallVec;

use super::groups::Member;
use super::table::{NatsSub, Slot};
use super::{split_share, ShardCtx, ShardMsg};
use crate::event::Event;
use crate::security::Denied;
use crate::shard::mailbox::{CloseReason, DeliverAs, Delivery, Mailbox as Session, Protocol};
use crate::shard::stats::Counters;
use crate::topic::trie::{
    LocalSub, Matched, SessionKey, SubjectMemo, Trie, TrieCounts, CHECKED, NO_LOCAL,
    RETAIN_AS_PUBLISHED,
};

/// A publish that has to wait for room on a ring (or in the mesh's
/// buffers): what `ShardCtx::publish_now` matched, picked and has not yet
/// handed over, for `ShardCtx::publish_handoff` to finish.
pub struct Handoff {
    event: Event,
    matched: Rc<Matched>,
    local_picks: SmallVec<[LocalSub; 2]>,
    remote_groups: SmallVec<[(usize, Arc<str>); 2]>,
    /// The peers not yet handed the event (the stalled one excluded).
    targets: u64,
    stall: Stall,
}

/// Where handing an event to the other shards has to wait.
enum Stall {
    /// The ring to this peer is full: this message waits for room.
    Ring(usize, ShardMsg),
    /// The mesh (its executor's context) took it but its buffers are
    /// short: wait for room before the next event.
    MeshRoom(Rc<ShardCtx>),
    /// The shard on the bridge's executor took it by a call and left
    /// these subscribers full: wait for them, as its ring reader would.
    Watches(Rc<ShardCtx>, Vec<Rc<Session>>),
}

pub(crate) struct Routing {
    trie: RefCell<Trie>,
}

impl Routing {
    pub(super) fn new(match_cache_entries_max: usize) -> Routing {
        Routing {
            trie: RefCell::new(Trie::new(match_cache_entries_max)),
        }
    }

    pub(crate) fn matches(&self, topic: &str) -> Rc<Matched> {
        self.trie.borrow_mut().matches(topic)
    }

    /// Adds a subscriber key; true if it is the first here of (filter,
    /// group).
    pub(crate) fn add_local(
        &self,
        filter: &str,
        group: Option<&str>,
        key: SessionKey,
        qos: u8,
    ) -> bool {
        self.trie
            .borrow_mut()
            .add_local_in(filter, group, key, qos)
            .first_local
    }

    /// Removes a subscriber key: `None` if it was not there, else whether it
    /// was the last here of (filter, group).
    pub(crate) fn remove_local(
        &self,
        filter: &str,
        group: Option<&str>,
        key: SessionKey,
    ) -> Option<bool> {
        self.trie
            .borrow_mut()
            .remove_local_in(filter, group, key)
            .map(|r| r.last_local)
    }

    fn add_remote(&self, filter: &str, group: Option<&str>, peer: usize) {
        self.trie.borrow_mut().add_remote_in(filter, group, peer);
    }

    fn remove_remote(&self, filter: &str, group: Option<&str>, peer: usize) {
        self.trie.borrow_mut().remove_remote_in(filter, group, peer);
    }

    pub(super) fn counts(&self) -> TrieCounts {
        self.trie.borrow().counts()
    }
}

/// Every peer `plain` names, and the one chosen for each queue group.
fn shard_targets(plain: u64, groups: &[(usize, Arc<str>)]) -> u64 {
    groups.iter().fold(plain, |t, (shard, _)| t | 1 << shard)
}

impl ShardCtx {
    /// The mesh's bit in the shard masks (0 when the mesh is off): the
    /// peer after the client shards stands for other routers.
    pub(crate) fn mesh_bit(&self) -> u64 {
        match self.global.client_shards {
            n if n > 0 && n < self.shards => 1 << n,
            _ => 0,
        }
    }

    /// Routes an event published by a client of this shard: to the other
    /// shards with interest (and to the one chosen for each queue group),
    /// then to local subscribers. QoS 1 deliveries that overflow a local
    /// subscriber's soft limit add it to `congested` so that the publisher
    /// can pause. Returns false if nobody anywhere subscribes.
    pub async fn publish(&self, event: Event, congested: &mut Vec<Rc<Session>>) -> bool {
        match self.publish_now(event, congested) {
            Ok(matched) => matched,
            Err(handoff) => self.publish_handoff(handoff, congested).await,
        }
    }

    /// `publish` without waiting, when no other shard (nor the mesh) has
    /// interest: the event is delivered here and the answer is `Ok`. When
    /// the event must also cross a ring (which may wait for room), the
    /// rest is handed back to be finished by [`Self::publish_handoff`]:
    /// the glue of a connection then awaits, and only then (a publish to
    /// local subscribers builds no future).
    // Not boxed: boxing would allocate per cross-shard publish, and the
    // hot `Ok` path writes only the discriminant and a bool.
    #[allow(clippy::result_large_err)]
    pub fn publish_now(
        &self,
        mut event: Event,
        congested: &mut Vec<Rc<Session>>,
    ) -> Result<bool, Handoff> {
        Counters::add(&self.counters.messages_in, 1);
        self.console_offer(event.topic());
        if event.born_ns == 0 {
            event.born_ns = self.received_ns.get();
        }
        let matched = self.routing.matches(event.topic());
        if matched.is_empty() {
            return Ok(false);
        }
        // Trace context: this router's hop, once per event (`trace`).
        let born = event.born_ns;
        if let (Some(meta), topic) = event.meta_mut_and_topic() {
            self.global.trace.on_ingress(meta, born, topic, "client");
        }
        // Queue groups: one member in the whole mesh (see `groups`).
        let mut local_picks: SmallVec<[LocalSub; 2]> = SmallVec::new();
        let mut remote_groups: SmallVec<[(usize, Arc<str>); 2]> = SmallVec::new();
        let mesh_bit = self.mesh_bit();
        for g in matched.groups.iter() {
            match self.groups.pick(g, &self.table, mesh_bit) {
                Some(Member::Here(sub)) => local_picks.push(sub),
                Some(Member::Shard(peer)) => remote_groups.push((peer, g.name.clone())),
                None => {}
            }
        }
        let mut targets = shard_targets(matched.remote, &remote_groups);
        if let Some(stall) =
            self.hand_to_shards(&event, matched.remote, &remote_groups, &mut targets)
        {
            return Err(Handoff {
                event,
                matched,
                local_picks,
                remote_groups,
                targets,
                stall,
            });
        }
        if self.mesh.get().is_none() {
            // The mesh executor's own subscriptions are other routers'
            // interest: an event from the mesh never goes back to it from
            // here.
            if !local_picks.is_empty() {
                // (Not cloned for nothing: the first clone of an event's
                // buffer allocates its shared count.)
                let subject = &matched.subject;
                self.deliver_local(&local_picks, subject, event.clone(), Some(congested));
            }
            self.deliver_local(&matched.local, &matched.subject, event, Some(congested));
        }
        Ok(true)
    }

    /// The rest of a `publish_now` that handed back: wait for the room it
    /// lacked, hand the event to the remaining shards (waiting as needed),
    /// then deliver to this shard's subscribers.
    pub async fn publish_handoff(&self, h: Handoff, congested: &mut Vec<Rc<Session>>) -> bool {
        let Handoff {
            event,
            matched,
            local_picks,
            remote_groups,
            mut targets,
            stall,
        } = h;
        let mut stall = Some(stall);
        while let Some(s) = stall {
            // Boxed: a full ring is the rare case, and the wait's state
            // (~1.3 KiB) would otherwise be in every connection's future
            // (`driver_mqtt::tests::idle_connection_future_is_small`).
            Box::pin(self.wait_stall(s)).await;
            stall = self.hand_to_shards(&event, matched.remote, &remote_groups, &mut targets);
        }
        if self.mesh.get().is_some() {
            return true;
        }
        if !local_picks.is_empty() {
            let subject = &matched.subject;
            self.deliver_local(&local_picks, subject, event.clone(), Some(congested));
        }
        self.deliver_local(&matched.local, &matched.subject, event, Some(congested));
        true
    }

    /// A `$SYS` statistics event of this router (`shard::sys`): retained on
    /// every shard and delivered to this router's plain subscribers only.
    /// Not sent over the mesh (each router has its own `$SYS`), not counted
    /// as received, and not in the latency histogram.
    pub async fn publish_sys(&self, mut event: Event) {
        event.born_ns = crate::event::REPLAY_NS;
        let stamp = self.retained.next_stamp(event.topic());
        self.store_retained(&event, stamp);
        for peer in (0..self.global.client_shards).filter(|&p| p != self.id) {
            self.control
                .push(Some(peer), ShardMsg::Retain(event.clone(), stamp));
        }
        let matched = self.routing.matches(event.topic());
        let shards = matched.remote & !self.mesh_bit();
        self.send_to_shards(&event, shards, &[]).await;
        self.deliver_local(&matched.local, &matched.subject, event, None);
    }

    /// Hands `event` to the shards in `plain` and to the one chosen for
    /// each queue group in `groups`.
    pub(crate) async fn send_to_shards(
        &self,
        event: &Event,
        plain: u64,
        groups: &[(usize, Arc<str>)],
    ) {
        let mut targets = shard_targets(plain, groups);
        while let Some(stall) = self.hand_to_shards(event, plain, groups, &mut targets) {
            self.wait_stall(stall).await;
        }
    }

    /// Hands `event` to the peers left in `targets`, in order, without
    /// waiting: stops at the first that has no room (removed from
    /// `targets`; its message is in the `Stall`) and says what to wait
    /// for before going on.
    fn hand_to_shards(
        &self,
        event: &Event,
        plain: u64,
        groups: &[(usize, Arc<str>)],
        targets: &mut u64,
    ) -> Option<Stall> {
        while *targets != 0 {
            let peer = targets.trailing_zeros() as usize;
            *targets &= *targets - 1;
            let groups = groups
                .iter()
                .filter(|(s, _)| *s == peer)
                .map(|(_, g)| g.clone())
                .collect();
            Counters::add(&self.counters.ring_events_out, 1);
            let msg = ShardMsg::Event {
                event: event.clone(),
                plain: plain & (1 << peer) != 0,
                groups,
                handed: 0,
            };
            match self.mesh_here(peer) {
                // Every event for the mesh executor takes this path once
                // it is set (before, the mesh had no links), so they stay
                // in order; its `on_ring` is synchronous and bounded by the
                // links' buffers.
                Some(mesh) => {
                    mesh.on_ring(self.id, msg, &mut Vec::new());
                    if mesh.mesh_room_short() {
                        return Some(Stall::MeshRoom(mesh));
                    }
                }
                None => match self.shard_here(peer) {
                    // The bridge's events for the shard on its executor:
                    // by a call (no ring, no wake-up of its reader) when
                    // nothing sent to it before waits, so they stay in
                    // order; the shard's `on_ring` never awaits.
                    Some(shard) => {
                        let mut full = Vec::new();
                        shard.on_ring(self.id, msg, &mut full);
                        if !full.is_empty() {
                            return Some(Stall::Watches(shard, full));
                        }
                    }
                    None => {
                        if let Err(msg) = self.control.try_send(peer, msg, &self.counters) {
                            return Some(Stall::Ring(peer, msg));
                        }
                    }
                },
            }
        }
        None
    }

    /// Waits for what `hand_to_shards` lacked.
    async fn wait_stall(&self, stall: Stall) {
        match stall {
            Stall::Ring(peer, msg) => self.control.send_waiting(peer, msg).await,
            Stall::MeshRoom(mesh) => mesh.mesh_room().await,
            Stall::Watches(shard, mut full) => shard.wait_watches(&mut full).await,
        }
    }

    /// Shard `peer`'s context, if this is the mesh executor's context
    /// running on that shard's executor (`mesh.bridge_in_shard`) and
    /// everything sent to `peer` before has been taken.
    fn shard_here(&self, peer: usize) -> Option<Rc<ShardCtx>> {
        let shard = self.direct_shard.get()?.get()?.upgrade()?;
        (shard.id == peer && self.control.drained_to(peer)).then_some(shard)
    }

    /// The mesh executor's context, if `peer` is it and it runs on this
    /// executor (`mesh.bridge_in_shard`).
    fn mesh_here(&self, peer: usize) -> Option<Rc<ShardCtx>> {
        if peer + 1 != self.shards {
            return None; // the mesh is the last peer
        }
        let mesh = self.direct_bridge.get()?.get()?;
        (mesh.id == peer).then(|| mesh.clone())
    }

    /// An event from another shard's ring: delivered here only, never
    /// forwarded from a ring.
    pub(super) fn on_ring_event(
        &self,
        event: Event,
        plain: bool,
        groups: &[Arc<str>],
        handed: u8,
        congested: &mut Vec<Rc<Session>>,
    ) {
        Counters::add(&self.counters.ring_events_in, 1);
        let matched: Rc<Matched> = self.routing.matches(event.topic());
        self.deliver_to_groups_here(&matched, &event, groups, handed, congested);
        if plain {
            self.deliver_local(&matched.local, &matched.subject, event, Some(congested));
        }
    }

    /// Another peer's first (`add`) or last subscriber of a filter.
    pub(super) fn on_ring_interest(
        &self,
        from: usize,
        filter: &str,
        group: Option<&str>,
        add: bool,
    ) {
        if add {
            self.routing.add_remote(filter, group, from);
        } else {
            self.routing.remove_remote(filter, group, from);
        }
    }

    /// `subject`: the memo of the event's NATS subject (its cached
    /// match's), converted at the first NATS delivery. A NATS subscriber
    /// gets the event's MSG frame, built once here for all of them
    /// (`nats::deliver::frame`) and written into its queue with its sid;
    /// the others get the event (moved into the last, cloned before).
    pub(super) fn deliver_local(
        &self,
        subs: &[LocalSub],
        subject: &SubjectMemo,
        event: Event,
        mut congested: Option<&mut Vec<Rc<Session>>>,
    ) {
        if subs.is_empty() {
            return;
        }
        if event.meta.is_some() && self.global.trace.exporting() {
            self.global.trace.child(
                event.meta.as_deref(),
                crate::trace::SpanKind::Deliver,
                event.born_ns,
                event.topic(),
                &subs.len().to_string(),
            );
        }
        let limits = self.limits();
        let mut expired: SmallVec<[(Rc<Session>, Rc<str>); 1]> = SmallVec::new();
        {
            let slots = self.table.slots();
            let mut event = Some(event);
            let mut frame: Option<crate::nats::frame::MsgFrame> = None;
            for (i, sub) in subs.iter().enumerate() {
                let e = event.as_ref().expect("present until the last");
                let (session, how) = match slots.get(sub.session as usize) {
                    Some(Some(Slot::Mqtt(session))) => {
                        let own =
                            e.origin.shard as usize == self.id && e.origin.session == session.key;
                        if own && sub.qos & NO_LOCAL != 0 {
                            continue;
                        }
                        if sub.qos & CHECKED != 0 && !self.readable(session, session.protocol, e) {
                            continue;
                        }
                        (
                            session,
                            DeliverAs::Mqtt {
                                qos: e.qos.min(sub.qos & 3),
                                retain: e.retain && sub.qos & RETAIN_AS_PUBLISHED != 0,
                            },
                        )
                    }
                    Some(Some(Slot::NatsSub(ns))) => {
                        let own = e.origin.shard as usize == self.id
                            && e.origin.session == ns.session.key;
                        if own && !ns.session.echo.get() {
                            continue;
                        }
                        if sub.qos & CHECKED != 0 && !self.readable(&ns.session, Protocol::Nats, e)
                        {
                            continue;
                        }
                        if let Some(max) = ns.max.get() {
                            if ns.delivered.get() >= max {
                                continue;
                            }
                        }
                        ns.delivered.set(ns.delivered.get() + 1);
                        if Some(ns.delivered.get()) == ns.max.get() {
                            expired.push((ns.session.clone(), ns.sid.clone()));
                        }
                        // The subject converted once per distinct topic
                        // (the memo lives with the cached match), the
                        // frame once per event: each delivery adds its sid.
                        let frame = frame.get_or_insert_with(|| {
                            let subject =
                                subject.get_or_init(|| Rc::from(crate::nats::deliver::subject(e)));
                            crate::nats::deliver::frame(e, subject)
                        });
                        let outcome = ns.session.deliver_nats(e, frame, &ns.sid, &limits);
                        self.delivered(outcome, &ns.session, &mut congested);
                        continue;
                    }
                    Some(Some(Slot::AmqpLink(link))) => {
                        if sub.qos & CHECKED != 0
                            && !self.readable(&link.session, Protocol::Amqp, e)
                        {
                            continue;
                        }
                        (
                            &link.session,
                            DeliverAs::Amqp {
                                channel: link.channel,
                                handle: link.handle,
                                qos: link.qos,
                            },
                        )
                    }
                    _ => {
                        debug_assert!(false, "trie names a key that is gone");
                        continue;
                    }
                };
                // Move the event into the last delivery: one refcount less.
                let e = if i + 1 == subs.len() {
                    event.take().expect("taken once")
                } else {
                    e.clone()
                };
                let outcome = session.deliver(e, how, &limits);
                self.delivered(outcome, session, &mut congested);
            }
        }
        // UNSUB with a maximum reached it: the subscription goes now.
        for (session, sid) in expired {
            self.nats_unsubscribe(&session, &sid, None);
        }
    }

    /// Counts one delivery's outcome; a congested session joins
    /// `congested` (once), a slow consumer is closed.
    fn delivered(
        &self,
        outcome: Delivery,
        session: &Rc<Session>,
        congested: &mut Option<&mut Vec<Rc<Session>>>,
    ) {
        match outcome {
            Delivery::Queued => Counters::add(&self.counters.messages_out, 1),
            Delivery::Congested => {
                Counters::add(&self.counters.messages_out, 1);
                if let Some(c) = congested.as_deref_mut() {
                    if !c.iter().any(|s| Rc::ptr_eq(s, session)) {
                        c.push(session.clone());
                    }
                }
            }
            Delivery::Dropped => Counters::add(&self.counters.dropped_queue_full, 1),
            Delivery::SlowConsumer => {
                Counters::add(&self.counters.slow_consumer_disconnects, 1);
                if self.log_limiter.allow() {
                    tracing::warn!(
                        shard = self.id,
                        client_id = &*session.client_id,
                        "disconnecting slow consumer: outbound queue full"
                    );
                }
                session.close(CloseReason::SlowConsumer);
            }
        }
    }

    /// The delivery-time test of a checked subscription: whether
    /// `session` may read `event`'s topic (as its client sees it); an
    /// event it may not is skipped and counted. Called only for
    /// subscriptions marked [`CHECKED`] and for retained messages sent to
    /// a session with rules: a subscription wholly inside its rights pays
    /// nothing.
    #[inline(never)]
    pub(crate) fn readable(&self, session: &Session, protocol: Protocol, event: &Event) -> bool {
        let readable = session
            .grants
            .borrow()
            .as_ref()
            .is_none_or(|g| g.may_read(event.topic()));
        if !readable {
            self.count_denied(protocol, Denied::Deliver);
        }
        readable
    }

    /// Counts one authorization denial (`weft_authz_denied_total`).
    pub(crate) fn count_denied(&self, protocol: Protocol, denied: Denied) {
        let c = &self.counters;
        let counter = match (protocol, denied) {
            (Protocol::Mqtt, Denied::Publish) => &c.authz_denied_mqtt_publish,
            (Protocol::Mqtt, Denied::Subscribe) => &c.authz_denied_mqtt_subscribe,
            (Protocol::Mqtt, Denied::Deliver) => &c.authz_denied_mqtt_deliver,
            (Protocol::Nats, Denied::Publish) => &c.authz_denied_nats_publish,
            (Protocol::Nats, Denied::Subscribe) => &c.authz_denied_nats_subscribe,
            (Protocol::Nats, Denied::Deliver) => &c.authz_denied_nats_deliver,
            (Protocol::Http, Denied::Publish) => &c.authz_denied_http_publish,
            (Protocol::Http, Denied::Subscribe) => &c.authz_denied_http_subscribe,
            (Protocol::Http, Denied::Deliver) => &c.authz_denied_http_deliver,
            (Protocol::Amqp, Denied::Publish) => &c.authz_denied_amqp_publish,
            (Protocol::Amqp, Denied::Subscribe) => &c.authz_denied_amqp_subscribe,
            (Protocol::Amqp, Denied::Deliver) => &c.authz_denied_amqp_deliver,
        };
        Counters::add(counter, 1);
    }

    // ------------------------------------------------------- subscriptions

    /// Adds an MQTT subscription (replacing the QoS of an existing one).
    /// `$share/{group}/{filter}` joins the queue group `group`.
    pub fn subscribe(&self, session: &Session, full_filter: &str, qos: u8) {
        let (group, filter) = split_share(full_filter);
        let first = self.routing.add_local(filter, group, session.key, qos);
        session.subscriptions.borrow_mut().insert(full_filter, qos);
        if first {
            self.control
                .announce(true, Arc::from(filter), group.map(Arc::from));
        }
    }

    /// Removes an MQTT subscription; false if the session had none.
    pub fn unsubscribe(&self, session: &Session, full_filter: &str) -> bool {
        if session
            .subscriptions
            .borrow_mut()
            .remove(full_filter)
            .is_none()
        {
            return false;
        }
        self.remove_mqtt_subscription(session, full_filter);
        true
    }

    fn remove_mqtt_subscription(&self, session: &Session, full_filter: &str) {
        let (group, filter) = split_share(full_filter);
        let removed = self.routing.remove_local(filter, group, session.key);
        debug_assert!(removed.is_some(), "session and trie agree");
        if removed == Some(true) {
            self.control
                .announce(false, Arc::from(filter), group.map(Arc::from));
        }
    }

    /// Removes all of a session's MQTT subscriptions.
    pub(super) fn drop_mqtt_subscriptions(&self, session: &Session) {
        let filters: Vec<Box<str>> = session
            .subscriptions
            .borrow_mut()
            .drain()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        for f in &filters {
            self.remove_mqtt_subscription(session, f);
        }
    }

    /// Adds a NATS subscription `sid` with its internal filter. False if
    /// the session already has that sid.
    pub fn nats_subscribe(
        &self,
        session: &Rc<Session>,
        sid: &str,
        filter: String,
        group: Option<&str>,
    ) -> bool {
        self.nats_subscribe_checked(session, sid, filter, group, false)
    }

    /// `nats_subscribe`; `checked`: each delivery is tested against the
    /// session's rights (`security::permissions`).
    pub fn nats_subscribe_checked(
        &self,
        session: &Rc<Session>,
        sid: &str,
        filter: String,
        group: Option<&str>,
        checked: bool,
    ) -> bool {
        if session.nats_subs.borrow().contains_key(sid) {
            return false;
        }
        let group: Option<Arc<str>> = group.map(Arc::from);
        let sub = Rc::new(NatsSub {
            session: session.clone(),
            sid: Rc::from(sid),
            filter: filter.into(),
            group: group.clone(),
            max: Cell::new(None),
            delivered: Cell::new(0),
        });
        let key = self.table.insert_nats_sub(sub.clone());
        session.nats_subs.borrow_mut().insert(sid.into(), key);
        if self.routing.add_local(
            &sub.filter,
            group.as_deref(),
            key,
            if checked { CHECKED } else { 0 },
        ) {
            self.control.announce(true, Arc::from(&*sub.filter), group);
        }
        true
    }

    /// UNSUB: now, or after `max` deliveries in all. False if unknown sid.
    pub fn nats_unsubscribe(&self, session: &Session, sid: &str, max: Option<u64>) -> bool {
        let Some(key) = session.nats_subs.borrow().get(sid).copied() else {
            return false;
        };
        if let Some(max) = max {
            if let Some(sub) = self.table.nats_sub(key) {
                if sub.delivered.get() < max {
                    sub.max.set(Some(max));
                    return true;
                }
            }
        }
        session.nats_subs.borrow_mut().remove(sid);
        self.remove_nats_sub(key);
        true
    }

    pub(super) fn remove_nats_sub(&self, key: SessionKey) {
        let Some(sub) = self.table.remove_nats_sub(key) else {
            debug_assert!(false, "key {key} is not a NATS subscription");
            return;
        };
        let removed = self
            .routing
            .remove_local(&sub.filter, sub.group.as_deref(), key);
        debug_assert!(removed.is_some(), "subscription and trie agree");
        if removed == Some(true) {
            self.control
                .announce(false, Arc::from(&*sub.filter), sub.group.clone());
        }
    }
}
