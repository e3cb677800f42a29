//! QoS 1 backpressure across shards: holding the publishers whose events
//! overfilled a subscriber, and no one else.
//!
//! Why this exists: before, a subscriber over its soft limit stopped the
//! reader of the ring its event came on, for up to
//! `backpressure_pause_ms_max`. The ring filled and every publisher on the
//! sending shard waited, so one stalled subscriber froze the deliveries of
//! every subscriber of that shard pair (measured: 3.0 s of silence, the
//! whole pause, on streams the stalled subscriber did not even match). Now a
//! ring reader never waits. The overflowing event is queued anyway (the
//! hard limit `qos1_queued_*` still bounds the queue; past it the
//! subscriber is disconnected as a slow consumer), and the event's origin
//! names its publisher: the subscriber's shard asks the publisher's shard
//! to hold that one publisher's reader (`ShardMsg::HoldPublisher`) until the
//! subscriber drained under its soft limit, or for at most the pause
//! (`ShardMsg::FreePublisher`). The publisher's shard also bounds the hold
//! by its own clock, so a lost or late free can only shorten a pause.
//!
//! Owns the decisions only (state in, what to send out): [`Holding`] on the
//! subscriber's shard (which publishers are held for which congested
//! subscriber, and when a watch starts) and [`PublisherHold`] on the
//! publisher's session (the holds it is under). `ShardCtx` sends the
//! messages and runs the watches; `io::read_more` waits on the hold.
//!
//! Not held: events with no client publisher in this process (from the
//! mesh, or made by the router: wills, NATS no-responders). They queue up
//! to the hard limit like those of a publisher whose pause ran out.
//!
//! Bounds: one entry per congested subscriber; its publishers are at most
//! the events it queued past its soft limit (each names one), so the hard
//! limit bounds them, and so the `HoldPublisher`/`FreePublisher` messages.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::session::Session;
use crate::event::Origin;

/// A congested subscriber's watch: the publishers held for it.
struct Watch {
    /// Kept alive by the entry, so its address keys the map uniquely.
    subscriber: Rc<Session>,
    publishers: hashbrown::HashSet<Origin>,
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
        if publisher.session == Origin::ROUTER.session {
            return Step {
                hold: false,
                watch: false,
            };
        }
        let mut watches = self.watches.borrow_mut();
        let mut watch = false;
        let entry = watches.entry(Rc::as_ptr(subscriber)).or_insert_with(|| {
            watch = true;
            Watch {
                subscriber: subscriber.clone(),
                publishers: hashbrown::HashSet::new(),
            }
        });
        debug_assert!(Rc::ptr_eq(&entry.subscriber, subscriber));
        Step {
            hold: entry.publishers.insert(publisher),
            watch,
        }
    }

    /// The subscriber's watch ended: the publishers to free.
    pub fn end(&self, subscriber: &Rc<Session>) -> Vec<Origin> {
        self.watches
            .borrow_mut()
            .remove(&Rc::as_ptr(subscriber))
            .map(|w| w.publishers.into_iter().collect())
            .unwrap_or_default()
    }

    /// Subscribers watched now (for tests and views).
    pub fn len(&self) -> usize {
        self.watches.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Publisher side: the holds other shards' subscribers put on a session.
#[derive(Default)]
pub struct PublisherHold {
    holds: Cell<u32>,
    waker: Cell<Option<Waker>>,
}

impl PublisherHold {
    pub fn hold(&self) {
        self.holds.set(self.holds.get() + 1);
    }

    /// One hold ends. More frees than holds are possible (a hold that
    /// expired on this shard's clock, or a key that changed hands): they
    /// find nothing to end.
    pub fn free(&self) {
        self.holds.set(self.holds.get().saturating_sub(1));
        if self.holds.get() == 0 {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    pub fn is_held(&self) -> bool {
        self.holds.get() > 0
    }

    /// Ready once no hold is left.
    pub fn poll_free(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_held() {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// The publisher waited its longest pause: the holds still on it are
    /// forgotten (their late frees find nothing).
    pub fn expire(&self) {
        self.holds.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::session::Protocol;

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
        let mut freed = holding.end(&s);
        freed.sort_by_key(|o| o.shard);
        assert_eq!(freed, vec![origin(1, 7), origin(2, 7)]);
        assert!(holding.end(&s).is_empty(), "ended once");
        assert_eq!(holding.len(), 1);
        // The next overflow starts a new watch and holds again.
        assert_eq!(holding.note(&s, origin(1, 7)), step(true, true));
    }

    #[test]
    fn publisher_waits_until_every_hold_ends() {
        let hold = PublisherHold::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(hold.poll_free(&mut cx), Poll::Ready(()));
        hold.hold();
        hold.hold();
        assert_eq!(hold.poll_free(&mut cx), Poll::Pending);
        hold.free();
        assert!(hold.is_held());
        hold.free();
        assert_eq!(hold.poll_free(&mut cx), Poll::Ready(()));
        hold.free(); // a late one finds nothing
        assert!(!hold.is_held());
        hold.hold();
        hold.expire();
        assert_eq!(hold.poll_free(&mut cx), Poll::Ready(()));
    }
}
