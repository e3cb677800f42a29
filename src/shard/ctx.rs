//! One shard's state and its routing: the trie, the session table, the rings
//! to the other shards, and the rules for moving an event from the
//! publisher's shard to every subscriber.
//!
//! Owns: everything of one shard; it is `Rc`, never crosses a thread, and
//! is borrowed only between awaits (no `RefCell` borrow is held across an
//! `.await`). Talks to other shards only through [`ShardMsg`] on the rings.
//! Loop prevention lives here, in one place: an event that arrived from a
//! ring is delivered locally and never forwarded again.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};

use super::session::{CloseReason, Delivery, Session};
use super::stats::{Counters, ShardStats};
use crate::config::Config;
use crate::event::Event;
use crate::mqtt::codec::DecodeLimits;
use crate::topic::trie::{LocalSub, SessionKey, Trie};
use crate::topic::TopicLimits;

/// What shards tell each other.
pub enum ShardMsg {
    Event(Event),
    /// The sender's first local subscriber of this filter appeared.
    InterestAdd(Arc<str>),
    /// The sender's last local subscriber of this filter left.
    InterestRemove(Arc<str>),
    /// Answer with `BarrierAck` once everything sent before it is applied.
    Barrier(u64),
    BarrierAck(u64),
}

/// Process-wide state shared by the shards: only atomics, none of it on
/// the event path.
#[derive(Default)]
pub struct Global {
    pub connections: AtomicUsize,
    pub shutdown: AtomicBool,
}

#[derive(Default)]
struct Sessions {
    slots: Vec<Option<Rc<Session>>>,
    free: Vec<SessionKey>,
    live: usize,
}

struct BarrierWait {
    remaining: usize,
    waker: Option<Waker>,
}

/// Lets through at most `per_second` log lines of one kind, counts the rest.
pub struct LogLimiter {
    window: Cell<Option<Instant>>,
    count: Cell<u32>,
    suppressed: Cell<u64>,
    per_second: u32,
}

impl LogLimiter {
    pub fn new(per_second: u32) -> Self {
        LogLimiter {
            window: Cell::new(None),
            count: Cell::new(0),
            suppressed: Cell::new(0),
            per_second,
        }
    }

    /// True if a line may be logged now; otherwise counts it as suppressed.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        match self.window.get() {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                let suppressed = self.suppressed.replace(0);
                if suppressed > 0 {
                    tracing::warn!(suppressed, "log lines suppressed by rate limit");
                }
                self.window.set(Some(now));
                self.count.set(0);
            }
        }
        if self.count.get() < self.per_second {
            self.count.set(self.count.get() + 1);
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }
}

pub struct ShardCtx {
    pub id: usize,
    pub shards: usize,
    pub config: Arc<Config>,
    pub decode_limits: DecodeLimits,
    pub topic_limits: TopicLimits,
    pub senders: Senders<ShardMsg>,
    pub stats: Arc<ShardStats>,
    pub counters: Counters,
    pub global: Arc<Global>,
    pub log_limiter: LogLimiter,
    trie: RefCell<Trie>,
    sessions: RefCell<Sessions>,
    barriers: RefCell<hashbrown::HashMap<u64, BarrierWait>>,
    next_barrier: Cell<u64>,
    next_client_number: Cell<u64>,
    pub stopping: Cell<bool>,
    /// The accept loops waiting for `stopped` (two at most).
    stop_wakers: RefCell<Vec<Waker>>,
    pending_acks: RefCell<Vec<(usize, ShardMsg)>>,
    ack_waker: Cell<Option<Waker>>,
}

impl ShardCtx {
    pub fn new(
        senders: Senders<ShardMsg>,
        config: Arc<Config>,
        stats: Arc<ShardStats>,
        global: Arc<Global>,
    ) -> ShardCtx {
        let l = &config.limits;
        ShardCtx {
            id: senders.peer_id(),
            shards: senders.nr_consumers(),
            decode_limits: DecodeLimits {
                packet_bytes_max: l.packet_bytes_max,
                filters_per_packet_max: l.filters_per_packet_max,
            },
            topic_limits: TopicLimits {
                topic_bytes_max: l.topic_bytes_max,
                topic_levels_max: l.topic_levels_max,
            },
            trie: RefCell::new(Trie::new(config.runtime.match_cache_entries_max)),
            config,
            senders,
            stats,
            counters: Counters::default(),
            global,
            log_limiter: LogLimiter::new(20),
            sessions: RefCell::default(),
            barriers: RefCell::default(),
            next_barrier: Cell::new(0),
            next_client_number: Cell::new(0),
            stopping: Cell::new(false),
            stop_wakers: RefCell::default(),
            pending_acks: RefCell::default(),
            ack_waker: Cell::new(None),
        }
    }

    pub fn limits(&self) -> &crate::config::Limits {
        &self.config.limits
    }

    // ------------------------------------------------------------ sessions

    pub fn register(&self, client_id: Box<str>) -> Rc<Session> {
        let mut s = self.sessions.borrow_mut();
        let key = match s.free.pop() {
            Some(k) => k,
            None => {
                s.slots.push(None);
                (s.slots.len() - 1) as SessionKey
            }
        };
        let session = Rc::new(Session::new(key, client_id));
        s.slots[key as usize] = Some(session.clone());
        s.live += 1;
        session
    }

    /// Releases the session's subscriptions (telling other shards where a
    /// filter lost its last local subscriber) and its slot.
    pub async fn unregister(&self, session: &Rc<Session>) {
        let filters: Vec<Box<str>> = session
            .subscriptions
            .borrow_mut()
            .drain()
            .map(|(f, _)| f)
            .collect();
        let mut withdrawn = Vec::new();
        {
            let mut trie = self.trie.borrow_mut();
            for f in &filters {
                if let Some(removed) = trie.remove_local(f, session.key) {
                    if removed.last_local {
                        withdrawn.push(Arc::<str>::from(&**f));
                    }
                }
            }
        }
        {
            let mut s = self.sessions.borrow_mut();
            s.slots[session.key as usize] = None;
            s.free.push(session.key);
            s.live -= 1;
        }
        for f in withdrawn {
            self.broadcast(|| ShardMsg::InterestRemove(f.clone())).await;
        }
    }

    pub fn live_sessions(&self) -> usize {
        self.sessions.borrow().live
    }

    pub fn all_sessions(&self) -> Vec<Rc<Session>> {
        self.sessions
            .borrow()
            .slots
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub fn assign_client_id(&self) -> Box<str> {
        let n = self.next_client_number.get();
        self.next_client_number.set(n + 1);
        format!("weft-{}-{n}", self.id).into()
    }

    // ------------------------------------------------------- subscriptions

    /// Adds a subscription; returns the filter to announce if it is the
    /// shard's first subscriber of it.
    pub fn subscribe(&self, session: &Session, filter: &str, qos: u8) -> Option<Arc<str>> {
        let added = self.trie.borrow_mut().add_local(filter, session.key, qos);
        session
            .subscriptions
            .borrow_mut()
            .insert(filter.into(), qos);
        added.first_local.then(|| Arc::from(filter))
    }

    /// Removes a subscription; returns the filter to withdraw if it was the
    /// shard's last subscriber of it. False as first value if not subscribed.
    pub fn unsubscribe(&self, session: &Session, filter: &str) -> (bool, Option<Arc<str>>) {
        if session.subscriptions.borrow_mut().remove(filter).is_none() {
            return (false, None);
        }
        let removed = self.trie.borrow_mut().remove_local(filter, session.key);
        debug_assert!(removed.is_some(), "session and trie agree");
        let last = removed.is_some_and(|r| r.last_local);
        (true, last.then(|| Arc::from(filter)))
    }

    /// Sends one message to every other shard, in ring order.
    pub async fn broadcast(&self, make: impl Fn() -> ShardMsg) {
        for peer in (0..self.shards).filter(|&p| p != self.id) {
            self.send(peer, make()).await;
        }
    }

    async fn send(&self, peer: usize, msg: ShardMsg) {
        if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) =
            self.senders.try_send_to(peer, msg)
        {
            Counters::add(&self.counters.ring_full_waits, 1);
            // Err only when the peer has shut down: nothing left to tell.
            let _ = self.senders.send_to(peer, msg).await;
        }
    }

    /// Waits until every other shard has applied all that this shard sent
    /// before: after it, a SUBACK is safe to send, since a publish on any
    /// shard will see the new interest.
    pub async fn barrier(&self) {
        if self.shards < 2 {
            return;
        }
        let id = self.next_barrier.get();
        self.next_barrier.set(id + 1);
        self.barriers.borrow_mut().insert(
            id,
            BarrierWait {
                remaining: self.shards - 1,
                waker: None,
            },
        );
        self.broadcast(|| ShardMsg::Barrier(id)).await;
        poll_fn(|cx| {
            let mut barriers = self.barriers.borrow_mut();
            let wait = barriers.get_mut(&id).expect("registered above");
            if wait.remaining == 0 || self.stopping.get() {
                barriers.remove(&id);
                Poll::Ready(())
            } else {
                wait.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    // --------------------------------------------------------------- events

    /// Routes an event published by a client of this shard: to the other
    /// shards with interest, then to local subscribers. QoS 1 deliveries
    /// that overflow a local subscriber's soft limit add it to `congested`
    /// so that the publisher can pause.
    pub async fn publish(&self, event: Event, congested: &mut Vec<Rc<Session>>) {
        Counters::add(&self.counters.messages_in, 1);
        let matched = self.trie.borrow_mut().matches(event.topic());
        let mut remote = matched.remote;
        while remote != 0 {
            let peer = remote.trailing_zeros() as usize;
            remote &= remote - 1;
            Counters::add(&self.counters.ring_events_out, 1);
            self.send(peer, ShardMsg::Event(event.clone())).await;
        }
        self.deliver_local(&matched.local, event, Some(congested));
    }

    fn deliver_local(
        &self,
        subs: &[LocalSub],
        event: Event,
        mut congested: Option<&mut Vec<Rc<Session>>>,
    ) {
        if subs.is_empty() {
            return;
        }
        let sessions = self.sessions.borrow();
        let limits = self.limits();
        let mut event = Some(event);
        for (i, sub) in subs.iter().enumerate() {
            let Some(Some(session)) = sessions.slots.get(sub.session as usize) else {
                debug_assert!(false, "trie names a session that is gone");
                continue;
            };
            // Move the event into the last delivery: one refcount less.
            let e = if i + 1 == subs.len() {
                event.take().expect("taken once")
            } else {
                event.clone().expect("present until the last")
            };
            let qos = e.qos.min(sub.qos);
            match session.deliver(e, qos, limits) {
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
    }

    /// Applies one message from another shard's ring. Never awaits on a
    /// ring: a ring reader that waited on another ring could deadlock two
    /// shards. QoS 1 deliveries that overfill a subscriber add it to
    /// `congested`; the ring reader then pauses (see [`Self::pause_for`]),
    /// the ring fills, and the publishers on the sending shard wait in
    /// `send`: backpressure reaches them without any extra message.
    pub fn on_ring(&self, from: usize, msg: ShardMsg, congested: &mut Vec<Rc<Session>>) {
        match msg {
            ShardMsg::Event(event) => {
                let matched = self.trie.borrow_mut().matches(event.topic());
                // Delivered here only: never forwarded from a ring.
                self.deliver_local(&matched.local, event, Some(congested));
            }
            ShardMsg::InterestAdd(filter) => {
                self.trie.borrow_mut().add_remote(&filter, from);
            }
            ShardMsg::InterestRemove(filter) => {
                self.trie.borrow_mut().remove_remote(&filter, from);
            }
            ShardMsg::Barrier(id) => {
                if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) =
                    self.senders.try_send_to(from, ShardMsg::BarrierAck(id))
                {
                    // The ring back is full: the ack task waits for room, so
                    // this reader never blocks. Bounded: one entry per
                    // barrier, and a connection has one barrier at a time.
                    self.pending_acks.borrow_mut().push((from, msg));
                    if let Some(w) = self.ack_waker.take() {
                        w.wake();
                    }
                }
            }
            ShardMsg::BarrierAck(id) => {
                let mut barriers = self.barriers.borrow_mut();
                if let Some(wait) = barriers.get_mut(&id) {
                    wait.remaining -= 1;
                    if wait.remaining == 0 {
                        if let Some(w) = wait.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
        }
    }

    /// QoS 1 backpressure: returns once the subscribers in `congested`
    /// drained under their soft limit, or after `backpressure_pause_ms_max`
    /// (then further QoS 1 events queue up to the hard limit, beyond which
    /// the subscriber is disconnected as a slow consumer).
    pub async fn pause_for(&self, congested: &mut Vec<Rc<Session>>) {
        Counters::add(&self.counters.publisher_pauses, 1);
        let limits = self.limits();
        let all_drained = async {
            for s in congested.iter() {
                poll_fn(|cx| s.poll_drained(cx, limits)).await;
            }
        };
        let timeout = async {
            glommio::timer::sleep(Duration::from_millis(limits.backpressure_pause_ms_max)).await;
        };
        futures_lite::future::or(all_drained, timeout).await;
        congested.clear();
    }

    /// Sends the barrier acks that found their ring full; runs as its own
    /// task for the life of the shard.
    pub async fn ack_task(&self) {
        loop {
            poll_fn(|cx| {
                if self.pending_acks.borrow().is_empty() {
                    self.ack_waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let pending = std::mem::take(&mut *self.pending_acks.borrow_mut());
            for (peer, msg) in pending {
                let _ = self.senders.send_to(peer, msg).await;
            }
        }
    }

    /// Publishes the counters and the trie's sizes for other threads.
    pub fn publish_stats(&self) {
        let t = self.trie.borrow().counts();
        let c = &self.counters;
        c.subscriptions.set(t.local_subscriptions as u64);
        c.trie_nodes.set(t.nodes as u64);
        c.remote_interest_entries.set(t.remote_entries as u64);
        c.sessions.set(self.live_sessions() as u64);
        c.publish(&self.stats);
    }

    // -------------------------------------------------------------- shutdown

    pub fn request_stop(&self) {
        if self.stopping.replace(true) {
            return;
        }
        for w in self.stop_wakers.borrow_mut().drain(..) {
            w.wake();
        }
        for s in self.all_sessions() {
            s.close(CloseReason::ServerShutdown);
        }
        let mut barriers = self.barriers.borrow_mut();
        for wait in barriers.values_mut() {
            if let Some(w) = wait.waker.take() {
                w.wake();
            }
        }
    }

    pub async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stopping.get() {
                Poll::Ready(())
            } else {
                let mut wakers = self.stop_wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    pub fn global_connections(&self) -> &AtomicUsize {
        &self.global.connections
    }

    pub fn shutdown_requested(&self) -> bool {
        self.global.shutdown.load(Ordering::Relaxed)
    }
}
