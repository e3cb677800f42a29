//! Durability waiters of the writer ([`super::write::Log`]): a task's
//! future (`wait_durable`) or a callback (`on_durable`), completed in
//! position order on the shard's thread.
//!
//! Owns: the waiter forms and the future. Must not touch: the log's
//! state (the writer decides when a waiter completes).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

pub(super) enum Waiter {
    Task(Rc<WaitSlot>),
    Callback(Box<dyn FnOnce(Result<(), LogError>)>),
}

#[derive(Default)]
pub(super) struct WaitSlot {
    pub(super) result: RefCell<Option<Result<(), LogError>>>,
    pub(super) waker: RefCell<Option<Waker>>,
}

impl Waiter {
    pub(super) fn complete(self, result: Result<(), LogError>) {
        match self {
            Waiter::Task(slot) => {
                *slot.result.borrow_mut() = Some(result);
                if let Some(w) = slot.waker.borrow_mut().take() {
                    w.wake();
                }
            }
            Waiter::Callback(f) => f(result),
        }
    }
}

/// The future of [`Log::wait_durable`].
pub(super) struct WaitDurable {
    pub(super) slot: Rc<WaitSlot>,
}

impl Future for WaitDurable {
    type Output = Result<(), LogError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.slot.result.borrow_mut().take() {
            return Poll::Ready(r);
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Why an append or a wait failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The append buffer (`buffer_bytes_max`) or the disk budget
    /// (`bytes_max`) is full, or the record is over the record maximum.
    #[error("persistence log full")]
    Full,
    /// Writing or syncing failed (full disk, IO error); the first error's
    /// message. Retried every 500 ms.
    #[error("persistence log failed: {0}")]
    Failed(String),
}
