//! QoS 1 backpressure on one shard: pausing a publisher whose events
//! overfill subscribers here, and holding publishers of this shard for
//! congested subscribers elsewhere (the decisions are `shard::hold`'s).
//!
//! Owns: the flows around [`Holding`] (its state lives there): the
//! watches it starts, the `HoldPublisher`/`FreePublisher` messages it
//! sends through `control`, and the waits of readers and publishers, each
//! bounded by `limits.backpressure_pause_ms_max`. Reads the table to find
//! a held publisher; must not touch the trie or the directory.

use std::future::poll_fn;
use std::rc::Rc;
use std::time::Duration;

use super::{ShardCtx, ShardMsg};
use crate::event::Origin;
use crate::shard::mailbox::Mailbox as Session;
use crate::shard::stats::Counters;
use crate::topic::trie::SessionKey;

impl ShardCtx {
    /// QoS 1 backpressure: returns once the subscribers in `congested`
    /// drained under their soft limit, or after `backpressure_pause_ms_max`
    /// (then further QoS 1 events queue up to the hard limit, beyond which
    /// the subscriber is disconnected as a slow consumer).
    pub async fn pause_for(&self, congested: &mut Vec<Rc<Session>>) {
        Counters::add(&self.counters.publisher_pauses, 1);
        self.wait_drained(congested).await;
        congested.clear();
    }

    /// Waits until `congested` drained under their soft limits, or for
    /// `backpressure_pause_ms_max`; those still full then had their pause.
    async fn wait_drained(&self, congested: &[Rc<Session>]) {
        let limits = self.limits();
        let all_drained = async {
            for s in congested.iter() {
                poll_fn(|cx| s.poll_drained(cx, &limits)).await;
            }
        };
        let timeout = async {
            glommio::timer::sleep(Duration::from_millis(limits.backpressure_pause_ms_max)).await;
        };
        futures_lite::future::or(all_drained, timeout).await;
        // Those still full had their pause: no second one until they drain
        // (they queue to the hard limit, then meet the slow-consumer rule).
        for session in congested.iter() {
            if session.over_soft(&limits) {
                session.pause_spent.set(true);
            }
        }
    }

    /// An event of `publisher` (on another shard, or handed back here)
    /// was queued past `subscriber`'s soft limit: hold that publisher
    /// until the subscriber drained or its pause ran out (see `hold`).
    /// True if the subscriber has no room left.
    pub(super) fn hold_for(self: &Rc<Self>, subscriber: &Rc<Session>, publisher: Origin) -> bool {
        let step = self.holding.note(subscriber, publisher);
        if step.hold {
            self.tell_publisher(publisher, true);
        }
        if step.watch {
            let ctx = self.clone();
            let subscriber = subscriber.clone();
            glommio::spawn_local(async move {
                ctx.wait_drained(std::slice::from_ref(&subscriber)).await;
                for publisher in ctx.holding.end(&subscriber) {
                    ctx.tell_publisher(publisher, false);
                }
            })
            .detach();
        }
        subscriber.no_room(&self.limits())
    }

    /// A ring reader's last resort (see `hold`): waits until the watches
    /// of `full` ended (drained, closed or paused long enough).
    pub async fn wait_watches(&self, full: &mut Vec<Rc<Session>>) {
        Counters::add(&self.counters.publisher_pauses, 1);
        for subscriber in full.iter() {
            poll_fn(|cx| self.holding.poll_ended(subscriber, cx)).await;
        }
        full.clear();
    }

    fn tell_publisher(&self, publisher: Origin, hold: bool) {
        let shard = usize::from(publisher.shard);
        if shard == self.id {
            self.hold_publisher(publisher.session, hold);
        } else if shard < self.shards {
            let msg = if hold {
                ShardMsg::HoldPublisher(publisher.session)
            } else {
                ShardMsg::FreePublisher(publisher.session)
            };
            self.control.push(Some(shard), msg);
        }
    }

    /// Puts a hold on (or takes one off) a publisher of this shard; a key
    /// whose session left is ignored.
    pub(super) fn hold_publisher(&self, key: SessionKey, hold: bool) {
        if let Some(s) = self.table.session(key) {
            if hold {
                s.hold.hold();
            } else {
                s.hold.free();
            }
        }
    }

    /// A publisher of this shard held by subscribers elsewhere: returns
    /// when every hold ended, the session closed, or after
    /// `backpressure_pause_ms_max` by this shard's clock (then the holds
    /// left are forgotten: a pause never lasts longer).
    pub async fn wait_held(&self, session: &Session) {
        Counters::add(&self.counters.publisher_pauses, 1);
        let pause = Duration::from_millis(self.limits().backpressure_pause_ms_max);
        let freed = futures_lite::future::or(poll_fn(|cx| session.hold.poll_free(cx)), async {
            poll_fn(|cx| session.poll_closed(cx)).await;
        });
        futures_lite::future::or(freed, glommio::timer::sleep(pause)).await;
        session.hold.expire();
    }
}
