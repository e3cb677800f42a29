//! A bounded lock-free single-producer single-consumer ring between two
//! executors (threads), with a doorbell each way that is rung only when the
//! other side said it sleeps: while both sides are busy, an event crosses
//! with no system call and no wake-up of anyone.
//!
//! Owns: the slots, the two indices, the sleep flags and the two eventfds
//! (`to_consumer`: "data came", `to_producer`: "room freed"), and waiting
//! for them inside a glommio executor. Must not touch: what travels (`T`),
//! which peer talks to which (`rings`).
//!
//! Bounds: `capacity` slots, fixed at creation; a full ring makes the
//! producer wait (`send`) or hands the value back (`try_send`).
//!
//! Why hand-written: glommio 0.9's shared channel (the only cross-executor
//! channel a glommio executor can await) wakes the sender's executor on
//! every receive and relies on a `membarrier` per park; crossbeam's
//! channels block threads and cannot be awaited in io_uring.
//!
//! # Memory ordering
//!
//! `tail` is written by the producer only, `head` by the consumer only, each
//! on its own cache line (`CachePadded`), both free-running counts. A slot is
//! written before `tail.store(Release)` and read after `tail.load(Acquire)`,
//! so the consumer sees the value; it is read before `head.store(Release)`
//! and reused only after `head.load(Acquire)`, so the producer never
//! overwrites a slot still being read.
//!
//! Sleeping is Dekker's pattern, the same each way. Consumer, finding the
//! ring empty: `consumer_sleeping.store(true)`; `fence(SeqCst)`; read
//! `tail` again; only if still empty wait on `to_consumer`. Producer, after
//! `tail.store`: `fence(SeqCst)`; read `consumer_sleeping`; if set, clear it
//! (`swap`, so one ring per sleep) and write `to_consumer`. The two SeqCst
//! fences are ordered one before the other; whichever comes second, the
//! load after it sees the store before the first: either the producer sees
//! the flag (and rings), or the consumer sees the new `tail` (and does not
//! sleep). No wake-up is lost. A ring that the consumer no longer needs
//! (it saw the data itself) leaves a count in the eventfd: its next wait
//! returns at once and it re-checks — a spurious wake, never a lost one.
//! "Room freed" is the mirror image with `head`, `producer_waiting` and
//! `to_producer`; the consumer pays its fence only per pop, and a system
//! call only when the producer is waiting on a full ring.
//!
//! Closing: a dropped side sets its `*_gone` flag (SeqCst) and rings the
//! other side's doorbell unconditionally; the sleeper re-checks the flag
//! after its fence, as it re-checks the indices.
//!
//! Start-up: the ring and both eventfds exist before either executor
//! starts (made in the main thread), so there is no rendezvous: a producer
//! may send before its consumer runs (the values wait in the ring), and a
//! consumer that sleeps first has set its flag before the producer looks.
//!
//! Waiting in glommio: the eventfd (blocking mode, so that io_uring parks
//! the read instead of failing it with EAGAIN) is read through io_uring,
//! `glommio::io::BufferedFile::from_raw_fd(dup(fd)).read_at(0, 8)`: the
//! executor keeps serving its other tasks, and a sleeping executor wakes
//! when the read completes. A blocking read would stall the shard. When
//! both ends live on one executor (the mesh bridge inside shard 0), the
//! sleeper says so in its flag (`LOCAL` instead of `EVENTFD`) and the
//! other side wakes its task's `Waker` directly: no system call at all.
//! Each end binds itself to the thread of its first use (a debug
//! assertion checks that it stays there), which is what makes "the same
//! thread" a fact the other side can read.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crossbeam::utils::CachePadded;

/// Why a value came back from `try_send`.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    Full(T),
    Closed(T),
}

/// A small number per thread (0: none yet), to tell whether both ends
/// run on the same one.
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NUMBER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|n| *n)
}

const AWAKE: u8 = 0;
/// Asleep on the eventfd.
const EVENTFD: u8 = 1;
/// Asleep on `Bell::waker`: the ringer runs on the sleeper's thread.
const LOCAL: u8 = 2;

/// One direction's wake-up: the sleeper's flag, and how to wake it.
struct Bell {
    state: CachePadded<AtomicU8>,
    waker: Mutex<Option<Waker>>,
    eventfd: OwnedFd,
}

impl Bell {
    fn new() -> std::io::Result<Bell> {
        // Blocking mode on purpose: io_uring then parks the read (poll
        // armed) instead of completing it with EAGAIN.
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { nix::libc::eventfd(0, nix::libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Bell {
            state: CachePadded::new(AtomicU8::new(AWAKE)),
            waker: Mutex::new(None),
            // SAFETY: a fresh descriptor owned by nobody else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The ringer, after publishing and its SeqCst fence: wakes the
    /// sleeper if there is one (at most one ring per sleep: `swap`).
    fn ring_if_asleep(&self) {
        if self.state.load(Ordering::Relaxed) == AWAKE {
            return;
        }
        match self.state.swap(AWAKE, Ordering::Relaxed) {
            EVENTFD => {
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live buffer to our
                // descriptor; never blocks (it would take 2^64 - 2 rings).
                let _ =
                    unsafe { nix::libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
            }
            LOCAL => {
                let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            _ => {}
        }
    }

    /// The sleeper: says it sleeps, and sleeps unless `idle` turned false
    /// meanwhile (re-checked after the fence). `local`: the ringer runs on
    /// this thread. `file` is this side's glommio view of the eventfd.
    async fn sleep(
        &self,
        local: bool,
        file: &RefCell<Option<glommio::io::BufferedFile>>,
        idle: impl Fn() -> bool,
    ) {
        self.state
            .store(if local { LOCAL } else { EVENTFD }, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !idle() {
            self.state.store(AWAKE, Ordering::Relaxed);
            return;
        }
        if local {
            // The ringer is on this thread: it cannot run between the
            // check above and storing the waker below.
            poll_fn(|cx| {
                if self.state.load(Ordering::Relaxed) == AWAKE {
                    return Poll::Ready(());
                }
                *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            return;
        }
        self.read_eventfd(file).await;
        self.state.store(AWAKE, Ordering::Relaxed);
    }

    /// Waits (in io_uring) until the eventfd was written at least once
    /// since the last read.
    async fn read_eventfd(&self, file: &RefCell<Option<glommio::io::BufferedFile>>) {
        if file.borrow().is_none() {
            // SAFETY: dup of a live descriptor; the glommio file owns the copy.
            let fd = unsafe { nix::libc::dup(self.eventfd.as_raw_fd()) };
            assert!(
                fd >= 0,
                "dup of a ring's eventfd: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a fresh descriptor that only this file owns.
            *file.borrow_mut() = Some(unsafe { glommio::io::BufferedFile::from_raw_fd(fd) });
        }
        // Taken out while the read is in flight (one task per end).
        let bell = file.borrow_mut().take().expect("made above");
        let read = bell.read_at(0, 8).await;
        *file.borrow_mut() = Some(bell);
        if let Err(e) = read {
            // Not expected on an eventfd; polling instead of sleeping keeps
            // the ring correct (the callers re-check and sleep again).
            tracing::warn!("ring doorbell read failed: {e}");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// Several tasks of one executor may wait on the same end (every
/// connection of a shard sends on its rings): one of them sleeps on the
/// bell, the others wait here for it to wake, then all re-check. (One
/// eventfd read per sleep: two readers would take one ring between them
/// and leave the other asleep.)
#[derive(Default)]
struct Gate {
    sleeping: Cell<bool>,
    wakes: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    /// Sleeps on `bell` if no other task of this end does; else waits for
    /// that one to wake.
    async fn sleep(
        &self,
        bell: &Bell,
        local: bool,
        file: &RefCell<Option<glommio::io::BufferedFile>>,
        idle: impl Fn() -> bool,
    ) {
        if self.sleeping.get() {
            let seen = self.wakes.get();
            poll_fn(|cx| {
                if self.wakes.get() != seen {
                    return Poll::Ready(());
                }
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            })
            .await;
            return;
        }
        self.sleeping.set(true);
        // Wakes the others even if this sleep is cancelled.
        struct Woken<'a>(&'a Gate);
        impl Drop for Woken<'_> {
            fn drop(&mut self) {
                self.0.sleeping.set(false);
                self.0.wakes.set(self.0.wakes.get().wrapping_add(1));
                let waiters = std::mem::take(&mut *self.0.waiters.borrow_mut());
                for waker in waiters {
                    waker.wake();
                }
            }
        }
        let _woken = Woken(self);
        bell.sleep(local, file, idle).await;
    }
}

/// The state both sides share.
struct Shared<T> {
    /// Next slot to read (consumer-written).
    head: CachePadded<AtomicUsize>,
    /// Next slot to write (producer-written).
    tail: CachePadded<AtomicUsize>,
    /// "Data came": the consumer sleeps on it, the producer rings it.
    to_consumer: Bell,
    /// "Room freed": the producer sleeps on it, the consumer rings it.
    to_producer: Bell,
    producer_gone: AtomicBool,
    consumer_gone: AtomicBool,
    /// `thread_number()` of each end's first use (0: not used yet).
    producer_thread: AtomicU64,
    consumer_thread: AtomicU64,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: a slot is accessed by one side at a time, handed over through
// the Release/Acquire pairs on `head` and `tail` (module comment).
unsafe impl<T: Send> Sync for Shared<T> {}
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Shared<T> {
    fn slot(&self, index: usize) -> *mut MaybeUninit<T> {
        self.slots[index % self.slots.len()].get()
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let tail = *self.tail.get_mut();
        let mut head = *self.head.get_mut();
        while head != tail {
            // SAFETY: slots in head..tail hold values nobody took.
            unsafe { (*self.slot(head)).assume_init_drop() };
            head = head.wrapping_add(1);
        }
    }
}

/// Binds an end to the thread of its first use (`mine`: its number,
/// which the other end reads to choose how it sleeps).
fn bind(mine: &AtomicU64, bound: &Cell<bool>) {
    let me = thread_number();
    if !bound.get() {
        mine.store(me, Ordering::SeqCst);
        bound.set(true);
    }
    debug_assert_eq!(
        mine.load(Ordering::Relaxed),
        me,
        "a ring end moved to another thread after its first use"
    );
}

/// The producer's end: `Send` until its first use, then on that thread.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    /// Our copy of `tail` (we are its only writer).
    tail: Cell<usize>,
    /// Last `head` seen: refreshed only when the ring looks full.
    head: Cell<usize>,
    bound: Cell<bool>,
    file: RefCell<Option<glommio::io::BufferedFile>>,
    gate: Gate,
}

/// The consumer's end: `Send` until its first use, then on that thread.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    head: Cell<usize>,
    /// Last `tail` seen: refreshed only when the ring looks empty.
    tail: Cell<usize>,
    bound: Cell<bool>,
    file: RefCell<Option<glommio::io::BufferedFile>>,
    gate: Gate,
}

// SAFETY: the ends hold no thread-bound state until their first use
// (`file` is made on the first sleep, after it), and stay on that thread
// from then on (`bind`); before that they move freely (made in the main
// thread, handed to executors).
unsafe impl<T: Send> Send for Sender<T> {}
unsafe impl<T: Send> Send for Receiver<T> {}

/// A ring of `capacity` (at least 1) slots.
pub fn channel<T: Send>(capacity: usize) -> std::io::Result<(Sender<T>, Receiver<T>)> {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        to_consumer: Bell::new()?,
        to_producer: Bell::new()?,
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
        producer_thread: AtomicU64::new(0),
        consumer_thread: AtomicU64::new(0),
        slots: (0..capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect(),
    });
    Ok((
        Sender {
            shared: shared.clone(),
            tail: Cell::new(0),
            head: Cell::new(0),
            bound: Cell::new(false),
            file: RefCell::new(None),
            gate: Gate::default(),
        },
        Receiver {
            shared,
            head: Cell::new(0),
            tail: Cell::new(0),
            bound: Cell::new(false),
            file: RefCell::new(None),
            gate: Gate::default(),
        },
    ))
}

impl<T: Send> Sender<T> {
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// True when the consumer has taken everything sent so far (one
    /// Acquire load).
    pub fn is_empty(&self) -> bool {
        self.tail.get() == self.shared.head.load(Ordering::Acquire)
    }

    /// Puts `value` in the ring if it has room; wakes the consumer only if
    /// it sleeps.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let shared = &*self.shared;
        bind(&shared.producer_thread, &self.bound);
        if shared.consumer_gone.load(Ordering::Relaxed) {
            return Err(TrySendError::Closed(value));
        }
        let tail = self.tail.get();
        if tail.wrapping_sub(self.head.get()) == self.capacity() {
            self.head.set(shared.head.load(Ordering::Acquire));
            if tail.wrapping_sub(self.head.get()) == self.capacity() {
                return Err(TrySendError::Full(value));
            }
        }
        // SAFETY: the slot is free (the consumer's head passed it) and only
        // this producer writes slots.
        unsafe { (*shared.slot(tail)).write(value) };
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        shared.tail.store(tail, Ordering::Release);
        fence(Ordering::SeqCst);
        shared.to_consumer.ring_if_asleep();
        Ok(())
    }

    /// Sends, waiting (asleep) for room; `Err` gives the value back when
    /// the consumer is gone.
    pub async fn send(&self, mut value: T) -> Result<(), T> {
        let shared = &*self.shared;
        loop {
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(v)) => return Err(v),
                Err(TrySendError::Full(v)) => value = v,
            }
            let local = shared.consumer_thread.load(Ordering::SeqCst) == thread_number();
            let full = || {
                let head = shared.head.load(Ordering::Acquire);
                self.tail.get().wrapping_sub(head) == self.capacity()
                    && !shared.consumer_gone.load(Ordering::Relaxed)
            };
            self.gate
                .sleep(&shared.to_producer, local, &self.file, full)
                .await;
        }
    }
}

impl<T: Send> Receiver<T> {
    /// Takes the next value if there is one.
    pub fn try_recv(&self) -> Option<T> {
        let shared = &*self.shared;
        bind(&shared.consumer_thread, &self.bound);
        let head = self.head.get();
        if head == self.tail.get() {
            self.tail.set(shared.tail.load(Ordering::Acquire));
            if head == self.tail.get() {
                return None;
            }
        }
        // SAFETY: head < tail: the producer wrote this slot (Acquire above
        // or earlier) and will not touch it until `head` passes it.
        let value = unsafe { (*shared.slot(head)).assume_init_read() };
        let head = head.wrapping_add(1);
        self.head.set(head);
        shared.head.store(head, Ordering::Release);
        fence(Ordering::SeqCst);
        shared.to_producer.ring_if_asleep();
        Some(value)
    }

    /// The next value, waiting (asleep) for one; `None` once the producer
    /// is gone and the ring is drained.
    pub async fn recv(&self) -> Option<T> {
        let shared = &*self.shared;
        loop {
            if let Some(value) = self.try_recv() {
                return Some(value);
            }
            if shared.producer_gone.load(Ordering::Acquire) {
                // Values sent before the drop are visible now (the flag's
                // Acquire pairs with its SeqCst store after the last tail).
                return self.try_recv();
            }
            let local = shared.producer_thread.load(Ordering::SeqCst) == thread_number();
            let empty = || {
                shared.tail.load(Ordering::Acquire) == self.head.get()
                    && !shared.producer_gone.load(Ordering::Relaxed)
            };
            self.gate
                .sleep(&shared.to_consumer, local, &self.file, empty)
                .await;
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.producer_gone.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.shared.to_consumer.ring_if_asleep();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.consumer_gone.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.shared.to_producer.ring_if_asleep();
    }
}

#[cfg(test)]
mod tests;
