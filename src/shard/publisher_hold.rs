//! The publisher's side of QoS 1 backpressure across shards (`hold.rs`
//! explains the whole): the holds other shards' congested subscribers put
//! on one session, which the connection driver (`driver.rs`) waits on
//! before its next read.
//!
//! Owns: [`PublisherHold`], a counter and a waker, carried by the session's
//! mailbox. Must not touch the subscriber side (`hold.rs`, which keys its
//! watches by the mailbox): kept apart so that neither file imports the
//! other's through the mailbox.

use std::cell::Cell;
use std::task::{Context, Poll, Waker};

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
