//! Shutdown of one shard: the flag every loop checks and the accept loops
//! waiting for it.
//!
//! Owns: the flag and the wakers of [`Stop::stopped`]. Closing the
//! sessions and ending barriers on a stop is the context's
//! (`ShardCtx::request_stop`), which knows the parts that hold them.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct Stop {
    stopping: Cell<bool>,
    /// The accept loops waiting for `stopped`.
    wakers: RefCell<Vec<Waker>>,
}

impl Stop {
    /// True once the shard is stopping.
    pub fn get(&self) -> bool {
        self.stopping.get()
    }

    /// Sets the flag and wakes the waiters; false if it was set already.
    pub(super) fn request(&self) -> bool {
        if self.stopping.replace(true) {
            return false;
        }
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
        true
    }

    pub async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stopping.get() {
                Poll::Ready(())
            } else {
                let mut wakers = self.wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}
