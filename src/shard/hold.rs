//! QoS 1 backpressure across shards: holding the publishers whose events
//! overfilled a subscriber, and no one else.
//!
//! Why this exists: before, a subscriber over its soft limit stopped the
//! reader of the ring its event came on, for up to
//! `backpressure_pause_ms_max`. The ring filled and every publisher on the
//! sending shard waited, so one stalled subscriber froze the deliveries of
//! every subscriber of that shard pair (`tests/backpressure.rs`: 3.0 s of
//! silence, the whole pause, on a stream the stalled subscriber did not
//! even match; about 35 ms with this module).
//!
//! Now a ring reader goes on. The overflowing event is queued anyway
//! (the hard limit `qos1_queued_*` still bounds the queue; past it the
//! subscriber is disconnected as a slow consumer), and the event's origin
//! names its publisher: the subscriber's shard asks the publisher's shard
//! to stop that one publisher's reader (`ShardMsg::HoldPublisher`) until
//! the subscriber drained under its soft limit or its pause ran out
//! (`ShardMsg::FreePublisher`). The publisher's shard also bounds the wait
//! by its own clock, so no pause outlasts `backpressure_pause_ms_max`,
//! whatever order the holds of several subscribers come in; a stray free
//! (its session key reused) can only end a pause early.
//!
//! What was in flight when the hold was asked for (up to a ring's worth,
//! and the publisher's current read) still arrives: the margin between
//! the soft and the hard limit absorbs it. Should a subscriber whose pause
//! is on have no room left for one more packet of the largest size, the
//! ring reader that brought the event waits for the watch to end, as all
//! ring readers did before at the soft limit: the ring is the buffer of
//! last resort, so the hard limit is never passed and no subscriber is
//! disconnected before its pause ran out. With the defaults (16 MiB soft,
//! 32 MiB hard, 1 MiB packets) only a flood of large events gets there.
//!
//! Owns the decisions only (state in, what to send out): [`Holding`] on the
//! subscriber's shard (which publishers are held for which congested
//! subscriber, and when a watch starts). Its other half, the holds a
//! publisher's session is under, is `PublisherHold` in
//! `publisher_hold.rs` (a field of the mailbox, which this file names as
//! its key: in one file the two made a hold ⇄ mailbox import cycle).
//! `ShardCtx` sends the messages and runs the watches; the connection
//! driver (`driver.rs`) waits on the hold before its next read.
//!
//! Events with no client publisher in this process (from the mesh, or made
//! by the router: wills, NATS no-responders) hold nobody; they start a
//! watch all the same (the ring's last resort above, and the pause counted
//! as spent when it runs out).
//!
//! Bounds: one entry per congested subscriber; its publishers are at most
//! the events it queued past its soft limit (each names one), so the hard
//! limit bounds them, and so the `HoldPublisher`/`FreePublisher` messages;
//! its waiters are at most the ring readers of the shard.

use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::mailbox::Mailbox as Session;
use crate::event::Origin;

/// A congested subscriber's watch: the publishers held for it.
struct Watch {
    /// Kept alive by the entry, so its address keys the map uniquely.
    subscriber: Rc<Session>,
    publishers: hashbrown::HashSet<Origin>,
    /// Ring readers waiting for the watch to end.
    waiters: Vec<Waker>,
}

/// What to do about one event that overfilled a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Send `HoldPublisher` to the publisher's shard (first time for this
    /// subscriber's watch).
    pub hold: bool,
    /// Start watching the subscriber (its first overflow since the last
    /// watch ended): the watch ends when it drained or after the pause,
    /// then [`Holding::end`] names the publishers to free.
    pub watch: bool,
}

/// Subscriber side, one per shard.
#[derive(Default)]
pub struct Holding {
    watches: RefCell<hashbrown::HashMap<*const Session, Watch>>,
}

impl Holding {
    /// An event from `publisher` was queued past `subscriber`'s soft limit.
    pub fn note(&self, subscriber: &Rc<Session>, publisher: Origin) -> Step {
        let mut watches = self.watches.borrow_mut();
        let mut watch = false;
        let entry = watches.entry(Rc::as_ptr(subscriber)).or_insert_with(|| {
            watch = true;
            Watch {
                subscriber: subscriber.clone(),
                publishers: hashbrown::HashSet::new(),
                waiters: Vec::new(),
            }
        });
        debug_assert!(Rc::ptr_eq(&entry.subscriber, subscriber));
        // The mesh's events and the router's own name no client here.
        let hold = publisher.session != Origin::ROUTER.session;
        Step {
            hold: hold && entry.publishers.insert(publisher),
            watch,
        }
    }

    /// Ready once `subscriber` is not watched (any more).
    pub fn poll_ended(&self, subscriber: &Rc<Session>, cx: &mut Context<'_>) -> Poll<()> {
        match self.watches.borrow_mut().get_mut(&Rc::as_ptr(subscriber)) {
            Some(watch) => {
                watch.waiters.push(cx.waker().clone());
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }

    /// The subscriber's watch ended: the publishers to free.
    pub fn end(&self, subscriber: &Rc<Session>) -> Vec<Origin> {
        let Some(watch) = self.watches.borrow_mut().remove(&Rc::as_ptr(subscriber)) else {
            return Vec::new();
        };
        for w in watch.waiters {
            w.wake();
        }
        watch.publishers.into_iter().collect()
    }

    /// Subscribers watched now (for tests and views).
    pub fn len(&self) -> usize {
        self.watches.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::mailbox::Protocol;

    fn origin(shard: u16, session: u32) -> Origin {
        Origin { shard, session }
    }

    #[test]
    fn one_watch_per_subscriber_one_hold_per_publisher() {
        let holding = Holding::default();
        let s = Rc::new(Session::new(0, Protocol::Mqtt, "s".into()));
        let t = Rc::new(Session::new(1, Protocol::Mqtt, "t".into()));
        let step = |hold, watch| Step { hold, watch };
        assert_eq!(holding.note(&s, origin(1, 7)), step(true, true));
        assert_eq!(holding.note(&s, origin(1, 7)), step(false, false));
        assert_eq!(holding.note(&s, origin(2, 7)), step(true, false));
        assert_eq!(holding.note(&t, origin(1, 7)), step(true, true));
        // Nobody to hold for what the router or the mesh made.
        assert_eq!(holding.note(&s, Origin::ROUTER), step(false, false));
        assert_eq!(holding.note(&s, origin(3, u32::MAX)), step(false, false));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(holding.poll_ended(&s, &mut cx), Poll::Pending);
        let mut freed = holding.end(&s);
        freed.sort_by_key(|o| o.shard);
        assert_eq!(freed, vec![origin(1, 7), origin(2, 7)]);
        assert!(holding.end(&s).is_empty(), "ended once");
        assert_eq!(holding.poll_ended(&s, &mut cx), Poll::Ready(()));
        assert_eq!(holding.len(), 1);
        // A watch for what the mesh brought, holding nobody.
        let u = Rc::new(Session::new(2, Protocol::Mqtt, "u".into()));
        assert_eq!(holding.note(&u, Origin::ROUTER), step(false, true));
        assert!(holding.end(&u).is_empty());
        // The next overflow starts a new watch and holds again.
        assert_eq!(holding.note(&s, origin(1, 7)), step(true, true));
    }
}
