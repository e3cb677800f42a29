//! A shared-memory client on its way from shard 0 (which accepts on
//! `shm.listen` and admits) to the shard that serves it, and that shard's
//! inbox.
//!
//! Owns: the accepted socket and its admission permit in transit. Must
//! not touch: the handshake and the session (`shm_accept`). Bounds: an
//! inbox holds only admitted clients, so at most `shm.connections_max`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use super::admission::Permit;

/// The socket and permit travel in a `ShardMsg`, which is `Clone`: they
/// are taken once, by the receiver.
#[derive(Clone)]
pub struct Handoff(Arc<Mutex<Option<(glommio::net::AcceptedTcpStream, Permit)>>>);

impl Handoff {
    pub fn new(socket: glommio::net::AcceptedTcpStream, permit: Permit) -> Handoff {
        Handoff(Arc::new(Mutex::new(Some((socket, permit)))))
    }

    pub fn take(&self) -> Option<(glommio::net::AcceptedTcpStream, Permit)> {
        self.0.lock().ok()?.take()
    }
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handoff")
    }
}

/// A shard's clients handed over and not yet taken.
#[derive(Default)]
pub struct Inbox {
    queue: RefCell<VecDeque<Handoff>>,
    waker: RefCell<Option<Waker>>,
}

impl Inbox {
    pub fn push(&self, handoff: Handoff) {
        self.queue.borrow_mut().push_back(handoff);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub async fn next(&self) -> Handoff {
        poll_fn(|cx| match self.queue.borrow_mut().pop_front() {
            Some(h) => Poll::Ready(h),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
