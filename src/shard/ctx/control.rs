//! The shard's ordered control traffic: the control queue and its task,
//! interest announcements, barriers, and replies awaited from other shards
//! (claims and takeovers of client ids).
//!
//! Owns: the senders of the rings, the control queue, the barriers in
//! flight and the pending replies. Interest changes, retained copies,
//! directory messages and publisher holds leave through one queue drained
//! by one task: per peer they arrive in the order they happened, whichever
//! connection caused them, and a barrier follows the interest it covers.
//! Events go straight onto the rings ([`Control::send`]). Must not touch:
//! the trie, the table or the directory; it carries their messages, the
//! parts that own them decide what to say.
//!
//! Bounds: the queue is bounded by the connections (each has at most one
//! SUBSCRIBE/SUB in flight, and that one waits for its barrier to drain
//! the queue) and by the publisher holds (see `hold`: at most two per event
//! queued past a soft limit); barriers and pending replies by the
//! connections waiting on them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use glommio::{GlommioError, ResourceType};

use super::msg::{Interest, SessionState, ShardMsg};
use super::stop::Stop;
use crate::shard::rings::Senders;
use crate::shard::stats::Counters;

/// A reply another shard sends to a waiting connection.
pub(super) enum Reply {
    Claimed(Option<u16>),
    State(Option<Box<SessionState>>),
}

#[derive(Default)]
struct Pending {
    waker: Option<Waker>,
    reply: Option<Reply>,
}

struct BarrierWait {
    remaining: usize,
    /// A durable barrier some peer could not honour (its log failed).
    failed: bool,
    waker: Option<Waker>,
}

pub(super) struct Control {
    senders: Senders<ShardMsg>,
    /// Ordered control messages: (peer, message), `None` = every peer.
    queue: RefCell<VecDeque<(Option<usize>, ShardMsg)>>,
    waker: Cell<Option<Waker>>,
    barriers: RefCell<hashbrown::HashMap<u64, BarrierWait>>,
    next_barrier: Cell<u64>,
    pending: RefCell<hashbrown::HashMap<u64, Pending>>,
    next_token: Cell<u64>,
}

impl Control {
    pub(super) fn new(senders: Senders<ShardMsg>) -> Control {
        Control {
            senders,
            queue: RefCell::default(),
            waker: Cell::new(None),
            barriers: RefCell::default(),
            next_barrier: Cell::new(0),
            pending: RefCell::default(),
            next_token: Cell::new(0),
        }
    }

    /// This executor's peer id on the rings.
    pub(super) fn peer_id(&self) -> usize {
        self.senders.peer_id()
    }

    /// The peers on the rings (shards, and the bridge when the mesh is on).
    pub(super) fn peers(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// True when nothing this executor sent or queued for `peer` waits:
    /// the control queue is empty and `peer` has taken all its ring holds
    /// (a message popped from a ring is applied in the same poll).
    pub(super) fn drained_to(&self, peer: usize) -> bool {
        self.queue.borrow().is_empty() && self.senders.drained_to(peer)
    }

    /// Queues `msg` for `peer` (`None`: every other peer), in order.
    pub(super) fn push(&self, peer: Option<usize>, msg: ShardMsg) {
        self.queue.borrow_mut().push_back((peer, msg));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Queues an interest change for every other peer.
    pub(super) fn announce(&self, add: bool, filter: Arc<str>, group: Option<Arc<str>>) {
        if self.peers() < 2 {
            return;
        }
        let interest = Interest { filter, group };
        let msg = if add {
            ShardMsg::InterestAdd(interest)
        } else {
            ShardMsg::InterestRemove(interest)
        };
        self.push(None, msg);
    }

    /// Drains the control queue in order, for the life of the shard.
    pub(super) async fn run(&self, counters: &Counters) {
        let id = self.peer_id();
        loop {
            let next = poll_fn(|cx| match self.queue.borrow_mut().pop_front() {
                Some(item) => Poll::Ready(item),
                None => {
                    self.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            match next {
                (Some(peer), msg) => self.send(peer, msg, counters).await,
                (None, msg) => {
                    for peer in (0..self.peers()).filter(|&p| p != id) {
                        self.send(peer, msg.clone(), counters).await;
                    }
                }
            }
        }
    }

    /// Sends on the ring to `peer` if it has room; else hands `msg` back
    /// (counted as a wait: the caller then awaits `send_waiting`).
    pub(super) fn try_send(
        &self,
        peer: usize,
        msg: ShardMsg,
        counters: &Counters,
    ) -> Result<(), ShardMsg> {
        match self.senders.try_send_to(peer, msg) {
            Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => {
                Counters::add(&counters.ring_full_waits, 1);
                Err(msg)
            }
            _ => Ok(()),
        }
    }

    /// Sends on the ring to `peer`, waiting for room (after `try_send`
    /// found none).
    pub(super) async fn send_waiting(&self, peer: usize, msg: ShardMsg) {
        // Err only when the peer has shut down: nothing left to tell.
        let _ = self.senders.send_to(peer, msg).await;
    }

    /// Sends on the ring to `peer`, waiting for room if it is full.
    pub(super) async fn send(&self, peer: usize, msg: ShardMsg, counters: &Counters) {
        if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) =
            self.senders.try_send_to(peer, msg)
        {
            Counters::add(&counters.ring_full_waits, 1);
            // Err only when the peer has shut down: nothing left to tell.
            let _ = self.senders.send_to(peer, msg).await;
        }
    }

    /// Waits until every other peer has applied all that this shard sent
    /// before (or the shard stops).
    pub(super) async fn barrier(&self, stop: &Stop) {
        self.barrier_of(ShardMsg::Barrier, stop).await;
    }

    /// A barrier whose acknowledgements also promise that each peer's
    /// log holds what it had appended when the barrier came (see
    /// `ctx::persist`). False if a peer's log failed.
    pub(super) async fn durable_barrier(&self, stop: &Stop) -> bool {
        self.barrier_of(ShardMsg::DurableBarrier, stop).await
    }

    /// Sends `msg(id)` to every peer and waits for their answers (or the
    /// shard's stop); false if a peer answered `BarrierFailed`.
    async fn barrier_of(&self, msg: fn(u64) -> ShardMsg, stop: &Stop) -> bool {
        let peers = self.peers();
        if peers < 2 {
            return true;
        }
        let id = self.next_barrier.get();
        self.next_barrier.set(id + 1);
        self.barriers.borrow_mut().insert(
            id,
            BarrierWait {
                remaining: peers - 1,
                failed: false,
                waker: None,
            },
        );
        self.push(None, msg(id));
        poll_fn(|cx| {
            let mut barriers = self.barriers.borrow_mut();
            let wait = barriers.get_mut(&id).expect("registered above");
            if wait.remaining == 0 || stop.get() {
                let ok = !wait.failed && wait.remaining == 0;
                barriers.remove(&id);
                Poll::Ready(ok)
            } else {
                wait.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Answers a durable barrier whose promise this shard cannot keep.
    pub(super) fn on_barrier_failed(&self, from: usize, id: u64) {
        self.push(Some(from), ShardMsg::BarrierFailed(id));
    }

    /// A peer's log failed under a durable barrier of ours.
    pub(super) fn on_barrier_nack(&self, id: u64) {
        if let Some(wait) = self.barriers.borrow_mut().get_mut(&id) {
            wait.failed = true;
        }
        self.on_barrier_ack(id);
    }

    /// A peer's barrier: answered at once, since everything it sent before
    /// was applied (the ring is in order).
    pub(super) fn on_barrier(&self, from: usize, id: u64) {
        if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) =
            self.senders.try_send_to(from, ShardMsg::BarrierAck(id))
        {
            // The ring back is full: the control task waits for
            // room, so this reader never blocks.
            self.push(Some(from), msg);
        }
    }

    pub(super) fn on_barrier_ack(&self, id: u64) {
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

    /// Stopping: every barrier returns.
    pub(super) fn wake_barriers(&self) {
        let mut barriers = self.barriers.borrow_mut();
        for wait in barriers.values_mut() {
            if let Some(w) = wait.waker.take() {
                w.wake();
            }
        }
    }

    /// A token naming a reply this shard will wait for.
    pub(super) fn token(&self) -> u64 {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    /// The reply to `token`; `None` if the shard stops first.
    pub(super) async fn wait_reply(&self, token: u64, stop: &Stop) -> Option<Reply> {
        poll_fn(|cx| {
            let mut pending = self.pending.borrow_mut();
            let p = pending.entry(token).or_default();
            if let Some(reply) = p.reply.take() {
                pending.remove(&token);
                return Poll::Ready(Some(reply));
            }
            if stop.get() {
                pending.remove(&token);
                return Poll::Ready(None);
            }
            p.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub(super) fn answer(&self, token: u64, reply: Reply) {
        let mut pending = self.pending.borrow_mut();
        let p = pending.entry(token).or_default();
        p.reply = Some(reply);
        if let Some(w) = p.waker.take() {
            w.wake();
        }
    }
}
